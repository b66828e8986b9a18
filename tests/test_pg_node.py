"""A node on PostgreSQL end to end: a real `ncii-node serve` process whose data directory
says `[database] url = postgresql://...` (`init --database`): everything -- entries,
checkpoints, tiles and bundles, cases -- is in the database, nothing in SQLite files.
A client reads and verifies every tile; a real follower (node/follow) verifies and
applies the log over HTTP; a case is created and withdrawn; `status` names the backend."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import aiohttp
import pytest

from node.store import open_db
from node.store.dbtiles import DatabaseTileStore
from protocol.entries import Withdrawal, decode_entry
from protocol.tiles import tiles_for_size

from follow_support import Harness
from publish_support import append, make_datadir, pdq_line, read_log
from serve_support import NodeProcess

ORIGIN = "helpline.example/log"
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
pytestmark = pytest.mark.timeout(120)


def pg_helpline(tmp_path, pg_url):
    return make_datadir(tmp_path, name="helpline", origin=ORIGIN, role="helpline", database=pg_url,
                        settings={"cases": {"pin_scrypt_n": 2**10}})


async def post(session, url, body):
    async with session.post(url, json=body) as r:
        return r.status, await r.json(content_type=None)


async def test_a_serve_process_on_postgresql(tmp_path, pg_url):
    datadir = pg_helpline(tmp_path, pg_url)
    assert not datadir.root.joinpath("node.db").exists() and not datadir.tiles_dir.exists()
    node = NodeProcess(datadir)
    await node.start()
    harness = Harness(tmp_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            status, results = await append(session, node.admin_url, datadir.admin_token(),
                                           [pdq_line(i) for i in range(300)])
            assert status == 200 and [r["index"] for r in results] == list(range(300))

            fingerprints = [{"signal": "pdq", "fingerprint": hashlib.sha256(b"picture %d" % i).hexdigest(),
                             "quality": 90} for i in range(3)]
            status, case = await post(session, node.public_url + "/v1/cases",
                                      {"eligibility": YES, "fingerprints": fingerprints, "lang": "fr"})
            assert status == 201, case
            indices = sorted(p["index"] for p in case["published"])
            codes = {"case_number": case["case_number"], "pin": case["pin"]}
            status, answer = await post(session, node.public_url + "/v1/cases/withdraw", codes)
            assert status == 200 and answer["state"] == "withdrawn", answer
            withdrawal_index = answer["withdrawn_at"]["entries"][0]

            vkey = datadir.load_log_signer().verifier_key()
            view = await read_log(session, node.public_url, vkey, origin=ORIGIN)  # every tile verified
            assert view.checkpoint.size == withdrawal_index + 1 == 304
            assert decode_entry(view.entries[withdrawal_index]) == Withdrawal(tuple(indices), "withdrawn-by-person")

            follower = harness.follow(ORIGIN, node.public_url, vkey)
            result = await follower.sync_once()
            assert result.outcome == "applied" and harness.state(ORIGIN).size == 304
            withdrawn = {r.index for r in harness.fingerprints(ORIGIN) if r.withdrawn}
            assert withdrawn == set(indices)
    finally:
        node.stop()
        await harness.close()

    # Every tile the client read is a row of the database; no file was written.
    store = DatabaseTileStore(pg_url)
    assert all(store.read(tile.path()) == view.tiles[tile] for tile in tiles_for_size(304))
    store.close()
    assert not datadir.tiles_dir.exists() and not datadir.root.joinpath("node.db").exists()
    db = open_db(pg_url)
    assert db.cases.counts()["withdrawn"] == 1 and db.log.entry_count() == 304
    db.close()
    report = subprocess.run([sys.executable, "-m", "node", "status", "--dir", str(datadir.root), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(report.stdout)["node"]["database"] == {"backend": "postgresql", "url": pg_url}
    assert "Traceback" not in node.stderr_path.read_text()


def test_init_refuses_a_database_holding_a_node(tmp_path, pg_url):
    from node.cli import main as cli_main

    pg_helpline(tmp_path, pg_url)
    db = open_db(pg_url)
    db.log.insert_entries(0, [b"\x00\x01\x01a"], [b"h" * 32])
    db.close()
    assert cli_main(["init", "--dir", str(tmp_path / "second"), "--origin", "other.example/log",
                     "--database", pg_url]) != 0
    assert not (tmp_path / "second").exists()


@pytest.mark.parametrize("section, message", [
    ({"url": "postgresql://u:secret@db/n"}, "must not hold a password"),
    ({"url": "mysql://u@db/n"}, "must start with postgresql://"),
    ({"url": "postgresql://u@db"}, "must name one database"),
    ({"url": "postgresql://u@db:99999/n"}, "port"),
    ({"url": "postgresql://u@db/n", "password_file": "f", "password_env": "V"}, "not both"),
    ({"url": "postgresql://u@db/n", "password_env": "BAD NAME"}, "environment variable"),
    ({"password_file": "f"}, "need a \\[database\\] url"),
    ({"url": "postgresql://u@db/n", "pasword_file": "f"}, "unknown key"),
])
def test_the_database_section_is_strict(section, message):
    from node.config import Config, ConfigError

    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"node": {"origin": "example.org/log"}, "database": section})


def test_the_password_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from node.config import Config
    from node.datadir import DataDir, DataDirError

    url = "postgresql://ncii@db.internal:5432/helpline"
    (tmp_path / "db.password").write_text("s3cret\n")
    config = Config.from_dict({"node": {"origin": "example.org/log"},
                               "database": {"url": url, "password_file": "db.password"}})
    target = DataDir(tmp_path, config).db_path
    assert target == url and str(target) == url and target.password == "s3cret"
    config.database.password_file, config.database.password_env = "", "NCII_TEST_DB_PASSWORD"
    with pytest.raises(DataDirError, match="not set"):
        DataDir(tmp_path, config).db_path
    monkeypatch.setenv("NCII_TEST_DB_PASSWORD", "from-env")
    assert DataDir(tmp_path, config).db_path.password == "from-env"
