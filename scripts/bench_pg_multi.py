#!/usr/bin/env python3
"""Benchmark: several `serve` processes of one node on one PostgreSQL database (issue 17),
against one process, and against SQLite where the comparison applies, in the same run.

  1. case creations/s: SQLite (one process), PostgreSQL with one process, with two
     (the clients split between them); --clients concurrent clients, 10 PDQ
     fingerprints a case, PIN hashes at scrypt n=2^10 (bench_pg.py's settings);
  2. takeover after kill -9 of the sequencing process (--kills times, appends
     flowing): kill -> the other process holds the lease (its /healthz), and kill ->
     an append sent to the other at the moment of the kill is acknowledged (published);
  3. batch match queries/s at --fingerprints PDQ fingerprints of one followed log:
     SQLite one process, PostgreSQL one process, two processes; batches of 1,000,
     --match-clients concurrent clients (with two processes, half on each).

PostgreSQL: a throwaway cluster (tests/pg_support.py, fsync=off: read the case ratios
with that in mind, as bench_pg.py says). The machine's load is printed before and
after: on a shared machine, two processes compete with everything else for the cores.

    .venv/bin/python scripts/bench_pg_multi.py                       # 1,000,000 fingerprints
    .venv/bin/python scripts/bench_pg_multi.py --phases match --fingerprints 10000000
"""

from __future__ import annotations

import argparse
import asyncio
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
import numpy as np  # noqa: E402

from bench_cases import YES, lift_creation_limits, run_load  # noqa: E402
from bench_publish import percentile  # noqa: E402
from multi_support import ServeProcess, run_ncii, shared_datadir, submission  # noqa: E402
from pg_support import PgCluster  # noqa: E402
from test_cases_cycle import wait_for as cycle_wait_for  # noqa: E402

ORIGIN = "bench.example/helpline"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def sqlite_datadir(folder: Path, role: str) -> Path:
    root = folder / "node"
    run_ncii("init", "--dir", str(root), "--origin", "bench.example/log", "--role", role, "--public-read")
    from node.datadir import DataDir
    lift_creation_limits(root)
    datadir = DataDir(root)
    config = datadir.config
    config.cases.pin_scrypt_n = 2 ** 10
    config.push.enabled = False
    datadir.save_config(config)
    return root


# ------------------------------------------------------------------ 1. case creations

