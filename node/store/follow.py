"""Tables of the logs this node follows: what it verified, and what it learnt from them.

- `followed_logs`: one row per followed log: its URL, the pinned verifier key (the only
  key whose checkpoints are accepted; replaced only by a key rotation signed with it),
  the verified state (size, root, the signed note of the last verified checkpoint), the
  fork flag, the peer's announced metadata, and the follower's health (last error,
  consecutive failures, when it last confirmed it held the peer's latest checkpoint).
- `followed_checkpoints(origin, size)`: every checkpoint verified, with the signed note
  bytes exactly as fetched. Sizes only grow; a row is never updated or deleted while
  the log is followed (nothing verified is ever rolled back).
- `follow_forks`: evidence of forks: two validly signed checkpoints of one log that
  cannot both be true, both notes kept byte for byte, who found it (`source`: the
  follower's own round, or gossip with a peer), and the portable evidence file written
  for it (`evidence_path`) or why none could be built (`evidence_problem`).
- `gossip_peers(url)`: nodes whose GET /witness/seen this node reads to compare views
  (node/follow/gossip.py), with the health of that comparison.
- `fingerprints(origin, idx)`: the submissions of followed logs, the matcher's source.
  `withdrawn`/`withdrawn_by` are set by a withdrawal of the same log; `suppressed` by
  the local operator (a known false match). Rows are inserted idempotently, keyed on
  (origin, idx), so re-applying a batch changes nothing.
- `follow_feedback(from_origin, from_idx)`: platform verdicts, attached to the entry
  (origin, idx) they name; `entry_matches` says whether the quoted leaf hash is the
  one this node knows for that entry (1), is not (0), or is unknown here (NULL).
- `follow_key_rotations`: every key rotation announced by a followed log, honoured or not.
- `follow_acks(from_origin, from_idx)`: acknowledgements published by followed logs
  (spec/parts/acknowledgements.md): what tree of which log they say they applied, and
  when. `valid`: the cosignature verifies; `root_ok`: the tree is one the acknowledged
  log had (1), one it never had (0: evidence against someone), or unknown here
  (NULL); `step`: a valid acknowledgement not known to be false whose size exceeds
  every earlier one by the same log about the same origin -- only these can be the
  first to cover an entry, so "when was entry i applied" reads one row.

Invariant: only node/follow (through this module) writes these tables, except
`fingerprints.suppressed` (the matcher, through `set_suppressed`).

Contract of FollowRepository (`db.follow`), which the follower's "apply once, never
roll back" rests on (node/follow/sync.py):
- A round is applied atomically: its entries are first staged (`reset_staging`,
  `stage`: per connection, per origin, no lock taken), then, inside ONE write
  transaction the follower opens, moved and applied in index order
  (`move_staged_fingerprints`, `staged_entries`, `withdraw`, `add_feedback`, ...) and
  the new verified state stored (`store_checkpoint`). These calls run inside the
  caller's transaction; every other writing call is a transaction of its own.
- Every write of a round is idempotent (keyed on (origin, index); the first withdrawal
  of an entry wins), so applying a round twice changes nothing; a verified size only
  grows, and `record_fork` keeps both notes and stops the log without undoing anything.
- `iter_fingerprints` yields in (origin, index) order, in chunks (flat memory).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import sqlite_utils

AREA = "follow"


def _v1(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE followed_logs (
        origin TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        vkey TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        tofu INTEGER NOT NULL DEFAULT 0,
        added_at REAL NOT NULL,
        interval REAL NOT NULL DEFAULT 1.0,
        size INTEGER NOT NULL DEFAULT 0,
        root_hash BLOB,
        checkpoint_note BLOB,
        verified_at REAL,
        in_sync_at REAL,
        remote_size INTEGER,
        forked INTEGER NOT NULL DEFAULT 0,
        fork_reason TEXT,
        last_error TEXT,
        last_error_at REAL,
        failures INTEGER NOT NULL DEFAULT 0,
        display_name TEXT,
        contact_url TEXT,
        policy_url TEXT,
        announced_at INTEGER
    )""")
    db.execute("""CREATE TABLE followed_checkpoints (
        origin TEXT NOT NULL,
        size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        note BLOB NOT NULL,
        verified_at REAL NOT NULL,
        PRIMARY KEY (origin, size)
    ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE follow_forks (
        id INTEGER PRIMARY KEY,
        origin TEXT NOT NULL,
        detected_at REAL NOT NULL,
        reason TEXT NOT NULL,
        earlier_size INTEGER NOT NULL,
        earlier_note BLOB NOT NULL,
        later_size INTEGER NOT NULL,
        later_note BLOB NOT NULL
    )""")
    db.execute("""CREATE TABLE fingerprints (
        origin TEXT NOT NULL,
        idx INTEGER NOT NULL,
        signal TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        quality INTEGER,
        labels TEXT NOT NULL DEFAULT '',
        day INTEGER NOT NULL DEFAULT 0,
        leaf_hash BLOB NOT NULL,
        withdrawn INTEGER NOT NULL DEFAULT 0,
        withdrawn_by INTEGER,
        suppressed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (origin, idx)
    ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE follow_feedback (
        from_origin TEXT NOT NULL,
        from_idx INTEGER NOT NULL,
        origin TEXT NOT NULL,
        idx INTEGER NOT NULL,
        leaf_hash BLOB NOT NULL,
        verdict TEXT NOT NULL,
        entry_matches INTEGER,
        PRIMARY KEY (from_origin, from_idx)
    ) WITHOUT ROWID""")
    db.execute("CREATE INDEX follow_feedback_entry ON follow_feedback(origin, idx)")
    db.execute("""CREATE TABLE follow_key_rotations (
        origin TEXT NOT NULL,
        idx INTEGER NOT NULL,
        old_vkey TEXT NOT NULL,
        new_vkey TEXT NOT NULL,
        honoured INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (origin, idx)
    ) WITHOUT ROWID""")


