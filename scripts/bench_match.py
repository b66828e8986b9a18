#!/usr/bin/env python3
"""Benchmark of PDQ matching at platform scale: our exact index against two baselines.

For each size N (default 1,000,000 and 10,000,000) the script builds, in a temporary
directory, a SQLite table of N random PDQ fingerprints (32-byte blobs) in which
queries have planted near-duplicates: query i has one indexed item at distance
i % 41, i.e. matches at 0..31 and decoys at 32..40. Each engine then runs in its own
subprocess (so memory figures do not mix) and reports:

- build: seconds to read the SQLite table and build the index;
- RSS: resident memory of the process after the build (and its peak);
- recall of the planted matches (must be 100 %), decoys returned (must be 0), and
  whether its results equal brute force (faiss IndexBinaryFlat) query for query;
- single-query latency p50 / p99 and batch throughput on `--threads` threads;
- incremental adds and removals per second, one call per item.

Engines: `ncii` (node.matcher.pdq_index), `faiss-flat` (IndexBinaryFlat, brute force),
`faiss-mih` (IndexBinaryMultiHash configured as HMA does: 16 sub-hashes of 16 bits,
nflip = threshold // 16). faiss range searches return distances < radius, so the
radius is threshold + 1, as HMA does.

Usage: .venv/bin/python scripts/bench_match.py [--sizes 1000000,10000000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLD = 31
DECOY_MAX = 40
ENGINES = ("ncii", "faiss-flat", "faiss-mih")


# ---------------------------------------------------------------- dataset


def make_dataset(directory: Path, size: int, n_queries: int, seed: int) -> None:
    """data.sqlite (table fingerprints(id, pdq)), queries.npy, planted.npy."""
    rng = np.random.default_rng(seed)
    queries = rng.integers(0, 256, (n_queries, 32), dtype=np.uint8)
    distances = np.arange(n_queries) % (DECOY_MAX + 1)
    planted_ids = rng.choice(size, size=n_queries, replace=False)
    planted = np.empty_like(queries)
    for i in range(n_queries):
        bits = np.unpackbits(queries[i])
        bits[rng.permutation(256)[: distances[i]]] ^= 1
        planted[i] = np.packbits(bits)
    np.save(directory / "queries.npy", queries)
    np.save(directory / "planted.npy", np.stack([planted_ids, distances], axis=1))
    by_id = dict(zip(planted_ids.tolist(), range(n_queries)))

    connection = sqlite3.connect(directory / "data.sqlite")
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("CREATE TABLE fingerprints (id INTEGER PRIMARY KEY, pdq BLOB NOT NULL)")
    step = 1_000_000
    for start in range(0, size, step):
        chunk = rng.integers(0, 256, (min(step, size - start), 32), dtype=np.uint8)
        for id in planted_ids[(planted_ids >= start) & (planted_ids < start + len(chunk))].tolist():
            chunk[id - start] = planted[by_id[id]]
        connection.executemany(
            "INSERT INTO fingerprints (id, pdq) VALUES (?, ?)",
            zip(range(start, start + len(chunk)), (row.tobytes() for row in chunk)),
        )
        connection.commit()
    connection.close()


def read_sqlite_matrix(path: Path) -> np.ndarray:
    """All fingerprints of the table as an n x 32 array (rows in id order), for faiss."""
    connection = sqlite3.connect(path)
    size = connection.execute("SELECT count(*) FROM fingerprints").fetchone()[0]
    matrix = np.empty((size, 32), dtype=np.uint8)
    cursor = connection.execute("SELECT id, pdq FROM fingerprints ORDER BY id")
    position = 0
    while rows := cursor.fetchmany(262144):
        block = np.frombuffer(b"".join(pdq for _, pdq in rows), dtype=np.uint8).reshape(-1, 32)
        matrix[position : position + len(block)] = block
        position += len(block)
    connection.close()
    return matrix


# ---------------------------------------------------------------- workers


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kilobytes on Linux


def timed_singles(search, queries: np.ndarray, count: int) -> list[float]:
    latencies = []
    for query in queries[:count]:
        start = time.perf_counter()
        search(query)
        latencies.append(time.perf_counter() - start)
    return latencies


class NciiEngine:
    def build(self, directory: Path) -> None:
        from node.matcher.pdq_index import PDQIndex

        connection = sqlite3.connect(directory / "data.sqlite")
        self.index = PDQIndex.from_sqlite(connection, "SELECT id, pdq FROM fingerprints", threshold=THRESHOLD)
        connection.close()

    def single(self, query: np.ndarray) -> None:
        self.index.search(query.tobytes())

    def batch(self, queries: np.ndarray, threads: int) -> np.ndarray:
        query_numbers, ids, distances = self.index.search_arrays(queries, threads=threads)
        return np.stack([query_numbers, ids, distances], axis=1)

    def add(self, id: int, fingerprint: np.ndarray) -> None:
        self.index.add(id, fingerprint.tobytes())

    def remove(self, id: int) -> None:
        self.index.remove(id)

    def details(self) -> dict:
        stats = self.index.stats()
        return {"widths": stats["widths"], "table_mb": round(stats["table_bytes"] / 1e6)}


class FaissEngine:
    def __init__(self, kind: str):
        self.kind = kind

    def build(self, directory: Path) -> None:
        import faiss

        matrix = read_sqlite_matrix(directory / "data.sqlite")
        if self.kind == "faiss-flat":
            self.index = faiss.IndexBinaryFlat(256)
        else:  # as HMA configures it
            self.index = faiss.IndexBinaryMultiHash(256, 16, 16)
            self.index.nflip = THRESHOLD // 16
        self.index.add(matrix)
        del matrix

    def single(self, query: np.ndarray) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # one query: OpenMP start-up costs more than it gives
        self.index.range_search(query[None, :], THRESHOLD + 1)

    def batch(self, queries: np.ndarray, threads: int) -> np.ndarray:
        import faiss

        faiss.omp_set_num_threads(threads)
        limits, distances, ids = self.index.range_search(queries, THRESHOLD + 1)
        query_numbers = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
        return np.stack([query_numbers, ids.astype(np.int64), distances.astype(np.int64)], axis=1)

    def add(self, id: int, fingerprint: np.ndarray) -> None:
        self.index.add(fingerprint[None, :])  # faiss numbers items itself, in order

    def remove(self, id: int) -> None:
        if self.kind == "faiss-mih":
            raise NotImplementedError("IndexBinaryMultiHash has no remove_ids (HMA rebuilds the index)")
        self.index.remove_ids(np.array([id], dtype=np.int64))  # compacts the whole array

    def details(self) -> dict:
        return {}


def run_worker(args) -> None:
    directory = Path(args.dir)
    engine = NciiEngine() if args.worker == "ncii" else FaissEngine(args.worker)
    queries = np.load(directory / "queries.npy")
    size = args.size
    report: dict = {"engine": args.worker, "size": size}

    start = time.perf_counter()
    engine.build(directory)
    report["build_s"] = time.perf_counter() - start
    gc.collect()
    report["rss_mb"] = rss_mb()
    report["peak_rss_mb"] = peak_rss_mb()

    singles = args.singles if args.worker == "ncii" else min(args.singles, args.baseline_singles)
    engine.single(queries[0])  # warm-up
    latencies = np.array(timed_singles(engine.single, queries, singles)) * 1e3
    report["p50_ms"] = float(np.percentile(latencies, 50))
    report["p99_ms"] = float(np.percentile(latencies, 99))

    rounds, elapsed, cpu, results = 0, 0.0, 0.0, None
    while rounds == 0 or (elapsed < 2.0 and rounds < 20):
        start, start_cpu = time.perf_counter(), time.process_time()
        results = engine.batch(queries, args.threads)
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        rounds += 1
    report["batch_qps"] = rounds * len(queries) / elapsed
    # Queries per second of CPU time spent by all threads: what each core delivers
    # when it is not shared with other work (OpenMP spin-waiting counts too).
    report["batch_q_per_cpu_s"] = rounds * len(queries) / cpu if cpu > 0 else None
    np.save(directory / f"results-{args.worker}.npy", results)

    rng = np.random.default_rng(99)
    extra = rng.integers(0, 256, (args.updates, 32), dtype=np.uint8)
    start = time.perf_counter()
    for i in range(args.updates):
        engine.add(size + i, extra[i])
    report["adds_per_s"] = args.updates / (time.perf_counter() - start)
    removals = args.updates if args.worker == "ncii" else min(args.updates, args.baseline_removals)
    try:
        start = time.perf_counter()
        for i in range(removals):
            engine.remove(size + args.updates - 1 - i)
        report["removes_per_s"] = removals / (time.perf_counter() - start)
    except NotImplementedError as error:
        report["removes_per_s"] = None
        report["removes_note"] = str(error)

    if args.worker == "ncii":  # withdrawals stop matching at once
        planted = np.load(directory / "planted.npy")
        matching = [i for i in range(len(queries)) if planted[i, 1] <= THRESHOLD][:100]
        for i in matching:
            engine.remove(int(planted[i, 0]))
        after = engine.batch(queries[matching], args.threads)
        report["withdrawn_still_found"] = int(np.isin(after[:, 1], planted[matching, 0]).sum())
        report["withdrawals_checked"] = len(matching)
    report["final_rss_mb"] = rss_mb()
    report.update(engine.details())
    print(json.dumps(report))


# ---------------------------------------------------------------- parent


def score(directory: Path, engine: str, reference: np.ndarray | None) -> dict:
    planted = np.load(directory / "planted.npy")
    results = np.load(directory / f"results-{engine}.npy")
    got = {(int(q), int(i)) for q, i, _ in results}
    matches = [(q, int(planted[q, 0])) for q in range(len(planted)) if planted[q, 1] <= THRESHOLD]
    decoys = [(q, int(planted[q, 0])) for q in range(len(planted)) if planted[q, 1] > THRESHOLD]
    scored = {
        "recall": sum(pair in got for pair in matches) / len(matches),
        "decoys": sum(pair in got for pair in decoys),
        "others": len(got - set(matches)),
    }
    if reference is not None:
        scored["same_as_brute_force"] = got == {(int(q), int(i)) for q, i, _ in reference}
    return scored


def run_engine(engine: str, directory: Path, size: int, args) -> dict | None:
    command = [
        sys.executable, __file__, "--worker", engine, "--dir", str(directory), "--size", str(size),
        "--threads", str(args.threads), "--updates", str(args.updates), "--singles", str(args.singles),
        "--baseline-singles", str(args.baseline_singles), "--baseline-removals", str(args.baseline_removals),
    ]  # fmt: skip
    print(f"  {engine} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:,.{digits}f}{suffix}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated index sizes")
    parser.add_argument("--queries", type=int, default=2000, help="queries per size (planted i %% 41)")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--threads", type=int, default=2, help="threads for batch searches")
    parser.add_argument("--updates", type=int, default=100_000, help="single adds, then removals, timed")
    parser.add_argument("--singles", type=int, default=1000, help="single queries timed")
    parser.add_argument("--baseline-singles", type=int, default=200, help="single queries timed for faiss")
    parser.add_argument("--baseline-removals", type=int, default=50, help="removals timed for faiss flat")
    parser.add_argument("--workdir", default=None, help="where the temporary data goes (default: system temp)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0

    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    load_at_start = os.getloadavg()
    rows = []
    for size in [int(s.replace("_", "")) for s in args.sizes.split(",")]:
        directory = Path(tempfile.mkdtemp(prefix="bench-match-", dir=args.workdir))
        try:
            print(f"N = {size:,}: writing the SQLite table ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            make_dataset(directory, size, args.queries, args.seed)
            print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            reports = {engine: run_engine(engine, directory, size, args) for engine in engines}
            reference = (
                np.load(directory / "results-faiss-flat.npy") if reports.get("faiss-flat") is not None else None
            )
            for engine, report in reports.items():
                if report is None:
                    rows.append({"engine": engine, "size": size, "failed": True})
                    continue
                report.update(score(directory, engine, reference))
                rows.append(report)
                print("  " + json.dumps(report), file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    print()
    print(
        "| N | engine | recall ≤31 | decoys 32..40 | = brute force | p50 ms | p99 ms | batch q/s "
        "| batch q/CPU-s | RSS MB | build s (SQLite) | adds/s | removals/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.get("failed"):
            print(f"| {row['size']:,} | {row['engine']} | failed |" + " |" * 10)
            continue
        print(
            f"| {row['size']:,} | {row['engine']} | {row['recall']:.0%} | {row['decoys']} "
            f"| {fmt(row.get('same_as_brute_force'))} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} "
            f"| {fmt(row['batch_qps'])} | {fmt(row['batch_q_per_cpu_s'])} | {fmt(row['rss_mb'])} | {row['build_s']:.1f} "
            f"| {fmt(row['adds_per_s'])} | {fmt(row['removes_per_s'])} |"
        )
    by_key = {(row["size"], row["engine"]): row for row in rows if not row.get("failed")}
    for size in sorted({row["size"] for row in rows}):
        ours, flat = by_key.get((size, "ncii")), by_key.get((size, "faiss-flat"))
        if ours and flat:
            print(
                f"\nN = {size:,}: ncii vs brute force: {ours['batch_qps'] / flat['batch_qps']:.0f}x batch throughput, "
                f"{flat['p50_ms'] / ours['p50_ms']:.0f}x single-query p50; peak RSS {ours['peak_rss_mb']:.0f} MB; "
                f"withdrawn items still found: {ours['withdrawn_still_found']} of {ours['withdrawals_checked']}; "
                f"tables {ours.get('widths')} = {ours.get('table_mb')} MB"
            )
    print(
        f"\nthreads={args.threads}, queries={args.queries}, cpus={os.cpu_count()}, threshold={THRESHOLD}, "
        f"load average at start {load_at_start[0]:.1f}, at end {os.getloadavg()[0]:.1f} (other work on the machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
