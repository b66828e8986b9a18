#!/usr/bin/env python3
"""Benchmark: one real platform node following N = 100, 250, 500 real logs (issue 22).

    .venv/bin/python scripts/bench_follow_many.py [--sizes 100,250,500] [--idle 20] [--load 30] [--rate 1]

The logs are lightweight but real: genuine tlog-tiles logs (tests/follow_support.py
StaticLog: every checkpoint signed with the log's own Ed25519 key, every tile and
entry bundle built by protocol/), each served over HTTP on its own loopback address
(127.77.x.y, one port), with /node.json advertising the push channel and a push
channel that answers a waiting GET as soon as the log publishes (If-None-Match, 304
after the wait) -- what a real helpline node offers. Two server processes hold them.

The platform is a real `ncii-node serve` process (init --role platform), following
every log with its key pinned, signing every request with its request key, verifying
every checkpoint, tile and entry, storing them in SQLite, indexing them for matching,
and acknowledging what it applied in its own log.

Per N, printed:
  catch-up   time from the node's start until it verified every log (3 entries each)
  idle CPU   the node's CPU (% of one core) while nothing is published (--idle s, default
             60: two rounds of 30-s push waits)
  load CPU   the same while the logs publish --rate new entries per second in all,
             each to a log chosen at random (--load s)
  apply p50/p99/max   from a log's publication of an entry to the node's verification
             of a checkpoint covering it (followed_checkpoints.verified_at)
  RSS, fds   of the node at the end of the load; requests/s to the logs while idle
  errors     requests the logs answered with an error, the node's ERROR lines, and
             entries not applied within 20 s of the end of the load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
PYTHON = sys.executable
LOG_PORT = 18843
INITIAL_ENTRIES = 3
SERVERS = 2


def address(i: int) -> str:
    return f"127.77.{i // 200}.{i % 200 + 1}"


# ---------------------------------------------------------------------- the logs (server processes)

def serve_logs(first: int, count: int, seed: int) -> None:
    """A server process: logs first..first+count-1, each on its own address; a control
    site on 127.0.0.1 (POST /append?log=i, GET /stats). Prints one JSON line when ready."""
    from aiohttp import web

    from follow_support import StaticLog
    from protocol.entries import Submission, encode_entry
    from protocol.note import Signer

    rng = random.Random(seed)

    def entry() -> bytes:
        return encode_entry(Submission("pdq", rng.randbytes(32), 90, (), 0))

    logs: dict[str, StaticLog] = {}
    changed: dict[str, asyncio.Event] = {}
    stats = {"requests": 0, "errors": 0, "push_200": 0, "push_304": 0}

    def etag(note: bytes) -> str:
        return '"' + hashlib.sha256(note).hexdigest()[:32] + '"'

    for i in range(first, first + count):
        origin = f"log{i}.bench.example/log"
        log = StaticLog(origin, Signer.generate(origin))
        log.append(*[entry() for _ in range(INITIAL_ENTRIES)])
        logs[f"{address(i)}:{LOG_PORT}"] = log
        changed[origin] = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        log = logs.get(request.host)
        path = request.path.lstrip("/")
        if log is None:
            stats["errors"] += 1
            return web.Response(status=404, text="no such log")
        if path == "checkpoint":
            return web.Response(body=log.note, content_type="text/plain")
        if path == "node.json":
            return web.json_response({"origin": log.origin, "role": "helpline", "verifier_key": log.vkey,
                                      "push": {"checkpoint": "push/checkpoint", "max_wait": 30}})
        if path == "push/checkpoint":
            wait = min(30, max(1, int(request.query.get("wait", "30"))))
            deadline = time.monotonic() + wait
            while request.headers.get("If-None-Match") == etag(log.note):
                event = changed[log.origin]
                try:
                    await asyncio.wait_for(event.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    stats["push_304"] += 1
                    return web.Response(status=304, headers={"ETag": etag(log.note)})
            stats["push_200"] += 1
            return web.Response(body=log.note, content_type="text/plain", headers={"ETag": etag(log.note)})
        data = log.files.get(path)
        if data is None:
            stats["errors"] += 1
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def append(request: web.Request) -> web.Response:
        log = logs[f"{address(int(request.query['log']))}:{LOG_PORT}"]
        log.append(entry())
        published = time.time()
        event = changed[log.origin]
        event.set()
        changed[log.origin] = asyncio.Event()
        return web.json_response({"origin": log.origin, "index": len(log.entries) - 1, "published": published})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        for host in logs:
            await web.TCPSite(runner, host.split(":")[0], LOG_PORT, backlog=256).start()
        control = web.Application()
        control.router.add_post("/append", append)
        control.router.add_get("/stats", get_stats)
        control_runner = web.AppRunner(control, handle_signals=False, access_log=None)
        await control_runner.setup()
        site = web.TCPSite(control_runner, "127.0.0.1", 0)
        await site.start()
        port = control_runner.addresses[0][1]
        print(json.dumps({"control": f"http://127.0.0.1:{port}",
                          "logs": {log.origin: [f"http://{host}", log.vkey] for host, log in logs.items()}}),
              flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------------- the driver

def cli(*argv: str) -> None:
    subprocess.run([PYTHON, "-m", "node", *argv], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def start_servers(n: int):
    """SERVERS processes holding n logs; returns (processes, controls, {origin: (url, vkey)})."""
    processes, controls, logs = [], [], {}
    share = -(-n // SERVERS)
    for k in range(SERVERS):
        first, count = k * share, min(share, n - k * share)
        if count <= 0:
            continue
        process = subprocess.Popen([PYTHON, __file__, "--serve-logs", str(first), str(count), str(k)],
                                   stdout=subprocess.PIPE, cwd=ROOT, text=True)
        processes.append(process)
    for process in processes:
        ready = json.loads(process.stdout.readline())
        controls.append(ready["control"])
        logs.update({origin: tuple(v) for origin, v in ready["logs"].items()})
    return processes, controls, logs


def log_index(origin: str) -> int:
    return int(origin.split(".")[0][3:])


def sizes(db_path: Path) -> dict[str, int]:
    from node.store import connect

    db = connect(db_path)
    try:
        return dict(db.execute("SELECT origin, size FROM followed_logs").fetchall())
    finally:
        db.close()


def cpu_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure(n: int, work: Path, idle: float, load: float, rate: float) -> dict:
    import aiohttp
    import psutil

    from node.datadir import DataDir
    from node.store import open_db

    servers, controls, logs = start_servers(n)
    platform = work / f"platform-{n}"
    node = None
    try:
        cli("init", "--dir", str(platform), "--origin", f"platform-{n}.bench.example/log", "--role", "platform")
        db = open_db(DataDir(platform).db_path)
        try:
            with db.atomic():
                for origin, (url, vkey) in logs.items():
                    db.follow.add_log(origin, url, vkey, origin.split(".")[0])
        finally:
            db.close()
        db_path = DataDir(platform).db_path
        stderr = open(work / f"platform-{n}.log", "w")
        started = time.monotonic()
        node = subprocess.Popen([PYTHON, "-m", "node", "serve", "--dir", str(platform), "--port", "0"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        proc = psutil.Process(node.pid)
        while True:
            await asyncio.sleep(0.5)
            held = sizes(db_path)
            if sum(1 for s in held.values() if s >= INITIAL_ENTRIES) == n:
                break
            if node.poll() is not None or time.monotonic() - started > 600:
                raise RuntimeError(f"the node did not catch up ({sum(1 for s in held.values() if s)} of {n})")
        catch_up = time.monotonic() - started
        await asyncio.sleep(10)  # every push channel open

        async with aiohttp.ClientSession() as session:
            async def stats() -> dict:
                total: dict[str, int] = {}
                for control in controls:
                    async with session.get(control + "/stats") as response:
                        for key, value in (await response.json()).items():
                            total[key] = total.get(key, 0) + value
                return total

            before, cpu0, t0 = await stats(), cpu_seconds(proc), time.monotonic()
            await asyncio.sleep(idle)
            after, cpu1, t1 = await stats(), cpu_seconds(proc), time.monotonic()
            idle_cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
            idle_requests = (after["requests"] - before["requests"]) / (t1 - t0)

            rng = random.Random(n)
            published = []
            origins = sorted(logs)
            share = -(-n // SERVERS)
            cpu0, t0 = cpu_seconds(proc), time.monotonic()
            next_at = t0
            while time.monotonic() - t0 < load:
                i = log_index(rng.choice(origins))
                async with session.post(f"{controls[i // share]}/append?log={i}") as response:
                    published.append(await response.json())
                next_at += 1 / rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            cpu1, t1 = cpu_seconds(proc), time.monotonic()
            load_cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
            rss, fds = proc.memory_info().rss, proc.num_fds()
            server_errors = (await stats())["errors"]

        from node.store import connect

        latencies, missing = [], 0
        deadline = time.monotonic() + 20
        pending = list(published)
        while pending and time.monotonic() < deadline:
            db = connect(db_path)
            try:
                still = []
                for item in pending:
                    at = db.follow.verified_at(item["origin"], item["index"])
                    if at is None:
                        still.append(item)
                    else:
                        latencies.append(at - item["published"])
            finally:
                db.close()
            pending = still
            if pending:
                await asyncio.sleep(0.5)
        missing = len(pending)
        errors_logged = sum(1 for line in (work / f"platform-{n}.log").read_text().splitlines() if " ERROR " in line)
        latencies.sort()

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

        return {"n": n, "catch_up": catch_up, "idle_cpu": idle_cpu, "load_cpu": load_cpu,
                "p50": pct(0.5), "p99": pct(0.99), "max": latencies[-1] if latencies else float("nan"),
                "applied": len(latencies), "rss_mb": rss / 2**20, "fds": fds, "idle_rps": idle_requests,
                "server_errors": server_errors, "errors_logged": errors_logged, "missing": missing}
    finally:
        if node is not None:
            node.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(60)
        for server in servers:
            server.kill()
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,250,500")
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--load", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--work", help="keep the data directories here (default: a temporary directory)")
    parser.add_argument("--serve-logs", nargs=3, type=int, metavar=("FIRST", "COUNT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_logs:
        serve_logs(*args.serve_logs)
        return 0
    print(f"load before: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} "
          f"on {os.cpu_count()} cores; idle {args.idle:g} s, load {args.load:g} s at {args.rate:g} entries/s")
    print(f"{'N':>5} {'catch-up':>9} {'idle CPU':>9} {'load CPU':>9} {'apply p50/p99/max':>22} {'RSS':>7} "
          f"{'fds':>5} {'idle req/s':>10}  errors")
    with tempfile.TemporaryDirectory(prefix="bench-follow-many-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in (int(s) for s in args.sizes.split(",")):
            r = asyncio.run(measure(n, work, args.idle, args.load, args.rate))
            errors = r["server_errors"] + r["errors_logged"] + r["missing"]
            detail = "" if not errors else (f"  (logs answered {r['server_errors']} errors, node logged "
                                            f"{r['errors_logged']} ERROR lines, {r['missing']} entries not applied)")
            print(f"{r['n']:>5} {r['catch_up']:>8.1f}s {r['idle_cpu']:>8.1f}% {r['load_cpu']:>8.1f}% "
                  f"{r['p50']:>6.2f}/{r['p99']:>5.2f}/{r['max']:>5.2f} s {r['rss_mb']:>5.0f}MB {r['fds']:>5} "
                  f"{r['idle_rps']:>10.1f}  {errors}{detail}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
