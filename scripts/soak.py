#!/usr/bin/env python3
"""Soak test: a federation of real nodes under network faults and SIGKILL.

    .venv/bin/python scripts/soak.py --seconds 60            # what the test suite runs
    .venv/bin/python scripts/soak.py --seconds 1800 --seed 7 # the 30-minute run
    options: --work DIR (kept afterwards), --json FILE (the summary), --max-rss-mb N

Six `ncii-node serve` processes on loopback, default settings (but cheap PIN hashes
and gossip every 5 s): 2 helplines, 3 platforms, 1 witness. Every platform follows
both helplines (push channel) and compares views with the two other platforms
(gossip); every helpline follows the three platforms' feedback; every log is witnessed
by the witness, and platform P3 refuses helpline H1's checkpoints without its
cosignature. Every connection from one node to another goes through a fault proxy of
its own (scripts/faultproxy.py: one port per directed link), which this script turns
faults on and off in while a steady load runs straight at the nodes: cases opened and
withdrawn at the helplines (the public case API), feedback and match queries at the
platforms (their admin sites).

Faults (FAULTS below; each a weighted kind, drawn every 0.3-1.5 s): delay, drop,
reset, truncate and corrupt bytes on a link, partition a pair of nodes (both links),
SIGKILL a node and restart it 0.5-5 s later. And once per run (--outage, when the run is
long enough: 25 s more than the outage): helpline H1 down for 30 s, then the time until every platform following
it holds the first checkpoint it publishes after its return (printed as "outage", with
the time it was served with the witness's cosignature, which P3 waits for; no
other fault touches H1's links or kills a node from its stop until 10 s after its
return, so the figure is about the followers' recovery alone). Adding a kind is one entry: a name, a
weight, and a coroutine that injects it (and schedules its end); a node down for 30 s
is `FaultKind("down-30s", 0.3, node_down(30, 30))`. After every restart the script
measures how long the nodes following the restarted one take to hold the checkpoint
it serves on its return (printed as "after a restart").

Invariants, checked all along (every 3 s) and at the end:
  * no acknowledged entry lost or moved: every case, withdrawal and feedback entry a
    node acknowledged is, at the end, at the index it was acknowledged with;
  * no honest log ever marked forked, at any node (its /status, then its database);
  * nothing partial or inconsistent ever served: an auditor (this script, a
    registered reader of every log, straight to the nodes) verifies every log like a
    follower (node/follow/sync.py): signatures, tiles, consistency, entries; a served
    checkpoint never goes back; a tile path never serves two different contents;
  * once faults stop, every node converges to every log's latest checkpoint
    (the worst time is printed) and every withdrawal is applied everywhere: no
    platform matches a withdrawn case's fingerprints, every platform matches every
    active case's;
  * no node's resident memory exceeds --max-rss-mb.
The summary gives faults injected by kind, entries and cases acknowledged, lost
(must be 0), false forks (must be 0), the worst convergence time; the exit status is
0 only if every invariant held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import logging
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from faultproxy import LINK_FAULTS, Link  # noqa: E402

PYTHON = sys.executable
HELPLINES = ("H1", "H2")
PLATFORMS = ("P1", "P2", "P3")
WITNESS = "W"
#: After faults stop, the nodes must converge within this (back-off is capped at 60 s,
#: jittered up to 90 s; the witness's at 72 s).
CONVERGENCE_BOUND = 240.0
ELIGIBLE = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}


#: Ports handed out by free_port in this run (never twice).
_TAKEN_PORTS: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port for a node, kept across its restarts: free now, never handed out twice in
    this run, and below the kernel's ephemeral range. A port the system picked (bind to
    port 0) was the race that stopped one run in four from starting: the fault proxies
    bind port 0 after every node's port was picked but before the nodes start, and the
    many outgoing connections take ephemeral source ports, so either could take a
    node's port first. Nothing takes a port below that range unless asked to by name."""
    low, _ = _ephemeral_range()
    first = 10_000 if low > 12_000 else 1_024
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(first, low)
        if port in _TAKEN_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _TAKEN_PORTS.add(port)
        return port
    raise RuntimeError(f"no free port found in {first}..{low - 1}")


def origin_of(name: str) -> str:
    return f"{name.lower()}.soak.example/log"


# ---------------------------------------------------------------------- nodes

