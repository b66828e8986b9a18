"""The federation list as an append-only log (node/federation/listlog.py, publish.py,
logfollow.py, compare.py; spec/parts/joining.md §3.3), with real nodes over HTTP:
versions followed through the log; a rollback, a version not in the log, bad tiles,
bundles and signatures refused with nothing changed; a coordinator serving a forked
history to one node detected, the evidence kept; a split view between two nodes
caught by their gossip; a plain list converted to a log."""

from __future__ import annotations

import asyncio
import json
import shutil

import aiohttp
import pytest

from node.federation.listlog import (
    Version,
    check_history,
    open_list_checkpoint,
    parse_entry,
    sign_list_checkpoint,
    version_entry,
)
from node.federation.members import ListError, make_list, sign_list
from node.federation.publish import LOG_DIR, PublishError, publish
from node.store import open_db
from protocol.evidence import verify_evidence
from protocol.note import Signer, sign_note
from publish_support import make_datadir
from test_federation import FEDERATION, Coordinator, _member, cli, status


def log_state(datadir) -> dict:
    db = open_db(datadir.db_path)
    try:
        s = db.federation.subscription()
        return {"serial": s.serial, "checkpoint": s.checkpoint, "fork": s.fork, "error": s.last_error,
                "evidence": db.witness.list_evidence(), "versions": db.federation.versions()}
    finally:
        db.close()


def unchanged(before: dict, after: dict) -> bool:
    keep = ("serial", "checkpoint", "fork", "versions")
    return {k: before[k] for k in keep} == {k: after[k] for k in keep}


async def update(capsys, datadir, expect: int = 0) -> str:
    return await asyncio.to_thread(cli, capsys, "federation", "update", "--dir", datadir.root, expect=expect)


