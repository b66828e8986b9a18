#!/usr/bin/env python3
"""Benchmark: sustained appends per second into a publishing node with 1 s checkpoints,
and the latency from append to published checkpoint (p50 / p99).

It creates a fresh data directory (or uses --dir), starts `ncii-node serve` as a
separate process, and drives the admin endpoint open-loop at --rate entries/s: every
--tick seconds a request of rate*tick JSON lines is sent, whatever happened to the
previous ones, for --seconds. An entry's latency is the time from sending its request
to receiving the acknowledgement, which the node gives only once a published
checkpoint includes the entry. At the end the checkpoint is verified.

    .venv/bin/python scripts/bench_publish.py                   # 10,000/s for 30 s
    .venv/bin/python scripts/bench_publish.py --rate 20000 --seconds 20

Target (issue 3): >= 10,000 entries/s sustained with p99 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def drive(admin_url: str, token: str, bodies: list[bytes], per_request: int, tick: float):
    import aiohttp

    latencies: list[tuple[float, int]] = []  # (seconds, entries)
    errors: list[str] = []

    async def one(session, body):
        sent = time.perf_counter()
        try:
            async with session.post(admin_url + "/admin/append", data=body,
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                text = await r.text()
                if r.status != 200:
                    errors.append(f"{r.status} {text[:200]}")
                    return
                n = text.count("\n")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
            return
        latencies.append((time.perf_counter() - sent, n))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        tasks = []
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = start + i * tick - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, body)))
        offered_end = time.perf_counter()
        await asyncio.gather(*tasks)
        end = time.perf_counter()
    return latencies, errors, start, offered_end, end


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="offered entries per second (default 10000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to offer load (default 30)")
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between requests (default 0.05)")
    parser.add_argument("--interval", type=float, default=1.0, help="sequencing interval (default 1.0 s)")
    parser.add_argument("--dir", help="data directory to use (default: a fresh temporary one)")
    args = parser.parse_args()

    from node.cli import main as cli_main
    from node.datadir import DataDir

    tmp = None
    if args.dir:
        root = Path(args.dir)
    else:
        tmp = tempfile.mkdtemp(prefix="bench-publish-", dir=os.environ.get("BENCH_TMP"))
        root = Path(tmp) / "node"
    if not (root / "config.toml").exists():
        assert cli_main(["init", "--dir", str(root), "--origin", "bench.example/log", "--public-read"]) == 0
    datadir = DataDir(root)
    config = datadir.config
    config.log.sequencing_interval = args.interval
    datadir.save_config(config)
    token = datadir.admin_token()

    per_request = max(1, round(args.rate * args.tick))
    requests = max(1, round(args.seconds / args.tick))
    counter = int(time.time() * 1000) << 20  # distinct fingerprints across runs on one --dir
    bodies = []
    for r in range(requests):
        lines = [json.dumps({"kind": "submission", "signal": "pdq",
                             "fingerprint": f"{(counter + r * per_request + i) % (1 << 256):064x}",
                             "quality": 90, "labels": ["image"]})
                 for i in range(per_request)]
        bodies.append(("\n".join(lines) + "\n").encode())

    stderr_path = root / "bench-serve.log"
    datadir.remove_serve_info()
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(root), "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    try:
        for _ in range(600):
            info = datadir.read_serve_info()
            if info and info.get("pid") == proc.pid:
                break
            if proc.poll() is not None:
                print(stderr_path.read_text(), file=sys.stderr)
                return 1
            time.sleep(0.05)
        else:
            print("node did not start", file=sys.stderr)
            return 1
        print(f"offering {args.rate} entries/s for {args.seconds:.0f} s ({per_request} lines every "
              f"{args.tick * 1000:.0f} ms), sequencing interval {args.interval} s, node pid {proc.pid}")
        latencies, errors, start, offered_end, end = asyncio.run(
            drive(info["admin_url"], token, bodies, per_request, args.tick))

        import urllib.request

        from protocol.checkpoint import open_checkpoint
        from protocol.note import Verifier

        note = urllib.request.urlopen(info["public_url"] + "/checkpoint").read()
        cp, _ = open_checkpoint(note, [Verifier.from_vkey(datadir.load_log_signer().verifier_key())])
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    acked = sum(n for _, n in latencies)
    per_entry = []
    for seconds, n in latencies:
        per_entry.extend([seconds] * n)
    batch_ms = [float(m) for m in re.findall(r"\(\+\d+ entries\) in (\d+) ms", stderr_path.read_text())]
    batch_sizes = [int(m) for m in re.findall(r"\(\+(\d+) entries\)", stderr_path.read_text())]
    print(f"acknowledged entries:   {acked} of {per_request * requests} offered; {len(errors)} failed requests")
    if errors:
        print("  first error:", errors[0])
    offered_for = offered_end - start + args.tick
    rate = acked / offered_for
    print(f"sustained rate:         {rate:,.0f} entries/s acknowledged over the {offered_for:.1f} s of offered "
          f"load (last acknowledgement {end - offered_end:.2f} s after the last request)")
    if per_entry:
        print(f"append -> published:    p50 {percentile(per_entry, 50):.3f} s, p99 {percentile(per_entry, 99):.3f} s, "
              f"max {max(per_entry):.3f} s")
    if batch_ms:
        print(f"batches:                {len(batch_ms)}, mean {statistics.mean(batch_sizes):,.0f} entries, "
              f"publish time mean {statistics.mean(batch_ms):.0f} ms, max {max(batch_ms):.0f} ms")
    print(f"final checkpoint:       size {cp.size}, signature verified")
    if tmp and not args.dir:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = not errors and per_entry and rate >= 0.97 * args.rate and percentile(per_entry, 99) <= 2.0
    print("target (>= 10,000/s sustained, p99 <= 2 s):", "met" if ok and args.rate >= 10_000 else "NOT met"
          if args.rate >= 10_000 else "n/a (rate below 10,000/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
