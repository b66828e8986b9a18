"""The push channel (GET /push/checkpoint, node/web/push_routes.py) and the follower
that uses it (node/follow/scheduler.py, node/follow/push.py): registered readers only,
answered at once or on the next checkpoint or after `wait` with 304, bounded per
reader and in all, released on shutdown; followers push when offered, poll otherwise,
and fall back to polling when the channel fails."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import aiohttp
from aiohttp import web

from follow_support import LogServer, StaticLog, helpline_and_platform, pdq_entry
from node.cli import main as cli_main
from node.datadir import DataDir
from node.follow.push import parse_advertisement
from node.follow import scheduler
from node.follow.scheduler import FollowService
from node.readaccess import RequestSigner
from node.store.follow import FollowRepository
from node.store import open_db
from node.web.push_routes import PUSH_ROOM, WAKE_BATCH, WaitingRoom, checkpoint_etag
from publish_support import append, make_datadir, wait_for


def pdq_line(i: int) -> str:
    return json.dumps({"kind": "submission", "signal": "pdq", "fingerprint": f"{i + 1:064x}"})


def reader(tmp_path, publisher: DataDir, name: str = "reader", register: bool = True) -> RequestSigner:
    datadir = make_datadir(tmp_path, name=name, origin=f"{name}.example/log")
    key = datadir.load_request_signer()
    if register:
        assert cli_main(["readers", "add", "--dir", str(publisher.root), key.verifier_key()]) == 0
    return RequestSigner.from_seed(key.name, key.seed)


async def push_get(session, node, signer, etag=None, query="?wait=30", timeout=40):
    url = node.public_url + "/push/checkpoint" + query
    headers = signer.sign_headers("GET", url) if signer is not None else {}
    if etag is not None:
        headers["If-None-Match"] = etag
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        return r.status, await r.read(), r.headers.get("ETag")


async def test_push_answers_now_on_change_or_304_and_only_to_readers(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    signer = reader(tmp_path, helpline)
    stranger = reader(tmp_path, helpline, name="stranger", register=False)
    node = await start_node(helpline)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(node.public_url + "/node.json") as r:
                assert (await r.json())["push"] == {"checkpoint": "push/checkpoint", "max_wait": 30, "parts": True,
                                                       "stream": "push/stream"}
            assert (await push_get(session, node, None))[0] == 401
            assert (await push_get(session, node, stranger))[0] == 401  # an unregistered key is refused like a bad signature (readaccess.md)

            # No ETag named: the current checkpoint at once, as /checkpoint serves it.
            status, note, etag = await push_get(session, node, signer)
            async with session.get(node.public_url + "/checkpoint") as r:
                assert status == 200 and note == await r.read() and etag == checkpoint_etag(note)
            # Another ETag than the current one's: at once too.
            assert (await push_get(session, node, signer, etag='"0000"'))[1] == note

            # The current ETag: 304 once the wait is over, nothing new.
            started = time.monotonic()
            status, body, same = await push_get(session, node, signer, etag=etag, query="?wait=1")
            assert (status, body, same) == (304, b"", etag) and time.monotonic() - started >= 0.9

            # The current ETag and an append meanwhile: the new checkpoint, long before the wait ends.
            waiting = asyncio.create_task(push_get(session, node, signer, etag=etag))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            started = time.monotonic()
            assert (await append(session, node.admin_url, helpline.admin_token(), [pdq_line(0)]))[0] == 200
            status, newer, newer_etag = await waiting
            assert status == 200 and newer_etag != etag and time.monotonic() - started < 20
            async with session.get(node.public_url + "/checkpoint") as r:
                assert newer == await r.read()

            # Cosignatures added to the same checkpoint change the served note: waiters hear of it.
            waiting = asyncio.create_task(push_get(session, node, signer, etag=newer_etag))
            await asyncio.sleep(0.3)
            sequencer = node.node.sequencer
            sequencer.published = dataclasses.replace(sequencer.published, note=newer + b"\xe2\x80\x94 w x\n")
            status, cosigned, _ = await waiting
            assert status == 200 and cosigned == newer + b"\xe2\x80\x94 w x\n"

            for query in ("?wait=0", "?wait=abc", "?wait=1&wait=2", "?wait=-1", "?wait=1&size=3", "?wait=１"):
                status, body, _ = await push_get(session, node, signer, etag=etag, query=query)
                assert status == 400 and body, query
            assert (await push_get(session, node, signer, query="?wait=9999"))[0] == 200  # capped, not refused
    finally:
        await node.stop()


async def test_push_is_bounded_per_reader_and_in_all_and_released_on_shutdown(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=True)
    config = helpline.config
    config.push.max_waiting, config.push.max_waiting_per_reader = 3, 2
    helpline.save_config(config)
    first, second = reader(tmp_path, helpline, "first"), reader(tmp_path, helpline, "second")
    node = await start_node(helpline)
    stopped = False
    try:
        async with aiohttp.ClientSession() as session:
            # A public_read node serves its tiles to anyone, but not the push channel.
            assert (await push_get(session, node, None))[0] == 401
            _, _, etag = await push_get(session, node, first)
            room = node.app[PUSH_ROOM]
            a = asyncio.create_task(push_get(session, node, first, etag))
            b = asyncio.create_task(push_get(session, node, first, etag))
            assert await wait_for(lambda: len(room) == 2)
            # A third wait by the same reader answers its oldest at once (a restarted
            # follower is never locked out by its dead connections).
            c = asyncio.create_task(push_get(session, node, first, etag))
            assert (await asyncio.wait_for(a, 10))[0] == 304
            assert not b.done() and not c.done()
            d = asyncio.create_task(push_get(session, node, second, etag))
            assert await wait_for(lambda: len(room) == 3)
            # The room is full: another reader is told to poll meanwhile.
            status, body, _ = await push_get(session, node, second, etag)
            assert status == 503 and b"poll /checkpoint" in body
            # Shutdown answers every wait at once instead of keeping the node up 30 s.
            started = time.monotonic()
            await node.stop()
            stopped = True
            assert time.monotonic() - started < 15
            for task in (b, c, d):
                status, _, _ = await asyncio.wait_for(task, 10)
                assert status == 304
    finally:
        if not stopped:
            await node.stop()


async def test_push_can_be_switched_off(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    config = helpline.config
    config.push.enabled = False
    helpline.save_config(config)
    signer = reader(tmp_path, helpline)
    node = await start_node(helpline)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(node.public_url + "/node.json") as r:
                assert (await r.json())["push"] is None
            assert (await push_get(session, node, signer))[0] == 404
    finally:
        await node.stop()


def test_waiting_room_counts_and_wakes():
    async def scenario():
        room = WaitingRoom(max_waiting=10, max_per_reader=10)
        waits = [asyncio.create_task(room.wait("r", 30)) for _ in range(3)]
        await asyncio.sleep(0)
        assert len(room) == 3
        room.notify()
        await asyncio.gather(*waits)
        assert len(room) == 0
        await room.wait("r", 0.01)  # times out quietly
        assert len(room) == 0
    asyncio.run(scenario())


def test_waiting_room_wakes_in_batches_letting_other_work_in():
    async def scenario():
        room = WaitingRoom(max_waiting=1000, max_per_reader=1)
        woken = []

        async def waiter(i):
            await room.wait(f"r{i}", 30)
            woken.append(i)

        waits = [asyncio.create_task(waiter(i)) for i in range(200)]
        await asyncio.sleep(0)
        places = [place for waiting in room._by_reader.values() for place in waiting]
        assert len(places) == 200
        room.notify()
        # One batch now; the next one after the work already queued on the loop.
        assert sum(place.changed for place in places) == WAKE_BATCH < 200
        await asyncio.gather(*waits)
        assert sorted(woken) == list(range(200))
    asyncio.run(scenario())


def test_advertisement_is_parsed_strictly():
    good = {"push": {"checkpoint": "push/checkpoint", "max_wait": 30}}
    assert parse_advertisement(json.dumps(good).encode()) == ("push/checkpoint", 30)
    assert parse_advertisement(json.dumps({"push": {"checkpoint": "p", "max_wait": 3000}}).encode()) == ("p", 60)
    for doc in ({}, {"push": None}, {"push": []}, {"push": {"checkpoint": "../x", "max_wait": 30}},
                {"push": {"checkpoint": "/abs", "max_wait": 30}}, {"push": {"checkpoint": "a?b=1", "max_wait": 30}},
                {"push": {"checkpoint": "https://evil.example/x", "max_wait": 30}},
                {"push": {"checkpoint": "p", "max_wait": True}}, {"push": {"checkpoint": "p", "max_wait": 0}},
                {"push": {"checkpoint": "p", "max_wait": "30"}}, [1]):
        assert parse_advertisement(json.dumps(doc).encode()) is None, doc
    assert parse_advertisement(b"\xff") is None and parse_advertisement(b"[" * 100000) is None


async def test_follower_waits_on_the_push_channel_instead_of_polling(tmp_path, start_node):
    async with helpline_and_platform(tmp_path, start_node) as (helpline, platform, publisher, follower):
        job = follower.node.follower.jobs["helpline.example/log"]
        assert await wait_for(lambda: job.push.path == "push/checkpoint" and job.push.verified, timeout=20)
        db = open_db(platform.db_path)
        try:
            async with aiohttp.ClientSession() as session:
                for n in range(1, 4):
                    rounds = job.rounds
                    assert (await append(session, publisher.admin_url, helpline.admin_token(),
                                         [pdq_line(10 * n + k) for k in range(n)]))[0] == 200
                    assert await wait_for(lambda: db.follow.get_log("helpline.example/log").size == n * (n + 1) // 2)
                    assert job.rounds > rounds
                # While pushed, the follower does not poll: a second without news is no round.
                rounds = job.rounds
                await asyncio.sleep(1.5)
                assert job.rounds == rounds and job.push.failures == 0
        finally:
            db.close()


async def test_follower_falls_back_to_polling_when_push_fails(tmp_path):
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    server.overrides["node.json"] = json.dumps({"push": {"checkpoint": "push/checkpoint", "max_wait": 30}}).encode()
    pushes = []

    async def broken_push(request):
        pushes.append(request.headers.get("If-None-Match"))
        return web.Response(status=500, text="push is down")

    server.overrides["push/checkpoint"] = broken_push
    db_path = tmp_path / "node.db"
    db = open_db(db_path)
    db.follow.add_log(log.origin, server.url, log.vkey, interval=0.05)
    service = FollowService(db_path, timeout=2, max_backoff=0.5, reload_interval=0.2)
    await service.start()
    try:
        log.append(*[pdq_entry(i) for i in range(5)])
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 5)
        assert await wait_for(lambda: len(pushes) >= 2)
        # Push keeps failing, polling keeps the log current.
        log.append(*[pdq_entry(i) for i in range(5, 9)])
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 9)
        assert service.jobs[log.origin].push.failures >= 1

        # A node that answers at once with the very checkpoint the request named
        # (ignoring If-None-Match) is a failing push channel too, not a busy loop.
        async def impatient(request):
            pushes.append(request.headers.get("If-None-Match"))
            return web.Response(body=log.note, headers={"ETag": checkpoint_etag(log.note)})

        server.overrides["push/checkpoint"] = impatient
        await asyncio.sleep(3)
        before = len(pushes)
        await asyncio.sleep(2)
        assert len(pushes) - before < 20
        log.append(pdq_entry(100))
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 10)

        # A node that does not offer the channel to us (not a registered reader of a
        # public_read log): polled, and /node.json looked at again only much later.
        async def refused(request):
            pushes.append(request.headers.get("If-None-Match"))
            return web.Response(status=403, text="not a registered reader")

        server.overrides["push/checkpoint"] = refused
        job = service.jobs[log.origin]
        assert await wait_for(lambda: job.push.path is None, timeout=20)
        before = len(pushes)
        log.append(pdq_entry(101))
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 11)
        await asyncio.sleep(1)
        assert len(pushes) == before
    finally:
        await service.stop()
        db.close()
        await server.stop()


async def test_follow_add_tells_the_running_node(tmp_path, capsys, start_node):
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    log.append(*[pdq_entry(i) for i in range(3)])
    platform = make_datadir(tmp_path, name="platform", origin="platform.example/log")
    node = await start_node(platform)
    try:
        code = await asyncio.to_thread(cli_main, ["follow", "add", "--dir", str(platform.root), server.url,
                                                  "--vkey", log.vkey])
        assert code == 0
        assert "the running node took this into account" in capsys.readouterr().out
        # Already a job, without waiting for the periodic re-read.
        service = node.node.follower
        assert "helpline.example/log" in service.jobs
        db = open_db(platform.db_path)
        try:
            assert await wait_for(lambda: db.follow.get_log(log.origin).size == 3)
        finally:
            db.close()
        code = await asyncio.to_thread(cli_main, ["follow", "remove", "--dir", str(platform.root), log.origin])
        assert code == 0 and "helpline.example/log" not in service.jobs
    finally:
        await node.stop()
        await server.stop()
    assert cli_main(["follow", "add", "--dir", str(platform.root), server.url, "--vkey", log.vkey]) == 0
    assert "not running" in capsys.readouterr().out


async def test_a_forked_log_is_not_waited_on(tmp_path, monkeypatch):
    monkeypatch.setattr(scheduler, "FORKED_RECHECK", 0.1)  # the forked log's record is looked at often
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    server.overrides["node.json"] = json.dumps({"push": {"checkpoint": "push/checkpoint", "max_wait": 30}}).encode()
    pushes = []

    async def push(request):
        pushes.append(request.path)
        return web.Response(body=log.note, headers={"ETag": checkpoint_etag(log.note)})

    server.overrides["push/checkpoint"] = push
    db_path = tmp_path / "node.db"
    db = open_db(db_path)
    db.follow.add_log(log.origin, server.url, log.vkey, interval=0.05)
    service = FollowService(db_path, timeout=2, max_backoff=0.5, reload_interval=0.2)
    await service.start()
    try:
        log.append(*[pdq_entry(i) for i in range(3)])
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 3 and len(pushes) >= 1)
        # The log signs another tree of the same size: a fork, found through the push channel.
        log.note = log.sign(3, b"\x01" * 32)
        assert await wait_for(lambda: db.follow.get_log(log.origin).forked)
        await asyncio.sleep(0.5)
        asked = len(pushes) + server.requests.count("checkpoint")
        await asyncio.sleep(2)
        assert len(pushes) + server.requests.count("checkpoint") == asked  # neither waited on nor polled
    finally:
        await service.stop()
        db.close()
        await server.stop()


async def test_an_unexpected_error_does_not_end_a_log_s_task(tmp_path, monkeypatch, caplog):
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    server.overrides["node.json"] = json.dumps({"push": {"checkpoint": "push/checkpoint", "max_wait": 1}}).encode()

    async def push(request):
        etag = checkpoint_etag(log.note)
        if request.headers.get("If-None-Match") == etag:
            await asyncio.sleep(0.1)
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=log.note, headers={"ETag": etag})

    server.overrides["push/checkpoint"] = push
    failures = []

    def broken_record_in_sync(*args, **kwargs):
        failures.append(args)
        raise RuntimeError("database is locked")

    db_path = tmp_path / "node.db"
    db = open_db(db_path)
    db.follow.add_log(log.origin, server.url, log.vkey, interval=0.05)
    service = FollowService(db_path, timeout=2, max_backoff=0.3, reload_interval=0.2)
    await service.start()
    try:
        log.append(pdq_entry(0))
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 1)
        assert await wait_for(lambda: service.jobs[log.origin].push.verified)
        monkeypatch.setattr(FollowRepository, "record_in_sync", broken_record_in_sync)
        assert await wait_for(lambda: len(failures) >= 2)  # a 304 each time: the task went on
        log.append(pdq_entry(1))
        assert await wait_for(lambda: db.follow.get_log(log.origin).size == 2)
        assert not service.jobs[log.origin].task.done()
        assert "unexpected error" in caplog.text
    finally:
        await service.stop()
        db.close()
        await server.stop()
