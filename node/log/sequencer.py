"""The sequencer: the one writer of a node's log.

Appends wait in a pending pool. The pool is taken as one batch, given consecutive
indices, and published at once when the log is idle; under load, checkpoints come at
most every `sequencing_interval` seconds (default 0.025) and one at a time, so what
arrives while a batch is being published waits and goes into the next batch (group
commit: the batch grows with the load, the cost of a checkpoint is shared by more
entries, and an append waits at most one interval plus two publications):

    (1) STORE  the batch's entries, with their indices, in SQLite, in one transaction
               (synchronous=FULL: durable when the commit returns);
    (2) TILES  every tile and entry bundle the new tree size needs -- full tiles at
               every level completed by the batch, the partial tiles and the partial
               bundle of the new size -- each to a temp file, fsync, rename, fsync dir
               (the temp files may be written while (1) commits; the renames that put
               them in the tiles directory happen only after (1) committed);
    (3) SIGN   the checkpoint and record it in the database. Recording it is the
               moment of publication: from then on the HTTP server serves it and the
               tiles up to its size, and the appends of the batch are acknowledged with
               their index and this checkpoint's size. A copy goes to <tiles>/checkpoint
               (for static serving; rewritten from the database at every start).

Why a crash at any instant is harmless (spec/parts/publishing.md says the same):

  * Tiles are a deterministic function of the stored entries. Step (1) precedes (2),
    so every tile file on disk is derived from entries already durable in the
    database; a tile written again after a crash is byte-identical (the tile store
    even compares instead of overwriting, and stops on a difference).
  * On start-up, entries stored beyond the last recorded checkpoint (a crash between
    (1) and the end of (3)) are re-published, all of them in one batch, before any new
    entry is accepted. They keep their indices, so the new checkpoint extends the last
    one: it cannot be inconsistent with any checkpoint published before. If the crash
    came after the checkpoint was served but before its record reached the disk (the
    record is committed without waiting for the disk: only a power loss can undo it,
    and then no later transaction survived either, so exactly its entries are stored),
    the re-published checkpoint has the same text, and Ed25519 signatures are
    deterministic, so it is the very same note.
  * Nothing unpublished is ever served: the HTTP layer serves no tile or bundle beyond
    the size of the latest recorded checkpoint. So no client can fetch a tile that
    could later change, and no client is acknowledged an entry that a crash could lose.
  * Indices are never reused: the next batch starts at the number of stored entries,
    which only grows; a failed step (1) stores nothing (the transaction rolls back).
  * One writer: only the holder of the sequencing lease (node/log/lease.py) sequences.
    On SQLite that is the data directory's flock, held for the life of the process, so
    two processes can never sequence the same log. On PostgreSQL the lease passes from
    process to process; every publishing transaction -- (1), and recording the
    checkpoint in (3) -- runs inside `lease.fenced(db)`, which rolls it back unless
    this process's epoch is still the current one, so a former holder (paused, cut off)
    can store or publish nothing once another has taken over. A process that takes the
    lease starts exactly as after a restart (_open: stored entries re-published first),
    and one that loses it fails its waiting appends (none was acknowledged) and waits.

A failure in (2) or (3) (full disk, unwritable directory) publishes nothing: the
checkpoint stays where it was, the waiting appends get an error saying their entries
are stored and will be published, and publishing the stored entries is retried every
second (or every interval, if longer) before new appends are taken again.

Several processes (a PostgreSQL node; node/log/lease.py). Every process accepts
appends; only the lease holder sequences. The holder's own appends wait in its pool as
above. Another process stores its appends in `pending_entries` (node/store/pending.py:
durable before anything is acknowledged), tells the holder (NOTIFY), and waits until
they have indices and a recorded checkpoint covers them; the holder takes waiting rows
into its next batch, after its own, and gives them their indices in the same fenced
transaction that stores them (step 1), so an entry is sequenced exactly once. A process
that is not the holder serves the latest recorded checkpoint, read from the database
when the holder announces one (NOTIFY) and every REFRESH_INTERVAL seconds (catch-up);
if it takes over, it starts as after a restart. Appends still in a holder's pool when
it loses the lease move to `pending_entries` (nothing was stored of them yet), so
their callers still get their indices from the next holder.

Whoever serves the checkpoint learns of every change of the published note (a new
checkpoint, or witness cosignatures added to it by node/witness/submit.py) through
`on_change` callbacks: the push channel (node/web/push_routes.py) wakes its waiting
readers there.

Storage is the store's (node/store/): entries and checkpoints through `db.log`, tiles
through the TileStore (node/store/tiles.py); their contracts are what this order relies
on. Threading: all database and tile work runs in the sequencer's database worker (one
thread, one connection: node/store/worker.py), never on the event loop; staging tile
files runs in a second thread meanwhile; the pool and the futures live on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from dataclasses import dataclass

from node.datadir import DataDir
from node.errors import Unavailable, error_line
from node.log.lease import HeldLease
from node.log.pending_waits import PendingWaits
from node.logsummary import PeriodicSummary
from node.stopping import stop_task, wait_event
from node.store import is_postgres
from node.store.tiles import TileConflict, TileStore, TileWriteError
from node.store.worker import DatabaseWorker
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.edge import TreeEdge
from protocol.errors import TileError
from protocol.merkle import leaf_hash
from protocol.tiles import TILE_WIDTH, encode_bundle, entries_path, partial_tiles_for_size, tile_hashes

log = logging.getLogger(__name__)

#: Seconds between attempts to publish stored entries while publication fails.
STALLED_RETRY = 1.0
#: Several processes: seconds between looks at the database without a notification (the
#: holder for entries waiting in pending_entries, the others for the latest checkpoint).
REFRESH_INTERVAL = 0.5
#: Several processes: seconds an append accepted by a process that does not sequence
#: waits for its checkpoint before the caller is told it is stored and will be published.
SHARED_APPEND_TIMEOUT = 60.0
#: Seconds stop() lets the sequencer publish what is pending before it cancels it.
STOP_PUBLISH_TIMEOUT = 5.0


class LogUnavailable(Unavailable):
    """The log cannot take or publish appends right now; the message says why and
    whether the entries concerned were stored (`stored_from`..`stored_to` - 1)."""

    def __init__(self, message: str, stored_from: int | None = None, stored_to: int | None = None, *,
                 wait: int | None = None):
        stored = {} if stored_from is None else {"stored_from": stored_from, "stored_to": stored_to}
        super().__init__(message, wait=wait, **stored)
        self.stored_from = stored_from
        self.stored_to = stored_to


def _stored_not_published() -> LogUnavailable:
    return LogUnavailable(f"the entries are stored and will be published when a process sequences the log "
                          f"again; do not send them again (waited up to {SHARED_APPEND_TIMEOUT:.0f} s)")


@dataclass(frozen=True)
class Published:
    """The latest published checkpoint, as the HTTP layer serves it."""
    size: int
    root_hash: bytes
    note: bytes


@dataclass(frozen=True)
class Appended:
    """Acknowledgement of one entry: where it is, and the first checkpoint that includes it."""
    index: int
    leaf_hash: bytes
    checkpoint_size: int


class _Batch:
    __slots__ = ("entries", "future")

    def __init__(self, entries: list[bytes], future: asyncio.Future):
        self.entries = entries
        self.future = future


def _call_each(callbacks: list, hook: str, *args) -> None:
    """Hooks must not delay or undo sequencing: each is called, errors are logged."""
    for callback in list(callbacks):
        try:
            callback(*args)
        except Exception:
            log.exception("sequencer: an %s callback failed (ignored)", hook)


class Sequencer:
    def __init__(self, datadir: DataDir, *, interval: float | None = None,
                 max_batch: int | None = None, lease=None):
        config = datadir.config
        self.datadir = datadir
        # Whether this process sequences, and the fence of its publishing transactions
        # (node/log/lease.py). HeldLease: the only possible writer (the Node passes the
        # data directory's lease on SQLite, PostgreSQL's otherwise).
        self.lease = lease if lease is not None else HeldLease()
        self.lease.on_lost.append(self._lease_lost)
        # Several processes share this log (PostgreSQL): appends from the others wait in
        # the database, the checkpoint is announced to them (module docstring).
        self.shared = is_postgres(datadir.db_path)
        self._listener = None
        self._refresher: asyncio.Task | None = None
        self._announced = asyncio.Event()  # a checkpoint was announced (several processes)
        self._db_pending = False           # entries may wait in pending_entries
        self._next_cleanup = 0.0           # (worker) when abandoned pending rows go next
        self._refresh_failing: float | None = None  # since when reading the checkpoint fails
        self._read_failing = False         # (worker) the last look before publishing failed
        # Several processes: (worker thread) db, Published -> the note as the sequencing
        # process serves it, with the signatures it adds (the node sets it: node/runtime.py).
        self.as_served = None
        self.origin = config.node.origin
        self.interval = config.log.sequencing_interval if interval is None else interval
        self.max_batch = config.log.max_batch_entries if max_batch is None else max_batch
        self.tiles = TileStore.of(datadir)
        self._worker = DatabaseWorker(datadir.db_path, name="sequencer")
        self._pending_waits = PendingWaits(self._worker, REFRESH_INTERVAL / 5)  # several processes
        self._stager = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tile-stager")
        self._summary = PeriodicSummary()  # one INFO line a minute about publications
        self._pool: list[_Batch] = []
        self._pool_size = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()      # an append arrived, or stop() was called
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._stopped = False
        # Worker-thread state (touched only inside the database worker):
        self._db = None
        self._signer = None
        self._edge = TreeEdge()          # tree edge at the published size
        self._bundle: list[bytes] = []   # entries of the partial bundle at the published size
        self._stored = 0                 # entries in the database
        # Shared, replaced atomically (a single reference assignment):
        self._published: Published | None = None
        self.stalled: str | None = None  # why publication is failing, while it is
        # Called on the event loop with each newly published checkpoint (witness
        # submission hooks in here). A callback must return at once (start a task
        # for slow work) and may not delay or undo sequencing: errors are logged.
        self.on_publish: list = []
        # Called on the event loop, with the new value, whenever `published` changes:
        # a new checkpoint, or the same one with cosignatures added. Same rules.
        self.on_change: list = []
        # Called on the event loop after each published batch with (entries, seconds
        # from taking the batch to its signed checkpoint): the node's metrics.
        self.on_batch: list = []

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.shared:
            await self._start_sharing()
        if self.lease.held:
            await self._worker.run(self._open)
            self._task = asyncio.create_task(self._run(), name="sequencer")
        else:  # another process sequences: take over when it goes
            self._task = asyncio.create_task(self._when_held(), name="sequencer")

    async def _when_held(self) -> None:
        """Wait for the lease, then start as after a restart (stored entries re-published)."""
        failing = False
        while True:
            epoch = await self.lease.acquired()
            if self._stopping:
                return
            started = time.monotonic()
            try:
                await self._worker.run(self._open)
                break
            except RuntimeError:  # the database is damaged: _open said why; nothing is published
                raise
            except Exception as exc:  # noqa: BLE001 -- the database went away again: wait, retry
                if not failing:
                    log.warning("sequencer: could not read the log after taking the lease (%s); retrying every "
                                "%.0f s", error_line(exc), STALLED_RETRY)
                failing = True
                await self._pause(STALLED_RETRY)
        log.info("sequencer: took over the log at size %d (epoch %d) in %.2f s", self._published_size(),
                 epoch, time.monotonic() - started)
        _call_each(self.on_change, "on_change", self._published)
        self._db_pending = True
        await self._run()

    def _lease_lost(self) -> None:
        """Another process sequences now (or will): fail what waits here, wait again."""
        if self._stopping or self._task is None:
            return
        self._task.cancel()
        for b in self._pool:  # nothing of these was stored: the next holder sequences them
            if not b.future.done():
                asyncio.create_task(self._hand_over(b))
        self._pool.clear()
        self._pool_size = 0
        self.stalled = None
        self._task = asyncio.create_task(self._when_held(), name="sequencer")

    async def _hand_over(self, batch: _Batch) -> None:
        try:
            result = await self._append_shared(batch.entries)
        except BaseException as exc:  # noqa: BLE001 -- the caller gets it
            if not batch.future.done():
                batch.future.set_exception(exc if isinstance(exc, Exception) else LogUnavailable("stopping"))
            return
        if not batch.future.done():
            batch.future.set_result(result)

    # ---------------------------------------------------------------- several processes
    async def _start_sharing(self) -> None:
        from node.store.pg_changes import CHECKPOINT, PENDING, ChangeListener
        loop = asyncio.get_running_loop()

        def heard(channel: str, payload: str) -> None:  # the listener's thread
            loop.call_soon_threadsafe(self._heard, channel == PENDING)

        self._listener = ChangeListener(self.datadir.db_path, [CHECKPOINT, PENDING], heard)
        await self._refresh()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="sequencer-refresh")

    def _heard(self, pending: bool) -> None:
        if pending:
            self._db_pending = True
            self._wake.set()
        else:
            self._announced.set()
            self._pending_waits.heard()

    async def _refresh_loop(self) -> None:
        """Not the holder: serve the latest recorded checkpoint (announced, or looked up
        every REFRESH_INTERVAL). The holder: look for entries waiting in the database."""
        while not self._stopping:
            if not await wait_event(self._announced, REFRESH_INTERVAL) and self.lease.held:
                self._db_pending = True
                self._wake.set()
            self._announced.clear()
            if not self.lease.held:
                with contextlib.suppress(Exception):  # logged once per outage; the next look tries again
                    await self._refresh()

    async def _refresh(self) -> None:
        try:
            await self._read_latest()
        except Exception as exc:
            if self._refresh_failing is None:
                self._refresh_failing = time.monotonic()
                log.warning("sequencer: cannot read the latest checkpoint from the database (%s); serving the last "
                            "one read meanwhile (retrying quietly)", error_line(exc))
            raise
        if self._refresh_failing is not None:
            log.info("sequencer: reading checkpoints from the database again (after %.1f s)",
                     time.monotonic() - self._refresh_failing)
            self._refresh_failing = None

    async def _read_latest(self) -> None:
        def read(db):
            latest = db.log.latest_checkpoint()
            if latest is None:
                return None
            published = Published(latest.size, latest.root_hash, latest.note)
            return self.as_served(db, published) if self.as_served is not None else published

        published = await self._worker.call(read)
        if published is not None and not self.lease.held and published.size >= self._published_size():
            self.published = published

    async def _append_shared(self, entries: list[bytes]) -> list[Appended]:
        """Not the holder: store the entries as pending (durable), tell the holder, and
        wait until a recorded checkpoint includes them."""
        from node.store import pending
        from node.store.pg_changes import PENDING, notify
        try:
            ids = await self._worker.call(pending.add, entries)
        except Exception as exc:  # noqa: BLE001 -- the database is away: nothing was stored
            log.debug("sequencer: storing pending entries failed (%s)", error_line(exc))
            raise LogUnavailable("the node's database cannot be reached right now; nothing was appended; "
                                 "try again later", wait=5) from None
        with contextlib.suppress(Exception):  # a hint only: the holder also looks every REFRESH_INTERVAL
            await self._worker.call(notify, PENDING)
        try:  # every append waiting here is looked for at once (node/log/pending_waits.py)
            async with asyncio.timeout(SHARED_APPEND_TIMEOUT):  # never drops a cancellation (node/stopping.py)
                indices, size = await self._pending_waits.wait(ids)
        except TimeoutError:
            raise _stored_not_published() from None
        except LogUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 -- stored as pending: the next sequencer takes them
            log.debug("sequencer: waiting for pending entries failed (%s)", error_line(exc))
            raise LogUnavailable("the node's database cannot be reached right now; the entries are stored and "
                                 "will be published when it can be reached again; do not send them again") from None
        with contextlib.suppress(Exception):  # the rows are found by index anyway; forgetting is tidying
            await self._worker.call(pending.forget, ids)
        return [Appended(index, leaf_hash(data), size) for index, data in zip(indices, entries)]

    async def stop(self) -> None:
        """Publish what is pending (for at most STOP_PUBLISH_TIMEOUT seconds), then
        stop (idempotent). Every wait is bounded: a database that went away, or a task
        that dropped a cancellation, cannot hold the stop (node/stopping.py)."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._wake.set()
        self._stop_requested.set()
        if self._task is not None:
            task = self._task
            if self.lease.held:  # publish what is pending first
                done, _ = await asyncio.wait([task], timeout=STOP_PUBLISH_TIMEOUT)
                if not done:
                    log.warning("sequencer: publishing the pending entries took more than %.0f s; stopping "
                                "without them (stored ones are published at the next start)", STOP_PUBLISH_TIMEOUT)
            await stop_task(task, "the sequencer")
        for b in self._pool:  # left by a publication cut short: nothing of these was acknowledged
            if not b.future.done():
                b.future.set_exception(LogUnavailable("the node is shutting down; nothing was appended"))
        self._pool.clear()
        self._pool_size = 0
        self._pending_waits.close(_stored_not_published())
        await stop_task(self._refresher, "the sequencer's checkpoint refresh")
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        await self._worker.close()
        self._stager.shutdown(wait=True)
        self.tiles.close()

    @property
    def stored_count(self) -> int:
        return self._stored

    @property
    def published(self) -> Published | None:
        """The checkpoint served now (with any witness cosignatures)."""
        return self._published

    @published.setter
    def published(self, value: Published) -> None:
        # Set on the event loop only (the sequencer after publishing, the witness
        # submitter when it adds cosignatures).
        if value == self._published:
            return
        self._published = value
        _call_each(self.on_change, "on_change", value)

    # ---------------------------------------------------------------- appending
    async def append(self, entries: list[bytes]) -> list[Appended]:
        """Queue entries (already validated, encoded bytes); return once a published
        checkpoint includes all of them. Raises LogUnavailable."""
        if not entries:
            return []
        if self._stopping:
            raise LogUnavailable("the node is shutting down; nothing was appended")
        if not self.lease.held:
            if not self.shared:
                raise LogUnavailable("this process does not sequence the log right now; nothing was appended")
            return await self._append_shared(list(entries))
        if self.stalled:
            raise LogUnavailable(f"the log cannot publish right now ({self.stalled}); nothing was appended")
        future = asyncio.get_running_loop().create_future()
        self._pool.append(_Batch(list(entries), future))
        self._pool_size += len(entries)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        """One batch at a time: at once when idle, at most one per `interval` under
        load (what arrives meanwhile goes into the next batch)."""
        loop = asyncio.get_running_loop()
        last_batch = -math.inf
        while True:
            if not self._stopping:
                if self.stalled:
                    # Retry publishing what is stored before taking anything new.
                    await self._pause(max(STALLED_RETRY, self.interval))
                elif not self._pool and self._stored <= self._published_size() and not self._db_pending:
                    await self._wake.wait()
                # Under load the previous batch was recent: let appends gather.
                await self._pause(last_batch + self.interval - loop.time())
            self._wake.clear()
            last_batch = loop.time()
            if self.stalled or self._stored > self._published_size() or self._pool or self._db_pending:
                self._db_pending = False
                await self._publish(self._take_batch() if not self.stalled else [])
            if self._stopping and (self.stalled or not self._pool):
                for b in self._pool:
                    if not b.future.done():
                        b.future.set_exception(LogUnavailable("the node is shutting down; nothing was appended"))
                self._pool.clear()
                self._pool_size = 0
                return

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless stop() is called meanwhile."""
        if seconds > 0 and not self._stopping:
            await wait_event(self._stop_requested, seconds)

    def _published_size(self) -> int:
        return self.published.size if self.published else 0

    def _take_batch(self) -> list[_Batch]:
        taken, count = [], 0
        while self._pool and (not taken or count + len(self._pool[0].entries) <= self.max_batch):
            batch = self._pool.pop(0)
            taken.append(batch)
            count += len(batch.entries)
        self._pool_size -= count
        return taken

    async def _publish(self, taken: list[_Batch]) -> None:
        entries = [e for b in taken for e in b.entries]
        started = time.monotonic()
        try:
            first, leaf_hashes, published = await self._worker.run(self._publish_batch, entries)
        except asyncio.CancelledError:  # the lease was lost meanwhile
            for b in taken:
                if not b.future.done():
                    b.future.set_exception(LogUnavailable(
                        "this process stopped sequencing while publishing these entries: they may be stored "
                        "and published by the next sequencer; check the log before sending them again"))
            raise
        except LogUnavailable as exc:
            for b in taken:
                if not b.future.done():
                    b.future.set_exception(exc)
            # Refuse new appends too while stored entries cannot be published.
            if exc.stored_from is not None or self._stored > self._published_size():
                self.stalled = str(exc)
            return
        except BaseException as exc:  # a bug: fail the appends, keep the reason in the log
            log.exception("sequencer: unexpected error; nothing more is published")
            for b in taken:
                if not b.future.done():
                    b.future.set_exception(LogUnavailable(f"internal error in the sequencer: {exc}"))
            self.stalled = f"internal error: {exc}"
            raise
        if not taken and published is self._published and not self.stalled:
            return  # several processes: nothing waited in the database
        if self.stalled:
            log.info("sequencer: publication works again")
        self.stalled = None
        previous_size = self._published_size()
        self.published = published
        _call_each(self.on_publish, "on_publish", published)
        position = first
        for b in taken:
            n = len(b.entries)
            if not b.future.done():
                b.future.set_result([Appended(position + i, leaf_hashes[position - first + i], published.size)
                                     for i in range(n)])
            position += n
        if published.size != previous_size:
            millis = (time.monotonic() - started) * 1000
            log.debug("sequencer: published checkpoint %d (+%d entries) in %.0f ms",
                      published.size, published.size - previous_size, millis)
            due = self._summary.add({"ms": millis}, checkpoints=1, entries=published.size - previous_size)
            if due:
                totals, peaks, seconds = due
                log.info("sequencer: published checkpoint %d (+%d entries in %d checkpoint(s)%s; slowest %.0f ms)",
                         published.size, totals["entries"], totals["checkpoints"],
                         f" over the last {seconds:.0f} s" if seconds else "", peaks["ms"])
            _call_each(self.on_batch, "on_batch", published.size - previous_size, millis / 1000)
            # Off the acknowledgement path; runs in the worker before the next batch.
            self._worker.submit(self._checkpoint_wal)

    # ---------------------------------------------------------------- worker thread
    def _open(self) -> None:
        self.tiles.prepare()
        self._db = self._worker.database()
        # Copying the WAL back into the database file (a WAL checkpoint) is done after a
        # batch is acknowledged (see _checkpoint_wal), not inside the batch's commit.
        self._db.defer_wal_checkpoints()
        self._signer = self.datadir.load_log_signer()
        if self._signer.name != self.origin:
            raise RuntimeError(f"the log key is named {self._signer.name!r} but the origin is "
                               f"{self.origin!r}; they must be equal")
        self._stored = self._db.log.entry_count()
        count = self._db.log.stored_entries()
        if count != self._stored:
            raise RuntimeError(f"the database holds {count} entries but its greatest index is "
                               f"{self._stored - 1}: entries are missing; refusing to publish")
        latest = self._db.log.latest_checkpoint()
        if latest is None:
            self._edge, self._bundle = TreeEdge(), []
        else:
            if latest.size > self._stored:
                raise RuntimeError(f"the last checkpoint has size {latest.size} but only {self._stored} "
                                   "entries are stored; the database is damaged")
            self._edge, self._bundle = self._load_edge(latest.size, latest.root_hash)
            self._published = Published(latest.size, latest.root_hash, latest.note)
        if latest is None or self._stored > latest.size:
            # Crash recovery (or first start): publish everything stored, in one batch,
            # before anything new. See the module docstring.
            if latest is not None:
                log.warning("sequencer: %d entries were stored but not published before the last "
                            "stop; re-publishing them", self._stored - latest.size)
            _, _, published = self._publish_batch([])
            self._published = published  # (worker thread, before anyone waits for a change)
        else:
            # Rewrite the convenience copy of the checkpoint in case a crash left it behind.
            self._write_checkpoint_file(latest.note)
        log.info("sequencer: log %s at size %d", self.origin, self.published.size)

    def _checkpoint_wal(self) -> None:
        if self.shared and time.monotonic() > self._next_cleanup:
            from node.store import pending
            self._next_cleanup = time.monotonic() + 600
            with contextlib.suppress(Exception):  # harmless: tried again in ten minutes
                pending.forget_abandoned(self._db)
        try:
            self._db.checkpoint_wal()
        except Exception as exc:  # noqa: BLE001 - harmless: retried after the next batch
            log.warning("sequencer: WAL checkpoint failed (%s); will retry", exc)

    def _load_edge(self, size: int, root_hash: bytes) -> tuple[TreeEdge, list[bytes]]:
        """The tree edge and partial bundle at `size`: level 0 and the bundle from the
        database, higher levels from the partial tiles on disk (which were durable
        before the checkpoint of `size` was recorded), checked against the root."""
        bundle_start = size - size % TILE_WIDTH
        rows = list(self._db.log.iter_entries(bundle_start, size))
        bundle = [r[1] for r in rows]
        edge_tiles = partial_tiles_for_size(size)
        levels: list[list[bytes]] = [[] for _ in range(1 + max((t.level for t in edge_tiles), default=0))]
        levels[0] = [r[2] for r in rows]
        try:
            for tile in edge_tiles:
                if tile.level == 0:
                    continue
                data = self.tiles.read(tile.path())
                if data is None:
                    raise ValueError(f"partial tile {tile.path()} is missing")
                try:
                    levels[tile.level] = tile_hashes(data, tile.width)
                except TileError as exc:  # the wrong length
                    raise ValueError(f"partial tile {tile.path()} is damaged: {exc}") from None
            edge = TreeEdge.from_level_hashes(size, levels)
            if edge.root() == root_hash:
                return edge, bundle
            problem = "the partial tiles on disk do not give the checkpoint's root hash"
        except ValueError as exc:
            problem = str(exc)
        log.warning("sequencer: %s; rebuilding the tree edge from the database (reads every leaf hash)",
                    problem)
        edge = TreeEdge()
        for start in range(0, size, 100_000):
            edge.append([r[2] for r in self._db.log.iter_entries(start, min(size, start + 100_000))])
        if edge.root() != root_hash:
            raise RuntimeError(f"the stored entries do not give the root hash of the last checkpoint "
                               f"(size {size}); the database is damaged. Refusing to publish.")
        return edge, bundle

    def _publish_batch(self, new_entries: list[bytes]) -> tuple[int, list[bytes], Published]:
        """Steps (1)-(3) for `new_entries`, preceded by any entries stored but not yet
        published. Returns (index of the first new entry, its leaf hashes, checkpoint)."""
        published_size = self._edge.size
        first = self._stored
        own = len(new_entries)
        waiting = []
        # Entries stored earlier but not yet published (after a crash or a failed step 2/3).
        backlog_data: list[bytes] = []
        backlog_hashes: list[bytes] = []
        try:
            # The worker's connection, a new one if the server closed it (PostgreSQL
            # restarted while this process kept the lease): each transaction stands alone.
            self._db = self._worker.database()
            if self.shared:  # entries other processes accepted, after our own
                from node.store import pending
                waiting = pending.waiting(self._db, max(0, self.max_batch - own))
                new_entries = list(new_entries) + [data for _, data in waiting]
                if not new_entries and first == published_size and self._published is not None:
                    return first, [], self._published  # nothing waits: nothing to publish
            if first > published_size:
                for _, data, h in self._db.log.iter_entries(published_size, first):
                    backlog_data.append(data)
                    backlog_hashes.append(h)
        except Exception as exc:  # the database went away: nothing was done yet
            # One line per outage (the lease's says the same): the refresh retries often.
            log.log(logging.DEBUG if self._read_failing else logging.WARNING,
                    "sequencer: could not read the database before publishing (%s)", error_line(exc))
            self._read_failing = True
            raise LogUnavailable("the node's database cannot be reached right now; nothing was appended; try "
                                 "again later", wait=5) from None
        self._read_failing = False
        leaf_hashes = [leaf_hash(e) for e in new_entries]

        # The files of the new size, computed in memory on copies: the sequencer's state
        # moves only once the checkpoint is published.
        edge = self._edge.copy()
        bundle = list(self._bundle)
        files: list[tuple[str, bytes]] = []
        bundle_index = published_size // TILE_WIDTH
        for data in (backlog_data, new_entries):
            for entry in data:
                bundle.append(entry)
                if len(bundle) == TILE_WIDTH:
                    files.append((entries_path(bundle_index, TILE_WIDTH), encode_bundle(bundle)))
                    bundle = []
                    bundle_index += 1
        for tile in edge.append(backlog_hashes) + edge.append(leaf_hashes):
            files.append((tile.id.path(), tile.data))
        if bundle:
            files.append((entries_path(bundle_index, len(bundle)), encode_bundle(bundle)))
        for tile in edge.partial_tiles(since=published_size):
            files.append((tile.id.path(), tile.data))

        # Staging writes and fsyncs the files under tmp/, where nothing is served or
        # kept across a restart; it runs while (1) commits, to save time. No file
        # reaches the tiles directory before (1) has committed.
        staging = self._stager.submit(self.tiles.stage, files)

        # (1) STORE. Nothing below may run unless this committed.
        if new_entries:
            try:
                with self.lease.fenced(self._db):
                    self._db.log.insert_entries(first, new_entries, leaf_hashes)
                    if waiting:
                        pending.assign(self._db, [row_id for row_id, _ in waiting], first + own)
            except Exception as exc:
                try:
                    self.tiles.discard(staging.result())
                except Exception:  # noqa: BLE001 - the store error is the one to report
                    pass
                log.error("sequencer: could not store %d entries: %s", len(new_entries), exc)
                raise LogUnavailable(f"could not store the entries ({exc}); nothing was appended") from None
            self._stored = first + len(new_entries)

        try:
            # (2) TILES: rename the staged files into place, fsync their directories.
            self.tiles.commit(staging.result())

            # (3) SIGN, record (publication), then the convenience copy.
            root = edge.root()
            note = sign_checkpoint(Checkpoint(self.origin, edge.size, root), self._signer)
            with self.lease.fenced(self._db):
                self._db.log.record_checkpoint(edge.size, root, note, durable=False)
            if self.shared:
                from node.store.pg_changes import CHECKPOINT, notify
                notify(self._db, CHECKPOINT, str(edge.size))
            self._write_checkpoint_file(note)
        except (TileWriteError, TileConflict, OSError) as exc:
            stored_from, stored_to = published_size, self._stored
            log.error("sequencer: NOT published -- %s. The checkpoint stays at size %d; entries %d..%d "
                      "are stored and will be published once this is fixed (retrying every %.1f s).",
                      exc, published_size, stored_from, stored_to - 1, max(STALLED_RETRY, self.interval))
            raise LogUnavailable(
                f"could not publish: {exc}. Entries {stored_from}..{stored_to - 1} are stored and will be "
                "published when the node can write its tiles again; do not send them again",
                stored_from, stored_to) from None
        except Exception as exc:
            if new_entries or first > published_size:
                raise LogUnavailable(
                    f"could not publish: {exc}. Entries {published_size}..{self._stored - 1} are stored "
                    "and will be published later; do not send them again",
                    published_size, self._stored) from exc
            raise

        self._edge, self._bundle = edge, bundle
        return first, leaf_hashes[:own], Published(edge.size, root, note)

    def _write_checkpoint_file(self, note: bytes) -> None:
        # A copy of the latest checkpoint beside the tiles, so that the tiles directory
        # can be served by any static web server. The database record is authoritative
        # and the copy is rewritten from it at every start (_open), so it needs no fsync.
        self.tiles.write_checkpoint(note)
