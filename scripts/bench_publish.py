#!/usr/bin/env python3
"""Benchmark: latency from append to published checkpoint when the node is not
saturated, and the sustained appends per second it takes under load.

It creates a fresh data directory (or uses --dir), starts `ncii-node serve` as a
separate process with the default sequencing (a batch at once when the log is idle,
at most one checkpoint per `[log] sequencing_interval` = 0.025 s under load), and
drives the admin endpoint open-loop in two phases:

  1. light load: single-entry appends at random (Poisson) times, --light-rate per
     second for --light-seconds (a helpline's cases, a withdrawal now and then);
  2. sustained load: every --tick seconds a request of rate*tick JSON lines, whatever
     happened to the previous ones, for --seconds.

An entry's latency is the time from sending its request to receiving the
acknowledgement, which the node gives only once a published checkpoint includes the
entry. At the end the checkpoint is verified.

    .venv/bin/python scripts/bench_publish.py                   # 20 appends/s, then 10,000/s for 30 s
    .venv/bin/python scripts/bench_publish.py --rate 20000 --seconds 20 --interval 1.0

Targets (issues 3 and 18): light load p99 <= 100 ms; >= 10,000 entries/s sustained.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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


async def drive(admin_url: str, token: str, schedule: list[tuple[float, bytes]]):
    """Send each body at its offset (seconds from the start), open-loop."""
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
        for offset, body in schedule:
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, body)))
        offered_end = time.perf_counter()
        await asyncio.gather(*tasks)
        end = time.perf_counter()
    return latencies, errors, start, offered_end, end


class Fingerprints:
    """Distinct submission lines (distinct across runs on one --dir too)."""

    def __init__(self):
        self.next = int(time.time() * 1000) << 20

    def body(self, count: int) -> bytes:
        lines = []
        for _ in range(count):
            lines.append(json.dumps({"kind": "submission", "signal": "pdq",
                                     "fingerprint": f"{self.next % (1 << 256):064x}",
                                     "quality": 90, "labels": ["image"]}))
            self.next += 1
        return ("\n".join(lines) + "\n").encode()


def batches(log_text: str) -> tuple[list[int], list[float]]:
    sizes = [int(m) for m in re.findall(r"\(\+(\d+) entries\) in \d+ ms", log_text)]
    millis = [float(m) for m in re.findall(r"\(\+\d+ entries\) in (\d+) ms", log_text)]
    return sizes, millis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--light-rate", type=float, default=20.0,
                        help="single-entry appends per second in the light phase (default 20)")
    parser.add_argument("--light-seconds", type=float, default=15.0, help="length of the light phase (default 15)")
    parser.add_argument("--rate", type=int, default=10_000, help="offered entries per second (default 10000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to offer load (default 30)")
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between requests (default 0.05)")
    parser.add_argument("--interval", type=float, default=None,
                        help="[log] sequencing_interval (default: the node's default)")
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
    if args.interval is not None:
        config.log.sequencing_interval = args.interval
        datadir.save_config(config)
    interval = config.log.sequencing_interval
    token = datadir.admin_token()

    fingerprints = Fingerprints()
    rng = random.Random(18)
    light, t = [], 0.0
    while True:
        t += rng.expovariate(args.light_rate)
        if t >= args.light_seconds:
            break
        light.append((t, fingerprints.body(1)))
    per_request = max(1, round(args.rate * args.tick))
    requests = max(1, round(args.seconds / args.tick))
    heavy = [(r * args.tick, fingerprints.body(per_request)) for r in range(requests)]

    stderr_path = root / "bench-serve.log"
    datadir.remove_serve_info()
    with open(stderr_path, "w") as err:
        # -v: the node logs every checkpoint (at DEBUG), which the summary below counts.
        proc = subprocess.Popen([sys.executable, "-m", "node", "-v", "serve", "--dir", str(root), "--port", "0"],
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
        print(f"node pid {proc.pid}, sequencing interval {interval} s (at once when idle)")
        print(f"1. light load: {len(light)} single-entry appends at random times, {args.light_rate:g}/s "
              f"for {args.light_seconds:g} s", flush=True)
        light_result = asyncio.run(drive(info["admin_url"], token, light))
        log_mark = len(stderr_path.read_text())
        print(f"2. sustained load: {args.rate} entries/s for {args.seconds:.0f} s ({per_request} lines every "
              f"{args.tick * 1000:.0f} ms)", flush=True)
        heavy_result = asyncio.run(drive(info["admin_url"], token, heavy))

        import urllib.request

        from protocol.checkpoint import open_checkpoint
        from protocol.note import Verifier

        note = urllib.request.urlopen(info["public_url"] + "/checkpoint").read()
        cp, _ = open_checkpoint(note, [Verifier.from_vkey(datadir.load_log_signer().verifier_key())])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log_text = stderr_path.read_text()

    def per_entry(latencies):
        values = []
        for seconds, n in latencies:
            values.extend([seconds] * n)
        return values

    latencies, errors, *_ = light_result
    light_ms = [s * 1000 for s in per_entry(latencies)]
    sizes, _ = batches(log_text[:log_mark])
    print(f"\nlight load:             {len(light_ms)} of {len(light)} acknowledged, {len(errors)} failed; "
          f"{len(sizes)} checkpoints (mean {statistics.mean(sizes or [0]):.1f} entries)")
    if errors:
        print("  first error:", errors[0])
    light_p99 = percentile(light_ms, 99) if light_ms else float("inf")
    if light_ms:
        print(f"append -> published:    p50 {percentile(light_ms, 50):.0f} ms, p99 {light_p99:.0f} ms, "
              f"max {max(light_ms):.0f} ms")

    latencies, errors, start, offered_end, end = heavy_result
    entries = per_entry(latencies)
    acked = len(entries)
    sizes, millis = batches(log_text[log_mark:])
    print(f"\nsustained load:         {acked} of {per_request * requests} entries acknowledged; "
          f"{len(errors)} failed requests")
    if errors:
        print("  first error:", errors[0])
    offered_for = offered_end - start + args.tick
    rate = acked / offered_for
    print(f"sustained rate:         {rate:,.0f} entries/s acknowledged over the {offered_for:.1f} s of offered "
          f"load (last acknowledgement {end - offered_end:.2f} s after the last request)")
    if entries:
        print(f"append -> published:    p50 {percentile(entries, 50) * 1000:.0f} ms, "
              f"p99 {percentile(entries, 99) * 1000:.0f} ms, max {max(entries) * 1000:.0f} ms")
    if millis:
        print(f"checkpoints:            {len(millis)}, mean {statistics.mean(sizes):,.0f} entries, "
              f"publish time mean {statistics.mean(millis):.0f} ms, max {max(millis):.0f} ms")
    print(f"final checkpoint:       size {cp.size}, signature verified")
    if tmp and not args.dir:
        shutil.rmtree(tmp, ignore_errors=True)
    sustained = not errors and entries and rate >= 0.97 * args.rate
    print("\ntarget light load p99 <= 100 ms:", "met" if light_p99 <= 100 else "NOT met", f"({light_p99:.0f} ms)")
    print("target >= 10,000 entries/s sustained:", ("met" if sustained else "NOT met") if args.rate >= 10_000
          else "n/a (rate below 10,000/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
