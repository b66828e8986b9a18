#!/usr/bin/env python3
"""A helpline down for 30 s: how soon after its return do the platforms that require
its witness's cosignature hold its next checkpoint, cosigned? (issue 22)

    .venv/bin/python scripts/bench_outage.py                       # 5 outages of 30 s
    options: --outages K, --down S, --platforms N (default 3), --work DIR (kept), --trace,
             --baseline DIR (the same outages first with the nodes run from another
             checkout, e.g. `git archive main | tar -x -C DIR`, with this checkout's
             compiled node/matcher/_pdqindex*.so copied in)

Real `ncii-node serve` processes on loopback (scripts/soak.py's nodes, default
settings): helpline H, witness W, N platforms. Every platform follows H (push channel)
and refuses H's checkpoints without W's cosignature (`witness require -k 1`); H follows
every platform's feedback log; W witnesses H. While H is down, each platform appends
feedback to its log twice a second, so that H has backlogs to verify at its return, as
in the federation soak.

Each outage: two appends at H 0.1 s apart (the witness cosigns the second only an
interval later, the declared rate, so H dies holding an uncosigned checkpoint, as it
often does under steady load), SIGKILL H, wait --down seconds, start it again ("return": its serve.json
is written, i.e. it listens), append one submission at once (POST /admin/append, which
answers once the entry is published), and watch, every 20 ms: H's /checkpoint until
it carries W's cosignature on that size, and each platform's /status until it holds
that size. Printed per outage: the time from the return until H published, until the
cosigned checkpoint was served, until each platform held it; then p50 and max over
the outages of "every platform held it" (target: <= 2 s), with the load average.
The nodes log at DEBUG (`-v`, DIR/<name>.log); --trace prints, after each outage, the
lines that trace the path with their time from the return: H serving, publishing, its
witness rounds (how long each checkpoint waited for the rate, how long the witness
took), its catch-up on the platforms' logs; each platform seeing H back, its push
channel, a checkpoint refused for lack of cosignatures, the round that applied it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from soak import Node  # noqa: E402  (one `ncii-node serve` process and its data directory)

POLL = 0.02
#: The nodes listen on an address of their own (127.0.0.2-254, drawn at random), so that
#: no other program on the machine takes a port chosen for them before a restart.
HOST = f"127.0.0.{random.randint(2, 254)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class BenchNode(Node):
    """soak's node, on HOST."""

    def __init__(self, name: str, role: str, work: Path):
        super().__init__(name, role, work)
        self.port, self.admin_port = free_port(), free_port()

    @property
    def public_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    def init(self) -> None:
        super().init()
        config = self.datadir.config
        config.http.host = config.admin.host = HOST
        self.datadir.save_config(config)


def cli(*argv: str) -> str:
    from node.cli import main as cli_main

    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli_main(list(argv))
    assert code == 0, f"ncii-node {' '.join(argv)}: {err.getvalue()}"
    return out.getvalue()


def build(work: Path, platforms: int) -> tuple[Node, Node, list[Node], str]:
    helpline, witness = BenchNode("H", "helpline", work), BenchNode("W", "witness", work)
    plats = [BenchNode(f"P{i + 1}", "platform", work) for i in range(platforms)]
    for node in [helpline, witness, *plats]:
        node.init()
    request = {n.name: n.datadir.load_request_signer().verifier_key() for n in [helpline, *plats]}
    log_vkey = {n.name: n.datadir.load_log_signer().verifier_key() for n in [helpline, *plats]}
    witness_vkey = cli("witness", "key", "--dir", str(witness.root)).strip().splitlines()[-1].strip()
    cli("witness", "logs", "add", "--dir", str(witness.root), helpline.origin, log_vkey["H"])
    cli("witness", "use", "--dir", str(helpline.root), witness_vkey, witness.public_url)
    for p in plats:
        cli("readers", "add", "--dir", str(helpline.root), request[p.name], "--name", p.name)
        cli("readers", "add", "--dir", str(p.root), request["H"], "--name", "H")
        cli("follow", "add", "--dir", str(p.root), helpline.public_url, "--vkey", log_vkey["H"], "--name", "H")
        cli("follow", "add", "--dir", str(helpline.root), p.public_url, "--vkey", log_vkey[p.name],
            "--name", p.name)
        cli("witness", "require", "--dir", str(p.root), helpline.origin, "-k", "1", "--witness", witness_vkey)
    return helpline, witness, plats, witness_vkey


