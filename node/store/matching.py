"""Tables of the matcher: per-log match thresholds, local suppressions, budgets and held fingerprints.

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

- `match_decided(origin, size)` (PostgreSQL): the holds of the log's entries below
  `size` are decided and written. Only the sequencing process decides holds (its
  follower's matcher); the other processes' replicas index a followed log's entries
  only up to this size, adopting the holds written here first, so a held fingerprint
  never matches in any process, not even for a moment (node/matcher/replica.py).

- `match_settings_version(id = 1, version)`: a counter raised in the transaction of
  every change another `serve` process of the node must take over (thresholds,
  suppressions, budgets, released clusters, fingerprints let out of a hold). On
  PostgreSQL the same transaction notifies `ncii_match` ({"settings": version}, at its
  commit): every process re-reads the settings at once, and compares the counter every
  second in case it missed the notification (node/matcher/replica.py). No row: 0.

This module is the only code that writes these tables. `IndexSnapshot` reads what
the matcher indexes at start-up: the thresholds, the suppressions and every active
fingerprint (node/store/follow.py's table), all from ONE read snapshot.

Contract of MatchingRepository (`db.matching`): each writing call is one transaction
and idempotent (a suppression recorded twice is one; a published feedback is never
asked for twice); `pending_feedback` lists in the order suppressions were made.

The budgets, held clusters, holds and intake are written by the matcher's holds
(node/matcher/holds.py) through their own connection: `hold`, `unhold` and
`add_intake` run inside the caller's transaction, every other writing call is one
transaction. The holds read them inside the index's build snapshot
(`IndexSnapshot.read_text`, which hands this repository a plain sqlite3 connection:
reads only). Clusters are released and budgets set by the operator (`ncii-node
match-release`, `ncii-node match-budget`, POST /v1/match/release|budget).
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Mapping
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


def _v3(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE match_settings_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "version INTEGER NOT NULL)")


def _v4(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE match_decided (origin TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID")


MIGRATIONS = [_v1, _v2, _v3, _v4]


@dataclass(frozen=True)
class Suppression:
    origin: str
    index: int
    leaf_hash: bytes
    suppressed_at: float
    feedback: str            # 'none' | 'pending' | 'published'
    feedback_index: int | None


_COLUMNS = "origin, idx, leaf_hash, suppressed_at, feedback, feedback_index"


BUDGET_FIELDS = ("max_fingerprints", "max_per_hour", "max_per_day")


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


class MatchingRepository:
    """Thresholds, suppressions, budgets, held clusters and fingerprints, intake
    (contract above)."""

    def __init__(self, db):
        self.db = db

    # -- what the other processes must take over -------------------------------------------

    def settings_version(self) -> int:
        row = self.db.execute("SELECT version FROM match_settings_version WHERE id = 1").fetchone()
        return row[0] if row else 0

    def _changed(self) -> None:
        """Inside the changing transaction: raise the counter, and on PostgreSQL tell the
        other processes at the commit."""
        version = self.db.execute(
            "INSERT INTO match_settings_version (id, version) VALUES (1, 1) ON CONFLICT (id) DO UPDATE "
            "SET version = match_settings_version.version + 1 RETURNING version").fetchone()[0]
        if getattr(self.db, "dialect", "sqlite") == "postgresql":
            from node.store.pg_changes import MATCH, notify

            notify(self.db, MATCH, f'{{"settings": {version}}}')

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
            self._changed()

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
            if row is None:
                self._changed()
            return self.get_suppression(origin, index)  # type: ignore[return-value]

    def suppressions(self) -> dict[tuple[str, int], bytes]:
        """Every suppression: (origin, index) -> leaf hash."""
        return {(origin, index): bytes(leaf) for origin, index, leaf in
                self.db.execute("SELECT origin, idx, leaf_hash FROM match_suppressions")}

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

    # -- budgets, held clusters and fingerprints, intake (node/matcher/holds.py) -----------

    def remove_suppression(self, origin: str, index: int) -> bool:
        """Forget a suppression (the entry may match again after the matcher reloads it)."""
        with self.db.atomic():
            removed = self.db.execute("DELETE FROM match_suppressions WHERE origin = ? AND idx = ?",
                                      (origin, index)).rowcount > 0
            if removed:
                self._changed()
            return removed

    def budgets(self) -> dict[str, dict[str, int | None]]:
        """The budgets set per log (None: that budget takes the node's default)."""
        return {origin: dict(zip(BUDGET_FIELDS, values)) for origin, *values in self.db.execute(
                "SELECT origin, max_fingerprints, max_per_hour, max_per_day FROM match_budgets")}

    def set_budget(self, origin: str, values: dict[str, int | None]) -> None:
        """Set some budgets of one log (a value None returns it to the default); a row
        left with only defaults is deleted."""
        with self.db.atomic():
            current = self.budgets().get(origin, dict.fromkeys(BUDGET_FIELDS))
            current.update({key: values[key] for key in BUDGET_FIELDS if key in values})
            self._changed()
            if all(v is None for v in current.values()):
                self.db.execute("DELETE FROM match_budgets WHERE origin = ?", (origin,))
                return
            self.db.execute("INSERT INTO match_budgets (origin, max_fingerprints, max_per_hour, max_per_day) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET "
                            "max_fingerprints = excluded.max_fingerprints, "
                            "max_per_hour = excluded.max_per_hour, max_per_day = excluded.max_per_day",
                            (origin, *(current[key] for key in BUDGET_FIELDS)))

    def add_cluster(self, origin: str, centre: bytes, radius: int, now: float | None = None) -> int:
        return self.db.execute("INSERT INTO match_clusters (origin, centre, radius, members, detected_at) "
                               "VALUES (?, ?, ?, 0, ?) RETURNING id",
                               (origin, centre, radius, time.time() if now is None else now)).fetchone()[0]

    def clusters(self, origin: str | None = None) -> list[Cluster]:
        where, args = ("WHERE origin = ?", (origin,)) if origin is not None else ("", ())
        return [Cluster(*row) for row in self.db.execute(
                f"SELECT {_CLUSTER_COLUMNS} FROM match_clusters {where} ORDER BY id", args)]

    def hold(self, origin: str, indices, reason: str, cluster: int | None = None,
             now: float | None = None) -> None:
        """Hold fingerprints out of the index (inside the caller's transaction); a cluster's
        member count grows with them."""
        now = time.time() if now is None else now
        self.db.conn.executemany("INSERT INTO match_holds (origin, idx, reason, cluster, held_at) "
                                 "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin, idx) DO UPDATE SET "
                                 "reason = excluded.reason, cluster = excluded.cluster, held_at = excluded.held_at", ((origin, int(i), reason, cluster, now) for i in indices))
        if cluster is not None:
            self.db.execute("UPDATE match_clusters SET members = (SELECT COUNT(*) FROM match_holds WHERE cluster = ?) "
                            "WHERE id = ?", (cluster, cluster))

    def held_indices(self, origin: str, reason: str | None = None,
                     cluster: int | None = None) -> list[int]:
        """Log indices of the held fingerprints of one log, ascending."""
        where, args = ["origin = ?"], [origin]
        if reason is not None:
            where.append("reason = ?")
            args.append(reason)
        if cluster is not None:
            where.append("cluster = ?")
            args.append(cluster)
        return [row[0] for row in self.db.execute(
            f"SELECT idx FROM match_holds WHERE {' AND '.join(where)} ORDER BY idx", args)]

    def all_held(self) -> dict[str, dict[str, list[int]]]:
        """Every held fingerprint: origin -> reason -> ascending log indices."""
        out: dict[str, dict[str, list[int]]] = {}
        for origin, reason, index in self.db.execute(
                "SELECT origin, reason, idx FROM match_holds ORDER BY origin, idx"):
            out.setdefault(origin, {}).setdefault(reason, []).append(index)
        return out

    def unhold(self, origin: str, indices) -> None:
        """Inside the caller's transaction: these fingerprints are no longer held."""
        self.db.conn.executemany("DELETE FROM match_holds WHERE origin = ? AND idx = ?",
                                 ((origin, int(i)) for i in indices))
        self._changed()

    def release_cluster(self, cluster_id: int, now: float | None = None) -> list[int]:
        """The operator releases a held cluster: its fingerprints may be indexed. Returns
        their log indices (empty if the cluster is unknown or released already)."""
        with self.db.atomic():
            row = self.db.execute("SELECT origin FROM match_clusters WHERE id = ? AND released_at IS NULL",
                                  (cluster_id,)).fetchone()
            if row is None:
                return []
            indices = self.held_indices(row[0], "cluster", cluster_id)
            self.db.execute("DELETE FROM match_holds WHERE cluster = ?", (cluster_id,))
            self.db.execute("UPDATE match_clusters SET released_at = ? WHERE id = ?",
                            (time.time() if now is None else now, cluster_id))
            self._changed()
            return indices

    def hold_counts(self) -> dict[str, dict[str, int]]:
        """Per origin: fingerprints held because of a cluster, and because of a budget."""
        out: dict[str, dict[str, int]] = {}
        for origin, reason, n in self.db.execute(
                "SELECT origin, reason, COUNT(*) FROM match_holds GROUP BY origin, reason"):
            out.setdefault(origin, {"cluster": 0, "budget": 0})[reason] = n
        return out

    def forget_log(self, origin: str) -> None:
        """The log is no longer followed: its holds and intake go (its clusters stay, as a record)."""
        with self.db.atomic():
            self.db.execute("DELETE FROM match_holds WHERE origin = ?", (origin,))
            self.db.execute("DELETE FROM match_intake WHERE origin = ?", (origin,))
            self.db.execute("DELETE FROM match_decided WHERE origin = ?", (origin,))

    def add_intake(self, origin: str, hour: int, count: int) -> None:
        self.db.execute("INSERT INTO match_intake (origin, hour, count) VALUES (?, ?, ?) "
                        "ON CONFLICT(origin, hour) DO UPDATE SET count = match_intake.count + excluded.count", (origin, hour, count))
        self.db.execute("DELETE FROM match_intake WHERE origin = ? AND hour < ?", (origin, hour - 48))

    def decided_sizes(self) -> dict[str, int]:
        """Per origin: the size below which the sequencing process decided the holds."""
        return dict(self.db.execute("SELECT origin, size FROM match_decided"))

    def set_decided(self, origin: str, size: int) -> None:
        """Inside the caller's transaction: holds of `origin` below `size` are written."""
        self.db.execute("INSERT INTO match_decided (origin, size) VALUES (?, ?) ON CONFLICT (origin) "
                        "DO UPDATE SET size = excluded.size WHERE excluded.size > match_decided.size", (origin, size))

    def held_between(self, origin: str, start: int, end: int) -> dict[str, list[int]]:
        """Held fingerprints of `origin` with start <= index < end: reason -> ascending indices."""
        out: dict[str, list[int]] = {}
        for reason, index in self.db.execute("SELECT reason, idx FROM match_holds WHERE origin = ? AND idx >= ? "
                                             "AND idx < ? ORDER BY idx", (origin, start, end)):
            out.setdefault(reason, []).append(index)
        return out

    def intake(self) -> dict[str, dict[int, int]]:
        """Per origin: fingerprints indexed per clock hour, the last 48 hours."""
        out: dict[str, dict[int, int]] = {}
        for origin, hour, count in self.db.execute("SELECT origin, hour, count FROM match_intake"):
            out.setdefault(origin, {})[hour] = count
        return out


class IndexSnapshot:
    """One read snapshot of what a match index is built from (the matcher's `load`).

        with IndexSnapshot(db_path) as snapshot:
            snapshot.thresholds()          -> [(origin, PDQ threshold)]
            snapshot.suppressions()        -> [(origin, index, leaf hash)]
            snapshot.origins()             -> the followed logs holding fingerprints, in order
            snapshot.chunks(origin, bulk)
                -> per range of BUILD_CHUNK indices: (arrays, others): for each signal
                   of `bulk` ({signal name: fixed size}), arrays[signal] = (indices,
                   matrix): its active fingerprints of that size as an int64 array and
                   a uint8 matrix, read in one aggregate query (about a million rows
                   per second); and the active ones of every other signal as
                   (index, signal, fingerprint)
            snapshot.leaf_hash(origin, index)  -> the entry's leaf hash, or None
            snapshot.has_table(name)       -> whether the (perhaps not yet migrated) database has it
            snapshot.read_text(function, *args) -> function(connection, *args), text as str

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
        return [(_text(origin), t) for origin, t in
                self._conn.execute("SELECT origin, pdq_threshold FROM match_thresholds")]

    def suppressions(self) -> list[tuple[str, int, bytes]]:
        return [(_text(origin), index, leaf) for origin, index, leaf in
                self._conn.execute("SELECT origin, idx, leaf_hash FROM match_suppressions")]

    def origins(self) -> Iterator[str]:
        # The primary key starts with origin: each log's rows are read by index seeks.
        found = self._conn.execute("SELECT MIN(origin) FROM fingerprints").fetchone()[0]
        while found is not None:
            origin = _text(found)
            yield origin
            found = self._conn.execute("SELECT MIN(origin) FROM fingerprints WHERE origin > ?", (origin,)).fetchone()[0]

    def chunks(self, origin: str, bulk: Mapping[str, int]) -> Iterator[tuple[dict[str, tuple], list]]:
        last = self._conn.execute("SELECT MAX(idx) FROM fingerprints WHERE origin = ?", (origin,)).fetchone()[0]
        active = "withdrawn = 0 AND suppressed = 0"
        listed = ", ".join("?" * len(bulk))
        for start in range(0, -1 if last is None else last + 1, self.chunk):
            stop = start + self.chunk
            arrays = {signal: self._arrays(origin, start, stop, signal, size) for signal, size in bulk.items()}
            others = [(index, _text(other), bytes(fingerprint)) for index, other, fingerprint in self._conn.execute(
                f"SELECT idx, signal, fingerprint FROM fingerprints WHERE origin = ? AND idx >= ? AND idx < ? "
                f"AND signal NOT IN ({listed}) AND {active}", (origin, start, stop, *bulk))]
            yield arrays, others

    def _arrays(self, origin: str, start: int, stop: int, signal: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, matrix) of the active `signal` fingerprints of `size` bytes in [start, stop)."""
        active = "withdrawn = 0 AND suppressed = 0"
        if not self._utf8:  # a database in UTF-16 would mangle blobs turned into text: read row by row
            rows = self._conn.execute(
                f"SELECT idx, fingerprint FROM fingerprints WHERE origin = ? AND idx >= ? AND idx < ? "
                f"AND signal = ? AND length(fingerprint) = ? AND {active}",
                (origin, start, stop, signal, size)).fetchall()
            return (np.array([r[0] for r in rows], dtype=np.int64),
                    np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(-1, size))
        blobs, indices, count = self._conn.execute(
            f"SELECT {self._AGGREGATE}, count(*) FROM fingerprints "
            f"WHERE origin = ? AND idx >= ? AND idx < ? AND signal = ? AND length(fingerprint) = ? "
            f"AND {active}", (origin, start, stop, signal, size)).fetchone()
        if not count:
            return np.empty(0, dtype=np.int64), np.empty((0, size), dtype=np.uint8)
        indices_array = self._indices(indices)
        matrix = np.frombuffer(blobs, dtype=np.uint8).reshape(-1, size)
        if len(indices_array) != count or len(matrix) != count:
            raise RuntimeError("the database returned a malformed aggregate; cannot build the index")
        return indices_array, matrix

    #: The blobs, concatenated, and the indices, in one aggregate row.
    _AGGREGATE = "group_concat(fingerprint, x''), group_concat(idx)"

    @staticmethod
    def _indices(aggregated) -> np.ndarray:
        return np.fromstring(aggregated, dtype=np.int64, sep=",")  # text mode: C speed

    def has_table(self, name: str) -> bool:
        """Whether the database has this table (one not migrated yet may lack the newest)."""
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (name,)).fetchone() is not None

    def read_text(self, function, *args):
        """function(connection, *args) inside the snapshot, with text read as str (the
        holds' tables: node/matcher/holds.py)."""
        self._conn.text_factory = str
        try:
            return function(self._conn, *args)
        finally:
            self._conn.text_factory = bytes

    def leaf_hash(self, origin: str, index: int) -> bytes | None:
        row = self._conn.execute("SELECT leaf_hash FROM fingerprints WHERE origin = ? AND idx = ?",
                                 (origin, index)).fetchone()
        return row[0] if row else None


