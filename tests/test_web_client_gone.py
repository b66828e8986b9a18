"""A client that goes away in the middle of sending a request body (the soak's fault
proxy does it all the time) costs one INFO line, not a traceback at ERROR: it is
nobody's bug, and a log full of tracebacks hides the ones that are."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from node.web.app import RunningNode
from publish_support import make_datadir


async def test_a_client_gone_mid_body_is_one_quiet_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    datadir = make_datadir(tmp_path, name="witness", origin="witness.example/log")
    node = await RunningNode(datadir).start("127.0.0.1", 0)
    try:
        host, port = node.admin_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST /admin/append HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer "
                     f"{datadir.admin_token()}\r\nContent-Length: 100000\r\n\r\n".encode() + b"{" * 10)
        await writer.drain()
        await asyncio.sleep(0.3)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, like a killed peer
        for _ in range(50):
            if any(r.name == "aiohttp.server" for r in caplog.records):
                break
            await asyncio.sleep(0.1)
    finally:
        await node.stop()
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server, "the server said nothing about the lost request"
    assert all(r.exc_info is None and r.levelno == logging.INFO for r in server), server
    assert "went away" in server[0].getMessage()
