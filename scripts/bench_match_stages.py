#!/usr/bin/env python3
"""Where a batch of the match API goes, stage by stage, per distribution, code before and
after in one run (issue 19 and the batches that match a lot).

For each distribution (default: uniform and correlated, scripts/pdq_distributions.py)
a platform database of N fingerprints is written as scripts/bench_match_api.py writes
it, then a third of its entries get a label and a tenth a feedback verdict (so that
describing has something to say). A worker process per code tree loads the node's
`Matcher` from it (the same code `ncii-node serve` runs): this tree, and with `--base
DIR` a checkout of the code before (e.g. `git worktree add --detach ../base main`; its
compiled core is taken from this tree when it has none). Batches of 1,000 fresh
fingerprints of that kind, and 1,000 at the near-duplicate clusters (a viral image:
up to 100 hits a query), go through what POST /v1/match does after the HTTP layer:

  parse     the JSON body -> Query objects (node.matcher.api.parse_match_body)
  search    the index, per-log thresholds, nearest 100 + total, the hits sorted
            (before: `Matcher.match_many`, a `Hit` per hit; after: `Matcher.search`, arrays)
  describe  labels, quality, day and feedback of the hits (before: `describe_many`, a
            dict per hit; after: `descriptions_of`, once per distinct entry, kept between
            batches until the follower applies feedback: "cold" forgets them first)
  answer    the JSON text of the answer (before: json.dumps of the dicts)

Rounds alternate between the code trees and batches, so each meets the same load; the
answers of the trees are compared byte for byte (SHA-256) on every batch. Printed:
median wall and CPU ms per batch per stage (CPU counts every thread of the worker),
hits and total per query, and the load average. The HTTP layer is the same for all
(bench_match_api.py gives the whole).

Usage: .venv/bin/python scripts/bench_match_stages.py [--size 1000000] [--rounds 5] [--base DIR]
"""

from __future__ import annotations

import argparse
import hashlib
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
STAGES = ("parse", "search", "describe", "answer")
BODIES = 4  # distinct batches of each kind


# ------------------------------------------------------------------------ the worker

def worker(code: Path, db_path: str, bodies_path: str) -> int:
    """Load a Matcher of the code at `code`; answer "label body mode" lines with JSON timings."""
    sys.path.insert(0, str(code))
    from node.jsontext import parse_json
    from node.matcher import api
    from node.matcher.service import Matcher

    assert Path(api.__file__).resolve().is_relative_to(code.resolve()), api.__file__
    bodies = json.loads(Path(bodies_path).read_text())
    matcher = Matcher(pending_load=True)
    matcher.load(db_path, read_only=True)
    after = hasattr(matcher, "search")
    print(json.dumps({"ready": True, "code": str(code), "after": after}), flush=True)
    for line in sys.stdin:
        label, number, mode = line.split()
        body = bodies[label][int(number)].encode()
        times: dict[str, tuple[float, float]] = {}

        def timed(stage, f):
            wall, cpu = time.perf_counter(), time.process_time()
            out = f()
            times[stage] = (time.perf_counter() - wall, time.process_time() - cpu)
            return out

        queries, _ = timed("parse", lambda: api.parse_match_body(parse_json(body, hint=""), 1000))
        if after:
            from node.matcher.answers import answer_json

            found = timed("search", lambda: matcher.search(queries, limit=100))
            if mode == "cold":
                matcher.descriptions.forget()
            tails = timed("describe", lambda: matcher.descriptions_of(found))
            text = timed("answer", lambda: answer_json(found, queries, tails, True))
            hits, totals = found.hit_count(), sum(found.totals)
        else:
            results = timed("search", lambda: matcher.match_many(queries, limit=100))
            described = timed("describe", lambda: matcher.describe_many([r.hits for r in results]))
            text = timed("answer", lambda: json.dumps({"results": [api.result_json(r, d, q) for q, r, d
                                                                   in zip(queries, results, described)]}))
            hits, totals = sum(len(r.hits) for r in results), sum(r.total for r in results)
        print(json.dumps({"times": times, "hits": hits / len(queries), "total": totals / len(queries),
                          "sha256": hashlib.sha256(text.encode()).hexdigest()}), flush=True)
    matcher.close()
    return 0


