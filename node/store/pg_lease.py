"""PostgreSQL's side of the sequencing lease (node/log/lease.py says why it is safe).

- `sequencer_lease(id = 1, epoch, holder, since)`: one row, made by the first process
  that takes the lease (epoch 1); an empty table is a node that never sequenced here. `epoch` is the fencing
  token: it grows by one each time a process becomes the sequencer, and never goes
  back. `holder` names the process (host and pid: no personal data) for operators.
- The advisory lock LOCK_KEY, held by the sequencer's dedicated session connection
  (LeaseSession): PostgreSQL releases it when that session ends, whether the process
  exited, was killed, or its connection was declared dead (the TCP keepalives set
  below make the server notice a silent peer within about KEEPALIVE_SECONDS).

Contract:
- `LeaseSession.try_lock()` takes the lock without waiting; true at most in one
  session of the cluster at a time.
- `LeaseSession.take_epoch()` (only while the lock is held) increments the epoch in
  its own transaction, under the row's lock (the first one inserts it), and returns it.
- `check_epoch(conn, epoch)` runs INSIDE the caller's transaction: it takes the row
  in SHARE mode (so no take_epoch can commit until that transaction ends) and raises
  Fenced unless the epoch is still `epoch`.
"""

from __future__ import annotations

import os
import socket
import time

from node.store.pg import raw_connection

AREA = "sequencer_lease"
BACKENDS = ("postgresql",)   # a SQLite node's lease is its data directory's flock
#: The application_name of every lease session (so a process can count the others).
APPLICATION_NAME = "ncii-node sequencer lease"
#: pg_advisory_lock's key for "the sequencer of this database" ('ncii', 'seq\0').
LOCK_KEY = 0x6E636969_73657100
#: Seconds of silence after which the server drops the lease session (and its lock).
KEEPALIVE_SECONDS = 4
#: Seconds one statement of the lease session may take before it is given up.
STATEMENT_TIMEOUT = 3



def _v1(db) -> None:
    db.execute("""CREATE TABLE sequencer_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL,
        holder TEXT NOT NULL,
        since REAL NOT NULL
    )""")


MIGRATIONS = [_v1]


class Fenced(RuntimeError):
    """This process is no longer the sequencer: another took the lease since."""


def check_epoch(db, epoch: int) -> None:
    """Raise Fenced unless `epoch` is the current one (inside the caller's transaction)."""
    row = db.execute("SELECT epoch FROM sequencer_lease WHERE id = 1 FOR SHARE").fetchone()
    current = row[0] if row else None
    if current != epoch:
        raise Fenced(f"the sequencer lease moved on (epoch {current}, ours {epoch}); this process no "
                     "longer publishes")


def current_holder(db) -> tuple[int, str]:
    """(epoch, holder) as last taken: for status and the operator."""
    row = db.execute("SELECT epoch, holder FROM sequencer_lease WHERE id = 1").fetchone()
    return (row[0], row[1]) if row else (0, "")


def other_processes(db) -> int:
    """How many other processes of this node are up: their lease sessions (every
    process keeps one from its start to its stop), on this database."""
    return db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND application_name = ? AND pid <> pg_backend_pid()",
                      (APPLICATION_NAME,)).fetchone()[0] - 1  # our own lease session is one of them


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseSession:
    """The dedicated connection that holds the advisory lock: autocommit, used for
    nothing else, so no transaction or slow query of the node ever delays it."""

    def __init__(self, target):
        self.conn = raw_connection(
            target, application_name=APPLICATION_NAME,
            # Our side: notice a dead server. The server's side (SET below): drop us,
            # and so release the lock, when we go silent (host down, partition).
            keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=KEEPALIVE_SECONDS - 1,
            tcp_user_timeout=KEEPALIVE_SECONDS * 1000)
        self.conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}s'")
        self.conn.execute("SET tcp_keepalives_idle = 1")
        self.conn.execute("SET tcp_keepalives_interval = 1")
        self.conn.execute(f"SET tcp_keepalives_count = {KEEPALIVE_SECONDS - 1}")

    def try_lock(self) -> bool:
        return bool(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0])

    def take_epoch(self) -> int:
        with self.conn.transaction():
            return self.conn.execute(
                "INSERT INTO sequencer_lease (id, epoch, holder, since) VALUES (1, 1, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET epoch = sequencer_lease.epoch + 1, holder = excluded.holder, "
                "since = excluded.since RETURNING epoch", (holder_name(), time.time())).fetchone()[0]

    def still_held(self) -> bool:
        """Whether this session still holds the lock (a round trip: raises if the
        connection is gone)."""
        return bool(self.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
            "AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s",
            ((LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF)).fetchone()[0])

    def close(self) -> None:
        self.conn.close()
