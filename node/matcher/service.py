"""The matcher service: in-memory indexes of every active fingerprint of every followed log.

A platform node asks "does this upload match anything the helplines I follow
published?" `Matcher` answers from memory, exactly:

  PDQ   a PDQIndex (node/matcher/pdq_index.py) of every active PDQ submission: every
        entry within the log's threshold (default 31) is found, nothing beyond it.
  MD5   a dict: identical bytes only.
  vPDQ  a PDQIndex of the unique good-quality frames of every active video, each
        frame pointing back to its video; a query video's unique good frames are
        searched there and the coverage rule of protocol.signals (query coverage
        >= 80 %, indexed coverage >= 0 %) is applied per candidate video. The result
        equals `VPDQ.matches` against every video, without comparing every video.

Active = neither withdrawn nor suppressed nor held. A followed log cannot slow
matching (node/matcher/holds.py): fingerprints beyond its budgets, and dense clusters
it publishes, are held out of the index (and written down) until budgets or the
operator allow them. PDQ items carry their log as a tag in the PDQ index, which
applies each log's threshold itself and answers the nearest `limit` and the total
without listing every match (spec/parts/matching.md).

Invariants:

- Every indexed item has a dense "entry id" (0, 1, 2, ... in the order items were
  added; never reused while the process runs, so an id found by a search always names
  the same (origin, index)). Per followed log, an array maps log index -> entry id,
  so a withdrawal finds its targets without any database read.
- `withdraw` and `suppress` take effect for every search that starts after they
  return (the PDQ index guarantees it, and results are re-checked against the
  entry's state). The follower calls `on_withdrawn` BEFORE it commits a round, so a
  withdrawal stops matching before the follower reports the batch applied.
- Thresholds are per followed log: the PDQ index applies each log's threshold (its
  tag's); vPDQ frames are searched at the largest threshold in use and each hit kept
  only if within the threshold of the log it came from.
- While the index is built at start-up (`load`), listener events are queued and
  replayed in order once the snapshot is loaded, so nothing the follower applies
  during the build is lost or resurrected; searches meanwhile raise MatcherLoading.

Building reads the database through one read snapshot (node.store.matching.
IndexSnapshot: each log's PDQ blobs in chunks with one aggregate query, `group_concat`
of the 32-byte blobs straight into numpy; the holds' tables) and loads the PDQIndex in
one bulk pass: about a million rows per second, not a Python loop per row.

The service knows entries only by (origin, index); `describe` reads labels, quality
and the feedback summary of the few matched entries from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from node.errors import Unavailable
from node.follow.listener import FollowListener
from node.matcher.holds import Budget, Holds
from node.matcher.pdq_index import PDQIndex
from node.store import connect, is_postgres
from node.store.matching import IndexSnapshot, index_snapshot
from protocol.entries import day_to_json
from protocol.errors import SignalError, UsageError
from protocol.signals import (
    DEFAULT_PDQ_THRESHOLD,
    LOW_QUALITY,
    PDQ,
    SIGNALS,
    VPDQ,
    VPDQ_INDEXED_COVERAGE,
    VPDQ_QUERY_COVERAGE,
    signal_named,
)

log = logging.getLogger(__name__)

PDQ_CODE, MD5_CODE, VPDQ_CODE = SIGNALS["pdq"].code, SIGNALS["md5"].code, SIGNALS["vpdq"].code
_GONE = 0  # signal code of an entry id whose item was withdrawn or suppressed
_NO_ID = np.uint32(0xFFFFFFFF)  # "no entry id" in the per-log index -> id arrays
MAX_THRESHOLD = 256
DEFAULT_MAX_MATCHES = 100


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
        return cls(signal.name, signal.parse_json(obj["fingerprint"]))


@dataclass(frozen=True)
class Hit:
    """An active entry that matches a query. `distance`: PDQ bits, 0 for MD5, for
    vPDQ the share of the query's frames left unmatched (100 - query_coverage)."""

    origin: str
    index: int
    signal: str
    distance: float
    query_coverage: float | None = None
    indexed_coverage: float | None = None


@dataclass(frozen=True)
class QueryResult:
    hits: list[Hit]      # nearest first, at most the `limit` asked
    total: int           # how many matched in all


