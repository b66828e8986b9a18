"""The signed federation membership list (node/federation/, `ncii-node federation`):
two helplines and a platform, real nodes on their own loopback addresses, join
through a list signed by the federation's key and served over HTTP by one of them;
what adds trust waits for approval; a removal unlinks; a bad signature, an unknown
key, a rollback, two lists of one serial, an oversized or malformed list are refused
and change nothing; the parser is strict."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import pytest

from node.cli import main as cli_main
from node.federation import PUBLISHED_LIST
from node.federation.members import (
    HEADER,
    MAX_LIST_BYTES,
    ListError,
    MemberList,
    changes,
    cosign_list,
    make_list,
    open_list,
    parse_text,
    sign_list,
)
from node.invitation import Invitation
from node.store import open_db
from protocol.note import Signer, add_signatures, parse_note, sign_note
from publish_support import append, make_datadir, pdq_line, wait_for

FEDERATION = "fed.example/federation"


def cli(capsys, *argv: str, expect: int = 0) -> str:
    capsys.readouterr()
    assert cli_main([str(a) for a in argv]) == expect, capsys.readouterr()
    captured = capsys.readouterr()
    return captured.out + captured.err


def invite(capsys, datadir, url: str) -> str:
    return cli(capsys, "invite", "--dir", datadir.root, "--url", url).strip().splitlines()[0]


def state(datadir) -> dict:
    """What the node set up: followed logs, readers, gossip peers, the list's serial."""
    db = open_db(datadir.db_path)
    try:
        subscription = db.federation.subscription()
        return {"following": {e.origin: e.vkey for e in db.follow.list_logs()},
                "readers": sorted(r.vkey for r in db.readers.list_readers()),
                "peers": sorted(p.url for p in db.follow.list_gossip_peers()),
                "serial": subscription.serial if subscription else None,
                "applied": sorted(db.federation.applied()),
                "error": subscription.last_error if subscription else None}
    finally:
        db.close()


def status(capsys, datadir) -> str:
    capsys.readouterr()
    cli_main(["status", "--dir", str(datadir.root)])  # its exit status is about the followed logs
    return capsys.readouterr().out


def pending_ids(capsys, datadir) -> list[str]:
    out = cli(capsys, "federation", "pending", "--dir", datadir.root)
    return [line.split()[0] for line in out.splitlines() if line.startswith("  ")]


class Coordinator:
    """The federation's list key holder, publishing through a node's GET /federation/list."""

    def __init__(self, tmp_path, capsys, publisher):
        self.tmp_path, self.capsys, self.publisher = tmp_path, capsys, publisher
        self.key = tmp_path / "list.key"
        self.vkey = cli(capsys, "federation", "key", "--name", FEDERATION, "--out", self.key).strip()

    def sign(self, serial: int, bundles: list[str], name: str | None = None) -> bytes:
        source = self.tmp_path / f"bundles-{serial}.txt"
        source.write_text("# the members\n" + "\n".join(bundles) + "\n")
        out = self.tmp_path / (name or f"list-{serial}")
        cli(self.capsys, "federation", "sign", "--federation", FEDERATION, "--serial", serial, "--key", self.key,
            "--out", out, source)
        return out.read_bytes()

    def publish(self, data: bytes) -> None:
        """A plain signed list, without its log (as before the log existed), unchecked."""
        (self.publisher.root / PUBLISHED_LIST).write_bytes(data)

    def publish_in_log(self, data: bytes) -> str:
        """`federation publish`: the version appended to the list log."""
        path = self.tmp_path / "to-publish"
        path.write_bytes(data)
        return cli(self.capsys, "federation", "publish", "--dir", self.publisher.root, "--key", self.key, path)


