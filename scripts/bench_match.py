#!/usr/bin/env python3
"""Benchmark of PDQ matching at platform scale: our exact index beside brute force.

For each size N (default 1,000,000 and 10,000,000) and each distribution of
fingerprints (scripts/pdq_distributions.py: `uniform`, `correlated` (latent-driven
bits plus 5 % near-duplicate clusters), `cluster-attack` (500,000 near-copies of one
fingerprint)), the script writes, in a temporary directory, a SQLite table of N
fingerprints (32-byte blobs) and four kinds of queries:

- random: 2,000 fresh fingerprints of the same distribution, each with one indexed
  item planted at distance i % 41 (matches at 0..31, decoys at 32..40);
- at: a cluster's centre with 0..3 bits flipped (near-duplicate clusters, or the attack);
- near: a cluster's centre with 45 bits flipped (the issue's "45 bits from the cluster");
- edge: a cluster's centre with 26..36 bits flipped, where the threshold cuts the
  cluster (members on both sides: the worst case for counting by structure).

Each engine then runs in its own subprocess (so memory figures do not mix) and reports:
build seconds from SQLite; RSS after the build; single-query latency p50 / p99 of each
kind of query; batch throughput of the random queries on `--threads` threads (and per
CPU-second, which other work on the machine disturbs less); recall of the planted
matches (must be 100 %), decoys returned (must be 0), and whether its answers equal
brute force (faiss IndexBinaryFlat) query for query; single adds and removals per second.

Every engine answers what the match API asks: the nearest 100 within distance 31 (by
distance, then id) and the total count. `ncii` is node.matcher.pdq_index (`nearest`);
`ncii-identity` the same without the data-aware partition (bits in their order);
`ncii-baseline` the same code over another build of the compiled core (`--baseline-core
PATH`, e.g. a build of an earlier commit: a change to the core measured against what it
replaces in the same run); `faiss-flat` is IndexBinaryFlat (brute force; range search, then the nearest 100 in
numpy); `faiss-mih` IndexBinaryMultiHash as HMA configures it (16 x 16 bits,
nflip = threshold // 16). faiss range searches return distances < radius, so the
radius is threshold + 1, as HMA does.

Usage: .venv/bin/python scripts/bench_match.py [--sizes 1000000,10000000]
           [--distribution uniform,correlated,cluster-attack] [--engines ncii,faiss-flat]
           [--baseline-core old/_pdqindex.so --engines ncii,ncii-baseline,faiss-flat]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
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
LIMIT = 100
DECOY_MAX = 40
ENGINES = ("ncii", "ncii-identity", "ncii-baseline", "faiss-flat", "faiss-mih")
KINDS = ("random", "at", "near", "edge")
CLUSTER_QUERIES = 100


def _distributions():
    spec = importlib.util.spec_from_file_location("pdq_distributions", Path(__file__).with_name("pdq_distributions.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dist = _distributions()


# ---------------------------------------------------------------- dataset


def make_dataset(directory: Path, distribution: str, size: int, n_queries: int, seed: int) -> dict:
    """data.sqlite (table fingerprints(id, pdq)), queries-<kind>.npy, planted.npy."""
    rng = np.random.default_rng(seed + 17)
    data = dist.make(distribution, size, seed)
    fingerprints = data.fingerprints
    queries = data.unrelated(rng, n_queries)
    distances = np.arange(n_queries) % (DECOY_MAX + 1)
    # planted items replace fingerprints outside the clusters (the attack takes the last ids)
    pool = size - (int(data.cluster_sizes.sum()) if distribution == "cluster-attack" else 0)
    planted_ids = rng.choice(pool, size=n_queries, replace=False)
    fingerprints[planted_ids] = dist.flip_random_bits(rng, queries, distances)
    np.save(directory / "queries-random.npy", queries)
    np.save(directory / "planted.npy", np.stack([planted_ids, distances], axis=1))
    info = {"clusters": int(len(data.centres)), "clustered": int(data.cluster_sizes.sum())}
    if len(data.centres):
        # the largest clusters (the attack has one): the queries aim at them
        order = np.argsort(-data.cluster_sizes, kind="stable")[:CLUSTER_QUERIES]
        centres = data.centres[order[np.arange(CLUSTER_QUERIES) % len(order)]]
        np.save(directory / "queries-at.npy", dist.flip_random_bits(rng, centres, rng.integers(0, 4, len(centres))))
        np.save(directory / "queries-near.npy", dist.flip_random_bits(rng, centres, np.full(len(centres), 45)))
        np.save(directory / "queries-edge.npy", dist.flip_random_bits(rng, centres, rng.integers(26, 37, len(centres))))
    sample = fingerprints[rng.choice(size, 4000, replace=False)]
    spread = dist.hamming_matrix(sample[:2000], sample[2000:]).diagonal()
    info["unrelated_distance"] = [float(spread.mean()), float(spread.std())]

    connection = sqlite3.connect(directory / "data.sqlite")
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("CREATE TABLE fingerprints (id INTEGER PRIMARY KEY, pdq BLOB NOT NULL)")
    step = 1_000_000
    for start in range(0, size, step):
        chunk = fingerprints[start:start + step]
        connection.executemany("INSERT INTO fingerprints (id, pdq) VALUES (?, ?)",
                               zip(range(start, start + len(chunk)), (row.tobytes() for row in chunk)))
        connection.commit()
    connection.close()
    return info


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
    """This process's peak resident memory (VmHWM: unlike getrusage's ru_maxrss, it
    does not carry over the parent's peak across fork and exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kilobytes on Linux


