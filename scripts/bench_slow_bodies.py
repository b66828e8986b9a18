#!/usr/bin/env python3
"""Measure what unfinished request bodies cost a helpline node's public site.

Starts `ncii-node serve` (a fresh helpline data directory) as a separate process and
opens --connections connections to POST /v1/cases, each declaring a body of --kib KiB
(default: the route's cap, [cases] max_body_bytes) and sending all of it but the last
byte, so the node holds what it read until [http] body_timeout. Connection i comes
from 127.0.(i // 4 + 1).(i % 4 + 2): four addresses of each /24, each /24's share of
the pool. Prints the node's RSS before and at its peak, how many connections got 429
(beyond a client's share), 503 at once (beyond the pool, [http]
max_concurrent_bodies) and 408, and how long the slowest took to be closed.

    .venv/bin/python scripts/bench_slow_bodies.py                       # 80 connections x 512 KiB
    .venv/bin/python scripts/bench_slow_bodies.py --connections 20 --body-timeout 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def one_connection(host: str, port: int, size: int, results: collections.Counter, closed_after: list,
                         source: str):
    began = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    head = (f"POST /v1/cases HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    try:
        writer.write(head)
        chunk = b" " * 65536
        sent = 0
        while sent < size - 1:
            piece = chunk[: min(len(chunk), size - 1 - sent)]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
    except ConnectionError:
        pass  # answered 503 and closed while we were still sending
    status = "closed without answer"
    try:
        line = await asyncio.wait_for(reader.readline(), 600)
        if line:
            status = line.split()[1].decode()
        while await reader.read(65536):
            pass
    except (ConnectionError, TimeoutError):
        pass
    results[status] += 1
    closed_after.append(time.monotonic() - began)
    writer.close()


async def sample_rss(proc, peak: list, stop: asyncio.Event):
    import psutil

    p = psutil.Process(proc.pid)
    while not stop.is_set():
        peak[0] = max(peak[0], p.memory_info().rss)
        await asyncio.sleep(0.05)


async def run(args) -> int:
    import psutil

    from node.cli import main as cli_main
    from node.datadir import DataDir

    tmp = tempfile.mkdtemp(prefix="bench-slow-")
    root = Path(tmp) / "node"
    assert cli_main(["init", "--dir", str(root), "--origin", "bench.example/helpline"]) == 0
    datadir = DataDir(root)
    config = datadir.config
    config.cases.pin_scrypt_n = 2**10
    size = args.kib * 1024 if args.kib else config.cases.max_body_bytes
    if args.body_timeout is not None:
        config.http.body_timeout = args.body_timeout
    if args.max_concurrent is not None:
        config.http.max_concurrent_bodies = args.max_concurrent
    datadir.save_config(config)
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measuring
        [sys.executable, "-m", "node", "serve", "--dir", str(root), "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        for _ in range(200):
            info = DataDir(root).read_serve_info()
            if info:
                break
            await asyncio.sleep(0.1)
        else:
            print("the node did not start")
            return 1
        host, port = info["public_url"].removeprefix("http://").rsplit(":", 1)
        await asyncio.sleep(1.0)
        before = psutil.Process(proc.pid).memory_info().rss
        peak, stop = [before], asyncio.Event()
        sampler = asyncio.create_task(sample_rss(proc, peak, stop))
        results: collections.Counter = collections.Counter()
        closed_after: list[float] = []
        began = time.monotonic()
        await asyncio.gather(*(one_connection(host, int(port), size, results, closed_after,
                                              f"127.0.{i // 4 + 1}.{i % 4 + 2}")
                               for i in range(args.connections)))
        stop.set()
        await sampler
        print(f"settings: body_timeout={config.http.body_timeout:g} s, "
              f"max_concurrent_bodies={config.http.max_concurrent_bodies}, bodies per address/network "
              f"{config.http.bodies_per_address}/{config.http.bodies_per_network}")
        print(f"{args.connections} connections from {(args.connections + 3) // 4} /24 networks x {size / 1024:g} KiB "
              "(all but the last byte sent)")
        print(f"answers: {dict(results)}")
        print(f"RSS before: {before / 2**20:.1f} MiB, peak: {peak[0] / 2**20:.1f} MiB, "
              f"growth: {(peak[0] - before) / 2**20:.1f} MiB")
        print(f"every connection closed after {max(closed_after):.1f} s at most "
              f"(all done {time.monotonic() - began:.1f} s after the first was opened)")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=80)
    parser.add_argument("--kib", type=int, help="declared body size in KiB (default: [cases] max_body_bytes)")
    parser.add_argument("--body-timeout", type=float, help="[http] body_timeout (default: the node's, 30 s)")
    parser.add_argument("--max-concurrent", type=int, help="[http] max_concurrent_bodies (default: the node's)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
