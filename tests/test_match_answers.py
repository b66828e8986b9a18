"""The match API's answers written without a Python object per hit (node/matcher/answers.py):
a real node (real HTTP on 127.0.0.1) on clustered data in two logs, with labels, quality,
days and feedback, answers batches at the clusters with the same bytes the code before
answered (index -> `Hit`s -> sort -> a dict per hit read from the database hit by hit
-> json.dumps), cold and with its descriptions kept; what it keeps is forgotten when
its follower applies a round that holds feedback (which then shows at once), and only then;
the kept descriptions stay bounded and never take a read from before a `forget`; and a
suppression reports what the matcher held before it, even when the replica's look
took it in force first."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from node.matcher import answers as answers_module
from node.matcher import suppress as suppress_module
from node.matcher.answers import Descriptions, NEAREST, QueryResult
from node.matcher.api import result_json
from node.matcher.service import Matcher, Query
from node.follow.apply import Applied
from node.matcher.replica import MatchReplica
from node.matcher.suppress import Suppressor
from node.store import open_db
from protocol.entries import Feedback, day_to_json, encode_entry
from protocol.merkle import leaf_hash

from follow_support import LogServer, StaticLog
from test_match_api import Platform, flip, submission
from test_pdq_index_distributions import dist

# B's threshold is set first, so B gets origin code 0: the codes' order is not the names' order
A, B = "a.example/clusters", "b.example/clusters"
LABELS = ["", "sexual", "sexual,minor", 'odd"label\\', "caf\u00e9"]
VERDICTS = ["removed", "not-violating", "matched-pending-review", "disputed-false-match"]


def _old_describe(db, hits) -> list[dict]:
    """What describing was before issue 19: two reads per hit, a dict per hit."""
    out = []
    for hit in hits:
        row = db.follow.get_fingerprint(hit.origin, hit.index)
        labels, quality, day = (row.labels, row.quality, row.day) if row else ((), None, 0)
        item = {"origin": hit.origin, "index": hit.index, "signal": hit.signal, "distance": hit.distance}
        item["labels"] = list(labels)
        item["quality"] = quality
        item["day"] = day_to_json(day)
        item["feedback"] = dict(db.follow.verdict_counts(hit.origin, hit.index))
        out.append(item)
    return out


def _old_search(matcher: Matcher, queries: list[Query]) -> list[QueryResult]:
    """What matching was: the PDQ index's `Hit`s, sorted in Python."""
    results = []
    for hits, total in matcher._by_name["pdq"].query([q.fingerprint for q in queries], 100, None):
        hits.sort(key=NEAREST)
        results.append(QueryResult(hits[:100], total))
    return results


def _clustered(tmp_path):
    """Correlated PDQ with near-duplicate clusters, split between two logs so that
    clusters cross them (ties at one distance in both logs)."""
    data = dist.make("correlated", 16_000, seed=23)
    rng = np.random.default_rng(23)
    rows = []
    for i, fp in enumerate(data.fingerprints):
        origin = A if rng.random() < 0.5 else B
        day = 0 if rng.random() < 0.5 else int(rng.integers(19_000, 21_000))
        quality = None if rng.random() < 0.1 else int(rng.integers(0, 101))
        rows.append((origin, i, fp.tobytes(), quality, LABELS[int(rng.integers(0, len(LABELS)))], day))
    feedback = []
    for k, (origin, index, *_rest) in enumerate(rows):
        for j in range(int(rng.integers(0, 4)) if rng.random() < 0.3 else 0):
            feedback.append(("p.example/x", 10 * k + j, origin, index, VERDICTS[int(rng.integers(0, 4))],
                             [1, None, 0][int(rng.integers(0, 3))]))
    return data, rows, feedback


