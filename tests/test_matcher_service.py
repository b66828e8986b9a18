"""The matcher service (node/matcher/service.py) against brute force, built from a real
database (SQLite, and PostgreSQL where the fixture `database` is used): planted neighbours at every distance 0..40 (31 and 32 included),
per-log thresholds, MD5, vPDQ coverage, withdrawals (direct and through a real
follower over HTTP), suppressions, events that arrive while the index is built, and
a restart that rebuilds the same index."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from node.matcher.service import Matcher, MatcherLoading, Query
from node.matcher.suppress import suppress_offline
from node.store import follow as follow_store
from node.store import open_db
from protocol.entries import Submission, Withdrawal, encode_entry
from protocol.merkle import leaf_hash
from protocol.signals import MD5, PDQ, VPDQ, VpdqFrame

from follow_support import Harness, LogServer, StaticLog

A, B = "a.example/helpline", "b.example/helpline"


def flip(fingerprint: bytes, distance: int, rng: np.random.Generator) -> bytes:
    bits = np.unpackbits(np.frombuffer(fingerprint, dtype=np.uint8))
    bits[rng.choice(256, size=distance, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def random_pdq(rng) -> bytes:
    return rng.integers(0, 256, 32, dtype=np.uint8).tobytes()


def insert(db, origin: str, index: int, signal: str, fingerprint: bytes, labels: str = "", quality=90) -> None:
    entry = encode_entry(Submission(signal, fingerprint, quality if signal == "pdq" else None,
                                    tuple(labels.split(",")) if labels else (), 0))
    db.execute(follow_store.INSERT_FINGERPRINT,
               (origin, index, signal, fingerprint, quality if signal == "pdq" else None, labels, 0, leaf_hash(entry)))


def brute_force(rows: dict, query: Query, thresholds: dict[str, int]) -> list[tuple]:
    """(origin, index, distance) of every active row matching `query`, sorted like the matcher."""
    found = []
    for (origin, index), (signal, fingerprint) in rows.items():
        if signal != query.signal:
            continue
        if signal == "pdq":
            distance = PDQ.distance(query.fingerprint, fingerprint)
            if distance <= thresholds.get(origin, 31):
                found.append((distance, origin, index))
        elif signal == "md5":
            if fingerprint == query.fingerprint:
                found.append((0, origin, index))
        elif VPDQ.matches(query.fingerprint, fingerprint, distance_threshold=thresholds.get(origin, 31)):
            found.append((VPDQ.distance(query.fingerprint, fingerprint), origin, index))
    return sorted(found)


def answers(matcher: Matcher, queries: list[Query]) -> list[list[tuple]]:
    return [[(h.distance, h.origin, h.index) for h in r.hits]
            for r in matcher.match_many(queries, limit=10**9)]


@pytest.fixture
def database(db_target):
    """Two logs: 3,000 random PDQ each with neighbours planted at 0..40 (and extra at
    31, 32) around 10 queries, a few MD5 and videos; log B matches within 20. In SQLite,
    then in PostgreSQL (the index built from either)."""
    rng = np.random.default_rng(11)
    path = db_target
    db = open_db(path)
    rows: dict[tuple[str, int], tuple[str, bytes]] = {}
    queries = [random_pdq(rng) for _ in range(10)]
    with db.atomic():
        for origin in (A, B):
            index = 0
            for _ in range(3000):
                rows[(origin, index)] = ("pdq", random_pdq(rng))
                index += 2  # gaps, like withdrawals and feedback entries between submissions
            for query in queries:
                for distance in list(range(41)) + [31, 31, 32, 32]:
                    rows[(origin, index)] = ("pdq", flip(query, distance, rng))
                    index += 1
            for k in range(5):
                rows[(origin, index)] = ("md5", bytes([k]) * 16)
                index += 1
        for (origin, index), (signal, fingerprint) in rows.items():
            insert(db, origin, index, signal, fingerprint, labels="sexual" if index % 7 == 0 else "")
    db.matching.set_threshold(B, 20)
    yield db, path, rows, [Query("pdq", q) for q in queries] + [Query("pdq", random_pdq(rng)) for _ in range(5)]
    db.close()


def test_equals_brute_force_with_edges_and_per_log_thresholds(database):
    _db, path, rows, queries = database
    matcher = Matcher(pending_load=True)
    matcher.load(path)
    assert matcher.stats()["pdq"] == sum(1 for s, _ in rows.values() if s == "pdq")
    thresholds = {B: 20}
    got = answers(matcher, queries)
    for query, result in zip(queries, got):
        assert result == brute_force(rows, query, thresholds)
    planted = got[0]
    # the edge of the default threshold: 31 is in (three of them), 32 is out, in log A;
    # log B stops at 20
    assert [d for d, o, _ in planted if o == A].count(31) == 3
    assert all(d <= 31 for d, _, _ in planted) and all(d <= 20 for d, o, _ in planted if o == B)
    # single queries answer the same as the batch
    assert [answers(matcher, [q])[0] for q in queries] == got
    # thresholds change at once, both ways
    matcher.set_threshold(B, 40)
    thresholds[B] = 40
    assert answers(matcher, queries[:3]) == [brute_force(rows, q, thresholds) for q in queries[:3]]
    assert any(d > 31 for d, o, _ in answers(matcher, queries[:1])[0] if o == B)


def test_md5_is_exact(database):
    _db, path, _rows, _ = database
    matcher = Matcher(pending_load=True)
    matcher.load(path)
    result = matcher.match(Query("md5", bytes([3]) * 16))
    assert sorted((h.origin, h.distance) for h in result.hits) == [(A, 0), (B, 0)]
    assert matcher.match(Query("md5", bytes([3]) * 15 + b"\x04")).total == 0


def test_withdrawal_and_restart_rebuild_the_same_index(database):
    db, path, rows, queries = database
    matcher = Matcher(pending_load=True)
    matcher.load(path)
    before = answers(matcher, queries)
    victims = [(o, i) for _, o, i in before[0][:5]]
    for origin, index in victims:
        matcher.on_withdrawn(origin, [index])
        db.follow.withdraw(origin, index, 10**6)
        del rows[(origin, index)]
    after = answers(matcher, queries)
    assert after == [brute_force(rows, q, {B: 20}) for q in queries]
    assert not any((o, i) in victims for r in after for _, o, i in r)
    assert matcher.withdraw(A, [10**9, -1]) == 0  # unknown indices are ignored

    restarted = Matcher(pending_load=True)
    restarted.load(path)
    assert answers(restarted, queries) == after
    assert restarted.stats()["pdq"] == matcher.stats()["pdq"]


def test_suppression_holds_across_restarts_and_refollows(database):
    db, path, rows, queries = database
    _, origin, index = answers(_loaded(path), queries[:1])[0][0]
    outcome = suppress_offline(db, origin, index, want_feedback=True)
    assert outcome.feedback == "pending"
    assert [s.index for s in db.matching.pending_feedback()] == [index]
    assert db.follow.get_fingerprint(origin, index).suppressed
    matcher = _loaded(path)
    assert (origin, index) not in matcher
    assert (origin, index) not in {(o, i) for _, o, i in answers(matcher, queries[:1])[0]}
    # the log is unfollowed and followed again: the row comes back unmarked, the
    # suppression (same leaf hash) still holds, on load and when the follower adds it
    db.follow.add_log(origin, "http://127.0.0.1:9", "x+00000000+AQ==")
    db.follow.remove_log(origin)
    kind, fingerprint = rows[(origin, index)]
    insert(db, origin, index, kind, fingerprint, labels="sexual" if index % 7 == 0 else "")
    assert (origin, index) not in _loaded(path)
    live = _loaded(path)
    live.forget_origin(origin)
    row = db.follow.get_fingerprint(origin, index)
    live.on_added(origin, [row])
    assert (origin, index) not in live
    # a different entry at that index (another leaf hash) is not suppressed
    live.add(origin, index, "pdq", fingerprint, leaf_hash=b"\x01" * 32)
    assert (origin, index) in live


def _loaded(path) -> Matcher:
    matcher = Matcher(pending_load=True)
    matcher.load(path)
    return matcher


def test_live_suppress(database):
    _, path, _, queries = database
    matcher = _loaded(path)
    _, origin, index = answers(matcher, queries[:1])[0][0]
    assert matcher.suppress(origin, index)
    assert (origin, index) not in {(o, i) for _, o, i in answers(matcher, queries[:1])[0]}
    matcher.add(origin, index, "pdq", b"\x00" * 32)  # the follower adding it again changes nothing
    assert (origin, index) not in matcher


def test_events_during_the_build_are_replayed_in_order(database):
    _db, path, rows, queries = database
    matcher = Matcher(pending_load=True)
    with pytest.raises(MatcherLoading):
        matcher.match(queries[0])
    target = brute_force(rows, queries[0], {B: 20})[0]
    # before the load: a withdrawal of an entry in the snapshot, an add of a new one
    matcher.on_withdrawn(target[1], [target[2]])
    fresh = queries[0].fingerprint
    matcher.add_many(A, [(10**5, "pdq", fresh)])
    # during the load: another thread withdraws the fresh one again and re-adds it
    started = threading.Event()
    original = matcher._load_origin

    def slow_origin(*args):
        started.set()
        return original(*args)

    matcher._load_origin = slow_origin
    loader = threading.Thread(target=matcher.load, args=(path,))
    loader.start()
    started.wait(5)
    matcher.withdraw(A, [10**5])
    matcher.add_many(A, [(10**5 + 1, "pdq", fresh)])
    loader.join(30)
    assert matcher.ready
    found = {(o, i) for _, o, i in answers(matcher, queries[:1])[0]}
    assert (target[1], target[2]) not in found
    assert (A, 10**5) not in found and (A, 10**5 + 1) in found


def test_vpdq_coverage_equals_protocol_rule(tmp_path):
    """Videos sharing frames with a query at various distances, some low-quality
    frames: the index's answer equals VPDQ.matches against every video."""
    rng = np.random.default_rng(5)
    db = open_db(tmp_path / "node.db")
    base = [random_pdq(rng) for _ in range(10)]
    videos = {}
    for v in range(60):
        frames = []
        for k in range(int(rng.integers(1, 12))):
            if rng.random() < 0.6:
                pdq = flip(base[int(rng.integers(0, 10))], int(rng.choice([0, 5, 30, 31, 32, 33, 60])), rng)
            else:
                pdq = random_pdq(rng)
            frames.append(VpdqFrame(pdq, int(rng.choice([20, 49, 50, 90, 100])), 1000 * k))
        videos[(A if v % 2 else B, v)] = ("vpdq", VPDQ.from_frames(frames))
    with db.atomic():
        for (origin, index), (signal, fp) in videos.items():
            insert(db, origin, index, signal, fp)
    matcher = _loaded(tmp_path / "node.db")
    assert matcher.stats()["vpdq"] == 60
    queries = []
    for q in range(25):
        n = int(rng.integers(1, 8))
        frames = [VpdqFrame(flip(base[int(rng.integers(0, 10))], int(rng.choice([0, 10, 31, 32])), rng)
                            if rng.random() < 0.8 else random_pdq(rng), int(rng.choice([40, 80, 100])), 1000 * k)
                  for k in range(n)]
        queries.append(Query("vpdq", VPDQ.from_frames(frames)))
    queries += [Query("vpdq", fp) for _, fp in list(videos.values())[:10]]
    total = 0
    for query, got in zip(queries, answers(matcher, queries)):
        expected = brute_force(videos, query, {})
        assert [(o, i) for _, o, i in got] == [(o, i) for _, o, i in expected]
        assert [d for d, _, _ in got] == pytest.approx([d for d, _, _ in expected])
        total += len(got)
    assert total > 10
    # lowering a log's threshold applies to the frames of its videos too
    matcher.set_threshold(A, 0)
    for query, got in zip(queries, answers(matcher, queries)):
        assert [(o, i) for _, o, i in got] == [(o, i) for _, o, i in brute_force(videos, query, {A: 0})]
    # a withdrawn video stops matching
    some = next(r for r in answers(matcher, queries) if r)[0]
    matcher.withdraw(some[1], [some[2]])
    assert all((o, i) != (some[1], some[2]) for r in answers(matcher, queries) for _, o, i in r)
    db.close()


