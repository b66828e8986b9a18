"""Issue 12, point 2: nobody can open unlimited cases. Against a real `ncii-node serve`,
clients bound to loopback addresses of their own: per-case caps, the per-address,
per-network and node-wide limits (429, Retry-After, a kind message in French and
English), the proof of work asked above the usual rate, the operator's clean-up
(`ncii-node cases withdraw`, withdrawals with reason `abuse`) and the creation rate in
`ncii-node status`."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time

import aiohttp
import pytest

from node.cases.eligibility import QUESTIONS

from node.cases.pow import solve
from protocol.entries import Withdrawal, decode_entry
from publish_support import helpline_datadir, read_log
from serve_support import NodeProcess, connect, head, read_answer

pytestmark = pytest.mark.timeout(120)

ELIGIBLE = dict.fromkeys(QUESTIONS, True)  # every eligibility question answered yes


def photos(n: int) -> list[dict]:
    return [{"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(n)]


def video(frames: int) -> list[dict]:
    return [{"signal": "md5", "fingerprint": secrets.token_hex(16)},
            {"signal": "vpdq", "fingerprint": [{"pdq": secrets.token_hex(32), "quality": 90, "timestamp": float(i)}
                                              for i in range(frames)]}]


def helpline(tmp_path, **cases) -> NodeProcess:
    return NodeProcess(helpline_datadir(tmp_path, **cases))


async def open_case(url: str, source: str, fingerprints: list[dict] | None = None, lang: str = "fr",
                    proof: dict | None = None) -> tuple[int, dict, dict]:
    body = {"eligibility": ELIGIBLE, "fingerprints": fingerprints or photos(3), "lang": lang}
    if proof is not None:
        body["proof_of_work"] = proof
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as session:
        async with session.post(url + "/v1/cases", json=body) as r:
            return r.status, await r.json(), dict(r.headers)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=60)


async def test_caps_sized_for_real_people(tmp_path):
    node = helpline(tmp_path)
    await node.start()
    try:
        url = node.public_url
        # A case at every cap: 50 photos, 10 videos, 3,600 frames in all; its body fits the 512 KiB cap.
        at_caps = photos(50) + [fp for i in range(10) for fp in video(360)]
        body = json.dumps({"eligibility": ELIGIBLE, "fingerprints": at_caps, "lang": "en"})
        assert len(body) < 512 * 1024
        status, answer, _ = await open_case(url, "127.0.0.2", at_caps)
        assert status == 201 and answer["fingerprints"] == 70, answer
        for too_much, says in ((photos(51), "at most 50 photos"), (video(1770) + video(1770) + video(61),
                                                                    "at most 3600 video frames")):
            status, answer, _ = await open_case(url, "127.0.1.2", too_much, lang="en")
            assert status == 400 and says in answer["error"], answer
        # A body declared above 512 KiB is refused before it is read.
        reader, writer = await connect(url, "127.0.2.2")
        writer.write(head("POST", "/v1/cases", url, Content_Type="application/json", Content_Length="600000"))
        status, _, body = await read_answer(reader, 5)
        writer.close()
        assert status == 413 and b"524288" in body
    finally:
        node.stop()


async def test_layered_limits_refuse_kindly_and_store_nothing(tmp_path):
    node = helpline(tmp_path, per_network_per_hour=5, per_hour=8, proof_of_work_above_per_hour=1000)
    await node.start()
    try:
        url = node.public_url
        for _ in range(3):
            assert (await open_case(url, "127.0.0.2"))[0] == 201
        status, answer, headers = await open_case(url, "127.0.0.2")  # the 4th from one address this hour
        assert status == 429 and answer["reason"] == "address" and answer["locked"] is False
        assert 3500 <= int(headers["Retry-After"]) <= 3600 and answer["retry_after"] == int(headers["Retry-After"])
        assert "Rien n'a été enregistré" in answer["error"] and "vos images restent sur votre appareil" in answer["error"]
        status, answer, _ = await open_case(url, "127.0.0.2", lang="en")
        assert status == 429 and "Nothing was registered" in answer["error"] and "60 minute(s)" in answer["error"]
        # Other addresses of the same /24: two more, then the network is full.
        assert (await open_case(url, "127.0.0.3"))[0] == 201
        assert (await open_case(url, "127.0.0.4"))[0] == 201
        status, answer, _ = await open_case(url, "127.0.0.5")
        assert status == 429 and answer["reason"] == "network"
        # Other networks, until the node's hourly budget (8) is spent.
        for net in range(1, 4):
            assert (await open_case(url, f"127.0.{net}.2"))[0] == 201
        status, answer, _ = await open_case(url, "127.0.9.2", lang="en")
        assert status == 429 and answer["reason"] == "hour-budget"
        assert "receiving many more requests than usual" in answer["error"]
    finally:
        node.stop()
    report = json.loads(cli("status", "--dir", str(node.datadir.root), "--json").stdout)["cases"]
    assert report["created_this_hour"] == report["created_last_24_hours"] == 8
    assert report["states"]["active"] == 8 and report["states"]["pending"] == 0  # nothing stored for a refusal
    assert report["refused_last_24_hours"] == {"address": 2, "network": 1, "budget": 1}
    text = cli("status", "--dir", str(node.datadir.root)).stdout
    assert "opened         8 this hour (UTC; budget 8/hour)" in text


async def test_the_budget_survives_a_restart(tmp_path):
    node = helpline(tmp_path, per_hour=2, proof_of_work_above_per_hour=1000)
    await node.start()
    try:
        for net in range(1, 3):
            assert (await open_case(node.public_url, f"127.0.{net}.2"))[0] == 201
        node.stop()
        await node.start()
        status, answer, _ = await open_case(node.public_url, "127.0.5.2")
        assert status == 429 and answer["reason"] == "hour-budget"
    finally:
        node.stop()


async def test_proof_of_work_is_asked_above_the_usual_rate(tmp_path):
    node = helpline(tmp_path, proof_of_work_above_per_hour=2, proof_of_work_bits=12)
    await node.start()
    try:
        url = node.public_url
        for net in range(1, 3):  # the usual rate: no proof asked
            assert (await open_case(url, f"127.0.{net}.2"))[0] == 201
        status, answer, _ = await open_case(url, "127.0.3.2", lang="en")
        assert status == 428 and "short computation" in answer["error"]
        challenge = answer["proof_of_work"]
        assert challenge["algorithm"] == "sha256-leading-zero-bits" and challenge["bits"] == 12
        proof = {"challenge": challenge["challenge"], "nonce": solve(challenge["challenge"], 12)}
        status, created, _ = await open_case(url, "127.0.3.2", proof=proof)
        assert status == 201, created
        status, answer, _ = await open_case(url, "127.0.4.2", proof=proof, lang="en")  # one proof, one case
        assert status == 428 and "used for another case" in answer["error"]
        lazy = {"challenge": answer["proof_of_work"]["challenge"], "nonce": "0" * 16}
        status, answer, _ = await open_case(url, "127.0.4.2", proof=lazy, lang="en")
        assert status in (201, 428)  # a nonce of zeros is a valid proof once in 4,096 challenges
        if status == 428:
            assert "not done" in answer["error"]
    finally:
        node.stop()


async def test_the_operator_withdraws_a_flood_as_abuse(tmp_path):
    node = helpline(tmp_path, proof_of_work_above_per_hour=1000)
    await node.start()
    try:
        url = node.public_url
        status, before, _ = await open_case(url, "127.0.50.2")
        assert status == 201
        await asyncio.sleep(1.2)
        flood_from = time.time()
        flood = [await open_case(url, f"127.0.{net}.2") for net in range(1, 7)]
        assert all(status == 201 for status, _, _ in flood)
        flood_to = time.time()
        await asyncio.sleep(1.2)
        status, after, _ = await open_case(url, "127.0.51.2")
        assert status == 201
        root, window = str(node.datadir.root), ("--from", _iso(flood_from), "--to", _iso(flood_to))
        dry = cli("cases", "withdraw", "--dir", root, *window, "--dry-run")
        assert dry.returncode == 0 and "would withdraw 6 case(s), 18 entries" in dry.stdout, dry
        done = cli("cases", "withdraw", "--dir", root, *window)
        assert done.returncode == 0 and "withdrew 6 case(s), 18 entries" in done.stdout, done
        async with aiohttp.ClientSession() as session:
            view = await read_log(session, url, node.datadir.load_log_signer().verifier_key(),
                                  origin="helpline.example/log")
            async def status_of(case):
                codes = {"case_number": case["case_number"], "pin": case["pin"]}
                async with session.post(url + "/v1/cases/status", json=codes) as r:
                    return await r.json()
            flooded = await status_of(flood[0][1])
            assert flooded["state"] == "withdrawn" and flooded["withdrawn_at"]["by"] == "helpline"
            assert (await status_of(before))["state"] == (await status_of(after))["state"] == "active"
        withdrawals = [decode_entry(e) for e in view.entries if isinstance(decode_entry(e), Withdrawal)]
        assert {w.reason for w in withdrawals} == {"abuse"}
        flood_indices = {p["index"] for _, case, _ in flood for p in case["published"]}
        assert {t for w in withdrawals for t in w.targets} == flood_indices
        again = cli("cases", "withdraw", "--dir", root, *window)
        assert "withdrew 0 case(s)" in again.stdout  # nothing left to withdraw there
    finally:
        node.stop()


def _iso(t: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def test_windows_slide_and_say_when_there_is_room_again():
    from node.cases.creation import CreationLimiter
    from node.config import CasesSection

    limiter = CreationLimiter(CasesSection(per_address_per_hour=2, per_address_per_day=3, per_network_per_hour=10,
                                           per_network_per_day=10))
    for t in (0, 600):
        assert limiter.refusal("192.0.2.1", t) is None
        limiter.admit("192.0.2.1", t)
    assert limiter.refusal("192.0.2.1", 1000).retry_after == 2600  # the case of t=0 leaves the hour at 3600
    assert limiter.refusal("192.0.2.2", 1000) is None  # another address of the same /24
    assert limiter.refusal("2001:db8::1", 1000) is None
    ticket = limiter.admit("192.0.2.1", 3700)  # t=0 left the hour
    limiter.give_back(ticket)  # its creation failed: it does not count
    limiter.admit("192.0.2.1", 3700)
    refusal = limiter.refusal("192.0.2.1", 7300)  # 3 in 24 hours
    assert refusal.reason == "address" and refusal.retry_after == 86400 - 7300


def test_a_proof_is_bound_to_its_challenge_and_its_node():
    from node.cases.pow import ProofOfWork, ProofOfWorkError

    pow_, other = ProofOfWork(8), ProofOfWork(8)
    challenge = pow_.challenge(1000)["challenge"]
    proof = {"challenge": challenge, "nonce": solve(challenge, 8)}
    for bad, says in (({"challenge": challenge}, "must be"), ({**proof, "nonce": "XYZ"}, "16 lowercase hex"),
                      ({**proof, "challenge": challenge[:-2] + ("AA" if challenge[-2:] != "AA" else "BB")},
                       "not given by this node")):
        with pytest.raises(ProofOfWorkError, match=says):
            pow_.check(bad, 1000)
    with pytest.raises(ProofOfWorkError, match="not given by this node"):
        other.check(proof, 1000)  # another node's (or before a restart)
    with pytest.raises(ProofOfWorkError, match="expired"):
        pow_.check(proof, 1000 + 601)
    pow_.check(proof, 1000)
    with pytest.raises(ProofOfWorkError, match="used for another case"):
        pow_.check(proof, 1001)
