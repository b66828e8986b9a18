"""`[http] stop_grace`: a request still in flight when the node is told to stop gets that
long to finish, then is cut, so a client that keeps a body coming (fast enough to pass
`min_body_rate`, for up to `body_timeout`) cannot hold a stop beyond it. aiohttp's own
default, 60 s, equals the systemd unit's TimeoutStopSec: the node was killed first."""

from __future__ import annotations

import asyncio
import time

import pytest

from publish_support import helpline_datadir
from serve_support import NodeProcess, host_port

pytestmark = pytest.mark.timeout(60)


async def keep_a_body_coming(url: str, token: str, stop: asyncio.Event) -> None:
    """POST /admin/append declaring 16 MiB, sent at 64 KiB/s (well above min_body_rate):
    in flight until body_timeout (30 s) unless the node cuts it."""
    host, port = host_port(url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write((f"POST /admin/append HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Length: {16 * 1024 * 1024}\r\n\r\n").encode())
    try:
        while not stop.is_set():
            writer.write(b"#" * 6553)
            await writer.drain()
            await asyncio.sleep(0.1)
    except (ConnectionError, OSError):
        pass  # the node cut it
    finally:
        writer.close()


async def test_a_body_still_coming_cannot_hold_a_stop_beyond_stop_grace(tmp_path):
    datadir = helpline_datadir(tmp_path)
    config = datadir.config.to_dict()
    config["http"]["stop_grace"] = 1.0
    from node.config import Config
    datadir.save_config(Config.from_dict(config))
    node = NodeProcess(datadir)
    await node.start()
    stop = asyncio.Event()
    body = asyncio.create_task(keep_a_body_coming(node.admin_url, datadir.admin_token(), stop))
    try:
        await asyncio.sleep(1.5)  # the request is in flight, its body arriving
        assert not body.done()
        began = time.monotonic()
        node.proc.terminate()
        code = await node.wait_dead(timeout=25)
        took = time.monotonic() - began
        assert code == 0, node.stderr_path.read_text()[-2000:]
        # 1 s of grace, then the node's own stop; the body would have kept it 30 s
        assert took < 8, took
    finally:
        stop.set()
        await body
        node.stop()