class _Grow:
    """A numpy array that grows by a quarter when it fills (amortized appends, and at
    most 25 % unused room at 10 million entries, not 100 %)."""

    __slots__ = ("array", "fill", "length")

    def __init__(self, dtype, fill=0, capacity: int = 1024):
        self.array = np.full(capacity, fill, dtype=dtype)
        self.length = 0
        self.fill = fill

    def reserve(self, n: int, slack: float = 0.25) -> None:
        if n > len(self.array):
            self._resize(max(n, len(self.array) + int(len(self.array) * slack) + 1024))

    def trim(self, n: int) -> None:
        """Drop the unused room beyond `n` items (after a bulk load)."""
        if len(self.array) > n:
            self._resize(max(n, 1024))

    def _resize(self, size: int) -> None:
        resized = np.zeros(size, dtype=self.array.dtype) if self.fill == 0 else \
            np.full(size, self.fill, dtype=self.array.dtype)
        keep = min(size, len(self.array))
        resized[:keep] = self.array[:keep]
        self.array = resized  # readers holding the old array still see valid ids


def _active_fingerprints(db, origin: str, indices) -> list:
    """(for `holds.database`) the active fingerprints of `origin` at these indices."""
    return db.follow.fingerprints_at(origin, indices)


class Matcher(FollowListener):
    """In-memory match indexes of the active fingerprints of every followed log.

    Plug it into the follower as its listener; `load(db_path)` builds it from the
    database (create it with `pending_load=True` when the follower may call it before
    the load starts). `match(queries)` answers; `withdraw`/`suppress` drop entries at once.
    """

    def __init__(self, *, default_threshold: int = DEFAULT_PDQ_THRESHOLD,
                 thresholds: Mapping[str, int] | None = None,
                 vpdq_query_coverage: float = VPDQ_QUERY_COVERAGE,
                 vpdq_indexed_coverage: float = VPDQ_INDEXED_COVERAGE,
                 threads: int | None = None, pending_load: bool = False,
                 budget: Budget | None = None, cluster_size: int | None = None, cluster_keep: int | None = None):
        _check_threshold(default_threshold)
        self.default_threshold = default_threshold
        self.vpdq_query_coverage = float(vpdq_query_coverage)
        self.vpdq_indexed_coverage = float(vpdq_indexed_coverage)
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

    def _reset(self) -> None:
        self._origins: list[str] = []
        self._origin_codes: dict[str, int] = {}
        self._slots: list[_Grow] = []                      # per origin: log index -> entry id
        self._thresholds = np.full(16, self.default_threshold, dtype=np.int16)  # per origin code
        self._indexed = np.zeros(16, dtype=np.int64)   # per origin code: entries in the indexes
        self._entry_origin = _Grow(np.uint16)
        self._entry_index = _Grow(np.int64)
        self._entry_signal = _Grow(np.uint8)
        self._pdq = PDQIndex(DEFAULT_PDQ_THRESHOLD, threads=self.threads)
        self._md5: dict[bytes, list[int]] = {}
        self._md5_of: dict[int, bytes] = {}
        self._frames = PDQIndex(DEFAULT_PDQ_THRESHOLD, threads=self.threads)
        self._frame_video = _Grow(np.uint32)
        self._video_frames: dict[int, tuple[int, int]] = {}  # entry id -> (first frame id, unique frames)
        self._suppressed: dict[tuple[str, int], bytes | None] = {}  # (origin, index) -> leaf hash
        self._counts = {PDQ_CODE: 0, MD5_CODE: 0, VPDQ_CODE: 0}
        self._over_budget: dict[str, list[int]] = {}  # held back at start-up, written down after

    # ------------------------------------------------------------------ origins, thresholds

    def _origin_code(self, origin: str) -> int:
        code = self._origin_codes.get(origin)
        if code is None:
            code = len(self._origins)
            if code > 0xFFFF:
                raise UsageError("more than 65,536 followed logs")
            self._origins.append(origin)
            self._origin_codes[origin] = code
            self._slots.append(_Grow(np.uint32, fill=_NO_ID, capacity=256))
            if code >= len(self._thresholds):
                grown = np.full(2 * len(self._thresholds), self.default_threshold, dtype=np.int16)
                grown[: len(self._thresholds)] = self._thresholds
                self._thresholds = grown
                counts = np.zeros(len(grown), dtype=np.int64)
                counts[: len(self._indexed)] = self._indexed
                self._indexed = counts
            self._thresholds[code] = self._explicit_thresholds.get(origin, self.default_threshold)
        return code

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
        self._thresholds[code] = self.default_threshold if threshold is None else threshold

    def threshold_for(self, origin: str) -> int:
        return self._explicit_thresholds.get(origin, self.default_threshold)

    def _search_threshold(self) -> int:
        n = len(self._origins)
        return int(self._thresholds[:n].max()) if n else self.default_threshold

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
        try:
            with index_snapshot(db_path) as snapshot:
                self._load_snapshot(snapshot)
        except BaseException:
            with self._lock:
                self._queueing = False
                self._explicit_thresholds = explicit
            raise
        with self._lock:
            for origin, indices in self._over_budget.items():
                self.holds.hold_budget(origin, indices)
            self._over_budget = {}
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
        log.info("matcher: %d PDQ, %d MD5, %d vPDQ fingerprints of %d logs indexed in %.2f s",
                 self._counts[PDQ_CODE], self._counts[MD5_CODE], self._counts[VPDQ_CODE],
                 len(self._origins), self.build_seconds)

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
        # Each followed log in turn, all in one bulk load of the PDQ index (its tables
        # are built once, at the end). PDQ fingerprints (nearly all) come in arrays,
        # MD5 and vPDQ (few) row by row.
        with self._pdq.bulk_load():
            for origin in snapshot.origins():
                self._load_origin(snapshot, origin)
        for grow in (self._entry_origin, self._entry_index, self._entry_signal):
            grow.trim(grow.length)
        for slots in self._slots:
            slots.trim(self._slot_top(slots))
        # Suppressed entries whose row was not (yet) marked, e.g. after the log was
        # unfollowed and followed again: drop them if they are the same entry.
        for (origin, index), leaf in list(self._suppressed.items()):
            current = snapshot.leaf_hash(origin, index)
            if current is not None and (leaf is None or current == leaf):
                self._remove(origin, index)

    def _load_origin(self, snapshot: IndexSnapshot, origin: str) -> None:
        code = self._origin_code(origin)
        for indices, matrix, others in snapshot.chunks(origin, PDQ.name, PDQ.size):
            if self._cancel_load.is_set():
                raise MatcherLoading("the build of the match index was cancelled")
            keep = self._loadable(origin, code, indices)
            if not keep.all():
                indices, matrix = indices[keep], matrix[keep]
            if len(indices):
                self._add_pdq(code, indices, matrix)
            for index, signal, fingerprint in others:
                if self._loadable(origin, code, np.array([index], dtype=np.int64))[0]:
                    self._add_other(code, origin, index, signal, fingerprint)

    def _loadable(self, origin: str, code: int, indices: np.ndarray) -> np.ndarray:
        """At start-up: not held, and within the log's budget of fingerprints in the index
        (a budget lowered since they went in holds the latest back)."""
        keep = ~self.holds.held(origin, indices)
        room = max(0, self.holds.budget(origin).max_fingerprints - int(self._indexed[code]))
        if keep.sum() > room:
            over = np.flatnonzero(keep)[room:]
            keep[over] = False
            self._over_budget.setdefault(origin, []).extend(indices[over].tolist())
        return keep

    def _add_pdq(self, code: int, indices: np.ndarray, fingerprints) -> np.ndarray:
        """Index PDQ fingerprints of the log with origin code `code`, tagged with it."""
        ids = self._new_entries(code, indices, PDQ_CODE)
        self._pdq.add_many(ids, fingerprints, np.full(len(ids), code, dtype=np.uint16))
        self._counts[PDQ_CODE] += len(ids)
        return ids

    @staticmethod
    def _slot_top(slots: _Grow) -> int:
        """1 + the largest log index with an entry id in `slots` (0 if none)."""
        used = np.flatnonzero(slots.array != _NO_ID)
        return int(used[-1]) + 1 if len(used) else 0

    def _new_entries(self, code: int, indices: np.ndarray, signal_code: int) -> np.ndarray:
        """Entry ids for new items (index -> id recorded); caller holds the lock or is loading."""
        n = len(indices)
        first = self._entry_signal.length
        slack = 1.0 if self._queueing else 0.25  # a bulk load doubles, then trims at the end
        self._entry_origin.reserve(first + n, slack)
        self._entry_index.reserve(first + n, slack)
        self._entry_signal.reserve(first + n, slack)
        ids = np.arange(first, first + n, dtype=np.int64)
        self._indexed[code] += n
        self._entry_origin.array[first:first + n] = code
        self._entry_index.array[first:first + n] = indices
        self._entry_signal.array[first:first + n] = signal_code
        for grow in (self._entry_origin, self._entry_index, self._entry_signal):
            grow.length = first + n
        slots = self._slots[code]
        top = int(indices.max()) + 1
        if top > len(slots.array):
            slots.reserve(top, slack)
        slots.array[indices] = ids.astype(np.uint32)
        return ids

    # ------------------------------------------------------------------ changes

    def add(self, origin: str, index: int, signal: str, fingerprint: bytes, leaf_hash: bytes | None = None) -> bool:
        """Index one active entry; False if it is already indexed or suppressed."""
        return self.add_many(origin, [(index, signal, fingerprint, leaf_hash)]) == 1

    def add_many(self, origin: str, rows: Iterable[tuple], *, budgeted: bool = True) -> int:
        """Index entries `(index, signal, fingerprint[, leaf_hash])` of `origin`; entries
        already indexed, suppressed or held are skipped, and the log's budgets and held
        clusters may hold some back (node/matcher/holds.py; `budgeted=False`: room was
        made for them already). Returns how many were added."""
        rows = list(rows)
        with self._lock:
            if self._queueing:
                self._queued.append(("add_many", (origin, rows)))
                return 0
            code = self._origin_code(origin)
            slots = self._slots[code]
            fresh = []
            for row in rows:
                index, leaf = row[0], row[3] if len(row) > 3 else None
                if index < len(slots.array) and slots.array[index] != _NO_ID:
                    continue  # already indexed (a replayed event)
                if self._is_suppressed(origin, index, leaf):
                    continue
                if row[1] == "pdq" and len(row[2]) != 32:
                    continue
                fresh.append(row)
            fresh.sort(key=lambda row: row[0])
            indices = np.fromiter((row[0] for row in fresh), dtype=np.int64, count=len(fresh))
            admit = ~self.holds.held(origin, indices)
            if budgeted and admit.any():
                pdq_rows = np.flatnonzero(np.fromiter((row[1] == "pdq" for row in fresh), dtype=bool,
                                                      count=len(fresh)) & admit)
                pdq = np.frombuffer(b"".join(bytes(fresh[i][2]) for i in pdq_rows),
                                    dtype=np.uint8).reshape(-1, 32)
                admitted = self.holds.split(origin, indices[admit], np.searchsorted(indices[admit], indices[pdq_rows]),
                                            pdq, int(self._indexed[code]))
                admit[np.flatnonzero(admit)[~admitted]] = False
            pdq_indices, pdq_fps, added = [], [], 0
            for row, ok in zip(fresh, admit.tolist()):
                if not ok:
                    continue
                index, signal, fingerprint = row[0], row[1], row[2]
                if signal == "pdq":
                    pdq_indices.append(index)
                    pdq_fps.append(bytes(fingerprint))
                elif not self._add_other(code, origin, index, signal, bytes(fingerprint)):
                    continue
                added += 1
            if pdq_indices:
                merges = self._pdq_changes()
                self._add_pdq(code, np.array(pdq_indices, dtype=np.int64), pdq_fps)
                if len(pdq_indices) >= self.holds.cluster_size:
                    self._pdq.flush()  # near-duplicate groups form when adds are merged: now
                if self._pdq_changes() != merges:
                    self._hold_clusters()
            return added

    def _pdq_changes(self) -> int:
        stats = self._pdq.stats()
        return stats["merges"] + stats["rebuilds"]

    def _hold_clusters(self) -> int:
        """Hold out of the index every dense cluster of one log that the PDQ index
        grouped (caller holds the lock). Returns how many fingerprints were held."""
        held = 0
        for cluster in self._pdq.clusters(min_live=self.holds.cluster_size):
            origin = self._origins[cluster["tag"]]
            if self.holds.is_released_near(origin, cluster["centre"]):
                continue
            ids = self._pdq.cluster_members(cluster["group"])
            ids = ids[self._entry_signal.array[ids] == PDQ_CODE]
            indices = self._entry_index.array[ids]
            _, out = self.holds.quarantine(origin, cluster["centre"], cluster["radius"], indices)
            self._drop_pdq(cluster["tag"], out)
            held += len(out)
        return held

    def _drop_pdq(self, code: int, indices: np.ndarray) -> None:
        """Take PDQ entries of one log out of the index (caller holds the lock)."""
        if not len(indices):
            return
        slots = self._slots[code].array
        entries = slots[indices].astype(np.int64)
        entries = entries[entries != _NO_ID]
        self._entry_signal.array[entries] = _GONE  # searches re-check this
        self._pdq.remove_many(entries)
        slots[indices] = _NO_ID
        self._counts[PDQ_CODE] -= len(entries)
        self._indexed[code] -= len(entries)

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
                room, _ = self.holds.budget_room(origin, int(self._indexed[code]))
                if not len(room):
                    continue
                rows = self.holds.database(_active_fingerprints, origin, room.tolist())
                self.holds.unhold_budget(origin, room)
                added += self.add_many(origin, [(r.index, r.signal, r.fingerprint, r.leaf_hash) for r in rows],
                                       budgeted=False)
        return added

    def _is_suppressed(self, origin: str, index: int, leaf: bytes | None) -> bool:
        key = (origin, index)
        if key not in self._suppressed:
            return False
        known = self._suppressed[key]
        return leaf is None or known is None or known == leaf

    def _add_other(self, code: int, origin: str, index: int, signal: str, fingerprint: bytes) -> bool:
        if signal == "md5":
            if len(fingerprint) != 16:
                return False
            (entry,) = self._new_entries(code, np.array([index], dtype=np.int64), MD5_CODE).tolist()
            self._md5.setdefault(fingerprint, []).append(entry)
            self._md5_of[entry] = fingerprint
            self._counts[MD5_CODE] += 1
            return True
        if signal == "vpdq":
            try:
                frames = sorted(VPDQ.unique_frames(fingerprint, LOW_QUALITY))
            except SignalError:
                return False
            (entry,) = self._new_entries(code, np.array([index], dtype=np.int64), VPDQ_CODE).tolist()
            first = self._frame_video.length
            if frames:
                n = len(frames)
                self._frame_video.reserve(first + n)
                self._frame_video.array[first:first + n] = entry
                self._frame_video.length = first + n
                self._frames.add_many(np.arange(first, first + n), [f.to_bytes(32, "big") for f in frames])
            self._video_frames[entry] = (first, len(frames))
            self._counts[VPDQ_CODE] += 1
            return True
        return False  # a signal this matcher does not know: never matches

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
        code = self._origin_codes.get(origin)
        if code is None:
            return False
        slots = self._slots[code].array
        if not 0 <= index < len(slots) or slots[index] == _NO_ID:
            return False
        entry = int(slots[index])
        signal = int(self._entry_signal.array[entry])
        self._entry_signal.array[entry] = _GONE  # searches re-check this
        if signal == PDQ_CODE:
            self._pdq.remove(entry)
        elif signal == MD5_CODE:
            fingerprint = self._md5_of.pop(entry)
            remaining = [e for e in self._md5[fingerprint] if e != entry]
            if remaining:
                self._md5[fingerprint] = remaining
            else:
                del self._md5[fingerprint]
        elif signal == VPDQ_CODE:
            first, n = self._video_frames.pop(entry)
            if n:
                self._frames.remove_many(np.arange(first, first + n))
        slots[index] = _NO_ID
        self._indexed[code] -= 1
        if signal in self._counts:
            self._counts[signal] -= 1
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
            code = self._origin_codes.get(origin)
            if code is None:
                return 0
            slots = self._slots[code].array
            present = np.flatnonzero(slots != _NO_ID)
            entries = slots[present].astype(np.int64)
            signals = self._entry_signal.array[entries]
            pdq = present[signals == PDQ_CODE]
            self._drop_pdq(code, pdq)  # PDQ entries (nearly all) in one call; the few others one by one
            others = sum(self._remove(origin, int(index)) for index in present[signals != PDQ_CODE])
            return len(pdq) + others

    # ------------------------------------------------------------------ follower listener

    def on_withdrawn(self, origin: str, indices: Sequence[int]) -> None:
        self.withdraw(origin, indices)

    def on_added(self, origin: str, rows) -> None:
        batch: list[tuple] = []
        for row in rows:
            batch.append((row.index, row.signal, row.fingerprint, row.leaf_hash))
            if len(batch) >= 65536:
                self.add_many(origin, batch)
                batch = []
        if batch:
            self.add_many(origin, batch)

    def on_removed(self, origin: str) -> None:
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
        `limit` hits per query, with the total count. For PDQ, the index picks the
        nearest `limit` (ties at the last distance: the entries indexed first) and
        counts the rest without listing them."""
        if not self._ready:
            raise MatcherLoading("the match index is being built from the database; try again in a moment")
        found: list[list[Hit]] = [[] for _ in queries]
        totals: dict[int, int] = {}
        pdq_positions = [i for i, q in enumerate(queries) if q.signal == "pdq"]
        if pdq_positions:
            self._match_pdq(queries, pdq_positions, found, totals, limit, threads)
        for i, query in enumerate(queries):
            if query.signal == "md5":
                found[i] = self._match_md5(query.fingerprint)
            elif query.signal == "vpdq":
                found[i] = self._match_vpdq(query.fingerprint, threads)
            elif query.signal != "pdq":
                raise SignalError(f"unknown signal type {query.signal!r}")
        results = []
        for i, hits in enumerate(found):
            hits.sort(key=lambda h: (h.distance, h.origin, h.index))
            results.append(QueryResult(hits[:limit], totals.get(i, len(hits))))
        return results

    def _match_pdq(self, queries, positions, found, totals, limit, threads) -> None:
        matrix = np.frombuffer(b"".join(queries[i].fingerprint for i in positions), dtype=np.uint8).reshape(-1, 32)
        if len(positions) == 1:
            threads = 1
        n = len(self._origins)
        query_numbers, ids, distances, counts = self._pdq.nearest_arrays(
            matrix, max(1, min(limit, 2**31 - 1)), self.default_threshold, thresholds=self._thresholds[:n],
            threads=threads)
        for q, count in enumerate(counts.tolist()):
            totals[positions[q]] = count
        if not len(ids):
            return
        # Read the arrays after the search: every id it found exists in them. An entry
        # withdrawn while the search ran is left out (and out of the count).
        gone = self._entry_signal.array[ids] != PDQ_CODE
        for q in query_numbers[gone].tolist():
            totals[positions[q]] -= 1
        keep = ~gone
        origins, log_indices = self._entry_origin.array[ids[keep]], self._entry_index.array[ids[keep]]
        names = self._origins
        for q, origin_code, index, distance in zip(query_numbers[keep].tolist(), origins.tolist(),
                                                   log_indices.tolist(), distances[keep].tolist()):
            found[positions[q]].append(Hit(names[origin_code], index, "pdq", distance))

    def _match_md5(self, fingerprint: bytes) -> list[Hit]:
        entries = list(self._md5.get(fingerprint, ()))
        hits = []
        for entry in entries:
            if self._entry_signal.array[entry] == MD5_CODE:
                hits.append(Hit(self._origins[int(self._entry_origin.array[entry])],
                                int(self._entry_index.array[entry]), "md5", 0))
        return hits

    def _match_vpdq(self, fingerprint: bytes, threads) -> list[Hit]:
        query_frames = sorted(VPDQ.unique_frames(fingerprint, LOW_QUALITY))
        if not query_frames:
            return []  # nothing comparable is never a match (protocol.signals)
        matrix = np.frombuffer(b"".join(f.to_bytes(32, "big") for f in query_frames),
                               dtype=np.uint8).reshape(-1, 32)
        query_numbers, frame_ids, distances = self._frames.search_arrays(matrix, self._search_threshold(),
                                                                         threads=threads)
        if not len(frame_ids):
            return []
        videos = self._frame_video.array[frame_ids].astype(np.int64)
        origins = self._entry_origin.array[videos]
        keep = (distances <= self._thresholds[origins]) & (self._entry_signal.array[videos] == VPDQ_CODE)
        query_numbers, frame_ids, videos = query_numbers[keep], frame_ids[keep], videos[keep]
        hits = []
        for video in np.unique(videos).tolist():
            mine = videos == video
            frames = self._video_frames.get(video)
            if frames is None or not frames[1]:
                continue
            # The same counts as protocol.signals._coverage, from the index's answers:
            # query frames with some frame of this video within the threshold, and
            # frames of this video with some query frame within it.
            query_percent = len(np.unique(query_numbers[mine])) * 100 / len(query_frames)
            indexed_percent = len(np.unique(frame_ids[mine])) * 100 / frames[1]
            if query_percent >= self.vpdq_query_coverage and indexed_percent >= self.vpdq_indexed_coverage:
                hits.append(Hit(self._origins[int(self._entry_origin.array[video])],
                                int(self._entry_index.array[video]), "vpdq", 100.0 - query_percent,
                                query_percent, indexed_percent))
        return hits

    # ------------------------------------------------------------------ describing

    def describe(self, hits: Sequence[Hit]) -> list[dict[str, Any]]:
        """`describe(db, hits)` on a read connection of this thread to the database
        the matcher was loaded from (safe to call from many threads at once)."""
        if not hits:
            return []
        db = getattr(self._readers, "db", None)
        if db is None:
            if self._db_path is None:
                raise UsageError("describe needs a matcher loaded from a database")
            db = connect(self._db_path, check_same_thread=False)
            self._readers.db = db
            with self._lock:
                self._reader_list.append(db)
        return describe(db, hits)

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
        pdq = self._pdq.stats()
        frames = self._frames.stats()
        return {
            "ready": self.ready,
            "logs": len(self._origins),
            "pdq": self._counts[PDQ_CODE],
            "md5": self._counts[MD5_CODE],
            "vpdq": self._counts[VPDQ_CODE],
            "vpdq_frames": frames["live"],
            "suppressed": len(self._suppressed),
            "held": self._held_summary(),
            "groups": pdq["groups"],
            "grouped": pdq["grouped"],
            "build_seconds": self.build_seconds,
            "index_bytes": pdq["table_bytes"] + pdq["fingerprint_bytes"] + pdq["group_bytes"]
            + frames["table_bytes"] + frames["fingerprint_bytes"],
        }

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
        code = self._origin_codes.get(key[0])
        if code is None:
            return False
        slots = self._slots[code].array
        return 0 <= key[1] < len(slots) and slots[key[1]] != _NO_ID


def _check_threshold(threshold: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= MAX_THRESHOLD:
        raise UsageError(f"a PDQ match threshold is an integer from 0 to {MAX_THRESHOLD}, not {threshold!r}")


# ---------------------------------------------------------------------- describing hits

def describe(db, hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """JSON objects for hits, with what the database knows of each entry: labels,
    quality, coarse day, and a feedback summary (verdict -> count of the feedback
    entries that followed logs published about it, quoting its right leaf hash)."""
    out = []
    for hit in hits:
        row = db.follow.get_fingerprint(hit.origin, hit.index)
        labels, quality, day = (row.labels, row.quality, row.day) if row else ((), None, 0)
        feedback = db.follow.verdict_counts(hit.origin, hit.index)
        item: dict[str, Any] = {"origin": hit.origin, "index": hit.index, "signal": hit.signal,
                                "distance": hit.distance}
        if hit.query_coverage is not None:
            item["query_coverage"] = round(hit.query_coverage, 3)
            item["indexed_coverage"] = round(hit.indexed_coverage, 3)
            item["distance"] = round(hit.distance, 3)
        item["labels"] = list(labels)
        item["quality"] = quality
        item["day"] = day_to_json(day)
        item["feedback"] = feedback
        out.append(item)
    return out