async def test_versions_followed_through_the_log_and_every_bad_answer_refused(tmp_path, capsys, start_node):
    c = make_datadir(tmp_path, name="c", origin="c.example/log")
    running = await start_node(c, host="127.0.0.21")
    p = make_datadir(tmp_path, name="p", origin="p.example/log", role="platform")
    members = [_member(tmp_path, f"h{i}")[0] for i in range(1, 6)]
    coordinator = Coordinator(tmp_path, capsys, c)
    key = Signer.from_key_file(coordinator.key.read_bytes())
    lists = {n: sign_list(make_list(FEDERATION, n, members[:n]), [key]) for n in range(1, 6)}
    url = running.public_url + "/federation/list"

    assert "now 1 version(s)" in coordinator.publish_in_log(lists[1])
    await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", p.root, url, "--key", coordinator.vkey)
    assert "through its append-only log: 1 version(s)" in status(capsys, p)
    assert "now 2 version(s)" in coordinator.publish_in_log(lists[2])
    assert "accepted the list's serial 2" in await update(capsys, p)
    assert "unchanged (serial 2)" in await update(capsys, p)
    snapshot = tmp_path / "log-at-2"
    shutil.copytree(c.root / LOG_DIR, snapshot)
    coordinator.publish_in_log(lists[3])
    assert "accepted the list's serial 3" in await update(capsys, p)
    s3 = log_state(p)
    assert [v[0] for v in s3["versions"]] == [1, 2, 3] and b"\n3\n" in s3["checkpoint"]

    # The log's files are public C2SP tlog-tiles, served under /federation/.
    async with aiohttp.ClientSession() as session:
        for path, status_code in (("checkpoint", 200), ("tile/0/000.p/3", 200), ("tile/entries/000.p/3", 200),
                                  ("version/3", 200), ("tile/0/000.p/4", 404), ("version/9", 404),
                                  ("version/03", 404), ("tile/0/../000", 404)):
            async with session.get(f"{running.public_url}/federation/{path}") as response:
                assert response.status == status_code, path
                if path == "version/3":
                    assert await response.read() == lists[3]

    # Rollback: the checkpoint of size 2 served again (validly signed, consistent).
    log_dir = c.root / LOG_DIR
    current = (log_dir / "checkpoint").read_bytes()
    (log_dir / "checkpoint").write_bytes((snapshot / "checkpoint").read_bytes())
    out = await update(capsys, p, expect=1)
    assert "rollback refused" in out and "nothing changed" in out
    assert unchanged(s3, log_state(p)) and "REFUSED" in status(capsys, p)
    (log_dir / "checkpoint").write_bytes(current)

    # Version 4 published, then each of its parts spoiled in turn: refused, nothing changed.
    coordinator.publish_in_log(lists[4])
    other_4 = sign_list(make_list(FEDERATION, 4, members[1:4]), [key])  # validly signed, not in the log
    stranger = Signer.generate(FEDERATION)
    good_cp = (log_dir / "checkpoint").read_bytes()
    cp_text = good_cp.split(b"\n\n")[0].decode() + "\n"
    spoilers = {
        "tiles give root": ("tile/0/000.p/4", lambda b: b[:-1] + bytes([b[-1] ^ 1])),
        "does not match its leaf hash": ("tile/entries/000.p/4", lambda b: b.replace(b"serial 4", b"serial 7")),
        "is not the one the list's log holds": ("version/4", lambda b: other_4),
        "not signed by any known key": ("checkpoint", lambda b: sign_note(cp_text, [stranger])),
        "does not verify": ("checkpoint", lambda b: b.replace(b"\n4\n", b"\n5\n")),
        "HTTP 404": ("tile/entries/000.p/4", None),
    }
    for words, (path, spoil) in spoilers.items():
        target = log_dir / path
        original = target.read_bytes()
        if spoil is None:
            target.unlink()
        else:
            target.write_bytes(spoil(original))
        out = await update(capsys, p, expect=1)
        assert words in out and "nothing changed" in out, (words, out)
        assert unchanged(s3, log_state(p)) and words in log_state(p)["error"], words
        target.write_bytes(original)
    assert "accepted the list's serial 4" in await update(capsys, p)
    s4 = log_state(p)

    # The coordinator shows this node another history: size 5 whose first 4 versions are
    # not the ones it accepted. A fork: both checkpoints and the evidence are kept, and
    # nothing is accepted from the list any more, not even its true history.
    forked_root = tmp_path / "forked"
    forked_root.mkdir()
    shutil.copytree(snapshot, forked_root / LOG_DIR)
    for data in (sign_list(make_list(FEDERATION, 3, members[2:4]), [key]), lists[4], lists[5]):
        publish(forked_root, data, [key])
    shutil.move(log_dir, tmp_path / "true-log")
    shutil.copytree(forked_root / LOG_DIR, log_dir)
    out = await update(capsys, p, expect=1)
    assert "FORKED" in out and "does not extend the tree of size 4" in out
    after = log_state(p)
    assert after["serial"] == 4 and after["checkpoint"] == s4["checkpoint"] and after["fork"]
    evidence_path = after["fork"]["evidence_path"]
    verified = verify_evidence(open(evidence_path, "rb").read())
    assert (verified.smaller.size, verified.larger.size) == (4, 5) and verified.origin == FEDERATION
    assert len(after["evidence"]) == 1  # shared at GET /witness/evidence
    assert "FORKED" in status(capsys, p)
    from node.cli import main as cli_main
    assert cli_main(["status", "--dir", str(p.root)]) == 3  # monitoring sees it as a fork
    shutil.rmtree(log_dir)
    shutil.move(tmp_path / "true-log", log_dir)
    out = await update(capsys, p, expect=1)
    assert "FORKED" in out and log_state(p)["serial"] == 4

    # The log gone once followed: a plain list is not taken instead.
    q = make_datadir(tmp_path, name="q", origin="q.example/log", role="platform")
    await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", q.root, url, "--key", coordinator.vkey)
    (log_dir / "checkpoint").unlink()
    out = await update(capsys, q, expect=1)
    assert "the list's log is gone" in out and log_state(q)["serial"] == 4


