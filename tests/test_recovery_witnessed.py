"""A platform that requires a witness's cosignature of a helpline's checkpoints holds the
helpline's first new checkpoint, cosigned, within seconds of the helpline's return
from an outage (issue 22): the helpline's witness submitter does not hold that
checkpoint back for its declared interval (node/witness/submit.py), and the platform's
push request wakes on the cosigned copy (following.md §4.1).

Real nodes over real HTTP on 127.0.0.1: the helpline is an `ncii-node serve` process,
SIGKILLed and started again on the same port; the witness and the platform run in this
process (their state is read directly)."""

from __future__ import annotations

import time

import aiohttp

from node.cli import main as cli_main
from node.store import open_db
from node.witness.policy import NotEnoughCosignatures, require_cosignatures
from publish_support import ORIGIN, append, make_datadir, pdq_line, wait_for
from serve_support import NodeProcess, free_port
from test_witness_publish import get_checkpoint, start_witness

#: The helpline's declared add-checkpoint interval: long, so that a checkpoint held
#: back for it would be seen (the default is 1 s).
INTERVAL = 6.0
#: The platform must hold the cosigned new checkpoint this soon after the return (the
#: issue's target is 2 s; the rest is slack for a loaded machine, still below INTERVAL).
BOUND = 4.0


async def witnessed(tmp_path, start_node, interval: float):
    """A helpline (read-restricted, its declared add-checkpoint `interval`) witnessed by
    a running witness node, and a platform registered as its reader."""
    helpline = make_datadir(tmp_path, name="helpline", origin=ORIGIN, public_read=False,
                            settings={"witness": {"add_checkpoint_interval": interval}})
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log", role="platform")
    witness = await start_witness(tmp_path, "w1", helpline.load_log_signer().verifier_key(), start_node)
    db = open_db(helpline.db_path)
    db.witness.add_log_witness(witness.cosigner_vkey, witness.public_url, "w1")
    db.close()
    assert cli_main(["readers", "add", "--dir", str(helpline.root),
                     platform.load_request_signer().verifier_key()]) == 0
    return helpline, platform, witness


async def follow(session, start_node, platform, served, helpline, witness):
    """The platform follows the helpline (`served`: its public and admin URLs) and
    requires the witness's cosignature; started, it holds the helpline's first entry
    and waits on the push channel. Returns the platform's follow job."""
    assert cli_main(["follow", "add", "--dir", str(platform.root), served.public_url, "--vkey",
                     helpline.load_log_signer().verifier_key()]) == 0
    assert cli_main(["witness", "require", "--dir", str(platform.root), ORIGIN, "-k", "1",
                     "--witness", witness.cosigner_vkey]) == 0
    job = (await start_node(platform)).node.follower.jobs[ORIGIN]
    assert (await append(session, served.admin_url, helpline.admin_token(), [pdq_line(1)]))[0] == 200
    assert await wait_for(lambda: job.verified_size == 1, timeout=20)
    assert await wait_for(lambda: job.push.verified, timeout=20)
    return job


