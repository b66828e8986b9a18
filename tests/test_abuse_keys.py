"""Issue 12, point 8: a request key and a log verifier key cannot be mistaken for each
other. Each command refuses the wrong kind, saying what it was given and what it
expects; readers registered in the old (0x01) form keep reading after the upgrade."""

from __future__ import annotations

import aiohttp

from node.cli import main as cli_main
from node.datadir import DataDir
from node.readaccess import RequestSigner
from node.store import log as log_store
from node.store import open_db
from node.web.app import RunningNode
from protocol.note import SIGNATURE_TYPE_ED25519, encode_vkey
from publish_support import make_datadir


def _keys(capsys, datadir: DataDir) -> tuple[str, str]:
    assert cli_main(["key", "--dir", str(datadir.root)]) == 0
    log_vkey = capsys.readouterr().out.strip()
    assert cli_main(["key", "--dir", str(datadir.root), "--request"]) == 0
    request_vkey = capsys.readouterr().out.strip()
    return log_vkey, request_vkey


def test_readers_add_refuses_a_log_key_and_follow_add_a_request_key(tmp_path, capsys):
    helpline = make_datadir(tmp_path, public_read=False, name="helpline", origin="helpline.example/log")
    platform = make_datadir(tmp_path, public_read=False, name="platform", origin="platform.example/log")
    capsys.readouterr()
    log_vkey, request_vkey = _keys(capsys, platform)
    assert log_vkey != request_vkey and log_vkey.split("+")[0] == request_vkey.split("+")[0]

    # The operator pastes the platform's log key where its request key belongs ...
    assert cli_main(["readers", "add", "--dir", str(helpline.root), log_vkey]) == 1
    err = capsys.readouterr().err
    assert "given is a log verifier key" in err and "not a read-request key" in err
    assert "ncii-node key --dir DIR --request" in err
    with open_db(helpline.db_path) as db:
        assert log_store.list_readers(db) == []

    # ... and its request key where its log key belongs.
    assert cli_main(["follow", "add", "--dir", str(helpline.root), "http://127.0.0.1:9",
                     "--vkey", request_vkey]) == 2
    err = capsys.readouterr().err
    assert "given is a read-request key" in err and "not a log verifier key" in err
    assert "without --request" in err

    # The right ones are taken.
    assert cli_main(["readers", "add", "--dir", str(helpline.root), request_vkey]) == 0
    assert cli_main(["follow", "add", "--dir", str(helpline.root), "http://127.0.0.1:9", "--vkey", log_vkey]) == 0


async def test_a_reader_registered_in_the_old_form_still_reads_after_the_upgrade(tmp_path):
    helpline = make_datadir(tmp_path, public_read=False, name="helpline", origin="helpline.example/log")
    platform = make_datadir(tmp_path, public_read=False, name="platform", origin="platform.example/log")
    key = platform.load_request_signer()
    signer = key.signer()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.from_private_bytes(key.seed).public_key().public_bytes_raw()
    old_form = encode_vkey(key.name, SIGNATURE_TYPE_ED25519, public)
    db = open_db(helpline.db_path)
    try:
        db.execute("INSERT INTO readers (vkey, name, key_id, added_at) VALUES (?, 'platform', 'x', 0)", (old_form,))
        db.execute("UPDATE schema_versions SET version = 1 WHERE area = 'log'")
        db.conn.commit()
    finally:
        db.close()
    with open_db(helpline.db_path) as db:  # the upgrade's first open migrates
        assert [r.vkey for r in log_store.list_readers(db)] == [key.verifier_key()]

    node = await RunningNode(helpline).start(port=0)
    try:
        url = node.public_url + "/tile/0/000.p/1"
        async with aiohttp.ClientSession(middlewares=(signer.client_middleware(node.public_url),)) as session:
            async with session.get(url) as r:
                assert r.status == 404  # authorised: an empty log simply has no such tile
        stranger = RequestSigner.from_seed(key.name, bytes(32))
        async with aiohttp.ClientSession(middlewares=(stranger.client_middleware(node.public_url),)) as session:
            async with session.get(url) as r:
                assert r.status in (401, 403)
    finally:
        await node.stop()
