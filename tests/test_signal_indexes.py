"""Per-signal index classes (node/matcher/signal_indexes.py): adding a signal type is
one protocol Signal, one SignalIndex class and one line in SIGNAL_INDEXES.

A toy signal ("toy": one byte, matching values within 2 of each other) is registered
here, in the test only, and goes through the real paths: a real SQLite database that
the matcher builds from, the follower's additions and withdrawals, the holds' budgets,
the match API's parsing, describing and answering, and the stats; PDQ keeps matching
beside it. No code of the matcher, the API or the store knows its name."""

from __future__ import annotations

from typing import Any

import pytest

from node.matcher.api import media_answer, parse_match_body, result_json
from node.matcher.service import Matcher, Query
from node.matcher.signal_indexes import SIGNAL_INDEXES, SignalIndex
from node.store import follow as follow_store
from node.store import open_db
from protocol.errors import SignalError
from protocol.signals import PDQ, SIGNALS, SIGNALS_BY_CODE, Signal

LOG = "toy.example/helpline"


class ToySignal(Signal):
    """One byte (say, an image's mean brightness); two values match within 2."""

    name = "toy"
    code = 200
    size = 1
    has_quality = False

    def parse_json(self, value: Any) -> bytes:
        if type(value) is not int or not 0 <= value <= 255:
            raise SignalError(f"a toy fingerprint is an integer from 0 to 255, not {value!r:.40}")
        return bytes([value])

    def to_json(self, data: bytes) -> int:
        self.validate(data)
        return data[0]

    def distance(self, a: bytes, b: bytes) -> int:
        return abs(a[0] - b[0])

    def matches(self, query: bytes, indexed: bytes) -> bool:
        return self.distance(query, indexed) <= 2

    def examples(self) -> list[bytes]:
        return [b"\x10"]


TOY = ToySignal()


class ToyValues(SignalIndex):
    """The toy's index: entry ids by value; a query looks at the 5 values around it."""

    signal = TOY
    label = "toy"
    media = "image"

    def __init__(self, entries, *, threads=None):
        super().__init__(entries, threads=threads)
        self.by_value: dict[int, set[int]] = {}
        self.value_of: dict[int, int] = {}

    def prepare(self, fingerprint: bytes) -> int | None:
        return fingerprint[0] if len(fingerprint) == 1 else None

    def add(self, code, indices, items) -> None:
        for entry, value in zip(self.entries.new(code, indices, self.code).tolist(), items):
            self.by_value.setdefault(value, set()).add(entry)
            self.value_of[entry] = value
        self.count += len(indices)

    def remove(self, ids) -> None:
        for entry in ids.tolist():
            self.by_value[self.value_of.pop(entry)].discard(entry)
        self.count -= len(ids)

    def query(self, fingerprints, limit, threads):
        out = []
        for fingerprint in fingerprints:
            q = fingerprint[0]
            out.append(([self._hit(entry, abs(value - q)) for value in range(q - 2, q + 3)
                         for entry in self.by_value.get(value, ())], None))
        return out


@pytest.fixture
def toy(monkeypatch):
    """Register the toy signal (protocol) and its index class (the one registry line)."""
    monkeypatch.setitem(SIGNALS, TOY.name, TOY)
    monkeypatch.setitem(SIGNALS_BY_CODE, TOY.code, TOY)
    monkeypatch.setitem(SIGNAL_INDEXES, TOY.code, ToyValues)


def insert(db, index: int, signal: str, fingerprint: bytes) -> None:
    db.execute(follow_store.INSERT_FINGERPRINT,
               (LOG, index, signal, fingerprint, None, "", 0, index.to_bytes(32, "big")))


def hits(matcher: Matcher, query: Query) -> list[tuple]:
    result = matcher.match(query)
    return [(h.index, h.signal, h.distance) for h in result.hits], result.total


def test_a_toy_signal_registered_in_one_line_goes_through_every_path(toy, tmp_path):
    path = tmp_path / "node.db"
    db = open_db(path)
    pdq = PDQ.examples()[0]
    with db.atomic():
        for index, value in enumerate([100, 101, 103, 150, 98]):
            insert(db, index, "toy", bytes([value]))
        insert(db, 5, "pdq", pdq)
        insert(db, 6, "toy", b"\x01\x02")  # not a toy value: never indexed, never matches
    db.close()

    matcher = Matcher(pending_load=True)
    matcher.load(path, read_only=True)
    try:
        assert matcher.stats()["toy"] == 5 and matcher.stats()["pdq"] == 1
        (query,), batch = parse_match_body({"signal": "toy", "fingerprint": 100})
        assert not batch and query == Query("toy", b"\x64")
        assert hits(matcher, query) == ([(0, "toy", 0), (1, "toy", 1), (4, "toy", 2)], 3)

        # What the API answers: described from the database, like any signal.
        result = matcher.match(query, limit=2)
        answer = result_json(result, matcher.describe(result.hits), query)
        assert answer["signal"] == "toy" and answer["total"] == 3
        assert [(m["index"], m["distance"]) for m in answer["matches"]] == [(0, 0), (1, 1)]
        media = media_answer([{"signal": "toy", "fingerprint": 100}], [query], [(result, answer["matches"])])
        assert media["kind"] == "image" and media["matched"] and media["results"][0]["fingerprint"] == 100

        # The follower's paths: additions (within the log's budgets), withdrawals.
        assert matcher.add_many(LOG, [(7, "toy", b"\x66"), (8, "toy", b"\xff")]) == 2
        assert hits(matcher, query)[1] == 4
        assert matcher.withdraw(LOG, [0, 7, 99]) == 2
        assert hits(matcher, query) == ([(1, "toy", 1), (4, "toy", 2)], 2)
        assert (LOG, 0) not in matcher and (LOG, 1) in matcher
        # PDQ beside it, unchanged; a toy query never meets a PDQ entry.
        assert hits(matcher, Query("pdq", pdq)) == ([(5, "pdq", 0)], 1)
        assert matcher.forget_origin(LOG) == 6
        assert matcher.stats()["toy"] == 0 and hits(matcher, query) == ([], 0)
    finally:
        matcher.close()


