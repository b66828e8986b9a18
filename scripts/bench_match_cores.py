#!/usr/bin/env python3
"""Two builds of the compiled match core side by side, batches interleaved.

`scripts/bench_match.py --baseline-core` runs each engine in turn, so the load of the
shared machine differs between them by minutes. This script keeps both indexes
resident (one worker process each, built from the same fingerprints) and alternates
their batches, A B B A A B ..., so that both meet the same load; it prints, per
round and in total, the queries per CPU-second of one thread (the figure least
disturbed by other work), batch q/s on `--threads` threads (wall clock), the work per
query (probes, candidates), build time and resident memory, and checks that both
give the same answers (nearest 100 within 31 and the totals).

Usage: .venv/bin/python scripts/bench_match_cores.py --baseline-core OLD.so
           [--size 10000000] [--distribution correlated] [--rounds 6] [--queries 2000]
(the current core is node/matcher's; `--current-core PATH` to measure another build)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLD = 31
LIMIT = 100


def _bench_match():
    spec = importlib.util.spec_from_file_location("bench_match", Path(__file__).with_name("bench_match.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(args) -> None:
    bench = _bench_match()
    if args.core:
        bench.load_core(args.core)
    from node.matcher.pdq_index import PDQIndex

    fingerprints = np.load(Path(args.dir) / "fingerprints.npy", mmap_mode="r")
    queries = np.load(Path(args.dir) / "queries.npy")
    start, start_cpu = time.perf_counter(), time.process_time()
    index = PDQIndex.from_arrays(np.arange(len(fingerprints)), fingerprints, threshold=THRESHOLD)
    built = {"build_s": time.perf_counter() - start, "build_cpu_s": time.process_time() - start_cpu,
             "rss_mb": bench.rss_mb(), "peak_rss_mb": bench.peak_rss_mb(),
             "table_mb": index.stats()["table_bytes"] / 1e6}
    size = len(fingerprints)
    del fingerprints
    print(json.dumps(built), flush=True)
    for line in sys.stdin:
        if line.startswith("merge"):  # 32,768 more items (the default overflow), merged into the tables
            extra = np.load(Path(args.dir) / "queries.npy")
            extra = np.resize(extra, (32768, 32))
            extra[:, 0] ^= np.uint8(1)  # one bit from each query: matches that must be found
            index.add_many(np.arange(size, size + len(extra)), extra)
            start = time.perf_counter()
            index.flush()
            print(json.dumps({"merge_s": time.perf_counter() - start}), flush=True)
            size += len(extra)
            continue
        threads = int(line)
        before = index.stats()["work"]
        start, start_cpu = time.perf_counter(), time.thread_time()
        numbers, ids, distances, totals = index.nearest_arrays(queries, LIMIT, threads=threads)
        wall, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
        after = index.stats()["work"]
        n = after["queries"] - before["queries"]
        digest = hashlib.sha256(b"".join(a.astype(np.int64).tobytes() for a in (numbers, ids, distances, totals)))
        print(json.dumps({"wall": wall, "cpu": cpu, "probes": (after["probes"] - before["probes"]) / n,
                          "candidates": (after["candidates"] - before["candidates"]) / n,
                          "digest": digest.hexdigest()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-core", help="a build of node/matcher/_pdqindex.c (engine B; required)")
    parser.add_argument("--current-core", help="engine A's build (default: the installed node.matcher)")
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--distribution", default="correlated")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--core", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if not args.baseline_core:
        parser.error("--baseline-core is required")

    dist = _bench_match().dist
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ncii-bench-cores-") as directory:
        data = dist.make(args.distribution, args.size, args.seed)
        np.save(Path(directory) / "fingerprints.npy", data.fingerprints)
        np.save(Path(directory) / "queries.npy", data.unrelated(np.random.default_rng(args.seed + 17), args.queries))
        del data
        engines = {"A (current)": args.current_core, "B (baseline)": args.baseline_core}
        workers, built = {}, {}
        for name, core in engines.items():  # one build at a time
            command = [sys.executable, __file__, "--worker", "--dir", directory] + (["--core", core] if core else [])
            workers[name] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            built[name] = json.loads(workers[name].stdout.readline())

        def batch(name: str, threads: int) -> dict:
            workers[name].stdin.write(f"{threads}\n")
            workers[name].stdin.flush()
            return json.loads(workers[name].stdout.readline())

        names = list(engines)
        results = {name: {"one": [], "many": []} for name in names}
        for name in names:  # warm-up (page faults of the first touch, caches)
            batch(name, 1)
        print(f"{args.size:,} {args.distribution} fingerprints, {args.queries:,} queries a batch, nearest {LIMIT} "
              f"within {THRESHOLD}; load average {load:.1f} at the start")
        print("round | engine | q/CPU-s (1 thread) | batch q/s (%d threads) | probes | candidates | load" % args.threads)
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                one, many = batch(name, 1), batch(name, args.threads)
                results[name]["one"].append(one)
                results[name]["many"].append(many)
                print(f"{r} | {name} | {args.queries / one['cpu']:,.0f} | {args.queries / many['wall']:,.0f} | "
                      f"{one['probes']:,.0f} | {one['candidates']:,.0f} | {os.getloadavg()[0]:.1f}", flush=True)
        merges = {}
        for name in names:  # a merge of 32,768 adds, then the same answers still
            workers[name].stdin.write("merge\n")
            workers[name].stdin.flush()
            merges[name] = json.loads(workers[name].stdout.readline())["merge_s"]
            results[name]["after"] = batch(name, 1)
        for proc in workers.values():
            proc.stdin.close()
            proc.wait()

    digests = {r["digest"] for name in names for kind in ("one", "many") for r in results[name][kind]}
    after = {results[name]["after"]["digest"] for name in names}
    print()
    print("engine | q/CPU-s median (min-max) | batch q/s median (min-max) | build s (CPU s) | RSS MB (peak) | tables MB "
          "| merge of 32,768 s")
    medians = {}
    for name in names:
        cpu = np.array([args.queries / x["cpu"] for x in results[name]["one"]])
        wall = np.array([args.queries / x["wall"] for x in results[name]["many"]])
        medians[name] = (np.median(cpu), np.median(wall))
        b = built[name]
        print(f"{name} | {np.median(cpu):,.0f} ({cpu.min():,.0f}-{cpu.max():,.0f}) | {np.median(wall):,.0f} "
              f"({wall.min():,.0f}-{wall.max():,.0f}) | {b['build_s']:.1f} ({b['build_cpu_s']:.1f}) | "
              f"{b['rss_mb']:,.0f} ({b['peak_rss_mb']:,.0f}) | {b['table_mb']:,.0f} | {merges[name]:.2f}")
    a, b = medians[names[0]], medians[names[1]]
    print(f"A / B: {a[0] / b[0]:.2f}x per CPU-second, {a[1] / b[1]:.2f}x batch; same answers: "
          f"{'yes' if len(digests) == len(after) == 1 else 'NO'} (before and after the merge); "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    if len(digests) != 1 or len(after) != 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