def nearest_of_all(query_numbers: np.ndarray, ids: np.ndarray, distances: np.ndarray, n: int):
    """(query, id, distance) of the nearest LIMIT per query (by distance, then id) and the totals."""
    order = np.lexsort((ids, distances, query_numbers))
    query_numbers, ids, distances = query_numbers[order], ids[order], distances[order]
    totals = np.bincount(query_numbers, minlength=n)
    starts = np.concatenate([[0], np.cumsum(totals)[:-1]])
    rank = np.arange(len(query_numbers)) - starts[query_numbers]
    keep = rank < LIMIT
    return np.stack([query_numbers[keep], ids[keep], distances[keep]], axis=1), totals


class NciiEngine:
    def __init__(self, partition: bool = True):
        self.partition = partition

    def build(self, directory: Path) -> None:
        from node.matcher.pdq_index import PDQIndex

        connection = sqlite3.connect(directory / "data.sqlite")
        self.index = PDQIndex.from_sqlite(connection, "SELECT id, pdq FROM fingerprints", threshold=THRESHOLD,
                                          partition=self.partition)
        connection.close()

    def single(self, query: np.ndarray) -> None:
        self.index.nearest(query.tobytes(), LIMIT)

    def batch(self, queries: np.ndarray, threads: int):
        query_numbers, ids, distances, totals = self.index.nearest_arrays(queries, LIMIT, threads=threads)
        return np.stack([query_numbers, ids, distances], axis=1), totals

    def add(self, id: int, fingerprint: np.ndarray) -> None:
        self.index.add(id, fingerprint.tobytes())

    def remove(self, id: int) -> None:
        self.index.remove(id)

    def work(self) -> np.ndarray:
        """Work done so far: queries, probes, candidates checked, group members read."""
        w = self.index.stats()["work"]
        return np.array([w["queries"], w["probes"], w["candidates"], w["member_reads"]], dtype=float)

    def details(self) -> dict:
        stats = self.index.stats()
        return {"widths": stats["widths"], "table_mb": round(stats["table_bytes"] / 1e6), "groups": stats["groups"],
                "grouped": stats["grouped"], "permuted": stats["permuted"],
                "partition_objective": [round(x, 1) for x in stats["partition_objective"]]}


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

    def _search(self, queries: np.ndarray):
        limits, distances, ids = self.index.range_search(queries, THRESHOLD + 1)
        query_numbers = np.repeat(np.arange(len(queries)), np.diff(limits.astype(np.int64)))
        return nearest_of_all(query_numbers, ids.astype(np.int64), distances.astype(np.int64), len(queries))

    def single(self, query: np.ndarray) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # one query: OpenMP start-up costs more than it gives
        self._search(query[None, :])

    def batch(self, queries: np.ndarray, threads: int):
        import faiss

        faiss.omp_set_num_threads(threads)
        return self._search(queries)

    def add(self, id: int, fingerprint: np.ndarray) -> None:
        self.index.add(fingerprint[None, :])  # faiss numbers items itself, in order

    def remove(self, id: int) -> None:
        if self.kind == "faiss-mih":
            raise NotImplementedError("IndexBinaryMultiHash has no remove_ids (HMA rebuilds the index)")
        self.index.remove_ids(np.array([id], dtype=np.int64))  # compacts the whole array

    def work(self) -> None:
        return None

    def details(self) -> dict:
        return {}


