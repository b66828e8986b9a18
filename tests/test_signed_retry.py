"""A signed read that aiohttp sends again is signed again.

aiohttp resends an idempotent request on a new connection when a reused keep-alive
connection turns out closed (RFC 9112 §9.3.1.1). If the node had already received the
first copy, its nonce is in the replay cache: a copy carrying the same signature is
refused as a replay (401), which a follower takes as "this channel is not offered to
me" and gives up push for ten minutes (seen in the federation soak, issue 22). The
follower's client therefore signs each attempt (an aiohttp client middleware), never
a request once for all its attempts. Here a real node sits behind a proxy that relays
the second request of a connection to the node, then closes that connection without
answering: exactly the case aiohttp retries.
"""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from node.cli import main as cli_main
from node.follow.client import PeerClient
from node.readaccess import RequestSigner
from publish_support import append, make_datadir


class DroppingProxy:
    """Relays each connection to the node; the second request of a connection reaches
    the node, but its connection is closed before any answer comes back."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.dropped = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_server(self._serve, sock=sock)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        node_r, node_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            for n in (1, 2):
                head = await client_r.readuntil(b"\r\n\r\n")  # GETs: no body
                node_w.write(head)
                await node_w.drain()
                answer = await node_r.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in answer.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                answer += await node_r.readexactly(length)
                if n == 2:  # the node answered (and kept the nonce); the client never hears it
                    self.dropped += 1
                    return
                client_w.write(answer)
                await client_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            client_w.close()
            node_w.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_a_retried_signed_read_is_signed_again(tmp_path, start_node):
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    proxy_port = listening.getsockname()[1]
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False,
                            settings={"http": {"public_names": [f"127.0.0.1:{proxy_port}"]}})
    reader_dir = make_datadir(tmp_path, name="reader", origin="reader.example/log")
    key = reader_dir.load_request_signer()
    assert cli_main(["readers", "add", "--dir", str(helpline.root), key.verifier_key()]) == 0
    signer = RequestSigner.from_seed(key.name, key.seed)
    node = await start_node(helpline)
    proxy = DroppingProxy(int(node.public_url.rsplit(":", 1)[1]))
    await proxy.start(listening)
    try:
        async with aiohttp.ClientSession() as session:
            line = json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": "1" * 64})
            assert (await append(session, node.admin_url, helpline.admin_token(), [line]))[0] == 200
        async with PeerClient(f"http://127.0.0.1:{proxy_port}", signer=signer, timeout=10) as client:
            first = await client.get("tile/entries/000.p/1", max_bytes=1 << 16)
            # The same keep-alive connection: relayed, answered by the node, dropped by the
            # proxy; aiohttp sends it again on a new connection, signed anew.
            again = await client.get("tile/entries/000.p/1", max_bytes=1 << 16)
        assert again == first and proxy.dropped == 1
    finally:
        await proxy.stop()
        await node.stop()
