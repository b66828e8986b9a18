"""Stopping that always ends: bounded waits, cancellations that cannot be lost, and a
log line that says what was still running when a bound ran out.

    await wait_event(event, 0.5)                  # True if set, False after 0.5 s
    await stop_task(task, "the follower")         # cancel, wait (bounded), True if it ended
    await bounded(part.stop, "the follower")      # a part's stop(), cancelled after a bound

Why. Python 3.11's `asyncio.wait_for(aw, timeout)` drops a cancellation that arrives
while `aw` has just finished (it returns aw's result instead). A task that waits in
such a loop and is cancelled at that moment (a part stopped a few loop iterations after
it started: a node on PostgreSQL stopping while it takes the lease) goes on running,
and a stop() that awaits it waits forever (issue 17: a witness node never finished
stopping). So: waits with a timeout use `asyncio.timeout`, which never drops one
(`wait_event`); a task being stopped is cancelled again until it ends, within a bound
(`stop_task`); and every part's stop is bounded too (`bounded`), so a node's stop and
SIGTERM end even when something waits on a database that went away. When a bound runs
out, one WARNING names every task still pending and where each one waits
(`pending_tasks`), so the next hang explains itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import types

log = logging.getLogger(__name__)

#: Seconds a part's stop may take before it is cancelled (and what was pending logged).
STOP_TIMEOUT = 5.0
#: Seconds a cancelled task is given to end (its own clean-up) before it is cancelled
#: again, every RECANCEL_EVERY seconds: a cancellation it dropped is repeated.
RECANCEL_AFTER = 0.5
RECANCEL_EVERY = 0.1


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set (True) or `timeout` seconds pass (False); a
    cancellation is never lost (unlike 3.11's wait_for)."""
    if event.is_set():
        return True
    if timeout is not None and timeout <= 0:
        return False
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return event.is_set()


async def stop_task(task: asyncio.Task | None, what: str, timeout: float = STOP_TIMEOUT) -> bool:
    """Cancel `task` and wait until it ends: after RECANCEL_AFTER seconds it is
    cancelled again every RECANCEL_EVERY seconds (a cancellation it dropped is
    repeated); after `timeout` seconds what is still pending is logged and the task
    left behind. True if it ended. Errors of the task are logged, not raised; a
    cancellation of the caller is raised once the task ended or was left behind."""
    if task is None or task.done():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    task.cancel()
    cancelled = await _wait_through_cancellation(task, min(RECANCEL_AFTER, timeout))
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            log.warning("stopping %s: still running after %.1f s; going on without it. Pending: %s",
                        what, timeout, pending_tasks())
            break
        task.cancel()
        cancelled = await _wait_through_cancellation(task, min(RECANCEL_EVERY, left)) or cancelled
    if task.done() and not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("stopping %s: it had failed (%s: %s)", what, type(exc).__name__, exc)
    if cancelled:
        raise asyncio.CancelledError
    return task.done()


async def bounded(stop, what: str, timeout: float = STOP_TIMEOUT) -> None:
    """Await `stop()` (a part's stop coroutine) for at most `timeout` seconds, even if
    the caller is cancelled meanwhile (then CancelledError is raised after: the parts
    stopped after this one still stop); after the bound, log what is pending and
    cancel it. Its errors are logged, not raised."""
    task = asyncio.ensure_future(stop())
    cancelled = await _wait_through_cancellation(task, timeout)
    if not task.done():
        log.warning("stopping %s took more than %.1f s; cancelling it. Pending: %s", what, timeout,
                    pending_tasks())
        await stop_task(task, what, timeout=min(timeout, 2.0))
    elif not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("stopping %s failed (%s: %s)", what, type(exc).__name__, exc, exc_info=exc)
    if cancelled:
        raise asyncio.CancelledError


async def _wait_through_cancellation(task: asyncio.Future, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `task`, whatever cancels the caller meanwhile;
    True if the caller was cancelled (it should raise CancelledError when done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    cancelled = False
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            await asyncio.wait([task], timeout=left)
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


def pending_tasks() -> str:
    """Every pending task of the running loop but the caller's: its name and where it
    waits (the chain of awaits, innermost last)."""
    current = asyncio.current_task()
    described = [f"{task.get_name()} at {where(task)}" for task in asyncio.all_tasks()
                 if task is not current and not task.done()]
    return "; ".join(sorted(described)) or "none"


def where(task: asyncio.Task) -> str:
    """'file.py:123 function -> file.py:45 inner -> <what it awaits>'."""
    steps = []
    awaited = task.get_coro()
    for _ in range(30):  # a bound: an await chain is short
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        steps.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}")
        nxt = getattr(awaited, "cr_await", None)
        if nxt is None:
            nxt = getattr(awaited, "gi_yieldfrom", None)
        if nxt is None or not isinstance(nxt, (types.CoroutineType, types.GeneratorType)):
            break
        awaited = nxt
    waiter = getattr(task, "_fut_waiter", None)  # what the task awaits (asyncio's own field)
    if waiter is not None:
        steps.append(_short(waiter))
    return " -> ".join(steps) or "(not started)"


def _short(awaitable) -> str:
    text = repr(awaitable)
    return text if len(text) <= 120 else text[:117] + "..."
