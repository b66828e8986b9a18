"""What every test may use: one aiohttp client session and one way to start a node.

    session            an aiohttp.ClientSession, closed after the test
    start_node(datadir, host="127.0.0.1", port=0, prepare=None)
                       a node built and started as `ncii-node serve` builds it (both its
                       sites on loopback, free ports by default): a
                       node.web.server.RunningNode, whose `node` is the node.runtime.Node;
                       `prepare(running)` runs before it starts (to add a route, slow a
                       part down); every node started is stopped after the test, even if
                       the test stopped it already

Support modules (publish_support, follow_support, ops_support, webapp_support, ...)
are imported by their plain name: tests/ and tests/browser/ are on the import path
(pyproject.toml, [tool.pytest.ini_options] pythonpath). Data directories are made by
publish_support.make_datadir.
"""

from __future__ import annotations

import aiohttp
import pytest

from node.web.server import RunningNode


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
