"""Each repository's contract (written at the top of its module in node/store/), checked
against both backends: SQLite and PostgreSQL (`db_target`, tests/conftest.py). The same
calls, the same answers: atomicity, order, idempotence, what is refused."""

from __future__ import annotations

import threading

import pytest

from node.cases.limits import CASE_GUARD, Policy, UnknownCaseCounters
from node.store import open_db
from node.store.cases import CaseLookupTaken
from node.store.dbtiles import DatabaseTileStore
from node.store.tiles import TileConflict, TileStore
from node.store.worker import DatabaseWorker

H = [bytes([i]) * 32 for i in range(256)]


@pytest.fixture
def db(db_target):
    connection = open_db(db_target)
    yield connection
    connection.close()


def test_log_batches_are_atomic_and_checkpoints_never_fork(db):
    db.log.insert_entries(0, [b"\x00\x01\x01a", b"\x00\x01\x01b"], H[:2])
    with pytest.raises(Exception):  # index 1 is taken: nothing of this batch may stay
        db.log.insert_entries(1, [b"x", b"y"], H[2:4])
    assert db.log.entry_count() == db.log.stored_entries() == 2
    assert [row[0] for row in db.log.iter_entries(0, 10, chunk=1)] == [0, 1]
    assert db.log.get_entry(1) == (b"\x00\x01\x01b", H[1]) and db.log.get_entry(5) is None
    assert db.log.find_by_leaf_hash(H[0]) == [0]
    db.log.record_checkpoint(1, H[9], b"note 1", published_at=1000.0)
    db.log.record_checkpoint(2, H[8], b"note 2", published_at=2000.5, durable=False)
    db.log.record_checkpoint(2, H[8], b"note 2 again")  # a re-publication: no-op
    with pytest.raises(RuntimeError, match="different checkpoint"):
        db.log.record_checkpoint(2, H[7], b"forked")
    latest = db.log.latest_checkpoint()
    assert (latest.size, latest.root_hash, latest.note, latest.published_at) == (2, H[8], b"note 2", 2000.5)
    assert db.log.first_size_from(2) == 2 and db.log.first_size_from(3) is None
    assert db.log.size_published_by(1500) == 1 and db.log.size_published_by(10) == 0
    assert db.log.published_times({1, 2, 3}) == {1: 1000.0, 2: 2000.5}
    assert db.stats.log_per_day(None)  # counted in the batch's own transaction


def test_readers(db):
    assert db.readers.add_reader("vkey-a", "alpha", b"\x01\x02\x03\x04")
    assert not db.readers.add_reader("vkey-a", "renamed", b"\x01\x02\x03\x04")
    assert db.readers.is_reader("vkey-a") and not db.readers.is_reader("vkey-b")
    assert [(r.vkey, r.name, r.key_id) for r in db.readers.list_readers()] == [("vkey-a", "renamed", "01020304")]
    assert db.readers.remove_reader("renamed") == 1 and db.readers.list_readers() == []
    # Values are bound, never spliced into the statement: quotes, ? and % stay data.
    hostile = "x'); DROP TABLE readers; -- ? %s %% ?"
    assert db.readers.add_reader(hostile, hostile, b"\x00" * 4)
    assert db.readers.is_reader(hostile) and db.readers.list_readers()[0].name == hostile


def _attempt(db, lookup, now=1000.0):
    return db.cases.begin_pin_attempt(lookup, now, Policy(free=100, base_delay=0.0, max_delay=0.0, lock_after=100, lock_duration=1.0), UnknownCaseCounters(CASE_GUARD))


