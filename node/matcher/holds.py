"""What the match index holds back from each followed log: budgets and held clusters.

A followed log is trusted to publish fingerprints of real cases, not to decide how
fast a platform matches. Two rules keep any one log from slowing matching (issue 19;
spec/parts/matching-api.md, "Budgets and held clusters"):

- **Budgets** per log: at most `max_fingerprints` of its fingerprints in the index,
  and at most `max_per_hour` / `max_per_day` put into it per clock hour / over the
  last 24 clock hours. Defaults (config.toml `[match]`) are far above what a real
  helpline publishes; the operator sets a log's own (`ncii-node match-budget`).
  Fingerprints beyond a budget are verified and stored as always, and held
  (reason `budget`) until the budget allows them: rate holds go in as the hours pass,
  a size hold when the operator raises the budget or entries are withdrawn.
- **Held clusters**: when a log has `cluster_size` (1,000) or more fingerprints within
  `CLUSTER_RADIUS` (8) bits of one centre (the index groups near-duplicates, so it
  finds them), they are held (reason `cluster`) until the operator releases the
  cluster (`ncii-node match-release`); later fingerprints of that log near a held
  cluster are held with it at once. The log's earliest `cluster_keep` (16) members
  stay in the index, so the picture the cluster is made of still matches; a real
  duplicate (the same image from several people, a few dozen times) is far below
  the threshold and simply matches, as a group (spec/parts/matching.md).

Holds are written to the database (node/store/matching.py) before the fingerprints
they concern would have been indexed, so they survive restarts; `ncii-node status`
shows them loudly. This module decides; node/matcher/service.py applies.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from node.matcher.pdq_index import GROUP_RADIUS
from node.store import connect
from node.store.matching import MatchingRepository

log = logging.getLogger(__name__)

CLUSTER_RADIUS = GROUP_RADIUS
DEFAULT_CLUSTER_SIZE = 1000
DEFAULT_CLUSTER_KEEP = 16
HOUR = 3600
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)


@dataclass(frozen=True)
class Budget:
    """A log's budgets (the defaults never bind a real helpline: the whole of
    StopNCII held a few million hashes when this was written)."""

    max_fingerprints: int = 20_000_000
    max_per_hour: int = 2_000_000
    max_per_day: int = 10_000_000

    def with_overrides(self, values: dict[str, int | None]) -> Budget:
        return Budget(**{key: getattr(self, key) if values.get(key) is None else values[key]
                         for key in ("max_fingerprints", "max_per_hour", "max_per_day")})


@dataclass
class HeldCluster:
    id: int
    origin: str
    centre: bytes
    released: bool


@dataclass
class _Log:
    """What is held of one log, in memory: sorted log indices, per reason."""

    cluster: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    budget: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    intake: dict[int, int] = field(default_factory=dict)  # clock hour -> fingerprints indexed


def _merge(sorted_indices: np.ndarray, new) -> np.ndarray:
    return np.union1d(sorted_indices, np.asarray(new, dtype=np.int64))


def distances(fingerprints: np.ndarray, centre: bytes) -> np.ndarray:
    return _POPCOUNT[fingerprints ^ np.frombuffer(centre, dtype=np.uint8)].sum(axis=1)


class Holds:
    """Budgets and held clusters of every followed log (thread-safe). With `db_path`,
    every hold, release and intake count is written to the database at once."""

    def __init__(self, defaults: Budget | None = None, *, cluster_size: int = DEFAULT_CLUSTER_SIZE,
                 cluster_keep: int = DEFAULT_CLUSTER_KEEP):
        self.defaults = defaults or Budget()
        self.cluster_size = cluster_size
        self.cluster_keep = cluster_keep
        self._lock = threading.RLock()
        self._logs: dict[str, _Log] = {}
        self._budgets: dict[str, dict[str, int | None]] = {}
        self._clusters: list[HeldCluster] = []
        self._db_path: Path | None = None
        self._db = None
        self.clock = time.time  # tests move time forward

    # ------------------------------------------------------------------ state

    def load(self, db, db_path: Path | None) -> None:
        """Read budgets, clusters, holds and intake (`db`: the matcher's build snapshot,
        returning text as str); later writes go to `db_path` (None: nowhere)."""
        with self._lock:
            self._db_path = db_path
            self._logs.clear()
            stored = MatchingRepository(db)
            self._budgets = stored.budgets()
            self._clusters = [HeldCluster(c.id, c.origin, c.centre, not c.held) for c in stored.clusters()]
            for origin, reasons in stored.all_held().items():
                entry = self._log(origin)
                entry.cluster = np.asarray(reasons.get("cluster", []), dtype=np.int64)
                entry.budget = np.asarray(reasons.get("budget", []), dtype=np.int64)
            for origin, hours in stored.intake().items():
                self._log(origin).intake = hours

    def _log(self, origin: str) -> _Log:
        entry = self._logs.get(origin)
        if entry is None:
            entry = self._logs[origin] = _Log()
        return entry

    def database(self, function, *args):
        """function(db, *args) in one transaction on the holds' connection (None
        without a database: a matcher built read-only decides holds in memory only)."""
        if self._db_path is None:
            return None
        if self._db is not None and getattr(self._db, "broken", False):  # PostgreSQL went away: a new one
            self._db.close()
            self._db = None
        if self._db is None:
            self._db = connect(self._db_path, check_same_thread=False)
        with self._db.atomic():
            return function(self._db, *args)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def budget(self, origin: str) -> Budget:
        return self.defaults.with_overrides(self._budgets.get(origin, {}))

    def set_budget(self, origin: str, values: dict[str, int | None]) -> Budget:
        """Record new budgets of one log (already written to the database by the caller)."""
        with self._lock:
            current = dict(self._budgets.get(origin, {}))
            current.update(values)
            self._budgets[origin] = current
            return self.budget(origin)

    def adopt(self, stored: MatchingRepository) -> dict[str, np.ndarray]:
        """Another process of the node changed budgets, released a cluster or let
        fingerprints out of a hold (PostgreSQL): take the database's budgets, released
        clusters and intake, and drop from memory the holds it no longer has. Returns,
        per log, the indices no longer held, for the caller to index (nothing is
        written: the other process did)."""
        with self._lock:
            self._budgets = stored.budgets()
            self.adopt_clusters(stored.clusters())
            held = stored.all_held()
            freed: dict[str, np.ndarray] = {}
            for origin, entry in self._logs.items():
                # Held for any reason in the database stays held here (two processes may
                # have held one fingerprint for different reasons: the row keeps the last).
                stored_held = np.asarray([i for indices in held.get(origin, {}).values() for i in indices],
                                         dtype=np.int64)
                for reason in ("cluster", "budget"):
                    mine = getattr(entry, reason)
                    gone = np.setdiff1d(mine, stored_held)
                    if len(gone):
                        setattr(entry, reason, np.setdiff1d(mine, gone))
                        freed[origin] = np.union1d(freed.get(origin, gone), gone)
            for origin, hours in stored.intake().items():
                self._log(origin).intake = hours
            return freed

    def adopt_clusters(self, stored: list) -> None:
        """The database's clusters (node.store.matching.Cluster): new ones, and releases."""
        with self._lock:
            released = {c.id for c in stored if not c.held}
            for cluster in self._clusters:
                cluster.released = cluster.released or cluster.id in released
            known = {c.id for c in self._clusters}
            self._clusters += [HeldCluster(c.id, c.origin, c.centre, not c.held) for c in stored
                               if c.id not in known]

    def adopt_held(self, origin: str, held: dict[str, list[int]]) -> None:
        """(A process that does not decide) holds the sequencing process wrote for new
        entries of `origin` (reason -> indices), taken over before they are indexed."""
        with self._lock:
            entry = self._log(origin)
            for reason, indices in held.items():
                setattr(entry, reason, _merge(getattr(entry, reason), indices))

    def adopt_intake(self, intake: dict[str, dict[int, int]]) -> None:
        """(A process that does not decide) the intake the deciding process counted: in
        force here should this process decide next (it takes the lease)."""
        with self._lock:
            for origin, hours in intake.items():
                self._log(origin).intake = hours

    def hold_in_memory(self, origin: str, indices: list[int]) -> None:
        """Keep these out of the index without writing a hold (a process that does not
        decide, at start-up: the deciding process writes the hold)."""
        with self._lock:
            entry = self._log(origin)
            entry.budget = _merge(entry.budget, indices)

    def held(self, origin: str, indices: np.ndarray) -> np.ndarray:
        """Which of these log indices are held (any reason)."""
        entry = self._logs.get(origin)
        if entry is None or not len(indices):
            return np.zeros(len(indices), dtype=bool)
        return np.isin(indices, entry.cluster) | np.isin(indices, entry.budget)

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {origin: {"cluster": len(e.cluster), "budget": len(e.budget)}
                    for origin, e in self._logs.items() if len(e.cluster) or len(e.budget)}

    def clusters(self, origin: str | None = None) -> list[HeldCluster]:
        with self._lock:
            return [c for c in self._clusters if origin is None or c.origin == origin]

    # ------------------------------------------------------------------ deciding

    def split(self, origin: str, indices: np.ndarray, near_rows: np.ndarray, near_keys: np.ndarray,
              indexed: int, now: float | None = None) -> np.ndarray:
        """Which new fingerprints of `origin` go in the index now (a boolean mask over
        `indices`, ascending log indices). `near_rows` are the positions of those that
        may join a held cluster (of a signal whose index clusters, PDQ:
        node/matcher/signal_indexes.py) and `near_keys` their 32 bytes in PDQ space
        (n x 32): those near a held cluster of the log join it; then the budgets cut
        the rest, latest first. Holds are written to the database before the caller
        indexes anything."""
        now = self.clock() if now is None else now
        admit = np.ones(len(indices), dtype=bool)
        with self._lock:
            by_cluster: dict[int, list[int]] = {}
            for cluster in self._clusters:
                if cluster.released or cluster.origin != origin or not len(near_rows):
                    continue
                near = near_rows[(distances(near_keys, cluster.centre) <= CLUSTER_RADIUS) & admit[near_rows]]
                if len(near):
                    admit[near] = False
                    by_cluster.setdefault(cluster.id, []).extend(indices[near].tolist())
            budget = self.budget(origin)
            entry = self._log(origin)
            hour = int(now // HOUR)
            last_hour = entry.intake.get(hour, 0)
            last_day = sum(count for h, count in entry.intake.items() if h > hour - 24)
            room = max(0, min(budget.max_fingerprints - indexed, budget.max_per_hour - last_hour,
                              budget.max_per_day - last_day))
            candidates = np.flatnonzero(admit)
            over = candidates[room:]
            admit[over] = False
            for cluster_id, held in by_cluster.items():
                self._hold(origin, held, "cluster", cluster_id, now)
            if len(over):
                self._hold(origin, indices[over].tolist(), "budget", None, now)
                log.warning("match: %d fingerprints of %s held: beyond its budgets (%s); they go in the index "
                            "as the budgets allow (ncii-node match-budget)", len(over), origin, _describe(budget))
            admitted = int(admit.sum())
            if admitted:
                entry.intake[hour] = last_hour + admitted
                self.database(_add_intake, origin, hour, admitted)
        return admit

    def hold_budget(self, origin: str, indices: list[int], now: float | None = None) -> None:
        """Hold these fingerprints beyond the log's budget (found at start-up)."""
        with self._lock:
            self._hold(origin, indices, "budget", None, self.clock() if now is None else now)
            log.warning("match: %d fingerprints of %s held: beyond its budget of %s fingerprints in the index",
                        len(indices), origin, f"{self.budget(origin).max_fingerprints:,}")

    def _hold(self, origin: str, indices: list[int], reason: str, cluster: int | None, now: float) -> None:
        self.database(lambda db: db.matching.hold(origin, indices, reason, cluster, now))
        entry = self._log(origin)
        setattr(entry, reason, _merge(getattr(entry, reason), indices))

    def quarantine(self, origin: str, centre: bytes, radius: int, members: np.ndarray,
                   now: float | None = None) -> tuple[int, np.ndarray]:
        """A dense cluster of `origin` found in the index (`members`: log indices). It
        joins the log's held cluster around that centre, or becomes a new one whose
        earliest `cluster_keep` members stay indexed. Returns the cluster's id and the
        indices to take out of the index (already written down as held)."""
        now = self.clock() if now is None else now
        members = np.sort(np.asarray(members, dtype=np.int64))
        with self._lock:
            existing = next((c for c in self._clusters if c.origin == origin and not c.released
                             and distances(np.frombuffer(c.centre, dtype=np.uint8)[None, :], centre)[0]
                             <= CLUSTER_RADIUS), None)
            if existing is None:
                cluster_id = self.database(lambda db: db.matching.add_cluster(origin, centre, radius, now))
                if cluster_id is None:  # no database: number them here
                    cluster_id = 1 + max((c.id for c in self._clusters), default=0)
                self._clusters.append(HeldCluster(cluster_id, origin, centre, False))
                members = members[self.cluster_keep:]
            else:
                cluster_id = existing.id
            if len(members):
                self._hold(origin, members.tolist(), "cluster", cluster_id, now)
            log.warning("match: HELD cluster %d of %s: %d fingerprints within %d bits of one another are held out "
                        "of the index until the operator releases them (ncii-node status; ncii-node match-release)",
                        cluster_id, origin, len(members), 2 * CLUSTER_RADIUS)
        return cluster_id, members

    def is_released_near(self, origin: str, centre: bytes) -> bool:
        """Did the operator release a cluster of this log around this centre?"""
        with self._lock:
            return any(c.released and c.origin == origin and
                       distances(np.frombuffer(c.centre, dtype=np.uint8)[None, :], centre)[0] <= CLUSTER_RADIUS
                       for c in self._clusters)

    def release_cluster(self, cluster_id: int, indices: list[int]) -> HeldCluster | None:
        """The operator released this cluster (written to the database by the caller)."""
        with self._lock:
            cluster = next((c for c in self._clusters if c.id == cluster_id), None)
            if cluster is None or cluster.released:
                return None
            cluster.released = True
            entry = self._log(cluster.origin)
            entry.cluster = np.setdiff1d(entry.cluster, np.asarray(indices, dtype=np.int64))
            return cluster

    def budget_room(self, origin: str, indexed: int, now: float | None = None) -> tuple[np.ndarray, Budget]:
        """Budget-held indices of `origin` that the budgets now allow (earliest first)."""
        now = self.clock() if now is None else now
        with self._lock:
            entry = self._logs.get(origin)
            budget = self.budget(origin)
            if entry is None or not len(entry.budget):
                return np.empty(0, dtype=np.int64), budget
            hour = int(now // HOUR)
            last_day = sum(count for h, count in entry.intake.items() if h > hour - 24)
            room = max(0, min(budget.max_fingerprints - indexed, budget.max_per_hour - entry.intake.get(hour, 0),
                              budget.max_per_day - last_day))
            return entry.budget[:room], budget

    def unhold_budget(self, origin: str, indices: np.ndarray, now: float | None = None) -> None:
        """These budget-held fingerprints go in the index now (counted as intake)."""
        now = self.clock() if now is None else now
        with self._lock:
            entry = self._log(origin)
            self.database(lambda db: db.matching.unhold(origin, indices.tolist()))
            entry.budget = np.setdiff1d(entry.budget, indices)
            hour = int(now // HOUR)
            entry.intake[hour] = entry.intake.get(hour, 0) + len(indices)
            self.database(_add_intake, origin, hour, len(indices))

    @property
    def persistent(self) -> bool:
        return self._db_path is not None

    def origins_with_budget_holds(self) -> list[str]:
        with self._lock:
            return [origin for origin, e in self._logs.items() if len(e.budget)]

    def forget(self, origin: str) -> None:
        with self._lock:
            self._logs.pop(origin, None)
            self.database(lambda db: db.matching.forget_log(origin))


def _add_intake(db, origin: str, hour: int, count: int) -> None:
    db.matching.add_intake(origin, hour, count)


def _describe(budget: Budget) -> str:
    return (f"{budget.max_fingerprints:,} in the index, {budget.max_per_hour:,} per hour, "
            f"{budget.max_per_day:,} per day")
