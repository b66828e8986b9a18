"""Running the followers inside `serve`: one task per followed log.

Each followed log gets one asyncio task that runs its rounds (node/follow/sync.py)
one after another:

  * PUSH, when the log's node offers it (/node.json, node/follow/push.py): the task
    waits on the push channel, a signed GET that the node answers as soon as it
    publishes another checkpoint, and runs a round with that checkpoint at once. A
    304 after `max_wait` seconds without a change confirms that the follower is in
    sync. So a withdrawal reaches the follower a round trip after its publication,
    and an idle log costs one request per log every 30 s instead of one a second.
  * POLLING otherwise, and while the push channel fails: a round every `interval`
    seconds (per log, default 1 s) that fetches /checkpoint. /node.json is read after
    the first successful round and every 10 minutes while polling, so a node that
    starts offering push is used from then on.

One task does both, in order: an answer can never be applied after a newer one, so
a follower never sees its log go back because of two requests in flight.

Back-off: after a failed round the log waits `interval * 2**(failures-1)` seconds,
capped at `max_backoff`, times a random factor in [0.5, 1.5) (jitter, so that many
followers of one recovering node do not all come back in the same second). While a
log backs off because its node could not be reached at all, a cheap probe every half
second ends the back-off as soon as the node answers again (node/follow/recovery.py),
and its /node.json is read again at the next round (a push channel given up before the
outage is taken up again). A push
channel that fails backs off the same way (from 1 s) while the log is polled. A
checkpoint that still lacks the cosignatures the log's witness policy requires is no
reason to back off when pushed: its cosigned copy is pushed moments later; when polled,
the push channel is looked for (if /node.json is due) and its cosigned copy waited for
there. A forked
log is not read at all.

The list of followed logs is re-read every `reload_interval` seconds, and at once
when `ncii-node follow add/remove` asks the running node to (POST /admin/follow/reload),
so a new log is verified within a round trip; removing a log tells the listener (the
matcher) to forget its entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.follow.client import DEFAULT_TIMEOUT, FetchError, PeerClient
from node.follow.listener import FollowListener
from node.follow.push import PushState, offered_stream, offers_parts, parse_advertisement
from node.follow.recovery import Recovery
from node.follow.sync import AwaitingCosignatures, Follower, ForkDetected, RoundResult, SyncError
from node.stopping import stop_task, wait_event
from node.store import follow as store
from node.store.worker import DatabaseWorker

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_RELOAD_INTERVAL = 5.0
#: Seconds between looks at /node.json for a push channel, while polling.
PUSH_RECHECK = 600.0
#: Least seconds between two push requests of one log: a node that answers every
#: request at once (a broken or hostile one) cannot make the follower spin.
PUSH_MIN_SPACING = 0.02
#: A stream that ends sooner than this with nothing new (a node that is stopping, or
#: one that ends every stream at once) counts as a failure of the channel.
STREAM_SHORTEST = 1.0
#: A forked log is not read; its record is looked at this often (an operator may
#: remove and add it again while the node runs).
FORKED_RECHECK = 5.0


def backoff_delay(interval: float, failures: int, max_backoff: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` consecutive failed rounds (jittered)."""
    if failures <= 0:
        return 0.0
    base = min(max_backoff, interval * 2 ** min(failures - 1, 30))
    return base * (rng or random).uniform(0.5, 1.5)


@dataclass
class _Job:
    follower: Follower
    client: PeerClient
    url: str
    interval: float
    failures: int = 0
    retry_at: float = 0.0
    rounds: int = 0
    verified_size: int | None = None
    push: PushState = field(default_factory=PushState)
    recovery: Recovery = field(default_factory=Recovery)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)     # one round at a time
    wake: asyncio.Event = field(default_factory=asyncio.Event)   # poke(): stop waiting
    task: "asyncio.Task | None" = None


