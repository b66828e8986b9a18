"""Tables of the helpline case service (node/cases). Nothing here can name a person.

- `cases(id, lookup, pin_salt, pin_hash, pin_params, created_day, state, withdrawn_day,
  failed_pins, not_before)`: one row per case. `lookup` is HMAC-SHA256(case key, case
  number) (node/cases/hashes.py): the case number itself is stored nowhere. The PIN
  only as its scrypt hash, salt and parameters. Days are whole UTC days since
  1970-01-01. `state`:
      pending    being created: entries handed to the log, not yet acknowledged
      active     its submissions are published
      withdrawn  the person withdrew it (withdrawal entries follow, see below)
      abandoned  creation was interrupted (crash, log unavailable); nobody ever
                 received its number, its published entries are withdrawn
  `failed_pins` and `not_before` carry the per-case failed-PIN limit.
- `unknown_case_attempts(id = 1, attempts)`: one row, the number of PIN attempts that
  named no case. Counting one writes this row in the same kind of transaction that
  counts an attempt on a real case, so that both cost the same (the answer time must
  not tell whether a case number exists); the counters themselves are in memory
  (node/cases/limits.py, UnknownCaseCounters).
- `cases.withdrawn_reason`: the reason of the withdrawal entries of a withdrawn case:
  `withdrawn-by-person` (NULL in rows from before this column), or `abuse` when the
  operator withdrew it (`ncii-node cases withdraw`).
- `case_creations(hour, created, refused_address, refused_network, refused_budget,
  pow_asked)`: per UTC hour (hours since 1970), how many cases were stored and how many
  creations the limits refused or asked a proof of work of (node/cases/creation.py):
  counts only, about no case and no person. The last 24 rows seed the node-wide budget
  after a restart; `ncii-node status` shows them.
- `case_entries(case_id, position, leaf_hash, signal, low_quality, idx, checkpoint_size)`:
  the case's submission entries, by their leaf hash, then (once published) by their
  index in the log and the size of the first checkpoint that included them. This is
  the only link between a case and the log.
- `case_withdrawals(target, case_id, withdrawal_idx, checkpoint_size, day)`: for each
  withdrawn entry of a case, the index of the withdrawal entry that names it, the
  checkpoint that published it, and the day. A case's withdrawal is complete when
  every published entry of the case has a row here.

This module is the only code that touches these tables.

Contract of CaseRepository (`db.cases`), which the case service's crash argument
rests on (node/cases/service.py): each writing call is one transaction. A case is
stored `pending` with its entries' leaf hashes before any entry reaches the log
(`insert_pending_case`; CaseLookupTaken, and nothing written, when its lookup key is
taken); `publish_case`, `abandon_case` and `record_withdrawals` record where entries
landed, each at once for the whole case; `mark_withdrawn` is recorded before any
withdrawal entry is appended. `begin_pin_attempt` reads and counts an attempt in one
write transaction (attempts are counted one by one, whatever runs in parallel), and
costs the same whether the case exists or not. Lists come in id / position / index
order.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

AREA = "cases"

STATES = ("pending", "active", "withdrawn", "abandoned")


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(f"""CREATE TABLE cases (
        id INTEGER PRIMARY KEY,
        lookup BLOB NOT NULL UNIQUE,
        pin_salt BLOB NOT NULL,
        pin_hash BLOB NOT NULL,
        pin_params TEXT NOT NULL,
        created_day INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
        withdrawn_day INTEGER,
        failed_pins INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0
    )""")
    db.execute("CREATE INDEX cases_state ON cases(state) WHERE state IN ('pending', 'withdrawn', 'abandoned')")
    db.execute("""CREATE TABLE case_entries (
        case_id INTEGER NOT NULL REFERENCES cases(id),
        position INTEGER NOT NULL,
        leaf_hash BLOB NOT NULL,
        signal TEXT NOT NULL,
        low_quality INTEGER NOT NULL,
        idx INTEGER UNIQUE,
        checkpoint_size INTEGER,
        PRIMARY KEY (case_id, position)
    )""")
    db.execute("""CREATE TABLE case_withdrawals (
        target INTEGER PRIMARY KEY,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        withdrawal_idx INTEGER NOT NULL,
        checkpoint_size INTEGER NOT NULL,
        day INTEGER NOT NULL
    )""")
    db.execute("CREATE INDEX case_withdrawals_case ON case_withdrawals(case_id)")


def _v2(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE unknown_case_attempts (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "attempts INTEGER NOT NULL)")
    db.execute("INSERT INTO unknown_case_attempts (id, attempts) VALUES (1, 0)")


def _v3(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE cases ADD COLUMN withdrawn_reason TEXT")
    db.execute("""CREATE TABLE case_creations (
        hour INTEGER PRIMARY KEY,
        created INTEGER NOT NULL DEFAULT 0,
        refused_address INTEGER NOT NULL DEFAULT 0,
        refused_network INTEGER NOT NULL DEFAULT 0,
        refused_budget INTEGER NOT NULL DEFAULT 0,
        pow_asked INTEGER NOT NULL DEFAULT 0
    )""")


MIGRATIONS = [_v1, _v2, _v3]


@dataclass(frozen=True)
class CaseRow:
    id: int
    pin_salt: bytes
    pin_hash: bytes
    pin_params: str
    created_day: int
    state: str
    withdrawn_day: int | None
    failed_pins: int
    not_before: float
    withdrawn_reason: str | None = None


@dataclass(frozen=True)
class CaseEntry:
    position: int
    leaf_hash: bytes
    signal: str
    low_quality: bool
    idx: int | None
    checkpoint_size: int | None


@dataclass(frozen=True)
class WithdrawalRow:
    target: int
    withdrawal_idx: int
    checkpoint_size: int
    day: int


_CASE_COLUMNS = ("id, pin_salt, pin_hash, pin_params, created_day, state, withdrawn_day, failed_pins, not_before, "
                 "withdrawn_reason")


class CaseLookupTaken(Exception):
    """A case with that lookup key (that case number) exists: draw another number."""


class CaseRepository:
    """The helpline's cases (contract above)."""

    def __init__(self, db):
        self.db = db

    def withdrawal_groups(self, since_size: int, limit: int) -> list[tuple[int, int, int]]:
        """The cases' withdrawal entries published in checkpoints after `since_size`, by the
        checkpoint that first held them: [(checkpoint size, how many withdrawal entries,
        greatest index)], the newest `limit` checkpoints (node/acks/report.py)."""
        return self.db.execute(
            "SELECT checkpoint_size, COUNT(DISTINCT withdrawal_idx), MAX(withdrawal_idx) FROM case_withdrawals "
            "WHERE withdrawal_idx >= ? GROUP BY checkpoint_size ORDER BY checkpoint_size DESC LIMIT ?",
            (since_size, limit)).fetchall()

    def insert_pending_case(self, lookup: bytes, pin_salt: bytes, pin_hash: bytes,
                            pin_params: str, day: int, entries: list[tuple[bytes, str, bool]],
                            hour: int | None = None) -> int:
        """Store a new case (state pending) and its entries' leaf hashes, in one
        transaction, and count it in its UTC `hour` of `case_creations`. Raises
        CaseLookupTaken if `lookup` is taken."""
        with self.db.atomic():
            if hour is not None:
                self.db.execute("INSERT INTO case_creations (hour, created) VALUES (?, 1) "
                                "ON CONFLICT(hour) DO UPDATE SET created = case_creations.created + 1", (hour,))
            try:
                (case_id,) = self.db.execute(
                    "INSERT INTO cases (lookup, pin_salt, pin_hash, pin_params, created_day, state) "
                    "VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
                    (lookup, pin_salt, pin_hash, pin_params, day)).fetchone()
            except self.db.IntegrityError:
                raise CaseLookupTaken() from None
            self.db.conn.executemany(
                "INSERT INTO case_entries (case_id, position, leaf_hash, signal, low_quality) VALUES (?, ?, ?, ?, ?)",
                [(case_id, position, leaf, signal, int(low)) for position, (leaf, signal, low) in enumerate(entries)])
        return case_id

    def publish_case(self, case_id: int, published: list[tuple[int, int]],
                     state: str = "active") -> None:
        """Record where each entry (in position order) landed: (index, checkpoint size)."""
        with self.db.atomic():
            self.db.conn.executemany(
                "UPDATE case_entries SET idx = ?, checkpoint_size = ? WHERE case_id = ? AND position = ?",
                [(idx, size, case_id, position) for position, (idx, size) in enumerate(published)])
            self.db.execute("UPDATE cases SET state = ? WHERE id = ?", (state, case_id))

    def get_case(self, case_id: int) -> CaseRow:
        return CaseRow(*self.db.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,)).fetchone())

    def begin_pin_attempt(self, lookup: bytes, now: float, policy,
                          unknown, may_pass_guard: bool = False) -> tuple[CaseRow | None, "Attempt"]:
        """Find the case a person can reach with this lookup key (active or withdrawn) and
        count one PIN attempt on it -- as failed until `pin_succeeded` -- or refuse it while
        a wait or lock runs (a guard lets through an attempt whose network `may_pass_guard`:
        node/cases/limits.py). Returns (the case or None, the Attempt). Read and update
        happen in one write transaction, so parallel attempts are counted one by one.

        When no case answers, the attempt is counted on `unknown` (in memory, same policy:
        node.cases.limits.UnknownCaseCounters) and the `unknown_case_attempts` row is
        written instead of the case's: the same transaction, the same kind of write,
        whether the case exists or not."""
        with self.db.atomic():
            row = self.db.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE lookup = ? "
                                  "AND state IN ('active', 'withdrawn')", (lookup,)).fetchone()
            case = CaseRow(*row) if row else None
            if case is None:
                attempt = unknown.attempt(lookup, now, may_pass_guard)
                if attempt.refused is None:
                    self.db.execute("UPDATE unknown_case_attempts SET attempts = attempts + 1 WHERE id = 1")
            else:
                attempt = policy.attempt(case.failed_pins, case.not_before, now, may_pass_guard)
                if attempt.refused is None:
                    self.db.execute("UPDATE cases SET failed_pins = ?, not_before = ? WHERE id = ?",
                                    (attempt.failures, attempt.not_before, case.id))
        return case, attempt

    def pin_succeeded(self, case_id: int, before: tuple[int, float] | None = None) -> None:
        """The right PIN: take back the attempt counted for it. `before` = the case's
        (failed_pins, not_before) before that attempt: they are restored, unless another
        attempt changed them since (then only this one is taken back). The wrong PINs of
        others stay counted (the case's guard, node/cases/limits.py); without `before`,
        everything is cleared."""
        if before is None:
            self.db.execute("UPDATE cases SET failed_pins = 0, not_before = 0 WHERE id = ?", (case_id,))
            return
        failures, not_before = before
        with self.db.atomic():
            self.db.execute("UPDATE cases SET failed_pins = CASE WHEN failed_pins > 0 THEN failed_pins - 1 ELSE 0 END WHERE id = ?", (case_id,))
            self.db.execute("UPDATE cases SET not_before = ? WHERE id = ? AND failed_pins = ?",
                            (not_before, case_id, failures))

    def unknown_attempts(self) -> int:
        """How many PIN attempts named no case (a count, nothing more)."""
        return self.db.execute("SELECT attempts FROM unknown_case_attempts WHERE id = 1").fetchone()[0]

    def entries_of(self, case_id: int) -> list[CaseEntry]:
        return [CaseEntry(p, h, s, bool(low), idx, size) for p, h, s, low, idx, size in self.db.execute(
            "SELECT position, leaf_hash, signal, low_quality, idx, checkpoint_size FROM case_entries "
            "WHERE case_id = ? ORDER BY position", (case_id,))]

    def withdrawals_of(self, case_id: int) -> list[WithdrawalRow]:
        return [WithdrawalRow(*row) for row in self.db.execute(
            "SELECT target, withdrawal_idx, checkpoint_size, day FROM case_withdrawals WHERE case_id = ? "
            "ORDER BY target", (case_id,))]

    def mark_withdrawn(self, case_id: int, day: int, reason: str = "withdrawn-by-person") -> None:
        """Record the person's request, or the operator's (before any withdrawal entry is
        appended, so that a crash in between leaves a case that start-up finishes
        withdrawing, with the same reason)."""
        self.db.execute("UPDATE cases SET state = 'withdrawn', withdrawn_day = COALESCE(withdrawn_day, ?), "
                        "withdrawn_reason = COALESCE(withdrawn_reason, ?) WHERE id = ? AND state = 'active'",
                        (day, reason, case_id))

    def active_cases_published_in(self, first_size: int, last_size: int) -> list[int]:
        """Active cases whose entries were first published by a checkpoint of size in
        (first_size, last_size]: the cases opened in a stretch of the log."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT c.id FROM cases c JOIN case_entries e ON e.case_id = c.id "
            "WHERE c.state = 'active' AND e.checkpoint_size > ? AND e.checkpoint_size <= ? ORDER BY c.id",
            (first_size, last_size))]

    def add_creation_counts(self, hour: int, refused: dict[str, int], pow_asked: int) -> None:
        """Add refusals ("address", "network", "hour-budget", "day-budget") and proofs of
        work asked to the row of `hour`."""
        budget = refused.get("hour-budget", 0) + refused.get("day-budget", 0)
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO case_creations (hour, refused_address, refused_network, refused_budget, pow_asked) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(hour) DO UPDATE SET "
                "refused_address = case_creations.refused_address + excluded.refused_address, "
                "refused_network = case_creations.refused_network + excluded.refused_network, "
                "refused_budget = case_creations.refused_budget + excluded.refused_budget, "
                "pow_asked = case_creations.pow_asked + excluded.pow_asked",
                (hour, refused.get("address", 0), refused.get("network", 0), budget, pow_asked))

    def creation_counts(self, since_hour: int) -> list[tuple[int, int, int, int, int, int]]:
        """Rows of `case_creations` from `since_hour` on: (hour, created, refused_address,
        refused_network, refused_budget, pow_asked)."""
        return [tuple(r) for r in self.db.execute(
            "SELECT hour, created, refused_address, refused_network, refused_budget, pow_asked FROM case_creations "
            "WHERE hour >= ? ORDER BY hour", (since_hour,))]

    def unwithdrawn_targets(self, case_id: int) -> list[int]:
        """Published entries of the case that no recorded withdrawal names yet."""
        return [r[0] for r in self.db.execute(
            "SELECT e.idx FROM case_entries e LEFT JOIN case_withdrawals w ON w.target = e.idx "
            "WHERE e.case_id = ? AND e.idx IS NOT NULL AND w.target IS NULL ORDER BY e.idx", (case_id,))]

    def record_withdrawals(self, case_id: int, rows: list[tuple[int, int, int, int]]) -> None:
        """rows: (target, withdrawal entry index, checkpoint size, day)."""
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO case_withdrawals (target, case_id, withdrawal_idx, checkpoint_size, day) "
                "VALUES (?, ?, ?, ?, ?)", [(t, case_id, w, c, d) for t, w, c, d in rows])

    def cases_in_state(self, state: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM cases WHERE state = ? ORDER BY id", (state,))]

    def cases_to_finish_withdrawing(self) -> list[int]:
        """Withdrawn or abandoned cases with a published entry not yet withdrawn."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT c.id FROM cases c JOIN case_entries e ON e.case_id = c.id "
            "LEFT JOIN case_withdrawals w ON w.target = e.idx "
            "WHERE c.state IN ('withdrawn', 'abandoned') AND e.idx IS NOT NULL AND w.target IS NULL ORDER BY c.id")]

    def claimed_indices(self, indices: list[int]) -> set[int]:
        """Which of these log indices already belong to some case."""
        found: set[int] = set()
        for start in range(0, len(indices), 500):
            chunk = indices[start:start + 500]
            found.update(r[0] for r in self.db.execute(
                f"SELECT idx FROM case_entries WHERE idx IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def abandon_case(self, case_id: int, found: dict[int, tuple[int, int]]) -> None:
        """Mark an interrupted creation abandoned, recording where its entries were found
        in the log ({position: (index, checkpoint size)})."""
        with self.db.atomic():
            self.db.conn.executemany(
                "UPDATE case_entries SET idx = ?, checkpoint_size = ? WHERE case_id = ? AND position = ?",
                [(idx, size, case_id, position) for position, (idx, size) in found.items()])
            self.db.execute("UPDATE cases SET state = 'abandoned' WHERE id = ?", (case_id,))

    def counts(self) -> dict[str, int]:
        out = {state: 0 for state in STATES}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM cases GROUP BY state"):
            out[state] = n
        return out
