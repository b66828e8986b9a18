"""Benchmark of the helpline case service with the production PIN-hash parameters.

Starts a real helpline node (`ncii-node serve`, its own process, default settings:
sequencing at once when idle, scrypt n=2^15 r=8 p=1) on 127.0.0.1 and drives it over HTTP:

  1. case creations/s, sustained, each case with 10 PDQ fingerprints
     (concurrent clients; a creation is answered once its entries are published);
  2. status checks/s, sustained, with the right case number and PIN (each check
     costs one scrypt hash).

Each client has its own source address (127.0.0.10, .11, ...): the node takes the
attempts of one address one at a time (node/cases/limits.py), so clients that share
an address would measure that rule rather than the node's capacity.

Prints throughput and latency percentiles, and the cost of one scrypt hash here.

    .venv/bin/python scripts/bench_cases.py [--seconds 20] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def scrypt_cost() -> tuple[float, int]:
    sys.path.insert(0, str(REPO))
    from node.cases.hashes import PRODUCTION, hash_pin

    hash_pin("0" * 16, "00000000", PRODUCTION)
    start = time.perf_counter()
    for _ in range(10):
        hash_pin("0" * 16, "00000000", PRODUCTION)
    return (time.perf_counter() - start) / 10, PRODUCTION.memory


async def run_load(name: str, seconds: float, sessions: list, request) -> tuple[int, list[float]]:
    latencies: list[float] = []
    errors = 0
    clients = len(sessions)
    stop_at = time.monotonic() + seconds

    async def client(session) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            ok = await request(session)
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(client(s) for s in sessions))
    elapsed = time.monotonic() - started
    rate = len(latencies) / elapsed
    print(f"{name}: {len(latencies)} in {elapsed:.1f} s = {rate:.1f}/s sustained with {clients} clients; "
          f"latency p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms, "
          f"mean {statistics.mean(latencies) * 1000:.0f} ms; errors {errors}", flush=True)
    return len(latencies), latencies


async def bench(url: str, seconds: float, clients: int) -> None:
    created: list[dict] = []
    timeout = aiohttp.ClientTimeout(total=120)
    sessions = [aiohttp.ClientSession(timeout=timeout,
                                      connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{10 + i}", 0)))
                for i in range(clients)]
    try:
        async def create(session) -> bool:
            fingerprints = [{"signal": "pdq", "fingerprint": secrets.token_hex(32), "quality": 90} for _ in range(10)]
            async with session.post(url + "/v1/cases", json={"eligibility": YES, "fingerprints": fingerprints}) as r:
                if r.status != 201:
                    print("create:", r.status, await r.text(), file=sys.stderr)
                    return False
                created.append(await r.json())
                return True

        await run_load("case creations (10 PDQ fingerprints each)", seconds, sessions, create)

        position = 0

        async def status(session) -> bool:
            nonlocal position
            case = created[position % len(created)]
            position += 1
            async with session.post(url + "/v1/cases/status",
                                    json={"case_number": case["case_number"], "pin": case["pin"]}) as r:
                if r.status != 200:
                    print("status:", r.status, await r.text(), file=sys.stderr)
                    return False
                await r.read()
                return True

        await run_load("status checks", seconds, sessions, status)
    finally:
        for session in sessions:
            await session.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each phase (default 20)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (default 32)")
    args = parser.parse_args()

    per_hash, memory = scrypt_cost()
    print("load average before the run (1, 5, 15 min): %.1f %.1f %.1f" % os.getloadavg(), flush=True)
    print(f"PIN hash: scrypt n=2^15 r=8 p=1, {memory / 2**20:.0f} MiB, {per_hash * 1000:.0f} ms per hash on one core "
          f"(os.cpu_count() = {os.cpu_count()})", flush=True)

    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-cases-") as tmp:
        root = Path(tmp) / "helpline"
        subprocess.run([sys.executable, "-m", "node", "init", "--dir", str(root), "--origin", "bench.example/log"],
                       cwd=REPO, env=env, check=True, capture_output=True)
        lift_creation_limits(root)
        log = open(os.environ.get("BENCH_NODE_LOG", str(Path(tmp) / "node.log")), "w")
        node = subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(root), "--port", "0"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    info = json.loads((root / "serve.json").read_text())
                    if info.get("pid") == node.pid:
                        break
                except (FileNotFoundError, ValueError):
                    pass
                if time.monotonic() > deadline or node.poll() is not None:
                    print("the node did not start:", (Path(tmp) / "node.log").read_text()[-2000:], file=sys.stderr)
                    return 1
                time.sleep(0.1)
            config = (root / "config.toml").read_text()
            assert "pin_scrypt_n = 32768" in config and "sequencing_interval = 0.025" in config
            print(f"node: {info['public_url']} (pid {node.pid}), default sequencing, production scrypt", flush=True)
            asyncio.run(bench(info["public_url"], args.seconds, args.clients))
            print("load average after the run (1, 5, 15 min): %.1f %.1f %.1f -- each check and each creation "
                  "costs one scrypt hash, so both rates follow the free CPU" % os.getloadavg(), flush=True)
        finally:
            node.terminate()
            node.wait(30)
            log.close()
    return 0


def lift_creation_limits(root: Path) -> None:
    """This measures what the node can do, not its creation limits (which would refuse
    most of a flood: scripts/attack_intake.py measures those)."""
    from node.datadir import DataDir

    datadir = DataDir(root)
    config = datadir.config
    for key in ("per_address_per_hour", "per_address_per_day", "per_network_per_hour", "per_network_per_day",
                "per_hour", "per_day", "proof_of_work_above_per_hour"):
        setattr(config.cases, key, 10_000_000)
    datadir.save_config(config)


if __name__ == "__main__":
    sys.exit(main())
