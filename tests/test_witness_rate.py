"""The add-checkpoint rate a log declares (the public witness network asks logs to):
the log keeps to it, says it in /node.json, and a witness that knows a log's declared
rate lists it and reports a log that goes beyond it. Real nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from node.cli import main as cli_main
from node.store import open_db
from node.store import witness as store
from node.web.app import RunningNode
from node.web.witness_routes import WITNESS
from node.witness.addcheckpoint import Witness, encode_request
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.merkle import EMPTY_ROOT
from protocol.note import Signer

from publish_support import ORIGIN, append, make_datadir, pdq_line, wait_for


async def test_log_keeps_to_its_declared_rate_and_says_it(tmp_path):
    pub_dir = make_datadir(tmp_path, name="publisher", interval=0.05)
    config = pub_dir.config
    config.witness.add_checkpoint_interval = 0.8
    pub_dir.save_config(config)
    log_vkey = pub_dir.load_log_signer().verifier_key()

    wit_dir = make_datadir(tmp_path, name="w1", origin="w1.example/witness")
    config = wit_dir.config
    config.node.role = "witness"
    wit_dir.save_config(config)
    assert cli_main(["witness", "logs", "add", "--dir", str(wit_dir.root), ORIGIN, log_vkey, "--interval", "0.8"]) == 0
    assert cli_main(["witness", "logs", "add", "--dir", str(wit_dir.root), ORIGIN, log_vkey, "--interval", "0"]) == 1
    witness = await RunningNode(wit_dir).start("127.0.0.1", 0)
    cosigner = witness.app[WITNESS].witness.vkey
    db = open_db(pub_dir.db_path)
    store.add_log_witness(db, cosigner, witness.public_url, "w1")
    db.close()
    publisher = await RunningNode(pub_dir).start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(publisher.public_url + "/node.json") as r:
                doc = await r.json()
            assert doc["witnessing"] == {"add_checkpoint_interval": 0.8, "witnesses": [cosigner]}
            async with session.get(witness.public_url + "/node.json") as r:
                doc = await r.json()
            assert doc["witness"] == {"cosigner_key": cosigner,
                                      "logs": [{"origin": ORIGIN, "add_checkpoint_interval": 0.8}]}

            # A checkpoint every ~50 ms for 3 s: the witness gets one round per 0.8 s.
            loop = asyncio.get_running_loop()
            started = loop.time()
            token = pub_dir.admin_token()
            i = 0
            while loop.time() - started < 3.0:
                status, _ = await append(session, publisher.admin_url, token, [pdq_line(i)])
                assert status == 200
                i += 1
            elapsed = loop.time() - started
            assert publisher.context.sequencer.published.size >= 20
            _, requests = witness.app[WITNESS].witness._traffic[ORIGIN]
            assert 2 <= requests <= elapsed / 0.8 + 2, (requests, elapsed)
            # The newest checkpoint is still cosigned once the rate allows it.
            size = publisher.context.sequencer.published.size
            await wait_for(lambda: store.witness_latest(witness.context.db, ORIGIN).size == size, timeout=10)
    finally:
        await publisher.stop()
        await witness.stop()


def test_witness_reports_a_log_beyond_its_declared_rate(tmp_path, caplog):
    db = open_db(tmp_path / "w.db")
    log_signer = Signer.generate("fast.example/log")
    store.add_known_log(db, "fast.example/log", log_signer.verifier_key())
    store.set_log_rate(db, "fast.example/log", 10.0)
    now = [1_700_000_000.0]
    witness = Witness(CosignatureSigner.generate("w.example"), db, clock=lambda: now[0])
    note = sign_checkpoint(Checkpoint("fast.example/log", 0, EMPTY_ROOT), log_signer)
    with caplog.at_level(logging.WARNING, logger="node.witness.addcheckpoint"):
        for _ in range(14):          # 100 s window, one round per 10 s: 2*10 + 3 = 23 tolerated
            now[0] += 1
            assert witness.add_checkpoint(encode_request(0, [], note)).status == 200
        assert "declared" not in caplog.text
        for _ in range(10):
            now[0] += 1
            witness.add_checkpoint(encode_request(0, [], note))
    assert caplog.text.count("declared at most one round every 10 s") == 1
    db.close()
