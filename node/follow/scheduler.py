"""Running the followers: one apscheduler job per followed log, inside `serve`.

Each followed log gets an interval job (its `interval`, default 1 s) that runs one
round (node/follow/sync.py). Logs are independent: a slow, broken or hostile peer
only delays its own job; every other log keeps its own schedule.

Back-off: after a failed round the log waits `interval * 2**(failures-1)` seconds,
capped at `max_backoff`, times a random factor in [0.5, 1.5) (jitter, so that many
followers of one recovering node do not all come back in the same second). A forked
log is not polled at all. A running round is never started twice.

The list of followed logs is re-read every `reload_interval` seconds, so
`ncii-node follow add/remove` takes effect while the node runs; removing a log tells
the listener (the matcher) to forget its entries.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from node.follow.client import DEFAULT_TIMEOUT, PeerClient
from node.follow.listener import FollowListener
from node.follow.sync import Follower, SyncError
from node.store import follow as store
from node.store.worker import DatabaseWorker

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_RELOAD_INTERVAL = 5.0


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
    running: bool = False
    task: "asyncio.Task | None" = None
    failures: int = 0
    retry_at: float = 0.0
    rounds: int = field(default=0)


class FollowService:
    """All followers of one node. `await start()`, `await stop()`; `run_round(origin)`
    runs one round now (tests, benchmarks)."""

    def __init__(self, db_path: Path | str, *, signer=None, listener: FollowListener | None = None,
                 own_origin: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 max_backoff: float = DEFAULT_MAX_BACKOFF, reload_interval: float = DEFAULT_RELOAD_INTERVAL,
                 interval_override: float | None = None, accept_gzip: bool = True,
                 evidence_dir: Path | None = None):
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
        self.scheduler: AsyncIOScheduler | None = None
        self.jobs: dict[str, _Job] = {}

    async def start(self) -> None:
        self.scheduler = AsyncIOScheduler()
        self.scheduler.start()
        await self.reload()
        self.scheduler.add_job(self.reload, IntervalTrigger(seconds=self.reload_interval), id="follow-reload",
                               max_instances=1, coalesce=True)

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        # A round cut short commits nothing (its one transaction never ran or rolled back).
        rounds = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)
        for job in self.jobs.values():
            await job.client.close()
        self.jobs.clear()
        await self.worker.close()

    async def reload(self) -> None:
        """Match the jobs to the followed_logs table."""
        logs = {entry.origin: entry for entry in await self.worker.follow.list_logs()}
        for origin in list(self.jobs):
            entry = logs.get(origin)
            if entry is None or entry.url != self.jobs[origin].url:
                await self._drop(origin, forget=entry is None)
        for origin, entry in logs.items():
            if origin not in self.jobs:
                self._add(entry)

    def _add(self, entry: store.FollowedLog) -> None:
        client = PeerClient(entry.url, signer=self.signer, timeout=self.timeout, accept_gzip=self.accept_gzip)
        follower = Follower(entry.origin, client, self.worker, listener=self.listener, own_origin=self.own_origin,
                            evidence_dir=self.evidence_dir)
        interval = self.interval_override or entry.interval or DEFAULT_INTERVAL
        self.jobs[entry.origin] = _Job(follower, client, entry.url, interval, failures=entry.failures)
        if self.scheduler is not None:
            # max_instances > 1 only so that apscheduler does not warn while a long
            # round (a catch-up) runs; `_tick` itself never runs two rounds at once.
            self.scheduler.add_job(self._tick, IntervalTrigger(seconds=interval), args=(entry.origin,),
                                   id=f"follow:{entry.origin}", max_instances=3, coalesce=True,
                                   next_run_time=_now_datetime())
        if entry.forked:
            log.error("log %s is FORKED (%s): it is not followed any more; the evidence is in the database "
                      "(ncii-node status --dir DIR)", entry.origin, entry.fork_reason)
        else:
            log.info("following %s at %s every %g s", entry.origin, entry.url, interval)

    async def _drop(self, origin: str, *, forget: bool) -> None:
        job = self.jobs.pop(origin)
        if self.scheduler is not None:
            try:
                self.scheduler.remove_job(f"follow:{origin}")
            except Exception:
                pass
        await job.client.close()
        if forget:
            log.info("no longer following %s", origin)
            await self.worker.call(lambda _db: self.listener.on_removed(origin))

    async def _tick(self, origin: str) -> None:
        job = self.jobs.get(origin)
        if job is None or job.running or time.monotonic() < job.retry_at:
            return
        await self.run_round(origin)

    async def run_round(self, origin: str):
        """One round for `origin` now; returns the RoundResult or None on failure."""
        job = self.jobs[origin]
        if job.running:
            return None
        job.running = True
        job.task = asyncio.current_task()
        try:
            result = await job.follower.sync_once()
        except SyncError:
            job.failures += 1
            job.retry_at = time.monotonic() + backoff_delay(job.interval, job.failures, self.max_backoff)
            return None
        except Exception:
            job.failures += 1
            job.retry_at = time.monotonic() + backoff_delay(job.interval, job.failures, self.max_backoff)
            log.exception("follow %s: unexpected error", origin)
            await self.worker.follow.record_error(origin, "internal error (see the node's log)")
            return None
        finally:
            job.running = False
            job.task = None
        job.failures = 0
        job.retry_at = 0.0
        job.rounds += 1
        return result


def _now_datetime():
    return datetime.datetime.now(datetime.timezone.utc)
