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

This module is the only code that writes these tables. `IndexSnapshot` reads what
the matcher indexes at start-up: the thresholds, the suppressions and every active
fingerprint (node/store/follow.py's table), all from ONE read snapshot.

Contract of MatchingRepository (`db.matching`): each writing call is one transaction
and idempotent (a suppression recorded twice is one; a published feedback is never
asked for twice); `pending_feedback` lists in the order suppressions were made.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

AREA = "matching"

FEEDBACK_STATES = ("none", "pending", "published")
BUILD_CHUNK = 1 << 20  # log indices per aggregate query while building (32 MB of PDQ blobs at most)


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


@dataclass(frozen=True)
class Suppression:
    origin: str
    index: int
    leaf_hash: bytes
    suppressed_at: float
    feedback: str            # 'none' | 'pending' | 'published'
    feedback_index: int | None


_COLUMNS = "origin, idx, leaf_hash, suppressed_at, feedback, feedback_index"


class MatchingRepository:
    """Thresholds and suppressions (contract above)."""

    def __init__(self, db):
        self.db = db

    # -- thresholds ------------------------------------------------------------------------

    def thresholds(self) -> dict[str, int]:
        """Every per-log PDQ threshold that differs from the default, by origin."""
        return {origin: t for origin, t in self.db.execute("SELECT origin, pdq_threshold FROM match_thresholds")}

    def set_threshold(self, origin: str, threshold: int | None) -> None:
        """Set the PDQ threshold of one log; None returns it to the default."""
        with self.db.atomic():
            if threshold is None:
                self.db.execute("DELETE FROM match_thresholds WHERE origin = ?", (origin,))
            else:
                self.db.execute("INSERT INTO match_thresholds (origin, pdq_threshold) VALUES (?, ?) "
                                "ON CONFLICT(origin) DO UPDATE SET pdq_threshold = excluded.pdq_threshold",
                                (origin, threshold))

    # -- suppressions -----------------------------------------------------------------------

    def add_suppression(self, origin: str, index: int, leaf_hash: bytes,
                        want_feedback: bool, now: float | None = None) -> Suppression:
        """Record a suppression (idempotent). Asking again with feedback wanted turns a
        'none' into 'pending'; a published feedback is never asked for twice."""
        with self.db.atomic():
            row = self.db.execute(f"SELECT {_COLUMNS} FROM match_suppressions WHERE origin = ? AND idx = ?",
                                  (origin, index)).fetchone()
            if row is None:
                self.db.execute("INSERT INTO match_suppressions (origin, idx, leaf_hash, suppressed_at, feedback) "
                                "VALUES (?, ?, ?, ?, ?)",
                                (origin, index, leaf_hash, time.time() if now is None else now,
                                 "pending" if want_feedback else "none"))
            elif want_feedback and row[4] == "none":
                self.db.execute("UPDATE match_suppressions SET feedback = 'pending' WHERE origin = ? AND idx = ?",
                                (origin, index))
            return self.get_suppression(origin, index)  # type: ignore[return-value]

    def get_suppression(self, origin: str, index: int) -> Suppression | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM match_suppressions WHERE origin = ? AND idx = ?",
                              (origin, index)).fetchone()
        return Suppression(*row) if row else None

    def pending_feedback(self) -> list[Suppression]:
        """Suppressions whose `disputed-false-match` feedback is still to be published."""
        return [Suppression(*r) for r in self.db.execute(
            f"SELECT {_COLUMNS} FROM match_suppressions WHERE feedback = 'pending' ORDER BY suppressed_at, origin, idx")]

    def mark_feedback_published(self, origin: str, index: int, feedback_index: int) -> None:
        with self.db.atomic():
            self.db.execute("UPDATE match_suppressions SET feedback = 'published', feedback_index = ? "
                            "WHERE origin = ? AND idx = ?", (feedback_index, origin, index))


