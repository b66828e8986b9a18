"""Helpers shared by the publishing tests: make a data directory, start a node, append
over the admin endpoint, and read a whole log back over HTTP, verifying everything
with protocol/ (never with the node's own code)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from node.cli import main as cli_main
from node.config import Config
from node.datadir import DataDir
from node.store.tiles import TileStore
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.merkle import inclusion_proof, leaf_hash, verify_inclusion
from protocol.note import Verifier
from protocol.tiles import (
    TileId,
    TileNodes,
    bundles_for_size,
    decode_bundle,
    tiles_for_size,
    verify_bundle,
    verify_tiles,
)

ORIGIN = "test.example/log"


def pdq_line(i: int) -> str:
    """A distinct, valid PDQ submission line for each i."""
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i:064x}"})


def make_datadir(tmp_path: Path, *, public_read: bool = True, interval: float = 0.05,
                 origin: str = ORIGIN, name: str = "node", role: str | None = None,
                 settings: dict | None = None, database: str | None = None, **admin) -> DataDir:
    """The tests' one way to make a data directory: `ncii-node init` (with `role`, and
    --public-read unless told otherwise), then the sequencing `interval`, `[admin]`
    keys given as keyword arguments, and any other table's keys in `settings`
    ({"cases": {"pin_scrypt_n": 1024}, ...}); the configuration is checked as
    config.toml is. `database`: a PostgreSQL URL (`init --database`), e.g. the
    `pg_url` fixture's."""
    root = tmp_path / name
    argv = ["init", "--dir", str(root), "--origin", origin]
    if role is not None:
        argv += ["--role", role]
    if public_read:
        argv.append("--public-read")
    if database is not None:
        argv += ["--database", database]
    assert cli_main(argv) == 0
    datadir = DataDir(root)
    data = datadir.config.to_dict()
    data["log"]["sequencing_interval"] = interval
    data["admin"].update(admin)
    for table, values in (settings or {}).items():
        data[table].update(values)
    datadir.save_config(Config.from_dict(data))
    return DataDir(root)


class Site:
    """Requests to one site of a started node (`running`, a RunningNode) by path:
    `get(path)`, `post(path, **kwargs)` -> aiohttp responses; the public site unless
    `admin`."""

    def __init__(self, session: aiohttp.ClientSession, running, *, admin: bool = False):
        self.session, self.running = session, running
        self.url = running.admin_url if admin else running.public_url

    async def get(self, path: str, **kwargs):
        return await self.session.get(self.url + path, **kwargs)

    async def post(self, path: str, **kwargs):
        return await self.session.post(self.url + path, **kwargs)

    def make_url(self, path: str) -> str:
        return self.url + path


def helpline_datadir(tmp_path: Path, name: str = "helpline", **cases) -> DataDir:
    """A helpline (origin helpline.example/log, public_read) with cheap PIN hashes and
    the given [cases] settings."""
    # production hashes PINs with scrypt n=2**15; the tests only need the same code path
    return make_datadir(tmp_path, name=name, origin="helpline.example/log", role="helpline",
                        settings={"cases": {"pin_scrypt_n": 2**10, **cases}})


class Clock:
    """A clock the case service reads (`service.clock = Clock(t)`), moved by the test."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


async def append(session: aiohttp.ClientSession, admin_url: str, token: str,
                 lines: list[str] | bytes) -> tuple[int, object]:
    body = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    async with session.post(admin_url + "/admin/append", data=body,
                            headers={"Authorization": f"Bearer {token}"}) as r:
        text = await r.text()
        if r.status == 200:
            return 200, [json.loads(line) for line in text.splitlines()]
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


@dataclass
class LogView:
    checkpoint: Checkpoint
    note: bytes
    tiles: dict[TileId, bytes] = field(default_factory=dict)
    entries: list[bytes] = field(default_factory=list)


async def fetch(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.read()


async def read_log(session: aiohttp.ClientSession, url: str, vkey: str, origin: str = ORIGIN) -> LogView:
    """Fetch the checkpoint, every tile and every bundle; verify the signature, every
    tile against the root, every bundle against its tile, every entry's inclusion."""
    note = await fetch(session, url + "/checkpoint")
    cp, _ = open_checkpoint(note, [Verifier.from_vkey(vkey)], origin=origin)
    view = LogView(cp, note)
    for tile in tiles_for_size(cp.size):
        data = await fetch(session, f"{url}/{tile.path()}")
        assert len(data) == 32 * tile.width
        view.tiles[tile] = data
    verify_tiles(cp.size, cp.root_hash, view.tiles)
    for bundle in bundles_for_size(cp.size):
        entries = decode_bundle(await fetch(session, f"{url}/{bundle.path()}"), bundle.width)
        verify_bundle(entries, view.tiles[TileId(0, bundle.index, bundle.width)], bundle.width)
        view.entries.extend(entries)
    assert len(view.entries) == cp.size
    nodes = cached_nodes(TileNodes(cp.size, view.tiles))
    for index, entry in enumerate(view.entries):
        proof = inclusion_proof(index, cp.size, nodes)
        verify_inclusion(leaf_hash(entry), index, cp.size, proof, cp.root_hash)
    return view


def cached_nodes(nodes: TileNodes):
    """A node getter that remembers what it computed: neighbouring entries' inclusion
    proofs share most of their nodes."""
    return functools.lru_cache(maxsize=None)(nodes.node_at)


def tile_files(datadir: DataDir) -> dict[str, bytes]:
    """Every file under the tiles directory, by relative path (a PostgreSQL node: every
    row of its tiles table)."""
    if datadir.uses_postgres:
        store = TileStore.of(datadir)
        try:
            return dict(store.items())
        finally:
            store.close()
    out = {}
    root = datadir.tiles_dir
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def log_signed(note: bytes) -> bytes:
    """The note with only the log's own signature lines: what the sequencer writes to
    tiles/checkpoint. The note served at /checkpoint also carries cosignatures (the
    node's publication cosignature, witnesses'), shaped key ID + timestamp + signature."""
    from protocol.cosignature import PAYLOAD_SIZE
    from protocol.note import Note, parse_note

    parsed = parse_note(note)
    return Note(parsed.text, [s for s in parsed.signatures if len(s.signature) != PAYLOAD_SIZE]).to_bytes()


async def wait_for(predicate, timeout: float = 20.0, step: float = 0.05) -> bool:
    """Poll `predicate` (a plain or async callable) until it is true; True, or
    AssertionError once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not reached in {timeout} s")
        await asyncio.sleep(step)