def test_cases_life_and_counts(db):
    entries = [(H[1], "pdq", False), (H[2], "md5", True)]
    case_id = db.cases.insert_pending_case(b"L1", b"salt", b"hash", "scrypt", 20000, entries, hour=480000)
    with pytest.raises(CaseLookupTaken):  # nothing written, not even the hour's count
        db.cases.insert_pending_case(b"L1", b"salt", b"hash", "scrypt", 20000, entries, hour=480000)
    assert db.cases.creation_counts(0) == [(480000, 1, 0, 0, 0, 0)]
    assert db.cases.cases_in_state("pending") == [case_id]
    db.cases.publish_case(case_id, [(0, 2), (1, 2)])
    assert db.cases.claimed_indices([0, 1, 7]) == {0, 1}
    assert [(e.position, e.idx, e.low_quality) for e in db.cases.entries_of(case_id)] == [(0, 0, False), (1, 1, True)]
    assert db.stats.case_totals() == {"opened": 1, "withdrawn": 0}      # the triggers
    assert db.stats.published_groups(0, 10) == [(2, 2, 1)]
    case, attempt = _attempt(db, b"L1")
    assert case.id == case_id and attempt.refused is None and db.cases.get_case(case_id).failed_pins == 1
    db.cases.pin_succeeded(case_id, (0, 0.0))
    assert db.cases.get_case(case_id).failed_pins == 0
    assert _attempt(db, b"nobody")[0] is None and db.cases.unknown_attempts() == 1
    db.cases.mark_withdrawn(case_id, 20001)
    assert db.cases.cases_to_finish_withdrawing() == [case_id]
    db.cases.record_withdrawals(case_id, [(0, 5, 6, 20001), (1, 5, 6, 20001)])
    db.cases.record_withdrawals(case_id, [(0, 5, 6, 20001)])  # idempotent
    assert db.cases.unwithdrawn_targets(case_id) == [] and db.cases.cases_to_finish_withdrawing() == []
    assert db.stats.case_totals() == {"opened": 1, "withdrawn": 1}
    assert db.cases.withdrawal_groups(0, 10) == [(6, 1, 5)]
    db.cases.add_creation_counts(480000, {"address": 2, "day-budget": 1}, 3)
    assert db.cases.creation_counts(0) == [(480000, 1, 2, 0, 1, 3)]
    assert db.cases.counts()["withdrawn"] == 1


