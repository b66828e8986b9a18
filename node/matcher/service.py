"""The matcher service: in-memory indexes of every active fingerprint of every followed log.

A platform node asks "does this upload match anything the helplines I follow
published?" `Matcher` answers from memory, exactly. Each signal type has its own index
class (node/matcher/signal_indexes.py, one table `SIGNAL_INDEXES` by signal code: PDQ
photos in the exact PDQ index, video MD5 in a dict, vPDQ videos by their frames);
this service keeps what is common to them and never tests a signal's name or code:

- the entry table (node/matcher/entries.py): a dense entry id per indexed item, its
  (origin, log index), and per followed log its threshold and an array log index ->
  entry id, so a withdrawal finds its targets without any database read;
- active = neither withdrawn nor suppressed nor held. A followed log cannot slow
  matching (node/matcher/holds.py): fingerprints beyond its budgets, and dense
  clusters it publishes (found by the indexes whose entries cluster: PDQ), are held
  out of the index (and written down) until budgets or the operator allow them;
- queueing while the index is built, locking, and describing hits from the database.

Invariants:

- Entry ids are never reused while the process runs, so an id found by a search
  always names the same (origin, index).
- `withdraw` and `suppress` take effect for every search that starts after they
  return (the indexes guarantee it, and results are re-checked against the entry's
  state). The follower calls `on_withdrawn` BEFORE it commits a round, so a
  withdrawal stops matching before the follower reports the batch applied.
- Thresholds are per followed log; each index applies them (spec/parts/matching-api.md).
- While the index is built at start-up (`load`), listener events are queued and
  replayed in order once the snapshot is loaded, so nothing the follower applies
  during the build is lost or resurrected; searches meanwhile raise MatcherLoading.

Building reads the database through one read snapshot (node.store.matching.
IndexSnapshot): the fingerprints of an index with a fixed size (`bulk_size`: PDQ) in
chunks with one aggregate query per log and range, `group_concat` of the blobs
straight into numpy, loaded in one bulk pass (about a million rows per second, not a
Python loop per row); the others row by row; the holds' tables.

The service knows entries only by (origin, index); describing reads labels, quality
and the feedback summary of the matched entries from the database, once per distinct
entry, and keeps them until the follower applies feedback (node/matcher/answers.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from node.errors import Unavailable
from node.follow.listener import FollowListener
from node.matcher.answers import NEAREST, Descriptions, Found, QueryResult, described, read_tails, wanted_by
from node.matcher.entries import GONE, NO_ID, Entries
from node.matcher.holds import Budget, Holds
from node.matcher.signal_indexes import SIGNAL_INDEXES, Hit, SignalIndex, index_options
from node.store import connect, is_postgres
from node.store.matching import IndexSnapshot, index_snapshot
from protocol.errors import SignalError, UsageError
from protocol.signals import DEFAULT_PDQ_THRESHOLD, MAX_QUALITY, signal_named

log = logging.getLogger(__name__)

MAX_THRESHOLD = 256
DEFAULT_MAX_MATCHES = 100
ADD_BATCH = 65536  # rows per add_many from the follower's listener

__all__ = ["DEFAULT_MAX_MATCHES", "Found", "Hit", "Matcher", "MatcherLoading", "Query", "QueryResult", "describe",
           "describe_many"]


class MatcherLoading(Unavailable):
    """The index is still being built from the database; try again in a moment."""

    def __init__(self, message: str):
        super().__init__(message, wait=1)


@dataclass(frozen=True)
class Query:
    """One fingerprint to look up: a signal name and its canonical bytes."""

    signal: str
    fingerprint: bytes

    @classmethod
    def from_json(cls, obj: Any) -> Query:
        """From the JSON shape `ncii-node hash --json` prints:
        {"signal": "pdq", "fingerprint": "<64 hex>", ...}. Raises SignalError."""
        if not isinstance(obj, dict):
            raise SignalError('a query is an object like {"signal": "pdq", "fingerprint": "<64 hex>"}')
        if "fingerprint" not in obj:
            raise SignalError('a query needs "signal" and "fingerprint"')
        signal = signal_named(obj.get("signal"))
        # What `hash --json` adds beside a fingerprint is not used by a match, but it
        # is typed in the API's schema: a wrong type is refused, not ignored.
        quality = obj.get("quality", 0)
        if type(quality) is not int or not 0 <= quality <= MAX_QUALITY:
            raise SignalError(f"quality must be an integer from 0 to {MAX_QUALITY}, not {quality!r}")
        if "low_quality" in obj and type(obj["low_quality"]) is not bool:
            raise SignalError("low_quality must be true or false")
        return cls(signal.name, signal.parse_json(obj["fingerprint"]))


def _active_fingerprints(db, origin: str, indices) -> list:
    """(for `holds.database`) the active fingerprints of `origin` at these indices."""
    return db.follow.fingerprints_at(origin, indices)


class Matcher(FollowListener):
    """In-memory match indexes of the active fingerprints of every followed log.

    Plug it into the follower as its listener; `load(db_path)` builds it from the
    database (create it with `pending_load=True` when the follower may call it before
    the load starts). `match(queries)` answers; `withdraw`/`suppress` drop entries at once.
    Keyword `options` go to the index class that declares them (e.g.
    `vpdq_query_coverage`, `vpdq_indexed_coverage`: node/matcher/signal_indexes.py).
    """

    def __init__(self, *, default_threshold: int = DEFAULT_PDQ_THRESHOLD,
                 thresholds: Mapping[str, int] | None = None,
                 threads: int | None = None, pending_load: bool = False,
                 budget: Budget | None = None, cluster_size: int | None = None, cluster_keep: int | None = None,
                 **options: Any):
        _check_threshold(default_threshold)
        known = index_options()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"Matcher() got unexpected keyword arguments: {', '.join(unknown)}")
        self._options = options
        self.default_threshold = default_threshold
        self.threads = threads
        self._lock = threading.RLock()   # serializes changes; searches do not take it
        # While `load` builds, it alone changes the structures: every other change is
        # queued (`_queueing`) and replayed after; searches wait for `_ready`.
        # `pending_load`: a `load` will follow; queue events from now on (the follower
        # may start before the build does) and refuse searches until it is done.
        self._queueing = pending_load
        self._ready = not pending_load
        self._queued: list[tuple] = []
        self._cancel_load = threading.Event()
        self._db_path: Path | None = None
        self._read_only = False
        self._readers = threading.local()    # per-thread read connections for `describe`
        self._reader_list: list = []
        self._explicit_thresholds: dict[str, int] = {}
        self.holds = Holds(budget, **{k: v for k, v in (("cluster_size", cluster_size),
                                                        ("cluster_keep", cluster_keep)) if v is not None})
        self._reset()
        for origin, threshold in (thresholds or {}).items():
            _check_threshold(threshold)
            self._apply_threshold(origin, threshold)  # a database's thresholds take precedence at `load`
        self.build_seconds: float | None = None
        # PostgreSQL: whether this process decides holds (the sequencing process; the
        # others adopt them, node/matcher/replica.py), and per log the size up to which a
        # process that does not decide may build its index (the decided sizes).
        self.decides: Callable[[], bool] = lambda: True
        self.load_limits: dict[str, int] | None = None

    def _reset(self) -> None:
        self._entries = Entries(self.default_threshold)
        # One index per registered signal type, each given the options its class declares.
        self._indexes: dict[int, SignalIndex] = {
            code: cls(self._entries, threads=self.threads,
                      **{k: v for k, v in self._options.items() if k in cls.options})
            for code, cls in SIGNAL_INDEXES.items()}
        self._by_name: dict[str, SignalIndex] = {index.signal.name: index for index in self._indexes.values()}
        self._suppressed: dict[tuple[str, int], bytes | None] = {}  # (origin, index) -> leaf hash
        self.descriptions = Descriptions()  # what describing read, until the follower applies feedback
        self._over_budget: dict[str, list[int]] = {}  # held back at start-up, written down after

    # ------------------------------------------------------------------ origins, thresholds

    def _origin_code(self, origin: str) -> int:
        return self._entries.origin_code(origin, self._explicit_thresholds.get(origin, self.default_threshold))

    def set_threshold(self, origin: str, threshold: int | None) -> None:
        """The PDQ (and vPDQ frame) match distance for entries of `origin`; None = default."""
        if threshold is not None:
            _check_threshold(threshold)
        with self._lock:
            if self._queueing:
                self._queued.append(("set_threshold", (origin, threshold)))
                return
            self._apply_threshold(origin, threshold)

    def _apply_threshold(self, origin: str, threshold: int | None) -> None:
        if threshold is None:
            self._explicit_thresholds.pop(origin, None)
        else:
            self._explicit_thresholds[origin] = threshold
        code = self._origin_code(origin)
        self._entries.thresholds[code] = self.default_threshold if threshold is None else threshold

    def threshold_for(self, origin: str) -> int:
        return self._explicit_thresholds.get(origin, self.default_threshold)

    # ------------------------------------------------------------------ building

    def load(self, db_path: Path | str, *, read_only: bool = False) -> None:
        """Build every index from the database at `db_path` (one read snapshot:
        node.store.matching.IndexSnapshot); `read_only` (a command answering from the
        database while no node runs): holds the build decides are kept in memory, not
        written.

        Listener events that arrive meanwhile are queued and replayed afterwards;
        searches raise MatcherLoading until it returns. Meant for start-up: it
        replaces the structures in place, so it must not run while searches do."""
        started = time.perf_counter()
        self._db_path = db_path if is_postgres(db_path) else Path(db_path)
        self._read_only = read_only
        with self._lock:
            self._ready = False
            if not self._queueing:
                self._queueing = True
                self._queued = []
            explicit, self._explicit_thresholds = self._explicit_thresholds, {}
            self._reset()
            self._entries.loading = True
        try:
            with index_snapshot(db_path) as snapshot:
                self._load_snapshot(snapshot)
        except BaseException:
            with self._lock:
                self._queueing = False
                self._entries.loading = False
                self._explicit_thresholds = explicit
            raise
        with self._lock:
            self._entries.loading = False
            deciding = self.decides()
            for origin, indices in self._over_budget.items():
                if deciding:
                    self.holds.hold_budget(origin, indices)
                else:  # the deciding process writes the hold
                    self.holds.hold_in_memory(origin, indices)
            self._over_budget = {}
            if deciding:
                self._hold_clusters()  # e.g. a database from before clusters were held
            # Thresholds given to the constructor or set before the load, unless the
            # database says otherwise; then every change that arrived meanwhile, in order.
            for origin, threshold in explicit.items():
                if origin not in self._explicit_thresholds:
                    self._apply_threshold(origin, threshold)
            self._queueing = False
            queued, self._queued = self._queued, []
            for method, args in queued:
                getattr(self, method)(*args)
            self._ready = True
        self.build_seconds = time.perf_counter() - started
        log.info("matcher: %s fingerprints of %d logs indexed in %.2f s",
                 ", ".join(f"{len(index)} {index.label}" for index in self._indexes.values()),
                 len(self._entries.origins), self.build_seconds)

    def cancel_load(self) -> None:
        """Make a running `load` stop soon (it raises MatcherLoading); for shutdown."""
        self._cancel_load.set()

    @property
    def load_cancelled(self) -> bool:
        return self._cancel_load.is_set()

    def _load_snapshot(self, snapshot: IndexSnapshot) -> None:
        for origin, threshold in snapshot.thresholds():
            self._apply_threshold(origin, threshold)
        for origin, index, leaf in snapshot.suppressions():
            self._suppressed[(origin, index)] = leaf
        if snapshot.has_table("match_holds"):  # a database from before holds, not migrated yet
            snapshot.read_text(self.holds.load, None if self._read_only else self._db_path)
        # Each followed log in turn, all in one bulk load of each index (the PDQ
        # index's tables are built once, at the end). Fingerprints of a fixed size
        # (PDQ: nearly all) come in arrays, the others row by row.
        with ExitStack() as stack:
            for index in self._indexes.values():
                stack.enter_context(index.bulk_load())
            for origin in snapshot.origins():
                self._load_origin(snapshot, origin)
        self._entries.trim()
        # Suppressed entries whose row was not (yet) marked, e.g. after the log was
        # unfollowed and followed again: drop them if they are the same entry.
        for (origin, index), leaf in list(self._suppressed.items()):
            current = snapshot.leaf_hash(origin, index)
            if current is not None and (leaf is None or current == leaf):
                self._remove(origin, index)

    def _load_origin(self, snapshot: IndexSnapshot, origin: str) -> None:
        code = self._origin_code(origin)
        bulk = {index.signal.name: index.bulk_size for index in self._indexes.values() if index.bulk_size}
        for arrays, others in snapshot.chunks(origin, bulk):
            if self._cancel_load.is_set():
                raise MatcherLoading("the build of the match index was cancelled")
            for name, (indices, matrix) in arrays.items():
                keep = self._loadable(origin, code, indices)
                if not keep.all():
                    indices, matrix = indices[keep], matrix[keep]
                if len(indices):
                    self._by_name[name].add(code, indices, matrix)
            for index, signal, fingerprint in others:
                kind = self._by_name.get(signal)
                item = kind.prepare(fingerprint) if kind is not None else None  # None: never matches
                if item is not None and self._loadable(origin, code, np.array([index], dtype=np.int64))[0]:
                    kind.add(code, np.array([index], dtype=np.int64), [item])

    def _loadable(self, origin: str, code: int, indices: np.ndarray) -> np.ndarray:
        """At start-up: not held, and within the log's budget of fingerprints in the index
        (a budget lowered since they went in holds the latest back)."""
        keep = ~self.holds.held(origin, indices)
        if self.load_limits is not None:  # not decided yet: the replica adds them once they are
            keep &= indices < self.load_limits.get(origin, 0)
        room = max(0, self.holds.budget(origin).max_fingerprints - int(self._entries.indexed[code]))
        if keep.sum() > room:
            over = np.flatnonzero(keep)[room:]
            keep[over] = False
            self._over_budget.setdefault(origin, []).extend(indices[over].tolist())
        return keep

    # ------------------------------------------------------------------ changes

    def add(self, origin: str, index: int, signal: str, fingerprint: bytes, leaf_hash: bytes | None = None) -> bool:
        """Index one active entry; False if it is already indexed or suppressed."""
        return self.add_many(origin, [(index, signal, fingerprint, leaf_hash)]) == 1

    def add_many(self, origin: str, rows: Iterable[tuple], *, budgeted: bool = True) -> int:
        """Index entries `(index, signal, fingerprint[, leaf_hash])` of `origin`; entries
        already indexed, suppressed or held are skipped, and so are those of a signal
        without an index or that its index cannot hold (they never match). The log's
        budgets and held clusters may hold some back (node/matcher/holds.py;
        `budgeted=False`: room was made for them already). Returns how many were added."""
        rows = list(rows)
        with self._lock:
            if self._queueing:
                self._queued.append(("add_many", (origin, rows)))
                return 0
            code = self._origin_code(origin)
            slots = self._entries.slots[code]
            fresh: list[tuple[int, SignalIndex, Any]] = []  # (log index, its signal's index, prepared item)
            kind_named, suppressed = self._by_name.get, self._suppressed
            slot_array = slots.array
            top = len(slot_array)
            for row in rows:
                index = row[0]
                if index < top and slot_array[index] != NO_ID:
                    continue  # already indexed (a replayed event)
                if suppressed and self._is_suppressed(origin, index, row[3] if len(row) > 3 else None):
                    continue
                kind = kind_named(row[1])
                item = kind.prepare(row[2]) if kind is not None else None
                if item is not None:
                    fresh.append((index, kind, item))
            fresh.sort(key=lambda new: new[0])
            indices = np.fromiter((new[0] for new in fresh), dtype=np.int64, count=len(fresh))
            admit = ~self.holds.held(origin, indices)
            deciding = self.decides()  # else: the holds were adopted from the database
            if budgeted and deciding and admit.any():
                # Those that may join a held cluster (an index whose entries cluster: PDQ).
                near = np.flatnonzero(np.fromiter((new[1].clustered for new in fresh), dtype=bool,
                                                  count=len(fresh)) & admit)
                keys = np.frombuffer(b"".join(fresh[i][1].cluster_key(fresh[i][2]) for i in near),
                                     dtype=np.uint8).reshape(-1, 32)
                admitted = self.holds.split(origin, indices[admit], np.searchsorted(indices[admit], indices[near]),
                                            keys, int(self._entries.indexed[code]))
                admit[np.flatnonzero(admit)[~admitted]] = False
            by_kind: dict[SignalIndex, tuple[list[int], list]] = {}
            for (index, kind, item), ok in zip(fresh, admit.tolist()):
                if ok:
                    group = by_kind.get(kind)
                    if group is None:
                        group = by_kind[kind] = ([], [])
                    group[0].append(index)
                    group[1].append(item)
            added = 0
            regrouped = False
            for kind, (kind_indices, items) in by_kind.items():
                kind.add(code, np.array(kind_indices, dtype=np.int64), items)
                added += len(items)
                regrouped |= kind.after_adds(len(items), self.holds.cluster_size)
            if regrouped and deciding:
                self._hold_clusters()
            return added

    def _hold_clusters(self) -> int:
        """Hold out of the index every dense cluster of one log that an index grouped
        (caller holds the lock). Returns how many fingerprints were held."""
        held = 0
        for index in self._indexes.values():
            for cluster in index.dense_clusters(self.holds.cluster_size):
                origin = self._entries.origins[cluster.tag]
                if self.holds.is_released_near(origin, cluster.centre):
                    continue
                ids = cluster.members()
                ids = ids[self._entries.live(ids, index.code)]
                indices = self._entries.index.array[ids]
                _, out = self.holds.quarantine(origin, cluster.centre, cluster.radius, indices)
                held += self._drop(cluster.tag, out)
        return held

    def _drop(self, code: int, indices: np.ndarray) -> int:
        """Take entries of the log `code` at these log indices (none twice) out of the
        index (caller holds the lock). Returns how many were indexed."""
        entries = self._entries
        indices, ids = entries.present(code, np.asarray(indices, dtype=np.int64))
        if not len(ids):
            return 0
        signals = entries.signal.array[ids]
        entries.signal.array[ids] = GONE  # searches re-check this
        for signal in np.unique(signals).tolist():
            self._indexes[signal].remove(ids[signals == signal])
        entries.slots[code].array[indices] = NO_ID
        entries.indexed[code] -= len(ids)
        return len(ids)

    def release_cluster(self, cluster_id: int) -> dict[str, Any] | None:
        """The operator releases a held cluster: its fingerprints (those still active)
        go in the index, within the log's budgets. None if unknown or released."""
        with self._lock:
            indices = self.holds.database(lambda db: db.matching.release_cluster(cluster_id)) or []
            cluster = self.holds.release_cluster(cluster_id, indices)
            if cluster is None:
                return None
            rows = self.holds.database(_active_fingerprints, cluster.origin, indices) or []
            added = self.add_many(cluster.origin, [(r.index, r.signal, r.fingerprint, r.leaf_hash) for r in rows])
            log.warning("match: cluster %d of %s released by the operator: %d fingerprints indexed",
                        cluster_id, cluster.origin, added)
            return {"cluster": cluster_id, "origin": cluster.origin, "released": len(indices), "indexed": added}

    def set_budget(self, origin: str, values: dict[str, int | None]) -> Budget:
        """New budgets for one log (the caller stored them); fingerprints they now allow
        go in the index."""
        with self._lock:
            if self._queueing:
                self._queued.append(("set_budget", (origin, values)))
                return self.holds.budget(origin).with_overrides(values)
            budget = self.holds.set_budget(origin, values)
            self.review_holds([origin])
            return budget

    def review_holds(self, origins: Sequence[str] | None = None) -> int:
        """Index the budget-held fingerprints the budgets now allow (run every minute
        by the node, and when budgets change). Returns how many went in."""
        added = 0
        with self._lock:
            if self._queueing or not self.holds.persistent:
                return 0
            for origin in origins if origins is not None else self.holds.origins_with_budget_holds():
                code = self._origin_code(origin)
                room, _ = self.holds.budget_room(origin, int(self._entries.indexed[code]))
                if not len(room):
                    continue
                rows = self.holds.database(_active_fingerprints, origin, room.tolist())
                self.holds.unhold_budget(origin, room)
                added += self.add_many(origin, [(r.index, r.signal, r.fingerprint, r.leaf_hash) for r in rows],
                                       budgeted=False)
        return added

    def adopt_settings(self, db) -> int:
        """(PostgreSQL) What another process of the node set is in the database: put its
        thresholds, suppressions, budgets and releases in force here, as that process
        did in its own index (writing nothing). Returns how many entries it put in or
        took out of the index."""
        stored = db.matching
        with self._lock:
            if self._queueing:
                return 0  # the build reads them all
            thresholds = stored.thresholds()
            for origin in set(thresholds) | set(self._explicit_thresholds):
                if thresholds.get(origin) != self._explicit_thresholds.get(origin):
                    self._apply_threshold(origin, thresholds.get(origin))
            changed = 0
            suppressions = stored.suppressions()
            for (origin, index), leaf in suppressions.items():
                if (origin, index) not in self._suppressed:
                    self._suppressed[(origin, index)] = leaf
                    changed += self._remove(origin, index)
            for key in [key for key in self._suppressed if key not in suppressions]:
                del self._suppressed[key]  # matches again once re-added (as `unsuppress`)
            for origin, indices in self.holds.adopt(stored).items():
                rows = _active_fingerprints(db, origin, indices.tolist())
                changed += self.add_many(origin, [(r.index, r.signal, r.fingerprint, r.leaf_hash) for r in rows],
                                         budgeted=False)
            return changed

    def _is_suppressed(self, origin: str, index: int, leaf: bytes | None) -> bool:
        key = (origin, index)
        if key not in self._suppressed:
            return False
        known = self._suppressed[key]
        return leaf is None or known is None or known == leaf

    def withdraw(self, origin: str, indices: Iterable[int]) -> int:
        """Stop matching entries of `origin` (unknown indices are ignored); returns
        how many were indexed. Takes effect for every search that starts afterwards."""
        indices = list(indices)
        with self._lock:
            if self._queueing:
                self._queued.append(("withdraw", (origin, indices)))
                return 0
            return sum(self._remove(origin, index) for index in indices)

    def _remove(self, origin: str, index: int) -> bool:
        """`_drop` of one entry, without arrays (a withdrawal at a time costs microseconds)."""
        entries = self._entries
        code = entries.codes.get(origin)
        if code is None:
            return False
        slots = entries.slots[code].array
        if not 0 <= index < len(slots) or slots[index] == NO_ID:
            return False
        entry = int(slots[index])
        signal = int(entries.signal.array[entry])
        entries.signal.array[entry] = GONE  # searches re-check this
        self._indexes[signal].remove_one(entry)
        slots[index] = NO_ID
        entries.indexed[code] -= 1
        return True

    def suppress(self, origin: str, index: int, leaf_hash: bytes | None = None) -> bool:
        """Never match this entry again (until `unsuppress`); True if it was indexed."""
        with self._lock:
            if self._queueing:
                self._queued.append(("suppress", (origin, index, leaf_hash)))
                return False
            self._suppressed[(origin, index)] = leaf_hash
            return self._remove(origin, index)

    def unsuppress(self, origin: str, index: int) -> None:
        """Forget a suppression; the entry matches again once re-added (`add`, or a reload)."""
        with self._lock:
            if self._queueing:
                self._queued.append(("unsuppress", (origin, index)))
                return
            self._suppressed.pop((origin, index), None)

    def forget_origin(self, origin: str) -> int:
        """Drop every entry of a log that is no longer followed."""
        with self._lock:
            if self._queueing:
                self._queued.append(("forget_origin", (origin,)))
                return 0
            code = self._entries.codes.get(origin)
            if code is None:
                return 0
            return self._drop(code, np.flatnonzero(self._entries.slots[code].array != NO_ID))

    # ------------------------------------------------------------------ follower listener

    def on_withdrawn(self, origin: str, indices: Sequence[int]) -> None:
        self.withdraw(origin, indices)

    def on_added(self, origin: str, rows) -> None:
        batch: list[tuple] = []
        for row in rows:
            batch.append((row.index, row.signal, row.fingerprint, row.leaf_hash))
            if len(batch) >= ADD_BATCH:
                self.add_many(origin, batch)
                batch = []
        if batch:
            self.add_many(origin, batch)

    def on_applied(self, origin: str, size: int, root_hash: bytes, note: bytes, applied, at: float) -> None:
        """A round with feedback changes what describing says: forget what it kept.
        (PostgreSQL, the sequencing process) the holds of `origin` below `size` are
        written: the other processes' replicas may index up to there."""
        if getattr(applied, "feedback", 1):
            # The round's feedback changes what describing says of the entries it names:
            # describe afresh from now on (a replica's look does the same: replica.py).
            self.descriptions.forget()
        with self._lock:
            if self._queueing:
                self._queued.append(("on_applied", (origin, size, root_hash, note, applied, at)))
                return
            if self.decides() and is_postgres(self._db_path) and not self._read_only:
                try:
                    self.holds.database(lambda db: db.matching.set_decided(origin, size))
                except Exception as exc:  # noqa: BLE001 -- the replica's next look records it
                    log.warning("matcher: could not record the decided holds of a followed log (%s); "
                                "the other processes index its new entries within a second", exc)

    def on_removed(self, origin: str) -> None:
        self.descriptions.forget()  # its feedback about other logs' entries is gone too
        self.forget_origin(origin)
        self.holds.forget(origin)

    # ------------------------------------------------------------------ searching

    @property
    def ready(self) -> bool:
        """True once `load` finished (or for a matcher used without a database)."""
        return self._ready

    def match(self, query: Query, *, limit: int = DEFAULT_MAX_MATCHES) -> QueryResult:
        return self.match_many([query], limit=limit)[0]

    def match_many(self, queries: Sequence[Query], *, limit: int = DEFAULT_MAX_MATCHES,
                   threads: int | None = None) -> list[QueryResult]:
        """The matches of each query, nearest first (then by origin, index); at most
        `limit` hits per query, with the total count (`search`, as objects)."""
        return self.search(queries, limit=limit, threads=threads).results()

    def search(self, queries: Sequence[Query], *, limit: int = DEFAULT_MAX_MATCHES,
               threads: int | None = None) -> Found:
        """`match_many` held as arrays (node/matcher/answers.py). Each signal's index
        answers its queries in one call (PDQ: the index picks the nearest `limit`, ties
        at the last distance: the entries indexed first, and counts the rest without
        listing them)."""
        if not self._ready:
            raise MatcherLoading("the match index is being built from the database; try again in a moment")
        kind_named = self._by_name.get
        by_kind: dict[SignalIndex, list[int]] = {}
        for i, query in enumerate(queries):
            kind = kind_named(query.signal)
            if kind is None:
                raise SignalError(f"unknown signal type {query.signal!r}")
            positions = by_kind.get(kind)
            if positions is None:
                by_kind[kind] = [i]
            else:
                positions.append(i)
        totals = [0] * len(queries)
        arrays: list[tuple] = []
        lists: dict[int, list[Hit]] = {}
        for kind, positions in by_kind.items():
            fingerprints = [queries[i].fingerprint for i in positions]
            if kind.answers_in_arrays:
                query_numbers, ids, distances, counts = kind.query_arrays(fingerprints, limit, threads)
                where = np.array(positions, dtype=np.int64)
                arrays.append((kind.signal.name, where[query_numbers], ids, distances))
                for i, total in zip(positions, counts.tolist()):
                    totals[i] = total
                continue
            for i, (hits, total) in zip(positions, kind.query(fingerprints, limit, threads)):
                hits.sort(key=NEAREST)
                lists[i] = hits[:limit]
                totals[i] = len(hits) if total is None else total
        return Found(self._entries, totals, arrays, lists)

    # ------------------------------------------------------------------ describing

    def describe(self, hits: Sequence[Hit]) -> list[dict[str, Any]]:
        """`describe(db, hits)` on a read connection of this thread to the database
        the matcher was loaded from (safe to call from many threads at once)."""
        return self.describe_many([hits])[0]

    def describe_many(self, batch: Sequence[Sequence[Hit]]) -> list[list[dict[str, Any]]]:
        """`describe` of each list of hits of a batch, each distinct entry read from the
        database once (or not at all: `descriptions`)."""
        if not any(batch):
            return [[] for _ in batch]
        return described(batch, self.descriptions.tails(self._reader(), wanted_by(batch)))

    def descriptions_of(self, found: Found) -> dict[str, dict[int, str]]:
        """origin -> log index -> the described part of each distinct entry `found` hit
        (node/matcher/answers.py), read from the database only where not kept."""
        wanted = found.wanted()
        return self.descriptions.tails(self._reader(), wanted) if wanted else {}

    def _reader(self):
        """This thread's read connection to the database the matcher was loaded from."""
        db = getattr(self._readers, "db", None)
        if db is not None and getattr(db, "broken", False):  # PostgreSQL went away: a new one
            with self._lock:
                self._reader_list.remove(db)
            db.close()
            db = None
        if db is None:
            if self._db_path is None:
                raise UsageError("describe needs a matcher loaded from a database")
            db = connect(self._db_path, check_same_thread=False)
            self._readers.db = db
            with self._lock:
                self._reader_list.append(db)
        return db

    def close(self) -> None:
        """Close the connections opened by `describe` and by the holds."""
        with self._lock:
            for db in self._reader_list:
                db.close()
            self._reader_list.clear()
            self.holds.close()
        self._readers = threading.local()

    # ------------------------------------------------------------------ introspection

    def stats(self) -> dict[str, Any]:
        """Counts per signal (by name), each index's figures, holds, memory."""
        indexes = self._indexes.values()
        out: dict[str, Any] = {"ready": self.ready, "logs": len(self._entries.origins)}
        out.update((index.signal.name, len(index)) for index in indexes)
        for index in indexes:
            out.update(index.figures())
        out["suppressed"] = len(self._suppressed)
        out["held"] = self._held_summary()
        for index in indexes:
            out.update(index.grouping())
        out["build_seconds"] = self.build_seconds
        out["index_bytes"] = sum(index.memory() for index in indexes)
        return out

    def _held_summary(self) -> dict[str, Any]:
        counts = self.holds.counts()
        clusters = [c for c in self.holds.clusters() if not c.released]
        return {"cluster": sum(c["cluster"] for c in counts.values()),
                "budget": sum(c["budget"] for c in counts.values()),
                "clusters": len(clusters), "logs": sorted(counts)}

    def __contains__(self, key: object) -> bool:
        """(origin, index) in matcher: is that entry indexed (active)?"""
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return self._entries.contains(*key)


def _check_threshold(threshold: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= MAX_THRESHOLD:
        raise UsageError(f"a PDQ match threshold is an integer from 0 to {MAX_THRESHOLD}, not {threshold!r}")


# ---------------------------------------------------------------------- describing hits

def describe(db, hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """JSON objects for hits, with what the database knows of each entry: labels,
    quality, coarse day, and a feedback summary (verdict -> count of the feedback
    entries that followed logs published about it, quoting its right leaf hash)."""
    return describe_many(db, [hits])[0]


def describe_many(db, batch: Sequence[Sequence[Hit]]) -> list[list[dict[str, Any]]]:
    """`describe` of each list of hits, with a few queries per log for the whole batch
    instead of two per hit (nothing kept: `Matcher.describe_many` keeps them)."""
    return described(batch, read_tails(db, wanted_by(batch)))
