"""Hostile peers: real HTTP servers on 127.0.0.1 serve a genuine log, then corrupt it.

For every kind of misbehaviour: the follower's verified state and tables stay exactly
as they were, a clear error is recorded, and a second, honest log followed by the same
node keeps syncing in the same rounds."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web

from follow_support import Harness, LogServer, StaticLog, pdq_entry, withdrawal_entry
from node.follow.sync import ForkDetected, PeerMisbehaved, SyncError
from node.store import follow as store
from protocol.merkle import root_of
from protocol.note import Signer
from protocol.tiles import TileId, encode_bundle, entries_path

TIMEOUT = 0.5


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


def bad_signature(log: StaticLog) -> bytes:
    text, sig_line = log.note.decode().rsplit("\n— ", 1)
    name, blob = sig_line.strip().split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 0xFF  # keep the key ID (first 4 bytes), break the Ed25519 signature
    return f"{text}\n— {name} {base64.b64encode(bytes(raw)).decode()}\n".encode()


async def endless(request):
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        while True:
            await response.write(b"\0" * 65536)
            await asyncio.sleep(0)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def huge_declared(request):
    return web.Response(body=b"x" * (200 * 1024), content_type="text/plain")


async def slow_answer(request):
    await asyncio.sleep(3)
    return web.Response(body=b"too late")


async def error_500(request):
    return web.Response(status=500, text="internal server error")


async def garbage(request):
    return web.Response(body=bytes(range(256)) * 3)


# Each case: (name, how to corrupt the grown hostile log, expected exception, words in the error)
def corrupt_checkpoint_signature(log, server):
    server.checkpoint = bad_signature(log)


def corrupt_unknown_key(log, server):
    server.checkpoint = log.sign(len(log.entries), root_of(log.leaves), Signer.generate(log.origin))


def corrupt_tile_hash(log, server):
    path = TileId(0, 1).path()  # a full tile, checked against its parent
    server.overrides[path] = flip(log.files[path], 40)


def corrupt_partial_tile_hash(log, server):
    path = TileId(0, 2, 88).path()  # the right edge, checked against the root
    server.overrides[path] = flip(log.files[path], 32 * 87)


def corrupt_upper_tile(log, server):
    path = TileId(1, 0, 2).path()
    server.overrides[path] = flip(log.files[path], 3)


def truncate_tile(log, server):
    path = TileId(0, 2, 88).path()
    server.overrides[path] = log.files[path][:-5]


def truncate_bundle(log, server):
    path = entries_path(2, 88)
    server.overrides[path] = log.files[path][:-3]


def bundle_other_entries(log, server):
    path = entries_path(2, 88)
    server.overrides[path] = encode_bundle([pdq_entry(10_000 + i) for i in range(88)])


def garbage_checkpoint(log, server):
    server.overrides["checkpoint"] = garbage


def garbage_bundle(log, server):
    server.overrides[entries_path(2, 88)] = garbage


def endless_tile(log, server):
    server.overrides["tile/*"] = endless


def endless_checkpoint(log, server):
    server.overrides["checkpoint"] = endless


def huge_checkpoint(log, server):
    server.overrides["checkpoint"] = huge_declared


def slow_checkpoint(log, server):
    server.overrides["checkpoint"] = slow_answer


def slow_bundle(log, server):
    server.overrides[entries_path(2, 88)] = slow_answer


def tiles_500(log, server):
    server.overrides["tile/*"] = error_500


CASES = [
    ("bad signature", corrupt_checkpoint_signature, PeerMisbehaved, "checkpoint rejected"),
    ("unknown key", corrupt_unknown_key, PeerMisbehaved, "checkpoint rejected"),
    ("tile with a wrong hash", corrupt_tile_hash, PeerMisbehaved, "tiles do not match"),
    ("partial tile with a wrong hash", corrupt_partial_tile_hash, PeerMisbehaved, "tiles do not match"),
    ("upper tile with a wrong hash", corrupt_upper_tile, PeerMisbehaved, "tiles do not match"),
    ("truncated tile", truncate_tile, SyncError, "expected exactly"),
    ("truncated bundle", truncate_bundle, PeerMisbehaved, "malformed"),
    ("bundle not matching its leaf hashes", bundle_other_entries, PeerMisbehaved, "does not hash to its leaf"),
    ("garbage checkpoint", garbage_checkpoint, PeerMisbehaved, "checkpoint rejected"),
    ("garbage bundle", garbage_bundle, PeerMisbehaved, "malformed"),
    ("endless tile body", endless_tile, SyncError, "larger than"),
    ("endless checkpoint body", endless_checkpoint, SyncError, "larger than"),
    ("huge checkpoint", huge_checkpoint, SyncError, "larger than"),
    ("slow checkpoint", slow_checkpoint, SyncError, "no complete answer within"),
    ("slow bundle", slow_bundle, SyncError, "no complete answer within"),
    ("500 on tiles", tiles_500, SyncError, "HTTP 500"),
]


@pytest.fixture
async def two_logs(tmp_path):
    hostile, honest = StaticLog("hostile.example/log"), StaticLog("honest.example/log")
    hostile_server, honest_server = await LogServer(hostile).start(), await LogServer(honest).start()
    harness = Harness(tmp_path, timeout=TIMEOUT)
    harness.follow(hostile.origin, hostile_server.url, hostile.vkey)
    harness.follow(honest.origin, honest_server.url, honest.vkey)
    # Both logs: 300 entries, verified.
    hostile.append(*[pdq_entry(i) for i in range(300)])
    honest.append(*[pdq_entry(i) for i in range(300)])
    for follower in harness.followers.values():
        assert (await follower.sync_once()).new_size == 300
    yield harness, (hostile, hostile_server), (honest, honest_server)
    await harness.close()
    await hostile_server.stop()
    await honest_server.stop()


def snapshot(harness: Harness, origin: str):
    state = harness.state(origin)
    rows = harness.db.execute("SELECT * FROM fingerprints WHERE origin = ? ORDER BY idx", (origin,)).fetchall()
    checkpoints = harness.db.execute("SELECT size, root_hash FROM followed_checkpoints WHERE origin = ?",
                                     (origin,)).fetchall()
    return (state.size, state.root_hash, state.checkpoint_note, state.vkey, state.forked), rows, checkpoints


@pytest.mark.parametrize("name,corrupt,expected,words", CASES, ids=[c[0] for c in CASES])
async def test_hostile_peer_changes_nothing_and_honest_log_keeps_syncing(two_logs, name, corrupt, expected, words):
    harness, (hostile, hostile_server), (honest, _) = two_logs
    before = snapshot(harness, hostile.origin)
    # Both grow to 600 = 2 * 256 + 88 entries (tile 0/001 becomes full, 0/002.p/88 is new),
    # with a withdrawal in the hostile log that must NOT take effect.
    hostile.append(*[pdq_entry(i) for i in range(300, 599)], withdrawal_entry(1, 2, 3))
    honest.append(*[pdq_entry(i) for i in range(300, 600)])
    corrupt(hostile, hostile_server)

    hostile_round = asyncio.ensure_future(harness.followers[hostile.origin].sync_once())
    honest_result = await harness.followers[honest.origin].sync_once()
    with pytest.raises(expected) as caught:
        await asyncio.wait_for(hostile_round, 5)
    assert words in str(caught.value)

    assert snapshot(harness, hostile.origin) == before
    state = harness.state(hostile.origin)
    assert state.last_error and words in state.last_error
    assert state.failures == 1
    assert not state.forked
    assert sum(r.withdrawn for r in harness.fingerprints(hostile.origin)) == 0

    assert honest_result.new_size == 600
    assert harness.state(honest.origin).size == 600
    assert len(harness.fingerprints(honest.origin)) == 600

    # Once the peer behaves again, the same follower catches up.
    hostile_server.overrides.clear()
    hostile_server.checkpoint = None
    assert (await harness.followers[hostile.origin].sync_once()).new_size == 600
    assert sum(r.withdrawn for r in harness.fingerprints(hostile.origin)) == 3
    assert harness.state(hostile.origin).failures == 0


async def test_entry_that_does_not_decode_is_a_protocol_violation(two_logs):
    harness, (hostile, _), _ = two_logs
    # A genuine, validly signed log whose entry 310 is not an entry: tiles and bundles agree.
    hostile.append(*[pdq_entry(i) for i in range(300, 310)], b"\x01\x09not an entry", pdq_entry(311))
    with pytest.raises(PeerMisbehaved, match="entry 310 does not follow the entry grammar"):
        await harness.followers[hostile.origin].sync_once()
    state = harness.state(hostile.origin)
    assert state.size == 300 and "protocol violation" in state.last_error
    assert len(harness.fingerprints(hostile.origin)) == 300  # not even entries 300..309


async def test_shrinking_checkpoint_is_a_fork_and_stops_the_log(two_logs):
    harness, (hostile, server), (honest, _) = two_logs
    note_300 = hostile.note
    # A validly signed checkpoint of size 200 that is not the root of our first 200
    # entries: never verified, the log went backwards onto another history.
    server.checkpoint = hostile.sign(200, root_of(hostile.leaves[1:201]))
    with pytest.raises(ForkDetected, match="shrank"):
        await harness.followers[hostile.origin].sync_once()
    state = harness.state(hostile.origin)
    assert state.forked and state.size == 300 and "FORK" in state.last_error
    [evidence] = store.list_forks(harness.db, hostile.origin)
    assert evidence.earlier_note == note_300 and evidence.later_note == server.checkpoint
    # ... and a portable evidence file, its proof read from our own tree's tiles.
    path, verified = harness.evidence(hostile.origin)
    assert path.name.endswith("-200-300.json") and verified.kind == "consistency"
    # Nothing more is applied, even when the log serves good data again.
    server.checkpoint = None
    hostile.append(*[pdq_entry(i) for i in range(300, 400)])
    result = await harness.followers[hostile.origin].sync_once()
    assert result.outcome == "forked" and harness.state(hostile.origin).size == 300
    # The honest log is not affected.
    honest.append(pdq_entry(999))
    assert (await harness.followers[honest.origin].sync_once()).new_size == 301


async def test_older_checkpoint_of_the_same_history_is_an_error_not_a_fork(two_logs):
    harness, (hostile, server), _ = two_logs
    # Size 200, never verified (the follower went from 0 to 300), but the root of our
    # first 200 entries: an older checkpoint of the same history, e.g. from a cache.
    server.checkpoint = hostile.sign(200, root_of(hostile.leaves[:200]))
    with pytest.raises(SyncError, match="stale copy"):
        await harness.followers[hostile.origin].sync_once()
    state = harness.state(hostile.origin)
    assert not state.forked and state.size == 300 and not store.list_forks(harness.db, hostile.origin)


async def test_a_shrinking_log_that_withholds_its_tiles_leaves_evidence_all_the_same(two_logs):
    # Issue 12, point 7: the follower keeps the leaf hashes it verified, so the tiles of
    # its own tree of size 300 are not needed from the log.
    harness, (hostile, server), _ = two_logs
    server.overrides["tile/*"] = b"garbage"  # the log withholds every tile
    # A smaller checkpoint of the same history is told apart (a stale copy, no fork) ...
    server.checkpoint = hostile.sign(200, root_of(hostile.leaves[:200]))
    with pytest.raises(SyncError, match="stale copy"):
        await harness.followers[hostile.origin].sync_once()
    assert not harness.state(hostile.origin).forked
    # ... and one of another history is a fork with a portable evidence file.
    server.checkpoint = hostile.sign(200, root_of(hostile.leaves[1:201]))
    with pytest.raises(ForkDetected, match="shrank"):
        await harness.followers[hostile.origin].sync_once()
    assert harness.state(hostile.origin).forked
    path, verified = harness.evidence(hostile.origin)
    assert verified.kind == "consistency" and verified.smaller.size == 200 and verified.larger.size == 300


async def test_shrinking_checkpoint_without_our_tiles_or_leaves_is_a_fork_without_evidence(two_logs):
    harness, (hostile, server), _ = two_logs
    harness.db.execute("DELETE FROM followed_leaf_tiles")  # as for a log followed before they were kept
    server.checkpoint = hostile.sign(200, root_of(hostile.leaves[:200]))
    server.overrides["tile/*"] = b"garbage"  # the tiles of our tree of size 300 cannot be had
    with pytest.raises(ForkDetected, match="shrank"):
        await harness.followers[hostile.origin].sync_once()
    assert harness.state(hostile.origin).forked
    [fork] = store.list_forks(harness.db, hostile.origin)
    assert fork.evidence_path is None and "tiles of our verified tree of size 300 are not available" in fork.evidence_problem


async def test_stale_checkpoint_seen_before_is_an_error_not_a_fork(two_logs):
    harness, (hostile, server), _ = two_logs
    old_note = hostile.note
    hostile.append(*[pdq_entry(i) for i in range(300, 320)])
    assert (await harness.followers[hostile.origin].sync_once()).new_size == 320
    server.checkpoint = old_note  # a cache serving the checkpoint of size 300 again
    with pytest.raises(SyncError, match="stale copy"):
        await harness.followers[hostile.origin].sync_once()
    state = harness.state(hostile.origin)
    assert not state.forked and state.size == 320


async def test_same_size_other_root_is_a_fork(two_logs):
    harness, (hostile, server), _ = two_logs
    server.checkpoint = hostile.sign(300, bytes(32))
    with pytest.raises(ForkDetected, match="different roots"):
        await harness.followers[hostile.origin].sync_once()
    assert harness.state(hostile.origin).forked
    [evidence] = store.list_forks(harness.db, hostile.origin)
    assert evidence.earlier_size == evidence.later_size == 300
    assert harness.evidence(hostile.origin)[1].kind == "same-size"


async def test_rewritten_history_is_a_fork_detected_from_the_tiles(two_logs):
    harness, (hostile, server), _ = two_logs
    # The operator signs a bigger tree whose first 300 entries differ (entry 7 replaced):
    # every tile and bundle of it is genuine and verifies against its signed root.
    forged = StaticLog(hostile.origin, hostile.signer)
    entries = list(hostile.entries)
    entries[7] = pdq_entry(777_777)
    forged.append(*entries, *[pdq_entry(i) for i in range(300, 700)])
    server.log = forged
    before = snapshot(harness, hostile.origin)
    with pytest.raises(ForkDetected, match="does not extend"):
        await harness.followers[hostile.origin].sync_once()
    after = snapshot(harness, hostile.origin)
    assert after[0][:4] == before[0][:4] and after[1:] == before[1:]  # nothing rolled back or applied
    assert harness.state(hostile.origin).forked
    [evidence] = store.list_forks(harness.db, hostile.origin)
    assert evidence.earlier_size == 300 and evidence.later_size == 700
    _, verified = harness.evidence(hostile.origin)
    assert verified.kind == "consistency" and (verified.smaller.size, verified.larger.size) == (300, 700)


async def test_absurd_size_is_refused_without_listing_its_tiles(two_logs):
    harness, (hostile, server), _ = two_logs
    before = snapshot(harness, hostile.origin)
    server.checkpoint = hostile.sign(2**62, bytes(32))  # validly signed, impossible to fetch
    with pytest.raises(PeerMisbehaved, match="new entries, more than"):
        await asyncio.wait_for(harness.followers[hostile.origin].sync_once(), 5)
    assert snapshot(harness, hostile.origin) == before and not harness.state(hostile.origin).forked
