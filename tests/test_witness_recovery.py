"""A witness back from an outage cosigns within seconds, whatever back-off the
publisher's submitter had reached (node/witness/submit.py probes a witness it could not
reach, about once a second): followers that require its cosignature are not held up
for up to a minute. A real publishing node and a real witness node, the witness
stopped and started again on the same port."""

from __future__ import annotations

import time

import aiohttp

from node.store import open_db
from node.witness.policy import NotEnoughCosignatures, require_cosignatures
from node.witness.submit import PROBE_INTERVAL
from publish_support import append, make_datadir, pdq_line, wait_for
from test_witness_publish import get_checkpoint, start_witness


async def test_a_witness_back_from_an_outage_cosigns_within_seconds(tmp_path, start_node):
    pub_dir = make_datadir(tmp_path, name="publisher")
    log_vkey = pub_dir.load_log_signer().verifier_key()
    witness = await start_witness(tmp_path, "w1", log_vkey, start_node)
    db = open_db(pub_dir.db_path)
    db.witness.add_log_witness(witness.cosigner_vkey, witness.public_url, "w1")
    db.close()
    cosigner = witness.cosigner_vkey
    publisher = await start_node(pub_dir)
    submitter = publisher.node.submitter
    token = pub_dir.admin_token()
    async with aiohttp.ClientSession() as session:
        async def cosigned(size: int) -> bool:
            note = await get_checkpoint(session, publisher)
            try:
                require_cosignatures(note, [cosigner], 1)
            except NotEnoughCosignatures:
                return False
            return int(note.split(b"\n")[1]) >= size

        status, acks = await append(session, publisher.admin_url, token, [pdq_line(1)])
        assert status == 200 and await wait_for(lambda: cosigned(acks[-1]["checkpoint_size"]))

        # The witness goes down; a new checkpoint cannot be cosigned; the back-off grows.
        port = int(witness.public_url.rsplit(":", 1)[1])
        await witness.stop()
        status, acks = await append(session, publisher.admin_url, token, [pdq_line(2)])
        size = acks[-1]["checkpoint_size"]
        assert await wait_for(lambda: (submitter.retry_delay or 0) >= 8, timeout=40, step=0.1)
        probes, down_since = submitter.probes, time.monotonic()
        assert submitter.down == {witness.public_url}

        # Back on the same port: cosigned within a few seconds, not after the back-off.
        witness = await start_node(witness.datadir, port=port)
        returned = time.monotonic()
        assert await wait_for(lambda: cosigned(size), timeout=20)
        took = time.monotonic() - returned
        print(f"witness back: cosigned {took:.2f} s after its return")
        assert took < 4, f"cosigned {took:.1f} s after the witness's return"
        assert not submitter.down
        # While down it looked about once a second, not more.
        assert submitter.probes - probes <= (returned - down_since) / (0.75 * PROBE_INTERVAL) + 2
