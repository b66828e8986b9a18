"""Nodes compare what they have seen (node/follow/gossip.py).

Real HTTP on 127.0.0.1 (in-process aiohttp servers and real serving nodes), real
SQLite, logs built and signed with protocol/ code. An equivocating publisher that shows
history A to one follower and history B to another is caught by both once they gossip,
each with an evidence file `ncii-node audit verify-evidence` accepts; a peer serving
garbage, or checkpoints under another key, changes nothing; consistent views raise no
alarm; tiles of a restricted log are read with the node's request key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from follow_support import Harness, LogServer, StaticLog, pdq_entry
from publish_support import append, make_datadir, pdq_line, wait_for
from test_audit import ORIGIN, build_log, cli, submission
from test_audit import LogServer as HistoryServer

from node.cli import main as cli_main
from node.follow.gossip import Gossip, GossipError
from node.follow.status import status_report
from node.store import follow as store
from node.web.server import RunningNode
from protocol.evidence import check_pair, verify_evidence
from protocol.merkle import root_of
from protocol.note import Signer
from protocol.tiles import TileNodes, tiles_for_size


class PeerServer:
    """A peer node's /witness/seen and /witness/evidence, as the test dictates."""

    def __init__(self):
        self.seen: bytes | web.Response = b'{"node": "peer", "checkpoints": []}'
        self.evidence: list[dict] = []
        self.url = ""
        self._runner = None

    def show(self, origin: str, *notes: bytes) -> None:
        self.seen = json.dumps({"node": "peer.example/node", "checkpoints": [
            {"origin": origin, "size": 0, "note": n.decode(), "source": "follower", "seen_at": 0} for n in notes]
        }).encode()

    async def _seen(self, request):
        if isinstance(self.seen, web.StreamResponse):
            return self.seen
        if callable(self.seen):
            return await self.seen(request)
        return web.Response(body=self.seen, content_type="application/json")

    async def _evidence(self, request):
        return web.json_response({"evidence": self.evidence})

    async def start(self) -> PeerServer:
        app = web.Application()
        app.router.add_get("/witness/seen", self._seen)
        app.router.add_get("/witness/evidence", self._evidence)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def setup(tmp_path):
    """A follower holding 300 verified entries of a log, a gossip, and a peer."""
    log = StaticLog("gossip.example/log")
    log.append(*[pdq_entry(i) for i in range(300)])
    server = await LogServer(log).start()
    peer = await PeerServer().start()
    harness = Harness(tmp_path, timeout=1.0)
    harness.follow(log.origin, server.url, log.vkey)
    await harness.followers[log.origin].sync_once()
    harness.db.follow.add_gossip_peer(peer.url, 30.0)
    gossip = Gossip(harness.worker, evidence_dir=harness.evidence_dir, timeout=1.0)
    yield harness, log, server, peer, gossip
    await harness.close()
    await server.stop()
    await peer.stop()


def snapshot(harness: Harness, origin: str):
    state = harness.state(origin)
    return (state.size, state.root_hash, state.checkpoint_note, state.forked, state.fork_reason,
            len(harness.db.follow.list_forks()), harness.db.execute("SELECT COUNT(*) FROM fingerprints").fetchone())


def peer_state(harness: Harness, url: str) -> store.GossipPeer:
    [peer] = [p for p in harness.db.follow.list_gossip_peers() if p.url == url]
    return peer


async def huge(request):
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(600):
        await response.write(b"x" * 8192)
    return response


def garbage_cases(log: StaticLog):
    other = Signer.generate(log.origin)  # same name, another key
    genuine = log.note.decode()
    broken = genuine[:-10] + ("A" if genuine[-10] != "A" else "B") + genuine[-9:]
    return {
        "not json": (b"\x00\xffnot json", "not JSON"),
        "wrong shape": (b'{"checkpoints": 5}', "checkpoints"),
        "a list": (b"[1, 2, 3]", "checkpoints"),
        "huge": (huge, "larger than"),
        "500": (web.Response(status=500, text="boom"), "HTTP 500"),
        "another key": (log.sign(300, bytes(32), other), "does not verify under the pinned key"),
        "bad signature": (broken.encode(), "does not verify under the pinned key"),
        "not a note": (b"hello\n", "does not verify under the pinned key"),
    }


