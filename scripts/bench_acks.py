#!/usr/bin/env python3
"""Benchmark: how long until a platform acknowledges a case, and how big a receipt is.

    .venv/bin/python scripts/bench_acks.py [--cases 50] [--work DIR]

Two real nodes as separate `ncii-node serve` processes with DEFAULT settings
(sequencing every 1 s, followers polling every 1 s, acknowledgements at most every
2 s per log except at once after a withdrawal, production scrypt): a helpline whose
log is restricted to registered readers and a platform that follows it; the helpline
follows the platform back (as it does for feedback and case status).

1. `--cases` cases of 10 photos each (10 PDQ fingerprints) are opened over HTTP,
   one at a time after a random pause of 0-2 s (so creations fall at every phase of
   the timers and of the acknowledgement batching); then each is withdrawn, likewise.
2. For every case and every withdrawal, from the helpline's database:
     published     when the helpline published the first checkpoint holding it
     acknowledged  the time the platform signed in its first acknowledgement of a
                   tree holding it (read from the helpline's copy of the platform's
                   log, so verified like everything the helpline follows)
     seen          when the helpline had verified that acknowledgement (what the
                   person's status shows from then on)
   and the request time measured here. Prints p50/p99/max of acknowledged - published
   (the acknowledgement latency), of acknowledged - request, and of seen - published.
3. The receipt of a 10-photo case: its size as the helpline gave it at creation (in
   this run's log), and under a log of 1,048,576 entries with the helpline's
   publication cosignature, one platform's acknowledgement and two witnesses'
   cosignatures (built with the same code, protocol/tlogproof.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
PYTHON = sys.executable
HELPLINE = "bench-helpline.example/log"
PLATFORM = "bench-platform.example/log"
from bench_withdrawal import cli, start  # noqa: E402  (two real nodes, as that benchmark starts them)

YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}


def fingerprints(case: int) -> list[dict]:
    import hashlib

    return [{"signal": "pdq", "fingerprint": hashlib.sha256(b"%d/%d" % (case, i)).hexdigest(), "quality": 90}
            for i in range(10)]


class Probe:
    """Reads the helpline's database (read-only, beside the running node)."""

    def __init__(self, db_path: Path):
        self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)

    def published_at(self, size: int) -> float:
        return self.db.execute("SELECT published_at FROM log_checkpoints WHERE size = ?", (size,)).fetchone()[0]

    def acknowledged_ms(self, index: int) -> int | None:
        row = self.db.execute("SELECT time_ms FROM follow_acks WHERE from_origin = ? AND origin = ? AND step = 1 "
                              "AND size > ? ORDER BY size LIMIT 1", (PLATFORM, HELPLINE, index)).fetchone()
        return row[0] if row else None


async def measure(url: str, probe: Probe, cases: int, rng: random.Random) -> tuple[list, list, list]:
    import aiohttp

    async def post(session, path, body):
        async with session.post(url + path, json=body) as r:
            answer = await r.json()
            assert r.status in (200, 201), answer
            return answer

    async def wait_ack(index: int, request: float) -> tuple[float, float]:
        while True:
            ms = probe.acknowledged_ms(index)
            if ms is not None:
                return ms / 1000, time.time()
            if time.time() - request > 60:
                raise SystemExit(f"entry {index} not acknowledged after 60 s")
            await asyncio.sleep(0.005)

    opened, submissions, withdrawals = [], [], []
    async with aiohttp.ClientSession() as session:
        for n in range(cases):
            await asyncio.sleep(rng.uniform(0, 2))
            request = time.time()
            case = await post(session, "/v1/cases", {"eligibility": YES, "fingerprints": fingerprints(n)})
            last = max(case["published"], key=lambda p: p["index"])
            acked, seen = await wait_ack(last["index"], request)
            submissions.append((request, probe.published_at(last["checkpoint_size"]), acked, seen))
            opened.append(case)
            if (n + 1) % 10 == 0:
                print(f"  {n + 1} cases opened and acknowledged", flush=True)
        for n, case in enumerate(opened):
            await asyncio.sleep(rng.uniform(0, 2))
            request = time.time()
            answer = await post(session, "/v1/cases/withdraw", {"case_number": case["case_number"], "pin": case["pin"]})
            done = answer["withdrawn_at"]
            acked, seen = await wait_ack(max(done["entries"]), request)
            withdrawals.append((request, probe.published_at(done["checkpoint_size"]), acked, seen))
            if (n + 1) % 10 == 0:
                print(f"  {n + 1} withdrawals published and acknowledged", flush=True)
    return opened, submissions, withdrawals