def _store(path, rows, feedback) -> None:
    db = open_db(path)
    with db.atomic():
        db.matching.set_threshold(B, 31)
        db.conn.executemany(
            "INSERT INTO fingerprints (origin, idx, signal, fingerprint, quality, labels, day, leaf_hash) "
            "VALUES (?, ?, 'pdq', ?, ?, ?, ?, ?)", ((*row, b"\x00" * 32) for row in rows))
        db.conn.executemany(
            "INSERT INTO follow_feedback (from_origin, from_idx, origin, idx, leaf_hash, verdict, entry_matches) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((f[0], f[1], f[2], f[3], b"\x00" * 32, f[4], f[5]) for f in feedback))
    db.close()


async def _raw(platform: Platform, body) -> bytes:
    async with platform.session.post(platform.node.admin_url + "/v1/match", json=body,
                                     headers=platform.headers) as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert r.headers["Cache-Control"] == "no-store"
        return await r.read()


async def test_answers_at_clusters_are_the_same_bytes_as_before(tmp_path, start_node):
    data, rows, feedback = _clustered(tmp_path)
    platform = Platform(tmp_path, start_node, None)
    _store(platform.datadir.db_path, rows, feedback)
    await platform.start()
    reference = Matcher(pending_load=True)
    reference.load(platform.datadir.db_path, read_only=True)
    db = open_db(platform.datadir.db_path)
    try:
        await platform.wait(lambda s: s["ready"] and s["pdq"] == len(rows), "the index is built")
        assert reference._entries.origins == [B, A]
        rng = np.random.default_rng(7)
        centres = data.centres  # about 8 clusters of about 100: many queries at each, as uploads of a viral image
        fingerprints = [flip(centres[k % len(centres)].tobytes(), k % 4, rng) for k in range(300)]
        fingerprints += [flip(centres[k % len(centres)].tobytes(), int(rng.integers(20, 36)), rng) for k in range(60)]
        fingerprints += [flip(data.fingerprints[i].tobytes(), int(rng.integers(0, 40)), rng)
                         for i in rng.integers(0, len(rows), 100).tolist()]
        fingerprints += [fp.tobytes() for fp in data.unrelated(rng, 40)]
        fingerprints += fingerprints[:200]  # the same entries again in one batch
        queries = [Query("pdq", fp) for fp in fingerprints]
        body = {"fingerprints": [{"signal": "pdq", "fingerprint": fp.hex()} for fp in fingerprints]}

        old = _old_search(reference, queries)
        old_described = [_old_describe(db, r.hits) for r in old]
        expected = json.dumps({"results": [result_json(r, d, q) for q, r, d in zip(queries, old, old_described)]})
        hits = sum(len(r.hits) for r in old)
        assert hits > 25_000 and sum(r.total > 100 for r in old) > 20  # batches that match a lot
        per_log = {origin: sum(1 for r in old for h in r.hits if h.origin == origin) for origin in (A, B)}
        assert min(per_log.values()) > 5_000
        assert sum(1 for d in old_described for m in d if m["feedback"]) > 1_000
        assert sum(1 for d in old_described for m in d if m["labels"] == ['odd"label\\']) > 100

        cold = await _raw(platform, body)
        warm = await _raw(platform, body)       # described from what the first kept
        assert cold == warm == expected.encode()
        single = await _raw(platform, body["fingerprints"][0])
        assert single == json.dumps(result_json(old[0], old_described[0], queries[0])).encode()

        # the objects, for the media route and the command line: the same as before too
        new = reference.match_many(queries, limit=100)
        assert new == old
        assert reference.describe_many([r.hits for r in new]) == old_described
        # and against brute force where no tie is cut at the 100th
        matrix = np.stack(data.fingerprints)
        for q, result in zip(queries[:400], old[:400]):
            distances = np.unpackbits(np.bitwise_xor(matrix, np.frombuffer(q.fingerprint, dtype=np.uint8)),
                                      axis=1).sum(axis=1)
            within = np.flatnonzero(distances <= 31)
            assert result.total == len(within)
            if len(within) <= 100:
                assert [(h.distance, h.origin, h.index) for h in result.hits] == sorted(
                    (int(distances[i]), rows[i][0], int(i)) for i in within)
    finally:
        db.close()
        reference.close()
        await platform.close()


HELPLINE, OTHER = "helpline.example/kept", "platform.example/other"


async def test_feedback_a_followed_log_publishes_shows_in_the_next_answer(tmp_path, start_node):
    """The descriptions kept between batches are forgotten when the follower applies a
    round: a verdict published after the entry was described shows in the next answer."""
    rng = np.random.default_rng(4)
    helpline, other = StaticLog(HELPLINE), StaticLog(OTHER)
    fingerprints = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(20)]
    entries = [submission("pdq", fp, 90, ("sexual",)) for fp in fingerprints]
    helpline.append(*entries)
    other.append(encode_entry(Feedback(HELPLINE, 1, leaf_hash(entries[1]), "removed")))
    servers = [await LogServer(helpline).start(), await LogServer(other).start()]
    platform = Platform(tmp_path, start_node, None)
    db = open_db(platform.datadir.db_path)
    db.follow.add_log(HELPLINE, servers[0].url, helpline.vkey, interval=0.1)
    db.follow.add_log(OTHER, servers[1].url, other.vkey, interval=0.1)
    db.close()
    await platform.start()
    try:
        await platform.wait(lambda s: s["pdq"] == len(fingerprints), "the follower applied the log")
        deadline = time.monotonic() + 20
        while (await platform.match("pdq", fingerprints[1].hex()))["matches"][0]["feedback"] != {"removed": 1}:
            assert time.monotonic() < deadline, "the first feedback never showed"
            await asyncio.sleep(0.05)
        body = {"fingerprints": [{"signal": "pdq", "fingerprint": fp.hex()} for fp in fingerprints[:3]]}
        before = await _raw(platform, body)
        assert await _raw(platform, body) == before  # kept, and the same
        kept = platform.node.node.matcher.descriptions
        assert len(kept) == 3
        # a round of submissions changes no description: what was kept stays
        extra = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        helpline.append(submission("pdq", extra, 90))
        await platform.wait(lambda s: s["pdq"] == len(fingerprints) + 1, "the follower applied the new submission")
        assert len(kept) == 3 and await _raw(platform, body) == before
        other.append(encode_entry(Feedback(HELPLINE, 0, leaf_hash(entries[0]), "not-violating")),
                     encode_entry(Feedback(HELPLINE, 1, leaf_hash(entries[1]), "matched-pending-review")))
        deadline = time.monotonic() + 20
        while True:
            answer = json.loads(await _raw(platform, body))
            feedback = [result["matches"][0]["feedback"] for result in answer["results"]]
            if feedback == [{"not-violating": 1}, {"matched-pending-review": 1, "removed": 1}, {}]:
                break
            assert feedback == [{}, {"removed": 1}, {}], feedback  # before the round: as it was
            assert time.monotonic() < deadline, "the new feedback never showed: the kept descriptions are stale"
            await asyncio.sleep(0.05)
    finally:
        await platform.close()
        for server in servers:
            await server.stop()