async def test_two_helplines_and_a_platform_join_through_a_signed_list(tmp_path, capsys, start_node):
    h1 = make_datadir(tmp_path, name="h1", origin="h1.example/log", public_read=False)
    h2 = make_datadir(tmp_path, name="h2", origin="h2.example/log", public_read=False)
    p = make_datadir(tmp_path, name="p", origin="p.example/log", public_read=False, role="platform")
    rh1 = await start_node(h1, host="127.0.0.2")
    rh2 = await start_node(h2, host="127.0.0.3")
    rp = await start_node(p, host="127.0.0.4")
    coordinator = Coordinator(tmp_path, capsys, h1)
    bundles = {d.root.name: invite(capsys, d, r.public_url) for d, r in ((h1, rh1), (h2, rh2), (p, rp))}
    list1 = coordinator.sign(1, list(bundles.values()))
    out = cli(capsys, "federation", "publish", "--dir", h1.root, "--key", coordinator.key, tmp_path / "list-1")
    assert "serial 1 (3 members)" in out and "now 1 version(s)" in out
    url = rh1.public_url + "/federation/list"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200 and await response.read() == list1

    # Each node follows the list: nothing that adds trust is done before approval.
    outs = {}
    for datadir in (h1, h2, p):
        outs[datadir.root.name] = await asyncio.to_thread(
            cli, capsys, "federation", "follow", "--dir", datadir.root, url, "--key", coordinator.vkey,
            "--interval", "1")
        assert state(datadir)["following"] == {} and state(datadir)["readers"] == []
        assert state(datadir)["serial"] == 1
    assert "2 change(s) wait" in outs["p"] and "add helpline h1.example/log" in outs["p"]
    assert "1 change(s) wait" in outs["h1"] and "add platform p.example/log" in outs["h1"]  # not h2: nothing to share
    assert "1 change(s) wait" in outs["h2"]
    shown = await asyncio.to_thread(status, capsys, p)
    assert "federation list fed.example/federation" in shown and "2 change(s) WAIT FOR YOUR APPROVAL" in shown

    # Approved: the platform follows both helplines, each helpline the platform; readers both ways.
    for datadir in (h1, h2, p):
        await asyncio.to_thread(cli, capsys, "federation", "approve", "--dir", datadir.root, "--all")
    keys = {d.root.name: (d.load_log_signer().verifier_key(), d.load_request_signer().verifier_key())
            for d in (h1, h2, p)}
    assert state(p)["following"] == {"h1.example/log": keys["h1"][0], "h2.example/log": keys["h2"][0]}
    assert state(p)["readers"] == sorted([keys["h1"][1], keys["h2"][1]])
    assert state(h1)["following"] == {"p.example/log": keys["p"][0]} and state(h1)["readers"] == [keys["p"][1]]
    assert pending_ids(capsys, p) == []

    # And it works: entries of both restricted helpline logs are verified by the platform.
    async with aiohttp.ClientSession() as session:
        for running, datadir, i in ((rh1, h1, 1), (rh2, h2, 2)):
            assert (await append(session, running.admin_url, datadir.admin_token(), [pdq_line(i)]))[0] == 200
    assert await wait_for(lambda: all(rp.node.follower.jobs[o].verified_size
                                      for o in ("h1.example/log", "h2.example/log")), timeout=30)

    # Serial 2 drops h2. The platform's running node fetches it by itself (interval 1 s);
    # the removal waits for approval, then stops following h2 and revokes its reader.
    coordinator.publish_in_log(coordinator.sign(2, [bundles["h1"], bundles["p"]]))
    assert await wait_for(lambda: state(p)["serial"] == 2, timeout=20)
    assert "h2.example/log" in state(p)["following"]
    [removal] = pending_ids(capsys, p)
    out = await asyncio.to_thread(cli, capsys, "federation", "approve", "--dir", p.root, removal)
    assert "no longer following h2.example/log" in out and "revoked the reader h2.example/log" in out
    assert list(state(p)["following"]) == ["h1.example/log"] and state(p)["readers"] == [keys["h1"][1]]
    assert await wait_for(lambda: "h2.example/log" not in rp.node.follower.jobs, timeout=10)

    # A node subscribed with --remove-at-once unlinks a dropped member at once (here
    # `update` or its running node's own fetch, whichever comes first).
    await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", h1.root, url, "--key",
                            coordinator.vkey, "--interval", "1", "--remove-at-once")
    coordinator.publish_in_log(coordinator.sign(3, [bundles["h1"]]))
    await asyncio.to_thread(cli, capsys, "federation", "update", "--dir", h1.root)
    assert state(h1)["serial"] == 3 and state(h1)["following"] == {} and state(h1)["readers"] == []
    assert await wait_for(lambda: "p.example/log" not in rh1.node.follower.jobs, timeout=10)


def _member(tmp_path, name: str, role: str = "helpline", url: str | None = None) -> tuple[Invitation, Signer]:
    datadir = make_datadir(tmp_path, name=name, origin=f"{name}.example/log", role=role)
    return Invitation(url or f"https://{name}.example/log", f"{name}.example/log", role, name.upper(),
                      datadir.load_log_signer().verifier_key(),
                      datadir.load_request_signer().verifier_key()), datadir


