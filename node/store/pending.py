"""Appends waiting for the sequencer, kept in the database (a PostgreSQL node, where
several `serve` processes share one log: node/log/lease.py).

- `pending_entries(id, data, idx, received_at)`: an entry a process accepted (an
  operator's append, a case's submissions, a verdict) while another process sequences.
  `id` orders them (first come, first sequenced); `idx` is NULL until the sequencer
  stores the entry in `log_entries`, then its index. Rows are deleted by the process
  that acknowledged them, or after FORGET_AFTER seconds by the sequencer (an appender
  that died before reading its indices).

Contract:
- `add` stores entries in ONE transaction, durable when it returns (synchronous_commit
  = on): from then on they will be sequenced even if every process dies, before any
  acknowledgement is given;
- `waiting` (a plain read) lists unsequenced entries in `id` order;
- `assign` runs INSIDE the sequencer's fenced store transaction (node/log/sequencer.py):
  an entry gets its index in the very transaction that stores it in log_entries, so an
  entry is sequenced once or not at all;
- `indices` reads what was assigned; `forget` deletes rows.
"""

from __future__ import annotations

import time

AREA = "pending"
BACKENDS = ("postgresql",)   # a SQLite node has one process: its appends wait in memory
#: Seconds after which an assigned row whose appender never came back is deleted.
FORGET_AFTER = 3600.0


def _v1(db) -> None:
    db.execute("""CREATE TABLE pending_entries (
        id INTEGER PRIMARY KEY,
        data BLOB NOT NULL,
        idx INTEGER,
        received_at REAL NOT NULL
    )""")
    db.execute("CREATE INDEX pending_entries_waiting ON pending_entries(id) WHERE idx IS NULL")


MIGRATIONS = [_v1]


def add(db, entries: list[bytes]) -> list[int]:
    now = time.time()
    with db.atomic():
        return [db.execute("INSERT INTO pending_entries (data, received_at) VALUES (?, ?) RETURNING id",
                           (data, now)).fetchone()[0] for data in entries]


def waiting(db, limit: int) -> list[tuple[int, bytes]]:
    return [(row[0], bytes(row[1])) for row in db.execute(
        "SELECT id, data FROM pending_entries WHERE idx IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()]


def assign(db, ids: list[int], first_index: int) -> None:
    """Inside the caller's transaction; refuses (RuntimeError) a row already assigned."""
    for k, row_id in enumerate(ids):
        done = db.execute("UPDATE pending_entries SET idx = ? WHERE id = ? AND idx IS NULL",
                          (first_index + k, row_id)).rowcount
        if done != 1:
            raise RuntimeError(f"pending entry {row_id} was sequenced already or is gone")


def indices(db, ids: list[int]) -> dict[int, int | None]:
    rows = db.execute("SELECT id, idx FROM pending_entries WHERE id = ANY(?)", (list(ids),)).fetchall()
    return {row[0]: row[1] for row in rows}


def forget(db, ids: list[int]) -> None:
    db.execute("DELETE FROM pending_entries WHERE id = ANY(?)", (list(ids),))


def forget_abandoned(db) -> int:
    return db.execute("DELETE FROM pending_entries WHERE idx IS NOT NULL AND received_at < ?",
                      (time.time() - FORGET_AFTER,)).rowcount
