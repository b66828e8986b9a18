"""What a match replica reads to follow the follower (a PostgreSQL node with several
`serve` processes: node/matcher/replica.py).

The follower of the sequencing process applies each round of a followed log in one
transaction that ends by storing the log's new verified size (node/store/follow.py).
So the verified size is a sequence number: everything a replica must apply for
`origin` between sizes a and b is

  additions    fingerprints(origin, idx) with a <= idx < b, active (neither withdrawn
               nor suppressed when read),
  withdrawals  fingerprints(origin, idx) with a <= withdrawn_by < b (a withdrawal is
               an entry of the same log: its index is where it happened),

both bounded by the size read first, so a round committed meanwhile is left for the
next look (its withdrawals have indices >= that size). Reads only; the index below
(this area's migration) keeps the withdrawal look-up off a scan of the log's rows.
"""

from __future__ import annotations

from node.store.follow import _FP_COLUMNS, _fp_row

AREA = "replica"
BACKENDS = ("postgresql",)


def _v1(db) -> None:
    db.execute("CREATE INDEX fingerprints_withdrawn_by ON fingerprints(origin, withdrawn_by) "
               "WHERE withdrawn_by IS NOT NULL")


MIGRATIONS = [_v1]


def verified_sizes(db) -> dict[str, int]:
    """Every followed log's verified size."""
    return {row[0]: row[1] for row in db.execute("SELECT origin, size FROM followed_logs").fetchall()}


def withdrawn_between(db, origin: str, start: int, end: int) -> list[int]:
    return [row[0] for row in db.execute(
        "SELECT idx FROM fingerprints WHERE origin = ? AND withdrawn_by >= ? AND withdrawn_by < ? ORDER BY idx",
        (origin, start, end)).fetchall()]


def feedback_between(db, origin: str, start: int, end: int) -> bool:
    """Whether entries start <= idx < end of `origin` hold feedback (what a match answer
    says of the entries it names)."""
    return db.execute("SELECT 1 FROM follow_feedback WHERE from_origin = ? AND from_idx >= ? AND from_idx < ? LIMIT 1",
                      (origin, start, end)).fetchone() is not None


def added_between(db, origin: str, start: int, end: int, *, chunk: int = 65536):
    """The active fingerprints with start <= idx < end, in index order, in chunks."""
    while start < end:
        rows = [_fp_row(r) for r in db.execute(
            f"SELECT {_FP_COLUMNS} FROM fingerprints WHERE origin = ? AND idx >= ? AND idx < ? "
            "AND withdrawn = 0 AND suppressed = 0 ORDER BY idx LIMIT ?", (origin, start, end, chunk)).fetchall()]
        if not rows:
            return
        yield from rows
        start = rows[-1].index + 1