async def test_a_refused_list_changes_nothing(tmp_path, capsys, start_node):
    publisher = make_datadir(tmp_path, name="c", origin="c.example/log")
    running = await start_node(publisher, host="127.0.0.5")
    p = make_datadir(tmp_path, name="p", origin="p.example/log", role="platform")
    h1, _ = _member(tmp_path, "h1")
    h2, _ = _member(tmp_path, "h2")
    coordinator = Coordinator(tmp_path, capsys, publisher)
    key = Signer.from_key_file(coordinator.key.read_bytes())
    stranger = Signer.generate(FEDERATION)  # same name, another key
    url = running.public_url + "/federation/list"
    good = sign_list(make_list(FEDERATION, 5, [h1]), [key])
    coordinator.publish(good)

    # Not even subscribed when the first list is refused: unknown key.
    coordinator.publish(sign_list(make_list(FEDERATION, 5, [h1]), [stranger]))
    out = await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", p.root, url, "--key",
                                  coordinator.vkey, expect=1)
    assert "not signed by any known key" in out and "nothing changed" in out
    assert state(p)["serial"] is None
    coordinator.publish(good)
    await asyncio.to_thread(cli, capsys, "federation", "follow", "--dir", p.root, url, "--key", coordinator.vkey)
    before = state(p) | {"error": None}
    ids = pending_ids(capsys, p)
    assert len(ids) == 1

    text = make_list(FEDERATION, 6, [h1, h2]).text()
    signed = sign_list(make_list(FEDERATION, 6, [h1, h2]), [key])
    refusals = {
        "does not verify": signed.replace(b"serial 6", b"serial 7"),           # altered after signing
        "not signed by any known key": sign_note(text, [stranger]),           # unknown key
        "rollback refused": sign_list(make_list(FEDERATION, 4, [h1, h2]), [key]),
        "another list with the serial 5": sign_list(make_list(FEDERATION, 5, [h1, h2]), [key]),
        "is of the federation": sign_list(make_list("other.example/federation", 6, [h1, h2]), [key]),
        "larger than": b"x" * (MAX_LIST_BYTES + 17 * 1024),
        "first line must be": sign_note("members/v0\n" + text.split("\n", 1)[1], [key]),
        "sorted by origin": sign_note(text.replace("serial 6\n", "serial 6\n" + text.splitlines()[-1] + "\n"),
                                      [key]),
    }
    for words, data in refusals.items():
        coordinator.publish(data)
        out = await asyncio.to_thread(cli, capsys, "federation", "update", "--dir", p.root, expect=1)
        assert words in out and "nothing changed" in out, (words, out)
        after = state(p)
        assert after["error"] and words in after["error"]
        assert after | {"error": None} == before and pending_ids(capsys, p) == ids, words
        assert "REFUSED" in status(capsys, p)
    # The list served again: accepted once, then unchanged.
    coordinator.publish(signed)
    assert "accepted the list's serial 6" in await asyncio.to_thread(
        cli, capsys, "federation", "update", "--dir", p.root)
    assert "unchanged (serial 6)" in await asyncio.to_thread(cli, capsys, "federation", "update", "--dir", p.root)
    assert len(pending_ids(capsys, p)) == 2 and state(p)["error"] is None

    # Unfollowed: nothing is fetched or pending any more; what it set up stays.
    await asyncio.to_thread(cli, capsys, "federation", "approve", "--dir", p.root, "--all")
    assert "no longer following the federation list" in cli(capsys, "federation", "unfollow", "--dir", p.root)
    assert "following no federation list" in cli(capsys, "federation", "show", "--dir", p.root)
    assert set(state(p)["following"]) == {h1.origin, h2.origin} and pending_ids(capsys, p) == []
    cli(capsys, "federation", "unfollow", "--dir", p.root, expect=2)


def test_k_of_n_list_keys(tmp_path):
    h1, _ = _member(tmp_path, "h1")
    keys = [Signer.generate(f"{name}.example/federation-key") for name in ("a", "b", "c")]
    vkeys = [k.verifier_key() for k in keys]
    data = sign_list(make_list(FEDERATION, 1, [h1]), [keys[0]])
    with pytest.raises(ListError, match="signed by 1 of the federation's list keys; 2 are required"):
        open_list(data, vkeys, 2)
    data = cosign_list(data, keys[2])
    assert open_list(data, vkeys, 2).members == (h1,)
    # A signature line by a known key that does not verify refuses the list.
    other = parse_note(sign_note("another text\n", [keys[1]])).signatures[0].to_line()
    with pytest.raises(ListError, match="does not verify"):
        open_list(add_signatures(data, [other]), vkeys, 1)


