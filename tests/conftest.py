"""What every test may use: one aiohttp client session and one way to start a node.

    session            an aiohttp.ClientSession, closed after the test
    start_node(datadir, host="127.0.0.1", port=0, prepare=None)
                       a node built and started as `ncii-node serve` builds it (both its
                       sites on loopback, free ports by default): a
                       node.web.server.RunningNode, whose `node` is the node.runtime.Node;
                       `prepare(running)` runs before it starts (to add a route, slow a
                       part down); every node started is stopped after the test, even if
                       the test stopped it already

    pg_cluster         (session) a throwaway PostgreSQL 15 cluster (tests/pg_support.py),
                       stopped at the end of the session; FAILS the test (never skips)
                       when PostgreSQL cannot be started
    pg_url             a fresh database of that cluster with the node's schema, dropped after
    db_target          parametrized over both backends: a SQLite file path, then a
                       PostgreSQL URL -- what open_db and DatabaseWorker take

Support modules (publish_support, follow_support, ops_support, webapp_support, ...)
are imported by their plain name: tests/ and tests/browser/ are on the import path
(pyproject.toml, [tool.pytest.ini_options] pythonpath). Data directories are made by
publish_support.make_datadir.
"""

from __future__ import annotations

import aiohttp
import pytest

from node.store import open_db
from node.web.server import RunningNode
from pg_support import PgCluster, PgUnavailable


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster()
    try:
        cluster.start()
        cluster.prepare_template(lambda url: open_db(url).close())
    except PgUnavailable as exc:
        cluster.stop()
        pytest.fail(f"the PostgreSQL tests need a PostgreSQL 15 cluster, which could not start: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster):
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "node.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def start_node():
    started: list[RunningNode] = []

    async def start(datadir, host: str = "127.0.0.1", port: int | None = 0, prepare=None) -> RunningNode:
        running = RunningNode(datadir)
        if prepare is not None:
            prepare(running)
        started.append(running)
        return await running.start(host, port)

    yield start
    for running in reversed(started):
        await running.stop()
