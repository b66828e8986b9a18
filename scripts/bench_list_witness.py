#!/usr/bin/env python3
"""Benchmark: a witness down at `federation publish` cosigns the list log's checkpoint
once back (node/federation/cosigning.py; spec/parts/joining.md §3.3).

    .venv/bin/python scripts/bench_list_witness.py [--trials 5] [--down 3] [--idle 20]

Two real nodes, each its own `ncii-node serve` process: a coordinator that publishes
the federation list's log and uses a witness node (`witness use`), and that witness
(`witness logs add` of the list). Per trial the witness process is stopped, a new
version is published with `ncii-node federation publish` (which reports the witness
NOT cosigned), the witness stays down --down seconds, then starts again. Printed per
trial, from the witness process's start:

  up s        when the witness first answers (GET /add-checkpoint): the baseline, what
              its own start costs
  cosigned s  when the coordinator's GET /federation/checkpoint carries its cosignature
  added s     cosigned - up: what the coordinator's background asking adds

Then the coordinator process's CPU while idle (--idle seconds each, from
/proc/PID/stat): with every witness's cosignature served (one small file read every
2 s), against a witness down (the file read every 0.5 s, the witness looked at every
second). The load average is printed before and after.
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
from node.federation.cosigning import has_cosigned  # noqa: E402
from node.federation.members import make_list, sign_list  # noqa: E402
from node.invitation import Invitation  # noqa: E402
from node.readaccess.client import RequestKey  # noqa: E402
from node.witness.keys import load_witness_signer  # noqa: E402
from protocol.note import Signer, parse_note  # noqa: E402


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def cli(*argv) -> str:
    return subprocess.run([PYTHON, "-m", "node", *map(str, argv)], check=True, cwd=ROOT, capture_output=True,
                          text=True).stdout


def serve(root: Path, host: str, port: int) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "node", "serve", "--dir", str(root), "--host", host, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def poll(session: aiohttp.ClientSession, url: str, ok, timeout: float = 60.0) -> float:
    """Poll `url` every 20 ms until ok(status, body); returns when (time.monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                if ok(response.status, await response.read()):
                    return time.monotonic()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise SystemExit(f"timed out waiting for {url}")


async def run(trials: int, down: float, idle: float, work: Path) -> None:
    c, w = work / "c", work / "w"
    cli("init", "--dir", c, "--origin", "c.example/log", "--public-read")
    cli("init", "--dir", w, "--origin", "w.example/witness", "--role", "witness")
    key_file = work / "list.key"
    list_vkey = cli("federation", "key", "--name", FEDERATION, "--out", key_file).strip()
    key = Signer.from_key_file(key_file.read_bytes())
    wvkey = load_witness_signer(DataDir(w), create=True).verifier_key()
    cli("witness", "logs", "add", "--dir", w, FEDERATION, list_vkey)
    chost, whost = "127.0.0.151", "127.0.0.152"
    cport, wport = free_port(chost), free_port(whost)
    wurl, curl = f"http://{whost}:{wport}", f"http://{chost}:{cport}"
    cli("witness", "use", "--dir", c, wvkey, wurl, "--name", "w")
    people = [Invitation(f"https://m{i}.example/log", f"m{i}.example/log", "helpline", f"M{i}",
                         Signer.generate(f"m{i}.example/log").verifier_key(),
                         RequestKey(f"m{i}.example/log", os.urandom(32)).verifier_key()) for i in range(trials + 1)]

    def publish(serial: int) -> str:
        path = work / f"list-{serial}"
        path.write_bytes(sign_list(make_list(FEDERATION, serial, people[:serial]), [key]))
        return cli("federation", "publish", "--dir", c, "--key", key_file, path)

    def cosigned(status: int, body: bytes) -> bool:
        return status == 200 and has_cosigned(parse_note(body), wvkey)

    coordinator, witness = serve(c, chost, cport), serve(w, whost, wport)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await poll(session, curl + "/checkpoint", lambda status, _: status == 200)
            await poll(session, wurl + "/add-checkpoint", lambda status, _: status != 502)
            assert "cosigned by the witness w" in publish(1)
            print(f"{'trial':>5} {'up s':>7} {'cosigned s':>11} {'added s':>8}")
            added = []
            for trial in range(1, trials + 1):
                witness.terminate()
                witness.wait(timeout=30)
                out = publish(trial + 1)
                assert "NOT cosigned by the witness w" in out, out
                await asyncio.sleep(down)
                started = time.monotonic()
                witness = serve(w, whost, wport)
                up = asyncio.create_task(poll(session, wurl + "/add-checkpoint", lambda status, _: status != 502))
                took = await poll(session, curl + "/federation/checkpoint", cosigned) - started
                up_s = await up - started
                added.append(took - up_s)
                print(f"{trial:>5} {up_s:>7.2f} {took:>11.2f} {took - up_s:>8.2f}")
            print(f"added by the coordinator: p50 {statistics.median(added):.2f} s, worst {max(added):.2f} s")

            await asyncio.sleep(3)
            before = cpu_seconds(coordinator.pid)
            await asyncio.sleep(idle)
            all_cosigned = (cpu_seconds(coordinator.pid) - before) / idle * 100
            witness.terminate()
            witness.wait(timeout=30)
            publish(trials + 2)
            await asyncio.sleep(3)
            before = cpu_seconds(coordinator.pid)
            await asyncio.sleep(idle)
            missing = (cpu_seconds(coordinator.pid) - before) / idle * 100
            print(f"coordinator idle CPU: {all_cosigned:.2f} % of a core with every cosignature served, "
                  f"{missing:.2f} % with the witness down ({idle:g} s each)")
    finally:
        for process in (coordinator, witness):
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--down", type=float, default=3.0, help="seconds the witness stays down after the publish")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of each idle CPU sample")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-listwitness-") as work:
        asyncio.run(run(args.trials, args.down, args.idle, Path(work)))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
