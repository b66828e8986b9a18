"""A batch's answers without a Python object per hit: found as arrays, each distinct entry
described once (and kept between batches), written straight as the match API's JSON.

A batch of 1,000 uploads of a viral image hits the same near-duplicate entries again
and again (1,000 queries at clusters: ~96,000 hits of ~40,000 distinct entries). So:

    found = matcher.search(queries, limit)    # Found: the hits as arrays, sorted
    tails = matcher.descriptions_of(found)    # per distinct (origin, index): its described part
    text = answer_json(found, queries, tails, is_batch)  # the API's answer, JSON text

`Found` holds what the indexes that answer in arrays (PDQ: `answers_in_arrays`,
node/matcher/signal_indexes.py) found as numpy arrays (per distinct entry its origin
code and log index; per hit its query, entry and distance), sorted nearest first, then
by origin, then by index, as `Hit`s sort; the other indexes' few hits (videos) as
`Hit`s. `results()` gives the `QueryResult`s of `Matcher.match_many` for callers that
want objects.

A hit's JSON is a head (origin, index, signal, distance[, coverages]) and a tail (labels,
quality, day, feedback summary). The tail depends only on the entry, so it is read from
the database once per distinct entry (`read_tails`) and kept in `Descriptions`, a
bounded cache the matcher empties whenever its follower (or replica) applies a round
that holds feedback, or stops following a log: labels, quality and day never change,
and the feedback summary changes only when a round of a followed log commits feedback
(a round of submissions and withdrawals adds entries; it changes none). The text is
exactly what `json.dumps` made of the objects the API answered before (key order,
separators, escapes), and `described(...)` parses it back for callers that want
objects, so there is one writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import numpy as np

from node.matcher.signal_indexes import Hit
from protocol.entries import day_to_json

#: Distinct entries whose described part is kept between batches (about 100 bytes each:
#: identical tails are shared). Beyond it the cache starts again empty.
MAX_DESCRIBED = 200_000

NEAREST = attrgetter("distance", "origin", "index")  # the order of hits
_dumps = json.dumps


@dataclass(frozen=True)
class QueryResult:
    hits: list[Hit]      # nearest first, at most the `limit` asked
    total: int           # how many matched in all


class Found:
    """What a batch of queries found (the module's docstring): per query its total, and
    its hits nearest first, then by origin, then by log index. The array hits are held
    as the distinct entries hit (`codes`, `indices`, `signal`: origin code, log index,
    signal number of each) and per hit its query, distinct entry (`entry`) and distance."""

    def __init__(self, entries, totals: list[int], arrays: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                 lists: dict[int, list[Hit]]):
        """`entries`: the matcher's entry table (node/matcher/entries.py); `arrays`: per
        signal answering in arrays, (signal name, query numbers, entry ids, distances);
        `lists`: query number -> its `Hit`s, sorted."""
        self.totals = totals
        self.lists = lists
        self.names = entries.origins  # only grows: the codes read below stay valid
        self.signal_names = [a[0] for a in arrays]
        if arrays and sum(len(a[2]) for a in arrays):
            signal = np.concatenate([np.full(len(a[2]), k, dtype=np.uint8) for k, a in enumerate(arrays)])
            query, ids, distances = (np.concatenate([a[i] for a in arrays]) for i in (1, 2, 3))
            # Two sorts, not a sort per key: the distinct entries, ranked by (origin name,
            # log index); then the hits by one key (query, distance, that rank).
            unique, first, entry = np.unique(ids, return_index=True, return_inverse=True)
            entry = entry.reshape(-1)
            codes, indices = entries.origin.array[unique], entries.index.array[unique]
            rank = np.empty(len(unique), dtype=np.int64)
            rank[np.lexsort((indices, entries.name_rank()[codes]))] = np.arange(len(unique))
            key = (query * (int(distances.max()) + 1) + distances) * len(unique) + rank[entry]
            order = np.argsort(key, kind="stable")
            self.codes, self.indices, self.signal = codes, indices, signal[first]
            self.query, self.entry, self.distances = query[order], entry[order], distances[order]
        else:
            self.codes, self.signal = np.zeros(0, dtype=np.uint16), np.zeros(0, dtype=np.uint8)
            self.indices = self.query = self.entry = self.distances = np.zeros(0, dtype=np.int64)
        # the array hits of query q are [bounds[q], bounds[q + 1])
        self.bounds = np.searchsorted(self.query, np.arange(len(totals) + 1)).tolist()

    def __len__(self) -> int:
        return len(self.totals)

    def hit_count(self) -> int:
        return len(self.query) + sum(map(len, self.lists.values()))

    def hits(self, q: int) -> list[Hit]:
        """The hits of query `q` as objects."""
        listed = self.lists.get(q)
        if listed is not None:
            return listed
        entry = self.entry[self.bounds[q]:self.bounds[q + 1]]
        names, signal_names = self.names, self.signal_names
        return [Hit(names[code], index, signal_names[signal], distance)
                for code, index, signal, distance in zip(self.codes[entry].tolist(), self.indices[entry].tolist(),
                                                         self.signal[entry].tolist(),
                                                         self.distances[self.bounds[q]:self.bounds[q + 1]].tolist())]

    def results(self) -> list[QueryResult]:
        return [QueryResult(self.hits(q), total) for q, total in enumerate(self.totals)]

    def origins(self) -> Iterator[str]:
        """The origin of each hit (for the node's metrics), without a loop per hit."""
        counts = np.bincount(self.codes[self.entry]).tolist() if len(self.entry) else []
        return chain(chain.from_iterable(repeat(self.names[code], n) for code, n in enumerate(counts) if n),
                     (hit.origin for hits in self.lists.values() for hit in hits))

    def wanted(self) -> dict[str, list[int]]:
        """origin -> the distinct log indices hit in it."""
        out: dict[str, list[int]] = {}
        for code in np.unique(self.codes).tolist():
            out[self.names[code]] = self.indices[self.codes == code].tolist()
        for hits in self.lists.values():
            for hit in hits:
                out.setdefault(hit.origin, []).append(hit.index)  # twice is harmless
        return out


# ---------------------------------------------------------------------- the JSON

def read_tails(db, wanted: dict[str, Iterable[int]]) -> dict[str, dict[int, str]]:
    """origin -> log index -> the described part of that entry's JSON, from the
    database: labels, quality, coarse day, and the feedback summary (verdict -> count of
    the feedback entries that followed logs published about it, quoting its right leaf
    hash); a few queries per log for all of them. Entries that say the same share one
    text, written once."""
    out: dict[str, dict[int, str]] = {}
    written: dict[tuple, str] = {}
    for origin, indices in wanted.items():
        rows = db.follow.descriptions_by_index(origin, indices)
        verdicts = db.follow.verdict_counts_many(origin, indices)
        tails = out[origin] = {}
        for index in set(indices):
            row, counts = rows.get(index, NO_ROW), verdicts.get(index)
            key = (row, tuple(counts.items())) if counts else row
            tail = written.get(key)
            if tail is None:
                tail = written[key] = _tail(*row, counts or {})
            tails[index] = tail
    return out


NO_ROW = ((), None, 0)  # (labels, quality, day) of an entry the database has no row for


def _tail(labels: tuple[str, ...], quality: int | None, day: int, feedback: dict[str, int]) -> str:
    return (f', "labels": {_dumps(list(labels))}, "quality": {_dumps(quality)}, "day": {_dumps(day_to_json(day))}, '
            f'"feedback": {_dumps(feedback)}}}')


def hit_json(hit: Hit, tail: str) -> str:
    """One hit as the API writes it (vPDQ: its coverages, and the distance rounded)."""
    if hit.query_coverage is None:
        head = (f'{{"origin": {_dumps(hit.origin)}, "index": {_dumps(hit.index)}, "signal": {_dumps(hit.signal)}, '
                f'"distance": {_dumps(hit.distance)}')
    else:
        head = (f'{{"origin": {_dumps(hit.origin)}, "index": {_dumps(hit.index)}, "signal": {_dumps(hit.signal)}, '
                f'"distance": {_dumps(round(hit.distance, 3))}, "query_coverage": {_dumps(round(hit.query_coverage, 3))}, '
                f'"indexed_coverage": {_dumps(round(hit.indexed_coverage, 3))}')
    return head + tail


def _hit_pieces(found: Found, tails: dict[str, dict[int, str]]) -> list[str]:
    """The array hits' JSON in pieces, 4 per hit (head, distance, tail, ", "), in the
    order of `found`: each distinct entry's head and tail made once, and no string per
    hit (one join makes the answer). The hits of query q are
    [4 * bounds[q], 4 * bounds[q + 1] - 1) (its last separator left out)."""
    names, signal_names = found.names, [_dumps(name) for name in found.signal_names]
    origin_json = {code: _dumps(names[code]) for code in np.unique(found.codes).tolist()}
    heads, ends = [], []
    for code, index, signal in zip(found.codes.tolist(), found.indices.tolist(), found.signal.tolist()):
        heads.append(f'{{"origin": {origin_json[code]}, "index": {index}, "signal": {signal_names[signal]}, '
                     '"distance": ')
        ends.append(tails[names[code]][index])
    grid = np.empty((len(found.entry), 4), dtype=object)
    grid[:, 0] = np.array(heads, dtype=object)[found.entry]
    grid[:, 1] = np.array([str(d) for d in range(int(found.distances.max()) + 1)], dtype=object)[found.distances]
    grid[:, 2] = np.array(ends, dtype=object)[found.entry]
    grid[:, 3] = ", "
    return grid.ravel().tolist()


def answer_json(found: Found, queries: Sequence[Any], tails: dict[str, dict[int, str]], is_batch: bool) -> str:
    """The API's answer as JSON text: {"results": [...]} of a batch, else its one
    {"signal", "matches", "total"}, made by one join."""
    pieces = _hit_pieces(found, tails) if len(found.entry) else []
    bounds = found.bounds
    out = ['{"results": ['] if is_batch else []
    for q, (query, total) in enumerate(zip(queries, found.totals)):
        if q:
            out.append(", ")
        out.append(f'{{"signal": {_dumps(query.signal)}, "matches": [')
        listed = found.lists.get(q)
        if listed is not None:
            out.append(", ".join(hit_json(hit, tails[hit.origin][hit.index]) for hit in listed))
        elif bounds[q + 1] > bounds[q]:
            out += pieces[4 * bounds[q]:4 * bounds[q + 1] - 1]
        out.append(f'], "total": {total}}}')
    if is_batch:
        out.append("]}")
    return "".join(out)


def described(batch: Sequence[Sequence[Hit]], tails: dict[str, dict[int, str]]) -> list[list[dict[str, Any]]]:
    """The JSON objects of each list of hits (the same text, parsed)."""
    return [json.loads("[" + ", ".join(hit_json(hit, tails[hit.origin][hit.index]) for hit in hits) + "]")
            for hits in batch]


def wanted_by(batch: Iterable[Iterable[Hit]]) -> dict[str, set[int]]:
    """origin -> the distinct log indices of these hits."""
    out: dict[str, set[int]] = {}
    for hits in batch:
        for hit in hits:
            out.setdefault(hit.origin, set()).add(hit.index)
    return out


# ---------------------------------------------------------------------- the cache

class _Generation:
    """What the cache holds since it was last emptied."""

    __slots__ = ("by_origin", "count", "shared")

    def __init__(self):
        self.by_origin: dict[str, dict[int, str]] = {}
        self.shared: dict[str, str] = {}   # one object per distinct tail
        self.count = 0


class Descriptions:
    """The described part of each entry hit recently (`read_tails`), kept between
    batches, at most `limit` entries (then it starts again empty). `forget()` empties
    it (the matcher calls it when its follower or replica applies feedback). Safe from
    many threads: each call works on the generation it started with, so what it read
    before a `forget` never lands in the generation that follows it; a generation is
    only ever added to."""

    def __init__(self, limit: int = MAX_DESCRIBED):
        self.limit = limit
        self._generation = _Generation()

    def forget(self) -> None:
        self._generation = _Generation()

    def __len__(self) -> int:
        return self._generation.count

    def tails(self, db, wanted: dict[str, Iterable[int]]) -> dict[str, dict[int, str]]:
        """`read_tails`, from the cache where it can (`db` is read for the others). The
        mappings returned may hold more entries than asked."""
        generation = self._generation  # before reading the database (the class docstring)
        out: dict[str, dict[int, str]] = {}
        missing: dict[str, list[int]] = {}
        for origin, indices in wanted.items():
            known = generation.by_origin.get(origin)
            if known is None:
                missing[origin] = list(indices)
                continue
            lacking = [index for index in indices if index not in known]
            if lacking:
                missing[origin] = lacking
            out[origin] = known
        if not missing:
            return out
        read = read_tails(db, missing)
        new = sum(map(len, read.values()))
        if generation.count + new > self.limit:  # full: start again (from the next batch)
            self._generation = _Generation()
            for origin, tails in read.items():
                out[origin] = {**out.get(origin, {}), **tails}
            return out
        shared = generation.shared
        for origin, tails in read.items():
            known = generation.by_origin.setdefault(origin, {})
            for index, tail in tails.items():
                known[index] = shared.setdefault(tail, tail)
            out[origin] = known
        generation.count += new
        return out