async def test_a_plain_list_converted_to_a_log_then_a_split_view_caught_by_gossip(tmp_path, capsys, start_node):
    """Two platforms follow the list; the coordinator serves each its own history from
    two addresses. Each alone sees a consistent log; their gossip finds the split."""
    ca = make_datadir(tmp_path, name="ca", origin="ca.example/log")
    cb = make_datadir(tmp_path, name="cb", origin="cb.example/log")
    p1 = make_datadir(tmp_path, name="p1", origin="p1.example/log", role="platform")
    p2 = make_datadir(tmp_path, name="p2", origin="p2.example/log", role="platform")
    rca = await start_node(ca, host="127.0.0.22")
    rcb = await start_node(cb, host="127.0.0.23")
    rp1 = await start_node(p1, host="127.0.0.24")
    rp2 = await start_node(p2, host="127.0.0.25")
    members = [_member(tmp_path, f"h{i}")[0] for i in range(1, 4)]
    coordinator = Coordinator(tmp_path, capsys, ca)
    key = Signer.from_key_file(coordinator.key.read_bytes())

    # Migration: a plain list (as before the log existed) is followed, then the same
    # version is published in the log: the followers take its checkpoint on, unchanged.
    list1 = sign_list(make_list(FEDERATION, 1, members[:1]), [key])
    for datadir, publisher, running in ((p1, ca, rca), (p2, cb, rcb)):
        (publisher.root / "federation-list").write_bytes(list1)  # a plain list, as before the log
        await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", datadir.root,
                                running.public_url + "/federation/list", "--key", coordinator.vkey)
        assert "a plain signed list, without a log" in status(capsys, datadir)
    for root in (ca.root, cb.root):
        publish(root, list1, [key])
    for datadir in (p1, p2):
        assert "unchanged (serial 1)" in await update(capsys, datadir)
        assert log_state(datadir)["checkpoint"] is not None
        assert "through its append-only log: 1 version(s)" in status(capsys, datadir)

    # The split: serial 2 with h2 for p1, serial 2 with h3 for p2.
    publish(ca.root, sign_list(make_list(FEDERATION, 2, members[:2]), [key]), [key])
    publish(cb.root, sign_list(make_list(FEDERATION, 2, [members[0], members[2]]), [key]), [key])
    for datadir in (p1, p2):
        assert "accepted the list's serial 2" in await update(capsys, datadir)

    # The platforms compare views (join: readers both ways, gossip peers).
    bundle2 = cli(capsys, "invite", "--dir", p2.root, "--url", rp2.public_url).splitlines()[0]
    await asyncio.to_thread(cli, capsys, "join", "--dir", p1.root, bundle2)  # the node answers meanwhile
    bundle1 = cli(capsys, "invite", "--dir", p1.root, "--url", rp1.public_url).splitlines()[0]
    await asyncio.to_thread(cli, capsys, "join", "--dir", p2.root, bundle1)
    result = await rp1.node.gossip.gossip.run_round(rp2.public_url)
    assert result.forks == ["federation list"], result
    fork = log_state(p1)["fork"]
    assert fork and "another root" in fork["reason"] and fork["evidence_path"]
    assert verify_evidence(open(fork["evidence_path"], "rb").read()).origin == FEDERATION
    async with aiohttp.ClientSession() as session:  # what p1 tells its peers it has seen
        async with session.get(rp1.public_url + "/witness/seen") as response:
            seen = json.loads(await response.read())
    assert FEDERATION in [c["origin"] for c in seen["checkpoints"]]
    out = await update(capsys, p1, expect=1)
    assert "FORKED" in out


async def test_a_larger_tree_seen_by_a_peer_is_compared_with_the_tiles_we_are_served(tmp_path, capsys, start_node):
    """p2 has seen size 3 of history B; p1 holds size 2 of history A. p1 cannot get B's
    tiles (inconclusive); p2 compares p1's size 2 with its own tree of size 3: fork; then
    p1 takes p2's evidence."""
    ca = make_datadir(tmp_path, name="ca", origin="ca.example/log")
    cb = make_datadir(tmp_path, name="cb", origin="cb.example/log")
    p1 = make_datadir(tmp_path, name="p1", origin="p1.example/log", role="platform")
    p2 = make_datadir(tmp_path, name="p2", origin="p2.example/log", role="platform")
    rca, rcb = await start_node(ca, host="127.0.0.26"), await start_node(cb, host="127.0.0.27")
    rp1, rp2 = await start_node(p1, host="127.0.0.28"), await start_node(p2, host="127.0.0.29")
    members = [_member(tmp_path, f"h{i}")[0] for i in range(1, 4)]
    coordinator = Coordinator(tmp_path, capsys, ca)
    key = Signer.from_key_file(coordinator.key.read_bytes())
    for root in (ca.root, cb.root):
        publish(root, sign_list(make_list(FEDERATION, 1, members[:1]), [key]), [key])
    publish(ca.root, sign_list(make_list(FEDERATION, 2, members[:2]), [key]), [key])
    publish(cb.root, sign_list(make_list(FEDERATION, 2, [members[0], members[2]]), [key]), [key])
    publish(cb.root, sign_list(make_list(FEDERATION, 3, members), [key]), [key])
    for datadir, running in ((p1, rca), (p2, rcb)):
        await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", datadir.root,
                                running.public_url + "/federation/list", "--key", coordinator.vkey)
    for a, b, rb in ((p1, p2, rp2), (p2, p1, rp1)):
        bundle = cli(capsys, "invite", "--dir", b.root, "--url", rb.public_url).splitlines()[0]
        await asyncio.to_thread(cli, capsys, "join", "--dir", a.root, bundle)  # the node answers meanwhile
    result = await rp1.node.gossip.gossip.run_round(rp2.public_url)
    assert result.forks == [] and any("inconclusive" in p for p in result.problems), result
    assert log_state(p1)["fork"] is None
    result = await rp2.node.gossip.gossip.run_round(rp1.public_url)
    assert result.forks == ["federation list"], result
    assert "inconsistent with ours of size 3" in log_state(p2)["fork"]["reason"]
    # p2 shares the evidence (GET /witness/evidence): p1's next round takes it, as its own.
    result = await rp1.node.gossip.gossip.run_round(rp2.public_url)
    assert result.forks == ["federation list"], result
    fork = log_state(p1)["fork"]
    assert "holds evidence" in fork["reason"] and fork["evidence_path"]
    assert verify_evidence(open(fork["evidence_path"], "rb").read()).origin == FEDERATION


