"""Appends a process that does not sequence stored in `pending_entries` (PostgreSQL,
several `serve` processes: node/store/pending.py), waiting until a recorded checkpoint
includes them: one look at the database for all of them at a time.

    waits = PendingWaits(worker, interval)
    indices, size = await waits.wait(ids)   # their log indices, and a checkpoint size above them
    waits.heard()                           # a checkpoint was announced (NOTIFY): look now
    waits.close(error)                      # stopping: every wait fails with `error`

Each waiting append used to look on its own (its indices, then the latest checkpoint)
at every announcement and every `interval`: with a hundred appends waiting, a hundred
pairs of queries per checkpoint. Here one task looks for every wait together -- the
indices of all their rows in one query, the latest checkpoint in another -- when a
checkpoint is announced, and every `interval` anyway (an announcement missed, its
connection broken, loses nothing), and ends when nothing waits.
"""

from __future__ import annotations

import asyncio
import logging

from node.stopping import wait_event

log = logging.getLogger(__name__)


def _look(db, ids: list[int]) -> tuple[dict[int, int | None], int]:
    """(worker thread) The assigned index of each row, and the latest recorded size."""
    from node.store import pending

    found = pending.indices(db, ids)
    latest = db.log.latest_checkpoint()
    return found, latest.size if latest is not None else 0


class PendingWaits:
    def __init__(self, worker, interval: float):
        self._worker = worker
        self._interval = interval
        self._waits: list[tuple[list[int], asyncio.Future]] = []
        self._heard = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed: Exception | None = None

    def heard(self) -> None:
        self._heard.set()

    async def wait(self, ids: list[int]) -> tuple[list[int], int]:
        if self._closed is not None:
            raise self._closed
        future = asyncio.get_running_loop().create_future()
        self._waits.append((list(ids), future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="pending-waits")
        try:
            return await future
        finally:
            self._waits = [w for w in self._waits if w[1] is not future]

    async def _run(self) -> None:
        while self._waits and self._closed is None:
            await wait_event(self._heard, self._interval)  # never drops a cancellation
            self._heard.clear()
            waits = [w for w in self._waits if not w[1].done()]
            if not waits:
                continue
            try:
                found, size = await self._worker.call(_look, [i for ids, _ in waits for i in ids])
            except Exception as exc:  # noqa: BLE001 -- the next look tries again
                log.warning("sequencer: looking for the appends waiting here failed (%s)", exc)
                continue
            for ids, future in waits:
                indices = [found.get(i) for i in ids]
                if all(i is not None for i in indices) and size > max(indices) and not future.done():
                    future.set_result((indices, size))

    def close(self, error: Exception) -> None:
        """Every wait fails with `error` (the process stops); later ones too."""
        self._closed = error
        for _, future in self._waits:
            if not future.done():
                future.set_exception(error)
        if self._task is not None:
            self._task.cancel()