@pytest.fixture
def small(tmp_path):
    """A database of 50 PDQ entries of one log, some with feedback, and a matcher on it."""
    path = tmp_path / "node.db"
    rng = np.random.default_rng(2)
    rows = [(A, i, rng.integers(0, 256, 32, dtype=np.uint8).tobytes(), 90, "sexual" if i % 3 else "", 0)
            for i in range(50)]
    _store(path, rows, [("p.example/x", i, A, i, "removed", 1) for i in range(0, 50, 5)])
    matcher = Matcher(pending_load=True)
    matcher.load(path)
    db = open_db(path)
    yield db, matcher, [Query("pdq", row[2]) for row in rows]
    matcher.close()
    db.close()


def test_kept_descriptions_are_bounded_equal_a_fresh_read_and_spare_the_database(small, monkeypatch):
    db, matcher, queries = small
    matcher.descriptions = Descriptions(limit=12)
    fresh = [_old_describe(db, r.hits) for r in matcher.match_many(queries)]
    kept = []
    for start in range(0, 50, 5):  # batches of 5 distinct entries: the cache fills and starts again
        batch = [r.hits for r in matcher.match_many(queries[start:start + 5])]
        assert matcher.describe_many(batch) == fresh[start:start + 5]
        kept.append(len(matcher.descriptions))
    assert kept == [5, 10, 0, 5, 10, 0, 5, 10, 0, 5]
    reads = []
    real = answers_module.read_tails
    monkeypatch.setattr(answers_module, "read_tails", lambda *args: reads.append(args[1]) or real(*args))
    batch = [r.hits for r in matcher.match_many(queries[40:50])]  # 5 kept, 5 not
    assert matcher.describe_many(batch) == fresh[40:50] == matcher.describe_many(batch)
    assert reads == [{A: list(range(40, 45))}]  # what was kept is not read again


