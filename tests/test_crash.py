"""Crash safety of the publishing node, with real processes and SIGKILL.

1. `test_sigkill_at_random_moments`: a node process serves while clients append and
   read; it is SIGKILLed at random moments (12 times; 6 on PostgreSQL, whose
   node keeps entries and tiles in the database) and restarted each time. Then: every acknowledged entry is at its index, every checkpoint a client
   saw is consistent with the latest one, no tile or bundle a client fetched (nor any
   file in the tiles directory) ever changed, and no entry was published twice.
2. `test_sigkill_at_each_step`: the node kills itself at each point of the sequencing
   order (after storing, halfway through the tile writes, after writing the
   checkpoint file but before recording it), then restarts and must publish the
   stored entries identically.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time

import aiohttp
import pytest

from protocol.checkpoint import open_checkpoint
from protocol.entries import decode_entry
from protocol.edge import TreeEdge
from protocol.merkle import consistency_proof, leaf_hash, verify_consistency
from protocol.note import Verifier
from protocol.tiles import TileNodes, bundles_for_size, tiles_for_size

from publish_support import append, cached_nodes, log_signed, make_datadir, pdq_line, read_log, tile_files
from serve_support import NodeProcess

KILLS = 12
pytestmark = pytest.mark.timeout(240)


class Observations:
    """What clients saw: acknowledgements, checkpoints, fetched tiles."""

    def __init__(self, vkey: str, origin: str):
        self.verifier = Verifier.from_vkey(vkey)
        self.origin = origin
        self.acked: dict[int, tuple[int, str, int]] = {}   # index -> (line id, leaf hash hex, checkpoint size)
        self.checkpoints: dict[int, bytes] = {}             # size -> root hash
        self.fetched: dict[str, bytes] = {}                 # tile path -> bytes
        self.changed: list[str] = []

    def ack(self, index: int, value: tuple[int, str, int]) -> None:
        assert self.acked.setdefault(index, value) == value, f"index {index} acknowledged twice"

    def saw_checkpoint(self, note: bytes) -> int:
        cp, _ = open_checkpoint(note, [self.verifier], origin=self.origin)
        previous = self.checkpoints.setdefault(cp.size, cp.root_hash)
        assert previous == cp.root_hash, f"two different checkpoints of size {cp.size}: a fork"
        return cp.size

    def saw_tile(self, path: str, data: bytes) -> None:
        if self.fetched.setdefault(path, data) != data:
            self.changed.append(path)


async def appender(session, node: NodeProcess, token: str, ids, seen: Observations) -> None:
    while True:
        line_ids = [next(ids) for _ in range(random.randint(1, 40))]
        try:
            status, results = await append(session, node.admin_url, token, [pdq_line(i) for i in line_ids])
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            await asyncio.sleep(0.01)
            continue
        assert status == 200, results
        for i, r in zip(line_ids, results):
            assert r["checkpoint_size"] > r["index"]
            seen.ack(r["index"], (i, r["leaf_hash"], r["checkpoint_size"]))


async def reader(session, node: NodeProcess, seen: Observations) -> None:
    while True:
        try:
            async with session.get(node.public_url + "/checkpoint") as r:
                note = await r.read()
            size = seen.saw_checkpoint(note)
            # A random sample of what that checkpoint says exists, partial tiles included.
            paths = [t.path() for t in tiles_for_size(size)] + [b.path() for b in bundles_for_size(size)]
            for path in random.sample(paths, min(len(paths), 6)):
                async with session.get(f"{node.public_url}/{path}") as r:
                    assert r.status == 200, (path, r.status)
                    seen.saw_tile(path, await r.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            pass
        await asyncio.sleep(0.01)


def check_files_never_change(files_seen: dict[str, bytes], datadir) -> None:
    for path, data in tile_files(datadir).items():
        if path == "checkpoint":
            continue
        assert files_seen.setdefault(path, data) == data, f"{path} changed on disk"


async def verify_final(session, node: NodeProcess, datadir, seen: Observations) -> int:
    vkey = datadir.load_log_signer().verifier_key()
    view = await read_log(session, node.public_url, vkey, origin=datadir.config.node.origin)
    size = view.checkpoint.size
    hashes = [leaf_hash(e) for e in view.entries]
    # Every acknowledged entry is at its index.
    for index, (line_id, leaf_hex, cp_size) in seen.acked.items():
        assert index < size and hashes[index].hex() == leaf_hex, f"acknowledged entry {index} lost or moved"
        assert cp_size <= size
    # No entry published twice (every line sent was distinct).
    assert len(set(view.entries)) == size
    # Every checkpoint seen is consistent with the latest: its root is the root of the
    # latest log's prefix, and a consistency proof from the latest tiles verifies.
    nodes = cached_nodes(TileNodes(size, view.tiles))
    edge = TreeEdge()
    for old_size, old_root in sorted(seen.checkpoints.items()):
        assert old_size <= size
        edge.append(hashes[edge.size:old_size])
        assert edge.root() == old_root, f"checkpoint {old_size} is not a prefix of the log"
        if 0 < old_size < size:
            verify_consistency(old_size, size, consistency_proof(old_size, size, nodes), old_root,
                               view.checkpoint.root_hash)
    # No tile a client fetched ever changed, and it is still served identically.
    assert not seen.changed, f"tiles changed after being served: {seen.changed[:5]}"
    for path, data in seen.fetched.items():
        async with session.get(f"{node.public_url}/{path}") as r:
            assert await r.read() == data, f"{path} is served with different bytes now"
    return size


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_sigkill_at_random_moments(tmp_path, request, backend):
    rng_seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    random.seed(rng_seed)
    print(f"crash test seed {rng_seed}")
    database = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    kills = KILLS if database is None else KILLS // 2
    datadir = make_datadir(tmp_path, interval=0.05, database=database)
    token = datadir.admin_token()
    seen = Observations(datadir.load_log_signer().verifier_key(), datadir.config.node.origin)
    files_seen: dict[str, bytes] = {}
    ids = itertools.count()
    node = NodeProcess(datadir)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        try:
            for kill in range(kills):
                await node.start()
                tasks = [asyncio.create_task(appender(session, node, token, ids, seen)) for _ in range(3)]
                tasks.append(asyncio.create_task(reader(session, node, seen)))
                await asyncio.sleep(random.uniform(0.05, 0.8))
                node.kill()
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                for result in results:  # an assertion inside a client is a failure
                    if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                        raise result
                check_files_never_change(files_seen, datadir)
            await node.start()
            killed_at = time.monotonic()
            size = await verify_final(session, node, datadir, seen)
            print(f"final verification took {time.monotonic() - killed_at:.1f} s")
            check_files_never_change(files_seen, datadir)
        finally:
            node.stop()
    log_text = node.stderr_path.read_text()
    republished = log_text.count("re-publishing them")
    print(f"{kills} kills ({backend}) in {time.monotonic() - started:.1f} s; final size {size}; "
          f"{len(seen.acked)} acknowledged; {len(seen.checkpoints)} checkpoints and "
          f"{len(seen.fetched)} tiles seen by clients; {republished} restarts re-published "
          "stored but unpublished entries")
    assert len(seen.acked) > 0 and len(seen.checkpoints) > kills
    assert "Traceback" not in log_text


# The node kills itself at one point of the sequencing order (test-only wrapper).
WRAPPER = r"""
import os, signal, sys
from node.store.log import LogRepository
from node.store.tiles import TileStore
STEP = os.environ["CRASH_STEP"]
calls = {"n": 0}
def die():
    os.kill(os.getpid(), signal.SIGKILL)
