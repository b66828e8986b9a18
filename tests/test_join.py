"""`ncii-node invite` / `ncii-node join` (node/invitation.py, node/cli/invite.py): one
command on each side links a helpline and a platform (readers and follows, both
directions, keys pinned) or two platforms (readers and gossip); the bundle parser is
strict and bounded, wrong-kind keys are refused, and a refused join changes nothing."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json

import aiohttp
import pytest

from node.cli import main as cli_main
from node.invitation import MAX_BUNDLE, PREFIX, Invitation, InvitationError, parse
from node.store import follow as follow_store
from node.store import open_db
from publish_support import append, make_datadir, wait_for


def pdq_line(i: int) -> str:
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i + 1:064x}"})


def invite(capsys, datadir, *extra: str) -> str:
    capsys.readouterr()
    assert cli_main(["invite", "--dir", str(datadir.root), *extra]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(PREFIX)
    return out[0]


def join(capsys, datadir, bundle: str, expect: int = 0) -> str:
    capsys.readouterr()
    assert cli_main(["join", "--dir", str(datadir.root), bundle]) == expect
    captured = capsys.readouterr()
    return captured.out + captured.err


def readers(datadir) -> list[str]:
    db = open_db(datadir.db_path)
    try:
        return [r.vkey for r in db.readers.list_readers()]
    finally:
        db.close()


def followed(datadir) -> dict[str, follow_store.FollowedLog]:
    db = open_db(datadir.db_path)
    try:
        return {entry.origin: entry for entry in db.follow.list_logs()}
    finally:
        db.close()


async def test_a_helpline_and_a_platform_link_with_one_command_each(tmp_path, capsys, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log", public_read=False)
    config = platform.config
    config.node.role = "platform"
    platform.save_config(config)
    h = await start_node(helpline)
    p = None
    try:
        p = await start_node(platform)
        # The CLI runs off the event loop: it asks the running node (in this process) to reload.
        out = await asyncio.to_thread(join, capsys, platform,
                                      invite(capsys, helpline, "--url", h.public_url, "--name", "Helpline A"))
        assert "following helpline.example/log" in out and "registered helpline.example/log as a reader" in out
        back = next(line.split()[-1] for line in out.splitlines() if PREFIX in line)
        assert parse(back).url == "https://platform.example/log"  # the default; --url names the real one
        out = await asyncio.to_thread(join, capsys, helpline, invite(capsys, platform, "--url", p.public_url))
        assert "following platform.example/log" in out

        # Both directions, keys pinned, and each registered as the other's reader.
        assert followed(platform)["helpline.example/log"].vkey == helpline.load_log_signer().verifier_key()
        assert followed(platform)["helpline.example/log"].name == "Helpline A"
        assert followed(helpline)["platform.example/log"].vkey == platform.load_log_signer().verifier_key()
        assert platform.load_request_signer().verifier_key() in readers(helpline)
        assert helpline.load_request_signer().verifier_key() in readers(platform)

        # And it works: each restricted log is read by the other node.
        async with aiohttp.ClientSession() as session:
            assert (await append(session, h.admin_url, helpline.admin_token(), [pdq_line(1)]))[0] == 200
            assert (await append(session, p.admin_url, platform.admin_token(), [pdq_line(2)]))[0] == 200
        # (>= 1: each node also acknowledges in its own log what it applied of the other's.)
        assert await wait_for(lambda: followed(platform)["helpline.example/log"].size >= 1, timeout=30)
        assert await wait_for(lambda: followed(helpline)["platform.example/log"].size >= 1, timeout=30)

        # Joining again changes nothing and says so.
        out = await asyncio.to_thread(join, capsys, platform, invite(capsys, helpline, "--url", h.public_url))
        assert "already following" in out and "the running node took this into account" in out and len(readers(helpline)) == 1
    finally:
        if p is not None:
            await p.stop()
        await h.stop()


def test_two_platforms_become_readers_and_gossip_peers(tmp_path, capsys):
    one, two = (make_datadir(tmp_path, name=n, origin=f"{n}.example/log") for n in ("one", "two"))
    for datadir in (one, two):
        config = datadir.config
        config.node.role = "platform"
        datadir.save_config(config)
    join(capsys, two, invite(capsys, one, "--url", "http://127.0.0.5:8080"))
    assert readers(two) == [one.load_request_signer().verifier_key()]
    db = open_db(two.db_path)
    try:
        assert [peer.url for peer in db.follow.list_gossip_peers()] == ["http://127.0.0.5:8080"]
    finally:
        db.close()
    assert followed(two) == {}


def test_a_refused_join_changes_nothing(tmp_path, capsys):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log")
    other = make_datadir(tmp_path, name="other", origin="other.example/log")
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    config = platform.config
    config.node.role = "platform"
    platform.save_config(config)
    bundle = invite(capsys, helpline)
    # Two helplines have nothing to exchange; a node's own bundle is refused.
    assert "nothing to exchange" in join(capsys, other, bundle, expect=2)
    assert "own invitation" in join(capsys, platform, invite(capsys, platform), expect=2)
    # The same origin already followed with another key: refused, and no reader added either.
    assert cli_main(["follow", "add", "--dir", str(platform.root), "https://helpline.example/log", "--vkey",
                     other.load_log_signer().verifier_key(), "--origin", "helpline.example/log"]) == 0
    out = join(capsys, platform, bundle, expect=1)
    assert "already followed with another key" in out
    assert readers(platform) == [] and followed(platform)["helpline.example/log"].vkey != \
        helpline.load_log_signer().verifier_key()
    # A witness is not linked by invitation.
    config = other.config
    config.node.role = "witness"
    other.save_config(config)
    assert cli_main(["invite", "--dir", str(other.root)]) == 2


def _bundle(doc) -> str:
    return PREFIX + base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_the_bundle_parser_is_strict(tmp_path):
    datadir = make_datadir(tmp_path, name="helpline", origin="helpline.example/log")
    log_vkey = datadir.load_log_signer().verifier_key()
    request_vkey = datadir.load_request_signer().verifier_key()
    good = Invitation("https://helpline.example/log", "helpline.example/log", "helpline", "Helpline A",
                      log_vkey, request_vkey)
    assert parse(good.encode()) == good
    assert parse("  " + good.encode() + "\n") == good
    doc = dataclasses.asdict(good)

    def refused(text: str, words: str) -> None:
        with pytest.raises(InvitationError) as caught:
            parse(text)
        assert words in str(caught.value)

    # Wrong-kind keys: a request key where the log key belongs, and the reverse.
    refused(_bundle(doc | {"log_vkey": request_vkey}), "not a log verifier key")
    refused(_bundle(doc | {"request_vkey": log_vkey}), "not a request key")
    refused(_bundle(doc | {"log_vkey": log_vkey[:-2] + "AA"}), "not a log verifier key")
    refused(_bundle(doc | {"origin": "other.example/log"}), "not like its origin")
    refused(_bundle(doc | {"role": "witness"}), "role")
    refused(_bundle(doc | {"url": "https://helpline.example/log?x=1"}), "URL")
    refused(_bundle(doc | {"url": "ftp://helpline.example/log"}), "URL")
    refused(_bundle(doc | {"name": "two\nlines"}), "name")
    refused(_bundle(doc | {"name": "x" * 101}), "name")
    refused(_bundle(doc | {"name": 7}), "not text")
    refused(_bundle(doc | {"extra": "x"}), "unknown: extra")
    refused(_bundle({k: v for k, v in doc.items() if k != "role"}), "missing: role")
    refused(_bundle([doc]), "not an object")
    refused(good.encode()[:-7], "damaged")
    refused(good.encode() + "!", "damaged")
    refused(good.encode().replace(PREFIX, "ncii-invite-2."), "must start with")
    refused(PREFIX, "damaged")
    refused(PREFIX + "A" * MAX_BUNDLE, "at most")
    refused(_bundle(doc | {"name": "x" * 3000}), "at most")
