#!/usr/bin/env python3
"""Figures of issue 17's stops and outages on PostgreSQL (a throwaway cluster,
tests/pg_support.py), with the machine's load printed before and after:

  1. stops at random moments of start-up and lease take-over: --stops processes of
     one node (witness, then helpline role), in this one event loop as `serve` runs
     them, each stopped a random delay or a few loop iterations after it took the
     lease; the stop times (median, 95th percentile, max; the bound is 10 s), with
     --hogs CPU-bound processes running meanwhile (load, as in a full test run);
  2. PostgreSQL goes away under a serving process (`pg_ctl stop -m immediate`) and
     comes back: seconds until /healthz says 503, the answer time of an append during
     the outage, seconds from the server's return until the process sequences again
     and until an append is acknowledged, and the time SIGTERM takes during an outage.

    .venv/bin/python scripts/bench_pg_stop.py                 # 40 stops, 2 CPU hogs
    .venv/bin/python scripts/bench_pg_stop.py --stops 100 --hogs 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from multi_support import ADMIN, ServeProcess, request, shared_datadir, submission  # noqa: E402
from node.store import open_db  # noqa: E402
from node.web.server import RunningNode  # noqa: E402
from pg_support import PgCluster  # noqa: E402
from publish_support import make_datadir  # noqa: E402
from test_cases_cycle import wait_for  # noqa: E402
from test_pg_stop import _random_moment  # noqa: E402


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {ordered[len(ordered) // 2]:.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"


async def random_stops(cluster: PgCluster, folder: Path, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    times = []
    for role in ("witness", "helpline"):
        url = cluster.create_database()
        datadir = make_datadir(folder, name=role, origin=f"{role}.example/log", database=url)
        config = datadir.config
        config.node.role = role
        datadir.save_config(config)
        holder = await RunningNode(datadir).start("127.0.0.1", 0)
        for i in range(count // 2):
            if i % 2:  # a take-over: the holder stops, the other is stopped while it takes over
                other = await RunningNode(datadir).start("127.0.0.1", 0)
                await holder.stop()
                node = other
            else:      # a process alone, its sequencing parts starting in the background
                await holder.stop()
                node = await RunningNode(datadir).start("127.0.0.1", 0)
            await _random_moment(node, rng)
            started = time.monotonic()
            await node.stop()
            times.append(time.monotonic() - started)
            holder = await RunningNode(datadir).start("127.0.0.1", 0)
        await holder.stop()
    return times


def append(process: ServeProcess, i: int) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = request(process.admin_url + "/admin/append", json.dumps(submission(i)).encode(),
                        {**ADMIN, "Authorization": f"Bearer {process.admin_token}"}, timeout=60)
    return status, time.monotonic() - started


def outage(folder: Path) -> dict:
    cluster = PgCluster()
    process = None
    figures = {}
    try:
        cluster.start()
        cluster.execute("CREATE DATABASE outage")
        process = ServeProcess(shared_datadir(folder, cluster.url_of("outage")), "outage").start()
        assert all(append(process, i)[0] == 200 for i in range(5))
        started = time.monotonic()
        cluster.halt()
        wait_for("503", lambda: (h := process.health()) and h["status"] == "unavailable", timeout=30, step=0.05)
        figures["healthz 503 after the server went"] = time.monotonic() - started
        status, took = append(process, 100)
        assert status == 503, status
        figures["an append during the outage answered 503 in"] = took
        time.sleep(3)
        started = time.monotonic()
        cluster.resume()
        wait_for("sequencing", lambda: (h := process.health()) and h["status"] == "ok" and h["sequencer"],
                 timeout=60, step=0.05)
        figures["sequencing again after the server's return"] = time.monotonic() - started
        status, _ = append(process, 200)
        assert status == 200, status
        figures["an append acknowledged after the server's return"] = time.monotonic() - started
        cluster.halt()
        wait_for("503", lambda: (h := process.health()) and h["status"] == "unavailable", timeout=30, step=0.05)
        started = time.monotonic()
        process.process.terminate()
        process.process.wait(60)
        figures["SIGTERM during an outage: the process exited after"] = time.monotonic() - started
    finally:
        if process is not None:
            process.kill()
        cluster.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stops", type=int, default=40)
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes while the stops run")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    print(f"load before: {uptime()}")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        cluster = PgCluster().start()
        cluster.prepare_template(lambda url: open_db(url).close())
        try:
            with tempfile.TemporaryDirectory() as folder:
                times = asyncio.run(random_stops(cluster, Path(folder), args.stops, args.seed))
        finally:
            cluster.stop()
        print(f"load during the stops: {uptime()}")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"1. {len(times)} stops at random moments of start-up and take-over (seed {args.seed}, {args.hogs} CPU "
          f"hogs): {spread(times)} (bound 10 s)")
    with tempfile.TemporaryDirectory() as folder:
        figures = outage(Path(folder))
    print("2. PostgreSQL goes away (pg_ctl stop -m immediate) and comes back, one serving process:")
    for what, seconds in figures.items():
        print(f"   {what}: {seconds:.2f} s")
    print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