async def start_verbose(node: Node, source: Path) -> None:
    """soak's Node.start, with `-v` (DEBUG lines, timestamped to the millisecond), the
    node's code taken from the checkout `source`."""
    import subprocess

    node.datadir.remove_serve_info()
    with open(node.log_path, "a") as log:
        node.process = subprocess.Popen([sys.executable, "-m", "node", "-v", "serve", "--dir", str(node.root)],
                                        cwd=source, stdout=subprocess.DEVNULL, stderr=log)
    while True:
        info = node.datadir.read_serve_info()
        if info and info.get("pid") == node.process.pid:
            return
        if node.process.poll() is not None:
            raise RuntimeError(f"{node.name} exited at start; see {node.log_path}")
        await asyncio.sleep(0.01)


async def append(session, node: Node, lines: list[dict]) -> list[dict]:
    body = "".join(json.dumps(line) + "\n" for line in lines)
    async with session.post(node.admin_url + "/admin/append", data=body,
                            headers={"Authorization": f"Bearer {node.datadir.admin_token()}"}) as r:
        text = await r.text()
        assert r.status == 200, f"append at {node.name}: {r.status} {text[:200]}"
        return [json.loads(line) for line in text.splitlines()]


async def held_by(session, platform: Node, origin: str) -> int:
    with contextlib.suppress(Exception):
        async with session.get(platform.admin_url + "/status") as r:
            report = await r.json()
            return max((e["size"] or 0 for e in report["logs"] if e["origin"] == origin), default=0)
    return 0


async def one_outage(session, helpline, plats, witness_vkey, down: float, counter: list[int],
                     source: Path) -> dict:
    from node.witness.policy import NotEnoughCosignatures, require_cosignatures

    async def cosigned_size() -> int:
        with contextlib.suppress(Exception):
            async with session.get(helpline.public_url + "/checkpoint") as r:
                note = await r.read()
            try:
                require_cosignatures(note, [witness_vkey], 1)
            except NotEnoughCosignatures:
                return 0
            return int(note.split(b"\n")[1])
        return 0

    # Two checkpoints in a row: the witness cosigns the first at once and the second only
    # an interval later (the declared rate), so H dies holding an uncosigned checkpoint,
    # as it often does under steady load.
    first = (await append(session, helpline, [submission(counter)]))[0]
    await asyncio.sleep(0.1)
    await append(session, helpline, [submission(counter)])
    feedback = {"kind": "feedback", "origin": helpline.origin, "index": first["index"],
                "leaf_hash": first["leaf_hash"], "verdict": "removed"}
    helpline.kill()
    end = time.monotonic() + down
    while time.monotonic() < end:  # the platforms' backlogs H verifies at its return
        await asyncio.gather(*(append(session, p, [feedback]) for p in plats))
        await asyncio.sleep(0.5)
    await start_verbose(helpline, source)
    returned, returned_wall = time.monotonic(), time.time()
    print(f"  [{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} H is back]", flush=True)
    appended = (await append(session, helpline, [submission(counter)]))[0]
    published, size = time.monotonic() - returned, appended["checkpoint_size"]
    cosigned, held = None, {p.name: None for p in plats}
    while (cosigned is None or None in held.values()) and time.monotonic() - returned < 60:
        if cosigned is None and await cosigned_size() >= size:
            cosigned = time.monotonic() - returned
        sizes = await asyncio.gather(*(held_by(session, p, helpline.origin) for p in plats if held[p.name] is None))
        for p, got in zip([p for p in plats if held[p.name] is None], sizes):
            if got >= size:
                held[p.name] = time.monotonic() - returned
        await asyncio.sleep(POLL)
    return {"published": published, "cosigned": cosigned, "held": held, "returned_at": returned_wall}


#: The log lines that trace the path from H's return to a platform's round.
TRACED = ("serving log", "published checkpoint", "witness submission", "verified checkpoint",
          "answers again", "checkpoint not applied", "push channel")