def test_the_version_entry_and_the_log_rules(tmp_path):
    h1, _ = _member(tmp_path, "h1")
    key = Signer.generate(FEDERATION)
    entry = version_entry(make_list(FEDERATION, 7, [h1]))
    assert parse_entry(entry.to_bytes(), 0) == entry
    for bad in (entry.to_bytes() + b"\n", entry.to_bytes().replace(b"serial 7", b"serial 07"),
                entry.to_bytes().upper(), entry.to_bytes()[:-1], b"\xff", b""):
        with pytest.raises(ListError, match="entry 3 of the list's log"):
            parse_entry(bad, 3)
    v = lambda fed, serial: Version(fed, serial, "0" * 64)  # noqa: E731
    check_history([v(FEDERATION, 1), v(FEDERATION, 5)], FEDERATION)
    with pytest.raises(ListError, match="not higher"):
        check_history([v(FEDERATION, 5), v(FEDERATION, 5)], FEDERATION)
    with pytest.raises(ListError, match="of the federation"):
        check_history([v(FEDERATION, 1), v("other.example/f", 2)], None)
    # k of n checkpoints: two keys named as their holders like, the origin the federation's.
    a, b = Signer.generate("a.example/key"), Signer.generate("b.example/key")
    note = sign_list_checkpoint(FEDERATION, 1, bytes(32), [a])
    with pytest.raises(ListError, match="signed by 1 of the federation's list keys; 2 are required"):
        open_list_checkpoint(note, [a.verifier_key(), b.verifier_key()], 2, FEDERATION)
    both = sign_list_checkpoint(FEDERATION, 1, bytes(32), [a, b])
    assert open_list_checkpoint(both, [a.verifier_key(), b.verifier_key()], 2, FEDERATION).size == 1
    with pytest.raises(ListError, match="expected"):
        open_list_checkpoint(both, [a.verifier_key()], 1, "other.example/federation")
    with pytest.raises(ListError, match="1 to"):
        open_list_checkpoint(sign_list_checkpoint(FEDERATION, 0, bytes(32), [key]), [key.verifier_key()], 1, None)

    # The publisher: a lower serial, another federation refused; the same version again
    # with another key adds its signature (k of n).
    root = tmp_path / "pub"
    root.mkdir()
    publish(root, sign_list(make_list(FEDERATION, 2, [h1]), [a]), [a])
    for data, words in ((sign_list(make_list(FEDERATION, 1, [h1]), [a]), "not higher"),
                        (sign_list(make_list("other.example/f", 3, [h1]), [a]), "of the federation")):
        with pytest.raises(PublishError, match=words):
            publish(root, data, [a])
    _, size, new = publish(root, sign_list(make_list(FEDERATION, 2, [h1]), [a]), [b])
    assert (size, new) == (1, False)
    checkpoint = (root / LOG_DIR / "checkpoint").read_bytes()
    assert open_list_checkpoint(checkpoint, [a.verifier_key(), b.verifier_key()], 2, FEDERATION).size == 1


