#!/usr/bin/env python3
"""Benchmark: time from a withdrawal appended at a helpline until a platform has applied it.

    .venv/bin/python scripts/bench_withdrawal.py [--count 100] [--work DIR]

Two real nodes as separate processes, both with DEFAULT settings (sequencing every
1 s at the helpline; the platform's follower polls every 1 s): a restricted helpline
log (the platform's request key registered as a reader) with 1,000 submissions, and a
platform that follows it (`ncii-node follow add`, then `ncii-node serve`). Then, one at
a time, after a random pause of 0-1 s (so appends fall at every phase of both timers):

    t0     POST /admin/append {"kind": "withdrawal", "targets": [i]} to the helpline
    t_ack  the helpline answers: a published checkpoint includes the withdrawal
    t1     the platform's database shows entry i withdrawn (polled every 5 ms)

Prints p50/p99/max of t1 - t0 (from the append request) and t1 - t_ack (from
publication). Target: p99 <= 2 s with default settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
ORIGIN = "bench-helpline.example/log"


def cli(*argv: str) -> None:
    subprocess.run([PYTHON, "-m", "node", *argv], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def start(datadir: Path) -> tuple[subprocess.Popen, dict]:
    from node.datadir import DataDir

    process = subprocess.Popen([PYTHON, "-m", "node", "serve", "--dir", str(datadir), "--port", "0"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = DataDir(datadir).read_serve_info()
        if info and info.get("pid") == process.pid:
            return process, info
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the node in {datadir} did not start")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run(helpline: Path, platform_db: Path, admin_url: str, token: str, count: int) -> list[tuple[float, float]]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    db = sqlite3.connect(f"file:{platform_db}?mode=ro", uri=True, isolation_level=None)

    def size() -> int:
        row = db.execute("SELECT size FROM followed_logs WHERE origin = ?", (ORIGIN,)).fetchone()
        return row[0] if row else 0

    def withdrawn(index: int) -> bool:
        row = db.execute("SELECT withdrawn FROM fingerprints WHERE origin = ? AND idx = ?", (ORIGIN, index)).fetchone()
        return bool(row and row[0])

    async with aiohttp.ClientSession() as session:
        lines = "".join(json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i + 1:064x}"}) + "\n"
                        for i in range(1000))
        async with session.post(admin_url + "/admin/append", data=lines.encode(), headers=headers) as r:
            assert r.status == 200, await r.text()
        deadline = time.monotonic() + 60
        while size() < 1000:
            if time.monotonic() > deadline:
                raise SystemExit("the platform did not catch up with the helpline's 1,000 submissions")
            await asyncio.sleep(0.05)
        print("platform follows the helpline's 1,000 submissions; measuring withdrawals", flush=True)

        rng = random.Random(7)
        timings = []
        for i in range(count):
            await asyncio.sleep(rng.uniform(0, 1))
            body = json.dumps({"kind": "withdrawal", "targets": [i]}) + "\n"
            t0 = time.monotonic()
            async with session.post(admin_url + "/admin/append", data=body.encode(), headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()
            t_ack = time.monotonic()
            while not withdrawn(i):
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"withdrawal of entry {i} not applied after 30 s")
                await asyncio.sleep(0.005)
            t1 = time.monotonic()
            timings.append((t1 - t0, t1 - t_ack))
            if (i + 1) % 20 == 0:
                print(f"  {i + 1} withdrawals measured", flush=True)
    db.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-withdrawal-"))
    helpline, platform = work / "helpline", work / "platform"
    if helpline.exists() or platform.exists():
        print(f"{work} is not empty; give a new --work", file=sys.stderr)
        return 1
    cli("init", "--dir", str(helpline), "--origin", ORIGIN)
    cli("init", "--dir", str(platform), "--origin", "bench-platform.example/log", "--role", "platform")

    from node.datadir import DataDir

    cli("readers", "add", "--dir", str(helpline), DataDir(platform).load_request_signer().verifier_key())
    helpline_process, info = start(helpline)
    platform_process = None
    try:
        cli("follow", "add", "--dir", str(platform), info["public_url"], "--vkey",
            DataDir(helpline).load_log_signer().verifier_key())
        platform_process, _ = start(platform)
        timings = asyncio.run(run(helpline, DataDir(platform).db_path, info["admin_url"],
                                  DataDir(helpline).admin_token(), args.count))
    finally:
        for process in (platform_process, helpline_process):
            if process is not None:
                process.terminate()
                process.wait(30)
    from_append = [t[0] for t in timings]
    from_ack = [t[1] for t in timings]
    for name, values in (("append request -> applied", from_append), ("published (ack) -> applied", from_ack)):
        print(f"{name:28s} p50 {statistics.median(values) * 1000:6.0f} ms   p99 {percentile(values, 99) * 1000:6.0f} ms"
              f"   max {max(values) * 1000:6.0f} ms   (n = {len(values)})")
    p99 = percentile(from_append, 99)
    print(f"target p99 <= 2 s (from the append request): {'met' if p99 <= 2 else 'NOT met'} ({p99:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
