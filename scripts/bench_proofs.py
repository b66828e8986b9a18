#!/usr/bin/env python3
"""Offline proofs and witnessing: what they cost.

1. C2SP tlog-proofs of PDQ submissions (protocol/tlogproof.py) in logs of 1,000 and
   1,048,576 entries, under a checkpoint cosigned by 2 witnesses and checked against a
   2-of-3 tlog-policy: bytes for one entry and for a bundle of 10, build time per entry,
   offline verification time for 1 and for 10 entries.
2. A real witness node (an in-process `serve`, real SQLite with synchronous=FULL, real
   HTTP on 127.0.0.1 with keep-alive): one log growing by one entry per request, every
   request a consistency proof and a cosignature: requests/s and latency p50/p99 --
   the capacity a witness offers against the add-checkpoint rates logs declare.

Usage: .venv/bin/python scripts/bench_proofs.py [--seconds 5] [--big 1048576]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from protocol.cosignature import CosignatureSigner  # noqa: E402
from protocol.entries import Submission, encode_entry  # noqa: E402
from protocol.merkle import MerkleFrontier, consistency_proof, leaf_hash, node_hash  # noqa: E402
from protocol.note import Signer, add_signatures  # noqa: E402
from protocol.policy import Policy  # noqa: E402
from protocol.tlogproof import build_proofs, verify_proofs  # noqa: E402

LOG = Signer("bench.example/log", bytes(32))
WITNESSES = [CosignatureSigner(f"w{i}.example", bytes([i]) * 32) for i in range(1, 4)]


def entry(i: int) -> bytes:
    fingerprint = hashlib.sha256(b"%d" % i).digest()
    return encode_entry(Submission("pdq", fingerprint, 90, ("image",), 20_000))


class Tree:
    """Every perfect-subtree hash of a tree, level by level (what tiles hold)."""

    def __init__(self, leaves: list[bytes]):
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def node_at(self, level: int, index: int) -> bytes:
        return self.levels[level][index]


def root(size: int, tree: Tree) -> bytes:
    from protocol.merkle import root_from_nodes

    return root_from_nodes(size, tree.node_at)


def proofs_section(sizes: list[int]) -> None:
    policy = Policy.k_of_n([w.verifier_key() for w in WITNESSES], 2, [LOG.verifier_key()])
    print("C2SP tlog-proof, PDQ submission entries, checkpoint cosigned by 2 witnesses, 2-of-3 policy:")
    print(f"{'log size':>11} {'1 entry':>9} {'10 entries':>11} {'build/entry':>12} {'verify 1':>9} {'verify 10':>10}")
    for size in sizes:
        entries = {i: entry(i) for i in range(size)} if size <= 10_000 else None
        leaves = [leaf_hash(entry(i)) for i in range(size)]
        tree = Tree(leaves)
        cp = Checkpoint(LOG.name, size, root(size, tree))
        note = add_signatures(sign_checkpoint(cp, LOG), [w.cosign(cp.to_text(), 1767225600) for w in WITNESSES[:2]])
        pick = [size * k // 10 for k in range(10)]
        chosen = {i: (entries[i] if entries else entry(i)) for i in pick}
        t0 = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            ten = build_proofs(note, chosen, tree.node_at)
        build = (time.perf_counter() - t0) / rounds / len(pick)
        one = build_proofs(note, {pick[3]: chosen[pick[3]]}, tree.node_at)
        one_bytes, ten_bytes = one.to_bytes(), ten.to_bytes()

        def timed(data: bytes) -> float:
            best = float("inf")
            for _ in range(20):
                t = time.perf_counter()
                verify_proofs(data, policy)
                best = min(best, time.perf_counter() - t)
            return best

        print(f"{size:>11,} {len(one_bytes):>7} B {len(ten_bytes):>9} B {build * 1e3:>9.3f} ms "
              f"{timed(one_bytes) * 1e3:>6.2f} ms {timed(ten_bytes) * 1e3:>7.2f} ms")


async def witness_section(seconds: float) -> None:
    import aiohttp

    from node.cli import main as cli_main
    from node.datadir import DataDir
    from node.store import open_db
    from node.store import witness as store
    from node.web.app import RunningNode
    from node.witness.addcheckpoint import encode_request

    with tempfile.TemporaryDirectory() as tmp:
        root_dir = Path(tmp) / "witness"
        assert cli_main(["init", "--dir", str(root_dir), "--origin", "witness.example/w", "--role", "witness"]) == 0
        logging.getLogger().setLevel(logging.WARNING)   # `init` turned INFO on: no access log lines
        datadir = DataDir(root_dir)
        db = open_db(datadir.db_path)
        store.add_known_log(db, LOG.name, LOG.verifier_key())
        db.close()
        node = await RunningNode(datadir).start("127.0.0.1", 0)
        leaves = [leaf_hash(entry(i)) for i in range(200_000)]
        frontier = MerkleFrontier()
        latencies = []
        try:
            async with aiohttp.ClientSession() as session:
                size, deadline = 0, time.monotonic() + seconds
                while time.monotonic() < deadline and size + 1 < len(leaves):
                    new = size + 1
                    proof = consistency_proof(size, new, leaves) if 0 < size else []
                    frontier.append(leaves[size])
                    cp = Checkpoint(LOG.name, new, frontier.root())
                    body = encode_request(size, proof, sign_checkpoint(cp, LOG))
                    t = time.perf_counter()
                    async with session.post(node.public_url + "/add-checkpoint", data=body) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    latencies.append(time.perf_counter() - t)
                    size = new
        finally:
            await node.stop()
    latencies.sort()
    total = sum(latencies)
    print(f"\nwitness add-checkpoint over HTTP (keep-alive, one client, growth by one entry, fsync per request):")
    print(f"  {len(latencies)} requests in {total:.1f} s: {len(latencies) / total:,.0f} cosignatures/s; "
          f"latency p50 {statistics.median(latencies) * 1e3:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to load the witness")
    ap.add_argument("--big", type=int, default=1 << 20, help="size of the large log")
    args = ap.parse_args()
    proofs_section([1000, args.big])
    asyncio.run(witness_section(args.seconds))


if __name__ == "__main__":
    main()