class IndexSnapshot:
    """One read snapshot of what a match index is built from (the matcher's `load`).

        with IndexSnapshot(db_path) as snapshot:
            snapshot.thresholds()          -> [(origin, PDQ threshold)]
            snapshot.suppressions()        -> [(origin, index, leaf hash)]
            snapshot.origins()             -> the followed logs holding fingerprints, in order
            snapshot.chunks(origin, signal, size)
                -> per range of BUILD_CHUNK indices: (indices, matrix, others): the active
                   fingerprints of `signal` (each `size` bytes) as an int64 array and a
                   uint8 matrix, read in one aggregate query (about a million rows per
                   second), and the other active ones as (index, signal, fingerprint)
            snapshot.leaf_hash(origin, index)  -> the entry's leaf hash, or None

    Active = neither withdrawn nor suppressed. Read-only: opens its own connection
    (`mode=ro`), so it never takes the write lock."""

    def __init__(self, db_path: Path | str, chunk: int = BUILD_CHUNK):
        self.db_path = Path(db_path)
        self.chunk = chunk
        self._conn: sqlite3.Connection | None = None
        self._utf8 = True

    def __enter__(self) -> IndexSnapshot:
        # read only; the path quoted, since "?", "#" or "%" in it would end a URI's path
        uri = "file:" + urllib.parse.quote(str(self.db_path.absolute())) + "?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.text_factory = bytes  # group_concat of blobs comes back as one bytes object
        self._conn.execute("BEGIN")      # one read snapshot for the whole build
        self._utf8 = self._conn.execute("PRAGMA encoding").fetchone()[0] == b"UTF-8"
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._conn.execute("COMMIT")
        finally:
            self._conn.close()

    def thresholds(self) -> list[tuple[str, int]]:
        return [(origin.decode(), t) for origin, t in
                self._conn.execute("SELECT origin, pdq_threshold FROM match_thresholds")]

    def suppressions(self) -> list[tuple[str, int, bytes]]:
        return [(origin.decode(), index, leaf) for origin, index, leaf in
                self._conn.execute("SELECT origin, idx, leaf_hash FROM match_suppressions")]

    def origins(self) -> Iterator[str]:
        # The primary key starts with origin: each log's rows are read by index seeks.
        found = self._conn.execute("SELECT MIN(origin) FROM fingerprints").fetchone()[0]
        while found is not None:
            origin = found.decode("utf-8")
            yield origin
            found = self._conn.execute("SELECT MIN(origin) FROM fingerprints WHERE origin > ?", (origin,)).fetchone()[0]

    def chunks(self, origin: str, signal: str, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, list]]:
        last = self._conn.execute("SELECT MAX(idx) FROM fingerprints WHERE origin = ?", (origin,)).fetchone()[0]
        active = "withdrawn = 0 AND suppressed = 0"
        for start in range(0, -1 if last is None else last + 1, self.chunk):
            stop = start + self.chunk
            if self._utf8:
                blobs, indices, count = self._conn.execute(
                    f"SELECT group_concat(fingerprint, x''), group_concat(idx), count(*) FROM fingerprints "
                    f"WHERE origin = ? AND idx >= ? AND idx < ? AND signal = ? AND length(fingerprint) = ? "
                    f"AND {active}", (origin, start, stop, signal, size)).fetchone()
                if not count:
                    indices_array = np.empty(0, dtype=np.int64)
                    matrix = np.empty((0, size), dtype=np.uint8)
                else:
                    indices_array = np.fromstring(indices, dtype=np.int64, sep=",")  # text mode: C speed
                    matrix = np.frombuffer(blobs, dtype=np.uint8).reshape(-1, size)
                    if len(indices_array) != count or len(matrix) != count:
                        raise RuntimeError("the database returned a malformed aggregate; cannot build the index")
            else:  # a database in UTF-16 would mangle blobs turned into text: read row by row
                rows = self._conn.execute(
                    f"SELECT idx, fingerprint FROM fingerprints WHERE origin = ? AND idx >= ? AND idx < ? "
                    f"AND signal = ? AND length(fingerprint) = ? AND {active}",
                    (origin, start, stop, signal, size)).fetchall()
                indices_array = np.array([r[0] for r in rows], dtype=np.int64)
                matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(-1, size)
            others = [(index, other.decode(), bytes(fingerprint)) for index, other, fingerprint in self._conn.execute(
                f"SELECT idx, signal, fingerprint FROM fingerprints WHERE origin = ? AND idx >= ? AND idx < ? "
                f"AND signal != ? AND {active}", (origin, start, stop, signal))]
            yield indices_array, matrix, others

    def leaf_hash(self, origin: str, index: int) -> bytes | None:
        row = self._conn.execute("SELECT leaf_hash FROM fingerprints WHERE origin = ? AND idx = ?",
                                 (origin, index)).fetchone()
        return row[0] if row else None