def per_query(before, after) -> list[float] | None:
    """Probes, candidates and group members read per query between two work counts."""
    if before is None:
        return None
    delta = after - before
    return [round(x / max(delta[0], 1), 1) for x in delta[1:]]


def latencies_ms(engine, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and CPU milliseconds of each query (one thread: the CPU time leaves
    out the time other processes held the core, which a loaded machine adds to p99)."""
    wall, cpu = [], []
    for query in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        engine.single(query)
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return np.array(wall) * 1e3, np.array(cpu) * 1e3


def load_core(path: str) -> None:
    """Use the compiled core at `path` instead of the installed one (before the first import)."""
    import importlib.machinery

    name = "node.matcher._pdqindex"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path, loader=loader))
    loader.exec_module(module)
    sys.modules[name] = module


def run_worker(args) -> None:
    directory = Path(args.dir)
    if args.worker == "ncii-baseline":
        load_core(args.baseline_core)
    engine = {"ncii": lambda: NciiEngine(), "ncii-identity": lambda: NciiEngine(partition=False),
              "ncii-baseline": lambda: NciiEngine()}.get(args.worker, lambda: FaissEngine(args.worker))()
    baseline = args.worker.startswith("faiss")
    size = args.size
    report: dict = {"engine": args.worker, "size": size}

    start, start_cpu = time.perf_counter(), time.process_time()
    engine.build(directory)
    report["build_s"] = time.perf_counter() - start
    report["build_cpu_s"] = time.process_time() - start_cpu
    gc.collect()
    report["rss_mb"] = rss_mb()
    report["peak_rss_mb"] = peak_rss_mb()

    kinds = [kind for kind in KINDS if (directory / f"queries-{kind}.npy").exists()]
    queries = {kind: np.load(directory / f"queries-{kind}.npy") for kind in kinds}
    engine.single(queries["random"][0])  # warm-up
    for kind in kinds:
        count = min(args.baseline_singles, len(queries[kind])) if baseline else args.singles
        latencies, cpu = latencies_ms(engine, queries[kind][:count])
        report[f"{kind}_p50_ms"] = float(np.percentile(latencies, 50))
        report[f"{kind}_p99_ms"] = float(np.percentile(latencies, 99))
        report[f"{kind}_max_ms"] = float(latencies.max())
        report[f"{kind}_cpu_p99_ms"] = float(np.percentile(cpu, 99))
        if kind != "random":  # every cluster query, for the comparison with brute force
            before = engine.work()
            results, totals = engine.batch(queries[kind], args.threads)
            report[f"{kind}_work"] = per_query(before, engine.work())
            np.save(directory / f"results-{args.worker}-{kind}.npy", results)
            np.save(directory / f"totals-{args.worker}-{kind}.npy", totals)
            report[f"{kind}_total_mean"] = float(np.mean(totals))

    rounds, elapsed, cpu, results, totals = 0, 0.0, 0.0, None, None
    before = engine.work()
    while rounds == 0 or (elapsed < 2.0 and rounds < 20):
        start, start_cpu = time.perf_counter(), time.process_time()
        results, totals = engine.batch(queries["random"], args.threads)
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        rounds += 1
    report["random_work"] = per_query(before, engine.work())
    report["batch_qps"] = rounds * len(queries["random"]) / elapsed
    # Queries per second of CPU time spent by all threads: what each core delivers
    # when it is not shared with other work (OpenMP spin-waiting counts too).
    report["batch_q_per_cpu_s"] = rounds * len(queries["random"]) / cpu if cpu > 0 else None
    np.save(directory / f"results-{args.worker}-random.npy", results)
    np.save(directory / f"totals-{args.worker}-random.npy", totals)

    rng = np.random.default_rng(99)
    extra = rng.integers(0, 256, (args.updates, 32), dtype=np.uint8)
    start = time.perf_counter()
    for i in range(args.updates):
        engine.add(size + i, extra[i])
    report["adds_per_s"] = args.updates / (time.perf_counter() - start)
    removals = min(args.updates, args.baseline_removals) if baseline else args.updates
    try:
        start = time.perf_counter()
        for i in range(removals):
            engine.remove(size + args.updates - 1 - i)
        report["removes_per_s"] = removals / (time.perf_counter() - start)
    except NotImplementedError as error:
        report["removes_per_s"] = None
        report["removes_note"] = str(error)

    if not baseline:  # withdrawals stop matching at once
        planted = np.load(directory / "planted.npy")
        matching = [i for i in range(len(planted)) if planted[i, 1] <= THRESHOLD][:100]
        for i in matching:
            engine.remove(int(planted[i, 0]))
        after, _ = engine.batch(queries["random"][matching], args.threads)
        report["withdrawn_still_found"] = int(np.isin(after[:, 1], planted[matching, 0]).sum())
        report["withdrawals_checked"] = len(matching)
    report["final_rss_mb"] = rss_mb()
    report.update(engine.details())
    print(json.dumps(report))


# ---------------------------------------------------------------- parent


def same_answers(directory: Path, engine: str, kind: str) -> bool | None:
    """Equal to brute force: the same nearest 100 (ids and distances) and the same totals."""
    reference = directory / f"results-faiss-flat-{kind}.npy"
    if engine == "faiss-flat" or not reference.exists():
        return None
    ours = np.load(directory / f"results-{engine}-{kind}.npy")
    theirs = np.load(reference)
    return bool(np.array_equal(ours, theirs) and np.array_equal(
        np.load(directory / f"totals-{engine}-{kind}.npy"), np.load(directory / f"totals-faiss-flat-{kind}.npy")))


def score(directory: Path, engine: str) -> dict:
    planted = np.load(directory / "planted.npy")
    results = np.load(directory / f"results-{engine}-random.npy")
    got = {(int(q), int(i)) for q, i, _ in results}
    matches = [(q, int(planted[q, 0])) for q in range(len(planted)) if planted[q, 1] <= THRESHOLD]
    decoys = [(q, int(planted[q, 0])) for q in range(len(planted)) if planted[q, 1] > THRESHOLD]
    checks = [same_answers(directory, engine, kind) for kind in KINDS
              if (directory / f"results-{engine}-{kind}.npy").exists()]
    return {
        "recall": sum(pair in got for pair in matches) / len(matches),
        "decoys": sum(pair in got for pair in decoys),
        "same_as_brute_force": None if None in checks else all(checks),
    }


def run_engine(engine: str, directory: Path, size: int, args) -> dict | None:
    command = [
        sys.executable, __file__, "--worker", engine, "--dir", str(directory), "--size", str(size),
        "--threads", str(args.threads), "--updates", str(args.updates), "--singles", str(args.singles),
        "--baseline-singles", str(args.baseline_singles), "--baseline-removals", str(args.baseline_removals),
    ] + (["--baseline-core", args.baseline_core] if args.baseline_core else [])  # fmt: skip
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


def latency(row: dict, kind: str) -> str:
    if f"{kind}_p50_ms" not in row:
        return "–"
    return f"{row[f'{kind}_p50_ms']:.3f} / {row[f'{kind}_p99_ms']:.3f} ({row[f'{kind}_cpu_p99_ms']:.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated index sizes")
    parser.add_argument("--distribution", default=",".join(dist.DISTRIBUTIONS),
                        help="comma-separated: uniform, correlated, cluster-attack (uniform is the baseline)")
    parser.add_argument("--queries", type=int, default=2000, help="random queries per run (planted i %% 41)")
    parser.add_argument("--engines", default="ncii,faiss-flat", help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--threads", type=int, default=2, help="threads for batch searches")
    parser.add_argument("--updates", type=int, default=100_000, help="single adds, then removals, timed")
    parser.add_argument("--singles", type=int, default=1000, help="single queries timed per kind")
    parser.add_argument("--baseline-singles", type=int, default=100, help="single queries timed for faiss")
    parser.add_argument("--baseline-removals", type=int, default=50, help="removals timed for faiss flat")
    parser.add_argument("--workdir", default=None, help="where the temporary data goes (default: system temp)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-core", help="a build of node/matcher/_pdqindex.c for the engine ncii-baseline")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0

    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    for name in engines:
        if name not in ENGINES:
            parser.error(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
    if "ncii-baseline" in engines and not (args.baseline_core and Path(args.baseline_core).is_file()):
        parser.error("the engine ncii-baseline needs --baseline-core, a built _pdqindex shared library")
    distributions = [d.strip() for d in args.distribution.split(",") if d.strip()]
    for name in distributions:
        if name not in dist.DISTRIBUTIONS:
            parser.error(f"unknown distribution {name!r} (known: {', '.join(dist.DISTRIBUTIONS)})")
    load_at_start = os.getloadavg()
    rows, infos = [], {}
    for size in [int(s.replace("_", "")) for s in args.sizes.split(",")]:
        for distribution in distributions:
            directory = Path(tempfile.mkdtemp(prefix="bench-match-", dir=args.workdir))
            try:
                print(f"N = {size:,}, {distribution}: writing the SQLite table ...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                infos[(size, distribution)] = make_dataset(directory, distribution, size, args.queries, args.seed)
                print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
                reports = []
                for engine in engines:
                    report = run_engine(engine, directory, size, args)
                    if report is None:
                        rows.append({"engine": engine, "size": size, "distribution": distribution, "failed": True})
                        continue
                    report["distribution"] = distribution
                    report["load"] = os.getloadavg()[0]
                    reports.append(report)
                for report in reports:  # once brute force has answered too
                    report.update(score(directory, report["engine"]))
                    rows.append(report)
                    print("  " + json.dumps(report), file=sys.stderr, flush=True)
            finally:
                shutil.rmtree(directory, ignore_errors=True)

    print()
    print("Nearest 100 within 31 and the total count, per query. Latencies: p50 / p99 wall-clock ms "
          "(p99 of the CPU time the query used, without the time other processes held the core).")
    print()
    print("| N | distribution | engine | recall ≤31 | decoys | = brute force | random | at cluster | near (45) "
          "| edge (26..36) | batch q/s | q/CPU-s | RSS MB | build s (CPU s) | adds/s | removals/s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row.get("failed"):
            print(f"| {row['size']:,} | {row['distribution']} | {row['engine']} | failed |" + " |" * 13)
            continue
        print(
            f"| {row['size']:,} | {row['distribution']} | {row['engine']} | {row['recall']:.0%} | {row['decoys']} "
            f"| {fmt(row.get('same_as_brute_force'))} | {latency(row, 'random')} | {latency(row, 'at')} "
            f"| {latency(row, 'near')} | {latency(row, 'edge')} | {fmt(row['batch_qps'])} "
            f"| {fmt(row['batch_q_per_cpu_s'])} | {fmt(row['rss_mb'])} | {row['build_s']:.1f} ({row['build_cpu_s']:.1f}) "
            f"| {fmt(row['adds_per_s'])} | {fmt(row['removes_per_s'])} | {row['load']:.1f} |"
        )
    by_key = {(row["size"], row["distribution"], row["engine"]): row for row in rows if not row.get("failed")}
    print()
    for (size, distribution), info in infos.items():
        ours, flat = by_key.get((size, distribution, "ncii")), by_key.get((size, distribution, "faiss-flat"))
        uniform = by_key.get((size, "uniform", "ncii"))
        line = (f"N = {size:,}, {distribution}: unrelated distances {info['unrelated_distance'][0]:.1f} "
                f"± {info['unrelated_distance'][1]:.1f} bits; {info['clustered']:,} fingerprints in "
                f"{info['clusters']:,} clusters")
        if ours:
            line += (f"; ncii: {ours['groups']:,} groups holding {ours['grouped']:,}, partition "
                     f"{'chosen from the data' if ours['permuted'] else 'left as is'} (within-table r² "
                     f"{ours['partition_objective'][0]} -> {ours['partition_objective'][1]}), tables "
                     f"{ours['widths']} = {ours['table_mb']} MB, peak RSS {ours['peak_rss_mb']:.0f} MB, "
                     f"withdrawn still found {ours['withdrawn_still_found']} of {ours['withdrawals_checked']}")
        if ours:
            work = ", ".join(f"{kind} {ours[f'{kind}_work'][1]:,.0f} candidates + {ours[f'{kind}_work'][2]:,.0f} "
                             f"members" for kind in KINDS if ours.get(f"{kind}_work"))
            line += f"; work per query: {ours['random_work'][0]:,.0f} probes, {work}"
        if ours and flat:
            line += (f"; vs brute force {ours['batch_qps'] / flat['batch_qps']:.0f}x batch, "
                     f"{flat['random_p50_ms'] / ours['random_p50_ms']:.0f}x single p50")
        if ours and uniform and distribution != "uniform":
            line += (f"; vs ncii on uniform {ours['batch_qps'] / uniform['batch_qps']:.2f}x batch "
                     f"({ours['batch_q_per_cpu_s'] / uniform['batch_q_per_cpu_s']:.2f}x per CPU-s), random p99 "
                     f"{ours['random_p99_ms'] / uniform['random_p99_ms']:.2f}x")
        print(line)
    print(
        f"\nthreads={args.threads}, random queries={args.queries}, cluster queries={CLUSTER_QUERIES} per kind, "
        f"cpus={os.cpu_count()}, threshold={THRESHOLD}, limit={LIMIT}, load average at start "
        f"{load_at_start[0]:.1f}, at end {os.getloadavg()[0]:.1f} (other work on the machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