def test_limit_keeps_the_nearest_and_counts_all(database):
    _, path, rows, queries = database
    matcher = _loaded(path)
    result = matcher.match(queries[0], limit=4)
    assert len(result.hits) == 4 and result.total == len(brute_force(rows, queries[0], {B: 20}))
    assert [h.distance for h in result.hits] == [0, 0, 1, 1]


def test_describe_gives_labels_quality_and_feedback(database):
    db, path, _rows, queries = database
    matcher = _loaded(path)
    hit = matcher.match(queries[0]).hits[0]
    db.execute("INSERT INTO follow_feedback (from_origin, from_idx, origin, idx, leaf_hash, verdict, entry_matches) "
               "VALUES ('p.example/x', 1, ?, ?, ?, 'removed', 1), ('p.example/x', 2, ?, ?, ?, 'removed', NULL), "
               "('p.example/y', 1, ?, ?, ?, 'not-violating', 0)",
               (hit.origin, hit.index, b"\x00") * 3)
    (item,) = matcher.describe([hit])
    assert item["origin"] == hit.origin and item["index"] == hit.index and item["distance"] == 0
    assert item["labels"] == (["sexual"] if hit.index % 7 == 0 else [])
    assert item["quality"] == 90 and item["day"] is None
    assert item["feedback"] == {"removed": 2}  # a verdict quoting another leaf hash is not counted
    # a batch is described in a few queries for all its hits: the same objects as one hit at a time
    results = matcher.match_many(queries, limit=1000)
    batch = [result.hits for result in results] + [[]]
    assert sum(map(len, batch)) > 20 and len({h.origin for hits in batch for h in hits}) > 1
    assert matcher.describe_many(batch) == [[matcher.describe([h])[0] for h in hits] for hits in batch]
    matcher.close()


