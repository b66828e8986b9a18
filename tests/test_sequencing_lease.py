"""The sequencing lease (node/log/lease.py) on a real PostgreSQL: one holder at a time,
takeover after the holder's process is killed, and the fence that refuses a former
holder's publishing transaction -- in both orders of the race."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from node.log.lease import DataDirLease, HeldLease, PostgresLease
from node.store import open_db
from node.store.pg_lease import Fenced, check_epoch

pytestmark = pytest.mark.timeout(60)


def Conn(url):
    """A publishing connection, as the sequencer's (node.store.pg.PgDatabase)."""
    return open_db(url)


@pytest.fixture
def reset(pg_url):
    """A fresh database of the node's schema (no lease taken yet), and a table
    standing for what a sequencer publishes."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE published (size BIGINT PRIMARY KEY)")
    return pg_url


async def wait_held(lease, seconds=8.0):
    return await asyncio.wait_for(lease.acquired(), seconds)


async def test_one_holder_then_the_other_after_stop(reset):
    a, b = PostgresLease(reset, poll_interval=0.1), PostgresLease(reset, poll_interval=0.1)
    await a.start()
    await b.start()
    try:
        assert await wait_held(a) == 1
        await asyncio.sleep(0.5)
        assert a.held and not b.held and b.epoch is None
        lost = []
        a.on_lost.append(lambda: lost.append(True))
        await a.stop()
        assert lost == [True]
        assert await wait_held(b, 3.0) == 2
        db = Conn(reset)
        with b.fenced(db):
            db.execute("INSERT INTO published VALUES (?)", (1,))
        with pytest.raises(Fenced):
            with a.fenced(db):  # a stopped: it holds no epoch
                db.execute("INSERT INTO published VALUES (2)")
        db.close()
    finally:
        await a.stop()
        await b.stop()


HOLDER = """
import asyncio, sys
from node.log.lease import PostgresLease
async def main():
    lease = PostgresLease(sys.argv[1], poll_interval=0.1)
    await lease.start()
    print(await lease.acquired(), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_takeover_after_kill_9_of_the_holder(reset):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, reset], stdout=subprocess.PIPE, text=True)
    waiting = PostgresLease(reset, poll_interval=0.1)
    try:
        epoch = int(await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 20))
        await waiting.start()
        await asyncio.sleep(0.5)
        assert not waiting.held
        killed = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        assert await wait_held(waiting, 5.0) == epoch + 1
        print(f"takeover after kill -9: {time.monotonic() - killed:.2f} s")
        db = Conn(reset)
        with pytest.raises(Fenced):  # the dead holder's epoch is refused forever after
            with db.atomic():
                check_epoch(db, epoch)
        db.close()
    finally:
        holder.kill()
        holder.wait()
        await waiting.stop()


async def test_a_paused_holder_cut_off_cannot_publish(reset):
    """The holder's session is dropped (what the server does after the keepalives when a
    holder is paused or partitioned); another takes the lease; the former holder, which
    has not noticed yet, tries to publish with its epoch: refused, nothing stored."""
    a = PostgresLease(reset, poll_interval=3600)  # never polls again: "paused"
    b = PostgresLease(reset, poll_interval=0.1)
    await a.start()
    await b.start()
    db = Conn(reset)
    try:
        old = await wait_held(a)
        with psycopg.connect(reset, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'ncii-node sequencer lease' AND pid <> pg_backend_pid() "
                          "AND pid = %s", (a._session.conn.info.backend_pid,))
        assert await wait_held(b, 5.0) == old + 1
        assert a.held  # it does not know yet
        with pytest.raises(Fenced):
            with a.fenced(db):
                db.execute("INSERT INTO published VALUES (10)")
        assert db.execute("SELECT count(*) FROM published").fetchone()[0] == 0
    finally:
        db.close()
        await a.stop()
        await b.stop()


async def test_a_publication_under_way_delays_the_new_epoch(reset):
    """The other order: the former holder's publishing transaction checked its epoch
    first; the new holder's increment waits for it to commit, and so then sees it."""
    a = PostgresLease(reset, poll_interval=3600)
    await a.start()
    old = await wait_held(a)
    db = Conn(reset)
    committed = threading.Event()
    release = threading.Event()

    def publish():
        with a.fenced(db):
            db.execute("INSERT INTO published VALUES (5)")
            release.wait(10)
        committed.set()

    thread = threading.Thread(target=publish)
    thread.start()
    await asyncio.sleep(0.3)
    with psycopg.connect(reset, autocommit=True) as admin:  # a's session dropped
        admin.execute("SELECT pg_terminate_backend(%s)", (a._session.conn.info.backend_pid,))
    b = PostgresLease(reset, poll_interval=0.1)
    start = asyncio.create_task(b.start())
    try:
        await asyncio.sleep(1.0)
        assert not b.held  # its increment waits on the row a's transaction holds
        release.set()
        assert await wait_held(b, 5.0) == old + 1
        assert committed.is_set()
        with b.fenced(db):
            assert db.execute("SELECT size FROM published").fetchall() == [(5,)]
    finally:
        release.set()
        thread.join()
        await start
        db.close()
        await a.stop()
        await b.stop()


async def test_sqlite_lease_is_the_datadir_flock(tmp_path):
    from publish_support import make_datadir
    from node.datadir import DataDirError
    datadir = make_datadir(tmp_path)
    lease = DataDirLease(datadir)
    await lease.start()
    try:
        assert lease.held and await lease.acquired() == 1
        with lease.fenced("db") as db:
            assert db == "db"  # no transaction of its own: SQLite's publication is unchanged
        other = DataDirLease(type(datadir)(datadir.root))
        with pytest.raises(DataDirError):
            await other.start()
    finally:
        await lease.stop()
    assert HeldLease().held
