"""When acknowledgements are published (at once after a withdrawal, else at most one
per interval; after a stop, late but true) and how a helpline treats acknowledgements
that are forged or name a tree it never had."""

from __future__ import annotations

import asyncio
import logging

from acks_support import HELPLINE, entries_of, running_pair
from follow_support import Harness, LogServer, StaticLog
from node.acks.report import case_platforms
from node.store import follow as follow_store
from node.store import log as log_store
from node.web.app import RunningNode
from node.web.follow_routes import FOLLOW_SERVICE
from protocol.acknowledgements import acknowledge
from protocol.cosignature import CosignatureSigner
from protocol.entries import encode_entry
from protocol.merkle import leaf_hash
from publish_support import wait_for


def acks_in(node) -> list[dict]:
    return [e for _, e in entries_of(node) if e["kind"] == "acknowledgement"]


async def test_batched_but_a_withdrawal_is_acknowledged_at_once(tmp_path):
    async with running_pair(tmp_path, ack_interval=30.0) as pair:
        first = await pair.create_case(2, seed=1)
        await pair.wait_applied(first)  # the first acknowledgement goes out at once
        assert len(acks_in(pair.platform)) == 1
        second = await pair.create_case(2, seed=2)
        size = pair.helpline.context.sequencer.published.size
        await wait_for(lambda: follow_store.get_log(pair.platform.context.db, HELPLINE).size == size)
        await asyncio.sleep(1.0)
        assert len(acks_in(pair.platform)) == 1  # applied, but the interval has not passed
        assert not (await pair.status(second))["platforms"][0]["fingerprints"]["applied"]
        await pair.withdraw(first)
        answer = await pair.wait_applied(first, "withdrawal", timeout=10)  # not 30 s later
        assert answer["platforms"][0]["withdrawal"]["applied"]
        # That acknowledgement covers the second case too.
        assert (await pair.status(second))["platforms"][0]["fingerprints"]["applied"]
        assert len(acks_in(pair.platform)) == 2


async def test_applied_before_a_stop_is_acknowledged_at_the_next_start(tmp_path):
    async with running_pair(tmp_path) as pair:
        platform = pair.platform
        config = platform.datadir.config
        config.acknowledgements.enabled = False  # as if it had stopped before acknowledging
        platform.datadir.save_config(config)
        await platform.stop()
        pair.platform = await RunningNode(type(platform.datadir)(platform.datadir.root)).start("127.0.0.1", 0)
        follow_store.remove_log(pair.helpline.context.db, pair.platform.context.config.node.origin)
        follow_store.add_log(pair.helpline.context.db, pair.platform.context.config.node.origin,
                             pair.platform.public_url, pair.platform.context.log_vkey, name="Platform A",
                             interval=0.05)
        await pair.helpline.app[FOLLOW_SERVICE]["service"].reload()
        case = await pair.create_case(2)
        size = pair.helpline.context.sequencer.published.size
        await wait_for(lambda: follow_store.get_log(pair.platform.context.db, HELPLINE).size == size)
        await asyncio.sleep(0.5)
        assert acks_in(pair.platform) == []
        # Restarted with acknowledgements on: what it applied is acknowledged now.
        datadir = pair.platform.datadir
        await pair.platform.stop()
        config = datadir.config
        config.acknowledgements.enabled = True
        datadir.save_config(config)
        pair.platform = await RunningNode(type(datadir)(datadir.root)).start("127.0.0.1", 0)
        follow_store.remove_log(pair.helpline.context.db, pair.platform.context.config.node.origin)
        follow_store.add_log(pair.helpline.context.db, pair.platform.context.config.node.origin,
                             pair.platform.public_url, pair.platform.context.log_vkey, name="Platform A",
                             interval=0.05)
        await pair.helpline.app[FOLLOW_SERVICE]["service"].reload()
        await pair.wait_applied(case)
        [ack] = acks_in(pair.platform)
        assert ack["size"] == size


async def test_forged_and_false_acknowledgements_are_recorded_as_such(tmp_path, caplog):
    """The helpline follows a platform log holding: a true acknowledgement of its log, one
    whose cosignature is forged, one of a root it never had, one of a size it never
    published. Only the true one counts for a case; the false ones are logged
    CRITICAL and counted."""
    own = StaticLog(HELPLINE)  # stands for the helpline's own published log
    own.append(*[encode_entry_submission(i) for i in range(4)])
    harness = Harness(tmp_path)
    log_store.insert_entries(harness.db, 0, own.entries, own.leaves)
    from protocol.checkpoint import Checkpoint as Cp

    log_store.record_checkpoint(harness.db, 4, own_root(own, 4), b"note", published_at=1742300000.0)
    platform = StaticLog("platform.example/log")
    key = CosignatureSigner(platform.origin, bytes([5]) * 32)
    true = acknowledge(key, Cp(HELPLINE, 4, own_root(own, 4)), 1742300001000)
    forged = acknowledge(CosignatureSigner(platform.origin, bytes([6]) * 32), Cp(HELPLINE, 4, own_root(own, 4)),
                         1742300002000)
    forged = type(forged)(*[getattr(forged, f) for f in ("origin", "size", "root_hash", "timestamp", "milliseconds")],
                          key.verifier().public_key, forged.signature)  # key swapped: the signature fails
    other_root = acknowledge(key, Cp(HELPLINE, 4, leaf_hash(b"another history")), 1742300003000)
    never = acknowledge(key, Cp(HELPLINE, 3, own_root(own, 3)), 1742300004000)  # size 3 never published
    platform.append(*(encode_entry(a) for a in (other_root, forged, never, true)))
    server = await LogServer(platform).start()
    try:
        follower = harness.follow(platform.origin, server.url, platform.vkey)
        follower.own_origin = HELPLINE
        with caplog.at_level(logging.WARNING):
            await follower.sync_once()
    finally:
        await server.stop()
        await harness.close()
    from node.store import open_db

    db = open_db(harness.db_path)
    rows = {r[0]: r[1:] for r in db.execute("SELECT from_idx, valid, root_ok, step FROM follow_acks")}
    assert rows == {0: (1, 0, 0), 1: (0, 1, 0), 2: (1, 0, 0), 3: (1, 1, 1)}
    assert [a.from_index for a in follow_store.false_acks(db, HELPLINE)] == [0, 1, 2]
    assert follow_store.ack_covering(db, platform.origin, HELPLINE, 3) == 1742300001000
    [entry] = case_platforms(db, HELPLINE, [(3, 4)], None)
    assert entry["fingerprints"] == {"applied": True, "at": "2025-03-18T12:13:21Z"}
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 2 and all("never had" in r.getMessage() for r in critical)
    db.close()


def encode_entry_submission(i: int) -> bytes:
    from follow_support import pdq_entry

    return pdq_entry(i + 1)


def own_root(log: StaticLog, size: int) -> bytes:
    from protocol.merkle import root_of

    return root_of(log.leaves[:size])
