"""Tiles and entry bundles kept in the database (a PostgreSQL node), as Tessera's MySQL
storage keeps them: any process sharing the database serves any tile.

- `tiles(path, data)`: every tile and entry bundle the sequencer published, keyed by
  its C2SP path (protocol.tiles: TileId.path(), BundleId.path()). A row is only ever
  inserted, never updated or deleted.

Contract: node/store/tiles.py's TileStore contract, kept here:
- a path once stored never changes: storing the same bytes again is a no-op, other
  bytes TileConflict (nothing changed);
- `stage(files)` compares what exists and keeps the new ones in memory (nobody can read
  them); `commit(staged)` inserts them in ONE transaction, durable when it returns
  (synchronous_commit = on), so every tile a reader can get was derived from durable
  entries and a checkpoint recorded after `commit` finds all its tiles;
- `read(path)` returns the whole tile or None (a row is all or nothing).

Full tiles (paths without `.p/`) never change, so they are cached in memory (up to
CACHE_BYTES, least recently used out first); a partial tile is always read afresh (a
wider one may replace it at another path, but the partial one stays). Each thread
uses its own connection (the sequencer's worker, the event loop's reads).

Serving (`read_published`, the HTTP tile route): a tile is one database round trip
where a SQLite node reads a file from the page cache, so a follower catching up (one
request per tile and per bundle, 8 in flight) would wait on ~8,000 round trips per
million entries, each blocking the event loop. Instead:
- the reads run in READERS threads of their own (their own connections), never on
  the event loop;
- a reader that reads in order -- it asks for index N of a level (or of the bundles)
  while N-1 is cached or being read -- gets the next READ_AHEAD full ones of that
  level, within the published tree, in the same query, into the cache (rows larger
  than READ_AHEAD_ROW_BYTES are left to their own request, so a query returns at
  most READ_AHEAD x READ_AHEAD_ROW_BYTES);
- when such a reader is half-way through what was read ahead of it (N + READ_AHEAD/2
  not cached yet), the next window is read while it goes on: it finds its tiles
  cached instead of waiting for a query every READ_AHEAD requests;
- a request for a path some query is already reading waits for that query.
A query that fails (the server went away mid-answer) raises TileReadError to every
request that waited for it and caches nothing: psycopg returns a result whole or not
at all, and only a whole one is kept.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading

from node.store.tiles import TileConflict, TileReadError, TileWriteError
from protocol.tiles import TILE_WIDTH, BundleId, TileId, tile_for_size

AREA = "tiles"
BACKENDS = ("postgresql",)   # a SQLite node keeps them as files (node/store/tiles.py)
CACHE_BYTES = 64 << 20
#: Threads (and connections) reading for the HTTP route, per process.
READERS = 2
#: Full tiles or bundles read ahead of an in-order reader, and the largest row read ahead.
READ_AHEAD = 32
READ_AHEAD_ROW_BYTES = 256 << 10


def _v1(db) -> None:
    db.execute("CREATE TABLE tiles (path TEXT PRIMARY KEY, data BLOB NOT NULL)")


MIGRATIONS = [_v1]


class Staged:
    """Tiles compared and not yet stored: (path, bytes)."""

    def __init__(self):
        self.pending: list[tuple[str, bytes]] = []


class DatabaseTileStore:
    def __init__(self, target: str):
        self.target = target
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._cached_bytes = 0
        self.cache_bytes = CACHE_BYTES
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        #: path -> the query reading it (event loop only); emptied as each query ends.
        self._reading: dict[str, asyncio.Future] = {}

    def _db(self):
        db = getattr(self._local, "db", None)
        if db is None or db.broken:
            from node.store import connect

            if db is not None:  # the server went away: this one is useless
                with self._lock, contextlib.suppress(ValueError):
                    self._connections.remove(db)
                with contextlib.suppress(Exception):
                    db.close()
            db = self._local.db = connect(self.target)
            with self._lock:
                self._connections.append(db)
        return db

    def prepare(self) -> None:
        """Nothing is left half-written by a crash (a commit is one transaction)."""

    def read(self, relative: str) -> bytes | None:
        data = self._cached(relative)
        if data is not None:
            return data
        row = self._db().execute("SELECT data FROM tiles WHERE path = ?", (relative,)).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        if ".p/" not in relative:
            self._remember(relative, data)
        return data

    def _cached(self, relative: str) -> bytes | None:
        with self._lock:
            data = self._cache.get(relative)
            if data is not None:
                self._cache.move_to_end(relative)
            return data

    def _remember(self, relative: str, data: bytes) -> None:
        with self._lock:
            if relative in self._cache:
                return
            self._cache[relative] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= len(old)

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    # ------------------------------------------------------------------ serving

    async def read_published(self, ident: TileId | BundleId, size: int) -> bytes | None:
        """A tile or bundle of the published tree of `size` leaves (the route checked that
        the tree has it), read off the event loop, with read-ahead (module docstring).
        Raises TileReadError."""
        path = ident.path()
        data = self._cached(path)
        if data is not None:
            self._keep_ahead(ident, size)
            return data
        reading = self._reading.get(path)
        if reading is not None:
            found = await asyncio.shield(reading)
            if path in found:
                return found[path]
            # Read ahead but left out (a large row): read it alone.
        level, same = _level(ident)
        paths = [path]
        if ident.index > 0 and self._seen(same(ident.index - 1).path()):  # an in-order reader
            paths += self._window(level, same, ident.index + 1, size)
        return (await asyncio.shield(self._start_reading(paths, path))).get(path)

    def _keep_ahead(self, ident: TileId | BundleId, size: int) -> None:
        """(a cache hit) When the reader is half-way through what was read ahead of it,
        start reading the next window, so that it finds it cached rather than waits."""
        level, same = _level(ident)
        half = ident.index + READ_AHEAD // 2
        if not _full(level, half, size) or self._seen(same(half).path()):
            return
        start = ident.index + 1
        while self._seen(same(start).path()):
            start += 1
        paths = self._window(level, same, start, size)
        if paths:
            self._start_reading(paths, paths[0])  # nobody waits for it: its failure is only not kept

    def _window(self, level: int, same, start: int, size: int) -> list[str]:
        """The paths of up to READ_AHEAD full ones of a level from index `start`, within
        the tree of `size`, up to the first cached or being read."""
        paths = []
        for index in range(start, start + READ_AHEAD):
            path = same(index).path()
            if not _full(level, index, size) or self._seen(path):
                break
            paths.append(path)
        return paths

    def _seen(self, path: str) -> bool:
        with self._lock:
            return path in self._cache or path in self._reading

    def _start_reading(self, paths: list[str], wanted: str) -> asyncio.Future:
        """One query for `paths` (`wanted` whatever its size) in a reader thread; every
        path is marked as being read until it ends."""
        if self._readers is None:
            self._readers = concurrent.futures.ThreadPoolExecutor(READERS, thread_name_prefix="tile-reads")
        future = asyncio.get_running_loop().run_in_executor(self._readers, self._read_rows, paths, wanted)
        for path in paths:
            self._reading[path] = future

        def done(_):
            for path in paths:
                if self._reading.get(path) is future:
                    del self._reading[path]
            if not future.cancelled():
                future.exception()  # retrieved: the waiters have it (no "never retrieved" warning)

        future.add_done_callback(done)
        return future

    def _read_rows(self, paths: list[str], wanted: str) -> dict[str, bytes]:
        """(reader thread) The stored rows of `paths`, full ones cached; the rows read
        ahead only up to READ_AHEAD_ROW_BYTES each."""
        try:
            rows = self._db().execute(
                "SELECT path, data FROM tiles WHERE path = ANY(?) AND (path = ? OR octet_length(data) <= ?)",
                (paths, wanted, READ_AHEAD_ROW_BYTES)).fetchall()
        except Exception as exc:  # noqa: BLE001 -- the server went away, mid-answer or before
            raise TileReadError(f"cannot read tiles from the database: {exc}") from None
        found = {path: bytes(data) for path, data in rows}
        for path, data in found.items():
            if ".p/" not in path:
                self._remember(path, data)
        return found

    def get(self, tile, default=None):
        data = self.read(tile.path())
        return default if data is None else data

    def write_checkpoint(self, note: bytes) -> None:
        """The database's record is the checkpoint (no static copy to keep beside the tiles)."""

    def write_all(self, files: list[tuple[str, bytes]]) -> int:
        staged = self.stage(files)
        self.commit(staged)
        return len(staged.pending)

    def _existing(self, paths: list[str]) -> dict[str, bytes]:
        db = self._db()
        found: dict[str, bytes] = {}
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            found.update((path, bytes(data)) for path, data in db.execute(
                f"SELECT path, data FROM tiles WHERE path IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def stage(self, files: list[tuple[str, bytes]]) -> Staged:
        staged = Staged()
        try:
            existing = self._existing([relative for relative, _ in files])
        except Exception as exc:  # noqa: BLE001 -- the database is unreachable: the sequencer's error
            raise TileWriteError(f"cannot read tiles from the database: {exc}") from None
        for relative, data in files:
            if relative in existing:
                if existing[relative] != data:
                    raise TileConflict(f"tile {relative} is stored with different content than the log derives "
                                       "for it now; the tiles do not belong to these entries. Stopping without "
                                       "changing them.")
                continue
            staged.pending.append((relative, data))
        return staged

    def commit(self, staged: Staged) -> None:
        if not staged.pending:
            return
        db = self._db()
        try:
            with db.atomic():
                inserted = db.conn.executemany("INSERT INTO tiles (path, data) VALUES (?, ?) "
                                               "ON CONFLICT (path) DO NOTHING", staged.pending).rowcount
        except Exception as exc:  # noqa: BLE001
            raise TileWriteError(f"cannot write tiles to the database: {exc}") from None
        if inserted == len(staged.pending):
            return
        # Another writer stored some of these paths meanwhile: they must hold the same bytes.
        stored = self._existing([relative for relative, _ in staged.pending])
        for relative, data in staged.pending:
            if stored.get(relative) != data:
                raise TileConflict(f"tile {relative} was stored with different content meanwhile")

    def items(self, chunk: int = 1000):
        """Every stored (path, bytes), in path order (a copy of the log: `ncii-node migrate`)."""
        db, last = self._db(), ""
        while True:
            rows = db.execute("SELECT path, data FROM tiles WHERE path > ? ORDER BY path LIMIT ?",
                              (last, chunk)).fetchall()
            if not rows:
                return
            for path, data in rows:
                yield path, bytes(data)
            last = rows[-1][0]

    def discard(self, staged: Staged) -> None:
        staged.pending.clear()

    def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()


def _level(ident: TileId | BundleId):
    """(level, index -> the full one of that index): bundles have the level-0 tile's shape."""
    if isinstance(ident, BundleId):
        return 0, BundleId
    return ident.level, lambda index: TileId(ident.level, index)


def _full(level: int, index: int, size: int) -> bool:
    tile = tile_for_size(level, index, size)
    return tile is not None and tile.width == TILE_WIDTH
