"""The sequencer's building blocks against protocol/: the tree edge gives the tiles and
roots protocol.tiles / protocol.merkle compute independently; the tile store never
changes a file; the store's per-area migrations."""

from __future__ import annotations

import hashlib
import types

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.store import connect, migrate
from node.store.tiles import TileConflict, TileStore, TileWriteError
from protocol.edge import TreeEdge
from protocol.merkle import root_of
from protocol.tiles import TileId, build_tile, new_tiles, partial_tiles_for_size

from publish_support import append, make_datadir, pdq_line


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(n)]


ALL = leaves(70_000)


def node_getter(hashes):
    def node_at(level, index):
        return root_of(hashes[index << level:(index + 1) << level])
    return node_at


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=6))
def test_edge_tiles_and_root_match_protocol(batches):
    edge = TreeEdge()
    size = 0
    for n in batches:
        old = size
        completed = edge.append(ALL[size:size + n])
        size += n
        assert edge.size == size
        assert edge.root() == root_of(ALL[:size])
        if n == 0:
            assert completed == []
            continue
        written = {TileId(t.level, t.index): t.data for t in completed}
        written.update({TileId(t.level, t.index, len(t.data) // 32): t.data for t in edge.partial_tiles(since=old)})
        # Exactly the tiles protocol.tiles says appear between the two sizes...
        assert set(written) == set(new_tiles(old, size))
        # ...with exactly the bytes computed from the leaves.
        getter = node_getter(ALL[:size])
        for tile, data in written.items():
            assert data == build_tile(tile.level, tile.index, size, lambda lvl, idx: getter(lvl, idx))


def test_edge_at_the_c2sp_example_size():
    edge = TreeEdge()
    edge.append(ALL[:70_000])
    assert [len(h) for h in edge.levels] == [112, 17, 1]
    assert [len(edge.levels[t.level]) for t in partial_tiles_for_size(70_000)] == [112, 17, 1]
    rebuilt = TreeEdge.from_level_hashes(70_000, edge.levels)
    assert rebuilt.root() == root_of(ALL)
    with pytest.raises(ValueError):
        TreeEdge.from_level_hashes(69_999, edge.levels)


def test_tile_store_writes_once_and_refuses_changes(tmp_path):
    store = TileStore(tmp_path / "tiles", tmp_path / "tmp")
    store.prepare()
    (tmp_path / "tmp" / "leftover.tmp").write_bytes(b"x")
    store.prepare()
    assert list((tmp_path / "tmp").iterdir()) == []  # crash leftovers removed
    assert store.write_all([("tile/0/000.p/1", b"a" * 32), ("tile/entries/000.p/1", b"\x00\x01z")]) == 2
    assert store.write_all([("tile/0/000.p/1", b"a" * 32)]) == 0  # identical: left alone
    with pytest.raises(TileConflict):
        store.write_all([("tile/0/000.p/1", b"b" * 32)])
    assert store.read("tile/0/000.p/1") == b"a" * 32
    (tmp_path / "tiles" / "tile" / "1").write_text("a file where a directory must go")
    with pytest.raises(TileWriteError, match="cannot write tiles"):
        store.write_all([("tile/1/000.p/1", b"c" * 32)])
    assert list((tmp_path / "tmp").iterdir()) == []


def test_migrations_run_once_per_area_and_roll_back_on_failure(tmp_path):
    db = connect(tmp_path / "x.db")
    calls = []

    def v1(db):
        calls.append("v1")
        db.execute("CREATE TABLE a (x)")

    def v2(db):
        calls.append("v2")
        db.execute("CREATE TABLE b (x)")

    def broken(db):
        db.execute("CREATE TABLE c (x)")
        raise RuntimeError("boom")

    area = types.SimpleNamespace(AREA="demo", MIGRATIONS=[v1])
    migrate(db, [area])
    migrate(db, [area])
    assert calls == ["v1"]
    area.MIGRATIONS = [v1, v2]
    migrate(db, [area])
    assert calls == ["v1", "v2"]
    area.MIGRATIONS = [v1, v2, broken]
    with pytest.raises(RuntimeError, match="boom"):
        migrate(db, [area])
    assert db.execute("SELECT version FROM schema_versions WHERE area = 'demo'").fetchone()[0] == 2
    assert "c" not in db.table_names()
    newer = types.SimpleNamespace(AREA="demo", MIGRATIONS=[v1])
    with pytest.raises(RuntimeError, match="newer than this program"):
        migrate(db, [newer])
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_files_beyond_the_published_size_are_never_served(tmp_path, start_node):
    datadir = make_datadir(tmp_path)
    node = await start_node(datadir)
    try:
        async with aiohttp.ClientSession() as session:
            status, _ = await append(session, node.admin_url, datadir.admin_token(),
                                     [pdq_line(i) for i in range(5)])
            assert status == 200
            # A file on disk for a size the log has not published (as a crash could leave).
            (datadir.tiles_dir / "tile" / "0" / "000.p" / "7").write_bytes(b"\x00" * 32 * 7)
            async with session.get(node.public_url + "/tile/0/000.p/7") as r:
                assert r.status == 404
            async with session.get(node.public_url + "/tile/0/000.p/5") as r:
                assert r.status == 200
    finally:
        await node.stop()
