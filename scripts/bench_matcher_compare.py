#!/usr/bin/env python3
"""The matcher service of two source trees, side by side, on the same database.

For a refactor of node/matcher/ that must not slow matching: one SQLite database of
N random PDQ fingerprints (with planted near-duplicates, scripts/bench_match_api.py's
`populate`), plus 2,000 MD5 and 500 vPDQ videos of 20 frames, is built once; then
each tree (this one, and `--base`, e.g. a `git worktree add --detach DIR main` with
the compiled `_pdqindex*.so` copied in) runs the same measurements in its own
subprocess, the trees alternating `--rounds` times, so load on a shared machine
falls on both alike:

  build_s           Matcher.load from the database
  pdq_single_us     one PDQ query (match_many of 1), mean
  pdq_batch_qps     batches of 1,000 PDQ queries on one thread, queries per second
  md5_us, vpdq_us   one MD5 / vPDQ query, mean
  adds_per_s        additions in rounds of 256 entries (the follower's on_added)
  withdrawals_per_s withdrawals one entry at a time (the slowest way)

Every figure is CPU time of the measuring process (time.process_time, one thread),
not wall time: on a machine other work keeps busy, wall time at the microsecond
scale measures the neighbours.

and checks that both trees give the same answers to every query. Prints the median
of each figure per tree and the ratio (this tree / base; > 1 is faster for rates,
slower for times), with the machine's load.

Usage: .venv/bin/python scripts/bench_matcher_compare.py --base DIR [--size 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "bench.example/helpline"
VIDEOS, FRAMES, MD5S = 500, 20, 2000
RATES = ("pdq_batch_qps", "adds_per_s", "withdrawals_per_s")


def extra_rows(db_path: Path, first_index: int, rng: np.random.Generator) -> None:
    """MD5 and vPDQ rows after the PDQ ones (the same for both trees)."""
    from node.store import open_db
    from protocol.signals import VPDQ, VpdqFrame

    db = open_db(db_path)
    rows = []
    index = first_index
    for _ in range(MD5S):
        rows.append((ORIGIN, index, "md5", rng.integers(0, 256, 16, dtype=np.uint8).tobytes()))
        index += 1
    for _ in range(VIDEOS):
        frames = [VpdqFrame(rng.integers(0, 256, 32, dtype=np.uint8).tobytes(), 90, 1000 * i) for i in range(FRAMES)]
        rows.append((ORIGIN, index, "vpdq", VPDQ.from_frames(frames)))
        index += 1
    with db.atomic():
        db.conn.executemany("INSERT INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, "
                            "leaf_hash) VALUES (?, ?, ?, ?, NULL, '', 0, ?)",
                            ((*row, b"\x00" * 32) for row in rows))
    db.close()


def measure(db_path: str, next_index: int) -> dict:
    """Runs inside the tree's subprocess (its `node` package first on sys.path)."""
    import node
    from node.matcher.service import Matcher, Query
    from node.store import open_db

    db = open_db(db_path)
    md5s = [fp for (fp,) in db.execute("SELECT fingerprint FROM fingerprints WHERE signal = 'md5' LIMIT 200")]
    videos = [fp for (fp,) in db.execute("SELECT fingerprint FROM fingerprints WHERE signal = 'vpdq' LIMIT 100")]
    db.close()
    rng = np.random.default_rng(7)
    figures: dict = {}
    clock = time.process_time  # CPU seconds of this process: what other work on the machine disturbs least
    matcher = Matcher(pending_load=True)
    t = clock()
    matcher.load(db_path, read_only=True)
    figures["build_s"] = clock() - t
    pdq = [Query("pdq", rng.integers(0, 256, 32, dtype=np.uint8).tobytes()) for _ in range(2000)]
    queries = pdq[:200] + [Query("md5", fp) for fp in md5s] + [Query("vpdq", fp) for fp in videos]
    answers = [[(h.origin, h.index, h.distance) for h in r.hits] + [r.total] for r in matcher.match_many(queries)]

    def per_query_us(qs, repeat: int = 1) -> float:
        t = clock()
        for _ in range(repeat):
            for q in qs:
                matcher.match_many([q])
        return (clock() - t) / (len(qs) * repeat) * 1e6

    figures["pdq_single_us"] = per_query_us(pdq[:1000])
    t = clock()
    matcher.match_many(pdq[:1000], threads=1)
    matcher.match_many(pdq[1000:], threads=1)
    figures["pdq_batch_qps"] = 2000 / (clock() - t)
    figures["md5_us"] = per_query_us([Query("md5", fp) for fp in md5s], repeat=20)
    figures["vpdq_us"] = per_query_us([Query("vpdq", fp) for fp in videos])
    n = 50_000
    fps = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    t = clock()
    for start in range(0, n, 256):
        matcher.add_many(ORIGIN, [(next_index + i, "pdq", fps[i].tobytes()) for i in range(start, min(n, start + 256))])
    figures["adds_per_s"] = n / (clock() - t)
    victims = rng.choice(next_index, size=20_000, replace=False).tolist()
    t = clock()
    for index in victims:
        matcher.on_withdrawn(ORIGIN, [index])
    figures["withdrawals_per_s"] = len(victims) / (clock() - t)
    figures["answers"] = answers
    figures["node"] = node.__file__
    matcher.close()
    return figures


def run_tree(tree: Path, db_path: Path, next_index: int) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(tree)!r}); sys.path.insert(1, {str(ROOT / 'scripts')!r});"
            f"import bench_matcher_compare as b; print(json.dumps(b.measure({str(db_path)!r}, {next_index})))")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the other source tree (its compiled index in place)")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(1, str(ROOT / "scripts"))
    from bench_match_api import populate

    print(f"bench_matcher_compare: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.size:,} PDQ, "
          f"{MD5S:,} MD5, {VIDEOS} vPDQ videos of {FRAMES} frames; this tree {ROOT} vs base {args.base}")
    work = Path(tempfile.mkdtemp(prefix="bench-matcher-compare-"))
    try:
        db_path = work / "node.db"
        _, _, _, next_index = populate(db_path, args.size, np.random.default_rng(args.size))
        extra_rows(db_path, next_index, np.random.default_rng(3))
        next_index += MD5S + VIDEOS
        runs: dict[str, list[dict]] = {"base": [], "this": []}
        for round_ in range(args.rounds):
            for name, tree in (("base", args.base), ("this", ROOT)) if round_ % 2 == 0 else \
                    (("this", ROOT), ("base", args.base)):
                runs[name].append(run_tree(tree.resolve(), db_path, next_index))
        for name, rs in runs.items():
            print(f"  {name}: {rs[0]['node']}")
        same = all(r["answers"] == runs["base"][0]["answers"] for rs in runs.values() for r in rs)
        print(f"same answers to {len(runs['base'][0]['answers'])} queries (PDQ, MD5, vPDQ) in every run: {same}")
        print("| figure | base | this tree | this / base |\n|---|---|---|---|")
        for key in ("build_s", "pdq_single_us", "pdq_batch_qps", "md5_us", "vpdq_us", "adds_per_s", "withdrawals_per_s"):
            base = statistics.median(r[key] for r in runs["base"])
            this = statistics.median(r[key] for r in runs["this"])
            better = "higher is better" if key in RATES else "lower is better"
            print(f"| {key} ({better}) | {base:,.3f} | {this:,.3f} | {this / base:.3f} |")
        print(f"load after: {os.getloadavg()[0]:.2f}")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
