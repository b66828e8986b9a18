#!/usr/bin/env python3
"""Benchmark entry decoding and encoding; prints entries per second.

The claim it backs (spec/parts/entries.md): a follower decodes typical PDQ
submissions at 300,000 entries/s or more on one core.
Usage: scripts/bench_entries.py [--n 300000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.entries import (  # noqa: E402
    Feedback,
    Submission,
    Withdrawal,
    decode_entry,
    encode_entry,
    entry_and_bytes_from_json,
    entry_from_json,
    entry_to_json,
)
from protocol.signals import PDQ, VPDQ, VpdqFrame  # noqa: E402


def rate(fn, items, rounds: int = 3) -> float:
    """Best of `rounds` passes, in calls per second."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="entries per pass (default 300,000)")
    args = parser.parse_args()
    n = args.n

    # Distinct entries, as a follower sees them: different hashes, qualities, days.
    pdq = [
        Submission("pdq", (i * 0x9E3779B97F4A7C15 % 2**256).to_bytes(32, "big"), 50 + i % 51, ("nude", "image"),
                   19000 + i % 1000)
        for i in range(n)
    ]
    pdq_bytes = [encode_entry(e) for e in pdq]
    pdq_json = [entry_to_json(e) for e in pdq[: n // 10]]
    withdrawals = [encode_entry(Withdrawal((i, i + 1, i + 7))) for i in range(n // 10)]
    feedback = [encode_entry(Feedback("platform.example/feedback", i, bytes(32), "removed")) for i in range(n // 10)]
    video = VPDQ.from_frames([VpdqFrame(PDQ.examples()[i % 3], 90, i * 1000) for i in range(300)])
    vpdq = [encode_entry(Submission("vpdq", video, None, ("video",), 19000))] * max(1, n // 1000)

    print(f"entry benchmark, {n:,} PDQ submissions ({len(pdq_bytes[0])} bytes each), best of 3 passes")
    print(f"  decode pdq submission     {rate(decode_entry, pdq_bytes):>12,.0f} /s")
    print(f"  encode pdq submission     {rate(encode_entry, pdq):>12,.0f} /s")
    print(f"  decode withdrawal (3)     {rate(decode_entry, withdrawals):>12,.0f} /s")
    print(f"  decode feedback           {rate(decode_entry, feedback):>12,.0f} /s")
    print(f"  decode vpdq (300 frames)  {rate(decode_entry, vpdq):>12,.0f} /s")
    print(f"  entry_from_json pdq       {rate(entry_from_json, pdq_json):>12,.0f} /s")
    # An append needs the entry (to check it) and its bytes (to log them): one encoding
    # with entry_and_bytes_from_json, two when the bytes are encoded again afterwards.
    print(f"  JSON -> entry and bytes   {rate(entry_and_bytes_from_json, pdq_json):>12,.0f} /s  (append path)")
    print(f"    ... encoding twice      {rate(lambda o: encode_entry(entry_from_json(o)), pdq_json):>12,.0f} /s  "
          "(entry_from_json, then encode_entry)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