def _v2(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE follow_forks ADD COLUMN source TEXT NOT NULL DEFAULT 'follower'")
    db.execute("ALTER TABLE follow_forks ADD COLUMN evidence_path TEXT")
    db.execute("ALTER TABLE follow_forks ADD COLUMN evidence_problem TEXT")
    db.execute("""CREATE TABLE gossip_peers (
        url TEXT PRIMARY KEY,
        interval REAL NOT NULL,
        added_at REAL NOT NULL,
        checked_at REAL,
        last_error TEXT,
        last_error_at REAL,
        failures INTEGER NOT NULL DEFAULT 0
    )""")


def _v3(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE follow_acks (
        from_origin TEXT NOT NULL,
        from_idx INTEGER NOT NULL,
        origin TEXT NOT NULL,
        size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        time_ms INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        valid INTEGER NOT NULL,
        root_ok INTEGER,
        step INTEGER NOT NULL,
        PRIMARY KEY (from_origin, from_idx)
    ) WITHOUT ROWID""")
    db.execute("CREATE INDEX follow_acks_steps ON follow_acks(from_origin, origin, step, size)")


MIGRATIONS = [_v1, _v2, _v3]


# -- followed logs ---------------------------------------------------------------------

@dataclass(frozen=True)
class FollowedLog:
    origin: str
    url: str
    vkey: str
    name: str
    tofu: bool
    added_at: float
    interval: float
    size: int
    root_hash: bytes | None
    checkpoint_note: bytes | None
    verified_at: float | None
    in_sync_at: float | None
    remote_size: int | None
    forked: bool
    fork_reason: str | None
    last_error: str | None
    last_error_at: float | None
    failures: int
    display_name: str | None
    contact_url: str | None
    policy_url: str | None
    announced_at: int | None


_LOG_COLUMNS = ", ".join(FollowedLog.__dataclass_fields__)


def _log_row(row) -> FollowedLog:
    values = dict(zip(FollowedLog.__dataclass_fields__, row))
    values["tofu"] = bool(values["tofu"])
    values["forked"] = bool(values["forked"])
    return FollowedLog(**values)


@dataclass(frozen=True)
class ForkEvidence:
    id: int
    origin: str
    detected_at: float
    reason: str
    earlier_size: int
    earlier_note: bytes
    later_size: int
    later_note: bytes
    source: str = "follower"
    evidence_path: str | None = None
    evidence_problem: str | None = None


@dataclass(frozen=True)
class GossipPeer:
    url: str
    interval: float
    added_at: float
    checked_at: float | None
    last_error: str | None
    last_error_at: float | None
    failures: int


@dataclass(frozen=True)
class FingerprintRow:
    origin: str
    index: int
    signal: str
    fingerprint: bytes
    quality: int | None
    labels: tuple[str, ...]
    day: int
    leaf_hash: bytes
    withdrawn: bool = False
    suppressed: bool = False


_FP_COLUMNS = "origin, idx, signal, fingerprint, quality, labels, day, leaf_hash, withdrawn, suppressed"


def _fp_row(r) -> FingerprintRow:
    return FingerprintRow(r[0], r[1], r[2], r[3], r[4], tuple(r[5].split(",")) if r[5] else (), r[6], r[7],
                          bool(r[8]), bool(r[9]))


INSERT_FINGERPRINT = ("INSERT OR IGNORE INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, "
                      "day, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class FeedbackRow:
    from_origin: str
    from_index: int
    origin: str
    index: int
    leaf_hash: bytes
    verdict: str
    entry_matches: bool | None


@dataclass(frozen=True)
class AckRow:
    from_origin: str
    from_index: int
    origin: str
    size: int
    root_hash: bytes
    time_ms: int
    public_key: bytes
    signature: bytes
    valid: bool
    root_ok: bool | None


_ACK_COLUMNS = "from_origin, from_idx, origin, size, root_hash, time_ms, public_key, signature, valid, root_ok"


def _ack_row(r) -> AckRow:
    return AckRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), None if r[9] is None else bool(r[9]))


class FollowRepository:
    """The followed logs and what was verified of them (contract above)."""

    def __init__(self, db):
        self.db = db

    def add_log(self, origin: str, url: str, vkey: str, name: str = "",
                tofu: bool = False, interval: float = 1.0) -> None:
        """Start following a log. Raises ValueError if it is already followed."""
        with self.db.atomic():
            if self.db.execute("SELECT 1 FROM followed_logs WHERE origin = ?", (origin,)).fetchone():
                raise ValueError(f"log {origin!r} is already followed; `ncii-node follow remove` it first")
            self.db.execute("INSERT INTO followed_logs (origin, url, vkey, name, tofu, added_at, interval) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (origin, url, vkey, name, int(tofu), time.time(), interval))

    def remove_log(self, origin_or_name: str) -> str | None:
        """Stop following a log (by origin, else by local name) and forget what it taught
        us: its fingerprints, feedback and checkpoints -- without its withdrawals we could
        no longer keep them correct. Fork evidence is kept. Returns the origin removed."""
        with self.db.atomic():
            row = self.db.execute("SELECT origin FROM followed_logs WHERE origin = ?", (origin_or_name,)).fetchone()
            if row is None:
                rows = self.db.execute("SELECT origin FROM followed_logs WHERE name = ? AND name != ''",
                                       (origin_or_name,)).fetchall()
                if len(rows) != 1:
                    return None
                row = rows[0]
            origin = row[0]
            for table, column in (("fingerprints", "origin"), ("follow_feedback", "from_origin"),
                                  ("follow_acks", "from_origin"),
                                  ("followed_checkpoints", "origin"), ("follow_key_rotations", "origin"),
                                  ("followed_logs", "origin")):
                self.db.execute(f"DELETE FROM {table} WHERE {column} = ?", (origin,))
            self.db.peer_feedback.forget(origin)
            self.db.follow_leaves.forget(origin)
            return origin

    def find_log(self, origin_or_name: str) -> FollowedLog | None:
        """A followed log by origin, else by its operator-given name (if one log has it)."""
        entry = self.get_log(origin_or_name)
        if entry is None:
            rows = self.db.execute(f"SELECT {_LOG_COLUMNS} FROM followed_logs WHERE name = ? AND name != ''",
                                   (origin_or_name,)).fetchall()
            entry = _log_row(rows[0]) if len(rows) == 1 else None
        return entry

    def set_name(self, origin: str, name: str) -> None:
        """The operator's name for a followed log: the only name shown to people."""
        with self.db.atomic():
            self.db.execute("UPDATE followed_logs SET name = ? WHERE origin = ?", (name, origin))

    def set_url(self, origin: str, url: str) -> None:
        """Where the log is read from (its key stays pinned: a new URL gains no trust)."""
        with self.db.atomic():
            self.db.execute("UPDATE followed_logs SET url = ? WHERE origin = ?", (url, origin))

    def get_log(self, origin: str) -> FollowedLog | None:
        row = self.db.execute(f"SELECT {_LOG_COLUMNS} FROM followed_logs WHERE origin = ?", (origin,)).fetchone()
        return _log_row(row) if row else None

    def list_logs(self) -> list[FollowedLog]:
        return [_log_row(r) for r in self.db.execute(f"SELECT {_LOG_COLUMNS} FROM followed_logs ORDER BY origin")]

    def record_error(self, origin: str, message: str, now: float | None = None) -> None:
        """Remember why the last round failed; the verified state is not touched."""
        with self.db.atomic():
            self.db.execute("UPDATE followed_logs SET last_error = ?, last_error_at = ?, failures = failures + 1 "
                            "WHERE origin = ?", (message, time.time() if now is None else now, origin))
            self.db.stats.count_follow_error(origin)

    def record_in_sync(self, origin: str, remote_size: int, now: float | None = None) -> None:
        """A round ended holding the peer's latest checkpoint (nothing new, or all applied)."""
        with self.db.atomic():
            self.db.execute("UPDATE followed_logs SET in_sync_at = ?, remote_size = ?, failures = 0 WHERE origin = ?",
                            (time.time() if now is None else now, remote_size, origin))

    def record_remote_size(self, origin: str, remote_size: int) -> None:
        """The size of the peer's latest validly signed checkpoint (for the lag), before
        the round that catches up with it has verified anything else."""
        with self.db.atomic():
            self.db.execute("UPDATE followed_logs SET remote_size = ? WHERE origin = ?", (remote_size, origin))

    def record_fork(self, origin: str, reason: str, earlier_size: int, earlier_note: bytes,
                    later_size: int, later_note: bytes, now: float | None = None, *, source: str = "follower",
                    evidence_path: str | None = None, evidence_problem: str | None = None) -> None:
        """Keep both checkpoints as evidence and stop the log (never rolls anything back).
        `evidence_path`: the portable evidence file written for this fork, or else
        `evidence_problem`: why none could be built."""
        now = time.time() if now is None else now
        with self.db.atomic():
            self.db.execute("INSERT INTO follow_forks (origin, detected_at, reason, earlier_size, earlier_note, "
                            "later_size, later_note, source, evidence_path, evidence_problem) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (origin, now, reason, earlier_size, earlier_note, later_size, later_note, source,
                             evidence_path, evidence_problem))
            self.db.execute("UPDATE followed_logs SET forked = 1, fork_reason = ?, last_error = ?, last_error_at = ? "
                            "WHERE origin = ?", (reason, f"FORK: {reason}", now, origin))

    def list_forks(self, origin: str | None = None) -> list[ForkEvidence]:
        sql = ("SELECT id, origin, detected_at, reason, earlier_size, earlier_note, later_size, later_note, "
               "source, evidence_path, evidence_problem FROM follow_forks")
        args: tuple = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            args = (origin,)
        return [ForkEvidence(*r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def latest_forks(self) -> dict[str, ForkEvidence]:
        """Per origin, the newest fork recorded (what `status` shows)."""
        return {f.origin: f for f in self.list_forks()}

    # -- gossip peers --------------------------------------------------------------------

    def add_gossip_peer(self, url: str, interval: float) -> bool:
        """Compare views with the node at `url`. False if it was already a peer (the
        interval is updated)."""
        with self.db.atomic():
            if self.db.execute("SELECT 1 FROM gossip_peers WHERE url = ?", (url,)).fetchone():
                self.db.execute("UPDATE gossip_peers SET interval = ? WHERE url = ?", (interval, url))
                return False
            self.db.execute("INSERT INTO gossip_peers (url, interval, added_at) VALUES (?, ?, ?)",
                            (url, interval, time.time()))
            return True

    def remove_gossip_peer(self, url: str) -> bool:
        with self.db.atomic():
            return self.db.execute("DELETE FROM gossip_peers WHERE url = ?", (url,)).rowcount > 0

    def list_gossip_peers(self) -> list[GossipPeer]:
        return [GossipPeer(*r) for r in self.db.execute(
            "SELECT url, interval, added_at, checked_at, last_error, last_error_at, failures FROM gossip_peers "
            "ORDER BY url")]

    def record_gossip_result(self, url: str, error: str | None, now: float | None = None) -> None:
        """The outcome of one comparison with a peer: None (it went through) or the problem."""
        now = time.time() if now is None else now
        with self.db.atomic():
            if error is None:
                self.db.execute("UPDATE gossip_peers SET checked_at = ?, failures = 0, last_error = NULL, "
                                "last_error_at = NULL WHERE url = ?", (now, url))
            else:
                self.db.execute("UPDATE gossip_peers SET checked_at = ?, last_error = ?, last_error_at = ?, "
                                "failures = failures + 1 WHERE url = ?", (now, error, now, url))

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoint_at(self, origin: str, size: int) -> tuple[bytes, bytes] | None:
        """(root_hash, note) of the verified checkpoint of that size, if we hold one."""
        row = self.db.execute("SELECT root_hash, note FROM followed_checkpoints WHERE origin = ? AND size = ?",
                              (origin, size)).fetchone()
        return (row[0], row[1]) if row else None

    def store_checkpoint(self, origin: str, size: int, root_hash: bytes, note: bytes,
                         now: float) -> None:
        """Inside the caller's transaction: the new verified state of the log."""
        self.db.execute("INSERT OR IGNORE INTO followed_checkpoints (origin, size, root_hash, note, verified_at) "
                        "VALUES (?, ?, ?, ?, ?)", (origin, size, root_hash, note, now))
        self.db.execute("UPDATE followed_logs SET size = ?, root_hash = ?, checkpoint_note = ?, verified_at = ?, "
                        "in_sync_at = ?, remote_size = ?, failures = 0 WHERE origin = ?",
                        (size, root_hash, note, now, now, size, origin))

    # -- fingerprints --------------------------------------------------------------------

    def iter_fingerprints(self, origin: str | None = None, start: int = 0,
                          end: int | None = None, *, active_only: bool = False,
                          chunk: int = 50_000) -> Iterator[FingerprintRow]:
        """Fingerprints in (origin, index) order, read in chunks so memory stays flat.
        `active_only`: neither withdrawn nor suppressed (what a matcher indexes)."""
        where, args = [], []
        if origin is not None:
            where.append("origin = ?")
            args.append(origin)
        if active_only:
            where.append("withdrawn = 0 AND suppressed = 0")
        last = (None, start - 1)
        while True:
            clause = list(where)
            cargs = list(args)
            clause.append("idx >= ?")
            cargs.append(start)
            if last[0] is not None:
                clause.append("(origin, idx) > (?, ?)")
                cargs.extend(last)
            if end is not None:
                clause.append("idx < ?")
                cargs.append(end)
            rows = self.db.execute(f"SELECT {_FP_COLUMNS} FROM fingerprints WHERE {' AND '.join(clause)} "
                                   f"ORDER BY origin, idx LIMIT {int(chunk)}", cargs).fetchall()
            if not rows:
                return
            for r in rows:
                yield _fp_row(r)
            last = (rows[-1][0], rows[-1][1])

    def holds_fingerprints(self, origin: str) -> bool:
        """Whether this node holds any submission of `origin` (a log that publishes them)."""
        return self.db.execute("SELECT 1 FROM fingerprints WHERE origin = ? LIMIT 1", (origin,)).fetchone() is not None

    def get_fingerprint(self, origin: str, index: int) -> FingerprintRow | None:
        row = self.db.execute(f"SELECT {_FP_COLUMNS} FROM fingerprints WHERE origin = ? AND idx = ?",
                              (origin, index)).fetchone()
        return _fp_row(row) if row else None

    def fingerprints_at(self, origin: str, indices, *, chunk: int = 500) -> list[FingerprintRow]:
        """The active (neither withdrawn nor suppressed) fingerprints of `origin` at these
        log indices, in index order."""
        indices = sorted(int(i) for i in indices)
        out: list[FingerprintRow] = []
        for start in range(0, len(indices), chunk):
            part = indices[start:start + chunk]
            out.extend(_fp_row(r) for r in self.db.execute(
                f"SELECT {_FP_COLUMNS} FROM fingerprints WHERE origin = ? AND idx IN ({','.join('?' * len(part))}) "
                "AND withdrawn = 0 AND suppressed = 0 ORDER BY idx", (origin, *part)))
        return out

    def descriptions_by_index(self, origin: str, indices, *, chunk: int = 500) -> dict[int, tuple]:
        """log index -> (labels, quality, day) of the fingerprint rows of `origin` at these
        indices, whatever their state (the indices that have no row are left out): what
        the match API says of a hit, in a few queries, without the blobs (reading whole
        rows took 2-5x longer for the 40,000 entries a batch at clusters hits)."""
        wanted = sorted({int(i) for i in indices})
        out: dict[int, tuple] = {}
        for start in range(0, len(wanted), chunk):
            part = wanted[start:start + chunk]
            for index, labels, quality, day in self.db.execute(
                    f"SELECT idx, labels, quality, day FROM fingerprints WHERE origin = ? "
                    f"AND idx IN ({','.join('?' * len(part))})", (origin, *part)):
                out[index] = (tuple(labels.split(",")) if labels else (), quality, day)
        return out

    def set_suppressed(self, origin: str, index: int, suppressed: bool = True) -> bool:
        """Mark an entry as a known false match on this node (or undo it). False if unknown."""
        with self.db.atomic():
            return self.db.execute("UPDATE fingerprints SET suppressed = ? WHERE origin = ? AND idx = ?",
                                   (int(suppressed), origin, index)).rowcount > 0

    def fingerprint_counts(self) -> dict[str, dict[str, int]]:
        """Per origin: active, withdrawn and suppressed fingerprints."""
        out: dict[str, dict[str, int]] = {}
        for origin, withdrawn, suppressed, n in self.db.execute(
                "SELECT origin, withdrawn, suppressed, COUNT(*) FROM fingerprints GROUP BY origin, withdrawn, suppressed"):
            counts = out.setdefault(origin, {"active": 0, "withdrawn": 0, "suppressed": 0})
            if withdrawn:
                counts["withdrawn"] += n
            elif suppressed:
                counts["suppressed"] += n
            else:
                counts["active"] += n
        return out

    # -- feedback --------------------------------------------------------------------------

    def feedback_for(self, origin: str, index: int) -> list[FeedbackRow]:
        """Verdicts that followed logs published about entry `index` of log `origin`."""
        return [FeedbackRow(r[0], r[1], r[2], r[3], r[4], r[5], None if r[6] is None else bool(r[6]))
                for r in self.db.execute("SELECT from_origin, from_idx, origin, idx, leaf_hash, verdict, entry_matches "
                                         "FROM follow_feedback WHERE origin = ? AND idx = ? ORDER BY from_origin, from_idx",
                                         (origin, index))]

    def verdict_counts(self, origin: str, index: int) -> dict[str, int]:
        """verdict -> how many feedback entries of followed logs name entry `index` of
        `origin` quoting its leaf hash (or one this node cannot check), by verdict."""
        return {verdict: n for verdict, n in self.db.execute(
            "SELECT verdict, COUNT(*) FROM follow_feedback WHERE origin = ? AND idx = ? "
            "AND (entry_matches IS NULL OR entry_matches = 1) GROUP BY verdict ORDER BY verdict", (origin, index))}

    def verdict_counts_many(self, origin: str, indices, *, chunk: int = 500) -> dict[int, dict[str, int]]:
        """`verdict_counts` of many entries of `origin` in a few queries: log index ->
        verdict -> count (entries without feedback are left out)."""
        wanted = sorted({int(i) for i in indices})
        out: dict[int, dict[str, int]] = {}
        for start in range(0, len(wanted), chunk):
            part = wanted[start:start + chunk]
            for index, verdict, n in self.db.execute(
                    "SELECT idx, verdict, COUNT(*) FROM follow_feedback WHERE origin = ? "
                    f"AND idx IN ({','.join('?' * len(part))}) AND (entry_matches IS NULL OR entry_matches = 1) "
                    "GROUP BY idx, verdict ORDER BY idx, verdict", (origin, *part)):
                out.setdefault(index, {})[verdict] = n
        return out

    def verified_at(self, origin: str, index: int) -> float | None:
        """When this node first verified a checkpoint of `origin` covering entry `index`
        (the first one whose size exceeds it), i.e. when it learnt that entry; None if not yet."""
        row = self.db.execute("SELECT verified_at FROM followed_checkpoints WHERE origin = ? AND size > ? "
                              "ORDER BY size LIMIT 1", (origin, index)).fetchone()
        return row[0] if row else None

    def key_rotations(self, origin: str) -> list[tuple[int, str, str, bool, str]]:
        return [(r[0], r[1], r[2], bool(r[3]), r[4]) for r in self.db.execute(
            "SELECT idx, old_vkey, new_vkey, honoured, reason FROM follow_key_rotations WHERE origin = ? ORDER BY idx",
            (origin,))]

    # -- applying one round (called inside the follower's transaction) -----------------------
    #
    # A round stages its submissions in TEMP tables while it verifies (temp tables belong to
    # the connection, so staging takes no lock on the database), then moves them into
    # `fingerprints` and applies the other entries in index order in ONE short write
    # transaction (see node/follow/sync.py).

    def reset_staging(self, origin: str) -> None:
        """Empty the staging area of one log (each log stages under its own origin, so
        rounds of different logs sharing one connection never mix)."""
        self.db.execute("""CREATE TEMP TABLE IF NOT EXISTS staged_fingerprints (
            origin TEXT NOT NULL, idx INTEGER NOT NULL, signal TEXT NOT NULL, fingerprint BLOB NOT NULL,
            quality INTEGER, labels TEXT NOT NULL, day INTEGER NOT NULL, leaf_hash BLOB NOT NULL,
            PRIMARY KEY (origin, idx)) WITHOUT ROWID""")
        self.db.execute("""CREATE TEMP TABLE IF NOT EXISTS staged_entries (
            origin TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, leaf_hash BLOB NOT NULL,
            PRIMARY KEY (origin, idx)) WITHOUT ROWID""")
        self.db.execute("DELETE FROM temp.staged_fingerprints WHERE origin = ?", (origin,))
        self.db.execute("DELETE FROM temp.staged_entries WHERE origin = ?", (origin,))

    def stage(self, origin: str, fingerprints: list[tuple], others: list[tuple]) -> None:
        """fingerprints: (idx, signal, fingerprint, quality, labels, day, leaf_hash);
        others: (idx, entry bytes, leaf_hash) of every non-submission entry."""
        if fingerprints:
            self.db.conn.executemany("INSERT INTO temp.staged_fingerprints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                     ((origin, *row) for row in fingerprints))
        if others:
            self.db.conn.executemany("INSERT INTO temp.staged_entries VALUES (?, ?, ?, ?)",
                                     ((origin, *row) for row in others))

    def move_staged_fingerprints(self, origin: str) -> int:
        return self.db.execute("INSERT OR IGNORE INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, "
                               "leaf_hash) SELECT origin, idx, signal, fingerprint, quality, labels, day, leaf_hash "
                               "FROM temp.staged_fingerprints WHERE origin = ? ORDER BY idx", (origin,)).rowcount

    def staged_entries(self, origin: str) -> Iterator[tuple[int, bytes, bytes]]:
        """Staged non-submission entries in index order (few: read them all at once)."""
        return iter(self.db.execute("SELECT idx, data, leaf_hash FROM temp.staged_entries WHERE origin = ? ORDER BY idx",
                                    (origin,)).fetchall())

    def withdraw(self, origin: str, target: int, by_index: int) -> bool:
        """Mark fingerprint (origin, target) withdrawn by entry `by_index` of the same log.
        The first withdrawal wins; True when this call changed something."""
        return self.db.execute("UPDATE fingerprints SET withdrawn = 1, withdrawn_by = ? "
                               "WHERE origin = ? AND idx = ? AND withdrawn = 0", (by_index, origin, target)).rowcount > 0

    def known_leaf_hash(self, origin: str, index: int, own_origin: str | None) -> bytes | None:
        """The leaf hash this node knows for entry `index` of log `origin`: its own log's
        entries, or a followed log's submissions."""
        if own_origin is not None and origin == own_origin:
            row = self.db.execute("SELECT leaf_hash FROM log_entries WHERE idx = ?", (index,)).fetchone()
        else:
            row = self.db.execute("SELECT leaf_hash FROM fingerprints WHERE origin = ? AND idx = ?",
                                  (origin, index)).fetchone()
        return row[0] if row else None

    def add_feedback(self, from_origin: str, from_index: int, origin: str, index: int,
                     leaf_hash: bytes, verdict: str, entry_matches: bool | None) -> None:
        self.db.execute("INSERT OR IGNORE INTO follow_feedback (from_origin, from_idx, origin, idx, leaf_hash, verdict, "
                        "entry_matches) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (from_origin, from_index, origin, index, leaf_hash, verdict,
                         None if entry_matches is None else int(entry_matches)))

    def known_root(self, origin: str, size: int, own_origin: str | None) -> tuple[bool, bytes | None]:
        """(authoritative, root): the root this node knows for the tree of `size` entries of
        log `origin`. For its own log the answer is authoritative -- every checkpoint it
        ever published is recorded, so None means the log never had that size; for a
        followed log, a verified checkpoint of exactly that size, else (False, None)."""
        if own_origin is not None and origin == own_origin:
            try:
                row = self.db.execute("SELECT root_hash FROM log_checkpoints WHERE size = ?", (size,)).fetchone()
            except Exception:  # no publishing tables in this database
                return False, None
            return True, row[0] if row else None
        row = self.db.execute("SELECT root_hash FROM followed_checkpoints WHERE origin = ? AND size = ?",
                              (origin, size)).fetchone()
        return False, row[0] if row else None

    def add_ack(self, from_origin: str, from_index: int, origin: str, size: int, root_hash: bytes,
                time_ms: int, public_key: bytes, signature: bytes, valid: bool, root_ok: bool | None) -> bool:
        """Record an acknowledgement (idempotent); returns whether it is a step (see the
        module docstring)."""
        step = False
        if valid and root_ok is not False:
            row = self.db.execute("SELECT MAX(size) FROM follow_acks WHERE from_origin = ? AND origin = ? AND step = 1 "
                                  "AND from_idx < ?", (from_origin, origin, from_index)).fetchone()
            step = row[0] is None or size > row[0]
        self.db.execute("INSERT OR IGNORE INTO follow_acks (from_origin, from_idx, origin, size, root_hash, time_ms, "
                        "public_key, signature, valid, root_ok, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (from_origin, from_index, origin, size, root_hash, time_ms, public_key, signature, int(valid),
                         None if root_ok is None else int(root_ok), int(step)))
        return step

    def ack_covering(self, from_origin: str, origin: str, index: int) -> int | None:
        """When (ms) log `from_origin` first acknowledged a tree of `origin` holding entry
        `index`: the first step beyond it. None: not yet."""
        row = self.db.execute("SELECT time_ms FROM follow_acks WHERE from_origin = ? AND origin = ? AND step = 1 "
                              "AND size > ? ORDER BY size LIMIT 1", (from_origin, origin, index)).fetchone()
        return row[0] if row else None

    def ack_steps(self, from_origin: str, origin: str, above_size: int = 0) -> list[tuple[int, int]]:
        """(size, time_ms) of the steps of `from_origin` about `origin` beyond `above_size`,
        in log order (what protocol.acknowledgements.Timeline is built from)."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT size, time_ms FROM follow_acks WHERE from_origin = ? AND origin = ? AND step = 1 AND size > ? "
            "ORDER BY size", (from_origin, origin, above_size))]

    def latest_step(self, from_origin: str, origin: str) -> AckRow | None:
        row = self.db.execute(f"SELECT {_ACK_COLUMNS} FROM follow_acks WHERE from_origin = ? AND origin = ? AND step = 1 "
                              "ORDER BY size DESC LIMIT 1", (from_origin, origin)).fetchone()
        return _ack_row(row) if row else None

    def acks_at_size(self, origin: str, size: int) -> list[AckRow]:
        """Valid acknowledgements, not known to be false, of the tree of `size` entries of
        `origin` (the lines a receipt under that checkpoint can carry)."""
        return [_ack_row(r) for r in self.db.execute(
            f"SELECT {_ACK_COLUMNS} FROM follow_acks WHERE origin = ? AND size = ? AND valid = 1 "
            "AND (root_ok IS NULL OR root_ok != 0) ORDER BY from_origin, from_idx", (origin, size))]

    def acked_sizes(self, origin: str, at_least: int) -> list[int]:
        """Tree sizes of `origin`, at least `at_least`, that some followed log acknowledged."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT size FROM follow_acks WHERE origin = ? AND size >= ? AND valid = 1 AND (root_ok IS NULL OR root_ok != 0) "
            "ORDER BY size", (origin, at_least))]

    def false_acks(self, origin: str) -> list[AckRow]:
        """Acknowledgements of `origin` that are forged (bad cosignature) or name a tree
        that log never had."""
        return [_ack_row(r) for r in self.db.execute(
            f"SELECT {_ACK_COLUMNS} FROM follow_acks WHERE origin = ? AND (valid = 0 OR root_ok = 0) "
            "ORDER BY from_origin, from_idx", (origin,))]

    def ack_keys(self) -> dict[str, bytes]:
        """Per followed log, the public key of its latest valid acknowledgement."""
        out: dict[str, bytes] = {}
        for (from_origin,) in self.db.execute("SELECT origin FROM followed_logs").fetchall():
            row = self.db.execute("SELECT public_key FROM follow_acks WHERE from_origin = ? AND valid = 1 "
                                  "ORDER BY from_idx DESC LIMIT 1", (from_origin,)).fetchone()
            if row:
                out[from_origin] = row[0]
        return out

    def set_peer_metadata(self, origin: str, index: int, display_name: str, contact_url: str,
                          policy_url: str) -> None:
        """The latest announcement wins (a replayed older one never overwrites a newer one)."""
        self.db.execute("UPDATE followed_logs SET display_name = ?, contact_url = ?, policy_url = ?, announced_at = ? "
                        "WHERE origin = ? AND (announced_at IS NULL OR announced_at < ?)",
                        (display_name, contact_url, policy_url, index, origin, index))

    def record_rotation(self, origin: str, index: int, old_vkey: str, new_vkey: str,
                        honoured: bool, reason: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO follow_key_rotations (origin, idx, old_vkey, new_vkey, honoured, reason) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (origin, index, old_vkey, new_vkey, int(honoured), reason))
        if honoured:
            self.db.execute("UPDATE followed_logs SET vkey = ? WHERE origin = ?", (new_vkey, origin))