def report(name: str, rows: list[tuple[float, float, float, float]]) -> None:
    from protocol.acknowledgements import percentile

    def line(what: str, values: list[float]) -> None:
        ordered = sorted(values)
        print(f"  {what:34s} p50 {statistics.median(ordered):6.2f} s   p99 {percentile(ordered, 0.99):6.2f} s"
              f"   max {ordered[-1]:6.2f} s")

    print(f"{name} (n = {len(rows)}):")
    line("published -> acknowledged", [a - p for _, p, a, _ in rows])
    line("request -> acknowledged", [a - r for r, _, a, _ in rows])
    line("published -> the helpline knows it", [s - p for _, p, _, s in rows])


def big_receipt(size: int = 1 << 20) -> int:
    """Bytes of a 10-entry receipt under a log of `size` entries, its checkpoint carrying
    the log's signature, a publication cosignature, one acknowledgement, two witnesses."""
    from bench_proofs import LOG, WITNESSES, Tree, entry, root
    from protocol.acknowledgements import acknowledge, cosignature_line
    from protocol.checkpoint import Checkpoint, sign_checkpoint
    from protocol.cosignature import CosignatureSigner
    from protocol.merkle import leaf_hash
    from protocol.note import add_signatures
    from protocol.tlogproof import build_proofs

    tree = Tree([leaf_hash(entry(i)) for i in range(size)])
    cp = Checkpoint(LOG.name, size, root(size, tree))
    text = cp.to_text()
    helpline_ack = CosignatureSigner(LOG.name, bytes([9]) * 32)
    platform_ack = acknowledge(CosignatureSigner(PLATFORM, bytes([8]) * 32), cp, int(time.time() * 1000))
    note = add_signatures(sign_checkpoint(cp, LOG), [helpline_ack.cosign(text, int(time.time())),
                                                     cosignature_line(platform_ack, PLATFORM),
                                                     *[w.cosign(text, int(time.time())) for w in WITNESSES[:2]]])
    first = size - 10
    return len(build_proofs(note, {i: entry(i) for i in range(first, size)}, tree.node_at).to_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-acks-"))
    helpline, platform = work / "helpline", work / "platform"
    if helpline.exists() or platform.exists():
        print(f"{work} is not empty; give a new --work", file=sys.stderr)
        return 1
    cli("init", "--dir", str(helpline), "--origin", HELPLINE)
    cli("init", "--dir", str(platform), "--origin", PLATFORM, "--role", "platform")

    from node.datadir import DataDir

    h, p = DataDir(helpline), DataDir(platform)
    cli("readers", "add", "--dir", str(helpline), p.load_request_signer().verifier_key(), "--name", "platform")
    cli("readers", "add", "--dir", str(platform), h.load_request_signer().verifier_key(), "--name", "helpline")
    processes = []
    try:
        helpline_process, hinfo = start(helpline)
        processes.append(helpline_process)
        platform_process, pinfo = start(platform)
        processes.append(platform_process)
        cli("follow", "add", "--dir", str(platform), hinfo["public_url"], "--vkey",
            h.load_log_signer().verifier_key(), "--name", "helpline")
        cli("follow", "add", "--dir", str(helpline), pinfo["public_url"], "--vkey",
            p.load_log_signer().verifier_key(), "--name", "Platform A")
        time.sleep(6)  # both followers pick the new logs up (reloaded every 5 s)
        print(f"measuring {args.cases} cases of 10 photos, then their withdrawals (default settings)", flush=True)
        opened, submissions, withdrawals = asyncio.run(measure(hinfo["public_url"], Probe(h.db_path), args.cases,
                                                               random.Random(21)))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
    report("cases (10 fingerprints each): the platform acknowledges the tree holding them", submissions)
    report("withdrawals: the platform acknowledges the tree holding the withdrawal", withdrawals)
    sizes = sorted(len(c["receipt"]) for c in opened)
    print(f"receipt of a 10-photo case at creation (log of up to {10 * len(opened)} entries): "
          f"{sizes[0]:,}-{sizes[-1]:,} bytes")
    print(f"receipt of a 10-photo case under a log of 1,048,576 entries, with the helpline's publication "
          f"cosignature, one platform's acknowledgement and two witnesses' cosignatures: {big_receipt():,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
