#!/usr/bin/env python3
"""Protocol core throughput: leaf hashes, Merkle roots, checkpoint verification, entry decoding.

Prints each figure next to its target. The Merkle root of 1,000,000 leaves is compared
with 2,000,000 bare hashlib.sha256 calls in the same run (the floor: a tree of N leaves
needs N leaf hashes and N-1 node hashes), so the ratio holds on a noisy machine.
Usage: .venv/bin/python scripts/bench_protocol.py [--leaves 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

from protocol import merkle
from protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from protocol.entries import Submission, decode_entry, encode_entry
from protocol.note import Signer


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.leaves
    data = [os.urandom(40) for _ in range(n)]

    t = best_of(args.runs, lambda: [merkle.leaf_hash(d) for d in data])
    print(f"leaf hashes:               {n / t:>12,.0f} /s")

    leaves = [merkle.leaf_hash(d) for d in data]
    sha = hashlib.sha256
    blobs = [b"\x01" + x + x for x in leaves]  # same input size as a node hash

    def floor() -> None:
        for b in blobs:
            sha(b).digest()
        for b in blobs:
            sha(b).digest()

    t_floor = best_of(args.runs, floor)
    t_root = best_of(args.runs, lambda: merkle.root_of(leaves))
    print(f"root of {n:,} leaves:   {t_root:>10.3f} s")
    print(f"{2 * n:,} bare sha256:     {t_floor:>10.3f} s")
    print(f"root / floor ratio:        {t_root / t_floor:>12.2f}   (target <= 1.5)")

    signer = Signer.generate("bench.example/log")
    verifier = __import__("protocol.note", fromlist=["Verifier"]).Verifier.from_vkey(signer.verifier_key())
    signed = sign_checkpoint(Checkpoint("bench.example/log", n, merkle.root_of(leaves[:1000])), signer)
    k = 5_000
    t = best_of(args.runs, lambda: [open_checkpoint(signed, [verifier]) for _ in range(k)])
    print(f"checkpoint verifications:  {k / t:>12,.0f} /s")

    entries = [
        encode_entry(Submission("pdq", os.urandom(32), 90, ("nude",), 20_000 + i % 30)) for i in range(100_000)
    ]
    t = best_of(args.runs, lambda: [decode_entry(e) for e in entries])
    print(f"entry decodes (PDQ):       {len(entries) / t:>12,.0f} /s   (target >= 300,000)")


if __name__ == "__main__":
    main()