def test_follower_listener_end_to_end(tmp_path):
    """A real follower over HTTP feeds the matcher: entries match once applied, a
    withdrawal stops matching before the follower's round returns."""
    async def scenario():
        log = StaticLog("helpline.example/log")
        pdqs = [bytes([i]) * 32 for i in range(1, 6)]
        log.append(*[encode_entry(Submission("pdq", p, 90, (), 0)) for p in pdqs])
        server = await LogServer(log).start()
        matcher = Matcher()
        harness = Harness(tmp_path, listener=matcher)
        try:
            follower = harness.follow(log.origin, server.url, log.vkey)
            await follower.sync_once()
            assert [h.index for h in matcher.match(Query("pdq", pdqs[2])).hits] == [2]
            seen_during_commit = []
            original = matcher.on_withdrawn

            def spy(origin, indices):
                original(origin, indices)
                # the round has not committed yet, and the entry no longer matches
                seen_during_commit.append(matcher.match(Query("pdq", pdqs[2])).total)

            matcher.on_withdrawn = spy
            log.append(encode_entry(Withdrawal((2,))))
            await follower.sync_once()
            assert seen_during_commit == [0]
            assert matcher.match(Query("pdq", pdqs[2])).total == 0
            assert matcher.match(Query("pdq", pdqs[3])).total == 1
            # a restart (new matcher from the follower's database) agrees
            again = _loaded(harness.db_path)
            assert again.match(Query("pdq", pdqs[2])).total == 0
            assert [h.index for h in again.match(Query("pdq", pdqs[3])).hits] == [3]
        finally:
            await harness.close()
            await server.stop()

    asyncio.run(scenario())


