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
"""

from __future__ import annotations

import collections
import threading

from node.store.tiles import TileConflict, TileWriteError

AREA = "tiles"
BACKENDS = ("postgresql",)   # a SQLite node keeps them as files (node/store/tiles.py)
CACHE_BYTES = 64 << 20


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

    def _db(self):
        db = getattr(self._local, "db", None)
        if db is None or db.broken:
            from node.store import connect

            db = self._local.db = connect(self.target)
            with self._lock:
                self._connections.append(db)
        return db

    def prepare(self) -> None:
        """Nothing is left half-written by a crash (a commit is one transaction)."""

    def read(self, relative: str) -> bytes | None:
        with self._lock:
            data = self._cache.get(relative)
            if data is not None:
                self._cache.move_to_end(relative)
                return data
        row = self._db().execute("SELECT data FROM tiles WHERE path = ?", (relative,)).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        if ".p/" not in relative:
            self._remember(relative, data)
        return data

    def _remember(self, relative: str, data: bytes) -> None:
        with self._lock:
            if relative in self._cache:
                return
            self._cache[relative] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > CACHE_BYTES:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= len(old)

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
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
