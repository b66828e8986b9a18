#!/usr/bin/env python3
"""Benchmark: time from a withdrawal appended at a helpline until a platform has applied
it, with the push channel and with polling only; and time from `follow add` until the
first entries are verified.

    .venv/bin/python scripts/bench_withdrawal.py [--count 100] [--work DIR] [--mode push|polling|both]

Two real nodes as separate processes with DEFAULT settings (the helpline publishes at
once when idle; the platform waits on the helpline's push channel, or polls every 1 s
when the helpline does not offer it: `[push] enabled = false`, the "polling" mode): a
restricted helpline log (the platform's request key registered as a reader) with 1,000
submissions, and a platform node already serving. Then:

    `ncii-node follow add` on the platform (run in this process, so no interpreter
    start is counted); t1 = the platform's database holds all 1,000 entries (polled
    every 5 ms), measured from the command's start and end.

and, one at a time, after a random pause of 0-1 s (so appends fall at every phase of
any timer):

    t0     POST /admin/append {"kind": "withdrawal", "targets": [i]} to the helpline
    t_ack  the helpline answers: a published checkpoint includes the withdrawal
    t1     the platform's database shows entry i withdrawn (polled every 5 ms); the
           matcher dropped it before that commit (spec/parts/following.md section 5)

Prints p50/p99/max of t1 - t0 (from the append request) and t1 - t_ack (from
publication), per mode. Targets (issue 18): with push, p99 <= 250 ms from the append
request; first entries verified <= 1 s after `follow add`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
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
                               stdout=subprocess.DEVNULL, stderr=open(datadir.parent / f"{datadir.name}.log", "w"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = DataDir(datadir).read_serve_info()
        if info and info.get("pid") == process.pid:
            return process, info
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the node in {datadir} did not start")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class PlatformView:
    """The platform's database, read-only, as the benchmark polls it."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def size(self) -> int:
        try:
            row = self.db.execute("SELECT size FROM followed_logs WHERE origin = ?", (ORIGIN,)).fetchone()
        except sqlite3.OperationalError:  # the table does not exist yet
            return 0
        return row[0] if row else 0

    def withdrawn(self, index: int) -> bool:
        row = self.db.execute("SELECT withdrawn FROM fingerprints WHERE origin = ? AND idx = ?",
                              (ORIGIN, index)).fetchone()
        return bool(row and row[0])


async def measure(view: PlatformView, admin_url: str, token: str, count: int) -> list[tuple[float, float]]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(7)
    timings = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            await asyncio.sleep(rng.uniform(0, 1))
            body = json.dumps({"kind": "withdrawal", "targets": [i]}) + "\n"
            t0 = time.monotonic()
            async with session.post(admin_url + "/admin/append", data=body.encode(), headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()
            t_ack = time.monotonic()
            while not view.withdrawn(i):
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"withdrawal of entry {i} not applied after 30 s")
                await asyncio.sleep(0.005)
            t1 = time.monotonic()
            timings.append((t1 - t0, t1 - t_ack))
            if (i + 1) % 25 == 0:
                print(f"  {i + 1} withdrawals measured", flush=True)
    return timings


async def append_submissions(admin_url: str, token: str, count: int) -> None:
    import aiohttp

    lines = "".join(json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i + 1:064x}"}) + "\n"
                    for i in range(count))
    async with aiohttp.ClientSession() as session:
        async with session.post(admin_url + "/admin/append", data=lines.encode(),
                                headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()


def run_mode(work: Path, mode: str, count: int) -> dict:
    from node.datadir import DataDir

    helpline, platform = work / mode / "helpline", work / mode / "platform"
    cli("init", "--dir", str(helpline), "--origin", ORIGIN)
    cli("init", "--dir", str(platform), "--origin", "bench-platform.example/log", "--role", "platform")
    if mode == "polling":
        config = DataDir(helpline).config
        config.push.enabled = False
        DataDir(helpline).save_config(config)
    cli("readers", "add", "--dir", str(helpline), DataDir(platform).load_request_signer().verifier_key())
    processes = []
    try:
        helpline_process, info = start(helpline)
        processes.append(helpline_process)
        asyncio.run(append_submissions(info["admin_url"], DataDir(helpline).admin_token(), 1000))
        platform_process, _ = start(platform)
        processes.append(platform_process)
        view = PlatformView(DataDir(platform).db_path)
        # In this process, so that the figure is the command's work (store the log, tell
        # the running node), not the start of a Python interpreter.
        from node.cli import main as cli_main

        started = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli_main(["follow", "add", "--dir", str(platform), info["public_url"], "--vkey",
                             DataDir(helpline).load_log_signer().verifier_key()]) == 0
        returned = time.monotonic()
        while view.size() < 1000:
            if time.monotonic() - started > 60:
                raise SystemExit("the platform did not catch up with the helpline's 1,000 submissions")
            time.sleep(0.005)
        verified = time.monotonic()
        print(f"[{mode}] follow add -> 1,000 entries verified: {verified - returned:.2f} s after the command "
              f"returned ({verified - started:.2f} s after it started); measuring {count} withdrawals", flush=True)
        timings = asyncio.run(measure(view, info["admin_url"], DataDir(helpline).admin_token(), count))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
    return {"follow_add": (verified - returned, verified - started), "timings": timings}


def report(mode: str, result: dict) -> float:
    from_append = [t[0] for t in result["timings"]]
    from_ack = [t[1] for t in result["timings"]]
    print(f"{mode}:")
    for name, values in (("append request -> applied", from_append), ("published (ack) -> applied", from_ack)):
        print(f"  {name:28s} p50 {statistics.median(values) * 1000:6.0f} ms   "
              f"p99 {percentile(values, 99) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms   "
              f"(n = {len(values)})")
    after_return, after_start = result["follow_add"]
    print(f"  follow add -> first 1,000 entries verified: {after_return:.2f} s after the command returned "
          f"({after_start:.2f} s after it started)")
    return percentile(from_append, 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--mode", choices=("push", "polling", "both"), default="both")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-withdrawal-"))
    if work.exists() and any(work.iterdir()):
        print(f"{work} is not empty; give a new --work", file=sys.stderr)
        return 1
    modes = ("push", "polling") if args.mode == "both" else (args.mode,)
    results = {mode: run_mode(work, mode, args.count) for mode in modes}
    print()
    p99 = {mode: report(mode, result) for mode, result in results.items()}
    if "push" in p99:
        follow_add = results["push"]["follow_add"][0]
        print(f"target p99 <= 250 ms with push (from the append request): "
              f"{'met' if p99['push'] <= 0.25 else 'NOT met'} ({p99['push'] * 1000:.0f} ms)")
        print(f"target first entries verified <= 1 s after follow add: "
              f"{'met' if follow_add <= 1 else 'NOT met'} ({follow_add:.2f} s after the command returned)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
