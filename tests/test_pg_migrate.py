"""`ncii-node migrate`: a SQLite node moved to PostgreSQL and back, with real `serve`
processes; each move is checked by `ncii-node audit --state` against the checkpoints
the log published before it, and refused when the target is not empty."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import aiohttp
import pytest

from node.cli import main as cli_main
from node.datadir import DataDir
from node.store import open_db

from publish_support import append, make_datadir, pdq_line, read_log
from serve_support import NodeProcess

ORIGIN = "helpline.example/log"
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
pytestmark = pytest.mark.timeout(180)


def audit(url: str, vkey: str, state, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", "audit", url, "--vkey", vkey, "--state", str(state),
                           "--html", str(tmp_path / "report.html")], capture_output=True, text=True, timeout=120)


async def serve_and_append(datadir, first: int, count: int, *, case: bool = False) -> bytes:
    node = NodeProcess(datadir)
    await node.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            status, _ = await append(session, node.admin_url, datadir.admin_token(),
                                     [pdq_line(i) for i in range(first, first + count)])
            assert status == 200
            if case:
                body = {"eligibility": YES, "lang": "en", "fingerprints": [
                    {"signal": "pdq", "fingerprint": hashlib.sha256(b"picture").hexdigest(), "quality": 90}]}
                async with session.post(node.public_url + "/v1/cases", json=body) as r:
                    assert r.status == 201, await r.text()
            view = await read_log(session, node.public_url, datadir.load_log_signer().verifier_key(), origin=ORIGIN)
            state = datadir.root.parent / "audit-state"
            result = audit(node.public_url, datadir.load_log_signer().verifier_key(), state, datadir.root.parent)
            assert result.returncode == 0, result.stdout + result.stderr
            return b"".join(view.entries)
    finally:
        node.stop()
        assert "Traceback" not in node.stderr_path.read_text()


async def test_sqlite_to_postgresql_and_back(tmp_path, pg_url):
    datadir = make_datadir(tmp_path, name="helpline", origin=ORIGIN, role="helpline",
                           settings={"cases": {"pin_scrypt_n": 2**10}})
    before = await serve_and_append(datadir, 0, 300, case=True)   # audit state: the SQLite log's checkpoint

    assert cli_main(["migrate", "--dir", str(datadir.root), "--to", pg_url]) == 0
    datadir = DataDir(datadir.root)
    assert datadir.uses_postgres and (datadir.root / "node.db").exists()  # the old store is left alone
    db = open_db(pg_url)
    assert db.cases.counts()["active"] == 1 and db.log.entry_count() == 301
    db.close()
    moved = await serve_and_append(datadir, 300, 50)   # audit: consistent with the SQLite checkpoint
    assert moved.startswith(before) and len(moved) > len(before)

    # Back to SQLite: refused while the old files are there, then done into fresh ones.
    assert cli_main(["migrate", "--dir", str(datadir.root), "--to", "sqlite"]) != 0
    (datadir.root / "node.db").rename(tmp_path / "old.db")
    shutil.move(str(datadir.tiles_dir), str(tmp_path / "old-tiles"))
    assert cli_main(["migrate", "--dir", str(datadir.root), "--to", "sqlite"]) == 0
    datadir = DataDir(datadir.root)
    assert not datadir.uses_postgres
    back = await serve_and_append(datadir, 350, 10)   # audit: consistent with the PostgreSQL checkpoint
    assert back.startswith(moved)


async def test_a_target_holding_a_node_is_refused(tmp_path, pg_url):
    first = make_datadir(tmp_path, name="first", origin=ORIGIN)
    second = make_datadir(tmp_path, name="second", origin="other.example/log")
    await serve_and_append(first, 0, 5)
    assert cli_main(["migrate", "--dir", str(first.root), "--to", pg_url]) == 0
    config_before = second.config_path.read_bytes()
    assert cli_main(["migrate", "--dir", str(second.root), "--to", pg_url]) != 0
    assert second.config_path.read_bytes() == config_before
    db = open_db(pg_url)
    assert db.log.entry_count() == 5 and db.log.latest_checkpoint().note.startswith(ORIGIN.encode())
    db.close()
