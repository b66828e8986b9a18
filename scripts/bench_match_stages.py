#!/usr/bin/env python3
"""Where a batch of the match API goes, stage by stage, per distribution (issue 19).

For each distribution (default: uniform and correlated, scripts/pdq_distributions.py)
a platform database of N fingerprints is written as scripts/bench_match_api.py writes
it, and a `Matcher` is loaded from it in this process (the node's service, the same
code `ncii-node serve` runs). Then batches of 1,000 fresh fingerprints of that kind go
through what POST /v1/match does after the HTTP layer, stage by stage:

  parse     the JSON body -> Query objects (node.matcher.api.parse_match_body)
  search    Matcher.match_many (the index: per-log thresholds, groups, nearest 100 + total)
  describe  reading labels, quality and feedback of every hit from the database
  answer    the JSON answer

Rounds alternate between the distributions, so each meets the same load; printed:
median wall and CPU ms per batch per stage (CPU counts every thread of the process),
hits and total per query, and the load average. The HTTP layer is the same for both
(bench_match_api.py gives the whole).

Usage: .venv/bin/python scripts/bench_match_stages.py [--size 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_match_api as api_bench  # noqa: E402
import pdq_distributions as dist  # noqa: E402

BASELINE = "describe per hit (before)"  # not counted in the whole
STAGES = ("parse", "search", "describe", "answer", BASELINE)


def prepared(kind: str, n: int, work: Path):
    from node.datadir import DataDir
    from node.matcher.service import Matcher

    root = work / kind
    api_bench.init_platform(root)
    data = dist.make(kind, n, seed=n)
    api_bench.populate(DataDir(root).db_path, data, np.random.default_rng(n))
    matcher = Matcher(pending_load=True)
    matcher.load(DataDir(root).db_path)
    rng = np.random.default_rng(1)
    bodies = [json.dumps({"fingerprints": [{"signal": "pdq", "fingerprint": fp.tobytes().hex()}
                                           for fp in data.unrelated(rng, 1000)]}).encode() for _ in range(4)]
    setups = [(kind, matcher, bodies)]
    if len(data.centres):  # batches at the near-duplicate clusters: up to 100 hits a query to describe
        at = [data.centres[rng.integers(0, len(data.centres), 1000)] for _ in range(4)]
        setups.append((f"{kind}, at clusters", matcher, [json.dumps({"fingerprints": [
            {"signal": "pdq", "fingerprint": fp.tobytes().hex()} for fp in batch]}).encode() for batch in at]))
    return setups


def describe_per_hit(matcher, hits):
    """The baseline: `describe` as it was before issue 19, two queries per hit."""
    if not hits:
        return
    db = matcher._readers.db  # opened by describe_many, called first on the same hits
    for hit in hits:
        db.follow.get_fingerprint(hit.origin, hit.index)
        db.follow.verdict_counts(hit.origin, hit.index)


def one_batch(matcher, body: bytes, times: dict, counts: list) -> None:
    from node.jsontext import parse_json
    from node.matcher.api import parse_match_body, result_json

    def timed(stage, f, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        out = f(*args)
        times[stage].append((time.perf_counter() - wall, time.process_time() - cpu))
        return out

    queries, _ = timed("parse", lambda: parse_match_body(parse_json(body, hint=""), 1000))
    results = timed("search", lambda: matcher.match_many(queries, limit=100))
    described = timed("describe", lambda: matcher.describe_many([r.hits for r in results]))
    timed(BASELINE, lambda: [describe_per_hit(matcher, r.hits) for r in results])
    timed("answer", lambda: json.dumps({"results": [result_json(r, d, q)
                                                    for q, r, d in zip(queries, results, described)]}))
    counts.append((sum(len(r.hits) for r in results) / len(results), sum(r.total for r in results) / len(results)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--distributions", default="uniform,correlated")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = args.distributions.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-match-stages-"))
    try:
        setups = [setup for kind in kinds for setup in prepared(kind, args.size, work)]
        labels = [label for label, _, _ in setups]
        times = {label: {stage: [] for stage in STAGES} for label in labels}
        counts: dict[str, list] = {label: [] for label in labels}
        for _, matcher, bodies in setups:  # warm-up
            one_batch(matcher, bodies[0], {s: [] for s in STAGES}, [])
        loads = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for label, matcher, bodies in setups:
                for body in bodies:
                    one_batch(matcher, body, times[label], counts[label])
        loads.append(os.getloadavg()[0])
        print(f"\n{args.size:,} fingerprints, batches of 1,000, {args.rounds} x 4 per row, interleaved; "
              f"{os.cpu_count()} cores, load average {loads[0]:.1f} -> {loads[1]:.1f}")
        print("\n| batch | " + " | ".join(f"{s} wall / CPU ms" for s in STAGES)
              + " | whole wall ms | q/s | hits / total per query |")
        print("|---" * (len(STAGES) + 4) + "|")
        for label in labels:
            cells, whole = [], 0.0
            for stage in STAGES:
                v = np.array(times[label][stage])
                wall, cpu = float(np.median(v[:, 0])) * 1000, float(np.median(v[:, 1])) * 1000
                whole += wall if stage != BASELINE else 0
                cells.append(f"{wall:.1f} / {cpu:.1f}")
            hits, total = np.mean(counts[label], axis=0)
            print(f"| {label} | " + " | ".join(cells) + f" | {whole:.1f} | {1000 / whole * 1000:,.0f} "
                  f"| {hits:.2f} / {total:.2f} |")
        for _, matcher, _ in setups:
            matcher.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
