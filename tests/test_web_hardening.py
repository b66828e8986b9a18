"""The node's HTTP sites hold up against slow, unfinished or hostile requests.

Real nodes on 127.0.0.1 (free ports), raw sockets where the client must misbehave:
- a request body that is slow or never finished (Content-Length not reached, a chunked
  body without its last chunk) gets 408 and the connection is closed, on every POST
  route, within [http] body_timeout;
- POST /add-checkpoint judges a body only once all of it has arrived;
- beyond [http] max_concurrent_bodies bodies being read at once, a pool answers 503
  with Retry-After at once, without reading (per-client shares, the minimum rate and
  the separate pools: tests/test_abuse_bodies.py);
- a request head never finished is closed after [http] idle_timeout;
- deeply nested JSON is a 400 with a message on every route that parses JSON;
- GET /witness/seen and /witness/evidence are for registered readers (unless
  public_read), /witness/checkpoint(s) stay public; `audit --peer` signs its reads;
- the admin site refuses (421) a Host that is not loopback or localhost (DNS rebinding);
- every answer says `Server: ncii-node`, never the Python or aiohttp version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
from publish_support import make_datadir
from serve_support import closed_within, connect, head, host_port, read_answer

from node.cli import main as cli_main
from node.datadir import DataDir
from node.readaccess import RequestSigner
from node.web.app import RunningNode

SLACK = 1.5  # seconds allowed beyond a timeout on a shared 2-core machine
LINGER = 2.0  # the sites' lingering time after an answer to an unfinished body


def datadir_with(tmp_path, name: str, role: str = "helpline", public_read: bool = False,
                 admin: dict | None = None, **http) -> DataDir:
    datadir = make_datadir(tmp_path, name=name, origin=f"{name}.example/log", public_read=public_read)
    config = datadir.config
    config.node.role = role
    config.cases.pin_scrypt_n = 2**10
    for key, value in http.items():
        setattr(config.http, key, value)
    for key, value in (admin or {}).items():
        setattr(config.admin, key, value)
    datadir.save_config(config)
    return DataDir(datadir.root)


async def start(datadir: DataDir) -> RunningNode:
    return await RunningNode(datadir).start("127.0.0.1", 0)


# ------------------------------------------------------------- 1. slow bodies

BODY_TIMEOUT = 0.6


@pytest.fixture
async def slow_node(tmp_path):
    node = await start(datadir_with(tmp_path, "slow", body_timeout=BODY_TIMEOUT, idle_timeout=30.0))
    yield node
    await node.stop()


def unfinished_requests(node: RunningNode) -> dict[str, tuple[str, bytes]]:
    token = node.datadir.admin_token()
    public, admin = node.public_url, node.admin_url
    return {
        "cases, 7 of 100 bytes": (public, head("POST", "/v1/cases", public, Content_Type="application/json",
                                               Content_Length="100") + b'{"a": 1'),
        "cases, chunked without end": (public, head("POST", "/v1/cases", public, Content_Type="application/json",
                                                    Transfer_Encoding="chunked") + b"7\r\n{\"a\": 1\r\n"),
        "cases status, nothing of 50 bytes": (public, head("POST", "/v1/cases/status", public,
                                                           Content_Type="application/json", Content_Length="50")),
        "admin append, 7 of 100 bytes": (admin, head("POST", "/admin/append", admin, Content_Length="100",
                                                     Authorization=f"Bearer {token}") + b'{"kind"'),
        "feedback, 7 of 100 bytes": (admin, head("POST", "/v1/feedback", admin, Content_Length="100",
                                                 Authorization=f"Bearer {token}") + b'{"orig'),
    }


async def test_an_unfinished_body_gets_408_and_the_connection_is_closed(slow_node):
    """Every case at once (each takes the timeout plus the lingering time)."""

    async def one(case: str, url: str, request: bytes) -> None:
        reader, writer = await connect(url)
        try:
            began = time.monotonic()
            writer.write(request)
            await writer.drain()
            status, headers, body = await read_answer(reader, BODY_TIMEOUT + SLACK)
            assert status == 408, (case, body)
            assert time.monotonic() - began >= BODY_TIMEOUT - 0.05, case
            assert headers.get("connection", "").lower() == "close", case
            assert "seconds" in json.loads(body)["error"], case
            assert await closed_within(reader, LINGER + SLACK), case
        finally:
            writer.close()

    cases = unfinished_requests(slow_node)
    assert len(cases) == 5
    await asyncio.gather(*(one(case, url, request) for case, (url, request) in cases.items()))


async def test_the_match_routes_time_out_unfinished_bodies_too(tmp_path):
    node = await start(datadir_with(tmp_path, "slowplatform", role="platform", body_timeout=BODY_TIMEOUT))
    token = node.datadir.admin_token()

    async def unfinished(path: str) -> int:
        reader, writer = await connect(node.admin_url)
        try:
            writer.write(head("POST", path, node.admin_url, Content_Length="100",
                              Authorization=f"Bearer {token}") + b'{"sig')
            await writer.drain()
            return (await read_answer(reader, BODY_TIMEOUT + SLACK))[0]
        finally:
            writer.close()

    try:
        paths = ["/v1/match", "/v1/match/media", "/v1/match/suppress", "/v1/match/threshold"]
        assert await asyncio.gather(*(unfinished(p) for p in paths)) == [408] * len(paths)
    finally:
        await node.stop()


async def test_a_body_that_arrives_in_time_in_pieces_is_read_whole(slow_node):
    """The timeout is on the whole body, not on a quiet moment: pieces that arrive
    within it are read and answered as usual."""
    token = slow_node.datadir.admin_token()
    line = b'{"kind": "submission", "signal": "pdq", "fingerprint": "' + b"ab" * 32 + b'"}\n'
    reader, writer = await connect(slow_node.admin_url)
    try:
        writer.write(head("POST", "/admin/append", slow_node.admin_url, Content_Length=str(len(line)),
                          Authorization=f"Bearer {token}"))
        for piece in (line[:20], line[20:60], line[60:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.1)
        status, _, body = await read_answer(reader, 10)
        assert status == 200, body
        assert json.loads(body)["index"] == 0
    finally:
        writer.close()


async def test_add_checkpoint_waits_for_the_whole_declared_body(tmp_path):
    """A partial body is not judged: `Content-Length: 100` then `old 0\\n` gets no answer
    until the other 94 bytes arrive (then 400: they are no checkpoint); if they never
    do, 408 once [http] body_timeout has passed."""
    node = await start(datadir_with(tmp_path, "witness", role="witness", body_timeout=2.0))
    reader, writer = await connect(node.public_url)
    try:
        writer.write(head("POST", "/add-checkpoint", node.public_url, Content_Length="100") + b"old 0\n")
        await writer.drain()
        status, headers, _ = await read_answer(reader, 2.0 + SLACK)
        assert status == 408 and headers["connection"] == "close"
        writer.close()
        reader, writer = await connect(node.public_url)
        writer.write(head("POST", "/add-checkpoint", node.public_url, Content_Length="100") + b"old 0\n")
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await read_answer(reader, 0.8)
        writer.write(b"\n" + b"x" * 93)
        await writer.drain()
        status, _, body = await read_answer(reader, 5)
        assert status == 400, body
    finally:
        writer.close()
        await node.stop()


async def test_beyond_the_cap_of_bodies_read_at_once_503_at_once(tmp_path):
    node = await start(datadir_with(tmp_path, "capped", body_timeout=2.0, max_concurrent_bodies=2))
    url = node.public_url
    slow = []
    try:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # the last finds the pool full
            reader, writer = await connect(url, source)
            writer.write(head("POST", "/v1/cases", url, Content_Type="application/json", Content_Length="100"))
            await writer.drain()
            slow.append((reader, writer))
            await asyncio.sleep(0.3)  # being read now
        began = time.monotonic()
        status, headers, body = await read_answer(slow[-1][0], 1.0)
        assert status == 503 and int(headers["retry-after"]) >= 1 and "busy" in json.loads(body)["error"]
        assert time.monotonic() - began < 1.0
        async with aiohttp.ClientSession() as session:
            # A body that has arrived whole needs no slot: it is read at once.
            async with session.post(url + "/v1/cases", json={"eligibility": {}}) as r:
                assert r.status == 400
            # The admin site has its own count: the operator is not locked out.
            line = json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": "cd" * 32})
            async with session.post(node.admin_url + "/admin/append", data=line,
                                    headers={"Authorization": f"Bearer {node.datadir.admin_token()}"}) as r:
                assert r.status == 200
            # Once the slow ones are answered (408), bodies are read again.
            for reader, _ in slow[:2]:
                assert (await read_answer(reader, 2.0 + SLACK))[0] == 408
            async with session.post(url + "/v1/cases", json={"eligibility": {}}) as r:
                assert r.status not in (408, 503)
    finally:
        for _, writer in slow:
            writer.close()
        await node.stop()


async def test_a_request_head_never_finished_is_closed(tmp_path):
    node = await start(datadir_with(tmp_path, "idle", idle_timeout=0.8))
    try:
        for partial in (b"", b"POST /v1/cases HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"):
            reader, writer = await connect(node.public_url)
            writer.write(partial)
            await writer.drain()
            assert await closed_within(reader, 0.8 + SLACK), partial
            writer.close()
        # An idle kept-alive connection is closed the same way after its answer.
        reader, writer = await connect(node.public_url)
        writer.write(head("GET", "/checkpoint", node.public_url))
        assert (await read_answer(reader, 5))[0] == 200
        writer.write(b"GET /node.json HTTP/1.1\r\n")
        assert await closed_within(reader, 0.8 + SLACK)
        writer.close()
    finally:
        await node.stop()


def test_http_settings_are_validated(tmp_path):
    from node.config import Config, ConfigError

    base = {"node": {"origin": "a.example/log"}}
    config = Config.from_dict({**base, "http": {"body_timeout": 5, "idle_timeout": 2.5, "max_concurrent_bodies": 3}})
    assert (config.http.body_timeout, config.http.idle_timeout, config.http.max_concurrent_bodies) == (5.0, 2.5, 3)
    defaults = Config.from_dict(base).http
    assert (defaults.body_timeout, defaults.idle_timeout, defaults.max_concurrent_bodies) == (30.0, 15.0, 64)
    assert (defaults.bodies_per_address, defaults.bodies_per_network, defaults.min_body_rate) == (2, 4, 4096.0)
    for bad in ({"body_timeout": 0}, {"idle_timeout": -1}, {"max_concurrent_bodies": 0}, {"bodies_per_address": 0},
                {"bodies_per_network": 0}, {"min_body_rate": 0}):
        with pytest.raises(ConfigError):
            Config.from_dict({**base, "http": bad})


# ------------------------------------------------------------ 3. nested JSON

DEEP_SMALL = b"[" * 1900 + b"]" * 1900  # 3,800 bytes: within every JSON route's limit, too deep to parse


@pytest.fixture
async def platform_node(tmp_path):
    node = await start(datadir_with(tmp_path, "platform", role="platform"))
    yield node
    await node.stop()


@pytest.mark.parametrize("path", ["/admin/append", "/v1/match", "/v1/match/suppress", "/v1/match/threshold",
                                  "/v1/feedback"])
async def test_deeply_nested_json_is_a_400_with_a_message(platform_node, path):
    token = platform_node.datadir.admin_token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, \
            session.post(platform_node.admin_url + path, data=DEEP_SMALL, headers=headers) as r:
        assert r.status == 400, await r.text()
        error = (await r.json())["error"]
    assert "nested" in error, error


async def test_nested_json_under_the_limit_still_parses(platform_node):
    """Nesting as such is not refused, only what the parser cannot take."""
    token = platform_node.datadir.admin_token()
    body = {"signal": "pdq", "fingerprint": "ab" * 32, "x": [[[[[[[[1]]]]]]]]}
    async with aiohttp.ClientSession() as session, \
            session.post(platform_node.admin_url + "/v1/match/threshold", json=body,
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400
        assert "nested" not in (await r.json())["error"]


# --------------------------------------------------------- 2. who we follow

def reader_signer(tmp_path, name: str) -> tuple[str, RequestSigner]:
    key = make_datadir(tmp_path, name=name, origin=f"{name}.example/reader").load_request_signer()
    return key.verifier_key(), RequestSigner.from_seed(key.name, key.seed)


@pytest.mark.parametrize("path", ["/witness/seen", "/witness/evidence", "/witness/evidence?origin=a.example%2Flog"])
async def test_witness_seen_and_evidence_are_for_registered_readers(tmp_path, path):
    node = await start(datadir_with(tmp_path, "restricted"))
    vkey, signer = reader_signer(tmp_path, "reader")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(node.public_url + path) as r:
                assert r.status == 401
                assert "registered readers" in await r.text()
            async with session.get(node.public_url + path,
                                   headers=signer.sign_headers("GET", node.public_url + path)) as r:
                assert r.status == 401  # signed, but not registered: the same answer as a bad signature
            assert cli_main(["readers", "add", "--dir", str(node.datadir.root), vkey]) == 0
            async with session.get(node.public_url + path,
                                   headers=signer.sign_headers("GET", node.public_url + path)) as r:
                assert r.status == 200
                doc = await r.json()
            assert ("checkpoints" if path == "/witness/seen" else "evidence") in doc
            # What a witness cosigned stays public: monitors need it.
            async with session.get(node.public_url + "/witness/checkpoints") as r:
                assert r.status == 200
            async with session.get(node.public_url + "/witness/checkpoint?origin=a.example/log") as r:
                assert r.status == 404  # none cosigned, but not refused
    finally:
        await node.stop()


async def test_a_public_read_node_shows_seen_and_evidence_to_anyone(tmp_path):
    node = await start(datadir_with(tmp_path, "open", public_read=True))
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/witness/seen", "/witness/evidence"):
                async with session.get(node.public_url + path) as r:
                    assert r.status == 200
    finally:
        await node.stop()


async def test_audit_peer_reads_are_signed_with_the_request_key(tmp_path):
    from test_audit import cli

    audited = await start(datadir_with(tmp_path, "audited", public_read=True))
    peer = await start(datadir_with(tmp_path, "peer"))
    key_file = tmp_path / "reader" / "keys" / "request.key"
    vkey, _ = reader_signer(tmp_path, "reader")
    try:
        args = ["audit", audited.public_url, "--vkey", audited.context.log_vkey, "--json",
                "--html", str(tmp_path / "r.html"), "--request-key", str(key_file), "--peer", peer.public_url]
        code, out, err = await cli(*args)
        assert json.loads(out)["peers"][0]["status"].startswith("unreachable: HTTP 401"), out
        assert cli_main(["readers", "add", "--dir", str(peer.datadir.root), vkey]) == 0
        code, out, err = await cli(*args)
        assert code == 0, (out, err)
        assert json.loads(out)["peers"][0]["status"] == "has not seen this log", out
    finally:
        await peer.stop()
        await audited.stop()


# ------------------------------------------------------------ 4. admin Host

HOSTS = [
    ("127.0.0.1:{port}", True), ("127.0.0.1", True), ("localhost", True), ("LOCALHOST:{port}", True),
    ("[::1]:{port}", True), ("[::1]", True), ("127.9.8.7:{port}", True),
    ("evil.example", False), ("evil.example:{port}", False), ("127.0.0.1.evil.example", False),
    ("localhost.evil.example:{port}", False), ("10.0.0.1:{port}", False), ("[::2]:{port}", False),
    ("", False), ("127.0.0.1:{port}:1", False), ("localhost:x", False), ("[::1", False),
]


async def test_the_admin_site_answers_only_a_loopback_host(tmp_path):
    node = await start(datadir_with(tmp_path, "admin"))
    port = host_port(node.admin_url)[1]
    token = node.datadir.admin_token()
    try:
        for host, allowed in HOSTS:
            for method, path, extra in (("GET", "/status", {}),
                                        ("POST", "/admin/append", {"Authorization": f"Bearer {token}",
                                                                   "Content-Length": "0"})):
                reader, writer = await connect(node.admin_url)
                lines = [f"{method} {path} HTTP/1.1", f"Host: {host.format(port=port)}"]
                lines += [f"{k}: {v}" for k, v in extra.items()] + ["Connection: close"]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                status, _, body = await read_answer(reader, 5)
                writer.close()
                if allowed:
                    assert status in (200, 400), (host, path, status, body)  # 400: the empty append body
                else:
                    assert status == 421, (host, path, status, body)
                    assert "Host" in json.loads(body)["error"]
    finally:
        await node.stop()


async def test_allow_remote_admin_takes_any_host(tmp_path):
    node = await start(datadir_with(tmp_path, "remote", admin={"allow_remote": True}))
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(node.admin_url + "/status", headers={"Host": "admin.example"}) as r:
            assert r.status == 200
    finally:
        await node.stop()


# ----------------------------------------------------------- 5. Server header

async def test_every_answer_says_server_ncii_node(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    node = RunningNode(datadir_with(tmp_path, "server"))

    async def boom(request):
        raise RuntimeError("a bug")

    node.app.router.add_get("/boom", boom)
    await node.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for url, status in ((node.public_url + "/checkpoint", 200), (node.public_url + "/nothing", 404),
                                (node.public_url + "/tile/0/000", 401), (node.admin_url + "/status", 200),
                                (node.admin_url + "/admin/append", 405), (node.public_url + "/boom", 500)):
                async with session.get(url) as r:
                    assert r.status == status, url
                    assert r.headers["Server"] == "ncii-node", url
                    if status == 500:
                        assert "a bug" not in await r.text() and "Traceback" not in await r.text()
        # An answer aiohttp's parser makes before any route runs (a malformed request).
        for url in (node.public_url, node.admin_url):
            reader, writer = await connect(url)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            status, headers, _ = await read_answer(reader, 5)
            writer.close()
            assert status == 400 and headers["server"] == "ncii-node"
        # ... and is logged like any other answer (the access logger copes with it).
        assert '(no route)" 400' in caplog.text
        assert "Unhandled exception" not in caplog.text
    finally:
        await node.stop()


async def test_logs_stay_readable_for_an_operator(tmp_path, caplog):
    # Followers poll /checkpoint every second: successful reads are DEBUG, not INFO;
    # a malformed request from anyone is one line, without a traceback or an address.
    caplog.set_level(logging.DEBUG)
    node = await start(datadir_with(tmp_path, "quiet"))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(node.public_url + "/checkpoint") as r:
                assert r.status == 200
            async with session.get(node.public_url + "/nothing") as r:
                assert r.status == 404
        reader, writer = await connect(node.public_url)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        await read_answer(reader, 5)
        writer.close()
    finally:
        await node.stop()
    access = {r.getMessage(): r.levelno for r in caplog.records if r.name == "aiohttp.access"}
    assert access['"GET /checkpoint" 200 ' + next(k for k in access if "/checkpoint" in k).split(" 200 ")[1]] == logging.DEBUG
    assert any("404" in k and level == logging.INFO for k, level in access.items())
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server and all(r.exc_info is None and r.levelno == logging.INFO for r in server), server
    assert "refused a malformed request" in server[0].getMessage() and "\n" not in server[0].getMessage()
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and "127.0.0.1" in r.getMessage()]
