"""A real node on 127.0.0.1 free ports: append over the admin endpoint, read the log
back over HTTP, verify it with protocol/ (signature, every tile, every entry)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from node.cli import main as cli_main
from node.readaccess import parse_request_vkey
from node.web.app import RunningNode
from protocol.checkpoint import open_checkpoint
from protocol.entries import decode_entry, encode_entry, entry_from_json
from protocol.merkle import consistency_proof, leaf_hash, verify_consistency
from protocol.note import Verifier
from protocol.tiles import TileNodes, bundles_for_size, tiles_for_size

from publish_support import ORIGIN, append, fetch, log_signed, make_datadir, pdq_line, read_log, tile_files


@pytest.fixture
async def node(tmp_path):
    datadir = make_datadir(tmp_path)
    running = await RunningNode(datadir).start("127.0.0.1", 0)
    yield running
    await running.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_append_then_read_back_and_verify_everything(node, session):
    token = node.datadir.admin_token()
    vkey = (await (await session.get(node.public_url + "/node.json")).json())["verifier_key"]
    assert vkey == node.datadir.load_log_signer().verifier_key()

    empty = await read_log(session, node.public_url, vkey)
    assert empty.checkpoint.size == 0

    acked: dict[int, str] = {}
    seen = [empty]
    # Sizes chosen to cross tile boundaries (256) and leave partial tiles at two levels.
    for count in (1, 2, 253, 300, 1, 70):
        start = len(acked)
        lines = [pdq_line(start + i) for i in range(count)]
        status, results = await append(session, node.admin_url, token, lines)
        assert status == 200, results
        assert len(results) == count
        for line, result in zip(lines, results):
            expected = leaf_hash(encode_entry(entry_from_json(json.loads(line))))
            assert result["leaf_hash"] == expected.hex()
            assert result["checkpoint_size"] >= result["index"] + 1
            acked[result["index"]] = result["leaf_hash"]
        view = await read_log(session, node.public_url, vkey)
        # Acknowledged means: in a checkpoint that is already being served.
        assert view.checkpoint.size >= max(r["checkpoint_size"] for r in results)
        seen.append(view)

    final = seen[-1]
    assert sorted(acked) == list(range(final.checkpoint.size))
    for index, entry in enumerate(final.entries):
        assert leaf_hash(entry).hex() == acked[index]
        assert decode_entry(entry).signal == "pdq"
    # Every earlier checkpoint is consistent with the last one (proof from the last one's tiles).
    nodes = TileNodes(final.checkpoint.size, final.tiles)
    for old in seen[:-1]:
        if old.checkpoint.size == 0:
            continue
        proof = consistency_proof(old.checkpoint.size, final.checkpoint.size, nodes)
        verify_consistency(old.checkpoint.size, final.checkpoint.size, proof,
                           old.checkpoint.root_hash, final.checkpoint.root_hash)
        # And the tiles a client fetched earlier are still byte-identical.
        for tile, data in old.tiles.items():
            assert await fetch(session, f"{node.public_url}/{tile.path()}") == data

    # The tiles directory holds exactly the tiles and bundles of the published sizes.
    files = tile_files(node.datadir)
    expected = {"checkpoint"}
    for view in seen:
        expected |= {t.path() for t in tiles_for_size(view.checkpoint.size)}
        expected |= {b.path() for b in bundles_for_size(view.checkpoint.size)}
    assert set(files) == expected
    assert files["checkpoint"] == log_signed(final.note)


async def test_headers_and_not_found(node, session):
    token = node.datadir.admin_token()
    status, _ = await append(session, node.admin_url, token, [pdq_line(i) for i in range(3)])
    assert status == 200
    async with session.get(node.public_url + "/checkpoint") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["Cache-Control"] == "public, max-age=1"
    async with session.get(node.public_url + "/tile/0/000.p/3") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert "immutable" in r.headers["Cache-Control"]
    async with session.get(node.public_url + "/tile/entries/000.p/3",
                           headers={"Accept-Encoding": "gzip"}) as r:
        assert r.status == 200 and r.headers.get("Content-Encoding") == "gzip"
        assert len(await r.read()) > 0
    for path in ("/tile/0/000.p/4",          # beyond the published size
                 "/tile/0/000",              # full tile of a tree not yet that big
                 "/tile/0/000.p/2",          # a size never checkpointed (1, then 3)
                 "/tile/entries/001.p/1",
                 "/tile/0/00",               # not canonical
                 "/tile/0/x000/001",
                 "/tile/../config.toml", "/tile/0/%2e%2e/node.db", "/tile/entries/..%2fnode.db",
                 "/tile/checkpoint", "/admin/append", "/nothing", "/tile/"):
        async with session.get(node.public_url + path) as r:
            assert r.status == 404, path
    # The admin endpoint does not exist on the public site.
    async with session.post(node.public_url + "/admin/append", data=pdq_line(9),
                            headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status in (404, 405)


async def test_node_json(node, session):
    info = await (await session.get(node.public_url + "/node.json")).json()
    assert info["origin"] == ORIGIN
    assert info["role"] == "helpline"
    assert info["request_key"] == node.datadir.load_request_signer().verifier_key()
    assert info["public_read"] is True
    assert set(info) >= {"display_name", "contact", "verifier_key"}


async def test_restart_keeps_log_and_serves_same_bytes(tmp_path, session):
    datadir = make_datadir(tmp_path)
    first = await RunningNode(datadir).start("127.0.0.1", 0)
    token = datadir.admin_token()
    vkey = datadir.load_log_signer().verifier_key()
    status, _ = await append(session, first.admin_url, token, [pdq_line(i) for i in range(300)])
    assert status == 200
    before = await read_log(session, first.public_url, vkey)
    await first.stop()

    second = await RunningNode(datadir).start("127.0.0.1", 0)
    try:
        after = await read_log(session, second.public_url, vkey)
        assert after.note == before.note
        assert after.tiles == before.tiles
        status, results = await append(session, second.admin_url, token, [pdq_line(1000)])
        assert status == 200 and results[0]["index"] == 300
    finally:
        await second.stop()


async def test_only_one_process_writes_a_log(tmp_path):
    datadir = make_datadir(tmp_path)
    first = await RunningNode(datadir).start("127.0.0.1", 0)
    try:
        from node.datadir import DataDir, DataDirError

        with pytest.raises(DataDirError, match="already serving"):
            await RunningNode(DataDir(datadir.root)).start("127.0.0.1", 0)
        # The first node is unharmed.
        assert first.context.sequencer.published.size == 0
    finally:
        await first.stop()


async def test_registered_readers_only_by_default(tmp_path, session):
    from node.readaccess import RequestSigner

    datadir = make_datadir(tmp_path, public_read=False)
    node = await RunningNode(datadir).start("127.0.0.1", 0)
    try:
        token = datadir.admin_token()
        status, _ = await append(session, node.admin_url, token, [pdq_line(1)])
        assert status == 200
        # Checkpoint and node.json stay public.
        note = await fetch(session, node.public_url + "/checkpoint")
        cp, _ = open_checkpoint(note, [Verifier.from_vkey(datadir.load_log_signer().verifier_key())])
        assert cp.size == 1
        assert (await (await session.get(node.public_url + "/node.json")).json())["public_read"] is False

        url = node.public_url + "/tile/0/000.p/1"
        async with session.get(url) as r:
            assert r.status == 401  # unsigned

        reader_dir = make_datadir(tmp_path, name="reader", origin="reader.example/log")
        reader_key = reader_dir.load_request_signer()
        signer = RequestSigner.from_seed(reader_key.name, reader_key.seed)
        async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
            assert r.status == 401  # signed, but not a registered reader (told apart from nothing else)

        assert cli_main(["readers", "add", "--dir", str(datadir.root), reader_key.verifier_key(),
                         "--name", "Reader Org"]) == 0
        async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
            assert r.status == 200
            assert r.headers["Cache-Control"].startswith("private")
            assert len(await r.read()) == 32
        headers = signer.sign_headers("GET", url)
        async with session.get(url, headers=headers) as r:
            assert r.status == 200
        async with session.get(url, headers=headers) as r:
            assert r.status == 401  # replayed

        assert cli_main(["readers", "remove", "--dir", str(datadir.root), "Reader Org"]) == 0
        async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
            assert r.status == 401
    finally:
        await node.stop()


def test_readers_cli(tmp_path, capsys):
    datadir = make_datadir(tmp_path)
    other = make_datadir(tmp_path, name="other", origin="other.example/log")
    vkey = other.load_request_signer().verifier_key()
    d = str(datadir.root)
    assert cli_main(["readers", "add", "--dir", d, vkey, "--name", "Other"]) == 0
    assert cli_main(["readers", "add", "--dir", d, "not-a-key"]) == 1
    capsys.readouterr()
    assert cli_main(["readers", "list", "--dir", d]) == 0
    out = capsys.readouterr().out
    assert out.startswith(vkey + "\tOther\t")
    assert cli_main(["readers", "remove", "--dir", d, vkey]) == 0
    assert cli_main(["readers", "remove", "--dir", d, vkey]) == 1
    capsys.readouterr()
    assert cli_main(["readers", "list", "--dir", d]) == 0
    assert capsys.readouterr().out == ""


def test_init_and_key(tmp_path, capsys):
    datadir = make_datadir(tmp_path)
    for path in (datadir.log_key_path, datadir.request_key_path, datadir.admin_token_path):
        assert path.stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert cli_main(["key", "--dir", str(datadir.root)]) == 0
    log_vkey = capsys.readouterr().out.strip()
    assert cli_main(["key", "--dir", str(datadir.root), "--request"]) == 0
    request_vkey = capsys.readouterr().out.strip()
    assert Verifier.from_vkey(log_vkey).name == ORIGIN
    assert log_vkey != request_vkey and parse_request_vkey(request_vkey)
    # A second init into the same directory is refused; a bad origin or role too.
    assert cli_main(["init", "--dir", str(datadir.root), "--origin", ORIGIN]) == 1
    assert cli_main(["init", "--dir", str(tmp_path / "x"), "--origin", "has space"]) == 1
    with pytest.raises(SystemExit):
        cli_main(["init", "--dir", str(tmp_path / "y"), "--origin", ORIGIN, "--role", "boss"])
    # The key files are refused when readable by others.
    datadir.log_key_path.chmod(0o644)
    assert cli_main(["key", "--dir", str(datadir.root)]) == 1
    assert "chmod 600" in capsys.readouterr().err
