#!/usr/bin/env python3
"""Attack a real helpline's intake the way issue 12 did, and print what gets through.

Starts `ncii-node serve` (a fresh helpline, default settings: production scrypt, 1 s
sequencing, the default creation limits) and, from loopback addresses of their own
(a client binds 127.0.x.y):

1. sends the issue's slow bodies: 8 connections POSTing Content-Length: 400000 to
   /v1/cases and sending a byte every 2 s, reconnecting at once when answered, from
   one address, then one connection from each of 50 addresses of one /24;
2. floods POST /v1/cases with cases at every per-case cap (50 photos, 10 videos,
   3,600 frames) from ONE address (6 clients), from 50 addresses of ONE /24, then
   from 50 /24 networks (one address each) that also do the proof of work when
   asked -- for --seconds each;

and, all the while, people elsewhere open cases (each from a network of their own,
doing the proof of work when asked, as the page does) and check one every 4 s. Prints: cases accepted per hour per address and in total, the
storage the node gained per accepted case and so per hour at the worst allowed rate,
and the latency and outcome of the person's creations and status checks.

    .venv/bin/python scripts/attack_intake.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ELIGIBLE = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
PERSON = "127.0.250.2"


def max_case() -> dict:
    """A case at every per-case cap, in the JSON the page sends."""
    frames = lambda: [{"pdq": secrets.token_hex(32), "quality": 90, "timestamp": float(i)} for i in range(360)]
    fingerprints = [{"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(50)]
    for _ in range(10):
        fingerprints += [{"signal": "md5", "fingerprint": secrets.token_hex(16)},
                         {"signal": "vpdq", "fingerprint": frames()}]
    return {"eligibility": ELIGIBLE, "fingerprints": fingerprints, "lang": "en"}


def small_case() -> dict:
    return {"eligibility": ELIGIBLE, "lang": "en",
            "fingerprints": [{"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(3)]}


def storage(root: Path) -> int:
    """The data directory's size, the database's write-ahead log first moved into it
    (so that the figure is what stays, not what is in flight)."""
    import sqlite3

    db = sqlite3.connect(root / "node.db", timeout=30)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def entry_bytes(root: Path) -> int:
    import sqlite3

    db = sqlite3.connect(root / "node.db")
    try:
        return db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM log_entries").fetchone()[0]
    finally:
        db.close()


async def post_case(url: str, source: str, body: dict, solve_pow: bool = False) -> tuple[int, dict]:
    import aiohttp

    from node.cases.pow import solve

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as session:
        async with session.post(url + "/v1/cases", json=body) as r:
            status, data = r.status, await r.json()
        if status == 428 and solve_pow:
            challenge = data["proof_of_work"]
            proof = {"challenge": challenge["challenge"],
                     "nonce": await asyncio.to_thread(solve, challenge["challenge"], challenge["bits"])}
            async with session.post(url + "/v1/cases", json={**body, "proof_of_work": proof}) as r:
                status, data = r.status, await r.json()
        return status, data


async def flood(url: str, sources: list[str], seconds: float, clients_per_source: int = 1,
                solve_pow: bool = False) -> collections.Counter:
    body = max_case()
    outcomes: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds

    async def client(source: str):
        while time.monotonic() < deadline:
            try:
                status, data = await post_case(url, source, body, solve_pow)
            except Exception as exc:  # a refused connection is an outcome too
                outcomes[type(exc).__name__] += 1
                await asyncio.sleep(0.2)
                continue
            # a 429 without a reason: the client's share of bodies read at once (publishing.md 1.1)
            outcomes[f"{status} {data.get('reason', 'share')}" if status == 429 else str(status)] += 1
            if status != 201:
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client(s) for s in sources for _ in range(clients_per_source)))
    return outcomes


async def slow_body(host: str, port: int, source: str, seconds: float, path: str = "/v1/cases",
                    length: int = 400_000) -> tuple[str, float]:
    """The issue's slow body: declare `length` bytes, then send one every 2 s. Returns
    the node's status ("closed" or "no answer" within `seconds`) and how long it took.
    (tests/test_abuse_bodies.py sends it too.)"""
    began = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError as exc:
        return type(exc).__name__, time.monotonic() - began
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {length}\r\n\r\n{{".encode())

    async def trickle():
        try:
            while True:
                await asyncio.sleep(2)
                writer.write(b" ")
                await writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    task = asyncio.ensure_future(trickle())
    try:
        line = await asyncio.wait_for(reader.readline(), seconds)
        status = line.split()[1].decode() if line else "closed"
    except (TimeoutError, ConnectionError, IndexError):
        status = "no answer"
    finally:
        task.cancel()
        writer.close()
    return status, time.monotonic() - began


async def slow_bodies(url: str, sources: list[str], per_source: int, seconds: float) -> collections.Counter:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    outcomes: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds

    async def keep_going(source: str):  # reconnect as soon as answered, as the issue's attacker did
        while time.monotonic() < deadline:
            outcomes[(await slow_body(host, int(port), source, deadline - time.monotonic() + 5))[0]] += 1

    await asyncio.gather(*(keep_going(s) for s in sources for _ in range(per_source)))
    return outcomes


class People:
    """Real people elsewhere while an attack runs: every 4 s someone new (an address in
    a /24 of their own) opens a case, and the owner of an earlier case checks it."""

    def __init__(self, url: str, codes: dict):
        self.url, self.codes = url, codes
        self.create: list[tuple[int, float]] = []
        self.status: list[tuple[int, float]] = []
        self.next_person = 0

    async def run(self, stop: asyncio.Event):
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(PERSON, 0))) as owner:
            while not stop.is_set():
                People.count += 1
                source = f"127.{100 + People.count // 200}.{People.count % 200}.2"
                began = time.perf_counter()
                status, _ = await post_case(self.url, source, small_case(), solve_pow=True)  # as the page does
                self.create.append((status, time.perf_counter() - began))
                People.opened += status == 201
                began = time.perf_counter()
                async with owner.post(self.url + "/v1/cases/status", json=self.codes) as r:
                    await r.read()
                    self.status.append((r.status, time.perf_counter() - began))
                try:
                    await asyncio.wait_for(stop.wait(), 4)
                except TimeoutError:
                    pass

    def report(self, what: str) -> str:
        def summary(rows):
            if not rows:
                return "none"
            times = sorted(t for _, t in rows)
            return (f"{dict(collections.Counter(s for s, _ in rows))}, p50 {statistics.median(times):.2f} s, "
                    f"max {times[-1]:.2f} s")
        out = f"  people elsewhere, during {what}: creations {summary(self.create)}; status checks {summary(self.status)}"
        self.create, self.status = [], []
        return out


People.count = People.opened = 0  # people who tried, cases they opened (3 photos each: a few KiB)


async def during(url: str, codes: dict, what: str, attack) -> tuple:
    person, stop = People(url, codes), asyncio.Event()
    watcher = asyncio.ensure_future(person.run(stop))
    result = await attack
    stop.set()
    await watcher
    return result, person.report(what)


async def run(args) -> int:
    from bench_support import serving

    from node.cli import main as cli_main

    tmp = Path(tempfile.mkdtemp(prefix="attack-intake-"))
    try:
        root = tmp / "helpline"
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            assert cli_main(["init", "--dir", str(root), "--origin", "helpline.example/log"]) == 0
        with serving(root) as info:
            await attack(info["public_url"], root, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


async def attack(url: str, root: Path, args) -> None:
    from node.config import CasesSection

    limits = CasesSection()
    print(f"helpline {url}: default settings (limits per hour/day: address {limits.per_address_per_hour}/"
          f"{limits.per_address_per_day}, /24 {limits.per_network_per_hour}/{limits.per_network_per_day}, node "
          f"{limits.per_hour}/{limits.per_day}; proof of work above {limits.proof_of_work_above_per_hour}/hour, "
          f"{limits.proof_of_work_bits} bits); each flood lasts {args.seconds:g} s with cases at every cap")
    status, owner_case = await post_case(url, PERSON, small_case())
    assert status == 201, owner_case
    codes = {"case_number": owner_case["case_number"], "pin": owner_case["pin"]}
    slow_one, report = await during(url, codes, "8 slow bodies from one address",
                                    slow_bodies(url, ["127.0.3.2"], 8, args.seconds))
    print(f"8 slow bodies from one address, reconnecting: answers {dict(slow_one)}")
    print(report)
    slow_net, report = await during(url, codes, "slow bodies from 50 addresses of one /24",
                                    slow_bodies(url, [f"127.0.4.{i}" for i in range(2, 52)], 1, args.seconds))
    print(f"slow bodies from 50 addresses of one /24, reconnecting: answers {dict(slow_net)}")
    print(report)
    base_storage, base_entries = storage(root), entry_bytes(root)
    People.opened = 0
    one, report = await during(url, codes, "the flood from one address", flood(url, ["127.0.1.2"], args.seconds, 6))
    print(f"flood from 1 address, 6 clients: {dict(one)}")
    print(report)
    subnet, report = await during(url, codes, "the flood from 50 addresses of one /24",
                                  flood(url, [f"127.0.2.{i}" for i in range(2, 52)], args.seconds))
    print(f"flood from 50 addresses of one /24 (127.0.2.2-51): {dict(subnet)}")
    print(report)
    wide, report = await during(url, codes, "the flood from 50 networks", flood(
        url, [f"127.0.{n}.2" for n in range(10, 60)], args.seconds, solve_pow=True))
    print(f"flood from 50 networks (127.0.10-59.2), solving the proof of work when asked: {dict(wide)}")
    print(report)
    accepted = sum(n for outcomes in (one, subnet, wide) for key, n in outcomes.items() if key == "201")
    await asyncio.sleep(2)
    grown, entries = storage(root) - base_storage, entry_bytes(root) - base_entries
    per_case, per_case_entries = grown / max(1, accepted), entries / max(1, accepted)
    print(f"accepted: {one['201']} from one address, {subnet['201']} from one /24, {wide['201']} from 50 "
          f"networks -- {accepted} in all (by the limits: at most {limits.per_address_per_hour} per address "
          f"and {limits.per_network_per_hour} per /24 an hour, {limits.per_hour} an hour and {limits.per_day} "
          f"a day for the node); people elsewhere opened {People.opened}")
    print(f"storage: the helpline grew {grown / 2**20:.1f} MiB ({per_case / 1024:.0f} KiB a case: entries "
          f"{per_case_entries / 1024:.0f} KiB; the rest entry bundles on disk, each checkpoint's partial one "
          f"kept, and tables; the people's {People.opened} small cases counted in); every follower copies "
          "the entries; "
          f"at the worst allowed rate: {per_case * limits.per_hour / 2**20:.0f} MiB an hour, "
          f"{per_case * limits.per_day / 2**20:.0f} MiB a day on the helpline, "
          f"{per_case_entries * limits.per_day / 2**20:.0f} MiB a day of entries in each follower "
          "(before: 400 MB in 32 s, about 1 TB a day)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each attack (default 20)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
