"""The sequencing lease: which process of a node sequences its log, and the fence that
stops any other from publishing.

    lease = lease_for(datadir)        # DataDirLease (SQLite) or PostgresLease (dsn)
    await lease.start()               # SQLite: the data directory's flock, held at once
    lease.held                        # whether this process sequences now
    await lease.acquired()            # waits until it does; returns the epoch
    with lease.fenced(db): ...        # a publishing transaction, refused (Fenced) once
                                      #   another process took the lease
    lease.on_lost                     # callbacks, called on the event loop when lost
    await lease.stop()

Every `serve` process accepts reads, appends and cases; exactly one sequences: it
assigns indices, writes tiles, signs and records checkpoints (node/log/sequencer.py).

SQLite (DataDirLease): the database is a file on one machine, written by one process;
the flock of DIR/.lock is taken at start and held for the life of the process (the
kernel drops it when the process dies, even by SIGKILL). The lease is always held, and
no fence is needed: no other process can open the log for writing.

PostgreSQL (PostgresLease): any number of processes share one database. Each polls
`pg_try_advisory_lock` on a dedicated session connection (node/store/pg_lease.py)
every POLL_INTERVAL seconds; the one that gets it increments `sequencer_lease.epoch`
under the row's lock and sequences with that epoch. PostgreSQL releases the lock when
the session ends: at once when the process dies (its socket closes), within about
KEEPALIVE_SECONDS when its host goes silent (TCP keepalives of the session, set on
both sides). So a dead sequencer is replaced within POLL_INTERVAL + KEEPALIVE_SECONDS
+ the recovery of its unpublished entries (target: 5 s).

Why a former sequencer can never publish (fencing). Holding the lock is not enough:
a sequencer may be paused (a GC pause, SIGSTOP, a VM migration) or cut off just long
enough for its session to be dropped and another process to take the lock, and then
resume in the middle of a batch. So every publishing transaction -- storing a batch
at its indices, recording a checkpoint (the moment of publication) -- starts with
`check_epoch`: it reads the epoch row FOR SHARE, in that same transaction, and rolls
back unless the epoch is still its own. Two cases, by which commits first:
  * the publishing transaction takes the row first: the new holder's `take_epoch`
    (FOR UPDATE, via UPDATE) waits until it has committed; the new holder then reads
    the log (stored entries, latest checkpoint) AFTER its epoch commits, so it sees
    that publication and extends it;
  * the new holder's increment commits first: the former sequencer's check reads the
    new epoch and its transaction rolls back; nothing of it is stored or published.
There is no third order: the row lock serialises them. So every recorded checkpoint
was recorded by the holder of the epoch current at its commit, after that holder had
read every earlier checkpoint: each extends the one before it (the crash argument of
node/log/sequencer.py, whose re-publication of stored-but-unpublished entries runs
when a process takes the lease, is the same as after a restart). Tiles are derived
from stored entries only, so a tile a fenced sequencer wrote before being refused is
byte-identical to the one its successor writes.

A process that loses its lease (session gone, lock no longer held) stops sequencing
at once: its waiting appends are told the log is unavailable (nothing of theirs
was acknowledged), and it polls to take the lease again like any other process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging

from node.datadir import DataDir
from node.errors import error_line
from node.stopping import stop_task
from node.store import is_postgres, open_db

log = logging.getLogger(__name__)

#: Seconds between a waiting process's attempts to take the lease, and between the
#: holder's checks that it still holds it.
POLL_INTERVAL = 0.5
#: Seconds a check of the lease session may take before the lease is taken as lost.
CHECK_TIMEOUT = 3.0
#: Seconds a starting process tries to take the lease before it starts without it.
START_WAIT = 1.0
#: While the database does not answer: the wait between two attempts doubles from
#: POLL_INTERVAL up to this many seconds (a restarted server is found within it).
OUTAGE_POLL_MAX = 2.0


class HeldLease:
    """Always held, never fenced: a sequencer that is the only possible writer (tests
    that build one directly; the base of DataDirLease)."""

    epoch = 1
    held = True

    def __init__(self):
        self.on_lost: list = []

    async def start(self) -> None:
        pass

    async def acquired(self) -> int:
        return self.epoch

    def fenced(self, db):
        return contextlib.nullcontext(db)

    async def stop(self) -> None:
        pass

    def describe(self) -> dict:
        return {"sequencer": self.held, "epoch": self.epoch}


class DataDirLease(HeldLease):
    """SQLite: the data directory's flock, held for the life of the process."""

    def __init__(self, datadir: DataDir):
        super().__init__()
        self.datadir = datadir

    async def start(self) -> None:
        self.datadir.acquire_lock()  # raises DataDirError when another process serves DIR

    async def stop(self) -> None:
        self.datadir.release_lock()