def _text(value) -> str:
    """Text from the snapshot: bytes from SQLite's (text_factory = bytes), str from PostgreSQL's."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


class PgIndexSnapshot(IndexSnapshot):
    """IndexSnapshot of a PostgreSQL database: one REPEATABLE READ, READ ONLY transaction
    (one snapshot for the whole build, no lock taken); the same queries, but for the
    aggregate (`string_agg` of the blobs and of the indices as 8-byte big-endian)."""

    def __init__(self, target: str, chunk: int = BUILD_CHUNK):
        self.target = target
        self.chunk = chunk
        self._conn = None
        self._utf8 = True

    def __enter__(self) -> PgIndexSnapshot:
        from node.store import connect

        self._conn = connect(self.target)
        self._conn.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._conn.raw.execute("COMMIT")
        finally:
            self._conn.close()

    _AGGREGATE = "string_agg(fingerprint, ''::bytea ORDER BY idx), string_agg(int8send(idx), ''::bytea ORDER BY idx)"

    @staticmethod
    def _indices(aggregated) -> np.ndarray:
        return np.frombuffer(aggregated, dtype=">i8").astype(np.int64)

    def has_table(self, name: str) -> bool:
        return self._conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]

    def read_text(self, function, *args):
        return function(self._conn, *args)


def index_snapshot(target, chunk: int = BUILD_CHUNK) -> IndexSnapshot:
    """The snapshot of the database at `target` (a SQLite path or a PostgreSQL URL)."""
    from node.store import is_postgres

    return PgIndexSnapshot(target, chunk) if is_postgres(target) else IndexSnapshot(target, chunk)
