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

- `match_budgets(origin, max_fingerprints, max_per_hour, max_per_day)`: the operator's
  budgets for one followed log (NULL: the node's default, `[match]` in config.toml).
- `match_clusters(id, origin, centre, radius, members, detected_at, released_at)`:
  dense clusters a followed log published (many fingerprints within `radius` bits of
  `centre`), held out of the index until the operator releases them (`released_at`).
- `match_holds(origin, idx, reason, cluster, held_at)`: fingerprints verified and stored
  but held out of the index: `cluster` (part of a held cluster, until released) or
  `budget` (beyond the log's budgets, indexed when they allow it).
- `match_intake(origin, hour, count)`: fingerprints of each log put in the index per
  clock hour (unix time // 3600), for the hourly and daily budgets.

This module is the only code that writes these tables. Holds and intake are written
by the matcher (node/matcher/holds.py); clusters are released and budgets set by the
operator (`ncii-node match-release`, `ncii-node match-budget`, POST /v1/match/release|budget).
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


def _v2(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE match_budgets (
        origin TEXT PRIMARY KEY,
        max_fingerprints INTEGER CHECK (max_fingerprints >= 0),
        max_per_hour INTEGER CHECK (max_per_hour >= 0),
        max_per_day INTEGER CHECK (max_per_day >= 0)
    ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE match_clusters (
        id INTEGER PRIMARY KEY,
        origin TEXT NOT NULL,
        centre BLOB NOT NULL CHECK (length(centre) = 32),
        radius INTEGER NOT NULL,
        members INTEGER NOT NULL,
        detected_at REAL NOT NULL,
        released_at REAL
    )""")
    db.execute("CREATE INDEX match_clusters_origin ON match_clusters(origin)")
    db.execute("""CREATE TABLE match_holds (
        origin TEXT NOT NULL,
        idx INTEGER NOT NULL,
        reason TEXT NOT NULL CHECK (reason IN ('cluster', 'budget')),
        cluster INTEGER,
        held_at REAL NOT NULL,
        PRIMARY KEY (origin, idx)
    ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE match_intake (
        origin TEXT NOT NULL,
        hour INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (origin, hour)
    ) WITHOUT ROWID""")


MIGRATIONS = [_v1, _v2]


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


# -- budgets ------------------------------------------------------------------------------

BUDGET_FIELDS = ("max_fingerprints", "max_per_hour", "max_per_day")


def budgets(db: sqlite_utils.Database) -> dict[str, dict[str, int | None]]:
    """The budgets set per log (None: that budget takes the node's default)."""
    return {origin: dict(zip(BUDGET_FIELDS, values)) for origin, *values in db.execute(
        "SELECT origin, max_fingerprints, max_per_hour, max_per_day FROM match_budgets")}


def set_budget(db: sqlite_utils.Database, origin: str, values: dict[str, int | None]) -> None:
    """Set some budgets of one log (a value None returns it to the default); a row
    left with only defaults is deleted."""
    with db.atomic():
        current = budgets(db).get(origin, dict.fromkeys(BUDGET_FIELDS))
        current.update({key: values[key] for key in BUDGET_FIELDS if key in values})
        if all(v is None for v in current.values()):
            db.execute("DELETE FROM match_budgets WHERE origin = ?", (origin,))
            return
        db.execute("INSERT INTO match_budgets (origin, max_fingerprints, max_per_hour, max_per_day) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET max_fingerprints = excluded.max_fingerprints, "
                   "max_per_hour = excluded.max_per_hour, max_per_day = excluded.max_per_day",
                   (origin, *(current[key] for key in BUDGET_FIELDS)))


# -- held clusters and fingerprints ----------------------------------------------------------

@dataclass(frozen=True)
class Cluster:
    id: int
    origin: str
    centre: bytes
    radius: int
    members: int              # fingerprints held (or released) with it
    detected_at: float
    released_at: float | None

    @property
    def held(self) -> bool:
        return self.released_at is None


_CLUSTER_COLUMNS = "id, origin, centre, radius, members, detected_at, released_at"


def add_cluster(db: sqlite_utils.Database, origin: str, centre: bytes, radius: int, now: float | None = None) -> int:
    db.execute("INSERT INTO match_clusters (origin, centre, radius, members, detected_at) VALUES (?, ?, ?, 0, ?)",
               (origin, centre, radius, time.time() if now is None else now))
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def clusters(db: sqlite_utils.Database, origin: str | None = None) -> list[Cluster]:
    where, args = ("WHERE origin = ?", (origin,)) if origin is not None else ("", ())
    return [Cluster(*row) for row in db.execute(
        f"SELECT {_CLUSTER_COLUMNS} FROM match_clusters {where} ORDER BY id", args)]


def hold(db: sqlite_utils.Database, origin: str, indices, reason: str, cluster: int | None = None,
         now: float | None = None) -> None:
    """Hold fingerprints out of the index (inside the caller's transaction); a cluster's
    member count grows with them."""
    now = time.time() if now is None else now
    db.conn.executemany("INSERT OR REPLACE INTO match_holds (origin, idx, reason, cluster, held_at) "
                        "VALUES (?, ?, ?, ?, ?)", ((origin, int(i), reason, cluster, now) for i in indices))
    if cluster is not None:
        db.execute("UPDATE match_clusters SET members = (SELECT COUNT(*) FROM match_holds WHERE cluster = ?) "
                   "WHERE id = ?", (cluster, cluster))


def held_indices(db: sqlite_utils.Database, origin: str, reason: str | None = None,
                 cluster: int | None = None) -> list[int]:
    """Log indices of the held fingerprints of one log, ascending."""
    where, args = ["origin = ?"], [origin]
    if reason is not None:
        where.append("reason = ?")
        args.append(reason)
    if cluster is not None:
        where.append("cluster = ?")
        args.append(cluster)
    return [row[0] for row in db.execute(f"SELECT idx FROM match_holds WHERE {' AND '.join(where)} ORDER BY idx",
                                         args)]


def all_held(db: sqlite_utils.Database) -> dict[str, dict[str, list[int]]]:
    """Every held fingerprint: origin -> reason -> ascending log indices."""
    out: dict[str, dict[str, list[int]]] = {}
    for origin, reason, index in db.execute("SELECT origin, reason, idx FROM match_holds ORDER BY origin, idx"):
        out.setdefault(origin, {}).setdefault(reason, []).append(index)
    return out


def unhold(db: sqlite_utils.Database, origin: str, indices) -> None:
    """Inside the caller's transaction: these fingerprints are no longer held."""
    db.conn.executemany("DELETE FROM match_holds WHERE origin = ? AND idx = ?", ((origin, int(i)) for i in indices))


def release_cluster(db: sqlite_utils.Database, cluster_id: int, now: float | None = None) -> list[int]:
    """The operator releases a held cluster: its fingerprints may be indexed. Returns
    their log indices (empty if the cluster is unknown or released already)."""
    with db.atomic():
        row = db.execute("SELECT origin FROM match_clusters WHERE id = ? AND released_at IS NULL",
                         (cluster_id,)).fetchone()
        if row is None:
            return []
        indices = held_indices(db, row[0], "cluster", cluster_id)
        db.execute("DELETE FROM match_holds WHERE cluster = ?", (cluster_id,))
        db.execute("UPDATE match_clusters SET released_at = ? WHERE id = ?",
                   (time.time() if now is None else now, cluster_id))
        return indices


def hold_counts(db: sqlite_utils.Database) -> dict[str, dict[str, int]]:
    """Per origin: fingerprints held because of a cluster, and because of a budget."""
    out: dict[str, dict[str, int]] = {}
    for origin, reason, n in db.execute("SELECT origin, reason, COUNT(*) FROM match_holds GROUP BY origin, reason"):
        out.setdefault(origin, {"cluster": 0, "budget": 0})[reason] = n
    return out


def forget_log(db: sqlite_utils.Database, origin: str) -> None:
    """The log is no longer followed: its holds and intake go (its clusters stay, as a record)."""
    with db.atomic():
        db.execute("DELETE FROM match_holds WHERE origin = ?", (origin,))
        db.execute("DELETE FROM match_intake WHERE origin = ?", (origin,))


# -- intake (for the hourly and daily budgets) -------------------------------------------------

def add_intake(db: sqlite_utils.Database, origin: str, hour: int, count: int) -> None:
    db.execute("INSERT INTO match_intake (origin, hour, count) VALUES (?, ?, ?) "
               "ON CONFLICT(origin, hour) DO UPDATE SET count = count + excluded.count", (origin, hour, count))
    db.execute("DELETE FROM match_intake WHERE origin = ? AND hour < ?", (origin, hour - 48))


def intake(db: sqlite_utils.Database) -> dict[str, dict[int, int]]:
    """Per origin: fingerprints indexed per clock hour, the last 48 hours."""
    out: dict[str, dict[int, int]] = {}
    for origin, hour, count in db.execute("SELECT origin, hour, count FROM match_intake"):
        out.setdefault(origin, {})[hour] = count
    return out