def test_bad_queries_are_signal_errors():
    from protocol.errors import SignalError

    for bad in [{"signal": "pdq"}, {"signal": "sha1", "fingerprint": "00"}, {"signal": "pdq", "fingerprint": "zz"},
                [], {"signal": "md5", "fingerprint": "0" * 31},
                # what `hash --json` prints beside a fingerprint is typed as the API's schema says
                {"signal": "pdq", "fingerprint": "0" * 64, "low_quality": {}},
                {"signal": "pdq", "fingerprint": "0" * 64, "low_quality": 0},
                {"signal": "pdq", "fingerprint": "0" * 64, "quality": 101},
                {"signal": "pdq", "fingerprint": "0" * 64, "quality": None},
                {"signal": "pdq", "fingerprint": "0" * 64, "quality": True}]:
        with pytest.raises(SignalError):
            Query.from_json(bad)
    assert Query.from_json({"signal": "md5", "fingerprint": MD5.examples()[0].hex()}).fingerprint == MD5.examples()[0]
    assert Query.from_json({"signal": "pdq", "fingerprint": "0" * 64, "quality": 100, "low_quality": False})


def test_vpdq_edges_of_the_coverage_rule():
    """Exactly 80 % of the query's good frames matched is a match, 60 % is not;
    low-quality frames count on neither side; frames at distance 31 match, 32 do not."""
    rng = np.random.default_rng(9)
    frames = [random_pdq(rng) for _ in range(5)]
    indexed = VPDQ.from_frames([VpdqFrame(f, 90, 1000 * k) for k, f in enumerate(frames[:4])]
                               + [VpdqFrame(random_pdq(rng), 10, 9000)])
    matcher = Matcher()
    matcher.add("v.example/log", 0, "vpdq", indexed)

    def query(distances, extra_low=0):
        picked = [VpdqFrame(flip(frames[k], d, rng) if d is not None else random_pdq(rng), 95, 1000 * k)
                  for k, d in enumerate(distances)]
        picked += [VpdqFrame(random_pdq(rng), 30, 10000 + k) for k in range(extra_low)]
        return Query("vpdq", VPDQ.from_frames(picked))

    cases = [([0, 0, 0, 0, None], True), ([31, 31, 31, 31, None], True), ([32, 31, 31, 31, None], False),
             ([0, 0, 0, None, None], False), ([None, 0, 0, 0, 0], False)]
    for distances, expected in cases:
        q = query(distances, extra_low=3)
        assert VPDQ.matches(q.fingerprint, indexed) is expected
        result = matcher.match(q)
        assert (result.total == 1) is expected
        if expected:
            assert result.hits[0].query_coverage == 80.0 and result.hits[0].indexed_coverage == 100.0


def test_forgetting_a_log_drops_all_its_entries(database):
    _, path, rows, queries = database
    matcher = _loaded(path)
    matcher.on_removed(B)
    assert matcher.stats()["pdq"] == sum(1 for (o, _), (s, _) in rows.items() if o == A and s == "pdq")
    assert matcher.stats()["md5"] == 5
    remaining = {key: value for key, value in rows.items() if key[0] == A}
    assert answers(matcher, queries) == [brute_force(remaining, q, {}) for q in queries]
    assert matcher.match(Query("md5", bytes([3]) * 16)).hits[0].origin == A
    assert matcher.on_removed("never.example/followed") is None


def test_database_path_with_uri_characters(tmp_path):
    folder = tmp_path / "odd ?#% name"
    folder.mkdir()
    db = open_db(folder / "node.db")
    insert(db, A, 0, "pdq", b"\x05" * 32)
    db.close()
    assert _loaded(folder / "node.db").match(Query("pdq", b"\x05" * 32)).total == 1
