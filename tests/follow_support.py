"""Helpers for the follower tests: a log built with protocol/ functions only, served by
a real aiohttp server on 127.0.0.1 that can be told to misbehave path by path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from node.cli import main as cli_main
from node.follow.client import PeerClient
from node.follow.listener import FollowListener
from node.follow.sync import Follower
from node.store.worker import DatabaseWorker
from node.store import follow as store
from node.store import open_db
from protocol.evidence import VerifiedEvidence, verify_evidence
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.entries import Submission, Withdrawal, encode_entry
from protocol.merkle import leaf_hash, root_of
from protocol.note import Signer
from protocol.tiles import build_tile, bundles_for_size, encode_bundle, tiles_for_size
from publish_support import make_datadir


def pdq_entry(i: int, labels: tuple[str, ...] = ()) -> bytes:
    return encode_entry(Submission("pdq", i.to_bytes(32, "big"), 90, labels, 0))


def near_copies(rng, fingerprint: bytes, count: int, distance: int) -> list[bytes]:
    """`count` copies of a 32-byte fingerprint, each with `distance` bits flipped at random."""
    import numpy as np

    bits = np.unpackbits(np.frombuffer(fingerprint, dtype=np.uint8))
    out = []
    for _ in range(count):
        copy = bits.copy()
        copy[rng.choice(256, size=distance, replace=False)] ^= 1
        out.append(np.packbits(copy).tobytes())
    return out


def withdrawal_entry(*targets: int) -> bytes:
    return encode_entry(Withdrawal(tuple(targets)))


class StaticLog:
    """A genuine tlog-tiles log kept in memory: every tile, bundle and checkpoint ever
    published stays under its path (tiles are immutable), like a real node's files."""

    def __init__(self, origin: str = "hostile.example/log", signer: Signer | None = None):
        self.origin = origin
        self.signer = signer or Signer.generate(origin)
        self.entries: list[bytes] = []
        self.leaves: list[bytes] = []
        self.files: dict[str, bytes] = {}
        self.note = sign_checkpoint(Checkpoint(origin, 0, root_of([])), self.signer)

    @property
    def vkey(self) -> str:
        return self.signer.verifier_key()

    def node_at(self, level: int, index: int) -> bytes:
        return root_of(self.leaves[index << level:(index + 1) << level])

    def append(self, *entries: bytes) -> int:
        self.entries.extend(entries)
        self.leaves.extend(leaf_hash(e) for e in entries)
        return self.publish()

    def publish(self) -> int:
        size = len(self.entries)
        for tile in tiles_for_size(size):
            self.files.setdefault(tile.path(), build_tile(tile.level, tile.index, size, self.node_at))
        for bundle in bundles_for_size(size):
            start = bundle.index * 256
            self.files.setdefault(bundle.path(), encode_bundle(self.entries[start:start + bundle.width]))
        self.note = self.sign(size, root_of(self.leaves))
        return size

    def sign(self, size: int, root: bytes, signer: Signer | None = None) -> bytes:
        return sign_checkpoint(Checkpoint(self.origin, size, root), signer or self.signer)


Handler = Callable[[web.Request], "web.StreamResponse"]


class LogServer:
    """Serves a StaticLog; `overrides[path]` (bytes or an async handler) replaces a
    path's answer, `checkpoint` (if set) replaces the checkpoint note."""

    def __init__(self, log: StaticLog):
        self.log = log
        self.overrides: dict[str, bytes | Handler] = {}
        self.checkpoint: bytes | None = None
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.lstrip("/")
        self.requests.append(path)
        override = self.overrides.get(path)
        if override is None and path.startswith("tile/"):
            override = self.overrides.get("tile/*")
        if callable(override):
            return await override(request)
        if override is not None:
            return web.Response(body=override)
        if path == "checkpoint":
            return web.Response(body=self.checkpoint or self.log.note, content_type="text/plain")
        data = self.log.files.get(path)
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def start(self) -> "LogServer":
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Harness:
    """A follower's database and worker, following any number of logs; fork evidence
    files go to `evidence_dir` (tmp_path/evidence)."""

    def __init__(self, tmp_path: Path, db_path: Path | str | None = None, listener: FollowListener | None = None,
                 timeout: float = 2.0):
        self.db_path = db_path if db_path is not None else tmp_path / "follower.db"  # or a PostgreSQL URL
        self.evidence_dir = tmp_path / "evidence"
        self.db = open_db(self.db_path)
        self.worker = DatabaseWorker(self.db_path)
        self.listener = listener
        self.timeout = timeout
        self.followers: dict[str, Follower] = {}
        self.clients: list[PeerClient] = []

    def follow(self, origin: str, url: str, vkey: str, **client_args) -> Follower:
        self.db.follow.add_log(origin, url, vkey)
        return self.attach(origin, url, **client_args)

    def attach(self, origin: str, url: str, **client_args) -> Follower:
        """A follower for a log already in the database (after a restart)."""
        client = PeerClient(url, timeout=self.timeout, **client_args)
        self.clients.append(client)
        follower = Follower(origin, client, self.worker, listener=self.listener, chunk_bundles=2,
                            evidence_dir=self.evidence_dir)
        self.followers[origin] = follower
        return follower

    def state(self, origin: str) -> store.FollowedLog:
        return self.db.follow.get_log(origin)

    def evidence(self, origin: str) -> tuple[Path, VerifiedEvidence]:
        """The evidence file of the log's (newest) fork, checked like
        `ncii-node audit verify-evidence` checks it."""
        fork = self.db.follow.list_forks(origin)[-1]
        assert fork.evidence_problem is None and fork.evidence_path, fork.evidence_problem
        path = Path(fork.evidence_path)
        assert path.parent == self.evidence_dir and (path.stat().st_mode & 0o777) == 0o644
        return path, verify_evidence(path.read_bytes())

    def fingerprints(self, origin: str) -> list[store.FingerprintRow]:
        return list(self.db.follow.iter_fingerprints(origin))

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.worker.close()
        self.db.close()


async def slow(seconds: float):
    async def handler(request):
        await asyncio.sleep(seconds)
        return web.Response(body=b"late")
    return handler


@contextlib.asynccontextmanager
async def helpline_and_platform(tmp_path: Path, start_node):
    """Two real nodes in this process, started by conftest's `start_node`: a
    read-restricted helpline, and a platform that is its registered reader and follows
    it. Yields (helpline dir, platform dir, helpline RunningNode, platform RunningNode);
    both are stopped when the block ends."""
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    assert cli_main(["readers", "add", "--dir", str(helpline.root),
                     platform.load_request_signer().verifier_key()]) == 0
    publisher = await start_node(helpline)
    follower = None
    try:
        assert cli_main(["follow", "add", "--dir", str(platform.root), publisher.public_url, "--vkey",
                         helpline.load_log_signer().verifier_key()]) == 0
        follower = await start_node(platform)
        yield helpline, platform, publisher, follower
    finally:
        if follower is not None:
            await follower.stop()
        await publisher.stop()
