#!/usr/bin/env python3
"""Benchmark: the federation list as an append-only log (spec/parts/joining.md §3.3).

    .venv/bin/python scripts/bench_federation_list.py [--members 100,500,1000] [--versions 50]

A real coordinator node (`ncii-node serve`, its own process) serves the list log under
/federation/; the versions are appended with `node/federation/publish.py` (what
`ncii-node federation publish` runs), each a list of M members with real keys. A
follower (this process, a real platform data directory with SQLite) follows it as the
running node does (node/federation/subscription.py `update`: checkpoint, tiles,
bundles, version, all verified; then accepted in one transaction).

Per M, printed:
  list KiB        the size of one signed list
  publish ms      p50 time to append one version (read back and check the log, write
                  tiles, bundle, version, checkpoint), over --versions versions
  first fetch     requests, KiB and ms to follow the list with --versions versions
  new version     the same for one new version (the checkpoint moved)
  unchanged       the same when nothing changed (what a node pays every --interval s)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
FEDERATION = "fed.example/federation"

from node.datadir import DataDir  # noqa: E402
from node.federation.members import make_list, sign_list  # noqa: E402
from node.federation.publish import publish  # noqa: E402
from node.federation.subscription import Own, trust_of, update  # noqa: E402
from node.follow.client import PeerClient  # noqa: E402
from node.invitation import Invitation  # noqa: E402
from node.readaccess.client import RequestKey  # noqa: E402
from node.store import open_db  # noqa: E402
from protocol.note import Signer  # noqa: E402


def members(count: int) -> list[Invitation]:
    found = []
    for i in range(count):
        origin = f"m{i:04d}.example/log"
        found.append(Invitation(f"https://m{i:04d}.example/log", origin, ("helpline", "platform")[i % 2],
                                f"Member {i}", Signer.generate(origin).verifier_key(),
                                RequestKey(origin, os.urandom(32)).verifier_key()))
    return found


class Counter:
    """Requests and bytes read by every PeerClient of this process."""

    def __init__(self):
        self.requests = self.bytes = 0
        original = PeerClient._get

        async def counted(client, path, **kwargs):
            result = await original(client, path, **kwargs)
            self.requests += 1
            self.bytes += len(result[1])
            return result

        PeerClient._get = counted

    def take(self) -> tuple[int, float]:
        taken = (self.requests, self.bytes / 1024)
        self.requests = self.bytes = 0
        return taken


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def run(sizes: list[int], versions: int, work: Path) -> None:
    def cli(*argv):
        subprocess.run([PYTHON, "-m", "node", *map(str, argv)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    counter = Counter()
    print(f"{'members':>8} {'list KiB':>9} {'publish ms':>11} {'first fetch (req, KiB, ms)':>28} "
          f"{'new version':>22} {'unchanged':>18}")
    for n in sizes:
        c, p = work / f"c{n}", work / f"p{n}"
        cli("init", "--dir", c, "--origin", "c.example/log", "--public-read")
        cli("init", "--dir", p, "--origin", "p.example/log", "--role", "platform")
        host, port = "127.0.0.41", free_port("127.0.0.41")
        server = subprocess.Popen([PYTHON, "-m", "node", "serve", "--dir", str(c), "--host", host, "--port",
                                   str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://{host}:{port}"
            async with aiohttp.ClientSession() as session:
                for _ in range(200):
                    try:
                        async with session.get(url + "/checkpoint") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
            key = Signer.generate(FEDERATION)
            people = members(n)
            lists = [sign_list(make_list(FEDERATION, v, people[:n - versions + v]), [key])
                     for v in range(1, versions + 2)]
            publish_ms = []
            for data in lists[:versions]:
                started = time.perf_counter()
                publish(c, data, [key])
                publish_ms.append(1000 * (time.perf_counter() - started))
            db = open_db(DataDir(p).db_path)
            own = Own("platform", "p.example/log")

            async def call(fn):
                return fn(db)

            async def fetch() -> tuple[int, float, float]:
                started = time.perf_counter()
                await update(call, url + "/federation/list", trust_of(db.federation.subscription()), own, None)
                took = 1000 * (time.perf_counter() - started)
                return (*counter.take(), took)

            db.federation.subscribe(url + "/federation/list", [key.verifier_key()], 1, 300, False)
            first = await fetch()
            publish(c, lists[versions], [key])
            new = await fetch()
            unchanged = await fetch()
            assert db.federation.subscription().serial == versions + 1
            db.close()
            print(f"{n:>8} {len(lists[-1]) / 1024:>9.0f} {statistics.median(publish_ms):>11.1f} "
                  f"{first[0]:>8} {first[1]:>8.1f} {first[2]:>8.0f}  {new[0]:>5} {new[1]:>6.1f} {new[2]:>7.0f}  "
                  f"{unchanged[0]:>4} {unchanged[1]:>5.1f} {unchanged[2]:>6.1f}")
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="100,500,1000")
    parser.add_argument("--versions", type=int, default=50)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {args.versions} versions, then one more")
    with tempfile.TemporaryDirectory(prefix="bench-fedlist-") as work:
        asyncio.run(run([int(x) for x in args.members.split(",")], args.versions, Path(work)))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
