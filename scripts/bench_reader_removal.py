#!/usr/bin/env python3
"""Benchmark: how soon a reader removed with `ncii-node readers remove` loses its open push
stream, and what watching for removals costs a node whose followers hold streams.

    .venv/bin/python scripts/bench_reader_removal.py [--readers 1000] [--streams 200]
        [--removals 10] [--seconds 20] [--baseline DIR]

A real restricted helpline (`ncii-node serve`, SQLite) with --readers registered readers,
--streams of which hold a push stream (`GET /push/stream?wait=30`, signed, from this
process). Then:

  * idle: the node's CPU over --seconds while the streams are open (nothing published),
    and the same for the code in --baseline (e.g. `git archive main`, which does not
    watch for removals), started the same way in the same run;
  * removal: --removals times, one reader holding a stream is removed by the command in
    a process of its own; the time from the command's return until that stream ended
    (the node looks every READER_CHECK_INTERVAL, 0.5 s); the other streams stay open;
  * the look itself, in this process: which of the --streams readers holding a stream
    are still registered among --readers (what each process does twice a second while
    anything waits), median of 200.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_support import PYTHON, serving  # noqa: E402

ORIGIN = "bench-helpline.example/log"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_readers(root: Path, count: int):
    """`count` request keys registered in the helpline's database (through the store,
    as `readers add` does, without an interpreter per key)."""
    from node.datadir import DataDir
    from node.readaccess import RequestSigner, request_key_id
    from node.store import open_db

    signers = [RequestSigner.from_seed(f"reader{i}.example", os.urandom(32)) for i in range(count)]
    db = open_db(DataDir(root).db_path)
    try:
        for signer in signers:
            db.readers.add_reader(signer.keyid, "", request_key_id(signer.keyid))
    finally:
        db.close()
    return signers


async def open_stream(session, base: str, signer):
    url = base + "/push/stream?wait=30"
    response = await session.get(url, headers=signer.sign_headers("GET", url))
    assert response.status == 200, response.status
    await response.content.readline()  # the first frame's header: the stream is open
    return response


async def until_eof(response) -> float:
    """The moment the stream ended."""
    while await response.content.read(65536):
        pass
    return time.monotonic()


async def idle_cpu(info: dict, signers, seconds: float) -> tuple[float, int]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams = await asyncio.gather(*(open_stream(session, info["public_url"], s) for s in signers))
        await asyncio.sleep(1)
        before = cpu_seconds(info["pid"])
        await asyncio.sleep(seconds)
        used = cpu_seconds(info["pid"]) - before
        still_open = sum(not r.content.at_eof() for r in streams)
        for response in streams:
            response.close()
    return 100 * used / seconds, still_open


async def removals(root: Path, info: dict, signers, count: int) -> list[tuple[float, float, float]]:
    """Per removal: (stream ended - command exited, stream ended - command started, the
    command's run time)."""
    import aiohttp

    delays = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams, opened = [], 0.0
        for k in range(count):
            if time.monotonic() - opened > 20:  # streams end after wait = 30 s: open them again
                for response in filter(None, streams):
                    response.close()
                streams = [None] * k + list(await asyncio.gather(
                    *(open_stream(session, info["public_url"], s) for s in signers[k:])))
                opened = time.monotonic()
            ended = asyncio.create_task(until_eof(streams[k]))
            started = time.monotonic()
            command = await asyncio.create_subprocess_exec(
                PYTHON, "-m", "node", "readers", "remove", "--dir", str(root), signers[k].keyid, cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            assert await command.wait() == 0
            returned = time.monotonic()
            end = await asyncio.wait_for(ended, 30)
            delays.append((end - returned, end - started, returned - started))  # < 0: before the command had exited
            others = sum(not r.content.at_eof() for r in streams[k + 1:])
            assert others == len(streams) - k - 1, "a stream of a reader not removed ended"
        for response in streams[count:]:
            response.close()
    return delays


def look_cost(root: Path, holders: set[str]) -> float:
    from node.datadir import DataDir
    from node.store import open_db

    db = open_db(DataDir(root).db_path)
    try:
        times = []
        for _ in range(200):
            start = time.perf_counter()
            removed = holders - db.readers.registered(holders)
            times.append(time.perf_counter() - start)
        assert not removed or len(removed) < len(holders)
        return statistics.median(times)
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--removals", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. `git archive main`) to compare idle CPU")
    args = parser.parse_args()
    assert args.removals <= args.streams <= args.readers
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "helpline"
        subprocess.run([PYTHON, "-m", "node", "init", "--dir", str(root), "--origin", ORIGIN], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        signers = make_readers(root, args.readers)
        holders = signers[:args.streams]
        runs = [("this code", None)] + ([("baseline", args.baseline)] if args.baseline else [])
        for label, source in runs:
            with serving(root, source=source) as info:
                cpu, still_open = asyncio.run(idle_cpu(info, holders, args.seconds))
            print(f"idle, {args.streams} streams open, {args.readers} readers registered, {label}: node CPU "
                  f"{cpu:.2f} % of a core over {args.seconds:.0f} s ({still_open} streams still open)", flush=True)
        with serving(root) as info:
            delays = asyncio.run(removals(root, info, holders, args.removals))
        after_exit, after_start, runs = zip(*delays)
        print(f"removal -> stream ended, {args.removals} removals: p50 {statistics.median(after_exit):.2f} s, "
              f"max {max(after_exit):.2f} s after the command's process exited (negative: it ended while the "
              f"interpreter was still exiting); {statistics.median(after_start):.2f} / {max(after_start):.2f} s "
              f"after it started (the command itself ran {statistics.median(runs):.2f} s, p50); every other stream "
              "stayed open")
        cost = look_cost(root, {s.keyid for s in holders})
        print(f"one look ({args.streams} holders looked up among {args.readers} readers): {cost * 1000:.2f} ms; "
              f"twice a second: {cost * 2 * 100:.3f} % of a core")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