def test_pin_attempts_are_counted_one_by_one(db_target, db):
    case_id = db.cases.insert_pending_case(b"L2", b"s", b"h", "p", 1, [(H[1], "pdq", False)])
    db.cases.publish_case(case_id, [(0, 1)])
    others = [open_db(db_target, check_same_thread=False) for _ in range(4)]
    threads = [threading.Thread(target=lambda c=c: [_attempt(c, b"L2") for _ in range(3)])
               for c in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert db.cases.get_case(case_id).failed_pins == 12
    for c in others:
        c.close()


def test_a_follower_round_applies_once(db):
    db.follow.add_log("peer.example/log", "https://peer.example/log", "vkey")
    with pytest.raises(ValueError):
        db.follow.add_log("peer.example/log", "https://peer.example/log", "vkey")
    origin = "peer.example/log"

    def round_():
        db.follow.reset_staging(origin)
        db.follow_leaves.reset_staging(origin)
        db.follow.stage(origin, [(0, "pdq", H[10], 90, "a,b", 5, H[0]), (1, "pdq", H[11], None, "", 5, H[1])],
                        [(2, b"withdrawal", H[2])])
        db.follow_leaves.stage(origin, [(0, 3, H[0] + H[1] + H[2])])
        with db.atomic():
            moved = db.follow.move_staged_fingerprints(origin)
            assert [row[0] for row in db.follow.staged_entries(origin)] == [2]
            db.follow.withdraw(origin, 1, 2)
            db.follow.add_feedback(origin, 2, "me.example/log", 0, H[5], "removed", True)
            db.follow_leaves.move_staged(origin)
            db.follow.store_checkpoint(origin, 3, H[20], b"note", 100.0)
        return moved

    assert round_() == 2
    assert round_() == 0  # a second time changes nothing
    rows = list(db.follow.iter_fingerprints(origin, chunk=1))
    assert [(r.index, r.labels, r.withdrawn) for r in rows] == [(0, ("a", "b"), False), (1, (), True)]
    assert [r.index for r in db.follow.iter_fingerprints(active_only=True)] == [0]
    assert db.follow.fingerprint_counts() == {origin: {"active": 1, "withdrawn": 1, "suppressed": 0}}
    assert db.follow.get_log(origin).size == 3 and db.follow.checkpoint_at(origin, 3) == (H[20], b"note")
    assert db.follow_leaves.leaf_hashes(origin, 3) == H[:3] and db.follow_leaves.leaf_hashes(origin, 4) is None
    assert db.follow.verdict_counts("me.example/log", 0) == {"removed": 1}
    assert db.follow.set_suppressed(origin, 0) and db.follow.fingerprints_at(origin, [0, 1]) == []
    assert db.follow.add_ack(origin, 7, "me.example/log", 10, H[3], 5000, b"k", b"s", True, None)
    assert not db.follow.add_ack(origin, 8, "me.example/log", 9, H[3], 6000, b"k", b"s", True, True)
    assert db.follow.acks_at_size("me.example/log", 10)[0].root_ok is None
    assert db.follow.ack_steps(origin, "me.example/log") == [(10, 5000)]
    assert db.follow.acked_sizes("me.example/log", 0) == [9, 10]
    assert db.follow.remove_log(origin) == origin
    assert list(db.follow.iter_fingerprints()) == [] and db.follow_leaves.leaf_hashes(origin, 1) is None


def test_matching_state(db):
    db.matching.set_threshold("o", 40)
    assert db.matching.thresholds() == {"o": 40}
    first = db.matching.add_suppression("o", 3, H[3], want_feedback=False, now=10.0)
    assert first.feedback == "none"
    assert db.matching.add_suppression("o", 3, H[3], want_feedback=True).feedback == "pending"
    assert [s.index for s in db.matching.pending_feedback()] == [3]
    db.matching.mark_feedback_published("o", 3, 99)
    assert db.matching.pending_feedback() == [] and db.stats.suppressions(None) == {"o": {"total": 1, "window": 1}}
    db.matching.set_budget("o", {"max_per_hour": 5})
    assert db.matching.budgets() == {"o": {"max_fingerprints": None, "max_per_hour": 5, "max_per_day": None}}
    with db.atomic():
        cluster = db.matching.add_cluster("o", H[4], 8)
        db.matching.hold("o", [5, 6], "cluster", cluster)
        db.matching.hold("o", [7], "budget")
        db.matching.hold("o", [7], "budget")
        db.matching.add_intake("o", 100, 3)
        db.matching.add_intake("o", 100, 2)
    assert db.matching.clusters()[0].members == 2 and db.matching.intake() == {"o": {100: 5}}
    assert db.matching.hold_counts() == {"o": {"cluster": 2, "budget": 1}}
    assert db.matching.release_cluster(cluster) == [5, 6] and db.matching.release_cluster(cluster) == []
    assert db.matching.all_held() == {"o": {"budget": [7]}}


def test_witness_state(db):
    assert db.witness.add_known_log("log.example", "vkey1")
    assert db.witness.witness_update("log.example", lambda stored: (stored, (5, H[5], b"n5", 1.0))) is None
    assert db.witness.witness_update("log.example", lambda stored: (stored.size, None)) == 5
    db.witness.record_seen("log.example", 9, H[9], b"n9", "follower")
    db.witness.record_seen("log.example", 4, H[4], b"n4", "gossip")  # smaller: kept the larger
    assert db.witness.list_seen()[0].size == 9
    assert db.witness.store_evidence("log.example", "{}") and not db.witness.store_evidence("log.example", "{}")
    for _ in range(3):
        db.witness.record_refusal("log.example", 409, "old", b"body")
    assert len(db.witness.list_refusals()) == 3
    db.witness.set_follow_policy("log.example", b"policy", "file")
    assert db.witness.get_follow_policy("log.example") == b"policy"
    db.witness.set_log_policy(2)
    db.witness.set_log_policy(3)
    assert db.witness.get_log_policy() == 3


def test_acks_and_feedback_summaries(db):
    db.acks.record_sent("peer", 10, H[1], 1000, 3)
    db.acks.record_sent("peer", 8, H[2], 2000, 4)   # never moves back
    assert db.acks.sent()["peer"].size == 10
    own, peer = "me.example/log", "peer.example/log"
    db.log.insert_entries(0, [b"\x00\x01\x01a"], H[:1])
    db.log.record_checkpoint(1, H[9], b"me.example/log\n1\n", published_at=50.0)
    db.follow.add_log(peer, "https://peer", "vkey")
    with db.atomic():
        db.follow.add_feedback(peer, 0, own, 0, H[0], "removed", True)
        db.stats.summarise_feedback(peer, 0, 1, 100.0, own)
        db.stats.summarise_feedback(peer, 0, 1, 100.0, own)  # idempotent
    assert db.stats.feedback_totals() == [(peer, "removed", 1)]
    assert db.stats.outcomes(None) == {peer: {"wait:1m": 1, "entries_answered": 1, "entries_removed": 1}}
    db.stats.add_matches(0, 4, {peer: 2})
    assert sorted(db.stats.matches_per_day(None)) == [(0, "", "queries", 4), (0, peer, "matches", 2)]


async def test_the_worker_takes_either_target(db_target):
    worker = DatabaseWorker(db_target, name="t")
    await worker.log.insert_entries(0, [b"e"], H[:1])
    assert await worker.log.entry_count() == 1
    await worker.close()


def test_tile_stores_keep_the_contract(db_target, tmp_path):
    if isinstance(db_target, str):
        store = DatabaseTileStore(db_target)
    else:
        store = TileStore(tmp_path / "tiles", tmp_path / "tmp")
    store.prepare()
    assert store.write_all([("tile/0/000", b"a" * 32), ("tile/0/001.p/3", b"b" * 96)]) == 2
    assert store.write_all([("tile/0/000", b"a" * 32)]) == 0           # same bytes: a no-op
    with pytest.raises(TileConflict):
        store.stage([("tile/0/000", b"c" * 32)])
    staged = store.stage([("tile/1/000", b"d" * 32)])
    assert store.read("tile/1/000") is None                          # staged: nobody reads it
    store.commit(staged)
    assert store.read("tile/1/000") == b"d" * 32 and store.read("tile/0/000") == b"a" * 32
    assert store.read("tile/0/001.p/3") == b"b" * 96 and store.read("tile/9/000") is None
    getattr(store, "close", lambda: None)()


def test_the_replay_journal_in_postgresql(pg_url):
    """node/store/replay.py: accepted nonces stay refused after a restart while the database
    server ran on; after a server restart (another start time) the cache is careful."""
    from node.replaycache import ReplayCache, ReplayRefused
    from node.store.replay import DatabaseJournals

    cache = ReplayCache(max_entries=100)
    assert "no replay journal yet" in cache.open_journal(DatabaseJournals(pg_url), 1000.0, 10.0)
    cache.check_and_add("reader", "nonce-1", 1040.0, 1000.0)
    cache.close()
    again = ReplayCache(max_entries=100)
    assert "1 signed read(s)" in again.open_journal(DatabaseJournals(pg_url), 1001.0, 10.0)
    with pytest.raises(ReplayRefused):
        again.check_and_add("reader", "nonce-1", 1040.0, 1001.0)
    again.close()
    db = open_db(pg_url)
    db.execute("UPDATE replay_journal SET server_started = 'another start'")
    db.close()
    careful = ReplayCache(max_entries=100)
    careful.open_journal(DatabaseJournals(pg_url), 1002.0, 10.0)
    assert careful.not_before == 1012.0
    careful.close()


async def test_a_worker_reconnects_after_postgresql_dropped_its_connection(pg_url):
    worker = DatabaseWorker(pg_url, name="t")
    pid = await worker.call(lambda db: db.execute("SELECT pg_backend_pid()").fetchone()[0])
    admin = open_db(pg_url)
    admin.execute("SELECT pg_terminate_backend(?)", (pid,))
    admin.close()
    with pytest.raises(Exception):   # the call that finds the connection gone fails ...
        await worker.log.entry_count()
    assert await worker.log.entry_count() == 0   # ... the next one reconnects
    await worker.close()


def test_federation_state(db):
    db.federation.subscribe("https://list.example", ["vkey1", "vkey2"], 2, 60.0, False)
    db.federation.subscribe("https://list.example/v2", ["vkey1"], 1, 30.0, True)   # changed, one row
    with db.atomic():
        db.federation.accept("fed.example", 3, b"note 3", now=10.0)
    subscription = db.federation.subscription()
    assert subscription.url.endswith("/v2") and subscription.auto_remove
    assert db.federation.versions() == [(3, 10.0)] and subscription.checkpoint is None
    # The list's log (joining.md §3.3): its checkpoint, witnesses, a fork.
    db.federation.subscribe("https://list.example/v2", ["vkey1"], 1, 30.0, True, ["w1", "w2"], 2)
    with db.atomic():
        db.federation.accept("fed.example", 4, b"note 4", now=11.0, checkpoint=b"checkpoint 4")
    subscription = db.federation.subscription()
    assert (subscription.checkpoint, subscription.witnesses, subscription.witness_quorum, subscription.note) == \
        (b"checkpoint 4", ("w1", "w2"), 2, b"note 4")
    db.federation.record_fork({"reason": "two roots"}, "FORKED")
    subscription = db.federation.subscription()
    assert subscription.fork == {"reason": "two roots"} and subscription.last_error == "FORKED"
    member = {"origin": "a.example/log", "role": "helpline", "url": "https://a", "name": "A", "log_vkey": "k",
              "request_vkey": "r"}
    db.federation.set_applied(member)
    db.federation.set_applied({**member, "name": "A renamed"})   # replaced, not doubled
    assert db.federation.applied() == {"a.example/log": {**member, "name": "A renamed"}}
    db.federation.reject("change-1")
    db.federation.reject("change-1")
    assert db.federation.rejected() == {"change-1"}
    assert db.federation.unsubscribe() and db.federation.applied() == {}
