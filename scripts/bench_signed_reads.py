#!/usr/bin/env python3
"""Measure what replay protection of signed reads costs, and how many signed reads a
node serves (spec/parts/readaccess.md, "Replay protection"; issue 22 asks for 1,000
followers per log).

1. The replay cache alone (node/replaycache.py), with its journal: nonces recorded per
   second, and bytes of memory per live nonce at the default bound (500,000), so the
   sustained rate the bound allows (bound / 41 s window).
2. Over HTTP: a real `ncii-node serve` (a subprocess) with --readers registered readers;
   --clients tasks, each a reader, fetch a tile with a fresh RFC 9421 signature each
   time for --seconds; prints signed reads per second and every status seen. The
   client signs in the same process as it sends, so the figure is a lower bound of
   what the node can answer.

3. With --postgres: the same over a node on PostgreSQL (a throwaway cluster,
   tests/pg_support.py), with one `serve` process and then with two sharing the
   database, where every nonce is also inserted into the shared `replay_nonces` table,
   which refuses a nonce another process accepted. `--code DIR` serves another
   checkout's node (e.g. `git archive main` unpacked) for a before/after in one run.

    .venv/bin/python scripts/bench_signed_reads.py
    .venv/bin/python scripts/bench_signed_reads.py --readers 100 --clients 32 --seconds 20
    .venv/bin/python scripts/bench_signed_reads.py --postgres --seconds 10 [--code /tmp/main]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_cache(entries: int) -> None:
    from node.readaccess import MAX_CLOCK_SKEW, MAX_SIGNATURE_LIFETIME
    from node.replaycache import ReplayCache

    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        readers = [f"reader-{i}" for i in range(1000)]
        nonces = [f"nonce-{i:020d}" for i in range(entries)]
        now = time.time()

        def fill(cache: ReplayCache) -> None:
            for i, nonce in enumerate(nonces):
                cache.check_and_add(readers[i % 1000], nonce, now + 40 + (i % 40), now)

        cache = ReplayCache(max_entries=entries, max_per_reader=entries)
        cache.open_journal(tmp / "replay.journal", now, MAX_CLOCK_SKEW)
        started = time.perf_counter()
        fill(cache)
        seconds = time.perf_counter() - started
        cache.close()
        tracemalloc.start()  # a second cache, for its memory (tracemalloc slows it down)
        before = tracemalloc.get_traced_memory()[0]
        memory = ReplayCache(max_entries=entries, max_per_reader=entries)
        fill(memory)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        window = MAX_SIGNATURE_LIFETIME + MAX_CLOCK_SKEW + 1
        print(f"replay cache: {entries:,} nonces recorded (journal included) in {seconds:.2f} s: "
              f"{entries / seconds:,.0f}/s; {used / entries:.0f} bytes each ({used / 2**20:.0f} MiB); "
              f"journal {(tmp / 'replay.journal').stat().st_size / 2**20:.1f} MiB")
        print(f"  a bound of {entries:,} live nonces over a {window} s window sustains "
              f"{entries / window:,.0f} signed reads/s (before: 100,000 over 301 s = 332/s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_ADD_READERS = """
import sys
from node.datadir import DataDir
from node.store import open_db
db = open_db(DataDir(sys.argv[1]).db_path)
for i, keyid in enumerate(sys.stdin.read().split()):
    db.readers.add_reader(keyid, f"reader {i}", b"\\0\\0\\0\\0")