@pytest.mark.parametrize("case", ["not json", "wrong shape", "a list", "huge", "500", "another key",
                                  "bad signature", "not a note"])
async def test_a_peer_serving_garbage_changes_nothing(setup, case):
    harness, log, _server, peer, gossip = setup
    body, words = garbage_cases(log)[case]
    if isinstance(body, bytes) and case in ("another key", "bad signature", "not a note"):
        peer.show(log.origin, body)
    else:
        peer.seen = body
    before = snapshot(harness, log.origin)
    try:
        result = await gossip.run_round(peer.url)
    except GossipError as exc:
        assert words in str(exc)
    else:
        assert not result.forks and words in " ".join(result.problems)
    assert snapshot(harness, log.origin) == before
    state = peer_state(harness, peer.url)
    assert words in state.last_error and state.failures == 1
    assert not list(harness.evidence_dir.glob("*")) if harness.evidence_dir.exists() else True


async def test_consistent_views_raise_no_alarm(setup):
    harness, log, _server, peer, gossip = setup
    older = log.sign(200, root_of(log.leaves[:200]))  # never verified by us, same history
    same = log.note
    log.append(*[pdq_entry(i) for i in range(300, 700)])  # the peer is ahead of us
    ahead = log.note
    for notes in ([same], [older], [ahead], [older, same, ahead]):
        peer.show(log.origin, *notes)
        result = await gossip.run_round(peer.url)
        assert result.compared == len(notes) and not result.forks and not result.problems, result
    assert not harness.state(log.origin).forked and not harness.db.follow.list_forks()
    state = peer_state(harness, peer.url)
    assert state.last_error is None and state.checked_at and state.failures == 0
    assert status_report(harness.db)["gossip"][0]["url"] == peer.url


async def test_same_size_other_root_seen_by_a_peer_is_a_fork(setup):
    harness, log, _server, peer, gossip = setup
    peer.show(log.origin, log.sign(300, bytes(32)))
    result = await gossip.run_round(peer.url)
    assert result.forks == [log.origin]
    state = harness.state(log.origin)
    assert state.forked and state.size == 300 and "FORK" in state.last_error and peer.url in state.fork_reason
    [fork] = harness.db.follow.list_forks(log.origin)
    assert fork.source == f"gossip {peer.url}" and fork.earlier_note == log.note
    assert harness.evidence(log.origin)[1].kind == "same-size"
    # The follower itself stops: nothing more is applied.
    log.append(pdq_entry(999))
    assert (await harness.followers[log.origin].sync_once()).outcome == "forked"


async def test_smaller_inconsistent_checkpoint_is_proved_from_our_tree(setup):
    harness, log, _server, peer, gossip = setup
    peer.show(log.origin, log.sign(120, root_of(log.leaves[1:121])))
    result = await gossip.run_round(peer.url)
    assert result.forks == [log.origin]
    _, verified = harness.evidence(log.origin)
    assert verified.kind == "consistency" and (verified.smaller.size, verified.larger.size) == (120, 300)


async def test_smaller_checkpoint_against_one_we_verified(setup):
    harness, log, server, peer, gossip = setup
    note_300 = log.note
    log.append(*[pdq_entry(i) for i in range(300, 350)])
    await harness.followers[log.origin].sync_once()
    server.overrides["tile/*"] = b"unavailable"  # not needed: we verified size 300 ourselves
    peer.show(log.origin, note_300)
    assert not (await gossip.run_round(peer.url)).forks
    peer.show(log.origin, log.sign(300, bytes(32)))
    assert (await gossip.run_round(peer.url)).forks == [log.origin]
    assert harness.evidence(log.origin)[1].kind == "same-size"


