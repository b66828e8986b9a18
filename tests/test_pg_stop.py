"""A node on PostgreSQL always stops (issue 17): processes of one node, in this one
event loop as in `serve`, stopped at random moments of their start-up and of a lease
take-over (the parts of the sequencing process starting in the background, the
sequencer recovering the log), each stop within STOP_BOUND seconds. Before the fix a
stop a few loop iterations after the witness submitter started waited forever."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time

import pytest

from node.web.server import RunningNode
from publish_support import make_datadir

#: Seconds any stop may take (the node's own bounds are 5-15 s per part; a normal stop
#: takes well under a second).
STOP_BOUND = 10.0


async def _stop(running: RunningNode, what: str) -> float:
    started = time.monotonic()
    try:
        await asyncio.wait_for(running.stop(), STOP_BOUND)
    except asyncio.TimeoutError:
        pytest.fail(f"{what}: the stop took more than {STOP_BOUND:.0f} s")
    return time.monotonic() - started


async def _random_moment(running: RunningNode, rng: random.Random) -> None:
    """Wait for a random moment of the process's start-up or take-over: a random
    delay, or a few loop iterations after it took the lease or after its sequencing
    parts began to start (the hang was a stop reaching the witness submitter just
    after it started)."""
    node = running.node
    kind = rng.choice(["delay", "lease", "leading"])
    if kind == "delay":
        await asyncio.sleep(rng.uniform(0, 1.2))
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (node.lease.held and (kind == "lease" or node.follower is not None)):
        await asyncio.sleep(0)
    for _ in range(rng.randrange(40)):
        await asyncio.sleep(0)


def _datadir(tmp_path, url, role: str):
    datadir = make_datadir(tmp_path, name=role, origin=f"{role}.example/log", database=url)
    config = datadir.config
    config.node.role = role
    datadir.save_config(config)
    return datadir


@pytest.mark.parametrize("role", ["witness", "helpline"])
async def test_stops_at_random_moments_of_start_up_and_take_over(tmp_path, pg_url, role, caplog):
    caplog.set_level(logging.WARNING, logger="node.stopping")
    seed = int(os.environ.get("NCII_STOP_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    datadir = _datadir(tmp_path, pg_url, role)
    stops: list[float] = []
    running: list[RunningNode] = []
    try:
        # A process alone: stopped while its leading parts start in the background.
        for i in range(3):
            node = RunningNode(datadir)
            running.append(node)
            await node.start("127.0.0.1", 0)
            await _random_moment(node, rng)
            stops.append(await _stop(node, f"seed {seed}, alone #{i}"))
        # Two processes: the holder stops, the other takes over and is stopped at a
        # random moment of the take-over (lease poll, recovery, leading parts starting).
        holder = RunningNode(datadir)
        running.append(holder)
        await holder.start("127.0.0.1", 0)
        for i in range(3):
            other = RunningNode(datadir)
            running.append(other)
            await other.start("127.0.0.1", 0)
            assert holder.node.lease.held and not other.node.lease.held
            stops.append(await _stop(holder, f"seed {seed}, holder #{i}"))
            await _random_moment(other, rng)
            stops.append(await _stop(other, f"seed {seed}, taking over #{i}"))
            holder = RunningNode(datadir)
            running.append(holder)
            await holder.start("127.0.0.1", 0)
    finally:
        for node in running:
            await node.stop()
    assert len(stops) == 9 and max(stops) < STOP_BOUND, (seed, stops)
    # No part needed its bound: each ended when asked (the bounds are a safety net).
    assert not [r.getMessage() for r in caplog.records if r.name == "node.stopping"], seed


async def test_the_lease_session_is_closed_only_after_a_check_given_up(pg_url):
    """A check of the lease still running when the lease stops (cancelled, or past its
    time limit) ends before the session closes: closing a psycopg connection another
    thread waits on let that thread steal the next connection's answer (a start hung)."""
    from node.log.lease import PostgresLease

    lease = PostgresLease(pg_url, poll_interval=0.05)
    await lease.start()
    assert lease.held
    events = []
    session = lease._session
    still_held, close = session.still_held, session.close

    def slow_check():
        events.append("check started")
        time.sleep(0.6)
        events.append("check ended")
        return still_held()

    def recorded_close():
        events.append("closed")
        close()

    session.still_held, session.close = slow_check, recorded_close
    deadline = time.monotonic() + 5
    while "check started" not in events and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await lease.stop()  # cancels the poll while the check runs in the session's thread
    await asyncio.sleep(1.0)
    assert events[:3] == ["check started", "check ended", "closed"], events
