#!/usr/bin/env python3
"""Benchmark of the platform's match service through its real paths.

For each size N (default 1,000,000): a platform data directory whose `fingerprints`
table holds N PDQ fingerprints of one followed log (`--distribution`, from
scripts/pdq_distributions.py: `uniform` random bits, the default, or `correlated`
bits driven by a latent with 5 % near-duplicate clusters, as real photos' hashes
are), plus, around 100 query points of the same kind, planted near-duplicates at
distances 0..31 and decoys at 32..40. Then:

- `ncii-node serve` runs as a real process; measured: the index build from SQLite
  inside it (its /v1/match/status `build_seconds`), the time from launch until it
  answers, and its RSS once built;
- over HTTP on loopback with the admin token: single-query latency (p50/p99, one
  client, keep-alive), and batches of 1,000 (seconds per batch, queries/s with one
  and two clients); recall of every planted match and no decoy, through the API;
- in this process, the same service (`Matcher.load` from the same database) for
  incremental changes as the follower makes them: adds in rounds of 256 entries and
  withdrawals one entry at a time (entries/s).

Usage: .venv/bin/python scripts/bench_match_api.py [--sizes 1000000 10000000] [--distribution correlated]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import pdq_distributions as dist  # noqa: E402

ORIGIN = "bench.example/helpline"
QUERY_POINTS = 100


def flip_many(base: np.ndarray, distance: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(base)
    bits[rng.choice(256, size=distance, replace=False)] ^= 1
    return np.packbits(bits)


def populate(db_path: Path, data: dist.Dataset, rng: np.random.Generator):
    """The data's rows + planted and decoys; returns (queries, planted {query: set of idx}, decoys)."""
    from node.store import open_db

    db = open_db(db_path)
    conn = db.conn
    leaf = b"\x00" * 32
    chunk = 500_000
    n = len(data.fingerprints)
    started = time.perf_counter()
    conn.execute("BEGIN")
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        block = data.fingerprints[start:start + count]
        conn.executemany(
            "INSERT INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, leaf_hash) "
            "VALUES (?, ?, 'pdq', ?, 90, '', 0, ?)",
            ((ORIGIN, start + i, block[i].tobytes(), leaf) for i in range(count)))
    queries = data.unrelated(rng, QUERY_POINTS)
    planted: dict[int, set[int]] = {}
    decoys: dict[int, set[int]] = {}
    index = n
    rows = []
    for q in range(QUERY_POINTS):
        planted[q], decoys[q] = set(), set()
        for distance in range(41):
            rows.append((ORIGIN, index, flip_many(queries[q], distance, rng).tobytes(), leaf))
            (planted if distance <= 31 else decoys)[q].add(index)
            index += 1
    conn.executemany("INSERT INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, leaf_hash) "
                     "VALUES (?, ?, 'pdq', ?, 90, '', 0, ?)", rows)
    conn.execute("COMMIT")
    db.close()
    print(f"  database: {index:,} rows written in {time.perf_counter() - started:.1f} s")
    return queries, planted, decoys, index


def init_platform(root: Path) -> None:
    """`ncii-node init` of a platform data directory at `root`, its output silenced."""
    from node.cli import main as cli_main

    with open(os.devnull, "w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            assert cli_main(["init", "--dir", str(root), "--origin", "platform.bench.example/feedback",
                             "--role", "platform"]) == 0
        finally:
            sys.stdout = saved


