"""The tiles of a PostgreSQL node as the HTTP route reads them (node/store/dbtiles.py,
`read_published`): off the event loop, ahead of an in-order reader but never beyond
the published tree, the cache within its bound, and a read the server cuts half-way
answered with an error -- never with part of a tile, and nothing of it kept."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from node.store import dbtiles
from node.store.dbtiles import DatabaseTileStore
from node.store.tiles import TileReadError
from protocol.tiles import TILE_WIDTH, BundleId, TileId

from pg_support import CuttingProxy
from publish_support import append, make_datadir, pdq_line, read_log
from serve_support import NodeProcess

pytestmark = pytest.mark.timeout(120)
TILE_BYTES = 32 * TILE_WIDTH


def tile_bytes(level: int, index: int) -> bytes:
    return hashlib.sha256(b"tile %d %d" % (level, index)).digest() * TILE_WIDTH


def bundle_bytes(index: int, size: int = 12_000) -> bytes:
    return (hashlib.sha256(b"bundle %d" % index).digest() * (size // 32 + 1))[:size]


async def settled(store: DatabaseTileStore) -> None:
    """Until no query of the store runs (one read ahead runs while its reader goes on)."""
    for _ in range(500):
        if not store._reading:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a read never ended")


class Counted:
    """The store's queries for the route, counted (each still runs for real)."""

    def __init__(self, store: DatabaseTileStore):
        self.queries: list[list[str]] = []
        real = store._read_rows

        def read_rows(paths, wanted):
            self.queries.append(list(paths))
            return real(paths, wanted)

        store._read_rows = read_rows


async def test_the_cache_keeps_to_its_bound(pg_url):
    store = DatabaseTileStore(pg_url)
    store.cache_bytes = 10 * TILE_BYTES
    files = [(TileId(0, i).path(), tile_bytes(0, i)) for i in range(40)]
    store.write_all(files + [(TileId(1, 0, 40).path(), b"p" * 32 * 40)])
    try:
        size = 40 * TILE_WIDTH
        for i in range(40):
            assert await store.read_published(TileId(0, i), size) == tile_bytes(0, i)
            assert store.cached_bytes <= store.cache_bytes
        await settled(store)
        assert list(store._cache) == [TileId(0, i).path() for i in range(30, 40)]  # the least recent went first
        for path, data in files[:5]:
            assert store.read(path) == data  # read again from the database
        assert store.cached_bytes == 10 * TILE_BYTES
        assert await store.read_published(TileId(1, 0, 40), size) == b"p" * 32 * 40
        assert TileId(1, 0, 40).path() not in store._cache  # a partial tile is never kept
    finally:
        store.close()


async def test_an_in_order_reader_gets_what_follows_in_one_query(pg_url):
    store = DatabaseTileStore(pg_url)
    large = 3 * dbtiles.READ_AHEAD_ROW_BYTES // 2
    store.write_all([(TileId(0, i).path(), tile_bytes(0, i)) for i in range(100)]
                    + [(BundleId(i).path(), bundle_bytes(i, large if i == 5 else 12_000)) for i in range(100)])
    counted = Counted(store)
    size = 60 * TILE_WIDTH + 7   # tiles and bundles 0..59 are full in this tree; 60..99 are not in it
    try:
        assert await store.read_published(TileId(0, 0), size) == tile_bytes(0, 0)
        assert counted.queries == [[TileId(0, 0).path()]]  # no sign yet of reading in order
        # Eight requests at once, as a follower sends them: one query answers all.
        got = await asyncio.gather(*(store.read_published(TileId(0, i), size) for i in range(1, 9)))
        assert got == [tile_bytes(0, i) for i in range(1, 9)]
        assert counted.queries[1] == [TileId(0, i).path() for i in range(1, 2 + dbtiles.READ_AHEAD)]
        assert len(counted.queries) == 2
        for i in range(9, 18):
            assert await store.read_published(TileId(0, i), size) == tile_bytes(0, i)
        assert len(counted.queries) == 2  # all read ahead
        # Half-way through (tile 18 of 1..33), the next window is read meanwhile: 34..59,
        # where the tree's full tiles end.
        assert await store.read_published(TileId(0, 18), size) == tile_bytes(0, 18)
        await settled(store)
        assert counted.queries[2] == [TileId(0, i).path() for i in range(34, 60)]
        for i in range(19, 60):
            assert await store.read_published(TileId(0, i), size) == tile_bytes(0, i)
        await settled(store)
        assert len(counted.queries) == 3
        assert not any(TileId(0, i).path() in store._cache for i in range(60, 100))

        # Bundles: the large row is left out of the read-ahead, then read alone when asked.
        for i in range(18):
            assert await store.read_published(BundleId(i), size) == bundle_bytes(i, large if i == 5 else 12_000)
        await settled(store)
        bundle_queries = counted.queries[3:]
        assert bundle_queries[1] == [BundleId(i).path() for i in range(1, 34)]  # asked for; 5 not returned
        assert bundle_queries[2] == [BundleId(5).path()] and len(bundle_queries) == 3
    finally:
        store.close()


async def test_a_read_cut_half_way_raises_and_keeps_nothing(pg_cluster, pg_url):
    DatabaseTileStore(pg_url).write_all([(TileId(0, i).path(), tile_bytes(0, i)) for i in range(50)])
    proxy = CuttingProxy(pg_cluster.port)
    store = DatabaseTileStore(proxy.url(pg_url))
    size = 50 * TILE_WIDTH
    try:
        assert await store.read_published(TileId(0, 0), size) == tile_bytes(0, 0)
        proxy.arm(after=64 << 10)  # the next answer (tiles 1..33: 280 KB) stops a quarter of the way
        with pytest.raises(TileReadError, match="cannot read tiles from the database"):
            await store.read_published(TileId(0, 1), size)
        assert proxy.cuts == 1
        assert list(store._cache) == [TileId(0, 0).path()]  # nothing of the cut answer kept
        for i in range(1, 50):  # a new connection, the same bytes
            assert await store.read_published(TileId(0, i), size) == tile_bytes(0, i)
    finally:
        store.close()
        proxy.close()


async def test_the_route_answers_503_for_a_cut_read_then_serves_the_true_tiles(tmp_path, pg_cluster, pg_url):
    proxy = CuttingProxy(pg_cluster.port)
    datadir = make_datadir(tmp_path, name="helpline", role="helpline", database=proxy.url(pg_url))
    node = NodeProcess(datadir)
    await node.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for start in range(0, 9000, 1500):  # 35 full level-0 tiles
                status, _ = await append(session, node.admin_url, datadir.admin_token(),
                                         [pdq_line(i) for i in range(start, start + 1500)])
                assert status == 200
            url = node.public_url
            async with session.get(f"{url}/tile/0/000") as r:
                assert r.status == 200
            proxy.arm(after=64 << 10)
            async with session.get(f"{url}/tile/0/001") as r:
                assert r.status == 503 and r.headers["Retry-After"] == "1"
                assert "cannot be read right now" in await r.text()
            assert proxy.cuts == 1
            view = await read_log(session, url, datadir.load_log_signer().verifier_key())  # every tile verified
            assert view.checkpoint.size == 9000
    finally:
        node.stop()
        proxy.close()
    log = node.stderr_path.read_text()
    assert "tile reads failing (1 in 0 s): cannot read tiles from the database" in log
    assert "Traceback" not in log
