"""How much feedback a followed log sent that could not refer to a real entry, beyond
what was kept (node/follow/apply.py keeps at most MAX_UNMATCHED_FEEDBACK such rows per
log in `follow_feedback` and only counts the rest here).

- `feedback_dropped(origin, dropped)`: per followed log, feedback entries not stored
  because they name an entry this node does not hold, or quote a leaf hash that is not
  that entry's, once the log already had its share of such rows stored. A count only.

This module is the only code that touches this table; `follow remove` clears a log's row
(node/store/follow.py).

Contract of PeerFeedbackRepository (`db.peer_feedback`): `add_dropped` runs inside the
follower's round transaction; counts only grow until the log is forgotten.
"""

from __future__ import annotations

import sqlite_utils

AREA = "peer_feedback"


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE feedback_dropped (origin TEXT PRIMARY KEY, dropped INTEGER NOT NULL DEFAULT 0)")


MIGRATIONS = [_v1]


class PeerFeedbackRepository:
    """Feedback counted but not kept, per followed log (contract above)."""

    def __init__(self, db):
        self.db = db

    def unmatched_stored(self, origin: str) -> int:
        """Feedback rows of `origin` kept although they refer to no entry we hold as quoted."""
        return self.db.execute("SELECT COUNT(*) FROM follow_feedback WHERE from_origin = ? "
                               "AND (entry_matches IS NULL OR entry_matches = 0)", (origin,)).fetchone()[0]

    def add_dropped(self, origin: str, count: int) -> None:
        """Inside the follower's transaction."""
        self.db.execute("INSERT INTO feedback_dropped (origin, dropped) VALUES (?, ?) "
                        "ON CONFLICT(origin) DO UPDATE SET dropped = feedback_dropped.dropped + excluded.dropped", (origin, count))

    def dropped(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT origin, dropped FROM feedback_dropped").fetchall())

    def forget(self, origin: str) -> None:
        self.db.execute("DELETE FROM feedback_dropped WHERE origin = ?", (origin,))