async def test_larger_inconsistent_tree_served_by_the_log(setup):
    """The log rewrote its history and serves the new tree; the peer saw it first."""
    harness, log, server, peer, gossip = setup
    forged = StaticLog(log.origin, log.signer)
    entries = list(log.entries)
    entries[3] = pdq_entry(10**6)
    forged.append(*entries, *[pdq_entry(i) for i in range(300, 520)])
    server.log = forged
    peer.show(log.origin, forged.note)
    assert (await gossip.run_round(peer.url)).forks == [log.origin]
    _, verified = harness.evidence(log.origin)
    assert (verified.smaller.size, verified.larger.size) == (300, 520)


async def test_larger_tree_we_cannot_see_needs_the_peers_evidence(setup):
    """Our log keeps showing us history A; the peer saw B (larger). Without B's tiles
    the comparison is inconclusive -- until the peer serves evidence it built."""
    harness, log, _server, peer, gossip = setup
    forged = StaticLog(log.origin, log.signer)
    forged.append(*[pdq_entry(i + 1) for i in range(300)], *[pdq_entry(i) for i in range(300, 400)])
    peer.show(log.origin, forged.note)
    before = snapshot(harness, log.origin)
    result = await gossip.run_round(peer.url)
    assert not result.forks and "inconclusive" in result.problems[0]
    assert snapshot(harness, log.origin) == before

    tiles = {t: forged.files[t.path()] for t in tiles_for_size(400)}
    genuine = check_pair(log.vkey, log.note, forged.note, TileNodes(400, tiles), ["peer"])
    unrelated = check_pair(log.vkey, log.sign(400, bytes(32)), forged.note, None, ["peer"])  # not about ours
    tampered = json.loads(json.dumps(genuine))
    tampered["proof"]["old_root_in_new_tree"] = tampered["proof"]["hashes"][0]
    peer.evidence = [unrelated, tampered, {"junk": True}]
    result = await gossip.run_round(peer.url)
    assert not result.forks and snapshot(harness, log.origin) == before

    peer.evidence.append(genuine)
    result = await gossip.run_round(peer.url)
    assert result.forks == [log.origin]
    path, verified = harness.evidence(log.origin)
    assert (verified.smaller.size, verified.larger.size) == (300, 400)
    assert "served by peer" in path.read_text()


async def test_tiles_of_a_restricted_log_are_read_with_the_request_key(tmp_path, start_node):
    from node.readaccess import RequestSigner

    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/node")
    assert cli_main(["readers", "add", "--dir", str(helpline.root),
                     platform.load_request_signer().verifier_key()]) == 0
    key = platform.load_request_signer()
    signer = RequestSigner.from_seed(key.name, key.seed)
    node = await start_node(helpline)
    peer = await PeerServer().start()
    harness = Harness(tmp_path, timeout=2.0)
    try:
        async with aiohttp.ClientSession() as session:
            assert (await append(session, node.admin_url, helpline.admin_token(),
                                 [pdq_line(i) for i in range(300)]))[0] == 200
        log_signer = helpline.load_log_signer()
        follower = harness.follow(log_signer.name, node.public_url, log_signer.verifier_key(), signer=signer)
        for _ in range(50):
            if (await follower.sync_once()).new_size == 300:
                break
            await asyncio.sleep(0.1)
        harness.db.follow.add_gossip_peer(peer.url, 30.0)
        # A checkpoint the log's key signed for another history of 100 entries.
        fake = StaticLog(log_signer.name, log_signer)
        fake.append(*[pdq_entry(i) for i in range(100)])
        peer.show(log_signer.name, fake.note)

        unsigned = Gossip(harness.worker, evidence_dir=harness.evidence_dir, timeout=2.0)
        result = await unsigned.run_round(peer.url)
        assert not result.forks and "inconclusive" in result.problems[0]  # 401: not a reader

        signed = Gossip(harness.worker, signer=signer, evidence_dir=harness.evidence_dir, timeout=2.0)
        assert (await signed.run_round(peer.url)).forks == [log_signer.name]
        assert harness.evidence(log_signer.name)[1].kind == "consistency"
    finally:
        await harness.close()
        await peer.stop()
        await node.stop()