async def test_a_platform_requiring_the_witness_is_back_within_seconds_of_a_helpline_s_return(
        tmp_path, start_node):
    helpline, platform, witness = await witnessed(tmp_path, start_node, INTERVAL)
    node = NodeProcess(helpline, port=free_port(), verbose=True)
    await node.start()
    platform_db = open_db(platform.db_path)
    token = helpline.admin_token()

    def held() -> int:
        return platform_db.follow.get_log(ORIGIN).size or 0

    try:
        async with aiohttp.ClientSession() as session:
            job = await follow(session, start_node, platform, node, helpline, witness)
            assert held() == 1

            # A second checkpoint, held back by the declared interval: the helpline dies
            # before its witness cosigned it, so the platform never takes it.
            assert (await append(session, node.admin_url, token, [pdq_line(2)]))[0] == 200
            note = await get_checkpoint(session, node)
            assert note.split(b"\n")[1] == b"2"
            try:
                require_cosignatures(note, [witness.cosigner_vkey], 1)
                raise AssertionError("checkpoint 2 was cosigned within the declared interval")
            except NotEnoughCosignatures:
                pass
            # The platform has given the push channel up, as a 401 makes it do (in the soak a
            # retried request's signature was refused as a replay): a node back from an
            # outage is looked at afresh, its push channel included.
            job.push.path, job.push.checked_at = None, time.monotonic()
            node.kill()
            # Down long enough that the platform's back-off alone would keep it away
            # longer than BOUND after the return.
            assert await wait_for(lambda: job.retry_at - time.monotonic() > BOUND + 1, timeout=60, step=0.02)
            assert held() == 1

            await node.start()
            returned = time.monotonic()
            status, acks = await append(session, node.admin_url, token, [pdq_line(3)])
            assert status == 200 and acks[-1]["checkpoint_size"] == 3
            published = time.monotonic() - returned
            assert await wait_for(lambda: held() == 3, timeout=BOUND + 5, step=0.02)
            back_in = time.monotonic() - returned
            print(f"helpline published {published:.2f} s after its return; the platform requiring the "
                  f"witness held it {back_in:.2f} s after the return")
            assert back_in < BOUND, f"the platform held the cosigned checkpoint {back_in:.2f} s after the return"
            # What the platform holds is the cosigned checkpoint, and it waits on the push
            # channel again (it is not left polling).
            require_cosignatures(platform_db.follow.get_log(ORIGIN).checkpoint_note, [witness.cosigner_vkey], 1)
            assert await wait_for(lambda: job.push.usable(time.monotonic()) and job.push.verified, timeout=BOUND)
    finally:
        node.stop()
        platform_db.close()


async def test_a_push_request_after_a_checkpoint_awaiting_cosignatures_wakes_on_its_cosigned_copy(
        tmp_path, start_node):
    """following.md §4.1: a pushed checkpoint that lacks the required cosignature is not
    applied, and the next push request names it, so it is answered by its cosigned copy
    the moment the helpline serves it: no poll, no back-off in between."""
    interval = 3.0
    helpline, platform, witness = await witnessed(tmp_path, start_node, interval)
    publisher = await start_node(helpline)
    platform_db = open_db(platform.db_path)
    token = helpline.admin_token()

    def served_cosigned(size: int) -> bool:
        note = publisher.node.sequencer.published.note
        try:
            require_cosignatures(note, [witness.cosigner_vkey], 1)
        except NotEnoughCosignatures:
            return False
        return int(note.split(b"\n")[1]) == size

    try:
        async with aiohttp.ClientSession() as session:
            job = await follow(session, start_node, platform, publisher, helpline, witness)

            # Checkpoint 2 is pushed at once, without its cosignature (the declared interval
            # holds its round back): refused, and the platform waits on its cosigned copy.
            assert (await append(session, publisher.admin_url, token, [pdq_line(2)]))[0] == 200
            assert await wait_for(lambda: "checkpoint not applied" in (platform_db.follow.get_log(ORIGIN).last_error
                                                                       or ""), timeout=interval, step=0.02)
            assert not served_cosigned(2)
            rounds = job.rounds
            assert await wait_for(lambda: not job.push.verified and job.push.etag is not None, timeout=interval)
            asked = []  # the push requests sent from now on (the real client, counted)
            next_checkpoint = job.client.next_checkpoint

            async def counted(*args):
                asked.append(args)
                return await next_checkpoint(*args)

            job.client.next_checkpoint = counted

            assert await wait_for(lambda: served_cosigned(2), timeout=interval + 5, step=0.01)
            cosigned_at = time.monotonic()
            assert await wait_for(lambda: platform_db.follow.get_log(ORIGIN).size == 2, timeout=10, step=0.01)
            took = time.monotonic() - cosigned_at
            print(f"the platform held the cosigned copy {took:.2f} s after it was served")
            assert took < 1.0
            # Woken, not polled: the one waiting push request brought it, in one round.
            assert await wait_for(lambda: job.rounds > rounds, timeout=2, step=0.01)
            assert job.rounds == rounds + 1 and job.push.verified
            assert job.failures == 0 and job.push.failures == 0
            # One request waited for the cosigned copy (naming the refused checkpoint's
            # ETag), plus the one now waiting for the next checkpoint: no spinning.
            assert len(asked) <= 2, asked
    finally:
        platform_db.close()
