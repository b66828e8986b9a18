#!/usr/bin/env python3
"""Benchmark: a node on PostgreSQL against the same node on SQLite, in the same run.

For each backend, a fresh node (`ncii-node init`, with `--database` for PostgreSQL) served
by a real `ncii-node serve` process:

  1. appends: single-entry appends at random times (--light-rate/s for --light-seconds):
     latency append -> published checkpoint (p50, p99); then --rate entries/s offered
     for --seconds: the sustained rate acknowledged (scripts/bench_publish.py's driver);
  2. case creations/s, one serve process, --clients concurrent clients, 10 PDQ
     fingerprints each, PIN hashes at scrypt n=2^10 so that the store's cost shows
     (production's n=2^15 costs ~100 ms of CPU per case on both backends alike);
  3. follower catch-up: a log of --entries entries built with the real sequencer and
     served from that backend (public reads; --signed: signed reads by a registered
     reader, checked), followed by a real follower
     (node/follow, SQLite follower database), verification and storage included;
     with --code DIR, the same log is also served by that checkout's code (a baseline)
     and followed again, in the same run; on PostgreSQL the database transactions
     of each catch-up are counted (pg_stat_database).

PostgreSQL: a throwaway cluster (tests/pg_support.py: Debian's PostgreSQL 15, default
settings, fsync on like SQLite's synchronous=FULL; --no-fsync for the tests' setting)
unless --pg-url names a server.

    .venv/bin/python scripts/bench_pg.py                  # 10 s phases, 100,000 entries
    .venv/bin/python scripts/bench_pg.py --entries 1000000
    .venv/bin/python scripts/bench_pg.py --only follow --code /work/base   # old vs this code, same run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

import aiohttp  # noqa: E402
import psutil  # noqa: E402

import bench_follow  # noqa: E402
from bench_cases import YES, lift_creation_limits, run_load  # noqa: E402
from bench_publish import Fingerprints, drive, percentile  # noqa: E402
from bench_support import append_with_sequencer, serving  # noqa: E402

PYTHON = sys.executable


def init(root: Path, origin: str, database: str | None, *extra: str, public: bool = True) -> None:
    argv = [PYTHON, "-m", "node", "init", "--dir", str(root), "--origin", origin, *extra]
    if public:
        argv.append("--public-read")
    if database:
        argv += ["--database", database]
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def appends(root: Path, args) -> dict:
    from node.datadir import DataDir

    token = DataDir(root).admin_token()
    fingerprints, rng = Fingerprints(), random.Random(18)
    light, t = [], 0.0
    while (t := t + rng.expovariate(args.light_rate)) < args.light_seconds:
        light.append((t, fingerprints.body(1)))
    per_request = max(1, round(args.rate * 0.05))
    heavy = [(r * 0.05, fingerprints.body(per_request)) for r in range(round(args.seconds / 0.05))]
    with serving(root) as info:
        latencies, errors, *_ = asyncio.run(drive(info["admin_url"], token, light))
        light_ms = [s * 1000 for s, n in latencies for _ in range(n)]
        heavy_result = asyncio.run(drive(info["admin_url"], token, heavy))
    latencies, heavy_errors, start, offered_end, _ = heavy_result
    acked = sum(n for _, n in latencies)
    return {"p50_ms": percentile(light_ms, 50), "p99_ms": percentile(light_ms, 99),
            "light_failed": len(errors), "sustained_per_s": acked / (offered_end - start + 0.05),
            "offered": per_request * len(heavy), "acked": acked, "failed_requests": len(heavy_errors)}


def cases(root: Path, args) -> dict:
    from node.datadir import DataDir

    lift_creation_limits(root)
    datadir = DataDir(root)
    config = datadir.config
    config.cases.pin_scrypt_n = 2 ** 10
    datadir.save_config(config)

    async def run(url: str):
        timeout = aiohttp.ClientTimeout(total=120)
        sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(
            local_addr=(f"127.0.0.{10 + i}", 0))) for i in range(args.clients)]

        async def create(session) -> bool:
            body = {"eligibility": YES, "fingerprints": [
                {"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(10)]}
            async with session.post(url + "/v1/cases", json=body) as r:
                await r.read()
                return r.status == 201

        try:
            return await run_load("  case creations", args.case_seconds, sessions, create)
        finally:
            for session in sessions:
                await session.close()

    with serving(root) as info:
        started = time.monotonic()
        count, latencies = asyncio.run(run(info["public_url"]))
        elapsed = time.monotonic() - started
    return {"per_s": count / elapsed, "p99_ms": percentile(latencies, 99) * 1000 if latencies else None}


def catch_ups(work: Path, database: str, args, pg_cpu) -> dict:
    """Build the log once on each backend, then follow it from scratch as served by each
    checkout to measure (this one, and --code's): a fresh follower each time; the
    backends and the codes take turns over --repeat rounds, in alternate order, so that
    a change of the machine's load falls on all of them alike. {backend: figures}.
    `pg_cpu()`: CPU seconds the PostgreSQL server has used so far (its processes, live
    and ended). The serving CPU -- the serve process, plus PostgreSQL's -- depends far
    less on the machine's load than the seconds do."""
    from node.datadir import DataDir
    from protocol.entries import Submission, encode_entry

    rng = random.Random(1)
    entries = [encode_entry(Submission("pdq", rng.randbytes(32), 90, (), 20000)) for _ in range(args.entries)]
    logs, out = {}, {}
    for backend, target in (("sqlite", None), ("postgresql", database)):
        helpline = work / backend / "helpline"
        init(helpline, bench_follow.ORIGIN, target, public=not args.signed)
        print(f"{backend}: building the log of {args.entries:,} entries ...", flush=True)
        out[backend] = {"build_s": append_with_sequencer(helpline, entries)}
        logs[backend] = (helpline, target, DataDir(helpline).load_log_signer().verifier_key())
    del entries
    codes = [("this", None)] + ([("base", args.code)] if args.code else [])
    turns = [(backend, code) for backend in logs for code in codes]
    runs: dict = {(backend, name): [] for backend, (name, _) in turns}
    cpu: dict = {(backend, name): [] for backend, (name, _) in turns}
    for repeat in range(args.repeat):
        for backend, (name, source) in turns if repeat % 2 == 0 else turns[::-1]:
            helpline, target, vkey = logs[backend]
            platform = work / backend / f"platform-{name}-{repeat}"
            init(platform, "bench-platform.example/log", None, "--role", "platform")
            if args.signed:  # the follower's request key, a registered reader
                subprocess.run([PYTHON, "-m", "node", "readers", "add", "--dir", str(helpline),
                                DataDir(platform).load_request_signer().verifier_key()],
                               check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            transactions = _transactions(target)
            server_cpu = pg_cpu() if target else 0.0
            load = os.getloadavg()[0]
            with serving(helpline, source=source) as info:
                result = asyncio.run(bench_follow.follow(platform, info["public_url"], vkey, args.entries,
                                                         args.signed))
                serve_cpu = sum(psutil.Process(info["pid"]).cpu_times()[:2])
            transactions = _transactions(target, transactions)  # waits until the backends have ended
            server_cpu = pg_cpu() - server_cpu if target else 0.0
            runs[backend, name].append(result["seconds"])
            cpu[backend, name].append(serve_cpu + server_cpu)
            print(f"  {backend}, {name} code: {result['seconds']:.1f} s, follower CPU {result['cpu_seconds']:.1f} s, "
                  f"serving CPU {serve_cpu:.1f} s" + (f" + PostgreSQL {server_cpu:.1f} s" if target else "")
                  + f", load {load:.1f}" + (f", {transactions:,} database transactions" if transactions is not None
                                            else ""), flush=True)
            out[backend][f"{name}_transactions"] = transactions
    for (backend, name), seconds in runs.items():
        median = statistics.median(seconds)
        out[backend][f"{name}_seconds"], out[backend][f"{name}_per_s"] = median, args.entries / median
        out[backend][f"{name}_runs"] = seconds
        out[backend][f"{name}_serving_cpu_s"] = statistics.median(cpu[backend, name])
    for figures in out.values():
        figures["seconds"], figures["per_s"] = figures["this_seconds"], figures["this_per_s"]
    return out


def _cluster_cpu(cluster) -> float:
    """CPU seconds of the throwaway cluster's processes: the postmaster's own and its
    ended children's (backends), and the live ones'; 0 for a server named by --pg-url."""
    if cluster is None:
        return 0.0
    postmaster = psutil.Process(int((cluster.data / "postmaster.pid").read_text().split()[0]))
    total = sum(postmaster.cpu_times()[:4])
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def _transactions(database: str | None, before: int | None = None) -> int | None:
    """The database's committed and rolled-back transactions so far (PostgreSQL: each
    statement outside a transaction is one, so this counts round trips of reads), or
    since `before`."""
    if database is None:
        return None
    import psycopg

    time.sleep(1.2)  # the server publishes a backend's counts within a second of its last transaction
    with psycopg.connect(database, autocommit=True) as conn:
        count = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                             "WHERE datname = current_database()").fetchone()[0]
    return count if before is None else count - before - 1  # not this query's own


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--light-rate", type=float, default=20.0)
    parser.add_argument("--light-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=10_000, help="offered entries/s (default 10000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="sustained phase (default 10)")
    parser.add_argument("--case-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--entries", type=int, default=100_000, help="log size for the catch-up (default 100000)")
    parser.add_argument("--pg-url", help="a PostgreSQL server (postgresql://user@host:port/postgres); each phase "
                        "creates its own database there")
    parser.add_argument("--only", choices=("appends", "cases", "follow"), action="append")
    parser.add_argument("--no-fsync", action="store_true", help="the throwaway cluster without fsync (as the tests)")
    parser.add_argument("--code", type=Path, help="a baseline checkout (e.g. `git worktree add DIR main`): the "
                        "catch-up also follows each log as that code serves it, in the same run")
    parser.add_argument("--signed", action="store_true", help="catch-up: a restricted log, every read signed "
                        "(RFC 9421) by a registered reader and checked, as in production (default: public reads)")
    parser.add_argument("--repeat", type=int, default=1, help="catch-ups per code and backend (alternate order; "
                        "the median is shown)")
    args = parser.parse_args()
    phases = args.only or ["appends", "cases", "follow"]

    cluster = None
    if args.pg_url is None:
        from pg_support import PgCluster

        cluster = PgCluster(fsync=not args.no_fsync).start()
        print(f"PostgreSQL: a throwaway cluster, fsync {'off' if args.no_fsync else 'on'}", flush=True)
    admin_url = args.pg_url or cluster.url
    names = iter(range(1, 100))

    def new_database() -> str:
        import psycopg

        name = f"bench_{os.getpid()}_{next(names)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return admin_url.rsplit("/", 1)[0] + "/" + name

    print("load average before (1, 5, 15 min): %.1f %.1f %.1f" % os.getloadavg(), flush=True)
    results: dict = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            for backend in ("sqlite", "postgresql"):
                out = results[backend] = {}
                for phase in [p for p in phases if p != "follow"]:
                    work = Path(tmp) / backend / phase
                    work.mkdir(parents=True)
                    database = new_database() if backend == "postgresql" else None
                    print(f"{backend}: {phase} ...", flush=True)
                    init(work / "node", "bench.example/log", database)
                    out[phase] = (appends if phase == "appends" else cases)(work / "node", args)
                    print(f"  {json.dumps(out[phase])}", flush=True)
            if "follow" in phases:
                for backend, figures in catch_ups(Path(tmp) / "follow", new_database(), args,
                                                  lambda: _cluster_cpu(cluster)).items():
                    results[backend]["follow"] = figures
                    print(f"  {backend}: {json.dumps(figures)}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print("load average after (1, 5, 15 min): %.1f %.1f %.1f" % os.getloadavg())
    print(f"\n{'':46}{'SQLite':>14}{'PostgreSQL':>14}{'PG/SQLite':>11}")

    def row(label: str, phase: str, key: str, fmt: str = "{:,.0f}") -> None:
        if phase not in results["sqlite"]:
            return
        a, b = results["sqlite"][phase][key], results["postgresql"][phase][key]
        print(f"{label:46}{fmt.format(a):>14}{fmt.format(b):>14}{b / a:>10.2f}x")

    row("append -> checkpoint p50 (ms, light load)", "appends", "p50_ms")
    row("append -> checkpoint p99 (ms, light load)", "appends", "p99_ms")
    row(f"sustained appends/s (offered {args.rate:,}/s)", "appends", "sustained_per_s")
    row(f"case creations/s ({args.clients} clients, 1 process)", "cases", "per_s", "{:,.1f}")
    reads = "signed" if args.signed else "public"
    row(f"follower catch-up of {args.entries:,} entries, {reads} reads (s)", "follow", "seconds", "{:,.1f}")
    row("follower catch-up entries/s", "follow", "per_s")
    row("  serving CPU (serve process + PostgreSQL) (s)", "follow", "this_serving_cpu_s", "{:,.1f}")
    if args.code:
        row(f"  the same served by {args.code.name} (s)", "follow", "base_seconds", "{:,.1f}")
        row("  its serving CPU (s)", "follow", "base_serving_cpu_s", "{:,.1f}")
        if "follow" in results["sqlite"]:
            pg = results["postgresql"]["follow"]
            print(f"PostgreSQL catch-up, {args.code.name} -> this code: {pg['base_seconds']:.1f} s -> "
                  f"{pg['this_seconds']:.1f} s ({pg['base_seconds'] / pg['this_seconds']:.2f}x faster); serving CPU "
                  f"{pg['base_serving_cpu_s']:.1f} s -> {pg['this_serving_cpu_s']:.1f} s; database "
                  f"transactions {pg.get('base_transactions') or 0:,} -> {pg.get('this_transactions') or 0:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
