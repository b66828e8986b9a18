"""Tables of the matcher: per-log match thresholds and local suppressions.

- `match_thresholds(origin, pdq_threshold)`: the PDQ match distance for one followed
  log (also the frame distance of its vPDQ videos). A log without a row uses the
  default, 31 (protocol.signals.DEFAULT_PDQ_THRESHOLD).
- `match_suppressions(origin, idx, leaf_hash, ...)`: entries this node's operator
  declared a known false match. They never match again on this node: the matcher
  skips them when it builds its index and when the follower adds them, across
  restarts and even if the log is unfollowed and followed again (the rows here are
  kept; `fingerprints.suppressed` goes with the log's rows). `leaf_hash` pins the
  suppression to the exact entry; `feedback` records the `disputed-false-match`
  feedback entry: 'none' (not wanted), 'pending' (wanted, not yet published) or
  'published' (then `feedback_index` is its index in this node's log).

This module is the only code that writes these tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlite_utils

AREA = "matching"

FEEDBACK_STATES = ("none", "pending", "published")


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE match_thresholds (
        origin TEXT PRIMARY KEY,
        pdq_threshold INTEGER NOT NULL CHECK (pdq_threshold BETWEEN 0 AND 256)
    ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE match_suppressions (
        origin TEXT NOT NULL,
        idx INTEGER NOT NULL,
        leaf_hash BLOB NOT NULL,
        suppressed_at REAL NOT NULL,
        feedback TEXT NOT NULL DEFAULT 'none' CHECK (feedback IN ('none', 'pending', 'published')),
        feedback_index INTEGER,
        PRIMARY KEY (origin, idx)
    ) WITHOUT ROWID""")


MIGRATIONS = [_v1]


# -- thresholds ---------------------------------------------------------------------------

def thresholds(db: sqlite_utils.Database) -> dict[str, int]:
    """Every per-log PDQ threshold that differs from the default, by origin."""
    return {origin: t for origin, t in db.execute("SELECT origin, pdq_threshold FROM match_thresholds")}


def set_threshold(db: sqlite_utils.Database, origin: str, threshold: int | None) -> None:
    """Set the PDQ threshold of one log; None returns it to the default."""
    with db.atomic():
        if threshold is None:
            db.execute("DELETE FROM match_thresholds WHERE origin = ?", (origin,))
        else:
            db.execute("INSERT INTO match_thresholds (origin, pdq_threshold) VALUES (?, ?) "
                       "ON CONFLICT(origin) DO UPDATE SET pdq_threshold = excluded.pdq_threshold",
                       (origin, threshold))


# -- suppressions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Suppression:
    origin: str
    index: int
    leaf_hash: bytes
    suppressed_at: float
    feedback: str            # 'none' | 'pending' | 'published'
    feedback_index: int | None


_COLUMNS = "origin, idx, leaf_hash, suppressed_at, feedback, feedback_index"


def add_suppression(db: sqlite_utils.Database, origin: str, index: int, leaf_hash: bytes,
                    want_feedback: bool, now: float | None = None) -> Suppression:
    """Record a suppression (idempotent). Asking again with feedback wanted turns a
    'none' into 'pending'; a published feedback is never asked for twice."""
    with db.atomic():
        row = db.execute(f"SELECT {_COLUMNS} FROM match_suppressions WHERE origin = ? AND idx = ?",
                         (origin, index)).fetchone()
        if row is None:
            db.execute("INSERT INTO match_suppressions (origin, idx, leaf_hash, suppressed_at, feedback) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (origin, index, leaf_hash, time.time() if now is None else now,
                        "pending" if want_feedback else "none"))
        elif want_feedback and row[4] == "none":
            db.execute("UPDATE match_suppressions SET feedback = 'pending' WHERE origin = ? AND idx = ?",
                       (origin, index))
        return get_suppression(db, origin, index)  # type: ignore[return-value]


def get_suppression(db: sqlite_utils.Database, origin: str, index: int) -> Suppression | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM match_suppressions WHERE origin = ? AND idx = ?",
                     (origin, index)).fetchone()
    return Suppression(*row) if row else None


def list_suppressions(db: sqlite_utils.Database) -> list[Suppression]:
    return [Suppression(*r) for r in db.execute(
        f"SELECT {_COLUMNS} FROM match_suppressions ORDER BY origin, idx")]


def pending_feedback(db: sqlite_utils.Database) -> list[Suppression]:
    """Suppressions whose `disputed-false-match` feedback is still to be published."""
    return [Suppression(*r) for r in db.execute(
        f"SELECT {_COLUMNS} FROM match_suppressions WHERE feedback = 'pending' ORDER BY suppressed_at, origin, idx")]


def mark_feedback_published(db: sqlite_utils.Database, origin: str, index: int, feedback_index: int) -> None:
    with db.atomic():
        db.execute("UPDATE match_suppressions SET feedback = 'published', feedback_index = ? "
                   "WHERE origin = ? AND idx = ?", (feedback_index, origin, index))


def remove_suppression(db: sqlite_utils.Database, origin: str, index: int) -> bool:
    """Forget a suppression (the entry may match again after the matcher reloads it)."""
    with db.atomic():
        return db.execute("DELETE FROM match_suppressions WHERE origin = ? AND idx = ?",
                          (origin, index)).rowcount > 0