class Node:
    """One `ncii-node serve` process and its data directory."""

    def __init__(self, name: str, role: str, work: Path):
        from node.datadir import DataDir

        self.name, self.role = name, role
        self.origin = origin_of(name)
        self.root = work / name
        self.port, self.admin_port = free_port(), free_port()
        self.datadir: DataDir | None = None
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.peak_rss = 0
        self.log_path = work / f"{name}.log"

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def init(self) -> None:
        from node.cli import main as cli_main
        from node.datadir import DataDir

        with contextlib.redirect_stdout(io.StringIO()):
            assert cli_main(["init", "--dir", str(self.root), "--origin", self.origin, "--role", self.role]) == 0
        self.datadir = DataDir(self.root)
        config = self.datadir.config
        config.http.port = self.port
        config.admin.port = self.admin_port
        config.cases.pin_scrypt_n = 1024  # the soak is about the federation, not PIN hashing
        # One load driver on one address plays every person: the intake's abuse limits
        # (tested on their own in tests/test_abuse_*) would refuse all but a few cases.
        for key in ("per_address_per_hour", "per_address_per_day", "per_network_per_hour", "per_network_per_day",
                    "per_hour", "per_day", "proof_of_work_above_per_hour"):
            setattr(config.cases, key, 10_000_000)
        self.datadir.save_config(config)

    async def start(self) -> None:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen([PYTHON, "-m", "node", "serve", "--dir", str(self.root)], cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            info = self.datadir.read_serve_info()
            if info and info.get("pid") == self.process.pid:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within 90 s")

    def kill(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def sample_rss(self) -> None:
        import psutil

        if self.alive:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, psutil.Process(self.process.pid).memory_info().rss)


class Federation:
    """The six nodes, one fault proxy per directed link that carries traffic, and the
    registrations that make them read each other."""

    def __init__(self, work: Path, rng: random.Random):
        self.work, self.rng = work, rng
        self.nodes = {name: Node(name, "helpline", work) for name in HELPLINES}
        self.nodes.update({name: Node(name, "platform", work) for name in PLATFORMS})
        self.nodes[WITNESS] = Node(WITNESS, "witness", work)
        self.links: dict[tuple[str, str], Link] = {}
        self.restarts: set[asyncio.Task] = set()
        #: Called with each node started again after a fault (the soak measures recovery).
        self.on_restart: list[Callable[[Node], None]] = []
        #: Nodes no fault may touch now (the outage measurement), and then no SIGKILL at all.
        self.calm: set[str] = set()

    def faultable_links(self) -> list[Link]:
        return [link for (a, b), link in self.links.items() if a not in self.calm and b not in self.calm]

    def link(self, source: str, target: str) -> Link:
        return self.links[(source, target)]

    async def build(self, driver_vkey: str) -> None:
        from node.cli import main as cli_main

        for node in self.nodes.values():
            node.init()
        pairs = [(p, h) for p in PLATFORMS for h in HELPLINES] + [(h, p) for h in HELPLINES for p in PLATFORMS]
        pairs += [(p, q) for p in PLATFORMS for q in PLATFORMS if p != q]
        pairs += [(n, WITNESS) for n in HELPLINES + PLATFORMS]
        for source, target in pairs:
            self.links[(source, target)] = await Link(source, target, self.nodes[target].port,
                                                      random.Random(self.rng.random())).start()

        # Readers reach each node through its proxies, so a signed read names a proxy's
        # address: each is one of the node's public names ([http] public_names).
        for (source, target), link in self.links.items():
            node = self.nodes[target]
            config = node.datadir.config
            config.http.public_names.append(link.url.removeprefix("http://"))
            node.datadir.save_config(config)

        def cli(*argv: str) -> None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                code = cli_main(list(argv))
            assert code == 0, f"ncii-node {' '.join(argv)}: {err.getvalue()}"

        request = {n: node.datadir.load_request_signer().verifier_key() for n, node in self.nodes.items()}
        log_vkey = {n: node.datadir.load_log_signer().verifier_key() for n, node in self.nodes.items()}
        readers = {h: PLATFORMS for h in HELPLINES}
        readers.update({p: HELPLINES + tuple(q for q in PLATFORMS if q != p) for p in PLATFORMS})
        readers[WITNESS] = ()
        for name, names in readers.items():
            for reader in names:
                cli("readers", "add", "--dir", str(self.nodes[name].root), request[reader], "--name", reader)
            cli("readers", "add", "--dir", str(self.nodes[name].root), driver_vkey, "--name", "soak-driver")
        for source, target in pairs:
            if target == WITNESS:
                continue
            directory = str(self.nodes[source].root)
            if source in PLATFORMS and target in PLATFORMS:
                cli("follow", "peers", "add", "--dir", directory, self.link(source, target).url, "--interval", "5")
            else:
                cli("follow", "add", "--dir", directory, self.link(source, target).url, "--vkey", log_vkey[target],
                    "--name", target)
        witness_dir = str(self.nodes[WITNESS].root)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert cli_main(["witness", "key", "--dir", witness_dir]) == 0
        witness_vkey = out.getvalue().strip().splitlines()[-1].strip()
        for name in HELPLINES + PLATFORMS:
            cli("witness", "logs", "add", "--dir", witness_dir, origin_of(name), log_vkey[name])
            cli("witness", "use", "--dir", str(self.nodes[name].root), witness_vkey, self.link(name, WITNESS).url)
        # One follower insists on cosigned checkpoints: pushed checkpoints wait for their cosignature.
        cli("witness", "require", "--dir", str(self.nodes["P3"].root), origin_of("H1"), "-k", "1",
            "--witness", witness_vkey)
        self.witness_vkey = witness_vkey

    async def start(self) -> None:
        await asyncio.gather(*(node.start() for node in self.nodes.values()))

    def restart_later(self, node: Node, delay: float) -> None:
        async def restart():
            await asyncio.sleep(delay)
            await node.start()
            for callback in self.on_restart:
                callback(node)

        task = asyncio.create_task(restart())
        self.restarts.add(task)
        task.add_done_callback(self.restarts.discard)

    async def heal(self) -> None:
        """End every fault; bring every dead node back."""
        for link in self.links.values():
            link.heal()
        if self.restarts:
            await asyncio.gather(*self.restarts, return_exceptions=True)
        for node in self.nodes.values():
            if not node.alive:
                await node.start()

    async def stop(self) -> None:
        for task in list(self.restarts):
            task.cancel()
        for node in self.nodes.values():
            node.stop()
        for link in self.links.values():
            await link.stop()


# ---------------------------------------------------------------------- faults

@dataclass
class FaultKind:
    name: str
    weight: float
    inject: Callable[[Federation, random.Random], Awaitable[str | None]]  # returns what it did, or None


def link_fault(kind: str):
    async def inject(fed: Federation, rng: random.Random) -> str:
        link = rng.choice(fed.faultable_links())
        seconds = rng.uniform(1, 8)
        link.set_fault(LINK_FAULTS[kind](rng), seconds)
        return f"{kind} on {link.name} for {seconds:.1f} s"
    return inject


async def partition(fed: Federation, rng: random.Random) -> str:
    a, b = rng.choice(sorted({tuple(sorted(pair)) for pair in fed.links if not fed.calm & set(pair)}))
    seconds = rng.uniform(2, 12)
    for pair in ((a, b), (b, a)):
        if pair in fed.links:
            fed.links[pair].partition(seconds)
    return f"partition {a} | {b} for {seconds:.1f} s"


def node_down(least: float, most: float):
    """SIGKILL a node, start it again after least..most seconds (one node down at a
    time). How long its followers then take to catch up is measured (Soak.recovered)."""
    async def inject(fed: Federation, rng: random.Random) -> str | None:
        if any(not node.alive for node in fed.nodes.values()) or fed.restarts or fed.calm:
            return None
        node = rng.choice(list(fed.nodes.values()))
        node.kill()
        delay = rng.uniform(least, most)
        fed.restart_later(node, delay)
        return f"SIGKILL {node.name}, restart in {delay:.1f} s"
    return inject


FAULTS = [
    FaultKind("delay", 3, link_fault("delay")),
    FaultKind("drop", 2, link_fault("drop")),
    FaultKind("reset", 2, link_fault("reset")),
    FaultKind("truncate", 2, link_fault("truncate")),
    FaultKind("corrupt", 2, link_fault("corrupt")),
    FaultKind("partition", 1.5, partition),
    FaultKind("sigkill", 1, node_down(0.5, 5)),
]


# ---------------------------------------------------------------------- the load

@dataclass
class Case:
    helpline: str
    number: str
    pin: str
    fingerprints: list[str]
    indices: list[int]
    withdrawn: bool = False        # acknowledged: published
    withdrawing: bool = False      # asked, not yet acknowledged


@dataclass
class Ack:
    node: str
    index: int
    kind: str                      # submission | withdrawal | feedback
    expect: object                 # fingerprint hex | withdrawn indices | leaf hash hex


@dataclass
class Stats:
    sent: Counter = field(default_factory=Counter)
    acked: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)