def test_what_changes_and_what_waits(tmp_path):
    h1, _ = _member(tmp_path, "h1")
    h2, _ = _member(tmp_path, "h2")
    p, _ = _member(tmp_path, "p", role="platform")
    other_p, _ = _member(tmp_path, "q", role="platform")
    applied = {h1.origin: h1, h2.origin: h2}
    new_h1 = dataclasses.replace(h1, url="https://h1.example/v2")
    listed = make_list(FEDERATION, 2, [new_h1, dataclasses.replace(h2, name="H2 renamed"), p, other_p])
    found = {c.origin: c for c in changes(applied, listed, "platform", p.origin)}
    # Own entry ignored; another platform is a gossip peer to add.
    assert set(found) == {h1.origin, h2.origin, other_p.origin}
    assert found[h1.origin].kind == "update" and found[other_p.origin].kind == "add"
    from node.federation.subscription import automatic
    assert automatic(found[h1.origin], False) and not automatic(found[h2.origin], False)  # a name waits
    rekeyed = dataclasses.replace(h1, request_vkey=h2.request_vkey)
    [change] = changes({h1.origin: h1}, MemberList(FEDERATION, 3, (rekeyed,)), "platform", p.origin)
    assert change.kind == "key" and change.adds_trust() and "request key" in change.describe()
    # A helpline ignores the other helplines.
    assert [c.origin for c in changes({}, listed, "helpline", h1.origin)] == [p.origin, other_p.origin]


def test_the_list_parser_is_strict(tmp_path):
    h1, _ = _member(tmp_path, "h1")
    h2, _ = _member(tmp_path, "h2")
    good = make_list(FEDERATION, 3, [h2, h1])
    assert [m.origin for m in good.members] == [h1.origin, h2.origin]
    assert parse_text(good.text()) == good
    text = good.text()
    line = text.splitlines()[3]

    def refused(bad: str, words: str) -> None:
        with pytest.raises(ListError) as caught:
            parse_text(bad)
        assert words in str(caught.value), str(caught.value)

    refused(text.replace(HEADER, "ncii-node/federation-list/v2"), "first line")
    refused(text[:-1], "end with a newline")
    refused(text.replace("serial 3", "serial 03"), "serial")
    refused(text.replace("serial 3", "serial 1" + "0" * 18), "serial")
    refused(text.replace("serial 3", "serial  3"), "serial")
    refused(text.replace("federation fed", "federation  fed"), "federation")
    refused(text + line + "\n", "sorted by origin")
    refused(text + "\n", "member line")
    refused(text + "# comment\n", "member line")
    refused(text.replace(line, line.replace(" helpline ", " witness ")), "role")
    refused(text.replace(line, line.replace("https://h1", "ftp://h1")), "URL")
    refused(text.replace(line, line + " "), "white space")
    refused(text.replace(line, line.replace(h1.log_vkey, h1.request_vkey)), "not a log verifier key")
    refused(text.replace(line, line.replace(h1.request_vkey, h1.log_vkey)), "not a request key")
    refused(text.replace(line, line.replace("H1", "H\u00071")), "name")
    refused(text.replace(line, line + "x" * 2048), "longer than")
    refused(text.replace(h2.request_vkey, h1.request_vkey), "same request key")
    refused(HEADER + f"\nfederation {FEDERATION}\nserial 1\n" + "member x\n" * 1025, "at most 1024")


