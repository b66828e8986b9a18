"""The push stream (spec/parts/following.md §4.3) through the nginx configurations we ship
(deploy/nginx/ncii-node.conf and ncii-node-multi.conf, Debian's real nginx, TLS with a
test CA): a reader's signed stream request passes the proxy (the Host kept for the
signature), and each checkpoint reaches the reader as its own frame the moment it is
published, not buffered until the stream ends, because the node sends
`X-Accel-Buffering: no`. The control: the same configuration told to ignore that
header buffers the stream, so the test sees the difference it claims."""

from __future__ import annotations

import ssl
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from nginx_support import Nginx, free_port, make_certificates, multi_site, nginx_binary, site_config
from node.follow.push import STREAM_TYPE, parse_parts, part_ids
from publish_support import append, make_datadir, wait_for
from test_push import pdq_line, reader
from test_push_stream import read_frames

pytestmark = pytest.mark.timeout(120)
#: A frame must reach the reader this soon after its append returned (a buffered
#: stream delivers it only when the stream ends, `wait` seconds later).
FRAME_WITHIN = 3.0


def ignoring_the_header(site: str) -> str:
    """The control: nginx told to ignore X-Accel-Buffering (its proxy_buffering then holds)."""
    assert site.count("    proxy_buffering on;\n") == 1
    return site.replace("    proxy_buffering on;\n", "    proxy_buffering on;\n    proxy_ignore_headers X-Accel-Buffering;\n")


async def proxied_node(tmp_path, start_node, template: str, control: bool = False):
    """A helpline node behind nginx with the shipped `template`: (node, nginx, base URL,
    the helpline's data directory, a registered reader's signer, an SSL context)."""
    nginx_binary()
    ca, cert, key, _ = make_certificates(tmp_path)
    https_port = free_port()
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    config = helpline.config
    config.http.trusted_proxies = ["127.0.0.1"]
    config.http.public_names.append(f"127.0.0.1:{https_port}")  # the name readers sign for: the proxy's
    helpline.save_config(config)
    signer = reader(tmp_path, helpline)
    node = await start_node(helpline)
    node_port, admin_port = (urlsplit(url).port for url in (node.public_url, node.admin_url))
    if template == "ncii-node.conf":
        site = site_config(node_port, free_port(), https_port, cert, key, tmp_path / "nginx-error.log")
    else:  # both upstream servers are the one node: what matters here is the proxying
        site = multi_site([node_port, node_port], [admin_port, admin_port], https_port, free_port(), cert, key, tmp_path)
    nginx = Nginx(tmp_path / "nginx", ignoring_the_header(site) if control else site)
    context = ssl.create_default_context(cafile=str(ca))
    base = f"https://127.0.0.1:{https_port}"

    async def answers():
        try:
            async with aiohttp.ClientSession() as session, session.get(base + "/checkpoint", ssl=context) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(answers, 20)
    return node, nginx, base, helpline, signer, context


@pytest.mark.parametrize("template", ["ncii-node.conf", "ncii-node-multi.conf"])
async def test_the_stream_goes_through_the_shipped_nginx_frame_by_frame(tmp_path, start_node, template):
    node, nginx, base, helpline, signer, context = await proxied_node(tmp_path, start_node, template)
    token = helpline.admin_token()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            assert (await append(session, node.admin_url, token, [pdq_line(0), pdq_line(1)]))[0] == 200

            async def through_nginx(path: str) -> bytes:
                url = base + "/" + path
                headers = signer.sign_headers("GET", url) if path.startswith("tile/") else {}
                async with session.get(url, headers=headers) as r:
                    assert r.status == 200, (path, r.status)
                    return await r.read()

            note = await through_nginx("checkpoint")
            held = int(note.split(b"\n")[1])
            url = f"{base}/push/stream?wait=30&have={held}"
            opened = time.monotonic()
            async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
                assert r.status == 200 and r.content_type == STREAM_TYPE, await r.text()
                assert r.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.headers
                assert parse_parts((await read_frames(r, 1, timeout=FRAME_WITHIN))[0]) == (note, {})
                delays = [time.monotonic() - opened]
                for n in range(3):
                    assert (await append(session, node.admin_url, token, [pdq_line(10 + n)]))[0] == 200
                    appended = time.monotonic()
                    pushed, parts = parse_parts((await read_frames(r, 1, timeout=FRAME_WITHIN))[0])
                    delays.append(time.monotonic() - appended)
                    size = int(pushed.split(b"\n")[1])
                    assert size > held and pushed == await through_nginx("checkpoint")
                    assert list(parts) == [i.path() for i in part_ids(held, size)]
                    for path, data in parts.items():
                        assert data == await through_nginx(path)
                    held = size
                assert not r.content.at_eof()  # frame by frame, on one open stream
            print(f"\n{template}: frames through nginx {', '.join(f'{d * 1000:.0f}' for d in delays)} ms after "
                  "the stream opened / the append returned")
    finally:
        nginx.stop()


async def test_the_control_an_nginx_that_ignores_the_header_buffers_the_stream(tmp_path, start_node):
    node, nginx, base, helpline, signer, context = await proxied_node(tmp_path, start_node, "ncii-node.conf",
                                                                      control=True)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            assert (await append(session, node.admin_url, helpline.admin_token(), [pdq_line(0)]))[0] == 200
            url = f"{base}/push/stream?wait=4"
            opened = time.monotonic()
            async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
                assert r.status == 200
                frames = await read_frames(r, timeout=20)
            # The node sent the frame at once (the test above); nginx held it, and even the
            # answer's head, until the stream ended `wait` seconds later.
            assert len(frames) == 1 and time.monotonic() - opened > 3.5
    finally:
        nginx.stop()
