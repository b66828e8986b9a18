"""Following real logs: a real publishing node (node/web, node/log) and logs built with
protocol/ functions, over HTTP on 127.0.0.1; verification, applying, restart, replay,
the listener's order, key rotation, feedback. The follower's database is SQLite, then
PostgreSQL (`db_target`)."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest

from follow_support import Harness, LogServer, StaticLog, pdq_entry, withdrawal_entry
from node.cli import main as cli_main
from node.follow.apply import apply_staged, stage_entries
from node.follow.listener import FollowListener
from node.follow.sync import PeerMisbehaved, SyncError
from node.readaccess import RequestSigner
from node.store import connect
from protocol.entries import Announcement, Feedback, Submission, decode_entry, encode_entry, rotation_message
from protocol.merkle import leaf_hash
from protocol.note import Signer
from publish_support import append, make_datadir


def pdq_line(i: int, **extra) -> str:
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i:064x}", **extra})


@pytest.fixture
async def publisher(tmp_path, start_node):
    datadir = make_datadir(tmp_path, name="helpline", origin="helpline.example/log")
    node = await start_node(datadir)
    return node


async def test_follows_a_real_node_through_growth_and_withdrawals(tmp_path, db_target, publisher):
    harness = Harness(tmp_path, db_target)
    origin = publisher.datadir.config.node.origin
    follower = harness.follow(origin, publisher.public_url, publisher.datadir.load_log_signer().verifier_key())
    token = publisher.datadir.admin_token()
    appended = 0
    async with aiohttp.ClientSession() as session:
        # Sizes chosen to cross tile boundaries and leave partial tiles at two levels.
        for count in (1, 254, 1, 300, 70, 256 * 2):
            lines = [pdq_line(appended + i, labels=["nude"] if (appended + i) % 2 else []) for i in range(count)]
            status, _ = await append(session, publisher.admin_url, token, lines)
            assert status == 200
            appended += count
            result = await follower.sync_once()
            assert (result.old_size, result.new_size) == (appended - count, appended)
        status, acks = await append(session, publisher.admin_url, token,
                                    [json.dumps({"kind": "withdrawal", "targets": [0, 5, 300]})])
        assert status == 200
    result = await follower.sync_once()
    assert result.applied.withdrawn == [0, 5, 300]
    rows = harness.fingerprints(origin)
    assert [r.index for r in rows] == list(range(appended))
    assert rows[7].fingerprint == (7).to_bytes(32, "big") and rows[7].labels == ("nude",) and rows[6].labels == ()
    assert {r.index for r in rows if r.withdrawn} == {0, 5, 300}
    state = harness.state(origin)
    assert state.size == appended + 1 and state.root_hash == publisher.node.sequencer.published.root_hash
    assert state.checkpoint_note == publisher.node.sequencer.published.note
    assert (await follower.sync_once()).outcome == "in-sync"
    await harness.close()


async def test_restricted_log_is_read_with_the_registered_request_key(tmp_path, db_target, start_node):
    datadir = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    node = await start_node(datadir)
    try:
        async with aiohttp.ClientSession() as session:
            assert (await append(session, node.admin_url, datadir.admin_token(), [pdq_line(1)]))[0] == 200
        key = platform.load_request_signer()
        signer = RequestSigner.from_seed(key.name, key.seed)
        vkey = datadir.load_log_signer().verifier_key()
        harness = Harness(tmp_path, db_target)
        unsigned = harness.follow("helpline.example/log", node.public_url, vkey)
        with pytest.raises(SyncError, match="HTTP 401"):
            await unsigned.sync_once()
        harness.db.follow.remove_log("helpline.example/log")
        signed = harness.follow("helpline.example/log", node.public_url, vkey, signer=signer)
        with pytest.raises(SyncError, match="HTTP 401: .*not a registered reader"):
            await signed.sync_once()
        assert cli_main(["readers", "add", "--dir", str(datadir.root), key.verifier_key()]) == 0
        assert (await signed.sync_once()).new_size == 1
        await harness.close()
    finally:
        await node.stop()


async def test_restart_resumes_from_the_last_verified_checkpoint(tmp_path, db_target):
    log = StaticLog()
    server = await LogServer(log).start()
    log.append(*[pdq_entry(i) for i in range(700)])
    harness = Harness(tmp_path, db_target)
    await harness.follow(log.origin, server.url, log.vkey).sync_once()
    await harness.close()

    log.append(*[pdq_entry(i) for i in range(700, 800)])
    server.requests.clear()
    harness = Harness(tmp_path, db_target)  # same database, nothing kept in memory
    follower = harness.attach(log.origin, server.url)
    result = await follower.sync_once()
    assert (result.old_size, result.new_size) == (700, 800)
    bundles = [p for p in server.requests if p.startswith("tile/entries/")]
    # Only the bundles that grew: 512..767 (was .p/188) and 768..799; never 0..511 again.
    assert sorted(bundles) == ["tile/entries/002", "tile/entries/003.p/32"]
    assert len(harness.fingerprints(log.origin)) == 800
    await harness.close()
    await server.stop()


async def test_replaying_a_batch_changes_nothing(tmp_path, db_target):
    harness = Harness(tmp_path, db_target)
    db = harness.db
    db.follow.add_log("a.example/log", "http://127.0.0.1:9", Signer.generate("a.example/log").verifier_key())
    entries = [pdq_entry(i) for i in range(10)] + [withdrawal_entry(2, 3)] + [withdrawal_entry(3, 4)]
    leaves = [leaf_hash(e) for e in entries]

    def apply_once():
        db.follow.reset_staging("a.example/log")
        stage_entries(db, "a.example/log", 0, entries, leaves)
        with db.atomic():
            return apply_staged(db, "a.example/log", harness.state("a.example/log").vkey)

    first = apply_once()
    dump = db.execute("SELECT * FROM fingerprints ORDER BY idx").fetchall()
    second = apply_once()
    assert first.added == 10 and first.withdrawn == [2, 3, 4]
    assert second.added == 0 and second.withdrawn == []
    assert db.execute("SELECT * FROM fingerprints ORDER BY idx").fetchall() == dump
    assert [r.index for r in harness.fingerprints("a.example/log") if r.withdrawn] == [2, 3, 4]
    # The first withdrawal of entry 3 is the one on record.
    assert db.execute("SELECT withdrawn_by FROM fingerprints WHERE idx = 3").fetchone()[0] == 10
    await harness.close()


class Recorder(FollowListener):
    def __init__(self, db_path, fail_on_withdrawn=False):
        self.db_path = db_path
        self.events = []
        self.fail = fail_on_withdrawn

    def _committed_size(self, origin):
        db = connect(self.db_path)
        try:
            return db.follow.get_log(origin).size
        finally:
            db.close()

    def on_withdrawn(self, origin, indices):
        self.events.append(("withdrawn", list(indices), self._committed_size(origin)))
        if self.fail:
            raise RuntimeError("matcher unavailable")

    def on_added(self, origin, rows):
        self.events.append(("added", [r.index for r in rows], self._committed_size(origin)))


async def test_listener_hears_withdrawals_before_commit_and_additions_after(tmp_path, db_target):
    log = StaticLog()
    server = await LogServer(log).start()
    harness = Harness(tmp_path, db_target)
    harness.listener = Recorder(harness.db_path)
    follower = harness.follow(log.origin, server.url, log.vkey)
    log.append(*[pdq_entry(i) for i in range(5)])
    await follower.sync_once()
    log.append(pdq_entry(5), withdrawal_entry(1, 5), pdq_entry(7))
    await follower.sync_once()
    assert harness.listener.events == [
        ("added", [0, 1, 2, 3, 4], 5),
        ("withdrawn", [1, 5], 5),    # before the commit: the database still says size 5
        ("added", [7], 8),           # after it; entry 5 was withdrawn in the same round
    ]
    # A listener that cannot drop withdrawn entries makes the round fail: nothing applied.
    harness.listener.fail = True
    log.append(withdrawal_entry(0))
    with pytest.raises(SyncError, match="matcher could not drop"):
        await follower.sync_once()
    assert harness.state(log.origin).size == 8
    assert not harness.db.follow.get_fingerprint(log.origin, 0).withdrawn
    harness.listener.fail = False
    await follower.sync_once()
    assert harness.db.follow.get_fingerprint(log.origin, 0).withdrawn
    await harness.close()
    await server.stop()


def announcement(new_vkey=None, signer=None, name="Helpline"):
    sig = None if new_vkey is None else signer.sign(rotation_message(new_vkey))
    return encode_entry(Announcement(name, "https://helpline.example/contact", "https://helpline.example/policy",
                                     new_vkey, sig))


async def test_key_rotation_is_honoured_only_when_signed_by_the_current_key(tmp_path, db_target):
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    harness = Harness(tmp_path, db_target)
    follower = harness.follow(log.origin, server.url, log.vkey)
    old, new, intruder = log.signer, Signer.generate(log.origin), Signer.generate(log.origin)

    # Signed by a key that is not the pinned one: refused, recorded.
    log.append(announcement(intruder.verifier_key(), intruder))
    await follower.sync_once()
    assert harness.state(log.origin).vkey == old.verifier_key()
    [(index, _, new_vkey, honoured, reason)] = harness.db.follow.key_rotations(log.origin)
    assert (index, honoured) == (0, False) and "does not verify" in reason
    assert harness.state(log.origin).display_name == "Helpline"

    # Signed by the current key: honoured; from now on only the new key signs.
    log.append(announcement(new.verifier_key(), old, name="Helpline (new key)"))
    await follower.sync_once()
    assert harness.state(log.origin).vkey == new.verifier_key()
    assert harness.state(log.origin).display_name == "Helpline (new key)"
    log.signer = new
    log.append(pdq_entry(1))
    assert (await follower.sync_once()).new_size == 3
    # A checkpoint signed by the old key alone is no longer believed.
    log.signer = old
    log.append(pdq_entry(2))
    with pytest.raises(PeerMisbehaved, match="checkpoint rejected"):
        await follower.sync_once()
    await harness.close()
    await server.stop()


async def test_feedback_attaches_to_the_entry_it_names(tmp_path, db_target):
    helpline, platform = StaticLog("helpline.example/log"), StaticLog("platform.example/log")
    servers = [await LogServer(helpline).start(), await LogServer(platform).start()]
    harness = Harness(tmp_path, db_target)
    helpline.append(*[pdq_entry(i) for i in range(10)])
    platform.append(
        encode_entry(Feedback(helpline.origin, 4, helpline.leaves[4], "removed")),
        encode_entry(Feedback(helpline.origin, 4, helpline.leaves[5], "matched-pending-review")),  # wrong hash
        encode_entry(Feedback("elsewhere.example/log", 1, bytes(32), "not-violating")),  # unknown entry
    )
    for log, server in zip((helpline, platform), servers):
        await harness.follow(log.origin, server.url, log.vkey).sync_once()
    found = harness.db.follow.feedback_for(helpline.origin, 4)
    assert [(f.from_origin, f.from_index, f.verdict, f.entry_matches) for f in found] == [
        (platform.origin, 0, "removed", True), (platform.origin, 1, "matched-pending-review", False)]
    assert harness.db.follow.feedback_for("elsewhere.example/log", 1)[0].entry_matches is None
    await harness.close()
    for server in servers:
        await server.stop()


async def test_random_growth_matches_the_log_exactly(tmp_path, db_target):
    """Many rounds of random sizes (0..600 new entries) with withdrawals mixed in."""
    rng = random.Random(4)
    log = StaticLog()
    server = await LogServer(log).start()
    harness = Harness(tmp_path, db_target)
    follower = harness.follow(log.origin, server.url, log.vkey)
    withdrawn = set()
    for _ in range(12):
        size = len(log.entries)
        new = [pdq_entry(size + i) for i in range(rng.choice([0, 1, 2, 255, 256, 257, rng.randrange(600)]))]
        if size and rng.random() < 0.5:
            targets = sorted(rng.sample(range(size), min(size, 3)))
            new.append(withdrawal_entry(*targets))
            withdrawn.update(t for t in targets if isinstance(decode_entry(log.entries[t]), Submission))
        if new:
            log.append(*new)
        await follower.sync_once()
        state = harness.state(log.origin)
        assert state.size == len(log.entries) and state.checkpoint_note == log.note
    rows = harness.fingerprints(log.origin)
    assert {r.index for r in rows if r.withdrawn} == withdrawn
    assert all(r.leaf_hash == log.leaves[r.index] for r in rows)
    await harness.close()
    await server.stop()
