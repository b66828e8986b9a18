"""A witnessed log end to end: a real publishing node and two real witness nodes on
127.0.0.1. The publisher submits each checkpoint, serves it cosigned, keeps sequencing
when a witness is down and catches up when it returns; the k-of-n check a follower
applies accepts and refuses what it must."""

from __future__ import annotations

import time

import aiohttp
import pytest

from node.store import open_db
from node.store import witness as store
from node.web.app import RunningNode
from node.witness.keys import load_witness_signer
from node.witness.policy import NotEnoughCosignatures, check_followed_checkpoint, require_cosignatures
from protocol.checkpoint import open_checkpoint
from protocol.policy import Policy
from protocol.note import Verifier

from publish_support import ORIGIN, append, make_datadir, pdq_line, wait_for


async def start_witness(tmp_path, name: str, log_vkey: str) -> RunningNode:
    datadir = make_datadir(tmp_path, name=name, origin=f"{name}.example/witness")
    config = datadir.config
    config.node.role = "witness"
    datadir.save_config(config)
    db = open_db(datadir.db_path)
    store.add_known_log(db, ORIGIN, log_vkey)
    db.close()
    node = await RunningNode(datadir).start("127.0.0.1", 0)
    node.cosigner_vkey = load_witness_signer(datadir).verifier_key()
    return node




async def get_checkpoint(session, node) -> bytes:
    async with session.get(node.public_url + "/checkpoint") as r:
        assert r.status == 200
        return await r.read()


async def test_witnessed_log(tmp_path):
    pub_dir = make_datadir(tmp_path, name="publisher")
    log_vkey = pub_dir.load_log_signer().verifier_key()
    w1 = await start_witness(tmp_path, "w1", log_vkey)
    w2 = await start_witness(tmp_path, "w2", log_vkey)
    db = open_db(pub_dir.db_path)
    store.add_log_witness(db, w1.cosigner_vkey, w1.public_url, "w1")
    store.add_log_witness(db, w2.cosigner_vkey, w2.public_url, "w2")
    store.set_log_policy(db, 2)
    db.close()
    witnesses = [w1.cosigner_vkey, w2.cosigner_vkey]
    publisher = await RunningNode(pub_dir).start("127.0.0.1", 0)
    token = pub_dir.admin_token()
    try:
        async with aiohttp.ClientSession() as session:
            status, acks = await append(session, publisher.admin_url, token, [pdq_line(i) for i in range(5)])
            assert status == 200
            size = acks[-1]["checkpoint_size"]

            async def cosigned_by(n: int, at_least: int) -> bool:
                note = await get_checkpoint(session, publisher)
                cp, _ = open_checkpoint(note, [Verifier.from_vkey(log_vkey)], origin=ORIGIN)
                try:
                    require_cosignatures(note, witnesses, n)
                except NotEnoughCosignatures:
                    return False
                return cp.size >= at_least

            await wait_for(lambda: cosigned_by(2, size))
            note = await get_checkpoint(session, publisher)
            found = require_cosignatures(note, witnesses, 2)
            assert set(found) == set(witnesses)
            # The witnesses recorded the same checkpoint.
            for w in (w1, w2):
                assert store.witness_latest(w.context.db, ORIGIN).size == size

            # A follower with a stored policy accepts it, and refuses the plain note.
            fdb = open_db(tmp_path / "follower.db")
            store.set_follow_policy(fdb, ORIGIN, Policy.k_of_n(witnesses, 2).to_bytes(), "flags")
            check_followed_checkpoint(fdb, ORIGIN, note)
            plain = note.split(b"\n\n")[0] + b"\n\n" + note.split(b"\n\n")[1].splitlines(True)[0]
            with pytest.raises(NotEnoughCosignatures):
                check_followed_checkpoint(fdb, ORIGIN, plain)
            fdb.close()

            # Witness 2 goes down: sequencing goes on, the checkpoint carries one cosignature.
            await w2.stop()
            started = time.monotonic()
            status, acks = await append(session, publisher.admin_url, token, [pdq_line(i) for i in range(5, 9)])
            assert status == 200 and time.monotonic() - started < 3
            size2 = acks[-1]["checkpoint_size"]
            await wait_for(lambda: cosigned_by(1, size2))
            note2 = await get_checkpoint(session, publisher)
            assert set(require_cosignatures(note2, witnesses, 1)) == {w1.cosigner_vkey}
            with pytest.raises(NotEnoughCosignatures):
                require_cosignatures(note2, witnesses, 2)
            pdb = publisher.context.db
            w2_row = [w for w in store.list_log_witnesses(pdb) if w.vkey == w2.cosigner_vkey][0]
            assert w2_row.last_error and w2_row.last_size == size

            # Witness 2 comes back on the same port: the retry (with a consistency
            # proof from the size it knows) brings its cosignature back.
            port = int(w2.public_url.rsplit(":", 1)[1])
            w2 = await RunningNode(w2.datadir).start("127.0.0.1", port)
            await wait_for(lambda: cosigned_by(2, size2), timeout=15)
            assert store.witness_latest(w2.context.db, ORIGIN).size == size2
    finally:
        await publisher.stop()
        await w1.stop()
        await w2.stop()
