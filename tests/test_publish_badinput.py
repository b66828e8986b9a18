"""Bad input to a publishing node: malformed lines, wrong tokens, oversized bodies, an
unwritable tiles directory. Each is refused clearly and appends nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from node.config import ConfigError, load_config

from publish_support import append, fetch, make_datadir, pdq_line, read_log, tile_files


@pytest.fixture
async def node(tmp_path, start_node):
    datadir = make_datadir(tmp_path, max_body_bytes=64 * 1024)
    running = await start_node(datadir)
    return running


def stored(node) -> int:
    return node.node.db.execute("SELECT COUNT(*) FROM log_entries").fetchone()[0]


@pytest.mark.parametrize("bad_line, reason", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"kind": "submission", "signal": "pdq", "fingerprint": "abc"}', ""),
    ('{"kind": "submission", "signal": "sha1", "fingerprint": "' + "00" * 20 + '"}', ""),
    ('{"kind": "nonsense"}', ""),
    ('{"kind": "withdrawal", "targets": []}', ""),
    ('{"kind": "withdrawal", "targets": [5]}', "not a published entry"),
    (b"\xff\xfe".decode("latin-1"), ""),
])
async def test_malformed_line_gives_400_with_line_number_and_appends_nothing(node, session, bad_line, reason):
    token = node.datadir.admin_token()
    status, _ = await append(session, node.admin_url, token, [pdq_line(0)])
    assert status == 200
    size_before = node.node.sequencer.published.size
    body = (pdq_line(1) + "\n\n" + pdq_line(2) + "\n" + bad_line + "\n" + pdq_line(3) + "\n").encode("utf-8")
    if bad_line == "\xff\xfe":
        body = (pdq_line(1) + "\n\n" + pdq_line(2) + "\n").encode() + b"\xff\xfe\n" + pdq_line(3).encode()
    status, error = await append(session, node.admin_url, token, body)
    assert status == 400
    assert error["line"] == 4, error
    assert error["error"].startswith("line 4: ")
    assert reason in error["error"]
    assert stored(node) == size_before == node.node.sequencer.published.size


async def test_empty_body_is_refused(node, session):
    status, error = await append(session, node.admin_url, node.datadir.admin_token(), b"\n\n")
    assert status == 400 and "no entries" in error["error"]


async def test_token_is_required(node, session):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + node.datadir.admin_token()},
                    {"Authorization": "Bearer"}):
        async with session.post(node.admin_url + "/admin/append", data=pdq_line(1), headers=headers) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert stored(node) == 0


async def test_oversized_body_is_refused_before_it_is_read(node, session):
    token = node.datadir.admin_token()
    limit = node.datadir.config.admin.max_body_bytes
    line_size = len(pdq_line(0)) + 1
    lines = [pdq_line(i) for i in range(limit // line_size + 10)]
    status, error = await append(session, node.admin_url, token, lines)
    assert status == 413 and "exceeds the limit" in error["error"]

    async def chunked():  # no Content-Length: the limit applies while reading
        for i in range(0, len(lines), 50):
            yield ("\n".join(lines[i:i + 50]) + "\n").encode()

    async with session.post(node.admin_url + "/admin/append", data=chunked(),
                            headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 413
    assert stored(node) == 0
    # Just under the limit is fine.
    status, _ = await append(session, node.admin_url, token, lines[:limit // line_size - 1])
    assert status == 200


async def test_unwritable_tiles_directory_publishes_nothing_then_recovers(tmp_path, session, start_node):
    datadir = make_datadir(tmp_path)
    node = await start_node(datadir)
    try:
        token = datadir.admin_token()
        vkey = datadir.load_log_signer().verifier_key()
        status, _ = await append(session, node.admin_url, token, [pdq_line(i) for i in range(5)])
        assert status == 200
        before = await read_log(session, node.public_url, vkey)
        files_before = tile_files(datadir)

        # Break the tiles directory: "tile" becomes a plain file, so no tile can be
        # written below it (a chmod would not stop root, who runs the CI).
        shutil.move(datadir.tiles_dir / "tile", tmp_path / "saved-tile")
        (datadir.tiles_dir / "tile").write_text("in the way")
        status, error = await append(session, node.admin_url, token, [pdq_line(i) for i in range(5, 9)])
        assert status == 503
        assert "could not publish" in error["error"] and "do not send them again" in error["error"]
        assert (error["stored_from"], error["stored_to"]) == (5, 9)
        assert node.node.sequencer.stalled
        # Nothing new is published or served.
        assert await fetch(session, node.public_url + "/checkpoint") == before.note
        async with session.get(node.public_url + "/tile/entries/000.p/9") as r:
            assert r.status == 404
        # New appends are refused while the log cannot publish.
        status, error = await append(session, node.admin_url, token, [pdq_line(50)])
        assert status == 503 and "nothing was appended" in error["error"]

        # Repair: the stored entries are published (once, at their indices), then new ones.
        (datadir.tiles_dir / "tile").unlink()
        shutil.move(tmp_path / "saved-tile", datadir.tiles_dir / "tile")
        status, results = await append(session, node.admin_url, token, [pdq_line(100)])
        for _ in range(50):
            if status == 200:
                break
            import asyncio
            await asyncio.sleep(0.05)
            status, results = await append(session, node.admin_url, token, [pdq_line(100)])
        assert status == 200 and results[0]["index"] == 9
        after = await read_log(session, node.public_url, vkey)
        assert after.entries[:5] == before.entries
        assert len(after.entries) == 10
        for path, data in files_before.items():
            if path != "checkpoint":
                assert tile_files(datadir)[path] == data
    finally:
        await node.stop()


def test_cli_append_validates_everything_first(tmp_path):
    datadir = make_datadir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "node", "serve", "--dir", str(datadir.root), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        import time

        for _ in range(200):
            if datadir.read_serve_info():
                break
            time.sleep(0.05)
        good = "\n".join(pdq_line(i) for i in range(3)) + "\n"
        bad = good + '{"kind": "submission", "signal": "pdq"}\n'
        r = subprocess.run([sys.executable, "-m", "node", "append", "--dir", str(datadir.root)],
                           input=bad, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "line 4" in r.stderr and r.stdout == ""
        r = subprocess.run([sys.executable, "-m", "node", "append", "--dir", str(datadir.root), "-"],
                           input=good, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        results = [json.loads(line) for line in r.stdout.splitlines()]
        assert [x["index"] for x in results] == [0, 1, 2]
        assert all(x["checkpoint_size"] == 3 and len(x["leaf_hash"]) == 64 for x in results)
        # An error found by the node names the line of the input (blank lines count), once.
        r = subprocess.run([sys.executable, "-m", "node", "append", "--dir", str(datadir.root)],
                           input='\n{"kind": "withdrawal", "targets": [99]}\n', capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and r.stderr.count("line ") == 1 and "line 2: " in r.stderr, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    # With no node serving, append says so.
    r = subprocess.run([sys.executable, "-m", "node", "append", "--dir", str(datadir.root)],
                       input=pdq_line(7), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no node is serving" in r.stderr


def test_config_errors_are_clear(tmp_path):
    path = tmp_path / "config.toml"
    for text, message in [
        ("[node]\norigin = 'a/b'\nrole = 'boss'\n", "role must be one of"),
        ("[node]\norigin = 'a/b'\n[http]\nprot = 1\n", "unknown key 'prot'"),
        ("[nodes]\n", "unknown table [nodes]"),
        ("[node]\norigin = 'a/b'\n[http]\nport = 'x'\n", "must be of type int"),
        ("[node]\norigin = ''\n", "origin must be"),
        ("[node\n", "not valid TOML"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            load_config(path)
    with pytest.raises(ConfigError, match="ncii-node init"):
        load_config(tmp_path / "absent.toml")