async def test_the_list_checkpoint_cosigned_by_the_federation_witness(tmp_path, capsys, start_node):
    """`federation publish` asks the publishing node's witnesses (`witness use`) to
    cosign; a follower given `--witness` refuses a checkpoint without the cosignature."""
    from node.witness.keys import load_witness_signer

    c = make_datadir(tmp_path, name="c", origin="c.example/log")
    w = make_datadir(tmp_path, name="w", origin="w.example/witness")
    config = w.config
    config.node.role = "witness"
    w.save_config(config)
    p = make_datadir(tmp_path, name="p", origin="p.example/log", role="platform")
    coordinator = Coordinator(tmp_path, capsys, c)
    key = Signer.from_key_file(coordinator.key.read_bytes())
    cli(capsys, "witness", "logs", "add", "--dir", w.root, FEDERATION, coordinator.vkey)
    rw = await start_node(w, host="127.0.0.30")
    running = await start_node(c, host="127.0.0.31")
    wvkey = load_witness_signer(w).verifier_key()
    cli(capsys, "witness", "use", "--dir", c.root, wvkey, rw.public_url)
    members = [_member(tmp_path, f"h{i}")[0] for i in range(1, 4)]
    lists = {n: sign_list(make_list(FEDERATION, n, members[:n]), [key]) for n in range(1, 4)}

    out = await asyncio.to_thread(coordinator.publish_in_log, lists[1])
    assert "cosigned by the witness" in out
    url = running.public_url + "/federation/list"
    out = await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", p.root, url, "--key",
                                  coordinator.vkey, "--witness", wvkey)
    assert "accepted the list's serial 1" in out
    assert "cosigned by 1 of 1 of the federation's witnesses" in status(capsys, p)
    out = await asyncio.to_thread(coordinator.publish_in_log, lists[2])  # old size 1: a consistency proof
    assert "cosigned by the witness" in out
    assert "accepted the list's serial 2" in await update(capsys, p)

    # Published without the witness (down: else the running node would have it cosign
    # in the background, test_federation_listwitness.py): refused until it has cosigned.
    port = int(rw.public_url.rpartition(":")[2])
    await rw.stop()
    path = tmp_path / "list-3"
    path.write_bytes(lists[3])
    out = await asyncio.to_thread(cli, capsys, "federation", "publish", "--dir", c.root, "--key", coordinator.key,
                                  "--no-witness", path)
    assert "asks the witnesses again in the background" in out
    out = await update(capsys, p, expect=1)
    assert "not cosigned as required" in out and log_state(p)["serial"] == 2
    await start_node(w, host="127.0.0.30", port=port)
    out = await asyncio.to_thread(coordinator.publish_in_log, lists[3])  # the same version again: cosigned now
    assert "already the newest version" in out and "cosigned by the witness" in out
    assert "accepted the list's serial 3" in await update(capsys, p)


def test_a_publication_interrupted_before_its_checkpoint_can_be_replaced(tmp_path, monkeypatch):
    """Tiles written, checkpoint not (a crash): another version may still be published,
    and the log stays one verifiable history."""
    import node.federation.publish as publish_mod
    from node.federation.listlog import read_entries
    from node.federation.publish import log_store, published_entries
    from protocol.checkpoint import Checkpoint
    from protocol.note import parse_note
    from protocol.tiles import verify_tiles, tiles_for_size, bundles_for_size

    h1, _ = _member(tmp_path, "h1")
    h2, _ = _member(tmp_path, "h2")
    key = Signer.generate(FEDERATION)
    root = tmp_path / "pub"
    root.mkdir()
    publish(root, sign_list(make_list(FEDERATION, 1, [h1]), [key]), [key])

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(publish_mod, "write_atomic", crash)
    with pytest.raises(OSError):
        publish(root, sign_list(make_list(FEDERATION, 2, [h1]), [key]), [key])
    monkeypatch.undo()
    store = log_store(root)
    assert store.read("tile/entries/000.p/2") is not None and len(published_entries(store)) == 1
    publish(root, sign_list(make_list(FEDERATION, 2, [h1, h2]), [key]), [key])
    cp = Checkpoint.parse(parse_note(store.read("checkpoint")).text)
    tiles = {t: store.read(t.path()) for t in tiles_for_size(cp.size)}
    verify_tiles(cp.size, cp.root_hash, tiles)
    entries = read_entries(cp.size, tiles, {b: store.read(b.path()) for b in bundles_for_size(cp.size)})
    assert parse_entry(entries[1], 1) == version_entry(make_list(FEDERATION, 2, [h1, h2]))
