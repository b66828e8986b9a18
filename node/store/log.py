"""Tables of the node's own log: its entries, its published checkpoints, its readers.

- `log_entries(idx, data, leaf_hash)`: every sequenced entry, by index. Rows are only
  ever inserted, in index order, one transaction per batch; never updated or deleted.
  `idx` runs 0, 1, 2, ... without gaps (the sequencer checks this on start-up).
- `log_checkpoints(size, root_hash, note, published_at)`: every checkpoint the node
  has published. A row exists only after the tiles it needs were durably on disk.
  The row with the greatest size is the published state of the log.
- `readers(vkey, name, key_id, added_at)`: request keys (vkey strings of type 0xff
  "ncii-node/request-key") of the nodes allowed to fetch tiles and entry bundles when
  the log is not public.

This module is the only code that touches these tables.

Contract of LogRepository (`db.log`), which the sequencer's crash argument rests on
(node/log/sequencer.py):
- `insert_entries` stores a whole batch at consecutive indices in ONE transaction,
  with the batch's daily summary (node/store/stats.py); when it returns the batch is
  durable, and on error nothing of it is stored. Entries are never updated or deleted.
- `record_checkpoint` is atomic and idempotent for the same (size, root); it refuses a
  second, different root for a size. The greatest recorded size is the published log.
  With `durable=False` it is atomic but may be undone by a power loss (never by a
  crash of the process), together with every later transaction.
- Reads (`iter_entries` in index order, `latest_checkpoint`, ...) see committed rows
  only; `entry_count` is the greatest stored index + 1 and `stored_entries` the number
  of rows, which the sequencer compares at start-up to find a gap.
ReaderRepository (`db.readers`): each call one transaction; `is_reader` is read on
every signed request, so a change takes effect at the next one; `registered` twice a
second while push requests wait, so a removed reader's open waits end too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import sqlite_utils

from protocol.errors import KeyFormatError
from protocol.note import REQUEST_KEY_TYPE, SIGNATURE_TYPE_ED25519, decode_vkey, encode_vkey, key_id_for

AREA = "log"
#: Keys per `ReaderRepository.registered` statement (SQLite allows 32,766 parameters).
READERS_PER_QUERY = 500


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE log_entries (
        idx INTEGER PRIMARY KEY,
        data BLOB NOT NULL,
        leaf_hash BLOB NOT NULL
    )""")
    db.execute("CREATE INDEX log_entries_leaf_hash ON log_entries(leaf_hash)")
    db.execute("""CREATE TABLE log_checkpoints (
        size INTEGER PRIMARY KEY,
        root_hash BLOB NOT NULL,
        note BLOB NOT NULL,
        published_at REAL NOT NULL
    )""")
    db.execute("""CREATE TABLE readers (
        vkey TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        key_id TEXT NOT NULL,
        added_at REAL NOT NULL
    )""")
    db.execute("CREATE INDEX readers_key_id ON readers(key_id)")


def _v2(db: sqlite_utils.Database) -> None:
    """Request keys got their own key type (0xff "ncii-node/request-key" instead of a
    log key's 0x01, spec/parts/readaccess.md): rewrite readers registered in the old
    form, same name and public key, so they keep reading after the upgrade."""
    for (vkey,) in db.execute("SELECT vkey FROM readers").fetchall():
        try:
            name, public_key = decode_vkey(vkey, SIGNATURE_TYPE_ED25519)
        except KeyFormatError:
            continue
        db.execute("UPDATE OR IGNORE readers SET vkey = ?, key_id = ? WHERE vkey = ?",
                   (encode_vkey(name, REQUEST_KEY_TYPE, public_key),
                    key_id_for(name, REQUEST_KEY_TYPE, public_key).hex(), vkey))


MIGRATIONS = [_v1, _v2]


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root_hash: bytes
    note: bytes          # the full signed note, exactly as served at /checkpoint
    published_at: float


@dataclass(frozen=True)
class Reader:
    vkey: str
    name: str
    key_id: str      # hex of the 4-byte C2SP key ID, for quick lookup by a signature's keyid
    added_at: float