class Load:
    """A steady mix, straight at the nodes (not through the proxies)."""

    def __init__(self, fed: Federation, rng: random.Random):
        self.fed, self.rng = fed, rng
        self.cases: list[Case] = []
        self.acks: list[Ack] = []
        self.feedback: list[tuple[str, str, int, str]] = []  # platform, helpline, index, verdict
        self.stats = Stats()
        self.session = None
        self.wrong_requests: dict[str, str] = {}

    def fingerprint(self) -> str:
        return self.rng.getrandbits(256).to_bytes(32, "big").hex()

    async def post(self, url: str, body, headers=None, timeout: float = 30) -> tuple[int, object]:
        import aiohttp

        async with self.session.post(url, json=body, headers=headers or {},
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def call(self, kind: str, url: str, body, headers=None):
        self.stats.sent[kind] += 1
        try:
            status, answer = await self.post(url, body, headers)
        except Exception as exc:  # noqa: BLE001 - a node killed or restarting: counted
            self.stats.refused[f"{kind}: {type(exc).__name__}"] += 1
            return None, None
        if status in (400, 401, 403, 413, 415, 422) and kind not in self.wrong_requests:
            # Not a fault's doing: the soak's own request is wrong (an API changed?).
            self.wrong_requests[kind] = f"{kind} refused with {status}: {str(answer)[:300]}"
        return status, answer

    async def open_case(self) -> None:
        name = self.rng.choice(HELPLINES)
        node = self.fed.nodes[name]
        prints = [self.fingerprint() for _ in range(self.rng.randint(1, 3))]
        status, answer = await self.call("case", node.public_url + "/v1/cases", {
            "eligibility": ELIGIBLE, "lang": "en",
            "fingerprints": [{"signal": "pdq", "fingerprint": fp, "quality": 90} for fp in prints]})
        if status != 201:
            if status is not None:
                self.stats.refused[f"case: {status}"] += 1
            return
        indices = [p["index"] for p in answer["published"]]
        case = Case(name, answer["case_number"], answer["pin"], prints, indices)
        self.cases.append(case)
        self.stats.acked["case"] += 1
        self.stats.acked["submission entries"] += len(indices)
        for fp, index in zip(prints, indices):
            self.acks.append(Ack(name, index, "submission", fp))

    async def withdraw(self, case: Case | None = None) -> None:
        if case is None:
            candidates = [c for c in self.cases if not c.withdrawn and not c.withdrawing]
            if not candidates:
                return
            case = self.rng.choice(candidates)
        case.withdrawing = True
        node = self.fed.nodes[case.helpline]
        status, answer = await self.call("withdrawal", node.public_url + "/v1/cases/withdraw",
                                         {"case_number": case.number, "pin": case.pin})
        done = status == 200 and isinstance(answer, dict) and (answer.get("withdrawn_at") or {}).get("published")
        if not done:
            if status is not None:
                self.stats.refused[f"withdrawal: {status}"] += 1
            return  # still `withdrawing`: completed at the end
        case.withdrawn = True
        self.stats.acked["withdrawal"] += 1
        for index in answer["withdrawn_at"].get("entries", []):
            self.stats.acked["withdrawal entries"] += 1
            self.acks.append(Ack(case.helpline, index, "withdrawal", tuple(case.indices)))

    async def give_feedback(self) -> None:
        if not self.cases:
            return
        case = self.rng.choice(self.cases)
        name = self.rng.choice(PLATFORMS)
        node = self.fed.nodes[name]
        index = self.rng.choice(case.indices)
        verdict = self.rng.choice(("matched-pending-review", "removed", "not-violating", "disputed-false-match"))
        status, answer = await self.call("feedback", node.admin_url + "/v1/feedback",
                                         {"origin": origin_of(case.helpline), "index": index, "verdict": verdict},
                                         {"Authorization": f"Bearer {node.datadir.admin_token()}"})
        if status == 200:
            self.stats.acked["feedback"] += 1
            self.acks.append(Ack(name, answer["index"], "feedback", answer["leaf_hash"]))
            self.feedback.append((name, case.helpline, index, verdict))
        elif status is not None:
            self.stats.refused[f"feedback: {status}"] += 1  # 404: not verified there yet

    async def match(self, name: str, prints: list[str]) -> list[dict] | None:
        node = self.fed.nodes[name]
        status, answer = await self.call("match", node.admin_url + "/v1/match",
                                         {"fingerprints": [{"signal": "pdq", "fingerprint": fp} for fp in prints]},
                                         {"Authorization": f"Bearer {node.datadir.match_token()}"})
        if status != 200:
            return None
        self.stats.acked["match queries"] += len(prints)
        return answer["results"]

    async def some_matches(self) -> None:
        prints = [fp for case in self.rng.sample(self.cases, min(8, len(self.cases))) for fp in case.fingerprints]
        await self.match(self.rng.choice(PLATFORMS), prints[:10] + [self.fingerprint()])

    async def run(self, seconds: float) -> None:
        """Cases 2/s, withdrawals 0.5/s, feedback 1/s, match batches 2/s, for `seconds`."""
        mix = [(0.5, self.open_case), (2.0, self.withdraw), (1.0, self.give_feedback), (0.5, self.some_matches)]
        end = time.monotonic() + seconds
        running: set[asyncio.Task] = set()

        async def every(period: float, action) -> None:
            while time.monotonic() < end:
                task = asyncio.create_task(action())
                running.add(task)
                task.add_done_callback(running.discard)
                await asyncio.sleep(self.rng.expovariate(1 / period))

        await asyncio.gather(*(every(period, action) for period, action in mix))
        await asyncio.gather(*running, return_exceptions=True)


# ---------------------------------------------------------------------- the auditor

class Auditor:
    """Reads every log straight from its node, as a registered reader, and verifies
    everything a follower would; remembers what each tile path served."""

    def __init__(self, fed: Federation, work: Path, signer):
        from node.store import open_db

        self.fed, self.signer = fed, signer
        self.db_path = work / "auditor.db"
        db = open_db(self.db_path)
        for name, node in fed.nodes.items():
            db.follow.add_log(node.origin, node.public_url, node.datadir.load_log_signer().verifier_key())
        db.close()
        self.followers = {}
        self.largest: dict[str, int] = {}
        self.tiles: dict[tuple[str, str], bytes] = {}
        self.checked = Counter()
        self.violations: list[str] = []
        self.worker = None

    async def start(self) -> None:
        from node.follow.client import PeerClient
        from node.follow.sync import Follower
        from node.store.worker import DatabaseWorker

        self.worker = DatabaseWorker(self.db_path)
        for name, node in self.fed.nodes.items():
            client = PeerClient(node.public_url, signer=self.signer, timeout=10)
            client.get = self._remembering(name, client.get)
            self.followers[name] = Follower(node.origin, client, self.worker)

    def _remembering(self, name: str, get):
        async def remembering_get(path: str, **kwargs) -> bytes:
            data = await get(path, **kwargs)
            if path.startswith("tile/"):
                digest = hashlib.sha256(data).digest()
                seen = self.tiles.setdefault((name, path), digest)
                self.checked["tiles"] += 1
                if seen != digest:
                    self.violations.append(f"{name} served two different contents at {path}")
            return data
        return remembering_get

    async def check(self, name: str) -> None:
        from node.follow.client import FetchError
        from node.follow.sync import ForkDetected, PeerMisbehaved, SyncError
        from protocol.checkpoint import open_checkpoint
        from protocol.errors import ProtocolError
        from protocol.note import Verifier

        node, follower = self.fed.nodes[name], self.followers[name]
        try:
            note = await follower.client.checkpoint()
        except FetchError:
            return  # down or restarting
        try:
            cp, _ = open_checkpoint(note, [Verifier.from_vkey(node.datadir.load_log_signer().verifier_key())],
                                    origin=node.origin)
        except ProtocolError as exc:
            self.violations.append(f"{name} served a checkpoint that does not verify: {exc}")
            return
        self.checked["checkpoints"] += 1
        if cp.size < self.largest.get(name, 0):
            self.violations.append(f"{name} served size {cp.size} after size {self.largest[name]}")
        self.largest[name] = max(cp.size, self.largest.get(name, 0))
        try:
            await follower.sync_once(note)
        except (ForkDetected, PeerMisbehaved) as exc:
            self.violations.append(f"{name}: {type(exc).__name__}: {exc}")
        except SyncError:
            pass  # the node went down during the round

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(name) for name in self.fed.nodes))

    async def stop(self) -> None:
        for follower in self.followers.values():
            await follower.client.close()
        if self.worker is not None:
            await self.worker.close()