class Worker:
    def __init__(self, code: Path, db_path: Path, bodies_path: Path):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(code), str(db_path), str(bodies_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=code)
        hello = json.loads(self.process.stdout.readline())
        self.after = hello["after"]

    def run(self, label: str, number: int, mode: str) -> dict:
        self.process.stdin.write(f"{label} {number} {mode}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


# ------------------------------------------------------------------------ the data

def prepared(kind: str, n: int, work: Path) -> tuple[Path, dict[str, list[str]]]:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_match_api as api_bench
    import pdq_distributions as dist
    from node.datadir import DataDir
    from node.store import open_db

    root = work / kind
    api_bench.init_platform(root)
    db_path = DataDir(root).db_path
    data = dist.make(kind, n, seed=n)
    api_bench.populate(db_path, data, np.random.default_rng(n))
    db = open_db(db_path)
    with db.atomic():  # something to describe: labels on a third, a verdict on a tenth
        db.execute("UPDATE fingerprints SET labels = 'sexual' WHERE idx % 3 = 0")
        db.execute("INSERT INTO follow_feedback (from_origin, from_idx, origin, idx, leaf_hash, verdict, entry_matches) "
                   "SELECT 'platform.bench.example/other', idx, origin, idx, leaf_hash, 'removed', 1 FROM fingerprints "
                   "WHERE idx % 10 = 0")
    db.close()
    rng = np.random.default_rng(1)

    def body(fingerprints) -> str:
        return json.dumps({"fingerprints": [{"signal": "pdq", "fingerprint": fp.tobytes().hex()}
                                            for fp in fingerprints]})

    bodies = {kind: [body(data.unrelated(rng, 1000)) for _ in range(BODIES)]}
    if len(data.centres):  # batches at the near-duplicate clusters: up to 100 hits a query to describe
        bodies[f"{kind}-at-clusters"] = [body(data.centres[rng.integers(0, len(data.centres), 1000)])
                                         for _ in range(BODIES)]
    return db_path, bodies


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        return worker(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--distributions", default="uniform,correlated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", type=Path, help="a checkout of the code before, measured in the same run")
    args = parser.parse_args()
    codes = [("after", ROOT)]
    if args.base:
        core = next((ROOT / "node" / "matcher").glob("_pdqindex*.so"), None)
        if core is not None and not list((args.base / "node" / "matcher").glob("_pdqindex*.so")):
            shutil.copy(core, args.base / "node" / "matcher")  # the same C core (only Python changed)
        codes.insert(0, ("before", args.base.resolve()))
    work = Path(tempfile.mkdtemp(prefix="bench-match-stages-"))
    rows: dict[str, dict] = {}
    loads = [os.getloadavg()[0]]
    try:
        for kind in args.distributions.split(","):
            db_path, bodies = prepared(kind, args.size, work)
            bodies_path = work / f"{kind}.json"
            bodies_path.write_text(json.dumps(bodies))
            workers = [(name, Worker(code, db_path, bodies_path)) for name, code in codes]
            runs = [(name, w, mode) for name, w in workers for mode in (("cold", "kept") if w.after else ("-",))]
            for label in bodies:  # warm-up
                for _, w, mode in runs:
                    w.run(label, 0, mode)
            loads.append(os.getloadavg()[0])
            for _ in range(args.rounds):
                for label in bodies:
                    for number in range(BODIES):
                        answers = set()
                        for name, w, mode in runs:
                            out = w.run(label, number, mode)
                            row = rows.setdefault(f"{label} | {name}" + (f", {mode}" if mode != "-" else ""),
                                                  {"times": {s: [] for s in STAGES}, "counts": []})
                            for stage in STAGES:
                                row["times"][stage].append(out["times"][stage])
                            row["counts"].append((out["hits"], out["total"]))
                            answers.add(out["sha256"])
                        assert len(answers) == 1, f"the code trees answered {label} #{number} differently"
            loads.append(os.getloadavg()[0])
            for _, w in workers:
                w.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.size:,} fingerprints, batches of 1,000, {args.rounds} x {BODIES} per row, interleaved; "
          f"answers equal byte for byte; {os.cpu_count()} cores, load average "
          + " -> ".join(f"{load:.1f}" for load in loads))
    print("\n| batch | code | " + " | ".join(f"{s} wall / CPU ms" for s in STAGES)
          + " | whole wall ms | q/s | hits / total per query |")
    print("|---" * (len(STAGES) + 5) + "|")
    for label, row in rows.items():
        cells, whole = [], 0.0
        for stage in STAGES:
            v = np.array(row["times"][stage])
            wall, cpu = float(np.median(v[:, 0])) * 1000, float(np.median(v[:, 1])) * 1000
            whole += wall
            cells.append(f"{wall:.1f} / {cpu:.1f}")
        hits, total = np.mean(row["counts"], axis=0)
        print(f"| {label} | " + " | ".join(cells) + f" | {whole:.1f} | {1000 / whole * 1000:,.0f} "
              f"| {hits:.2f} / {total:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