class LogRepository:
    """The node's own log: entries and published checkpoints (contract above)."""

    def __init__(self, db):
        self.db = db

    # -- entries ---------------------------------------------------------------------

    def entry_count(self) -> int:
        """Number of stored entries (= greatest index + 1)."""
        row = self.db.execute("SELECT MAX(idx) FROM log_entries").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def stored_entries(self) -> int:
        """Number of rows (equal to `entry_count` unless entries are missing)."""
        return self.db.execute("SELECT COUNT(*) FROM log_entries").fetchone()[0]

    def insert_entries(self, first_index: int,
                       entries: list[bytes], leaf_hashes: list[bytes]) -> None:
        """Insert a batch at indices first_index, first_index+1, ... in ONE transaction.

        The caller commits nothing else in between: when this returns, the batch is
        durable (synchronous=FULL) or, on error, none of it is stored."""
        rows = ((first_index + i, data, h) for i, (data, h) in enumerate(zip(entries, leaf_hashes)))
        with self.db.atomic():
            self.db.conn.executemany("INSERT INTO log_entries (idx, data, leaf_hash) VALUES (?, ?, ?)", rows)
            self.db.stats.count_entries(entries)  # the daily summary, in the same transaction

    def iter_entries(self, start: int, end: int,
                     chunk: int = 10_000) -> Iterator[tuple[int, bytes, bytes]]:
        """(index, data, leaf_hash) for start <= index < end, in order."""
        while start < end:
            stop = min(end, start + chunk)
            rows = self.db.execute("SELECT idx, data, leaf_hash FROM log_entries WHERE idx >= ? AND idx < ? "
                                   "ORDER BY idx", (start, stop)).fetchall()
            yield from rows
            start = stop

    def get_entry(self, index: int) -> tuple[bytes, bytes] | None:
        row = self.db.execute("SELECT data, leaf_hash FROM log_entries WHERE idx = ?", (index,)).fetchone()
        return (row[0], row[1]) if row else None

    def find_by_leaf_hash(self, leaf_hash: bytes) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT idx FROM log_entries WHERE leaf_hash = ? ORDER BY idx",
                                              (leaf_hash,))]

    # -- checkpoints -----------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.db.execute("SELECT size, root_hash, note, published_at FROM log_checkpoints "
                              "ORDER BY size DESC LIMIT 1").fetchone()
        return StoredCheckpoint(*row) if row else None

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        row = self.db.execute("SELECT size, root_hash, note, published_at FROM log_checkpoints WHERE size = ?",
                              (size,)).fetchone()
        return StoredCheckpoint(*row) if row else None

    def first_size_from(self, size: int) -> int | None:
        """The smallest published checkpoint size at least `size` (None: none yet)."""
        return self.db.execute("SELECT MIN(size) FROM log_checkpoints WHERE size >= ?", (size,)).fetchone()[0]

    def size_published_by(self, when: float) -> int:
        """The size of the log as published at time `when` (0 before the first checkpoint)."""
        return self.db.execute("SELECT MAX(size) FROM log_checkpoints WHERE published_at <= ?",
                               (when,)).fetchone()[0] or 0

    def published_days(self, sizes: set[int]) -> dict[int, int]:
        """size -> UTC day (days since 1970-01-01) on which the checkpoint of that size was
        published, for those of `sizes` that were."""
        return {size: int(at // 86400) for size, at in self.published_times(sizes).items()}

    def published_times(self, sizes) -> dict[int, float]:
        """size -> when (POSIX seconds) the checkpoint of that size was published, for those
        of `sizes` that were."""
        sizes = sorted(set(sizes))
        out: dict[int, float] = {}
        for start in range(0, len(sizes), 500):  # bounded host parameters per statement
            chunk = sizes[start:start + 500]
            out.update(self.db.execute(f"SELECT size, published_at FROM log_checkpoints WHERE size IN "
                                       f"({','.join('?' * len(chunk))})", chunk).fetchall())
        return out

    def record_checkpoint(self, size: int, root_hash: bytes, note: bytes,
                          published_at: float | None = None, *, durable: bool = True) -> None:
        """Record a published checkpoint. Re-recording the same size with the same root
        (a re-publication after a crash) is a no-op; a different root is refused, since
        it would mean the log forked.

        `durable=False` commits without waiting for the disk (synchronous=NORMAL: still
        atomic and consistent, but a power loss may undo it). The sequencer may: a lost
        record of size n means no later transaction was made durable either (the WAL is
        written in order), so entries 0..n-1 are exactly what is stored, and the start-up
        re-publication signs the very same checkpoint again (publishing.md section 3)."""
        if not durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.db.atomic():
                row = self.db.execute("SELECT root_hash FROM log_checkpoints WHERE size = ?", (size,)).fetchone()
                if row is not None:
                    if row[0] != root_hash:
                        raise RuntimeError(f"refusing to record a second, different checkpoint at size {size}")
                    return
                self.db.execute("INSERT INTO log_checkpoints (size, root_hash, note, published_at) "
                                "VALUES (?, ?, ?, ?)",
                                (size, root_hash, note, time.time() if published_at is None else published_at))
        finally:
            if not durable:
                self.db.execute("PRAGMA synchronous=FULL")


class ReaderRepository:
    """The registered readers of this log (contract above)."""

    def __init__(self, db):
        self.db = db

    def add_reader(self, vkey: str, name: str, key_id: bytes) -> bool:
        """Register a reader; returns False if this key was already registered (its
        name is then updated)."""
        with self.db.atomic():
            existing = self.db.execute("SELECT 1 FROM readers WHERE vkey = ?", (vkey,)).fetchone()
            if existing:
                self.db.execute("UPDATE readers SET name = ? WHERE vkey = ?", (name, vkey))
                return False
            self.db.execute("INSERT INTO readers (vkey, name, key_id, added_at) VALUES (?, ?, ?, ?)",
                            (vkey, name, key_id.hex(), time.time()))
            return True

    def remove_reader(self, vkey_or_name: str) -> int:
        """Remove readers whose vkey, or else whose name, equals the argument; returns
        how many were removed."""
        with self.db.atomic():
            n = self.db.execute("DELETE FROM readers WHERE vkey = ?", (vkey_or_name,)).rowcount
            if n == 0:
                n = self.db.execute("DELETE FROM readers WHERE name = ? AND name != ''", (vkey_or_name,)).rowcount
            return n

    def is_reader(self, vkey: str) -> bool:
        return self.db.execute("SELECT 1 FROM readers WHERE vkey = ?", (vkey,)).fetchone() is not None

    def registered(self, vkeys: Iterable[str]) -> set[str]:
        """Those of `vkeys` that are registered readers (one primary-key lookup each,
        READERS_PER_QUERY per statement): the push channel's look for removed readers."""
        vkeys, found = list(vkeys), set()
        for start in range(0, len(vkeys), READERS_PER_QUERY):
            chunk = tuple(vkeys[start:start + READERS_PER_QUERY])
            marks = ", ".join("?" * len(chunk))
            found.update(vkey for (vkey,) in self.db.execute(f"SELECT vkey FROM readers WHERE vkey IN ({marks})", chunk))
        return found

    def list_readers(self) -> list[Reader]:
        return [Reader(*row) for row in self.db.execute(
            "SELECT vkey, name, key_id, added_at FROM readers ORDER BY added_at, vkey")]