class PostgresLease:
    """PostgreSQL: an advisory lock on a dedicated session, and the fencing epoch."""

    def __init__(self, target, *, poll_interval: float = POLL_INTERVAL, datadir: DataDir | None = None):
        self.target = target  # a PostgreSQL URL (node.store.pg.PgTarget)
        # A shared flock of DIR/lock says "a node serves DIR" to the commands (append,
        # cases, feedback), whichever of its processes runs here.
        self.datadir = datadir
        self.poll_interval = poll_interval
        self.epoch: int | None = None
        self.on_lost: list = []
        self._held = asyncio.Event()
        self._session = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._failing_since: float | None = None  # loop time of the first failed poll of an outage
        self._failures = 0
        # Every use of the session, its close included, runs in this one thread, in
        # order: a call given up (a time limit, a cancellation) still runs to its end
        # before the close. Closing a psycopg connection while another thread waits on
        # it frees what that thread reads, and its socket number, reused by the next
        # connection, had that thread steal the new connection's answer: a start hung.
        self._session_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease-session")

    @property
    def held(self) -> bool:
        return self._held.is_set()

    async def start(self) -> None:
        from node.store.pg_lease import LeaseSession  # psycopg only where PostgreSQL is used
        if self.datadir is not None:
            self.datadir.acquire_lock(shared=True)
        try:
            await asyncio.to_thread(lambda: open_db(self.target).close())  # the lease's table migrated
            self._session = await self._in_session_thread(LeaseSession, self.target)  # fails loudly: a bad URL
        except BaseException:
            if self.datadir is not None:
                self.datadir.release_lock()
            raise
        # A process restarted alone must not serve as a follower while the server is
        # still letting go of its former session: wait a little for the lease first.
        deadline = asyncio.get_running_loop().time() + START_WAIT
        await self._poll_once()
        while not self.held and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(min(self.poll_interval, 0.1))
            await self._poll_once()
        self._task = asyncio.create_task(self._run(), name="sequencer-lease")

    async def acquired(self) -> int:
        while True:
            await self._held.wait()
            if self.epoch is not None:
                return self.epoch

    def fenced(self, db):
        """The caller's publishing transaction, refused unless our epoch is current."""
        from node.store.pg_lease import Fenced, check_epoch
        epoch = self.epoch

        @contextlib.contextmanager
        def transaction():
            if epoch is None:
                raise Fenced("this process does not hold the sequencer lease")
            with db.atomic():
                check_epoch(db, epoch)
                yield db
        return transaction()

    async def stop(self) -> None:
        self._stopping = True
        await stop_task(self._task, "the sequencer lease")
        self._task = None
        if self.held:
            log.info("sequencer lease released (epoch %s)", self.epoch)
        self._drop_held(None)
        if self._session is not None:
            session, self._session = self._session, None
            # Ends the session: the lock goes with it. Bounded: a server gone silent
            # drops the session itself (keepalives), so the process need not wait.
            await asyncio.wait([asyncio.ensure_future(self._in_session_thread(session.close))], timeout=CHECK_TIMEOUT)
        self._session_thread.shutdown(wait=False)  # its queue still closes the session
        if self.datadir is not None:
            self.datadir.release_lock()

    def describe(self) -> dict:
        return {"sequencer": self.held, "epoch": self.epoch}

    def _in_session_thread(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._session_thread, fn, *args)

    async def _run(self) -> None:
        while not self._stopping:  # (Python 3.11's wait_for may swallow a cancellation)
            # While the database does not answer, attempts space out (bounded back-off).
            await asyncio.sleep(min(OUTAGE_POLL_MAX, self.poll_interval * 2 ** min(self._failures, 8)))
            await self._poll_once()

    async def _poll_once(self) -> None:
        from node.store.pg_lease import LeaseSession
        try:
            if self._session is None:
                self._session = await asyncio.wait_for(self._in_session_thread(LeaseSession, self.target),
                                                       CHECK_TIMEOUT)
            if self.held:
                if not await asyncio.wait_for(self._in_session_thread(self._session.still_held), CHECK_TIMEOUT):
                    self._drop_held("the lock is no longer held by our session")
            elif await asyncio.wait_for(self._in_session_thread(self._session.try_lock), CHECK_TIMEOUT):
                self.epoch = await asyncio.wait_for(self._in_session_thread(self._session.take_epoch), CHECK_TIMEOUT)
                self._held.set()
                log.info("sequencer lease taken (epoch %d): this process sequences the log", self.epoch)
        except (asyncio.TimeoutError, OSError, Exception) as exc:  # noqa: BLE001 -- any failure: not held
            why = error_line(exc) if str(exc).strip() else f"{type(exc).__name__}: no answer within the time limit"
            self._drop_held(f"the lease session failed ({why})")
            self._failed(why)
            session, self._session = self._session, None
            if session is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._in_session_thread(session.close), CHECK_TIMEOUT)
            return
        self._answered()

    def _failed(self, why: str) -> None:
        """One WARNING per outage of the database (not one per attempt)."""
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = asyncio.get_running_loop().time()
            log.warning("database: the lease session cannot reach PostgreSQL (%s); this process does not sequence "
                        "until it answers again (retrying every %.1f s at most, quietly)", why, OUTAGE_POLL_MAX)

    def _answered(self) -> None:
        if self._failing_since is not None:
            log.info("database: PostgreSQL answers the lease session again (after %.1f s)",
                     asyncio.get_running_loop().time() - self._failing_since)
        self._failing_since, self._failures = None, 0

    def _drop_held(self, why: str | None) -> None:
        if not self.held:
            return
        self._held.clear()
        epoch, self.epoch = self.epoch, None
        if why is not None:
            log.warning("sequencer lease lost (epoch %s): %s; this process stops sequencing", epoch, why)
        for callback in list(self.on_lost):
            try:
                callback()
            except Exception:  # noqa: BLE001
                log.exception("sequencer lease: an on_lost callback failed (ignored)")


def lease_for(datadir: DataDir):
    """The lease of a node: PostgreSQL's when its database is one, else the flock."""
    target = datadir.db_path
    return PostgresLease(target, datadir=datadir) if is_postgres(target) else DataDirLease(datadir)
