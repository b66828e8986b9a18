"""The push stream (GET /push/stream, node/web/push_stream_routes.py; spec/parts/following.md
§4.3): one signed request answered with a frame per new checkpoint, each a parts body
(§4.2) with exactly the bytes the tile endpoints serve; registered readers only,
bounded per reader and in all with the push channel's waits, ended after `wait` and at
once on shutdown. The follower (node/follow/client.py, scheduler.py) reads one bounded
frame at a time, verifies each exactly like a fetched checkpoint, and falls back to
polling when a hostile node sends anything malformed: nothing of it is applied."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from follow_support import LogServer, StaticLog, helpline_and_platform, pdq_entry
from node.follow.client import FetchError
from node.follow.push import (MAX_PARTS_BYTES, STREAM_TYPE, FrameReader, checkpoint_etag, encode_frame,
                              encode_parts, offered_stream, parse_parts, part_ids)
from node.follow.scheduler import FollowService
from node.follow.sync import PeerMisbehaved
from node.store import open_db
from node.web.push_routes import PUSH_ROOM
from publish_support import append, make_datadir, wait_for
from test_push import pdq_line, reader
from test_push_parts import static_log  # noqa: F401 - the fixture: a follower of a hostile node at size 3


async def read_frames(response, count: int | None = None, timeout: float = 20) -> list[bytes]:
    """Frames of a stream answer (all of them if `count` is None: until it ends)."""
    frames, reader_ = [], FrameReader()
    deadline = time.monotonic() + timeout
    while count is None or len(frames) < count:
        frame = reader_.next_frame()
        if frame is not None:
            frames.append(frame)
            continue
        data = await asyncio.wait_for(response.content.read(reader_.wanted()), deadline - time.monotonic())
        if not data:
            assert reader_.between_frames
            break
        reader_.feed(data)
    return frames


def stream_get(session, node, signer, query="?wait=30", etag=None):
    url = node.public_url + "/push/stream" + query
    headers = signer.sign_headers("GET", url) if signer is not None else {}
    if etag is not None:
        headers["If-None-Match"] = etag
    return session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=60))


async def test_the_stream_sends_each_new_checkpoint_with_its_parts(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    signer = reader(tmp_path, helpline)
    stranger = reader(tmp_path, helpline, name="stranger", register=False)
    node = await start_node(helpline)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(node.public_url + "/node.json") as r:
                assert (await r.json())["push"]["stream"] == "push/stream"
            token = helpline.admin_token()
            assert (await append(session, node.admin_url, token, [pdq_line(0), pdq_line(1)]))[0] == 200

            async def checkpoint():
                async with session.get(node.public_url + "/checkpoint") as r:
                    return await r.read()

            async def signed_get(path):
                url = node.public_url + "/" + path
                async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
                    assert r.status == 200
                    return await r.read()

            note = await checkpoint()
            size = int(note.split(b"\n")[1])
            async with stream_get(session, node, signer, f"?wait=30&have={size - 1}") as r:
                assert r.status == 200 and r.content_type == STREAM_TYPE
                assert r.headers["Cache-Control"] == "no-store" and "Content-Length" not in r.headers
                # At once: the current checkpoint, with the round from have = size - 1.
                first, parts = parse_parts((await read_frames(r, 1))[0])
                assert first == note and list(parts) == [i.path() for i in part_ids(size - 1, size)]
                for path, data in parts.items():
                    assert data == await signed_get(path)
                # Then one frame per new checkpoint, each with the round from the last one.
                held = size
                for n in range(3):
                    assert (await append(session, node.admin_url, token, [pdq_line(10 + n)]))[0] == 200
                    pushed, parts = parse_parts((await read_frames(r, 1))[0])
                    new_size = int(pushed.split(b"\n")[1])
                    assert pushed == await checkpoint() and new_size > held
                    assert list(parts) == [i.path() for i in part_ids(held, new_size)]
                    for path, data in parts.items():
                        assert data == await signed_get(path)
                    held = new_size

            # Named the current checkpoint, nothing changes: the stream ends after `wait`
            # seconds, cleanly, with no frame.
            started = time.monotonic()
            async with stream_get(session, node, signer, "?wait=1", etag=checkpoint_etag(await checkpoint())) as r:
                assert r.status == 200 and await read_frames(r) == []
            assert 0.9 < time.monotonic() - started < 5
            # Without have=, the first frame holds the note alone; the next ones the round
            # from the frame before.
            async with stream_get(session, node, signer, "?wait=30") as r:
                note = await checkpoint()
                assert parse_parts((await read_frames(r, 1))[0]) == (note, {})
                assert (await append(session, node.admin_url, token, [pdq_line(50)]))[0] == 200
                pushed, parts = parse_parts((await read_frames(r, 1))[0])
                held = int(note.split(b"\n")[1])
                assert pushed == await checkpoint()
                assert list(parts) == [i.path() for i in part_ids(held, int(pushed.split(b"\n")[1]))] != []

            # Registered readers only; parameters as for /push/checkpoint.
            async with stream_get(session, node, stranger) as r:
                assert r.status == 401
            async with stream_get(session, node, None) as r:
                assert r.status == 401
            for bad in ("?wait=0", "?wait=x", "?have=01", "?wait=1&wait=2", "?since=3"):
                async with stream_get(session, node, signer, bad) as r:
                    assert r.status == 400, bad
    finally:
        await node.stop()


async def test_streams_are_bounded_with_the_waits_and_end_on_shutdown(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=True)
    config = helpline.config
    config.push.max_waiting, config.push.max_waiting_per_reader = 3, 2
    helpline.save_config(config)
    first, second = reader(tmp_path, helpline, "first"), reader(tmp_path, helpline, "second")
    node = await start_node(helpline)
    stopped = False
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(node.public_url + "/checkpoint") as r:
                etag = checkpoint_etag(await r.read())
            room = node.app[PUSH_ROOM]
            stack = contextlib.AsyncExitStack()
            async with stack:
                a = await stack.enter_async_context(stream_get(session, node, first, etag=etag))
                b = await stack.enter_async_context(stream_get(session, node, first, etag=etag))
                assert a.status == b.status == 200 and len(room) == 2
                # A third of the same reader ends its oldest at once (cleanly, no frame).
                c = await stack.enter_async_context(stream_get(session, node, first, etag=etag))
                assert await read_frames(a, timeout=5) == [] and c.status == 200
                # A stream and a waiting push request share the room: full at 3.
                d = await stack.enter_async_context(stream_get(session, node, second, etag=etag))
                assert d.status == 200 and await wait_for(lambda: len(room) == 3)
                async with stream_get(session, node, second, etag=etag) as refused:
                    assert refused.status == 503 and refused.headers["Retry-After"] == "5"
                    assert b"poll /checkpoint" in await refused.read()
                # Shutdown ends every stream at once, cleanly.
                started = time.monotonic()
                await node.stop()
                stopped = True
                assert time.monotonic() - started < 15
                for response in (b, c, d):
                    assert await read_frames(response, timeout=5) == []
                assert len(room) == 0
    finally:
        if not stopped:
            await node.stop()


async def test_a_follower_takes_many_checkpoints_from_one_stream(tmp_path, start_node):
    async with helpline_and_platform(tmp_path, start_node) as (helpline, platform, publisher, follower):
        origin = "helpline.example/log"
        job = follower.node.follower.jobs[origin]
        assert await wait_for(lambda: job.push.verified and job.push.stream == "push/stream", timeout=20)
        streams, fetched, singles = [], [], []
        real_stream, real_get, real_single = job.client.stream_checkpoints, job.client.get, job.client.next_checkpoint

        def counting_stream(*args, **kwargs):
            streams.append(args)
            return real_stream(*args, **kwargs)

        async def counting_get(path, **kwargs):
            fetched.append(path)
            return await real_get(path, **kwargs)

        async def counting_single(*args, **kwargs):
            singles.append(args)
            return await real_single(*args, **kwargs)

        job.client.stream_checkpoints, job.client.get = counting_stream, counting_get
        job.client.next_checkpoint = counting_single
        db = open_db(platform.db_path)
        try:
            async with aiohttp.ClientSession() as session:
                token = helpline.admin_token()
                start = db.follow.get_log(origin).size
                for n in range(1, 6):
                    assert (await append(session, publisher.admin_url, token, [pdq_line(100 + n)]))[0] == 200
                    assert await wait_for(lambda: db.follow.get_log(origin).size >= start + n)
            # Five checkpoints: at most one new stream (the one open when counting began
            # is not counted), no tile or bundle read, no /checkpoint.
            assert len(streams) <= 1 and fetched == [] and singles == []
        finally:
            db.close()


def test_frames_are_read_strictly_and_bounded():
    note = b"helpline.example/log\n3\nAAAA\n\n- sig\n"
    body = encode_parts(note, [("tile/0/000.p/3", bytes(96))])
    stream = encode_frame(body) + encode_frame(encode_parts(note, []))

    def split(data: bytes, step: int) -> list[bytes]:
        frames, reader_, at, largest = [], FrameReader(), 0, 0
        while True:
            frame = reader_.next_frame()
            if frame is not None:
                frames.append(frame)
                continue
            if at == len(data):
                assert reader_.between_frames, "cut short"
                return frames
            chunk = data[at:at + min(step, reader_.wanted())]
            at += len(chunk)
            reader_.feed(chunk)
            largest = max(largest, len(reader_._buffer))
            assert largest <= len(body) + 14  # one frame and a header at most

    for step in (1, 3, 7, 64, 10**6):
        assert split(stream, step) == [body, encode_parts(note, [])]
    assert FrameReader().between_frames
    for bad in (b"frame 01\n", b"frame -1\n", b"Frame 1\n", b"frame  1\n", b"frame 1\r\n", b"frame\n",
                b"frame %d\n" % (MAX_PARTS_BYTES + 1), b"frame 99999999\n", b"x" * 20, b"frame 1 \n"):
        reader_ = FrameReader()
        with pytest.raises(ValueError):
            for byte in bad:
                reader_.feed(bytes([byte]))
                reader_.next_frame()
    reader_ = FrameReader()
    with pytest.raises(ValueError):
        reader_.feed(bytes(15))  # more than asked for


def test_the_stream_is_advertised_strictly():
    assert offered_stream(json.dumps({"push": {"checkpoint": "p", "max_wait": 30, "stream": "push/stream"}}).encode()) \
        == "push/stream"
    for stream in (None, 1, "../x", "/abs", "a?b=1", "https://evil.example/x", "x" * 65, ["push/stream"]):
        assert offered_stream(json.dumps({"push": {"checkpoint": "p", "max_wait": 30, "stream": stream}}).encode()) \
            is None
    assert offered_stream(b"not json") is None


# ---------------------------------------------------------------------- a hostile node

def _serve_stream(server: LogServer, chunks: list[bytes], content_type: str = STREAM_TYPE, hold: float = 0):
    async def answer(request):
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await asyncio.sleep(hold)
        await response.write_eof()
        return response

    server.overrides["push/stream"] = answer


def _frame(log: StaticLog, have: int, change=None) -> bytes:
    parts = {ident.path(): log.files[ident.path()] for ident in part_ids(have, len(log.entries))}
    if change is not None:
        change(parts)
    return encode_frame(encode_parts(log.note, list(parts.items())))


async def _streamed_rounds(follower, have: int) -> list:
    """A round per frame, as the scheduler runs them; the first failure ends it."""
    results = []
    stream = follower.client.stream_checkpoints("push/stream", None, 5, have)
    async with contextlib.aclosing(stream):
        async for note, _etag in stream:
            try:
                results.append(await follower.sync_once(note))
            finally:
                follower.client.drop_pushed()
    return results


async def test_streamed_frames_are_verified_like_fetched_checkpoints(static_log):
    log, server, harness, follower = static_log
    log.append(pdq_entry(3))
    one = _frame(log, 3)
    log.append(pdq_entry(4), pdq_entry(5))
    two = _frame(log, 4)
    _serve_stream(server, [one[:5], one[5:40], one[40:] + two])
    server.requests.clear()
    results = await _streamed_rounds(follower, 3)
    assert [r.new_size for r in results] == [4, 6] and harness.state(log.origin).size == 6
    assert server.requests == ["push/stream"]  # no tile, no bundle, no /checkpoint

    # A tampered tile in a frame: the round fails, nothing of it applied.
    log.append(pdq_entry(6))
    tile = part_ids(6, 7)[0].path()
    _serve_stream(server, [_frame(log, 6, lambda parts: parts.__setitem__(tile, b"\x01" + parts[tile][1:]))])
    with pytest.raises(PeerMisbehaved):
        await _streamed_rounds(follower, 6)
    assert harness.state(log.origin).size == 6 and len(harness.fingerprints(log.origin)) == 6


@pytest.mark.parametrize("case", ["header", "leading zero", "oversized", "cut short", "parts", "repeated",
                                  "content type", "huge note", "status"])
async def test_malformed_streams_are_refused_with_nothing_applied(static_log, case):
    log, server, harness, follower = static_log
    log.append(pdq_entry(3))
    good = _frame(log, 3)
    body = encode_parts(log.note, [])
    chunks, content_type = {
        "header": ([b"fram 3\nabc"], STREAM_TYPE),
        "leading zero": ([b"frame 0%d\n" % len(body) + body], STREAM_TYPE),
        # Refused on its header, before a byte of it is read: the follower never buffers it.
        "oversized": ([b"frame %d\n" % (MAX_PARTS_BYTES + 1), bytes(64 * 1024)], STREAM_TYPE),
        "cut short": ([good[:-1]], STREAM_TYPE),
        "parts": ([encode_frame(b"tile/0/000 32\n" + bytes(32))], STREAM_TYPE),
        "repeated": ([encode_frame(body), encode_frame(body)], STREAM_TYPE),
        "content type": ([good], "text/plain"),
        "huge note": ([encode_frame(encode_parts(log.note + bytes(70_000), []))], STREAM_TYPE),
        "status": ([], STREAM_TYPE),
    }[case]
    if case == "status":
        server.overrides["push/stream"] = lambda request: _status_500()
    else:
        _serve_stream(server, chunks, content_type)
    rounds = []
    with pytest.raises(FetchError):
        stream = follower.client.stream_checkpoints("push/stream", None, 5, 3)
        async with contextlib.aclosing(stream):
            async for note, _ in stream:
                rounds.append(await follower.sync_once(note))
                follower.client.drop_pushed()
    assert harness.state(log.origin).size == (4 if case == "repeated" else 3)
    assert follower.client._pushed == {}


async def _status_500():
    return web.Response(status=500, text="down")


async def test_a_follower_polls_while_the_stream_is_hostile(tmp_path):
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    server.overrides["node.json"] = json.dumps({"push": {"checkpoint": "push/checkpoint", "max_wait": 30,
                                                         "parts": True, "stream": "push/stream"}}).encode()
    opened = []

    async def garbage(request):
        opened.append(time.monotonic())
        response = web.StreamResponse(headers={"Content-Type": STREAM_TYPE})
        await response.prepare(request)
        await response.write(b"frame 5\nhello" + b"frame 99999999\n")
        await response.write_eof()
        return response

    server.overrides["push/stream"] = garbage
    db_path = tmp_path / "node.db"
    db = open_db(db_path)
    db.follow.add_log(log.origin, server.url, log.vkey, interval=0.05)
    service = FollowService(db_path, timeout=2, max_backoff=0.5, reload_interval=0.2)
    await service.start()
    try:
        log.append(*[pdq_entry(i) for i in range(5)])
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 5)
        assert await wait_for(lambda: len(opened) >= 2)
        job = service.jobs[log.origin]
        assert job.push.stream == "push/stream" and job.push.failures >= 1
        # The stream keeps failing (backed off, not a busy loop); polling keeps the log current.
        log.append(*[pdq_entry(i) for i in range(5, 9)])
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 9)
        before = len(opened)
        await asyncio.sleep(2)
        assert len(opened) - before < 10

        # A node that stops offering the stream (404): the push channel's single answers.
        server.overrides["push/stream"] = lambda request: _not_found()
        singles = []

        async def single(request):
            singles.append(request.query.get("have"))
            await asyncio.sleep(0.2)
            return web.Response(body=log.note, headers={"ETag": checkpoint_etag(log.note)})

        server.overrides["push/checkpoint"] = single
        assert await wait_for(lambda: job.push.stream is None and singles, timeout=20)
    finally:
        await service.stop()
        db.close()
        await server.stop()


async def _not_found():
    return web.Response(status=404, text="not found")


def _small_send_buffers(monkeypatch, write_timeout: float) -> None:
    from node.web import push_stream_routes

    monkeypatch.setattr(push_stream_routes, "WRITE_TIMEOUT", write_timeout)
    real_handler = push_stream_routes.get_push_stream

    async def small_send_buffer(request):
        # Loopback send buffers grow to 4 MB: make the node's side small, so that a few
        # frames fill what the kernel takes and the node's own write waits.
        request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return await real_handler(request)

    monkeypatch.setattr(push_stream_routes, "get_push_stream", small_send_buffer)


async def _stuck_reader(node, signer) -> socket.socket:
    """A registered reader that opens a stream and never reads it (a tiny window)."""
    host, port = node.public_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    url = node.public_url + "/push/stream?wait=30&have=0"
    headers = "".join(f"{k}: {v}\r\n" for k, v in signer.sign_headers("GET", url).items())
    sock.send(f"GET /push/stream?wait=30&have=0 HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode())
    assert await wait_for(lambda: len(node.app[PUSH_ROOM]) == 1)
    return sock


async def _append_until(session, node, token, done) -> None:
    """Appends of 200 entries (frames of ~15 KB) until done() or 40 of them."""
    for batch in range(40):
        lines = [pdq_line(1000 * batch + k) for k in range(200)]
        assert (await append(session, node.admin_url, token, lines))[0] == 200
        if done():
            return
        await asyncio.sleep(0.05)


async def test_a_reader_that_reads_nothing_is_cut_off(tmp_path, start_node, monkeypatch):
    _small_send_buffers(monkeypatch, 0.5)
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    signer = reader(tmp_path, helpline)
    node = await start_node(helpline)
    sock = None
    try:
        sock = await _stuck_reader(node, signer)
        room = node.app[PUSH_ROOM]
        async with aiohttp.ClientSession() as session:
            await _append_until(session, node, helpline.admin_token(), lambda: len(room) == 0)
            assert await wait_for(lambda: len(room) == 0, timeout=10)
            # The node goes on serving everyone else.
            async with stream_get(session, node, signer, "?wait=1") as r:
                assert r.status == 200 and len(await read_frames(r)) == 1
    finally:
        if sock is not None:
            sock.close()
        await node.stop()


async def test_a_stream_stuck_on_a_slow_reader_does_not_hold_up_a_stop(tmp_path, start_node, monkeypatch):
    _small_send_buffers(monkeypatch, 1000)
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    signer = reader(tmp_path, helpline)
    node = await start_node(helpline)
    sock = None
    stopped = False
    try:
        sock = await _stuck_reader(node, signer)
        room = node.app[PUSH_ROOM]
        place = next(p for waiting in room._by_reader.values() for p in waiting)
        async with aiohttp.ClientSession() as session:
            await _append_until(session, node, helpline.admin_token(), lambda: place.on_close is not None)
        assert await wait_for(lambda: place.on_close is not None, timeout=5)  # stuck in a write
        started = time.monotonic()
        await node.stop()
        stopped = True
        assert time.monotonic() - started < 8 and len(room) == 0
    finally:
        if sock is not None:
            sock.close()
        if not stopped:
            await node.stop()