def trace(nodes: list[Node], since: float, until: float) -> list[str]:
    """The traced lines of the nodes' logs (`-v`) between two wall-clock times, each
    with its offset from `since`, in time order."""
    import datetime

    lines = []
    for node in nodes:
        for line in node.log_path.read_text(errors="replace").splitlines():
            if not any(key in line for key in TRACED) or "aiohttp.access" in line:
                continue
            try:  # "2026-12-03 17:12:05,024 LEVEL name: message" (local time)
                at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if since - 0.5 <= at <= until:
                lines.append((at, f"  {at - since:+6.3f} s  {node.name}  {line[24:].split(': ', 1)[-1][:150]}"))
    return list(dict.fromkeys(text for _, text in sorted(lines)))  # a line logged at DEBUG and INFO: once


def submission(counter: list[int]) -> dict:
    counter[0] += 1
    return {"kind": "submission", "signal": "pdq", "fingerprint": f"{counter[0]:064x}"}


async def run(args, work: Path, source: Path) -> list[dict]:
    import aiohttp

    work.mkdir(parents=True, exist_ok=True)
    helpline, witness, plats, witness_vkey = build(work, args.platforms)
    nodes = [witness, *plats, helpline]
    results = []
    try:
        await asyncio.gather(*(start_verbose(n, source) for n in nodes))
        counter = [0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            # Everyone in step before the first outage.
            await append(session, helpline, [submission(counter)])
            await asyncio.sleep(3)
            for k in range(args.outages):
                r = await one_outage(session, helpline, plats, witness_vkey, args.down, counter, source)
                results.append(r)
                every = None if None in r["held"].values() else max(r["held"].values())
                fmt = lambda v: "--" if v is None else f"{v:.2f}"  # noqa: E731
                print(f"outage {k + 1}: down {args.down:g} s; after the return: published {fmt(r['published'])} s, "
                      f"cosigned copy served {fmt(r['cosigned'])} s, held by "
                      + ", ".join(f"{n} {fmt(v)}" for n, v in r["held"].items())
                      + f" -> every platform {fmt(every)} s (load average {os.getloadavg()[0]:.1f})", flush=True)
                if args.trace:
                    print("\n".join(trace(nodes, r["returned_at"], r["returned_at"] + (every or 5) + 0.2)), flush=True)
                await asyncio.sleep(2)
    finally:
        for node in nodes:
            node.stop()
    return results


def summary(results: list[dict]) -> tuple[str, bool]:
    every = [max(r["held"].values()) for r in results if None not in r["held"].values()]
    missed = len(results) - len(every)
    if not every:
        return "no outage measured", False
    cosigned = [r["cosigned"] - r["published"] for r in results if r["cosigned"] is not None]
    return (f"every platform held the cosigned new checkpoint p50 {statistics.median(every):.2f} s, "
            f"max {max(every):.2f} s after the return over {len(every)} outages ({missed} not within 60 s); "
            f"published p50 {statistics.median(r['published'] for r in results):.2f} s after the return, "
            f"cosigned copy served p50 {statistics.median(cosigned):.2f} s after that"), not missed and max(every) <= 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outages", type=int, default=5)
    parser.add_argument("--down", type=float, default=30.0)
    parser.add_argument("--platforms", type=int, default=3)
    parser.add_argument("--work", type=Path, help="directory for the nodes (kept afterwards)")
    parser.add_argument("--trace", action="store_true",
                        help="after each outage, the nodes' log lines from the return to the last platform's round")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another checkout (e.g. `git archive main | tar -x -C DIR`): the same outages "
                             "with the nodes run from it first, in the same run")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ncii-outage-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{args.outages} outages of {args.down:g} s, {args.platforms} platforms requiring the witness; "
          f"load average before: {os.getloadavg()[0]:.1f}; nodes in {work}", flush=True)
    passes = ([("baseline", args.baseline)] if args.baseline else []) + [("this checkout", ROOT)]
    lines, ok = [], False
    try:
        for name, source in passes:
            print(f"-- {name} ({source})", flush=True)
            results = asyncio.run(run(args, work / name.replace(" ", "-"), source))
            line, ok = summary(results)
            lines.append(f"{name}: {line}; load average {os.getloadavg()[0]:.1f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines) + "\n(target: every platform within 2 s of the return)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