def case_creations(processes: list[ServeProcess], args) -> float:
    async def run() -> int:
        timeout = aiohttp.ClientTimeout(total=120)
        sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(
            local_addr=(f"127.0.0.{10 + i}", 0))) for i in range(args.clients)]
        urls = {id(s): processes[i % len(processes)].public_url for i, s in enumerate(sessions)}

        async def create(session) -> bool:
            body = {"eligibility": YES, "fingerprints": [
                {"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(10)]}
            async with session.post(urls[id(session)] + "/v1/cases", json=body) as r:
                await r.read()
                return r.status == 201

        try:
            count, _ = await run_load(f"  {len(processes)} process(es)", args.case_seconds, sessions, create)
            return count
        finally:
            for session in sessions:
                await session.close()

    started = time.monotonic()
    count = asyncio.run(run())
    return count / (time.monotonic() - started)


# ------------------------------------------------------------------ 2. takeover

def takeover(root: Path, args) -> tuple[list[float], list[float]]:
    processes = [ServeProcess(root, "a").start(), ServeProcess(root, "b").start()]
    lease_times, ack_times = [], []
    counter = iter(range(10 ** 9))
    try:
        for _ in range(args.kills):
            victim = wait_for(lambda: next((p for p in processes if (p.health() or {}).get("sequencer")), None), 15)
            for _ in range(20):  # appends flowing through the sequencer before the kill
                victim.append(submission(next(counter)))
            survivor = next(p for p in processes if p is not victim)
            killed = time.monotonic()
            victim.kill()
            acked = {}

            def send():
                acked["ack"] = survivor.append(submission(next(counter)), timeout=30)
                acked["at"] = time.monotonic()

            import threading
            sender = threading.Thread(target=send)
            sender.start()
            wait_for(lambda: (survivor.health() or {}).get("sequencer"), 15)
            lease_times.append(time.monotonic() - killed)
            sender.join(60)
            assert acked.get("ack"), "the append sent at the kill was not acknowledged"
            ack_times.append(acked["at"] - killed)
            victim.start()
    finally:
        for process in processes:
            process.stop()
    return lease_times, ack_times


def wait_for(probe, timeout: float):
    return cycle_wait_for("the processes", probe, timeout, step=0.01)


# ------------------------------------------------------------------ 3. batch matching

def fill_fingerprints(target, n: int, rng: np.random.Generator) -> None:
    """N random PDQ fingerprints of one followed log, written straight into the table
    the index is built from (COPY on PostgreSQL, one transaction on SQLite)."""
    started = time.perf_counter()
    leaf = b"\x00" * 32
    chunk = 250_000
    from node.store import is_postgres, open_db
    if is_postgres(target):
        from node.store.pg import raw_connection
        with raw_connection(target) as conn:
            with conn.transaction():
                with conn.cursor().copy("COPY fingerprints (origin, idx, signal, fingerprint, quality, labels, day, "
                                        "leaf_hash) FROM STDIN") as copy:
                    for start in range(0, n, chunk):
                        block = rng.integers(0, 256, (min(chunk, n - start), 32), dtype=np.uint8)
                        for i in range(len(block)):
                            copy.write_row((ORIGIN, start + i, "pdq", block[i].tobytes(), 90, "", 0, leaf))
            conn.execute("ANALYZE fingerprints")
    else:
        db = open_db(target)
        db.conn.execute("BEGIN")
        for start in range(0, n, chunk):
            block = rng.integers(0, 256, (min(chunk, n - start), 32), dtype=np.uint8)
            db.conn.executemany("INSERT INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, "
                                "leaf_hash) VALUES (?, ?, 'pdq', ?, 90, '', 0, ?)",
                                ((ORIGIN, start + i, block[i].tobytes(), leaf) for i in range(len(block))))
        db.conn.execute("COMMIT")
        db.close()
    print(f"  {n:,} fingerprints written in {time.perf_counter() - started:.1f} s", flush=True)


def batch_matching(processes: list[ServeProcess], args, rng: np.random.Generator) -> float:
    token = (processes[0].root / "match.token").read_text().strip()
    for process in processes:  # the index is built in the background at start
        wait_for(lambda: (process.health() or {}).get("checks", {}).get("match_index"), 600)
    batches = [{"fingerprints": [{"signal": "pdq", "fingerprint": rng.integers(0, 256, 32, dtype=np.uint8)
                                  .tobytes().hex()} for _ in range(1000)]} for _ in range(args.batches)]

    async def run() -> float:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            async def batch(url, body):
                async with session.post(url + "/v1/match", headers=headers, json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            for process in processes:
                await batch(process.admin_url, batches[0])  # warm-up
            clients = [processes[i % len(processes)].admin_url for i in range(args.match_clients)]

            async def client(url):
                for body in batches:
                    await batch(url, body)

            started = time.perf_counter()
            await asyncio.gather(*(client(url) for url in clients))
            return 1000 * len(batches) * len(clients) / (time.perf_counter() - started)

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--fingerprints", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--match-clients", type=int, default=2)
    parser.add_argument("--phases", default="cases,takeover,match",
                        help="which of cases,takeover,match to run")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    rng = np.random.default_rng(17)
    print(f"load before: {uptime()}", flush=True)
    cluster = PgCluster()
    work = Path(tempfile.mkdtemp(prefix="bench-pg-multi-"))
    results: dict[str, object] = {}
    try:
        cluster.start()
        from node.store import open_db
        cluster.prepare_template(lambda url: open_db(url).close())

        if "cases" in phases:
            cases_phase(work, cluster, args, results)
        if "takeover" in phases:
            print(f"2. takeover after kill -9 of the sequencing process ({args.kills} times)", flush=True)
            results["takeover"] = takeover(shared_datadir(work / "takeover", cluster.create_database()), args)
        if "match" in phases:
            match_phase(work, cluster, args, rng, results)
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(work)])

    print()
    if "cases" in phases:
        print(f"case creations/s:  SQLite 1 process {results['cases_sqlite']:.1f};  PostgreSQL 1 process "
              f"{results['cases_pg_1']:.1f}, 2 processes {results['cases_pg_2']:.1f} "
              f"(x{results['cases_pg_2'] / results['cases_pg_1']:.2f})")
    if "takeover" in phases:
        lease_times, ack_times = results["takeover"]
        print(f"takeover after kill -9 ({len(lease_times)} kills): lease held by the other in p50 "
              f"{percentile(lease_times, 50):.2f} s, max {max(lease_times):.2f} s; an append sent at the kill "
              f"acknowledged in p50 {percentile(ack_times, 50):.2f} s, max {max(ack_times):.2f} s (target <= 5 s)")
    if "match" in phases:
        print(f"batch match queries/s at {args.fingerprints:,}:  SQLite 1 process {results['match_sqlite']:,.0f};  "
              f"PostgreSQL 1 process {results['match_pg_1']:,.0f}, 2 processes {results['match_pg_2']:,.0f} "
              f"(x{results['match_pg_2'] / results['match_pg_1']:.2f})")
    print(f"load after: {uptime()}  ({os.cpu_count()} cores)")
    return 0


def cases_phase(work: Path, cluster: PgCluster, args, results: dict) -> None:
    print(f"1. case creations/s ({args.clients} clients, {args.case_seconds:.0f} s each)", flush=True)
    root = sqlite_datadir(work / "cases-sqlite", "helpline")
    one = ServeProcess(root, "sqlite").start()
    try:
        results["cases_sqlite"] = case_creations([one], args)
    finally:
        one.stop()
    for count in (1, 2):
        root = shared_datadir(work / f"cases-pg-{count}", cluster.create_database())
        processes = [ServeProcess(root, chr(97 + i)).start() for i in range(count)]
        try:
            results[f"cases_pg_{count}"] = case_creations(processes, args)
        finally:
            for process in processes:
                process.stop()


def match_phase(work: Path, cluster: PgCluster, args, rng: np.random.Generator, results: dict) -> None:
    from node.datadir import DataDir
    print(f"3. batch match queries/s at {args.fingerprints:,} fingerprints "
          f"({args.match_clients} clients, batches of 1,000)", flush=True)
    root = sqlite_datadir(work / "match-sqlite", "platform")
    fill_fingerprints(DataDir(root).db_path, args.fingerprints, rng)
    one = ServeProcess(root, "sqlite").start()
    try:
        results["match_sqlite"] = batch_matching([one], args, rng)
    finally:
        one.stop()
    url = cluster.create_database()
    fill_fingerprints(url, args.fingerprints, rng)
    root = shared_datadir(work / "match-pg", url, role="platform")
    for count in (1, 2):
        processes = [ServeProcess(root, f"{count}{chr(97 + i)}").start() for i in range(count)]
        try:
            results[f"match_pg_{count}"] = batch_matching(processes, args, rng)
        finally:
            for process in processes:
                process.stop()


if __name__ == "__main__":
    sys.exit(main())
