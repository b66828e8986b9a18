"""The add-checkpoint rate a log declares (the public witness network asks logs to):
the log keeps to it, says it in /node.json, and a witness that knows a log's declared
rate lists it and reports a log that goes beyond it. Real nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from node.cli import main as cli_main
from node.store import open_db
from node.witness.addcheckpoint import Witness, encode_request
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.merkle import EMPTY_ROOT
from protocol.note import Signer

from publish_support import ORIGIN, append, make_datadir, pdq_line, wait_for


async def test_log_keeps_to_its_declared_rate_and_says_it(tmp_path, start_node):
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
    witness = await start_node(wit_dir)
    cosigner = witness.node.witness.witness.vkey
    db = open_db(pub_dir.db_path)
    db.witness.add_log_witness(cosigner, witness.public_url, "w1")
    db.close()
    publisher = await start_node(pub_dir)
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
            assert publisher.node.sequencer.published.size >= 20
            _, requests = witness.node.witness.witness._traffic[ORIGIN]
            assert 2 <= requests <= elapsed / 0.8 + 2, (requests, elapsed)
            # The newest checkpoint is still cosigned once the rate allows it.
            size = publisher.node.sequencer.published.size
            await wait_for(lambda: witness.node.db.witness.witness_latest(ORIGIN).size == size, timeout=10)
    finally:
        await publisher.stop()
        await witness.stop()


async def test_a_round_that_sent_nothing_does_not_delay_the_next(tmp_path, start_node):
    """After a restart the checkpoint served at start-up was cosigned already: that round
    sends nothing, so the first new checkpoint goes to the witness at once, not an
    interval after the start (a node back from an outage, issue 22)."""
    pub_dir = make_datadir(tmp_path, name="publisher", interval=0.05)
    config = pub_dir.config
    config.witness.add_checkpoint_interval = 6.0
    pub_dir.save_config(config)
    wit_dir = make_datadir(tmp_path, name="w1", origin="w1.example/witness")
    config = wit_dir.config
    config.node.role = "witness"
    wit_dir.save_config(config)
    assert cli_main(["witness", "logs", "add", "--dir", str(wit_dir.root), ORIGIN,
                     pub_dir.load_log_signer().verifier_key()]) == 0
    witness = await start_node(wit_dir)
    db = open_db(pub_dir.db_path)
    db.witness.add_log_witness(witness.node.witness.witness.vkey, witness.public_url, "w1")
    db.close()
    publisher = await start_node(pub_dir)
    try:
        async with aiohttp.ClientSession() as session:
            assert (await append(session, publisher.admin_url, pub_dir.admin_token(), [pdq_line(0)]))[0] == 200
            # Served cosigned: the publisher recorded the cosignature (the log's signature,
            # its publication cosignature, the witness's).
            await wait_for(lambda: publisher.node.sequencer.published.note.count("\u2014 ".encode()) == 3,
                           timeout=10)
            await publisher.stop()
            publisher = await start_node(pub_dir)
            submitter = publisher.node.submitter
            await wait_for(lambda: submitter.rounds >= 1, timeout=10)
            assert submitter.posts == 0  # the start-up checkpoint was cosigned before the stop
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert (await append(session, publisher.admin_url, pub_dir.admin_token(), [pdq_line(1)]))[0] == 200
            size = publisher.node.sequencer.published.size
            await wait_for(lambda: witness.node.db.witness.witness_latest(ORIGIN).size == size, timeout=10)
            assert loop.time() - started < 3.0  # not the 6 s interval
    finally:
        await publisher.stop()
        await witness.stop()


def test_witness_reports_a_log_beyond_its_declared_rate(tmp_path, caplog):
    db = open_db(tmp_path / "w.db")
    log_signer = Signer.generate("fast.example/log")
    db.witness.add_known_log("fast.example/log", log_signer.verifier_key())
    db.witness.set_log_rate("fast.example/log", 10.0)
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
