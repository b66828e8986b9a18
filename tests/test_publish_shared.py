"""Several sequencers of one log on one PostgreSQL database (node/log/sequencer.py,
"Several processes"): the one holding the lease sequences; another accepts appends
through pending_entries and returns their indices once published; when the holder
stops, the other takes over and the log goes on from the same tree."""

from __future__ import annotations

import asyncio

import pytest

from node.log.lease import PostgresLease
from node.log.sequencer import Sequencer
from node.store import open_db
from protocol.merkle import leaf_hash
from protocol.entries import Submission, encode_entry
from publish_support import make_datadir

pytestmark = pytest.mark.timeout(90)


def entry(i: int) -> bytes:
    return encode_entry(Submission("pdq", (i + 1).to_bytes(32, "big"), 90, (), 0))


def shared_datadir(tmp_path, pg_url):
    return make_datadir(tmp_path, interval=0.01, settings={"database": {"url": pg_url}})


async def started(datadir):
    lease = PostgresLease(datadir.db_path, poll_interval=0.1)
    await lease.start()
    sequencer = Sequencer(type(datadir)(datadir.root), lease=lease)
    await sequencer.start()
    return sequencer, lease


async def test_the_other_process_appends_through_the_holder_then_takes_over(tmp_path, pg_url):
    datadir = shared_datadir(tmp_path, pg_url)
    first, first_lease = await started(datadir)
    await asyncio.wait_for(first_lease.acquired(), 15)
    second, second_lease = await started(datadir)
    try:
        assert first_lease.held and not second_lease.held
        own = await first.append([entry(0)])
        theirs, mine = await asyncio.gather(second.append([entry(1), entry(2)]), first.append([entry(3)]))
        indices = sorted(a.index for a in own + theirs + mine)
        assert indices == [0, 1, 2, 3]
        for appended, data in zip(theirs, [entry(1), entry(2)]):
            assert appended.leaf_hash == leaf_hash(data) and appended.checkpoint_size > appended.index
        # The other serves the latest checkpoint too (announced, or looked up).
        await asyncio.wait_for(_until(lambda: second.published and second.published.size == 4), 15)

        await first.stop()
        await first_lease.stop()
        await asyncio.wait_for(second_lease.acquired(), 15)
        later = await asyncio.wait_for(second.append([entry(4)]), 10)
        assert later[0].index == 4 and later[0].checkpoint_size == 5
        db = open_db(datadir.db_path)
        try:
            stored = [bytes(row[1]) for row in db.log.iter_entries(0, 5)]
            assert sorted(stored) == sorted(entry(i) for i in range(5))
            assert [a.leaf_hash for a in theirs] == [leaf_hash(stored[a.index]) for a in theirs]
            assert db.execute("SELECT count(*) FROM pending_entries").fetchone()[0] == 0
            epoch = db.execute("SELECT epoch FROM sequencer_lease").fetchone()[0]
            assert epoch == 2
            assert db.log.latest_checkpoint().note == second.published.note and second.published.size == 5
        finally:
            db.close()
    finally:
        await second.stop()
        await second_lease.stop()
        await first.stop()
        await first_lease.stop()


async def _until(probe):
    while not probe():
        await asyncio.sleep(0.05)
