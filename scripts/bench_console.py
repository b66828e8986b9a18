#!/usr/bin/env python3
"""Benchmark: the operator console and /metrics of a helpline with 100,000 cases and
1,000,000 feedback entries.

    .venv/bin/python scripts/bench_console.py [--cases 100000] [--feedback 1000000] [--work DIR]

1. BUILD: `ncii-node init` a helpline; its own log (two PDQ submissions per case)
   and the withdrawals of 5 % of the cases, written by the real sequencer; the cases
   stored through node/store/cases.py (opened over the last 90 days; PIN hashes are
   placeholders: no scrypt); three
   followed platforms whose 1,000,000 feedback entries (verdicts on random entries of
   the log) are applied by the follower's own code (node/follow/apply.py: staging,
   the follow_feedback rows and the daily summaries), spread over the last 60 days.
   Reused when --work already holds it.
2. SERVE: `ncii-node serve` as a separate process.
3. MEASURE (this process, over HTTP on loopback): GET /console for each window, and
   GET /metrics, each many times; GET /checkpoint as the baseline of a trivial answer.

Targets: console page <= 500 ms, /metrics <= 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_support import PYTHON, append_with_sequencer, serving  # noqa: E402
ORIGIN = "bench-helpline.example/log"
PLATFORMS = ("platform-a.example/feedback", "platform-b.example/feedback", "platform-c.example/feedback")
VERDICT_WEIGHTS = {"matched-pending-review": 45, "removed": 40, "not-violating": 12, "disputed-false-match": 3}
DAY = 86400


def cli(*argv: str) -> None:
    subprocess.run([PYTHON, "-m", "node", *argv], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def build(helpline: Path, cases: int, feedback: int) -> None:
    from node.datadir import DataDir
    from node.follow.apply import apply_staged, stage_entries
    from node.store import cases as case_store
    from node.store import follow as follow_store
    from node.store import open_db
    from protocol.entries import Feedback, Submission, Withdrawal, encode_entry
    from protocol.merkle import leaf_hash
    from protocol.note import Signer

    rng = random.Random(14)
    cli("init", "--dir", str(helpline), "--origin", ORIGIN, "--role", "helpline")
    datadir = DataDir(helpline)
    # Two submissions per case, then one withdrawal entry per withdrawn case (5 %).
    withdrawn = [c for c in range(cases) if rng.random() < 0.05]
    submissions = 2 * cases
    entries = [encode_entry(Submission("pdq", rng.randbytes(32), 90, ("image",), 0)) for _ in range(submissions)]
    entries += [encode_entry(Withdrawal((2 * c, 2 * c + 1))) for c in withdrawn]
    seconds = append_with_sequencer(helpline, entries)
    print(f"built: own log of {len(entries):,} entries (real sequencer) in {seconds:.1f} s", flush=True)
    leaves = [leaf_hash(e) for e in entries]
    db = open_db(datadir.db_path)
    db.execute("PRAGMA synchronous=OFF")  # building only; the node itself runs with FULL
    now = time.time()
    today = int(now // DAY)
    size = len(entries)
    withdrawal_of = {c: submissions + j for j, c in enumerate(withdrawn)}
    started = time.monotonic()
    with db.atomic():
        for c in range(cases):
            day = today - rng.randrange(90)
            case_id = case_store.insert_pending_case(db, rng.randbytes(32), b"salt", b"hash", "scrypt:bench", day,
                                                     [(leaves[2 * c], "pdq", False), (leaves[2 * c + 1], "pdq", False)])
            case_store.publish_case(db, case_id, [(2 * c, size), (2 * c + 1, size)])
            if c in withdrawal_of:
                day = min(today, day + rng.randrange(30))
                case_store.mark_withdrawn(db, case_id, day)
                case_store.record_withdrawals(db, case_id, [(2 * c + k, withdrawal_of[c], size, day) for k in (0, 1)])
    print(f"built: {cases:,} cases in {time.monotonic() - started:.1f} s", flush=True)
    for platform in PLATFORMS:
        follow_store.add_log(db, platform, f"http://{platform}", Signer.generate(platform).verifier_key())
    verdicts = list(VERDICT_WEIGHTS)
    weights = list(VERDICT_WEIGHTS.values())
    chunk = 10_000
    started = time.monotonic()
    next_index = dict.fromkeys(PLATFORMS, 0)
    for k in range(0, feedback, chunk):
        platform = PLATFORMS[(k // chunk) % len(PLATFORMS)]
        at = now - 60 * DAY * (1 - k / feedback)
        batch = []
        for verdict in rng.choices(verdicts, weights, k=min(chunk, feedback - k)):
            target = rng.randrange(submissions)
            batch.append(encode_entry(Feedback(ORIGIN, target, leaves[target], verdict)))
        first = next_index[platform]
        with db.atomic():
            follow_store.reset_staging(db, platform)
            stage_entries(db, platform, first, batch, [leaf_hash(e) for e in batch])
            apply_staged(db, platform, "", ORIGIN, now=at)
        next_index[platform] = first + len(batch)
    seconds = time.monotonic() - started
    print(f"built: {feedback:,} feedback entries applied by the follower's code in {seconds:.1f} s "
          f"({feedback / seconds:,.0f}/s, daily summaries included)", flush=True)
    db.close()


def timed_get(url: str, token: str | None, runs: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            response.read()
            assert response.status == 200
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--feedback", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--work", type=Path, help="keep the data directory here (reused when present)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-console-"))
    helpline = work / "helpline"
    if args.build_only:
        build(helpline, args.cases, args.feedback)
        return 0
    if not (helpline / "config.toml").exists():
        work.mkdir(parents=True, exist_ok=True)
        # A subprocess, so that building leaves nothing in this process.
        subprocess.run([PYTHON, __file__, "--cases", str(args.cases), "--feedback", str(args.feedback),
                        "--work", str(work), "--build-only"], check=True)
    with serving(helpline) as info:
        token = (helpline / "admin.token").read_text().strip()
        metrics_token = (helpline / "metrics.token").read_text().strip()
        timed_get(info["admin_url"] + "/console", token, 2)  # warm up (imports, page cache)
        print(f"\nhelpline: {args.cases:,} cases, {args.feedback:,} feedback entries from {len(PLATFORMS)} platforms",
              flush=True)
        print(f"GET /checkpoint (baseline)   {summary(timed_get(info['public_url'] + '/checkpoint', None, args.runs))}")
        for window in ("7d", "30d", "all"):
            times = timed_get(f"{info['admin_url']}/console?window={window}", token, args.runs)
            print(f"GET /console?window={window:<4}     {summary(times)}   (target <= 500 ms)")
        times = timed_get(info["admin_url"] + "/metrics", metrics_token, args.runs * 3)
        print(f"GET /metrics                 {summary(times)}   (target <= 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
