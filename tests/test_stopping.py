"""Stops that always end (node/stopping.py), and the hang of issue 17: the witness
submitter, stopped a few loop iterations after it started, swallowed its cancellation
(Python 3.11's wait_for) and its stop() waited forever."""

from __future__ import annotations

import asyncio
import logging
import time

from node.stopping import bounded, stop_task, wait_event, where
from node.store import open_db
from node.witness.submit import WitnessSubmitter


class _Sequencer:
    """What the submitter uses of a sequencer: a published checkpoint, the hook list."""

    def __init__(self):
        self.on_publish = []
        self.published = object()  # no witness is configured: never read


async def test_submitter_stopped_at_every_moment_of_its_start(tmp_path):
    path = tmp_path / "node.db"
    open_db(path).close()
    for iterations in range(8):  # 0-2 hung before the fix, every time
        submitter = WitnessSubmitter(_Sequencer(), path)
        await submitter.start()
        for _ in range(iterations):
            await asyncio.sleep(0)
        started = time.monotonic()
        await asyncio.wait_for(submitter.stop(), 5)
        assert time.monotonic() - started < 1.0, iterations
        assert submitter._task.done()


async def test_stop_task_cancels_again_a_task_that_swallowed_a_cancellation():
    swallowed = asyncio.Event()

    async def stubborn():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # as 3.11's wait_for does when its awaitable just finished
        await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await stop_task(task, "a stubborn task", timeout=5)
    assert swallowed.is_set() and task.cancelled()
    assert time.monotonic() - started < 2.0  # RECANCEL_AFTER, then at once


async def test_a_stop_that_never_ends_is_cut_off_and_says_what_was_pending(caplog):
    never = asyncio.Event()

    async def waits_forever():
        await never.wait()

    async def stop():
        task = asyncio.create_task(waits_forever(), name="stuck-part")
        try:
            await task
        finally:
            task.cancel()

    async def stop_refusing_cancellation():
        while not never.is_set():
            try:
                await never.wait()
            except asyncio.CancelledError:
                pass

    caplog.set_level(logging.WARNING, logger="node.stopping")
    started = time.monotonic()
    await bounded(stop, "the stuck part", timeout=0.3)
    assert time.monotonic() - started < 2
    [line] = [r.getMessage() for r in caplog.records if "the stuck part" in r.getMessage()]
    assert "took more than 0.3 s" in line
    assert "stuck-part at test_stopping.py:" in line and "waits_forever" in line  # names and where
    caplog.clear()
    started = time.monotonic()
    await bounded(stop_refusing_cancellation, "a part refusing to stop", timeout=0.2)
    assert time.monotonic() - started < 3  # 0.2 s, then at most 0.2 s of cancelling
    assert any("going on without it" in r.getMessage() for r in caplog.records)
    never.set()  # lets the refusing task end before the loop closes
    await asyncio.sleep(0.01)


async def test_wait_event_keeps_a_cancellation_that_arrives_as_the_event_is_set():
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_event(event, 10))
    await asyncio.sleep(0)
    event.set()
    waiter.cancel()  # in the same loop iteration: 3.11's wait_for would return True
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
    assert await wait_event(event, 0) and not await wait_event(asyncio.Event(), 0.01)


def test_where_names_the_chain_of_awaits():
    async def inner(event):
        await event.wait()

    async def outer(event):
        await inner(event)

    async def main():
        event = asyncio.Event()
        task = asyncio.create_task(outer(event))
        await asyncio.sleep(0)
        text = where(task)
        event.set()
        await task
        return text

    text = asyncio.run(main())
    assert "outer ->" in text and "inner" in text and "Future pending" in text