def test_a_read_from_before_a_forget_is_not_kept(small, monkeypatch):
    db, matcher, queries = small
    hits = matcher.match(queries[0]).hits
    real = answers_module.read_tails

    def racing(reader, wanted):  # the follower commits feedback and forgets while describing reads
        out = real(reader, wanted)
        with db.atomic():
            db.execute("INSERT INTO follow_feedback (from_origin, from_idx, origin, idx, leaf_hash, verdict, "
                       "entry_matches) VALUES ('p.example/x', 999, ?, 0, ?, 'matched-pending-review', 1)", (A, b"\x00" * 32))
        matcher.descriptions.forget()
        return out

    monkeypatch.setattr(answers_module, "read_tails", racing)
    assert matcher.describe(hits)[0]["feedback"] == {"removed": 1}  # read before the commit
    monkeypatch.setattr(answers_module, "read_tails", real)
    assert len(matcher.descriptions) == 0
    assert matcher.describe(hits)[0]["feedback"] == {"matched-pending-review": 1, "removed": 1}


def test_kept_descriptions_are_forgotten_by_rounds_with_feedback_only(small):
    """The follower's `on_applied` (Applied.feedback), and a replica's look that finds
    feedback in what a log's rounds committed (node/matcher/replica.py)."""
    db, matcher, queries = small
    hits = [r.hits for r in matcher.match_many(queries[:4])]

    def kept_after(event) -> int:
        matcher.describe_many(hits)
        assert len(matcher.descriptions) == 4
        event()
        return len(matcher.descriptions)

    assert kept_after(lambda: matcher.on_applied(B, 10, b"", b"", Applied(added=10, withdrawals=2), 0.0)) == 4
    assert kept_after(lambda: matcher.on_applied(B, 11, b"", b"", Applied(feedback=1), 0.0)) == 0
    assert kept_after(lambda: matcher.on_removed(B)) == 0
    replica = MatchReplica.__new__(MatchReplica)  # its look alone, on this database
    replica.matcher, replica.settings_seen = matcher, db.matching.settings_version()
    replica.seen = {"q.example/y": 0}
    with db.atomic():
        db.execute("INSERT INTO followed_logs (origin, url, vkey, added_at, size) "
                   "VALUES ('q.example/y', 'http://127.0.0.1:1', 'k', 0, 5)")  # entries 0..4: no feedback
    assert kept_after(lambda: replica.catch_up(db)) == 4
    with db.atomic():
        db.execute("UPDATE followed_logs SET size = 6 WHERE origin = 'q.example/y'")
        db.execute("INSERT INTO follow_feedback (from_origin, from_idx, origin, idx, leaf_hash, verdict, entry_matches) "
                   "VALUES ('q.example/y', 5, ?, 1, ?, 'removed', 1)", (A, b"\x00" * 32))  # entry 5: a feedback
    assert kept_after(lambda: replica.catch_up(db)) == 0
    assert matcher.describe(hits[1])[0]["feedback"] == {"removed": 1}


async def test_suppress_reports_what_the_matcher_held_before_the_replica_took_it_in_force(small, monkeypatch):
    """PostgreSQL: the recorded suppression notifies this process's own replica, whose
    look can take it in force (Matcher.adopt_settings) before `Matcher.suppress` runs."""
    db, matcher, _queries = small
    real = suppress_module.record_suppression

    def replica_first(*args):
        suppression = real(*args)
        assert matcher.adopt_settings(db) == 1  # what the replica's look does on the notification
        return suppression

    monkeypatch.setattr(suppress_module, "record_suppression", replica_first)
    suppressor = Suppressor(db, matcher, feedback=None)
    assert (A, 3) in matcher
    outcome = await suppressor.suppress(A, 3, want_feedback=False)
    assert outcome.was_matching is True and (A, 3) not in matcher and outcome.feedback == "none"
    monkeypatch.setattr(suppress_module, "record_suppression", real)
    outcome = await suppressor.suppress(A, 3, want_feedback=False)  # again: it held nothing then
    assert outcome.was_matching is False
