#!/usr/bin/env python3
"""Benchmark: appends through a `serve` process that does not sequence (PostgreSQL, two
processes on one database; issue 17), against a baseline checkout in the same run.

Such a process stores each append in `pending_entries`, tells the sequencing process,
and waits until a recorded checkpoint includes it. --clients concurrent clients send
one entry per request to it for --seconds; printed: appends/s, the latency p50/p99,
that process's CPU, and the database's transactions per append (pg_stat_database:
every statement outside a transaction is one), which shows how often the waiting
appends look at the database.

    .venv/bin/python scripts/bench_pg_shared.py --code /tmp/main   # `git archive main` unpacked there

PostgreSQL: a throwaway cluster (tests/pg_support.py, fsync=off). The load average is
printed before and after: the machine's 2 cores are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from bench_publish import percentile  # noqa: E402
from pg_support import PgCluster  # noqa: E402


def start_serve(code: Path, root: Path) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ, PYTHONPATH=str(code))
    proc = subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(root), "--port", "0"],
                            cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        assert proc.poll() is None, "serve exited"
        try:
            info = json.loads((root / "serve.json").read_text())
        except (FileNotFoundError, ValueError):
            info = {}
        if info.get("pid") == proc.pid:
            return proc, info
        time.sleep(0.05)


def transactions(cluster: PgCluster, name: str) -> int:
    import psycopg

    with psycopg.connect(cluster.url, autocommit=True) as conn:
        return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                            (name,)).fetchone()[0]


async def drive(url: str, token: str, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}

    async def client() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
            while time.monotonic() < deadline:
                body = json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": secrets.token_hex(32)})
                started = time.monotonic()
                async with session.post(url + "/admin/append", data=body + "\n", headers=headers) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                latencies.append(time.monotonic() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def run(cluster: PgCluster, number: int, code: Path, label: str, args) -> None:
    name = f"shared{number}"
    cluster.execute(f"CREATE DATABASE {name}")
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-shared-"))
    root = folder / "node"
    env = dict(os.environ, PYTHONPATH=str(code))
    subprocess.run([sys.executable, "-m", "node", "init", "--dir", str(root), "--origin", "bench.example/log",
                    "--public-read", "--database", cluster.url_of(name)], cwd=code, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    procs = []
    try:
        procs.append(start_serve(code, root))   # takes the lease: it sequences
        time.sleep(1.0)
        procs.append(start_serve(code, root))   # does not
        other, info = procs[1]
        token = (root / "admin.token").read_text().strip()
        cpu = psutil.Process(other.pid)
        cpu.cpu_percent()
        before = transactions(cluster, name)
        started = time.monotonic()
        latencies = asyncio.run(drive(info["admin_url"], token, args.clients, args.seconds))
        elapsed = time.monotonic() - started
        used = cpu.cpu_percent()
        spent = transactions(cluster, name) - before
        print(f"{label}: {len(latencies):,} appends through the process that does not sequence, {args.clients} "
              f"clients, {elapsed:.1f} s: {len(latencies) / elapsed:,.0f}/s; latency p50 "
              f"{percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms; its CPU "
              f"{used:.0f} % of a core; database transactions {spent / max(len(latencies), 1):.1f} per append "
              f"(both processes)")
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(30)
        subprocess.run(["rm", "-rf", str(folder)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--code", type=Path, help="a baseline checkout, measured first")
    parser.add_argument("--rounds", type=int, default=1, help="baseline and this checkout, alternately")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    cluster = PgCluster().start()
    try:
        number = 0
        for _ in range(args.rounds):
            for code, label in ([(args.code, f"baseline {args.code}")] if args.code else []) + [(ROOT, "this checkout")]:
                run(cluster, number, code, label, args)
                number += 1
    finally:
        cluster.stop()
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
