"""An equivocating publisher is caught.

A test server shows two histories of one log, both signed with the same key (built
with protocol/ code), to two real follower nodes: one follows the URL that serves
history A, the other the URL that serves history B. Each follower verifies what it is
shown and shares it at GET /witness/seen; an auditor of either URL, comparing with the
other follower (or with a witness that cosigned the other history), finds the split
view and writes evidence that `ncii-node audit verify-evidence` accepts. A follower
that requires witness cosignatures does not apply an uncosigned checkpoint."""

from __future__ import annotations

import json

import aiohttp
import pytest

from node.cli import main as cli_main
from node.store import follow as follow_store
from node.store import witness as store
from node.web.app import RunningNode
from node.witness.addcheckpoint import encode_request
from node.witness.evidence import verify_evidence
from node.witness.keys import load_witness_signer
from protocol.note import Signer

from publish_support import make_datadir, wait_for
from test_audit import ORIGIN, LogServer, build_log, cli, submission




async def start_follower(tmp_path, name: str, url: str, vkey: str) -> RunningNode:
    datadir = make_datadir(tmp_path, name=name, origin=f"{name}.example/node")
    assert cli_main(["follow", "add", "--dir", str(datadir.root), url, "--vkey", vkey]) == 0
    return await RunningNode(datadir).start("127.0.0.1", 0)


def followed_size(node) -> int:
    state = follow_store.get_log(node.context.db, ORIGIN)
    return state.size if state else -1


@pytest.fixture
async def log_server(aiohttp_server):
    return await LogServer().start(aiohttp_server)


@pytest.mark.parametrize("size_b", [100, 130])
async def test_equivocating_publisher_is_caught(log_server, tmp_path, size_b):
    signer = Signer.generate(ORIGIN)
    vkey = signer.verifier_key()
    history_a = [submission(i) for i in range(100)]
    history_b = history_a[:40] + [submission(i, "md5") for i in range(40, size_b)]
    log_server.histories["a"] = build_log(signer, history_a)
    log_server.histories["b"] = build_log(signer, history_b)
    f1 = await start_follower(tmp_path, "f1", f"{log_server.url}/a", vkey)
    f2 = await start_follower(tmp_path, "f2", f"{log_server.url}/b", vkey)
    try:
        await wait_for(lambda: followed_size(f1) == 100 and followed_size(f2) == size_b)
        # Each follower believes its own view (neither can tell alone).
        assert not follow_store.get_log(f1.context.db, ORIGIN).forked

        # Followers share what they have seen.
        async with aiohttp.ClientSession() as session:
            async with session.get(f1.public_url + "/witness/seen") as r:
                seen = await r.json()
        assert [(c["origin"], c["size"], c["source"]) for c in seen["checkpoints"]] == [(ORIGIN, 100, "follower")]

        # An auditor of URL b compares with follower 1: split view, with evidence.
        code, out, err = await cli("audit", f"{log_server.url}/b", "--vkey", vkey, "--json",
                                   "--state", str(tmp_path / "auditor"), "--peer", f1.public_url)
        assert code == 1, err
        report = json.loads(out)
        assert [v["kind"] for v in report["violations"]] == ["split-view"]
        assert report["peers"][0]["status"] == "SPLIT VIEW"
        [evidence_file] = report["evidence_files"]
        code, out, _ = await cli("audit", "verify-evidence", evidence_file)
        assert code == 0, out
        verified = verify_evidence(open(evidence_file, "rb").read())
        assert verified.kind == ("same-size" if size_b == 100 else "consistency")
        assert {verified.smaller.size, verified.larger.size} == {100, size_b}

        # The auditor compared with a peer that saw the same history: no alarm.
        code, out, _ = await cli("audit", f"{log_server.url}/b", "--vkey", vkey, "--json",
                                 "--html", str(tmp_path / "r.html"), "--peer", f2.public_url)
        assert code == 0 and json.loads(out)["peers"][0]["status"] == "consistent"
    finally:
        await f1.stop()
        await f2.stop()


async def test_witness_sees_through_split_view_and_followers_require_cosignatures(log_server, tmp_path):
    signer = Signer.generate(ORIGIN)
    vkey = signer.verifier_key()
    history_a = [submission(i) for i in range(50)]
    history_b = [submission(i, "md5") for i in range(50)]
    files_a, files_b = build_log(signer, history_a), build_log(signer, history_b)

    witness_dir = make_datadir(tmp_path, name="witness", origin="witness.example/w")
    config = witness_dir.config
    config.node.role = "witness"
    witness_dir.save_config(config)
    assert cli_main(["witness", "logs", "add", "--dir", str(witness_dir.root), ORIGIN, vkey]) == 0
    witness = await RunningNode(witness_dir).start("127.0.0.1", 0)
    cosigner = load_witness_signer(witness_dir).verifier_key()

    # The follower requires the witness's cosignature before applying anything.
    log_server.histories["a"] = dict(files_a)
    fdir = make_datadir(tmp_path, name="f", origin="f.example/node")
    assert cli_main(["follow", "add", "--dir", str(fdir.root), f"{log_server.url}/a", "--vkey", vkey]) == 0
    assert cli_main(["witness", "require", "--dir", str(fdir.root), ORIGIN, "-k", "1", "--witness", cosigner]) == 0
    follower = await RunningNode(fdir).start("127.0.0.1", 0)
    try:
        await wait_for(lambda: (follow_store.get_log(follower.context.db, ORIGIN).last_error or "").find(
            "cosignature") >= 0)
        assert followed_size(follower) == 0

        async with aiohttp.ClientSession() as session:
            async def submit(note: bytes, old: int):
                async with session.post(witness.public_url + "/add-checkpoint",
                                        data=encode_request(old, [], note)) as r:
                    return r.status, await r.read()

            # The log has history A cosigned, and serves the cosigned note.
            status, line = await submit(files_a["checkpoint"], 0)
            assert status == 200
            log_server.histories["a"]["checkpoint"] = files_a["checkpoint"] + line
            await wait_for(lambda: followed_size(follower) == 50)

            # Then it shows history B to the witness: refused, evidence kept.
            status, _ = await submit(files_b["checkpoint"], 50)
            assert status == 422
            [(_, origin, evidence_text, _)] = store.list_evidence(witness.context.db)
            assert origin == ORIGIN and verify_evidence(evidence_text).kind == "same-size"

        # An auditor of history B, comparing with the witness, finds the split view.
        log_server.histories["b"] = files_b
        code, out, _ = await cli("audit", f"{log_server.url}/b", "--vkey", vkey, "--json",
                                 "--html", str(tmp_path / "r.html"), "--state", str(tmp_path / "aud"),
                                 "--peer", witness.public_url)
        assert code == 1
        assert [v["kind"] for v in json.loads(out)["violations"]] == ["split-view"]
    finally:
        await follower.stop()
        await witness.stop()
