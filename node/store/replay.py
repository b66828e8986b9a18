"""The replay cache's journal in the database (a PostgreSQL node): node/replaycache.py's
DIR/replay.journal, as rows, so that it lives where the rest of the node does.

- `replay_journal(id = 1, key, server_started)`: the digest key of the cache (one per
  database) and the start time of the PostgreSQL server when the journal was last
  opened, which plays the file's boot ID.
- `replay_nonces(digest, forget_at)`: every accepted nonce (its 8-byte keyed digest,
  stored as a signed BIGINT) until `forget_at`.

Why the server's start time: a nonce is inserted with synchronous_commit = off (no
WAL flush per signed read, like the file's unsynced write). A commit PostgreSQL
acknowledged that way survives any crash of the node's process, and is lost only if
the database server itself crashes before its WAL writer flushed it (a fraction of a
second). A crashed server restarts, with a new `pg_postmaster_start_time()`: then,
as after a reboot with the file journal, nonces may be missing and the cache refuses
signatures created before the node's start plus the clock skew.

Several `serve` processes of one node share these rows, and so the replay cache: a
process inserts each nonce its own cache has not seen (`INSERT ... ON CONFLICT DO
NOTHING`), and a nonce another process inserted first (no row inserted) is refused
as a replay, with the very answer of a replay to the same process. Every process uses
the journal's one key, so equal nonces give equal digests.

Contract (node/replaycache.py's journal): `append` records a nonce before it counts
as accepted and says whether it was new to the database; `read` gives the key, the
"boot" and every stored record; `create` keeps the key of a journal opened since the
server started; `rewrite(live)` drops the records that are no longer live.
"""

from __future__ import annotations

import time
import types

AREA = "replay"
BACKENDS = ("postgresql",)   # a SQLite node keeps DIR/replay.journal
_SIGN = 1 << 63


def _v1(db) -> None:
    db.execute("CREATE TABLE replay_journal (id INTEGER PRIMARY KEY CHECK (id = 1), key BLOB NOT NULL, "
               "server_started TEXT NOT NULL)")
    db.execute("CREATE TABLE replay_nonces (digest INTEGER PRIMARY KEY, forget_at INTEGER NOT NULL)")
    db.execute("CREATE INDEX replay_nonces_forget_at ON replay_nonces(forget_at)")


MIGRATIONS = [_v1]


class DatabaseJournals:
    """Where ReplayCache.open_journal keeps its journal when the node's database is
    PostgreSQL (the file journal's counterpart, node/replaycache.py FileJournals)."""

    def __init__(self, target: str):
        self.target = target

    def boot_id(self) -> str:
        from node.store import connect

        db = connect(self.target)
        try:
            return str(db.execute("SELECT pg_postmaster_start_time()").fetchone()[0])
        finally:
            db.close()

    def read(self):
        """The journal's server start time, key and [(forget_at, digest)], or None when
        none was ever opened."""
        from node.store import connect

        db = connect(self.target)
        try:
            row = db.execute("SELECT key, server_started FROM replay_journal WHERE id = 1").fetchone()
            if row is None:
                return None
            entries = [(forget_at, digest + _SIGN) for digest, forget_at in
                       db.execute("SELECT digest, forget_at FROM replay_nonces")]
            return types.SimpleNamespace(boot_id=str(row[1]), key=bytes(row[0]), entries=entries)
        finally:
            db.close()

    def create(self, key: bytes, boot: str | None, entries: list[tuple[int, int]]) -> DatabaseJournal:
        """The journal, holding `entries` only, with this key and server start time."""
        from node.store import connect

        db = connect(self.target)
        with db.atomic():
            row = db.execute("SELECT key, server_started FROM replay_journal WHERE id = 1").fetchone()
            if row is not None and bytes(row[0]) != key and str(row[1]) == (boot or ""):
                # Another process of the node opened it since this server started (two
                # processes starting together both found none): its key and nonces stand.
                key, entries = bytes(row[0]), []
            elif row is None or bytes(row[0]) != key:
                # A new key (a new journal, or after a server restart): the old digests mean nothing.
                # The same key: another process sharing the database may be using them; keep them.
                db.execute("DELETE FROM replay_nonces")
            db.execute("INSERT INTO replay_journal (id, key, server_started) VALUES (1, ?, ?) ON CONFLICT (id) "
                       "DO UPDATE SET key = excluded.key, server_started = excluded.server_started", (key, boot or ""))
            db.conn.executemany("INSERT INTO replay_nonces (digest, forget_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                [(digest - _SIGN, forget_at) for forget_at, digest in entries])
        db.execute("SET synchronous_commit = off")  # see the module docstring
        return DatabaseJournal(db, key, len(entries))


class DatabaseJournal:
    def __init__(self, db, key: bytes, records: int):
        self.db = db
        self.key = key
        self.records = records

    def append(self, forget_at: int, digest: int) -> bool:
        """Record a nonce; False when it is recorded already: another process of the node
        accepted it (this one's cache had not), so it is a replay."""
        # One row, no read: atomic alone, so it takes no writer lock (node/store/pg.py),
        # and a signed read never waits for the sequencer's transaction. The primary key
        # decides between processes: of two inserting one digest, exactly one inserts.
        inserted = self.db.raw.execute("INSERT INTO replay_nonces (digest, forget_at) VALUES (%s, %s) "
                                       "ON CONFLICT DO NOTHING", (digest - _SIGN, forget_at)).rowcount
        self.records += 1
        return inserted == 1

    def rewrite(self, entries: list[tuple[int, int]]) -> None:
        """Drop what is no longer live (the live ones are stored already)."""
        self.db.raw.execute("DELETE FROM replay_nonces WHERE forget_at <= %s", (int(time.time()),))
        self.records = len(entries)

    def close(self) -> None:
        self.db.close()