# ------------------------------------------------------------------ whole nodes



def log_state(node: RunningNode):
    return node.node.db.follow.get_log(ORIGIN)


@pytest.mark.parametrize("size_b,public_read", [(100, True), (130, True), (130, False)])
async def test_equivocating_publisher_is_caught_by_both_followers(aiohttp_server, tmp_path, size_b, public_read, start_node):
    """With public_read=False the followers' /witness/seen is for registered readers:
    they gossip once each registered the other's request key."""
    histories = await HistoryServer().start(aiohttp_server)
    signer = Signer.generate(ORIGIN)
    vkey = signer.verifier_key()
    history_a = [submission(i) for i in range(100)]
    history_b = history_a[:40] + [submission(i, "md5") for i in range(40, size_b)]
    histories.histories["a"] = build_log(signer, history_a)
    histories.histories["b"] = build_log(signer, history_b)
    nodes = []
    try:
        for name, history in (("f1", "a"), ("f2", "b")):
            datadir = make_datadir(tmp_path, name=name, origin=f"{name}.example/node", public_read=public_read)
            assert cli_main(["follow", "add", "--dir", str(datadir.root), f"{histories.url}/{history}",
                             "--vkey", vkey]) == 0
            nodes.append(await start_node(datadir))
        f1, f2 = nodes
        await wait_for(lambda: log_state(f1).size == 100 and log_state(f2).size == size_b)
        assert not log_state(f1).forked and not log_state(f2).forked  # neither can tell alone

        # Each names the other as a peer, while running.
        for node, other in ((f1, f2), (f2, f1)):
            # in a thread: the command tells the running node, which answers from this loop
            assert await asyncio.to_thread(cli_main, ["follow", "peers", "add", "--dir", str(node.datadir.root),
                                                      other.public_url, "--interval", "1"]) == 0
        if not public_read:
            # Not yet readers of each other: the peers refuse (401), nothing is compared.
            def refused(node, other):
                [peer] = node.node.db.follow.list_gossip_peers()
                return peer.last_error is not None and "HTTP 401" in peer.last_error
            await wait_for(lambda: refused(f1, f2) and refused(f2, f1))
            assert not log_state(f1).forked and not log_state(f2).forked
            for node, other in ((f1, f2), (f2, f1)):
                assert cli_main(["readers", "add", "--dir", str(node.datadir.root),
                                 other.datadir.load_request_signer().verifier_key()]) == 0
        await wait_for(lambda: log_state(f1).forked and log_state(f2).forked)

        for node in nodes:
            [entry] = status_report(node.node.db)["logs"]
            assert entry["forked"] and entry["fork_source"].startswith("gossip ")
            path = entry["fork_evidence"]
            assert path and path.startswith(str(node.datadir.root / "evidence"))
            verified = verify_evidence(Path(path).read_bytes())
            assert {verified.smaller.size, verified.larger.size} == {100, size_b}
            assert verified.kind == ("same-size" if size_b == 100 else "consistency")
        code, out, _ = await cli("audit", "verify-evidence", nodes[0].node.db.execute(
            "SELECT evidence_path FROM follow_forks").fetchone()[0])
        assert code == 0, out
        code, out, _ = await cli("status", "--dir", str(f2.datadir.root))
        assert code == 3 and out.startswith("!!! FORK") and "Evidence: " in out
        assert cli_main(["follow", "peers", "list", "--dir", str(f1.datadir.root), "--json"]) == 0
    finally:
        for node in nodes:
            await node.stop()