# ---------------------------------------------------------------------- the run

class Soak:
    def __init__(self, seconds: float, work: Path, seed: int, max_rss_mb: int):
        from node.readaccess import RequestSigner

        self.seconds, self.work, self.seed, self.max_rss = seconds, work, seed, max_rss_mb * 2**20
        self.rng = random.Random(seed)
        self.fed = Federation(work, random.Random(self.rng.random()))
        self.load = Load(self.fed, random.Random(self.rng.random()))
        self.driver = RequestSigner.from_seed("soak-driver", hashlib.sha256(b"soak %d" % seed).digest())
        self.injected: Counter = Counter()
        self.fault_log: list[str] = []
        self.forks_seen: dict[str, str] = {}
        self.violations: list[str] = []
        self.auditor: Auditor | None = None
        self.convergence: float | None = None
        self.recoveries: list[float | None] = []  # per restart: seconds until its followers caught up
        self.outage_seconds = 0.0
        self.outage: dict | None = None  # the outage's figures (Soak.run_outage)
        self._watching: set[asyncio.Task] = set()
        self.fed.on_restart.append(self.watch_recovery)

    def watch_recovery(self, node: Node) -> None:
        task = asyncio.create_task(self.recovered(node))
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)

    async def recovered(self, node: Node) -> None:
        """Seconds from a node's return until every node following it holds at least
        the checkpoint it serves on its return (None: not within 120 s; other faults
        may be in the way)."""
        followers = [self.fed.nodes[n] for n in (PLATFORMS if node.role == "helpline" else
                                                 HELPLINES if node.role == "platform" else ())]
        if not followers:
            return
        back = time.monotonic()
        try:
            note = await self.auditor.followers[node.name].client.checkpoint()
        except Exception:  # noqa: BLE001 - killed again already
            return
        size = int(note.split(b"\n")[1])
        while time.monotonic() - back < 120:
            reports = await asyncio.gather(*(self.status(f) for f in followers))
            if all(r is not None and any(e["origin"] == node.origin and e["size"] >= size for e in r["logs"])
                   for r in reports):
                self.recoveries.append(time.monotonic() - back)
                return
            await asyncio.sleep(0.2)
        self.recoveries.append(None)

    async def run_outage(self, seconds: float, until: float) -> None:
        """H1 down for `seconds` (SIGKILL), then: how long after its return does every
        platform following it hold the first checkpoint it publishes after it?"""
        name, start_by = HELPLINES[0], until - seconds - 15
        node = self.fed.nodes[name]
        await asyncio.sleep(min(10.0, max(0.0, start_by - time.monotonic())))
        while any(not n.alive for n in self.fed.nodes.values()) or self.fed.restarts:
            if time.monotonic() > start_by:
                return
            await asyncio.sleep(0.1)
        self.fed.calm.add(name)
        try:
            for (a, b), link in self.fed.links.items():
                if name in (a, b):
                    link.heal()
            client = self.auditor.followers[name].client
            before = int((await client.checkpoint()).split(b"\n")[1])
            node.kill()
            self.injected["outage-%gs" % seconds] += 1
            self.fault_log.append(f"{time.monotonic() - self.started:7.1f} s  OUTAGE: SIGKILL {name} for {seconds:g} s")
            await asyncio.sleep(seconds)
            await node.start()
            returned = time.monotonic()
            size, published = None, None
            while time.monotonic() - returned < 30:
                with contextlib.suppress(Exception):
                    seen = int((await client.checkpoint()).split(b"\n")[1])
                    if seen > before:
                        size, published = seen, time.monotonic() - returned
                        break
                await asyncio.sleep(0.05)
            cosigned = asyncio.create_task(self.cosigned_after(client, size, returned))
            back: dict[str, float | None] = {p: None for p in PLATFORMS}
            while size is not None and time.monotonic() - returned < 60 and None in back.values():
                for p in [p for p, t in back.items() if t is None]:
                    report = await self.status(self.fed.nodes[p])
                    if report and any(e["origin"] == node.origin and e["size"] >= size for e in report["logs"]):
                        back[p] = round(time.monotonic() - returned, 2)
                await asyncio.sleep(0.05)
            self.outage = {"node": name, "down_seconds": seconds, "new_checkpoint_after": round(published, 2)
                           if published is not None else None, "followers_back_after": back,
                           "cosigned_after": await cosigned}
            await asyncio.sleep(max(0.0, 10 - (time.monotonic() - returned)))
        finally:
            self.fed.calm.discard(name)

    async def cosigned_after(self, client, size: int | None, returned: float) -> float | None:
        """Seconds from the outage's return until the helpline serves checkpoint `size`
        (or a later one) with the witness's cosignature, which platform P3 requires
        (None: not within 60 s). The outage figure's middle step, traced."""
        from node.witness.policy import NotEnoughCosignatures, require_cosignatures

        while size is not None and time.monotonic() - returned < 60:
            with contextlib.suppress(Exception):
                note = await client.checkpoint()
                with contextlib.suppress(NotEnoughCosignatures):
                    require_cosignatures(note, [self.fed.witness_vkey], 1)
                    if int(note.split(b"\n")[1]) >= size:
                        return round(time.monotonic() - returned, 2)
            await asyncio.sleep(0.05)
        return None

    async def inject_faults(self, until: float) -> None:
        rng = random.Random(self.rng.random())
        weights = [kind.weight for kind in FAULTS]
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            for link in self.fed.links.values():
                link.active_fault()  # ends faults whose time is up
            kind = rng.choices(FAULTS, weights)[0]
            done = await kind.inject(self.fed, rng)
            if done:
                self.injected[kind.name] += 1
                self.fault_log.append(f"{time.monotonic() - self.started:7.1f} s  {done}")

    async def status(self, node: Node) -> dict | None:
        try:
            async with self.load.session.get(node.admin_url + "/status", timeout=_timeout(10)) as r:
                return await r.json() if r.status == 200 else None
        except Exception:  # noqa: BLE001 - down or restarting
            return None

    async def check_invariants(self) -> None:
        for node in self.fed.nodes.values():
            node.sample_rss()
            if node.peak_rss > self.max_rss and f"rss {node.name}" not in self.forks_seen:
                self.violations.append(f"{node.name} uses {node.peak_rss / 2**20:.0f} MB, more than allowed")
                self.forks_seen[f"rss {node.name}"] = "reported"
            report = await self.status(node) if node.alive else None
            for entry in (report or {}).get("logs", []):
                if entry.get("forked") and (node.name, entry["origin"]) not in self.forks_seen:
                    self.forks_seen[(node.name, entry["origin"])] = entry.get("fork_reason")
                    self.violations.append(f"{node.name} marked {entry['origin']} FORKED: {entry.get('fork_reason')}")
        await self.auditor.check_all()

    async def watch(self, until: float) -> None:
        while time.monotonic() < until:
            await self.check_invariants()
            await asyncio.sleep(3)

    async def converge(self, since: float) -> float:
        """Seconds from `since` (faults stopped) until every node holds every followed
        log's latest checkpoint (size), checked every 0.5 s."""
        while time.monotonic() - since < CONVERGENCE_BOUND:
            if await self.converged():
                return time.monotonic() - since
            await asyncio.sleep(0.5)
        return float("inf")

    async def converged(self) -> bool:
        sizes = {}
        for node in self.fed.nodes.values():
            try:
                note = await self.auditor.followers[node.name].client.checkpoint()
            except Exception:  # noqa: BLE001
                return False
            sizes[node.origin] = int(note.split(b"\n")[1])
        for node in self.fed.nodes.values():
            report = await self.status(node)
            if report is None:
                return False
            for entry in report["logs"]:
                if entry["size"] != sizes.get(entry["origin"]):
                    return False
        return True

    async def run(self) -> dict:
        import aiohttp

        self.started = time.monotonic()
        await self.fed.build(self.driver.keyid)
        await self.fed.start()
        self.auditor = Auditor(self.fed, self.work, self.driver)
        await self.auditor.start()
        self.load.session = aiohttp.ClientSession()
        try:
            print(f"federation up in {time.monotonic() - self.started:.1f} s: {len(self.fed.nodes)} nodes, "
                  f"{len(self.fed.links)} proxied links; {self.seconds:g} s of load and faults (seed {self.seed})",
                  flush=True)
            until = time.monotonic() + self.seconds
            progress = asyncio.create_task(self.progress(until))
            outage = [self.run_outage(self.outage_seconds, until)] if self.outage_seconds else []
            await asyncio.gather(self.load.run(self.seconds), self.inject_faults(until), self.watch(until), *outage)
            progress.cancel()
            # Faults stop: links healed, dead nodes started again; the load has stopped.
            await self.fed.heal()
            healed = time.monotonic()
            for case in [c for c in self.load.cases if c.withdrawing and not c.withdrawn]:
                for _ in range(20):
                    await self.load.withdraw(case)
                    if case.withdrawn:
                        break
                    await asyncio.sleep(1)
            self.convergence = await self.converge(healed)
            await self.check_invariants()
            answers = await self.final_matches()
            feedback = await self.final_feedback()
        finally:
            for task in list(self._watching):
                task.cancel()
            await asyncio.gather(*self._watching, return_exceptions=True)
            await self.load.session.close()
            await self.auditor.stop()
            await self.fed.stop()
        stored = self.final_databases()
        return self.summary(answers, feedback, stored)

    async def progress(self, until: float) -> None:
        while True:
            await asyncio.sleep(60)
            print(f"  {time.monotonic() - self.started:6.0f} s: {sum(self.injected.values())} faults, "
                  f"{self.load.stats.acked['case']} cases, {self.load.stats.acked['withdrawal']} withdrawals, "
                  f"{self.load.stats.acked['feedback']} feedback acknowledged; {len(self.violations)} violations",
                  flush=True)

    async def final_matches(self) -> Counter:
        """Every platform: no match for a withdrawn case's entries, a match for every
        active case's (origin and index both right)."""
        answers = Counter()
        for name in PLATFORMS:
            for start in range(0, len(self.load.cases), 100):
                cases = self.load.cases[start:start + 100]
                prints = [(case, fp, index) for case in cases for fp, index in zip(case.fingerprints, case.indices)]
                for chunk in range(0, len(prints), 500):
                    part = prints[chunk:chunk + 500]
                    results = await self.load.match(name, [fp for _, fp, _ in part])
                    if results is None:
                        self.violations.append(f"{name} did not answer a match query after the faults")
                        continue
                    for (case, fp, index), result in zip(part, results):
                        found = any(m["origin"] == origin_of(case.helpline) and m["index"] == index
                                    for m in result["matches"])
                        if case.withdrawn and found:
                            answers["withdrawn but matched"] += 1
                            self.violations.append(f"{name} still matches withdrawn entry {case.helpline}#{index}")
                        elif not case.withdrawn and not found:
                            answers["active but not matched"] += 1
                            self.violations.append(f"{name} does not match active entry {case.helpline}#{index}")
                        else:
                            answers["right"] += 1
        return answers

    async def final_feedback(self) -> Counter:
        """Case status at the helpline shows the feedback platforms acknowledged (a sample)."""
        seen = Counter()
        latest = {}
        for platform, helpline, index, verdict in self.load.feedback:
            latest[(platform, helpline, index)] = verdict
        by_case = {}
        for case in self.load.cases:
            for index in case.indices:
                by_case[(case.helpline, index)] = case
        sample = self.rng.sample(sorted(latest), min(20, len(latest)))
        for platform, helpline, index in sample:
            case = by_case[(helpline, index)]
            status, answer = await self.load.post(self.fed.nodes[helpline].public_url + "/v1/cases/status",
                                                  {"case_number": case.number, "pin": case.pin})
            verdicts = {(f["platform"], f["index"]): f["verdict"] for f in (answer or {}).get("feedback", [])} \
                if status == 200 else {}
            if verdicts.get((origin_of(platform), index)) is not None:
                seen["shown"] += 1
            else:
                seen["missing"] += 1
                self.violations.append(f"feedback of {platform} on {helpline}#{index} not in the case status")
        return seen

    def final_databases(self) -> Counter:
        """With every node stopped: acknowledged entries where they were acknowledged;
        every follower holds each followed log's latest checkpoint; no fork recorded."""
        from protocol.entries import Submission, Withdrawal, decode_entry

        counts = Counter()
        logs = {}
        for name, node in self.fed.nodes.items():
            db = sqlite3.connect(f"file:{node.datadir.db_path}?mode=ro", uri=True)
            entries = dict(db.execute("SELECT idx, data FROM log_entries"))
            hashes = dict(db.execute("SELECT idx, leaf_hash FROM log_entries"))
            size, root = db.execute("SELECT size, root_hash FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
            logs[node.origin] = (size, root)
            forks = db.execute("SELECT COUNT(*) FROM follow_forks").fetchone()[0]
            if forks:
                counts["forks recorded"] += forks
                self.violations.append(f"{name} recorded {forks} fork(s) in its database")
            if size != len(entries):
                self.violations.append(f"{name}: checkpoint size {size} but {len(entries)} entries stored")
            for ack in (a for a in self.load.acks if a.node == name):
                data = entries.get(ack.index)
                ok = False
                if data is not None and ack.kind == "feedback":
                    ok = hashes[ack.index].hex() == ack.expect
                elif data is not None:
                    entry = decode_entry(data)
                    if ack.kind == "submission":
                        ok = isinstance(entry, Submission) and entry.fingerprint.hex() == ack.expect
                    else:
                        ok = isinstance(entry, Withdrawal) and set(entry.targets) <= set(ack.expect)
                counts["acknowledged entries"] += 1
                if not ok:
                    counts["lost or moved"] += 1
                    self.violations.append(f"{name}: acknowledged {ack.kind} entry {ack.index} lost or moved")
            db.close()
        for name, node in self.fed.nodes.items():
            db = sqlite3.connect(f"file:{node.datadir.db_path}?mode=ro", uri=True)
            for origin, size, root, forked in db.execute("SELECT origin, size, root_hash, forked FROM followed_logs"):
                if forked:
                    counts["logs marked forked"] += 1
                if size != logs[origin][0] or (size and root != logs[origin][1]):
                    counts["followed logs behind"] += 1
                    self.violations.append(f"{name} holds {origin} at size {size}, its log is at {logs[origin][0]}")
            db.close()
        return counts

    def summary(self, answers: Counter, feedback: Counter, stored: Counter) -> dict:
        tracebacks = {name: node.log_path.read_text(errors="replace").count("Traceback")
                      for name, node in self.fed.nodes.items()}
        effects = Counter()
        for link in self.fed.links.values():
            effects.update(link.counts)
        false_forks = len([k for k in self.forks_seen if isinstance(k, tuple)]) + stored["logs marked forked"]
        return {
            "seconds": self.seconds, "seed": self.seed, "work": str(self.work),
            "faults_injected": dict(self.injected),
            "fault_effects": {k: effects[k] for k in sorted(effects)},
            "restarts": {name: node.starts - 1 for name, node in self.fed.nodes.items()},
            "acknowledged": dict(self.load.stats.acked),
            "refused_during_faults": dict(self.load.stats.refused),
            "acknowledged_entries_checked": stored["acknowledged entries"],
            "lost_or_moved": stored["lost or moved"],
            "false_forks": false_forks,
            "convergence_seconds": None if self.convergence == float("inf") else round(self.convergence, 2),
            "convergence_bound": CONVERGENCE_BOUND,
            "caught_up_after_restart": _spread([r for r in self.recoveries if r is not None]),
            "not_caught_up_within_120_s": sum(r is None for r in self.recoveries),
            "outage": self.outage,
            "match_answers": dict(answers),
            "feedback_in_case_status": dict(feedback),
            "served": dict(self.auditor.checked),
            "peak_rss_mb": {name: round(node.peak_rss / 2**20) for name, node in self.fed.nodes.items()},
            "max_rss_mb": self.max_rss // 2**20,
            "tracebacks_in_logs": tracebacks,
            "violations": self.violations + self.auditor.violations + list(self.load.wrong_requests.values()),
        }


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(ordered[len(ordered) // 2], 2), "max": round(ordered[-1], 2)}


def _timeout(seconds: float):
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


def print_summary(s: dict) -> None:
    print(f"\nsoak: 2 helplines, 3 platforms, 1 witness; {s['seconds']:g} s of load and faults (seed {s['seed']})")
    print("faults injected:   " + ", ".join(f"{k} {v}" for k, v in sorted(s["faults_injected"].items())))
    print("effects on links:  " + ", ".join(f"{k} {v}" for k, v in s["fault_effects"].items()))
    print("restarts:          " + ", ".join(f"{k} {v}" for k, v in s["restarts"].items()))
    print("acknowledged:      " + ", ".join(f"{k} {v}" for k, v in sorted(s["acknowledged"].items())))
    if s["refused_during_faults"]:
        print("refused (faults):  " + ", ".join(f"{k} {v}" for k, v in sorted(s["refused_during_faults"].items())))
    print(f"lost or moved:     {s['lost_or_moved']} of {s['acknowledged_entries_checked']} acknowledged entries")
    print(f"false forks:       {s['false_forks']}")
    conv = s["convergence_seconds"]
    print(f"convergence:       {'NOT within %g s' % s['convergence_bound'] if conv is None else '%.1f s' % conv} "
          "after faults stopped (worst log, worst node)")
    spread = s["caught_up_after_restart"]
    if spread:
        print(f"after a restart:   followers caught up in p50 {spread['p50']:.1f} s, max {spread['max']:.1f} s "
              f"({spread['n']} restarts of followed nodes; {s['not_caught_up_within_120_s']} not within 120 s, "
              "with other faults going on)")
    outage = s.get("outage")
    if outage:
        back = outage["followers_back_after"]
        worst = None if None in back.values() else max(back.values())
        print(f"outage:            {outage['node']} down {outage['down_seconds']:g} s; its first new checkpoint "
              f"{outage['new_checkpoint_after']} s after its return; every follower held it "
              + (f"{worst:.2f} s after the return ({worst - outage['new_checkpoint_after']:.2f} s after its "
                 "publication)" if worst is not None else "NOT within 60 s")
              + ": " + ", ".join(f"{k} {v}" for k, v in back.items())
              + f"; served with the witness's cosignature (P3 requires it) {outage.get('cosigned_after')} s after "
                "the return")
    print("match answers:     " + ", ".join(f"{k} {v}" for k, v in sorted(s["match_answers"].items())))
    print("feedback shown:    " + ", ".join(f"{k} {v}" for k, v in sorted(s["feedback_in_case_status"].items())))
    print("served and checked:" + "".join(f" {k} {v}" for k, v in sorted(s["served"].items())))
    print("peak RSS (MB):     " + ", ".join(f"{k} {v}" for k, v in s["peak_rss_mb"].items())
          + f" (bound {s['max_rss_mb']})")
    print("tracebacks:        " + ", ".join(f"{k} {v}" for k, v in s["tracebacks_in_logs"].items()))
    for violation in s["violations"][:30]:
        print("VIOLATION:", violation)
    print("result:", "PASS" if passed(s) else "FAIL")


def passed(s: dict) -> bool:
    return (not s["violations"] and s["lost_or_moved"] == 0 and s["false_forks"] == 0
            and s["convergence_seconds"] is not None and not any(s["tracebacks_in_logs"].values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load and faults for this long (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="where the nodes live (default: a new temporary directory)")
    parser.add_argument("--json", type=Path, help="write the summary here too")
    parser.add_argument("--outage", type=float, default=30.0,
                        help="helpline H1 down this long once, when the run is 25 s longer (default 30; 0: none)")
    parser.add_argument("--max-rss-mb", type=int, default=500, help="memory bound per node (default 500)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        print(f"{work} is not empty", file=sys.stderr)
        return 2
    # The driver's own node modules (the auditor's follower) log to a file, not the terminal.
    logging.basicConfig(filename=work / "driver.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    soak = Soak(args.seconds, work, args.seed, args.max_rss_mb)
    soak.outage_seconds = args.outage if args.seconds >= args.outage + 25 else 0.0
    summary = asyncio.run(soak.run())
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    print_summary(summary)
    print(f"(node logs and data in {work}; fault log: {len(soak.fault_log)} lines)")
    (work / "faults.log").write_text("\n".join(soak.fault_log) + "\n")
    return 0 if passed(summary) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