def start_node(root: Path) -> tuple[subprocess.Popen, float]:
    log = open(root / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "node", "serve", "--dir", str(root),
                                "--port", "0"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    return process, time.perf_counter()


async def http_figures(root: Path, process, launched: float, queries, planted, decoys, data: dist.Dataset) -> dict:
    import aiohttp
    import psutil

    from node.datadir import DataDir

    datadir = DataDir(root)
    token = datadir.admin_token()
    headers = {"Authorization": f"Bearer {token}"}
    while (info := datadir.read_serve_info()) is None:
        if process.poll() is not None:
            raise SystemExit("the node exited: " + (root / "serve.log").read_text()[-2000:])
        await asyncio.sleep(0.05)
    url = info["admin_url"]
    figures: dict = {}
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url + "/v1/match/status", headers=headers) as r:
                status = await r.json()
            if status.get("ready"):
                break
            await asyncio.sleep(0.05)
        figures["serve_ready_s"] = time.perf_counter() - launched
        figures["build_s"] = status["build_seconds"]
        figures["indexed"] = status["pdq"]
        figures["rss_mb"] = psutil.Process(process.pid).memory_info().rss / 2**20

        rng = np.random.default_rng(1)

        async def one(fp_hex: str) -> dict:
            async with session.post(url + "/v1/match", headers=headers,
                                    json={"signal": "pdq", "fingerprint": fp_hex}) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        # recall through the API
        missed = wrong = 0
        for q in range(QUERY_POINTS):
            answer = await one(queries[q].tobytes().hex())
            found = {m["index"] for m in answer["matches"]}
            assert answer["total"] <= 100
            missed += len(planted[q] - found)
            wrong += len(found & decoys[q])
        figures["recall"] = 1 - missed / sum(len(s) for s in planted.values())
        figures["decoys_found"] = wrong

        # single-query latency, one client
        singles = [fp.tobytes().hex() for fp in data.unrelated(rng, 1000)]
        for fp in singles[:50]:
            await one(fp)  # warm-up
        times = []
        for fp in singles:
            t = time.perf_counter()
            await one(fp)
            times.append(time.perf_counter() - t)
        figures["single_p50_ms"] = float(np.percentile(times, 50) * 1000)
        figures["single_p99_ms"] = float(np.percentile(times, 99) * 1000)

        # batches of 1,000
        batches = [{"fingerprints": [{"signal": "pdq", "fingerprint": fp.tobytes().hex()}
                                     for fp in data.unrelated(rng, 1000)]} for _ in range(10)]

        async def batch(body) -> float:
            t = time.perf_counter()
            async with session.post(url + "/v1/match", headers=headers, json=body) as r:
                assert r.status == 200
                await r.read()
            return time.perf_counter() - t

        await batch(batches[0])
        t = time.perf_counter()
        per_batch = [await batch(b) for b in batches]
        figures["batch_s"] = float(np.median(per_batch))
        figures["batch_qps_1client"] = 1000 * len(batches) / (time.perf_counter() - t)
        t = time.perf_counter()
        await asyncio.gather(*(batch(b) for b in batches + batches))
        figures["batch_qps_2clients"] = 2000 * len(batches) / (time.perf_counter() - t)
    return figures


def incremental_figures(db_path: Path, next_index: int, data: dist.Dataset) -> dict:
    from node.matcher.service import Matcher, Query

    matcher = Matcher(pending_load=True)
    t = time.perf_counter()
    matcher.load(db_path)
    figures = {"build_in_process_s": time.perf_counter() - t}
    rng = np.random.default_rng(2)
    n = 100_000
    fps = data.unrelated(rng, n)
    t = time.perf_counter()
    for start in range(0, n, 256):  # as the follower's on_added, a round at a time
        matcher.add_many(ORIGIN, [(next_index + i, "pdq", fps[i].tobytes()) for i in range(start, min(n, start + 256))])
    figures["adds_per_s"] = n / (time.perf_counter() - t)
    assert matcher.match(Query("pdq", fps[n - 1].tobytes())).total >= 1
    victims = rng.choice(next_index, size=20_000, replace=False).tolist()
    t = time.perf_counter()
    for index in victims:  # one withdrawal at a time, the slowest way
        matcher.on_withdrawn(ORIGIN, [index])
    figures["withdrawals_per_s"] = len(victims) / (time.perf_counter() - t)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--distribution", default="uniform", choices=("uniform", "correlated"),
                        help="the indexed fingerprints and the queries (scripts/pdq_distributions.py)")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args()
    from node.datadir import DataDir

    print(f"bench_match_api: {os.cpu_count()} cores; queries: {QUERY_POINTS} points with planted matches at "
          "0..31 and decoys at 32..40")
    rows = []
    for n in args.sizes:
        print(f"\n== {n:,} {args.distribution} PDQ fingerprints; load average {os.getloadavg()[0]:.1f}")
        work = Path(tempfile.mkdtemp(prefix="bench-match-api-"))
        try:
            root = work / "platform"
            init_platform(root)
            datadir = DataDir(root)
            data = dist.make(args.distribution, n, seed=n)
            queries, planted, decoys, next_index = populate(datadir.db_path, data, np.random.default_rng(n))
            process, launched = start_node(root)
            try:
                figures = asyncio.run(http_figures(root, process, launched, queries, planted, decoys, data))
            finally:
                process.terminate()
                process.wait(60)
            figures.update(incremental_figures(datadir.db_path, next_index, data))
            figures["n"] = n
            figures["load"] = os.getloadavg()[0]
            rows.append(figures)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.distribution} fingerprints")
    print("\n| fingerprints | build from SQLite (serve / in-process) | ready after launch | RSS | recall | decoys "
          "| single query p50 / p99 over HTTP | batch of 1,000 | batches, 1 / 2 clients | adds/s | withdrawals/s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in rows:
        print(f"| {f['n']:,} | {f['build_s']:.2f} s / {f['build_in_process_s']:.2f} s | {f['serve_ready_s']:.1f} s "
              f"| {f['rss_mb']:.0f} MB | {f['recall']:.0%} | {f['decoys_found']} "
              f"| {f['single_p50_ms']:.2f} / {f['single_p99_ms']:.2f} ms | {f['batch_s'] * 1000:.0f} ms "
              f"| {f['batch_qps_1client']:,.0f} / {f['batch_qps_2clients']:,.0f} q/s "
              f"| {f['adds_per_s']:,.0f} | {f['withdrawals_per_s']:,.0f} | {f['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