db.close()
"""


async def bench_http(readers: int, clients: int, seconds: float, *, database: str = "",
                     processes: int = 1, code: Path = ROOT, label: str = "HTTP") -> None:
    """Signed reads over HTTP from `processes` serve processes of one node (more than
    one: `database` is a PostgreSQL URL), the clients spread over them."""
    import aiohttp
    import psutil

    from node.cli import main as cli_main
    from node.datadir import DataDir
    from node.readaccess import RequestSigner
    from node.store import open_db

    tmp = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    procs: list[subprocess.Popen] = []
    try:
        root = tmp / "helpline"
        signers = [RequestSigner.from_seed(f"reader-{i}.example/log", os.urandom(32)) for i in range(readers)]
        env = dict(os.environ, PYTHONPATH=str(code))
        if code == ROOT:
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                assert cli_main(["init", "--dir", str(root), "--origin", "bench.example/helpline",
                                 *(["--database", database] if database else [])]) == 0
            db = open_db(DataDir(root).db_path)
            for i, s in enumerate(signers):
                db.readers.add_reader(s.keyid, f"reader {i}", b"\0\0\0\0")
            db.close()
        else:  # the other checkout makes its own schema (it may not know this one's newest)
            subprocess.run([sys.executable, "-m", "node", "init", "--dir", str(root), "--origin",
                            "bench.example/helpline", *(["--database", database] if database else [])],
                           cwd=code, env=env, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([sys.executable, "-c", _ADD_READERS, str(root)], cwd=code, env=env, check=True,
                           input="\n".join(s.keyid for s in signers), text=True)
        datadir = DataDir(root)
        urls = []
        for _ in range(processes):
            procs.append(subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(root), "--port", "0"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=code, env=env))
            while not ((info := datadir.read_serve_info()) and info["pid"] == procs[-1].pid):
                assert procs[-1].poll() is None, "serve exited"
                await asyncio.sleep(0.05)
            urls.append(info["public_url"])
        admin = info["admin_url"]
        token = datadir.admin_token()
        async with aiohttp.ClientSession() as session:
            body = '{"kind": "submission", "signal": "pdq", "fingerprint": "' + "5a" * 32 + '"}\n'
            async with session.post(admin + "/admin/append", data=body,
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, await r.text()
        tiles = [url + "/tile/0/000.p/1" for url in urls]
        statuses: collections.Counter = collections.Counter()
        deadline = time.monotonic() + seconds
        nodes = [psutil.Process(proc.pid) for proc in procs]
        for node in nodes:
            node.cpu_percent()

        async def client(k: int) -> None:
            connector = aiohttp.TCPConnector(limit=1)
            tile = tiles[k % len(tiles)]
            async with aiohttp.ClientSession(connector=connector) as s:
                i = k
                while time.monotonic() < deadline:
                    signer = signers[i % readers]
                    i += clients
                    async with s.get(tile, headers=signer.sign_headers("GET", tile)) as r:
                        await r.read()
                        statuses[r.status] += 1

        started = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.monotonic() - started
        cpu = sum(node.cpu_percent() for node in nodes)
        total = sum(statuses.values())
        per_read = cpu / 100 * elapsed / max(total, 1)
        print(f"{label}: {processes} process(es), {readers} registered readers, {clients} clients, {elapsed:.1f} s: "
              f"{total:,} signed reads, {total / elapsed:,.0f}/s (the clients, signing in Python, are the limit "
              f"here); statuses {dict(statuses)}; node CPU {cpu:.0f} % of one core = {per_read * 1000:.2f} ms per "
              f"signed read (about {1 / per_read:,.0f} reads/s per core); RSS "
              f"{sum(node.memory_info().rss for node in nodes) / 2**20:.0f} MiB")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


async def bench_postgres(readers: int, clients: int, seconds: float, code: Path | None) -> None:
    """Signed reads of a PostgreSQL node: one process, two processes; and, with `code`,
    one process of that checkout first (the baseline), all in one run."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_support import PgCluster

    cluster = PgCluster().start()
    try:
        runs = ([(code, 1, f"PostgreSQL, {code}")] if code else []) + [
            (ROOT, 1, "PostgreSQL, this checkout"), (ROOT, 2, "PostgreSQL, this checkout")]
        for number, (checkout, processes, label) in enumerate(runs):
            cluster.execute(f"CREATE DATABASE reads{number}")
            await bench_http(readers, clients, seconds, database=cluster.url_of(f"reads{number}"),
                             processes=processes, code=checkout, label=label)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=500_000, help="nonces in the cache measurement")
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--postgres", action="store_true", help="also a node on PostgreSQL, 1 and 2 processes")
    parser.add_argument("--code", type=Path, help="with --postgres: first serve this checkout's node (baseline)")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    if not args.postgres:
        bench_cache(args.entries)
        asyncio.run(bench_http(args.readers, args.clients, args.seconds))
    else:
        asyncio.run(bench_postgres(args.readers, args.clients, args.seconds, args.code))
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