orig_insert = LogRepository.insert_entries
stored = {"now": False}
def insert_entries(self, first, entries, hashes):
    orig_insert(self, first, entries, hashes)
    if STEP == "after-store" and entries:
        if getattr(self.db, "dialect", "sqlite") == "postgresql":
            stored["now"] = True  # the sequencer's fenced transaction (PostgreSQL): when it commits
        else:
            die()
LogRepository.insert_entries = insert_entries
import contextlib
from node.log.lease import PostgresLease
orig_fenced = PostgresLease.fenced
def fenced(self, db):
    @contextlib.contextmanager
    def transaction():
        with orig_fenced(self, db) as inside:
            yield inside
        if stored["now"]:
            die()
    return transaction()
PostgresLease.fenced = fenced
from node.store.dbtiles import DatabaseTileStore
def halfway(orig_commit):
    def commit(self, staged):
        if STEP == "mid-tiles" and len(staged.pending) > 2:
            half = type(staged)()
            half.pending = staged.pending[: len(staged.pending) // 2]
            orig_commit(self, half)
            die()
        return orig_commit(self, staged)
    return commit
for store in (TileStore, DatabaseTileStore):  # files (SQLite node), rows (PostgreSQL node)
    store.commit = halfway(store.commit)
orig_record = LogRepository.record_checkpoint
def record_checkpoint(self, size, root, note, published_at=None, **options):
    if STEP == "before-record" and size > 0:
        die()
    return orig_record(self, size, root, note, published_at, **options)
LogRepository.record_checkpoint = record_checkpoint
from node.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("step", ["after-store", "mid-tiles", "before-record"])
async def test_sigkill_at_each_step(tmp_path, step, monkeypatch, request, backend):
    database = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    datadir = make_datadir(tmp_path, interval=0.05, database=database)
    token = datadir.admin_token()
    vkey = datadir.load_log_signer().verifier_key()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        node = NodeProcess(datadir)
        await node.start()
        status, _ = await append(session, node.admin_url, token, [pdq_line(i) for i in range(300)])
        assert status == 200
        before = await read_log(session, node.public_url, vkey)
        node.stop()

        monkeypatch.setenv("CRASH_STEP", step)
        crashing = NodeProcess(datadir, wrapper=WRAPPER)
        await crashing.start()
        with pytest.raises((aiohttp.ClientError, ConnectionError)):
            await append(session, crashing.admin_url, token, [pdq_line(i) for i in range(300, 900)])
        assert await crashing.wait_dead() == -signal.SIGKILL
        assert database is not None or (datadir.root / "node.db").exists()
        files_after_crash = tile_files(datadir)
        monkeypatch.delenv("CRASH_STEP")

        node = NodeProcess(datadir)
        await node.start()
        try:
            after = await read_log(session, node.public_url, vkey)
            # The crashed batch was stored in step 1 for every step tested here, so the
            # restart publishes it: all 900 entries, the first 300 unchanged.
            assert after.checkpoint.size == 900
            assert after.entries[:300] == before.entries
            for i, entry in enumerate(after.entries[300:], start=300):
                assert decode_entry(entry).fingerprint == bytes.fromhex(f"{i:064x}")
            for tile, data in before.tiles.items():
                assert after.tiles.get(tile, data) == data
            # Files written before the crash were rewritten byte-identically (or left alone).
            now = tile_files(datadir)
            for path, data in files_after_crash.items():
                if path != "checkpoint":
                    assert now[path] == data, path
            if step == "before-record" and database is None:
                # The convenience copy is written only after the record: the crash left
                # the last published note there, and the restart rewrote it (the file holds
                # only the log's signature; the served note also carries cosignatures).
                assert files_after_crash["checkpoint"] == log_signed(before.note)
                assert now["checkpoint"] == log_signed(after.note)
            assert "re-publishing them" in node.stderr_path.read_text()
        finally:
            node.stop()
