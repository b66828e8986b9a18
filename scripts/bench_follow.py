#!/usr/bin/env python3
"""Benchmark: a follower catching up a 1,000,000-entry log served over loopback by a real node.

    .venv/bin/python scripts/bench_follow.py [--entries 1000000] [--work DIR] [--public]

1. BUILD (a subprocess, so that its memory does not count): `ncii-node init` a helpline
   data directory, start the real node in-process (node.web.app.RunningNode) and hand
   all entries to its sequencer directly (`Sequencer.append`, the batch writer behind
   POST /admin/append; batches of [log] max_batch_entries = 200,000), so the tiles,
   bundles and checkpoint are written by the real publishing code. Random PDQ
   submissions (quality, labels, day) with a withdrawal every 1,000 entries.
   Reused when --work already holds a log of that size.
2. SERVE: `ncii-node serve --dir HELPLINE --port 0` as a separate process. Unless
   --public, the log is restricted and the follower's request key is registered as a
   reader: every request is signed (RFC 9421) and checked, as in production.
3. FOLLOW (this process): a platform data directory follows the log; rounds run until
   the follower holds the whole log. Every tile is checked against the signed root,
   every leaf against its tile, every entry decoded, everything stored in SQLite.

Prints entries/s and the peak RSS of this process (targets: <= 60 s, <= 500 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
ORIGIN = "bench-helpline.example/log"


def cli(*argv: str) -> None:
    subprocess.run([PYTHON, "-m", "node", *argv], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------ build (subprocess)

def build(helpline: Path, count: int) -> None:
    from protocol.entries import LABELS, Submission, Withdrawal, encode_entry

    rng = random.Random(1)
    entries = []
    for i in range(count):
        if i % 1000 == 999:
            entries.append(encode_entry(Withdrawal((i - 500,))))
        else:
            labels = tuple(label for label in LABELS[:4] if rng.random() < 0.3)
            entries.append(encode_entry(Submission("pdq", rng.randbytes(32), rng.randrange(50, 101), labels,
                                                   rng.randrange(19000, 20500))))

    from bench_support import append_with_sequencer

    seconds = append_with_sequencer(helpline, entries)
    print(f"built {count:,} entries with the real sequencer in {seconds:.1f} s", flush=True)


def log_size(helpline: Path) -> int:
    from node.datadir import DataDir
    from node.store import log as log_store
    from node.store import open_db

    db = open_db(DataDir(helpline).db_path)
    try:
        latest = log_store.latest_checkpoint(db)
        return latest.size if latest else 0
    finally:
        db.close()


# ------------------------------------------------------------------ follow (this process)

def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


async def follow(platform: Path, url: str, vkey: str, count: int, signed: bool) -> dict:
    from node.datadir import DataDir
    from node.follow.client import PeerClient
    from node.follow.sync import DatabaseWorker, Follower
    from node.readaccess import RequestSigner
    from node.store import follow as store
    from node.store import open_db

    datadir = DataDir(platform)
    db = open_db(datadir.db_path)
    if store.get_log(db, ORIGIN) is None:
        store.add_log(db, ORIGIN, url, vkey)
    signer = None
    if signed:
        key = datadir.load_request_signer()
        signer = RequestSigner.from_seed(key.name, key.seed)
    worker = DatabaseWorker(datadir.db_path)
    client = PeerClient(url, signer=signer, timeout=30)
    follower = Follower(ORIGIN, client, worker)
    peak = rss_mb()

    async def sample():
        nonlocal peak
        while True:
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    cpu = time.process_time()
    started = time.monotonic()
    rounds = 0
    while store.get_log(db, ORIGIN).size < count:
        await follower.sync_once()
        rounds += 1
    seconds = time.monotonic() - started
    cpu = time.process_time() - cpu
    sampler.cancel()
    state = store.get_log(db, ORIGIN)
    counts = store.fingerprint_counts(db).get(ORIGIN, {})
    await client.close()
    await worker.close()
    db.close()
    return {"seconds": seconds, "cpu_seconds": cpu, "rounds": rounds, "size": state.size, "peak_rss_mb": peak,
            "fingerprints": counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, help="working directory (kept; a built log is reused)")
    parser.add_argument("--public", action="store_true", help="serve the log to anyone (no signed reads)")
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.build_only, args.entries)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-follow-"))
    work.mkdir(parents=True, exist_ok=True)
    helpline, platform = work / "helpline", work / "platform"
    if not helpline.exists():
        cli("init", "--dir", str(helpline), "--origin", ORIGIN, *(["--public-read"] if args.public else []))
    if log_size(helpline) != args.entries:
        if log_size(helpline) != 0:
            print(f"{helpline} holds another log; use a new --work", file=sys.stderr)
            return 1
        subprocess.run([PYTHON, __file__, "--entries", str(args.entries), "--build-only", str(helpline)],
                       check=True)
    if platform.exists():
        subprocess.run(["rm", "-rf", str(platform)], check=True)
    cli("init", "--dir", str(platform), "--origin", "bench-platform.example/log", "--role", "platform")

    from node.datadir import DataDir

    vkey = DataDir(helpline).load_log_signer().verifier_key()
    if not args.public:
        request_vkey = DataDir(platform).load_request_signer().verifier_key()
        subprocess.run([PYTHON, "-m", "node", "readers", "add", "--dir", str(helpline), request_vkey],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([PYTHON, "-m", "node", "serve", "--dir", str(helpline), "--port", "0"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        info = None
        while time.monotonic() < deadline:
            info = DataDir(helpline).read_serve_info()
            if info and info.get("pid") == server.pid:
                break
            time.sleep(0.1)
        else:
            print("the node did not start", file=sys.stderr)
            return 1
        url = info["public_url"]
        print(f"log of {args.entries:,} entries served by `ncii-node serve` (pid {server.pid}) at {url}; "
              f"reads {'public' if args.public else 'signed (RFC 9421) and checked'}", flush=True)
        result = asyncio.run(follow(platform, url, vkey, args.entries, not args.public))
    finally:
        server.terminate()
        server.wait(30)
    rate = result["size"] / result["seconds"]
    fp = result["fingerprints"]
    print(json.dumps({**result, "entries_per_second": round(rate)}, indent=1))
    print(f"catch-up of {result['size']:,} entries: {result['seconds']:.1f} s = {rate:,.0f} entries/s "
          f"(verify + store), {result['rounds']} round(s), follower CPU {result['cpu_seconds']:.1f} s; peak RSS {result['peak_rss_mb']:.0f} MB "
          f"(ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    print(f"fingerprints: {fp.get('active', 0):,} active, {fp.get('withdrawn', 0):,} withdrawn")
    ok = result["seconds"] <= 60 and result["peak_rss_mb"] <= 500
    print(f"targets (<= 60 s, <= 500 MB RSS): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
