"""One in-memory index class per signal type, registered by the signal's code in `SIGNAL_INDEXES`.

In the manner of python-threatexchange's `SignalType.get_index_cls()` and
`SignalTypeIndex`: the matcher service (node/matcher/service.py) keeps the entry ids,
followed logs, thresholds, holds and suppressions common to every signal, and hands
each fingerprint to the index of its signal, found in ONE table:

    SIGNAL_INDEXES = {PDQ.code: PdqPhotos, MD5.code: Md5Videos, VPDQ.code: VpdqVideos}

so no other code of the matcher, the match API, the holds or the store's loaders
tests a signal's name or code. What differs between signals lives in their class:

  PdqPhotos   the exact PDQ index (node/matcher/pdq_index.py, compiled core): every
              entry within its log's threshold, the nearest `limit` and the total;
              loaded from the database in arrays; its near-duplicate groups are the
              dense clusters the holds hold (node/matcher/holds.py).
  Md5Videos   a dict from the 16 bytes to entry ids: identical files only.
  VpdqVideos  a second PDQ index of the unique good-quality frames of every video,
              each frame pointing back to its video; a query's unique good frames are
              searched there and the coverage rule of protocol.signals (query coverage
              >= 80 %, indexed coverage >= 0 %) applied per candidate video. The
              result equals `VPDQ.matches` against every video, without comparing
              every video.

Adding a signal type: its `protocol.signals.Signal` (parsing, checking), one class
here implementing `SignalIndex`, and one line in `SIGNAL_INDEXES`
(tests/test_signal_indexes.py registers a toy one, in the test only).

The interface (every method but the queries runs under the matcher's lock, or while
it loads):

    prepare(fingerprint)          -> what `add` takes, or None: this index cannot hold it
    add(code, indices, items)     index items of the log `code` (ascending log indices)
    remove(ids), remove_one(id)   drop entry ids (already marked GONE in the entry table)
    query(fingerprints, limit, threads) -> per query (hits, total or None = len(hits))
    query_arrays(...)             (optional: `answers_in_arrays`) the same as arrays of entry ids,
                                  no Python object per hit (node/matcher/answers.py)
    len(index)                    items indexed
    bulk_load()                   context of a start-up build; `bulk_size`: rows read in arrays
    figures(), grouping(), memory()   its part of the matcher's stats
    cluster_key(item), after_adds(added, cluster_size), dense_clusters(min_live)
                                  the holds' hooks (only an index whose `clustered` is True)
    echo(fingerprint_json)        what the match API repeats of an uploaded file's query
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from node.matcher.entries import Entries, Grow
from node.matcher.pdq_index import PDQIndex
from protocol.errors import SignalError
from protocol.signals import (
    DEFAULT_PDQ_THRESHOLD,
    LOW_QUALITY,
    MD5,
    PDQ,
    SIGNALS,
    VPDQ,
    VPDQ_INDEXED_COVERAGE,
    VPDQ_QUERY_COVERAGE,
    Signal,
)


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


class DenseCluster(NamedTuple):
    """Many entries of one log near one centre (`tag`: the log's origin code);
    `members()` lists their entry ids (read only when the cluster is to be held)."""

    tag: int
    centre: bytes
    radius: int
    members: Callable[[], np.ndarray]


class SignalIndex:
    """The index of one signal type (the interface: the module's docstring).

    Subclasses set `signal` (its protocol.signals type), `label` (as the log names it),
    `media` ("image" or "video": what an upload hashed to this signal is) and, where
    they take Matcher keyword options, `options` (their names)."""

    signal: Signal
    label: str
    media: str
    options: tuple[str, ...] = ()
    bulk_size: int | None = None   # fixed size: the build reads its rows in arrays (add gets a matrix)
    clustered = False              # its entries can form held clusters (cluster_key is 32 bytes of PDQ space)
    answers_in_arrays = False      # it has `query_arrays` (int distances; the matcher sorts and describes them)

    def __init__(self, entries: Entries, *, threads: int | None = None):
        self.entries = entries
        self.threads = threads
        self.code = self.signal.code
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def bulk_load(self):
        return nullcontext(self)

    def prepare(self, fingerprint: bytes) -> Any | None:
        raise NotImplementedError

    def add(self, code: int, indices: np.ndarray, items) -> None:
        raise NotImplementedError

    def remove(self, ids: np.ndarray) -> None:
        raise NotImplementedError

    def remove_one(self, entry: int) -> None:
        """`remove` of one entry id (a withdrawal at a time: override where arrays cost)."""
        self.remove(np.array([entry], dtype=np.int64))

    def query(self, fingerprints: Sequence[bytes], limit: int,
              threads: int | None) -> list[tuple[list[Hit], int | None]]:
        raise NotImplementedError

    def figures(self) -> dict[str, int]:
        return {}

    def grouping(self) -> dict[str, int]:
        return {}

    def memory(self) -> int:
        return 0

    def cluster_key(self, item) -> bytes:
        raise NotImplementedError

    def after_adds(self, added: int, cluster_size: int) -> bool:
        """After `add` (not during a bulk load): whether dense clusters may have formed."""
        return False

    def dense_clusters(self, min_live: int) -> list[DenseCluster]:
        return []

    @classmethod
    def echo(cls, fingerprint: Any) -> dict[str, Any]:
        """What the match API repeats of an uploaded file's query (its JSON fingerprint)."""
        return {"fingerprint": fingerprint}

    def _hit(self, entry: int, distance, *coverage) -> Hit:
        return Hit(*self.entries.name(entry), self.signal.name, distance, *coverage)


def _matrix(fingerprints: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(fingerprints), dtype=np.uint8).reshape(-1, 32)


class PdqPhotos(SignalIndex):
    """PDQ: items carry their log as a tag in the PDQ index, which applies each log's
    threshold itself and answers the nearest `limit` and the total without listing
    every match (spec/parts/matching.md)."""

    signal = PDQ
    label = "PDQ"
    media = "image"
    bulk_size = PDQ.size
    clustered = True
    answers_in_arrays = True

    def __init__(self, entries: Entries, *, threads: int | None = None):
        super().__init__(entries, threads=threads)
        self.index = PDQIndex(DEFAULT_PDQ_THRESHOLD, threads=threads)
        self._changes_before = 0

    def bulk_load(self):
        return self.index.bulk_load()

    def prepare(self, fingerprint: bytes) -> bytes | None:
        return bytes(fingerprint) if len(fingerprint) == 32 else None

    def add(self, code: int, indices: np.ndarray, items) -> None:
        self._changes_before = self._changes()
        ids = self.entries.new(code, indices, self.code)
        self.index.add_many(ids, items, np.full(len(ids), code, dtype=np.uint16))
        self.count += len(ids)

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove_many(ids)
        self.count -= len(ids)

    def remove_one(self, entry: int) -> None:
        self.index.remove(entry)
        self.count -= 1

    def query(self, fingerprints, limit, threads):
        query_numbers, ids, distances, totals = self.query_arrays(fingerprints, limit, threads)
        found: list[list[Hit]] = [[] for _ in fingerprints]
        for q, entry, distance in zip(query_numbers.tolist(), ids.tolist(), distances.tolist()):
            found[q].append(self._hit(entry, distance))
        return list(zip(found, totals.tolist()))

    def query_arrays(self, fingerprints, limit, threads):
        """`query` as arrays, without a Python object per hit: (query number, entry id,
        distance) of every hit, grouped by query, and the total of each query. An entry
        withdrawn while the search ran is left out (and out of its query's total)."""
        entries = self.entries
        if len(fingerprints) == 1:
            threads = 1
        n = len(entries.origins)
        query_numbers, ids, distances, totals = self.index.nearest_arrays(
            _matrix(fingerprints), max(1, min(limit, 2**31 - 1)), entries.default_threshold,
            thresholds=entries.thresholds[:n], threads=threads)
        live = entries.live(ids, self.code)
        if not live.all():
            totals = totals - np.bincount(query_numbers[~live], minlength=len(totals))
            query_numbers, ids, distances = query_numbers[live], ids[live], distances[live]
        return query_numbers, ids, distances, totals

    def grouping(self) -> dict[str, int]:
        stats = self.index.stats()
        return {"groups": stats["groups"], "grouped": stats["grouped"]}

    def memory(self) -> int:
        stats = self.index.stats()
        return stats["table_bytes"] + stats["fingerprint_bytes"] + stats["group_bytes"]

    # -- the holds' hooks: the PDQ index groups near-duplicates, so it finds dense clusters

    def cluster_key(self, item: bytes) -> bytes:
        return item

    def _changes(self) -> int:
        stats = self.index.stats()
        return stats["merges"] + stats["rebuilds"]

    def after_adds(self, added: int, cluster_size: int) -> bool:
        if added >= cluster_size:
            self.index.flush()  # near-duplicate groups form when adds are merged: now
        return self._changes() != self._changes_before

    def dense_clusters(self, min_live: int) -> list[DenseCluster]:
        return [DenseCluster(c["tag"], c["centre"], c["radius"],
                             lambda group=c["group"]: self.index.cluster_members(group))
                for c in self.index.clusters(min_live=min_live)]


class Md5Videos(SignalIndex):
    """MD5: identical bytes only, from a dict."""

    signal = MD5
    label = "MD5"
    media = "video"

    def __init__(self, entries: Entries, *, threads: int | None = None):
        super().__init__(entries, threads=threads)
        self.ids: dict[bytes, list[int]] = {}
        self.of: dict[int, bytes] = {}

    def prepare(self, fingerprint: bytes) -> bytes | None:
        return bytes(fingerprint) if len(fingerprint) == 16 else None

    def add(self, code: int, indices: np.ndarray, items) -> None:
        for entry, fingerprint in zip(self.entries.new(code, indices, self.code).tolist(), items):
            self.ids.setdefault(fingerprint, []).append(entry)
            self.of[entry] = fingerprint
        self.count += len(indices)

    def remove(self, ids: np.ndarray) -> None:
        for entry in ids.tolist():
            fingerprint = self.of.pop(entry)
            remaining = [e for e in self.ids[fingerprint] if e != entry]
            if remaining:
                self.ids[fingerprint] = remaining
            else:
                del self.ids[fingerprint]
        self.count -= len(ids)

    def query(self, fingerprints, limit, threads):
        out = []
        for fingerprint in fingerprints:
            ids = self.ids.get(fingerprint)
            live = self.entries.signal.array
            out.append(([self._hit(entry, 0) for entry in list(ids) if live[entry] == self.code] if ids else [], None))
        return out


class VpdqVideos(SignalIndex):
    """vPDQ: frames in a second PDQ index, searched at the largest threshold in use;
    each hit kept only if within the threshold of the log it came from; then the
    coverage rule per candidate video."""

    signal = VPDQ
    label = "vPDQ"
    media = "video"
    options = ("vpdq_query_coverage", "vpdq_indexed_coverage")

    def __init__(self, entries: Entries, *, threads: int | None = None,
                 vpdq_query_coverage: float = VPDQ_QUERY_COVERAGE,
                 vpdq_indexed_coverage: float = VPDQ_INDEXED_COVERAGE):
        super().__init__(entries, threads=threads)
        self.query_coverage = float(vpdq_query_coverage)
        self.indexed_coverage = float(vpdq_indexed_coverage)
        self.frames = PDQIndex(DEFAULT_PDQ_THRESHOLD, threads=threads)
        self.frame_video = Grow(np.uint32)
        self.video_frames: dict[int, tuple[int, int]] = {}  # entry id -> (first frame id, unique frames)

    def prepare(self, fingerprint: bytes) -> list[int] | None:
        try:
            return sorted(VPDQ.unique_frames(bytes(fingerprint), LOW_QUALITY))
        except SignalError:
            return None

    def add(self, code: int, indices: np.ndarray, items) -> None:
        for entry, frames in zip(self.entries.new(code, indices, self.code).tolist(), items):
            first = self.frame_video.length
            if frames:
                self.frame_video.append(np.full(len(frames), entry, dtype=np.uint32))
                self.frames.add_many(np.arange(first, first + len(frames)), [f.to_bytes(32, "big") for f in frames])
            self.video_frames[entry] = (first, len(frames))
        self.count += len(indices)

    def remove(self, ids: np.ndarray) -> None:
        for entry in ids.tolist():
            first, n = self.video_frames.pop(entry)
            if n:
                self.frames.remove_many(np.arange(first, first + n))
        self.count -= len(ids)

    def query(self, fingerprints, limit, threads):
        return [(self._match(fingerprint, threads), None) for fingerprint in fingerprints]

    def _match(self, fingerprint: bytes, threads) -> list[Hit]:
        entries = self.entries
        query_frames = sorted(VPDQ.unique_frames(fingerprint, LOW_QUALITY))
        if not query_frames:
            return []  # nothing comparable is never a match (protocol.signals)
        query_numbers, frame_ids, distances = self.frames.search_arrays(
            _matrix([f.to_bytes(32, "big") for f in query_frames]), entries.search_threshold(), threads=threads)
        if not len(frame_ids):
            return []
        videos = self.frame_video.array[frame_ids].astype(np.int64)
        origins = entries.origin.array[videos]
        keep = (distances <= entries.thresholds[origins]) & entries.live(videos, self.code)
        query_numbers, frame_ids, videos = query_numbers[keep], frame_ids[keep], videos[keep]
        hits = []
        for video in np.unique(videos).tolist():
            mine = videos == video
            frames = self.video_frames.get(video)
            if frames is None or not frames[1]:
                continue
            # The same counts as protocol.signals._coverage, from the index's answers:
            # query frames with some frame of this video within the threshold, and
            # frames of this video with some query frame within it.
            query_percent = len(np.unique(query_numbers[mine])) * 100 / len(query_frames)
            indexed_percent = len(np.unique(frame_ids[mine])) * 100 / frames[1]
            if query_percent >= self.query_coverage and indexed_percent >= self.indexed_coverage:
                hits.append(self._hit(video, 100.0 - query_percent, query_percent, indexed_percent))
        return hits

    def figures(self) -> dict[str, int]:
        return {"vpdq_frames": self.frames.stats()["live"]}

    def memory(self) -> int:
        stats = self.frames.stats()
        return stats["table_bytes"] + stats["fingerprint_bytes"]

    @classmethod
    def echo(cls, fingerprint: Any) -> dict[str, Any]:
        return {"frames": len(fingerprint)}  # a video's frame list is long; its matches say enough


SIGNAL_INDEXES: dict[int, type[SignalIndex]] = {
    PDQ.code: PdqPhotos,
    MD5.code: Md5Videos,
    VPDQ.code: VpdqVideos,
}
"""The index class of each signal type, by the signal's code: the one table to extend."""


def index_class(signal_name: str) -> type[SignalIndex] | None:
    """The index class of the signal called `signal_name` (None: no index, never matches)."""
    signal = SIGNALS.get(signal_name)
    return SIGNAL_INDEXES.get(signal.code) if signal is not None else None


def index_options() -> dict[str, type[SignalIndex]]:
    """Every Matcher keyword option a registered index class takes, and that class."""
    return {option: cls for cls in SIGNAL_INDEXES.values() for option in cls.options}
