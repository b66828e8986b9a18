"""What this node has acknowledged (spec/parts/acknowledgements.md).

- `acks_sent(origin)`: per followed log, the latest acknowledgement this node
  appended to its own log: the tree (size, root), its time
  and the entry's index. Written only by node/acks/publisher.py, after the entry was
  published; read at start-up to acknowledge what was applied but never acknowledged
  (a stop between applying and publishing the acknowledgement).

Invariant: a row only moves forward (a larger size), never back.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

AREA = "acks"


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE acks_sent (
        origin TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        time_ms INTEGER NOT NULL,
        idx INTEGER NOT NULL
    ) WITHOUT ROWID""")


MIGRATIONS = [_v1]


@dataclass(frozen=True)
class SentAck:
    origin: str
    size: int
    root_hash: bytes
    time_ms: int
    index: int


def record_sent(db: sqlite_utils.Database, origin: str, size: int, root_hash: bytes, time_ms: int,
                index: int) -> None:
    with db.atomic():
        db.execute("INSERT INTO acks_sent (origin, size, root_hash, time_ms, idx) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root_hash = excluded.root_hash, "
                   "time_ms = excluded.time_ms, idx = excluded.idx WHERE excluded.size > acks_sent.size",
                   (origin, size, root_hash, time_ms, index))


def sent(db: sqlite_utils.Database) -> dict[str, SentAck]:
    return {r[0]: SentAck(*r) for r in db.execute(
        "SELECT origin, size, root_hash, time_ms, idx FROM acks_sent ORDER BY origin")}