class FollowService:
    """All followers of one node. `await start()`, `await stop()`; `run_round(origin)`
    runs one round now (tests, benchmarks); `reload()` re-reads the followed logs.
    `push=False` never uses a push channel, `stream=False` never its stream (benchmarks
    compare)."""

    def __init__(self, db_path: Path | str, *, signer=None, listener: FollowListener | None = None,
                 own_origin: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 max_backoff: float = DEFAULT_MAX_BACKOFF, reload_interval: float = DEFAULT_RELOAD_INTERVAL,
                 interval_override: float | None = None, accept_gzip: bool = True,
                 evidence_dir: Path | None = None, push: bool = True, stream: bool = True,
                 start_after: asyncio.Event | None = None):
        self.worker = DatabaseWorker(db_path)
        self.evidence_dir = evidence_dir  # fork evidence files; None: beside the database
        self.signer = signer
        self.listener = listener or FollowListener()
        self.own_origin = own_origin
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.reload_interval = reload_interval
        self.interval_override = interval_override
        self.accept_gzip = accept_gzip
        self.use_push = push
        self.use_stream = stream
        #: Set once the node serves (node/runtime.py): no round runs before, so that a node
        #: back from an outage serves and publishes first and catches up on the logs it
        #: follows after, instead of competing with its own start for the CPU.
        self.start_after = start_after
        self.jobs: dict[str, _Job] = {}
        self._reloader: asyncio.Task | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        await self.reload()
        self._reloader = asyncio.create_task(self._reload_every(), name="follow-reload")

    async def stop(self) -> None:
        tasks = [self._reloader] if self._reloader is not None else []
        self._reloader = None
        # A round cut short commits nothing (its one transaction never ran or rolled back).
        tasks += [job.task for job in self.jobs.values() if job.task is not None]
        await asyncio.gather(*(stop_task(task, f"follow task {task.get_name()}") for task in tasks))
        for job in self.jobs.values():
            await job.client.close()
        self.jobs.clear()
        await self.worker.close()

    async def _reload_every(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                await self.reload()
            except Exception:  # the database is busy or broken: say so, try again later
                log.exception("follow: could not re-read the followed logs")

    async def reload(self) -> list[str]:
        """Match the jobs to the followed_logs table; returns the followed origins."""
        async with self._reload_lock:
            logs = {entry.origin: entry for entry in await self.worker.follow.list_logs()}
            for origin in list(self.jobs):
                entry = logs.get(origin)
                if entry is None or entry.url != self.jobs[origin].url:
                    await self._drop(origin, forget=entry is None)
            for origin, entry in logs.items():
                if origin not in self.jobs:
                    self._add(entry)
            return sorted(logs)

    def poke(self, origin: str | None = None) -> None:
        """Stop waiting (between polls, or in a back-off) and run a round now."""
        for name, job in self.jobs.items():
            if origin is None or name == origin:
                job.retry_at = 0.0
                job.wake.set()

    def _add(self, entry: store.FollowedLog) -> None:
        client = PeerClient(entry.url, signer=self.signer, timeout=self.timeout, accept_gzip=self.accept_gzip)
        follower = Follower(entry.origin, client, self.worker, listener=self.listener, own_origin=self.own_origin,
                            evidence_dir=self.evidence_dir)
        interval = self.interval_override or entry.interval or DEFAULT_INTERVAL
        job = _Job(follower, client, entry.url, interval, failures=entry.failures)
        self.jobs[entry.origin] = job
        job.task = asyncio.create_task(self._follow(job), name=f"follow:{entry.origin}")
        if entry.forked:
            log.error("log %s is FORKED (%s): it is not followed any more; the evidence is in the database "
                      "(ncii-node status --dir DIR)", entry.origin, entry.fork_reason)
        else:
            log.info("following %s at %s (push when offered, else every %g s)", entry.origin, entry.url, interval)

    async def _drop(self, origin: str, *, forget: bool) -> None:
        job = self.jobs.pop(origin)
        if job.task is not None:
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        await job.client.close()
        if forget:
            log.info("no longer following %s", origin)
            await self.worker.call(lambda _db: self.listener.on_removed(origin))

    # ------------------------------------------------------------------ rounds
    async def run_round(self, origin: str, note: bytes | None = None) -> RoundResult | None:
        """One round for `origin` now; returns the RoundResult, or None if it failed
        or a round was already running."""
        job = self.jobs[origin]
        if job.lock.locked():
            return None
        result, _ = await self._round(job, note)
        return result

    async def _round(self, job: _Job, note: bytes | None = None) -> tuple[RoundResult | None, Exception | None]:
        async with job.lock:
            try:
                result = await job.follower.sync_once(note)
            except ForkDetected as exc:
                # Recorded: from now on a round answers "forked" without asking the log
                # anything, and the push channel is not waited on again.
                job.push.path = None
                job.push.checked_at = time.monotonic()
                self._failed(job)
                return None, exc
            except AwaitingCosignatures as exc:
                # The node is up and its checkpoint's cosigned copy comes moments later:
                # ask again in `interval`, whatever back-off earlier failures (an outage)
                # had reached.
                job.failures += 1
                job.recovery.succeeded()
                job.retry_at = time.monotonic() + job.interval
                return None, exc
            except SyncError as exc:
                self._failed(job, exc.unreachable)
                return None, exc
            except Exception as exc:
                self._failed(job)
                log.exception("follow %s: unexpected error", job.follower.origin)
                await self.worker.follow.record_error(job.follower.origin, "internal error (see the node's log)")
                return None, exc
            job.failures = 0
            job.retry_at = 0.0
            job.recovery.succeeded()
            job.rounds += 1
            job.verified_size = result.new_size
            return result, None

    def _failed(self, job: _Job, unreachable: str | None = None) -> None:
        job.failures += 1
        job.recovery.failed(unreachable)
        job.retry_at = time.monotonic() + backoff_delay(job.interval, job.failures, self.max_backoff)

    # ------------------------------------------------------------------ the task
    async def _follow(self, job: _Job) -> None:
        """Rounds of one log, forever: pushed when offered, else polled. Nothing but
        cancellation ends it (a bug is logged and backed off from)."""
        if self.start_after is not None:
            await self.start_after.wait()
        while True:
            try:
                await self._back_off(job)
                await self._step(job)
            except Exception:
                log.exception("follow %s: unexpected error; trying again later", job.follower.origin)
                self._failed(job)

    async def _step(self, job: _Job) -> None:
        if job.push.usable(time.monotonic()):
            if job.push.stream is not None:
                await self._stream_rounds(job)
            else:
                await self._push_round(job)
            return
        result, error = await self._round(job)
        if result is None:
            if isinstance(error, AwaitingCosignatures):
                # The node is up and the cosigned copy comes moments later: wait for it
                # on the push channel, when offered, rather than poll again in `interval`.
                await self._look_for_push(job)
                if job.push.usable(time.monotonic()):
                    job.retry_at = 0.0
            return  # back-off, in _follow
        if result.outcome == "forked":
            await self._sleep_until(job, time.monotonic() + max(job.interval, FORKED_RECHECK))
            return
        await self._look_for_push(job)
        if not job.push.usable(time.monotonic()):
            await self._sleep_until(job, time.monotonic() + job.interval)

    async def _push_round(self, job: _Job) -> None:
        push = job.push
        await asyncio.sleep(max(0.0, push.last_request + PUSH_MIN_SPACING - time.monotonic()))
        push.last_request = time.monotonic()
        sent = push.etag
        try:
            # With parts, the answer also carries the tiles and bundles of the round
            # from the size we verified (spec/parts/following.md §4.2).
            have = job.verified_size if push.parts else None
            note, etag = await job.client.next_checkpoint(push.path, sent, push.wait, have)
            if note is not None and sent is not None and etag == sent:
                raise FetchError("the node answered with the very checkpoint the request named",
                                 job.client.url_for(push.path))
        except FetchError as exc:
            self._push_failed(job, exc)
            return
        self._push_works(job)
        if note is None:  # 304: still the checkpoint we hold
            await self._push_in_sync(job)
            return
        await self._pushed_round(job, note, etag)

    async def _stream_rounds(self, job: _Job) -> None:
        """One push stream (§4.3): a round per frame, until the stream ends or a round
        fails (then the back-off, in _follow, and a new stream after it)."""
        push = job.push
        await asyncio.sleep(max(0.0, push.last_request + PUSH_MIN_SPACING - time.monotonic()))
        started = push.last_request = time.monotonic()
        frames = 0
        try:
            stream = job.client.stream_checkpoints(push.stream, push.etag, push.wait,
                                                   job.verified_size if push.parts else None)
            async with contextlib.aclosing(stream):
                async for note, etag in stream:
                    frames += 1
                    self._push_works(job)
                    if not await self._pushed_round(job, note, etag):
                        return
            if not frames and time.monotonic() - started < STREAM_SHORTEST:
                raise FetchError("the push stream ended at once with nothing new", job.client.url_for(push.stream))
        except FetchError as exc:
            if exc.status in (401, 403, 404):
                # Not offered (any more), or not to us: the single answers from now on.
                log.info("follow %s: no push stream (%s); using the push channel's single answers",
                         job.follower.origin, exc)
                push.stream = None
                return
            self._push_failed(job, exc)
            return
        self._push_works(job)
        await self._push_in_sync(job)

    def _push_works(self, job: _Job) -> None:
        if job.push.failures:
            log.info("follow %s: the push channel works again", job.follower.origin)
            job.push.failures = 0

    async def _push_in_sync(self, job: _Job) -> None:
        """Nothing new came since the checkpoint we hold: in sync, if we verified it."""
        if job.push.verified and job.verified_size is not None:
            await self.worker.follow.record_in_sync(job.follower.origin, job.verified_size)

    async def _pushed_round(self, job: _Job, note: bytes, etag: str | None) -> bool:
        """A round with a pushed checkpoint; whether the push channel may go on (a
        stream is ended after a failed round, and asked again after the back-off)."""
        push = job.push
        try:
            result, error = await self._round(job, note)
        finally:
            job.client.drop_pushed()
        if result is not None and result.outcome == "forked":
            push.path = None  # a forked log is not read: back to the (idle) polling branch
            push.checked_at = time.monotonic()
            return False
        if result is not None:
            push.etag, push.verified = etag, True
            return True
        if isinstance(error, AwaitingCosignatures):
            # Wait for the cosigned copy of this very checkpoint, without back-off.
            push.etag, push.verified = etag, False
            job.retry_at = 0.0
            return True
        push.forget()  # after the back-off, ask for the current checkpoint at once
        return False

    def _push_failed(self, job: _Job, exc: FetchError) -> None:
        push = job.push
        push.failures += 1
        push.forget()
        push.retry_at = time.monotonic() + backoff_delay(1.0, push.failures, self.max_backoff)
        if exc.status in (401, 403, 404):
            # Not offered (any more), or not to us (a public_read log that did not register
            # this node as a reader): poll, and read /node.json again in PUSH_RECHECK s.
            push.path = None
            push.checked_at = time.monotonic()
        if push.failures == 1:
            log.info("follow %s: push channel unavailable (%s); polling every %g s meanwhile",
                     job.follower.origin, exc, job.interval)

    async def _look_for_push(self, job: _Job) -> None:
        """Read /node.json after the first successful round, then every PUSH_RECHECK s."""
        push = job.push
        now = time.monotonic()
        if not self.use_push or push.path is not None or \
                (push.checked_at is not None and now - push.checked_at < PUSH_RECHECK):
            return
        push.checked_at = now
        try:
            document = await job.client.node_json()
            offered = parse_advertisement(document)
        except FetchError as exc:
            log.debug("follow %s: no /node.json (%s); polling", job.follower.origin, exc)
            return
        if offered is not None:
            push.path, push.wait = offered
            push.parts = offers_parts(document)
            push.stream = offered_stream(document) if self.use_stream else None
            push.retry_at = 0.0
            push.forget()
            log.info("follow %s: the node pushes its checkpoints (%s); waiting for them instead of polling",
                     job.follower.origin, push.stream or push.path)

    async def _back_off(self, job: _Job) -> None:
        """Wait until job.retry_at (or a poke); while its node is unreachable, probe it
        every second and end the wait as soon as it is back (node/follow/recovery.py)."""
        recovery = job.recovery
        while recovery.probing and time.monotonic() < job.retry_at:
            await self._sleep_until(job, min(job.retry_at, recovery.next_probe()))
            if time.monotonic() >= job.retry_at:
                return  # the back-off is over, or poke() ended it
            if await recovery.probe(job.client, job.follower.origin):
                job.retry_at = 0.0
                job.push.retry_at = 0.0  # and ask the push channel again at once
                # A node back from an outage is looked at afresh: if a failure had made
                # us give its push channel up, its /node.json is read again at once.
                job.push.checked_at = None
                return
        await self._sleep_until(job, job.retry_at)

    @staticmethod
    async def _sleep_until(job: _Job, deadline: float) -> None:
        """Sleep until `deadline` (monotonic) or a poke()."""
        delay = deadline - time.monotonic()
        if delay > 0:  # (not wait_for: 3.11's may drop the cancellation of stop())
            await wait_event(job.wake, delay)
        job.wake.clear()
