"""A followed node that was down is read again within a couple of seconds of its
return, whatever the back-off had reached (node/follow/recovery.py), and a node that
stays down costs its followers about one refused connection a second."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from node.cli import main as cli_main
from node.follow.recovery import PROBE_INTERVAL, Recovery
from node.store import open_db
from publish_support import append, make_datadir, wait_for
from serve_support import NodeProcess, free_port

#: The follower must hold the returned node's new entry this soon after its return
#: (the probe comes every 0.75-1.25 s; the rest is a round on a loaded machine).
BOUND = 5.0


def pdq_line(i: int) -> str:
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i + 1:064x}"})


async def test_a_follower_is_back_within_seconds_of_a_node_s_return(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    assert cli_main(["readers", "add", "--dir", str(helpline.root),
                     platform.load_request_signer().verifier_key()]) == 0
    node = NodeProcess(helpline, port=free_port())
    await node.start()
    follower = None
    db = open_db(platform.db_path)
    try:
        assert cli_main(["follow", "add", "--dir", str(platform.root), node.public_url, "--vkey",
                         helpline.load_log_signer().verifier_key()]) == 0
        follower = await start_node(platform)
        job = follower.node.follower.jobs["helpline.example/log"]
        async with aiohttp.ClientSession() as session:
            assert (await append(session, node.admin_url, helpline.admin_token(), [pdq_line(1)]))[0] == 200
            assert await wait_for(lambda: db.follow.get_log("helpline.example/log").size == 1, timeout=20)
            assert await wait_for(lambda: job.push.verified, timeout=20)

            node.kill()
            down_at = time.monotonic()
            # Down long enough that the back-off alone would keep the follower away
            # longer than BOUND after the return.
            assert await wait_for(lambda: job.retry_at - time.monotonic() > BOUND + 1, timeout=60, step=0.02)
            probes = job.recovery.probes
            down_for = time.monotonic() - down_at
            assert job.recovery.seen_down and probes >= 1
            # A node that stays down costs about a probe every PROBE_INTERVAL, not more.
            assert probes <= down_for / PROBE_INTERVAL * 1.4 + 1

            await node.start()
            returned = time.monotonic()
            assert (await append(session, node.admin_url, helpline.admin_token(), [pdq_line(2)]))[0] == 200
            await wait_for(lambda: db.follow.get_log("helpline.example/log").size == 2, timeout=BOUND, step=0.02)
            back_in = time.monotonic() - returned
            print(f"down {time.monotonic() - down_at:.1f} s; follower back {back_in:.2f} s after the return")
            # Back on the push channel too, not left polling until its own back-off ends.
            assert await wait_for(lambda: job.push.usable(time.monotonic()) and job.push.verified, timeout=BOUND)
            assert job.failures == 0 and not job.recovery.probing
    finally:
        if follower is not None:
            await follower.stop()
        node.stop()
        db.close()


def test_only_unreachable_nodes_are_probed():
    recovery = Recovery()
    recovery.failed(None)          # the node answered, with something wrong: it is up
    assert not recovery.probing
    recovery.failed("timeout")     # no answer in time: probe, but it was not seen down
    assert recovery.probing and not recovery.seen_down
    recovery.failed("down")        # refused or closed: seen down
    assert recovery.probing and recovery.seen_down
    recovery.succeeded()
    assert not recovery.probing and not recovery.seen_down


async def test_a_slow_node_that_answers_probes_keeps_its_back_off(tmp_path):
    """A round that timed out, then a probe that answers: the node is up (slow, not
    dead), so the back-off runs its course instead of a round every second."""

    class Answers:
        def __init__(self, ok):
            self.ok = ok

        async def probe(self, timeout):
            return self.ok

    recovery = Recovery()
    recovery.failed("timeout")
    assert not await recovery.probe(Answers(True), "slow.example/log")
    assert not recovery.probing
    recovery.failed("timeout")
    assert not await recovery.probe(Answers(False), "slow.example/log") and recovery.seen_down
    assert await recovery.probe(Answers(True), "slow.example/log")  # it was down, and is back