def test_a_new_url_is_applied_at_once_a_new_key_or_name_waits(tmp_path):
    from node.federation.subscription import Own, SubscriptionError, accept, decide, pending

    p = make_datadir(tmp_path, name="p", origin="p.example/log", role="platform")
    h1, h1_dir = _member(tmp_path, "h1")
    q, _ = _member(tmp_path, "q", role="platform")
    key = Signer.generate(FEDERATION)
    own = Own("platform", "p.example/log")
    db = open_db(p.db_path)
    try:
        db.federation.subscribe("https://coord.example/federation/list", [key.verifier_key()], 1, 300, False)
        outcome = accept(db, sign_list(make_list(FEDERATION, 1, [h1, q]), [key]), own)
        assert outcome.applied == [] and [c.kind for c in outcome.pending] == ["add", "add"]
        decide(db, own, None, True)
        assert db.follow.get_log(h1.origin).url == h1.url and db.follow.list_gossip_peers()[0].url == q.url

        # A new URL (h1 and the peer q): applied at once, the key still pinned.
        moved = dataclasses.replace(h1, url="https://h1-new.example/log")
        q_moved = dataclasses.replace(q, url="https://q-new.example/log")
        outcome = accept(db, sign_list(make_list(FEDERATION, 2, [moved, q_moved]), [key]), own)
        assert "following h1.example/log at https://h1-new.example/log now" in outcome.applied
        assert outcome.pending == []
        assert db.follow.get_log(h1.origin).url == moved.url and db.follow.get_log(h1.origin).vkey == h1.log_vkey
        assert [peer.url for peer in db.follow.list_gossip_peers()] == [q_moved.url]

        # A new name and a new request key: both wait; approved, the reader is swapped.
        other_request = make_datadir(tmp_path, name="h1b", origin="h1b.example/log").load_request_signer()
        renamed = dataclasses.replace(moved, name="Helpline One", request_vkey=other_request.verifier_key())
        outcome = accept(db, sign_list(make_list(FEDERATION, 3, [renamed, q_moved]), [key]), own)
        assert outcome.applied == [] and [c.kind for c in outcome.pending] == ["key"]
        assert db.readers.is_reader(h1.request_vkey) and db.follow.get_log(h1.origin).name == "H1"
        decide(db, own, None, True)
        assert not db.readers.is_reader(h1.request_vkey) and db.readers.is_reader(renamed.request_vkey)
        assert db.follow.get_log(h1.origin).name == "Helpline One"

        # A new log key: waits; rejected, it is not shown again; the pinned key is unchanged.
        rekeyed = dataclasses.replace(renamed, log_vkey=Signer.generate(h1.origin).verifier_key())
        accept(db, sign_list(make_list(FEDERATION, 4, [rekeyed, q_moved]), [key]), own)
        [change] = pending(db, own)
        assert change.kind == "key" and "log key" in change.describe()
        decide(db, own, [change.id], False)
        assert pending(db, own) == [] and db.follow.get_log(h1.origin).vkey == h1.log_vkey

        # An origin the operator follows with another key: approving its addition is refused, nothing written.
        h2, _ = _member(tmp_path, "h2")
        db.follow.add_log(h2.origin, h2.url, Signer.generate(h2.origin).verifier_key(), "mine")
        accept(db, sign_list(make_list(FEDERATION, 5, [rekeyed, h2, q_moved]), [key]), own)
        [add] = [c for c in pending(db, own) if c.kind == "add"]
        [line] = decide(db, own, [add.id], True)
        assert line.startswith("NOT applied") and "already followed with another key" in line
        assert not db.readers.is_reader(h2.request_vkey) and add in pending(db, own)
        with pytest.raises(SubscriptionError, match="no pending change"):
            decide(db, own, ["0123456789"], True)
    finally:
        db.close()


def test_k_of_n_with_the_commands(tmp_path, capsys):
    h1 = make_datadir(tmp_path, name="h1", origin="h1.example/log")
    keys = [tmp_path / "a.key", tmp_path / "b.key"]
    vkeys = [cli(capsys, "federation", "key", "--name", f"{k.stem}.example/federation", "--out", k).strip()
             for k in keys]
    cli(capsys, "federation", "key", "--name", "x.example/federation", "--out", keys[0], expect=2)  # not overwritten
    (tmp_path / "bundles.txt").write_text(invite(capsys, h1, "https://h1.example/log") + "\n")
    cli(capsys, "federation", "sign", "--federation", FEDERATION, "--serial", "1", "--key", keys[0],
        "--out", tmp_path / "list", tmp_path / "bundles.txt")
    with pytest.raises(ListError, match="2 are required"):
        open_list((tmp_path / "list").read_bytes(), vkeys, 2)
    cli(capsys, "federation", "cosign", "--key", keys[1], tmp_path / "list")
    assert [m.origin for m in open_list((tmp_path / "list").read_bytes(), vkeys, 2).members] == [h1.root.name +
                                                                                                ".example/log"]
    # A bad bundle line is refused with its line number, and nothing is written.
    (tmp_path / "bad.txt").write_text("# members\nncii-invite-1.AAAA\n")
    out = cli(capsys, "federation", "sign", "--federation", FEDERATION, "--serial", "2", "--key", keys[0],
              "--out", tmp_path / "list2", tmp_path / "bad.txt", expect=2)
    assert "line 2" in out and not (tmp_path / "list2").exists()