def test_the_holds_budget_counts_toy_entries(toy):
    from node.matcher.holds import Budget

    matcher = Matcher(budget=Budget(max_fingerprints=3))
    added = matcher.add_many(LOG, [(i, "toy", bytes([10 * i])) for i in range(5)])
    assert added == 3 and matcher.stats()["toy"] == 3
    assert matcher.stats()["held"]["budget"] == 2


def test_without_its_registry_line_a_signal_is_refused_not_mismatched(monkeypatch):
    monkeypatch.setitem(SIGNALS, TOY.name, TOY)
    monkeypatch.setitem(SIGNALS_BY_CODE, TOY.code, TOY)
    matcher = Matcher()
    assert matcher.add_many(LOG, [(0, "toy", b"\x10")]) == 0  # no index: never matches
    with pytest.raises(SignalError, match="unknown signal type 'toy'"):
        matcher.match(Query("toy", b"\x10"))
    assert "toy" not in matcher.stats()


def test_every_registered_class_names_its_own_signal():
    for code, cls in SIGNAL_INDEXES.items():
        assert cls.signal is SIGNALS_BY_CODE[code] and cls.media in ("image", "video") and cls.label
    assert [cls.signal.name for cls in SIGNAL_INDEXES.values()] == list(SIGNALS)
    assert all(0 < code < 256 for code in SIGNAL_INDEXES)  # the entry table keeps a code in one byte, 0 = gone


def test_the_answer_to_an_uploaded_video_is_the_same_bytes_as_before():
    """media_answer (what the classes' `echo` and `media` build) gives the JSON the
    route built when it tested signal names: a photo's fingerprint, a video's frame count."""
    import json

    from node.matcher.service import QueryResult
    from protocol.signals import MD5, VPDQ

    video = [{"signal": "md5", "fingerprint": MD5.examples()[1].hex()},
             {"signal": "vpdq", "fingerprint": VPDQ.to_json(VPDQ.examples()[1])}]
    queries = [Query.from_json(fp) for fp in video]
    answer = media_answer(video, queries, [(QueryResult([], 0), []), (QueryResult([], 2), [])])
    assert json.dumps(answer) == (
        '{"kind": "video", "matched": true, "results": ['
        '{"signal": "md5", "matches": [], "total": 0, "fingerprint": "9e107d9d372bb6826bd81d3542a419d6"}, '
        '{"signal": "vpdq", "matches": [], "total": 2, "frames": 3}]}')
    photo = [{"signal": "pdq", "fingerprint": PDQ.examples()[0].hex(), "quality": 40, "low_quality": True}]
    answer = media_answer(photo, [Query.from_json(photo[0])], [(QueryResult([], 0), [])])
    assert json.dumps(answer) == (
        '{"kind": "image", "matched": false, "results": [{"signal": "pdq", "matches": [], "total": 0, '
        f'"fingerprint": "{PDQ.examples()[0].hex()}", "quality": 40, "low_quality": true}}]}}')


def test_matcher_options_reach_the_class_that_declares_them():
    from protocol.signals import VPDQ, VpdqFrame

    a, b, c = PDQ.examples()
    indexed = VPDQ.from_frames([VpdqFrame(a, 90, 0), VpdqFrame(b, 90, 1000)])
    half = Query("vpdq", VPDQ.from_frames([VpdqFrame(a, 90, 0), VpdqFrame(c, 90, 1000)]))  # 50 % of its frames
    assert PDQ.distance(a, c) > 31 and PDQ.distance(b, c) > 31
    for options, matched in (({}, 0), ({"vpdq_query_coverage": 50.0}, 1)):
        matcher = Matcher(**options)
        matcher.add(LOG, 0, "vpdq", indexed)
        assert matcher.match(half).total == matched
    with pytest.raises(TypeError, match="vpdq_query_coverag"):
        Matcher(vpdq_query_coverag=50.0)
