"""Issue 12, point 6: nothing of a refused request's line, headers or body reaches the
log. A real `ncii-node -v serve` process (its own logging set-up, DEBUG included) gets
malformed and refused requests carrying a case number, a PIN and a marked User-Agent;
its whole log is then searched for them."""

from __future__ import annotations

import asyncio

import pytest

from publish_support import make_datadir
from serve_support import NodeProcess

pytestmark = pytest.mark.timeout(60)

CASE = "7K2Q-M9XD-4TPA-RW3V"
PIN = "31415926"
SECRETS = (CASE, CASE.replace("-", ""), PIN, "SECRET-AGENT")


async def send(host: str, port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_refused_requests_leave_nothing_of_themselves_in_the_log(tmp_path):
    datadir = make_datadir(tmp_path, public_read=False, name="helpline")
    node = NodeProcess(datadir, verbose=True)
    await node.start()
    host, port = node.public_url.split("//", 1)[1].rsplit(":", 1)
    q = f"case_number={CASE}&pin={PIN}"
    requests = [
        # the request: a request line too long, with the codes in its query
        f"GET /?{q}&x={'A' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        # an oversized User-Agent (and one oversized header holding the PIN)
        f"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: SECRET-AGENT{'B' * 9000}\r\n\r\n".encode(),
        f"GET / HTTP/1.1\r\nHost: x\r\nX-Pin: {PIN}{'C' * 9000}\r\n\r\n".encode(),
        # headers the parser cannot read, a bad Content-Length, a bad target, a bad method
        f"GET /?{q} HTTP/1.1\r\nHost: x\r\nBad Header {PIN}\r\n\r\n".encode(),
        f"POST /v1/cases HTTP/1.1\r\nHost: x\r\nContent-Length: {PIN}x\r\n\r\n".encode(),
        f"GET /?{q}\x00 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"G{PIN}ET( /?{q} HTTP/1.1\r\n\r\n".encode(),
        # a well-formed request with the case number as its method, and in its path
        f"{CASE.replace('-', '')} /v1/cases HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode(),
        f"GET /v1/cases/{CASE}/{PIN} HTTP/1.1\r\nHost: x\r\nUser-Agent: SECRET-AGENT\r\n\r\n".encode(),
        # refused bodies: not JSON, wrong codes, an unsigned tile read
        f"POST /v1/cases/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(q)}\r\n\r\n{q}".encode(),
        (f'POST /v1/cases/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nUser-Agent: SECRET-AGENT'
         f'\r\nContent-Length: 50\r\n\r\n{{"case_number": "{CASE}", "pin": "{PIN}"}}'.encode()),
        f"GET /tile/0/000?{q} HTTP/1.1\r\nHost: x\r\nUser-Agent: SECRET-AGENT\r\n\r\n".encode(),
    ]
    try:
        answers = [await send(host, int(port), raw) for raw in requests]
        assert all(a.startswith(b"HTTP/1.") and int(a.split()[1]) >= 400 for a in answers), answers
    finally:
        node.stop()
    log = node.stderr_path.read_text()
    assert log.count("refused a malformed request") >= 6, log
    for secret in SECRETS:
        assert secret not in log, f"{secret!r} reached the log:\n{log}"
    assert "(other method)" in log
