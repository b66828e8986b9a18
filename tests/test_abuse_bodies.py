"""Issue 12, point 3: slow bodies cannot stall a node. Against a real `ncii-node serve`:
the issue's attack (8 connections POSTing to /v1/cases a byte every 2 s), from one
address and from 50 addresses of one network, and from many networks at once; all the
while a person elsewhere opens a case, checks it and withdraws it, and a witness is
answered, because each keeps a share, slow bodies are cut at the minimum rate, and the
routes a person or a witness needs read in pools of their own."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from node.cases.eligibility import QUESTIONS

from publish_support import helpline_datadir
from serve_support import NodeProcess, connect, head, host_port, read_answer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import attack_intake  # noqa: E402  (the attack script's own slow body)

pytestmark = pytest.mark.timeout(90)

ELIGIBLE = dict.fromkeys(QUESTIONS, True)  # every eligibility question answered yes


def case_body(n: int = 3) -> dict:
    return {"eligibility": ELIGIBLE, "lang": "en",
            "fingerprints": [{"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(n)]}


@pytest.fixture
async def helpline(tmp_path):
    node = NodeProcess(helpline_datadir(tmp_path))
    await node.start()
    yield node
    node.stop()


async def slow_body(url: str, source: str, path: str = "/v1/cases", length: int = 400_000):
    """The issue's attack (scripts/attack_intake.py): declare a body, then send one byte
    every 2 s. Returns (status, or None if none came within 15 s; seconds to it)."""
    host, port = host_port(url)
    status, seconds = await attack_intake.slow_body(host, port, source, 15, path, length)
    return (int(status) if status.isdigit() else None), seconds


async def person_and_witness(url: str, source: str = "127.0.9.9") -> dict:
    """What a person and a witness need, from an address of their own: open a case,
    check it, withdraw it; post a checkpoint."""
    out = {}
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as s:
        began = time.monotonic()
        async with s.post(url + "/v1/cases", json=case_body()) as r:
            created = await r.json()
            out["create"] = r.status
        codes = {"case_number": created.get("case_number", "0000-0000-0000-0000"), "pin": created.get("pin", "0")}
        async with s.post(url + "/v1/cases/status", json=codes) as r:
            out["status"] = r.status
        async with s.post(url + "/v1/cases/withdraw", json=codes) as r:
            out["withdraw"] = r.status
        async with s.post(url + "/add-checkpoint", data=b"old 0\n\nnot.a.log/x\n1\nAAAA\n") as r:
            out["add-checkpoint"] = r.status
        out["seconds"] = time.monotonic() - began
    return out


async def test_the_issues_eight_slow_bodies_from_one_address(helpline):
    url = helpline.public_url
    attack = asyncio.gather(*(slow_body(url, "127.0.0.1") for _ in range(8)))
    await asyncio.sleep(0.5)
    served = await person_and_witness(url)
    results = await attack
    statuses = sorted(status for status, _ in results)
    assert statuses == [408, 408] + [429] * 6, results   # two slots per address, then cut for being slow
    assert all(seconds < 5 for status, seconds in results if status == 408), results
    assert all(seconds < 1 for status, seconds in results if status == 429), results
    assert served["create"] == 201 and served["status"] == 200 and served["withdraw"] == 200, served
    assert served["add-checkpoint"] not in (408, 429, 503), served
    # A declared body above the route's cap is refused before a byte of it is read.
    reader, writer = await connect(url, "127.0.0.1")
    writer.write(head("POST", "/v1/cases", url, Content_Type="application/json", Content_Length="5000000"))
    status, _, body = await read_answer(reader, 5)
    writer.close()
    assert status == 413 and b"524288" in body


async def test_fifty_addresses_of_one_network_hold_four_slots(helpline):
    url = helpline.public_url
    attack = asyncio.gather(*(slow_body(url, f"127.0.0.{i}") for i in range(2, 52)))
    await asyncio.sleep(0.5)
    served = await person_and_witness(url)
    results = [status for status, _ in await attack]
    assert results.count(408) == 4 and results.count(429) == 46, results
    assert served["create"] == 201 and served["status"] == 200 and served["withdraw"] == 200, served


async def test_many_networks_fill_the_case_pool_for_seconds_yet_a_whole_body_is_still_read(helpline):
    url = helpline.public_url
    # 4 per /24 from 20 networks: 80 slow bodies for the 64 slots of POST /v1/cases,
    # and as many on the status route (whose pool is 1,024 wide).
    attack = asyncio.gather(*(slow_body(url, f"127.0.{net}.{host}") for net in range(1, 21) for host in range(2, 6)))
    attack_status = asyncio.gather(*(slow_body(url, f"127.1.{net}.{host}", "/v1/cases/status", 4000)
                                     for net in range(1, 21) for host in range(2, 6)))
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.9.9", 0))) as s:
        # The case pool is full, for the seconds the slow bodies last; a body that has
        # arrived whole needs no slot, so the person's case is opened all the same.
        async with s.post(url + "/v1/cases", json=case_body()) as r:
            assert r.status == 201, await r.text()
        reader, writer = await connect(url, "127.0.9.10")  # a body not yet whole waits for a slot: none
        writer.write(head("POST", "/v1/cases", url, Content_Type="application/json", Content_Length="100") + b"{")
        assert (await read_answer(reader, 5))[0] == 503
        writer.close()
        async with s.post(url + "/v1/cases/status", json={"case_number": "7K2Q-M9XD-4TPA-RW3V",
                                                           "pin": "12345678"}) as r:
            assert r.status == 401, await r.text()  # read and judged (wrong codes): its pool had room
    results = [status for status, _ in await attack]
    assert results.count(408) == 64 and results.count(503) == 16, results
    assert [status for status, _ in await attack_status].count(408) == 80
    # Slow bodies are cut within seconds: the case pool is free again.
    served = await person_and_witness(url)
    assert served["create"] == 201 and served["status"] == 200 and served["withdraw"] == 200, served
