"""GET /healthz (node/web/health_routes.py): 200 only when the process can serve --
database answering, a checkpoint to serve, and on a platform its match index built --
on both sites, never cached, with whether this process sequences."""

from __future__ import annotations

import asyncio
import time

import pytest

from node.runtime import HEALTH_REUSE
from publish_support import make_datadir
from test_match_api import index_build_waiting_for

pytestmark = pytest.mark.timeout(60)


async def health(session, url: str) -> tuple[int, dict, dict]:
    async with session.get(url + "/healthz") as r:
        return r.status, await r.json(), dict(r.headers)


async def test_a_sqlite_node_is_healthy_and_sequences(tmp_path, start_node, session):
    node = await start_node(make_datadir(tmp_path, role="helpline"))
    for url in (node.public_url, node.admin_url):
        status, report, headers = await health(session, url)
        assert status == 200 and report["status"] == "ok" and report["sequencer"] is True
        assert report["checks"] == {"started": True, "database": True, "log": True}
        assert headers["Cache-Control"] == "no-store"


async def test_a_platform_says_unavailable_until_its_index_is_built(tmp_path, start_node, session):
    gate = asyncio.Event()
    node = await start_node(make_datadir(tmp_path, role="platform"), prepare=index_build_waiting_for(gate))
    try:
        status, report, headers = await health(session, node.public_url)
        assert status == 503 and headers["Retry-After"] == "1"
        assert report["status"] == "unavailable" and report["checks"]["match_index"] is False
        assert report["checks"]["database"] is True
        gate.set()
        deadline = time.monotonic() + 20
        while (await health(session, node.public_url))[0] != 200:
            assert time.monotonic() < deadline, "never healthy once the index was built"
            await asyncio.sleep(0.05)
    finally:
        gate.set()


async def test_a_database_that_does_not_answer_makes_it_unavailable(tmp_path, start_node, session):
    node = await start_node(make_datadir(tmp_path))
    # A database that hangs (a server gone silent): the health check's own database
    # worker is kept busy, so its look cannot answer.
    blocked = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def hang(db):
        loop.call_soon_threadsafe(blocked.set)
        while not release.is_set():
            time.sleep(0.01)

    worker = node.node._health_db
    await asyncio.sleep(HEALTH_REUSE + 0.1)  # the look made at start is no longer reused
    stuck = asyncio.ensure_future(worker.call(hang))
    await blocked.wait()
    try:
        started = time.monotonic()
        status, report, _ = await health(session, node.public_url)
        assert status == 503 and report["checks"]["database"] is False
        assert time.monotonic() - started < 5  # HEALTH_TIMEOUT, not forever
    finally:
        release.set()
        await stuck


async def test_a_flood_of_health_checks_costs_one_look(tmp_path, start_node, session):
    node = await start_node(make_datadir(tmp_path))
    looks = []
    repository = node.node._health_db.log
    original = repository.latest_checkpoint

    async def counted():
        looks.append(1)
        return await original()

    node.node._health_db.log = type("Counted", (), {"latest_checkpoint": staticmethod(counted)})()
    await asyncio.sleep(HEALTH_REUSE + 0.1)
    answers = await asyncio.gather(*(health(session, node.public_url) for _ in range(100)))
    assert all(status == 200 for status, _, _ in answers)
    assert len(looks) <= 2
