"""An exact in-memory index of PDQ fingerprints, for matching uploads at platform scale.

`PDQIndex` maps integer ids to 32-byte PDQ fingerprints and answers "which ids are
within Hamming distance T of this fingerprint?" exactly: every item within T is
returned and nothing else (no approximate search). `nearest` answers what a match API
needs, the nearest few and how many matched in all, at a cost that does not grow with
the matches it does not return. The work is done by the compiled core `_pdqindex`
(multi-index hashing with pigeonhole-exact probing over a partition of the bits chosen
from the data, and near-duplicate groups; spec/parts/matching.md).

Invariants callers can rely on:
- `remove(id)` takes effect for every search that starts after it returns (a
  withdrawal stops matching at once).
- `add(id, fp)` on an existing id replaces its fingerprint.
- Ids are non-negative integers below 2**31 - 1, used to address storage directly:
  memory is about 33 bytes x (largest id + 1), so use dense ids (e.g. SQLite rowids)
  and keep the id -> (origin, index) mapping in the database, where only the few
  matched ids are ever looked up.
- Searches may run from several threads at once (they release the GIL); adds and
  removes wait for running searches and block new ones while they run.
- Each item may carry a tag (0..65535, e.g. the followed log it came from); a search
  may give each tag its own threshold (`thresholds`), and near-duplicate groups never
  mix tags.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from operator import itemgetter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from protocol.errors import SignalError, UsageError

try:
    from node.matcher import _pdqindex
except ImportError as error:  # pragma: no cover - only when the package was not built
    raise ImportError(
        "the compiled PDQ index (node/matcher/_pdqindex.c) is not built; "
        "run `pip install -e .` in the repository (needs a C compiler)"
    ) from error

DEFAULT_THRESHOLD = 31
FINGERPRINT_BYTES = 32
MAX_THRESHOLD = _pdqindex.MAX_THRESHOLD
MAX_ID = _pdqindex.MAX_ID
MAX_TAG = 0xFFFF
GROUP_RADIUS = _pdqindex.GROUP_RADIUS
GROUP_MIN = _pdqindex.GROUP_MIN

# search modes of the core: let the planner choose, force the tables, force a scan
_MODES = {"auto": 0, "tables": 1, "scan": 2}


def _mode(mode: str) -> int:
    if mode not in _MODES:
        raise UsageError(f"search mode must be one of {', '.join(_MODES)}, not {mode!r}")
    return _MODES[mode]


class Match(NamedTuple):
    id: int
    distance: int


class Nearest(NamedTuple):
    """The nearest matches (by distance, then id) and how many matched in all."""

    matches: list[Match]
    total: int


def _default_threads() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 64))


def _fingerprint_bytes(fingerprint: bytes) -> bytes:
    if not isinstance(fingerprint, (bytes, bytearray, memoryview)):
        raise SignalError(f"a PDQ fingerprint is 32 bytes, not {type(fingerprint).__name__}")
    if len(fingerprint) != FINGERPRINT_BYTES:
        raise SignalError(f"a PDQ fingerprint is 32 bytes, not {len(fingerprint)}")
    return bytes(fingerprint)


def _fingerprint_matrix(fingerprints) -> np.ndarray:
    """n x 32 uint8 C-contiguous array from an array, bytes of n*32, or a list of bytes."""
    if isinstance(fingerprints, np.ndarray):
        array = np.ascontiguousarray(fingerprints, dtype=np.uint8)
        if array.ndim == 1 and array.size % FINGERPRINT_BYTES == 0:
            array = array.reshape(-1, FINGERPRINT_BYTES)
    elif isinstance(fingerprints, (bytes, bytearray, memoryview)):
        if len(fingerprints) % FINGERPRINT_BYTES:
            raise SignalError(f"{len(fingerprints)} bytes is not a whole number of 32-byte PDQ fingerprints")
        array = np.frombuffer(fingerprints, dtype=np.uint8).reshape(-1, FINGERPRINT_BYTES)
    else:
        items = list(fingerprints)
        for item in _odd_ones(items):
            _fingerprint_bytes(item)
        array = np.frombuffer(b"".join(items), dtype=np.uint8).reshape(-1, FINGERPRINT_BYTES)
    if array.ndim != 2 or array.shape[1] != FINGERPRINT_BYTES:
        raise SignalError(f"PDQ fingerprints must be an n x 32 array of bytes, not shape {array.shape}")
    return array


def _odd_ones(fingerprints: list) -> list:
    """The items of a list of would-be fingerprints whose type or length is unusual
    (checked at C speed; only the odd ones reach Python code)."""
    if set(map(type, fingerprints)) <= {bytes} and set(map(len, fingerprints)) <= {FINGERPRINT_BYTES}:
        return []
    return fingerprints


def _tag_array(tags, count: int) -> np.ndarray | None:
    if tags is None:
        return None
    array = np.asarray(tags).reshape(-1)
    if len(array) != count:
        raise UsageError(f"{count} ids but {len(array)} tags")
    if array.size and (array.dtype.kind not in "iu" or array.min() < 0 or array.max() > MAX_TAG):
        raise UsageError(f"tags must be integers between 0 and {MAX_TAG}")
    return np.ascontiguousarray(array, dtype=np.uint16)


def _threshold_array(thresholds) -> np.ndarray | None:
    """Per-tag thresholds (index = tag; negative = that tag never matches)."""
    if thresholds is None:
        return None
    array = np.asarray(thresholds).reshape(-1)
    if array.size and (array.dtype.kind not in "iu" or array.max() > MAX_THRESHOLD or array.min() < -1):
        raise UsageError(f"per-tag thresholds are integers from -1 (never) to {MAX_THRESHOLD}")
    return np.ascontiguousarray(array, dtype=np.int16)


def _id_array(ids) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1:
        array = array.reshape(-1)
    if array.size and (array.dtype.kind not in "iu" or array.min() < 0 or array.max() > MAX_ID):
        raise UsageError(f"ids must be integers between 0 and {MAX_ID}")
    return np.ascontiguousarray(array, dtype=np.uint32)


class PDQIndex:
    """Exact Hamming-distance index of PDQ fingerprints keyed by integer ids.

    `threshold` is the default match distance (31, the PDQ recommendation); any
    threshold from 0 to 256 can be asked per search and the answer stays exact (the
    planner probes the tables when that is cheaper and scans every item otherwise).
    `table_widths` fixes the table layout (bits per table, at most 256 in total);
    by default it follows the number of items at each rebuild.
    `overflow_max` is how many adds wait in the linearly scanned overflow list before
    they are merged into the tables. `partition=False` keeps the bits in their order
    instead of choosing the tables' bits from the data (for comparisons; both are exact).
    """

    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        *,
        table_widths: Sequence[int] | None = None,
        overflow_max: int = 32768,
        threads: int | None = None,
        partition: bool = True,
    ):
        self._check_threshold(threshold)
        try:
            self._core = _pdqindex.Index(
                list(table_widths) if table_widths is not None else None, threshold, overflow_max, partition
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        self.threshold = threshold
        self.threads = threads or _default_threads()

    # -------------------------------------------------------------- building

    @classmethod
    def from_arrays(cls, ids, fingerprints, **options) -> PDQIndex:
        """An index of `ids[i] -> fingerprints[i]`, built in one pass."""
        index = cls(**options)
        with index.bulk_load():
            index.add_many(ids, fingerprints)
        return index

    @classmethod
    def from_sqlite(
        cls, connection: sqlite3.Connection, query: str, parameters: Sequence = (), *, chunk: int = 262144, **options
    ) -> PDQIndex:
        """An index of the rows of `query`, each `(id, fingerprint blob)`."""
        index = cls(**options)
        index.load_sqlite(connection, query, parameters, chunk=chunk)
        return index

    def load_sqlite(self, connection: sqlite3.Connection, query: str, parameters: Sequence = (), *, chunk: int = 262144):
        """Add the rows `(id, 32-byte fingerprint)` of `query` in one bulk load."""
        cursor = connection.execute(query, parameters)
        with self.bulk_load():
            while rows := cursor.fetchmany(chunk):
                fingerprints = list(map(itemgetter(1), rows))
                if any(not isinstance(f, bytes) or len(f) != FINGERPRINT_BYTES for f in _odd_ones(fingerprints)):
                    raise SignalError("a row of the query has a fingerprint that is not 32 bytes")
                ids = np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=len(rows))
                matrix = np.frombuffer(b"".join(fingerprints), dtype=np.uint8).reshape(-1, FINGERPRINT_BYTES)
                self.add_many(ids, matrix)

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[PDQIndex]:
        """Adds inside the block are not merged one batch at a time; the tables are
        rebuilt once at the end. Searches stay exact meanwhile (they scan the adds)."""
        self._core.set_deferred(True)
        try:
            yield self
        finally:
            self._core.set_deferred(False)
            self._core.rebuild()

    def rebuild(self) -> None:
        """Rebuild the tables now: merges pending adds and drops removed items."""
        self._core.rebuild()

    # -------------------------------------------------------------- changes

    def add(self, id: int, fingerprint: bytes, tag: int = 0) -> None:
        """Add `id`, or replace its fingerprint (or tag)."""
        fingerprint = _fingerprint_bytes(fingerprint)
        try:
            self._core.add(id, fingerprint, tag)
        except (ValueError, TypeError, OverflowError) as error:
            raise UsageError(str(error)) from None

    def add_many(self, ids, fingerprints, tags=None) -> None:
        """Add many items: `ids` (integers), fingerprints (n x 32 uint8 array, n*32
        bytes, or a list of 32-byte strings) and optionally their tags."""
        id_array = _id_array(ids)
        matrix = _fingerprint_matrix(fingerprints)
        if len(id_array) != len(matrix):
            raise UsageError(f"{len(id_array)} ids but {len(matrix)} fingerprints")
        self._core.add_many(id_array, matrix, _tag_array(tags, len(id_array)))

    def remove(self, id: int) -> bool:
        """Stop matching `id`; False if it was not in the index."""
        try:
            return self._core.remove(id)
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from None

    def remove_many(self, ids) -> int:
        """Stop matching all of `ids`; returns how many were in the index."""
        return self._core.remove_many(_id_array(ids))

    # -------------------------------------------------------------- queries

    def search(self, fingerprint: bytes, threshold: int | None = None, *, mode: str = "auto",
               thresholds=None) -> list[Match]:
        """Items within `threshold` of `fingerprint` (or within their tag's entry of
        `thresholds`), nearest first (ties by id)."""
        fingerprint = _fingerprint_bytes(fingerprint)
        threshold = self._check_threshold(threshold)
        hits, _ = self._core.search(fingerprint, threshold, _mode(mode), 0, _threshold_array(thresholds))
        return [Match(id, distance) for id, distance in sorted(hits, key=lambda hit: (hit[1], hit[0]))]

    def nearest(self, fingerprint: bytes, limit: int, threshold: int | None = None, *, mode: str = "auto",
                thresholds=None) -> Nearest:
        """The `limit` nearest items within the threshold (by distance, then id) and
        how many are within it in all; the work does not grow with the matches beyond
        `limit` that are not returned (spec/parts/matching.md)."""
        fingerprint = _fingerprint_bytes(fingerprint)
        threshold = self._check_threshold(threshold)
        hits, total = self._core.search(fingerprint, threshold, _mode(mode), self._check_limit(limit),
                                        _threshold_array(thresholds))
        return Nearest([Match(id, distance) for id, distance in hits], total)

    def search_arrays(
        self, fingerprints, threshold: int | None = None, *, threads: int | None = None, mode: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch search on several threads: arrays (query number, id, distance),
        sorted by query, then distance, then id."""
        matrix = _fingerprint_matrix(fingerprints)
        threshold = self._check_threshold(threshold)
        raw, _ = self._core.search_many(matrix, threshold, threads or self.threads, _mode(mode))
        triples = np.frombuffer(raw, dtype=np.uint32).reshape(-1, 3)
        order = np.lexsort((triples[:, 1], triples[:, 2], triples[:, 0]))
        triples = triples[order]
        return triples[:, 0].astype(np.int64), triples[:, 1].astype(np.int64), triples[:, 2].astype(np.int64)

    def nearest_arrays(
        self, fingerprints, limit: int, threshold: int | None = None, *, thresholds=None,
        threads: int | None = None, mode: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`nearest` for a batch, on several threads: arrays (query number, id,
        distance) sorted by query, then distance, then id, and the total per query."""
        matrix = _fingerprint_matrix(fingerprints)
        threshold = self._check_threshold(threshold)
        raw, totals = self._core.search_many(matrix, threshold, threads or self.threads, _mode(mode),
                                             self._check_limit(limit), _threshold_array(thresholds))
        triples = np.frombuffer(raw, dtype=np.uint32).reshape(-1, 3)
        # each query's hits arrive together and in order: only the queries need ordering
        triples = triples[np.argsort(triples[:, 0], kind="stable")]
        return (triples[:, 0].astype(np.int64), triples[:, 1].astype(np.int64), triples[:, 2].astype(np.int64),
                np.frombuffer(totals, dtype=np.uint64).astype(np.int64))

    def search_many(
        self, fingerprints, threshold: int | None = None, *, threads: int | None = None, mode: str = "auto"
    ) -> list[list[Match]]:
        """`search` for each fingerprint, run on several threads."""
        matrix = _fingerprint_matrix(fingerprints)
        queries, ids, distances = self.search_arrays(matrix, threshold, threads=threads, mode=mode)
        results: list[list[Match]] = [[] for _ in range(len(matrix))]
        for query, id, distance in zip(queries.tolist(), ids.tolist(), distances.tolist()):
            results[query].append(Match(id, distance))
        return results

    # -------------------------------------------------------------- introspection

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, int) and 0 <= id <= MAX_ID and self._core.get(id) is not None

    def fingerprint(self, id: int) -> bytes | None:
        """The fingerprint stored under `id`, or None."""
        return self._core.get(id)

    def flush(self) -> None:
        """Merge the adds waiting in the overflow list now (near-duplicate groups form
        when adds are merged)."""
        self._core.flush()

    def clusters(self, min_live: int = 0, tag: int | None = None) -> list[dict]:
        """The near-duplicate groups with at least `min_live` live members (of `tag`):
        each {group, tag, centre (32 bytes), radius, live}."""
        return self._core.clusters(min_live, -1 if tag is None else tag)

    def cluster_members(self, group: int) -> np.ndarray:
        """The ids of a group's live members, sorted."""
        return np.frombuffer(self._core.cluster_members(group), dtype=np.uint32).astype(np.int64)

    def plan(self, threshold: int | None = None) -> dict:
        """How a search at `threshold` would run: a scan, or the radius per table."""
        return self._core.plan(self._check_threshold(threshold))

    def stats(self) -> dict:
        """Item counts and the bytes held by tables and fingerprints."""
        return self._core.stats()

    @staticmethod
    def _check_limit(limit: int) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UsageError(f"limit must be a positive integer, not {limit!r}")
        return limit

    def _check_threshold(self, threshold: int | None) -> int:
        if threshold is None:
            return self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= MAX_THRESHOLD:
            raise UsageError(f"a PDQ match threshold is an integer from 0 to {MAX_THRESHOLD}, not {threshold!r}")
        return threshold


