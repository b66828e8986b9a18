"""A reader removed with `ncii-node readers remove` loses what it holds open at once
(node/web/push_routes.py `_check_readers`; spec/parts/following.md §4.1, §4.3): its push
stream ends and its waiting `push/checkpoint` is answered 401 within about a second,
however long their `wait`, and every signed request after gets the 401 an unknown key
gets. The removal is the real command in its own process, beside a SQLite node, and
beside two `serve` processes of one node on PostgreSQL; the other readers' streams go on."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from node.datadir import DataDir
from node.follow.push import checkpoint_etag, parse_parts
from node.store import open_db
from node.web import push_routes
from node.web.push_routes import PUSH_ROOM, READER_CHECK_INTERVAL, WaitingRoom
from publish_support import append, make_datadir, wait_for
from test_push import pdq_line, reader
from test_push_stream import read_frames

REPO = Path(__file__).resolve().parents[1]
#: How soon after the command returns its waits must have ended: the node looks every
#: READER_CHECK_INTERVAL (0.5 s); the rest is headroom for a loaded 2-core machine.
ENDED_WITHIN = 2.0


async def remove_reader(datadir_root: Path, vkey: str) -> float:
    """`ncii-node readers remove` in a process of its own; the moment it returned."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node", "readers", "remove", "--dir", str(datadir_root), vkey, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, (out, err)
    assert b"removed 1 reader" in out
    return time.monotonic()


def signed(signer, url: str, etag: str | None = None) -> dict:
    headers = signer.sign_headers("GET", url)
    if etag is not None:
        headers["If-None-Match"] = etag
    return headers


async def refusal(session, url: str, signer) -> tuple[int, str, str | None]:
    async with session.get(url, headers=signed(signer, url)) as r:
        return r.status, await r.text(), r.headers.get("WWW-Authenticate")


async def held_open(stack, session, url: str, signer, etag: str | None = None):
    response = await stack.enter_async_context(
        session.get(url, headers=signed(signer, url, etag), timeout=aiohttp.ClientTimeout(total=60)))
    assert response.status == 200
    return response


async def ends_after(response, removed_at: float) -> float:
    """Seconds from the removal until the stream `response` ended (it must end cleanly,
    between frames; a frame sent before the node noticed is allowed and returned nowhere)."""
    await read_frames(response, timeout=30)
    return time.monotonic() - removed_at


async def test_revoking_ends_only_that_readers_places_and_cuts_a_stuck_write():
    room = WaitingRoom(max_waiting=10, max_per_reader=4)
    waits = [asyncio.create_task(room.wait("gone", 30)) for _ in range(2)]
    kept = asyncio.create_task(room.wait("kept", 30))
    stuck, cut = room.enter("gone", 30), []   # a stream writing a frame to a reader that reads nothing
    stuck.on_close = lambda: cut.append(True)
    await asyncio.sleep(0)
    assert room.revoke({"gone", "unknown"}) == 3
    places = await asyncio.wait_for(asyncio.gather(*waits), 1)
    assert all(place.revoked and place.ended for place in places) and stuck.revoked and cut == [True]
    room.leave(stuck)
    await asyncio.sleep(0.05)
    assert not kept.done() and room.readers() == {"kept"} and len(room) == 1
    kept.cancel()
    await asyncio.gather(kept, return_exceptions=True)


def test_registered_names_exactly_the_readers_still_in_the_table(db_target):
    from node.readaccess import RequestSigner, request_key_id
    from node.store.log import READERS_PER_QUERY

    db = open_db(db_target)
    try:
        keys = [RequestSigner.from_seed(f"r{i}.example", bytes([i % 256, i // 256]) * 16).keyid
                for i in range(READERS_PER_QUERY + 20)]  # more than one statement's worth
        for vkey in keys:
            db.readers.add_reader(vkey, "", request_key_id(vkey))
        assert db.readers.registered(keys) == set(keys)
        assert db.readers.remove_reader(keys[3]) == 1 and db.readers.remove_reader(keys[-1]) == 1
        assert db.readers.registered(keys + ["not a key"]) == set(keys) - {keys[3], keys[-1]}
        assert db.readers.registered([]) == set()
    finally:
        db.close()


async def test_a_database_that_fails_keeps_the_places_and_says_so_once(tmp_path, monkeypatch, caplog):
    db = open_db(tmp_path / "node.db")
    db.close()  # every query now fails, for real
    monkeypatch.setattr(push_routes, "READER_CHECK_INTERVAL", 0.01)
    room = WaitingRoom(max_waiting=10, max_per_reader=4)
    waiting = asyncio.create_task(room.wait("reader", 30))
    checking = asyncio.create_task(push_routes._check_readers(db, room))
    await asyncio.sleep(0.2)
    assert not waiting.done() and room.readers() == {"reader"}
    warnings = [r for r in caplog.records if "cannot read the registered readers" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    for task in (checking, waiting):
        task.cancel()
    await asyncio.gather(checking, waiting, return_exceptions=True)


async def test_a_removed_reader_loses_its_stream_and_its_wait_at_once(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    removed = reader(tmp_path, helpline, "removed")
    kept = reader(tmp_path, helpline, "kept")
    stranger = reader(tmp_path, helpline, "stranger", register=False)
    node = await start_node(helpline)
    room = node.app[PUSH_ROOM]
    token = helpline.admin_token()
    base = node.public_url
    async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as stack:
        assert (await append(session, node.admin_url, token, [pdq_line(0), pdq_line(1)]))[0] == 200
        async with session.get(base + "/checkpoint") as r:
            note = await r.read()
        size = int(note.split(b"\n")[1])

        # The reader to be removed holds a stream and a wait (both for 30 s); another
        # reader holds a stream too.
        gone_stream = await held_open(stack, session, base + "/push/stream?wait=30", removed)
        assert parse_parts((await read_frames(gone_stream, 1))[0])[0] == note
        kept_stream = await held_open(stack, session, base + "/push/stream?wait=30", kept)
        assert parse_parts((await read_frames(kept_stream, 1))[0])[0] == note
        url = base + "/push/checkpoint?wait=30"

        async def wait_answer():
            async with session.get(url, headers=signed(removed, url, checkpoint_etag(note))) as r:
                return r.status, await r.text(), time.monotonic()

        waiting = asyncio.create_task(wait_answer())
        await wait_for(lambda: len(room) == 3, 10)
        await asyncio.sleep(READER_CHECK_INTERVAL * 2)  # the node has looked at the table with all three

        removed_at = await remove_reader(helpline.root, removed.keyid)
        stream_ended = await asyncio.wait_for(ends_after(gone_stream, removed_at), 30)
        status, text, answered_at = await asyncio.wait_for(waiting, 30)
        print(f"\nremoved reader: stream ended {stream_ended:.2f} s, wait answered {answered_at - removed_at:.2f} s "
              "after the command returned")
        assert stream_ended < ENDED_WITHIN and answered_at - removed_at < ENDED_WITHIN
        # Its wait gets exactly what an unknown key's request gets.
        unknown = await refusal(session, url, stranger)
        assert (status, text) == unknown[:2] and status == 401 and "not a registered reader" in text

        # Every signed request of the removed reader from now on: the same 401.
        for path in ("/push/stream?wait=1", "/push/checkpoint?wait=1", f"/tile/0/000.p/{size}", "/status"):
            assert await refusal(session, base + path, removed) == await refusal(session, base + path, stranger), path
        assert (await refusal(session, base + "/push/stream?wait=1", removed))[0] == 401

        # The reader kept is not touched: its stream is still open and takes the next checkpoint.
        assert room.readers() == {kept.keyid} and len(room) == 1
        assert (await append(session, node.admin_url, token, [pdq_line(2)]))[0] == 200
        pushed, parts = parse_parts((await read_frames(kept_stream, 1))[0])
        assert int(pushed.split(b"\n")[1]) > size and parts


async def test_a_following_platform_cut_off_is_sent_nothing_more(tmp_path, start_node):
    """End to end: a real platform follows the helpline through the push stream; once the
    helpline's operator removes it, its stream ends and no later entry reaches it."""
    from follow_support import helpline_and_platform

    async with helpline_and_platform(tmp_path, start_node) as (helpline, platform, publisher, follower):
        origin = "helpline.example/log"
        job = follower.node.follower.jobs[origin]
        assert await wait_for(lambda: job.push.verified and job.push.stream == "push/stream", timeout=20)
        room = publisher.app[PUSH_ROOM]
        db = open_db(platform.db_path)
        try:
            async with aiohttp.ClientSession() as session:
                token = helpline.admin_token()
                assert (await append(session, publisher.admin_url, token, [pdq_line(1)]))[0] == 200
                published = publisher.node.sequencer.published.size
                assert await wait_for(lambda: db.follow.get_log(origin).size == published, timeout=10)
                assert await wait_for(lambda: len(room) == 1, timeout=10)  # the platform's stream, open again

                removed_at = await remove_reader(helpline.root, platform.load_request_signer().verifier_key())
                assert await wait_for(lambda: len(room) == 0, timeout=ENDED_WITHIN)
                print(f"\nthe platform's stream ended {time.monotonic() - removed_at:.2f} s after the command returned")
                assert (await append(session, publisher.admin_url, token, [pdq_line(2)]))[0] == 200
                await asyncio.sleep(3)  # rounds, pushes and polls: none may bring it the new entry
                followed = db.follow.get_log(origin)
                assert followed.size == published < publisher.node.sequencer.published.size
                assert len(room) == 0 and followed.last_error and "401" in followed.last_error, followed.last_error
        finally:
            db.close()


async def test_removed_through_another_process_on_postgresql(tmp_path, pg_url):
    """Two `serve` processes of one node on one PostgreSQL database; the reader holds a
    stream on each and a wait on one; the command runs in a third process."""
    from multi_support import ServeProcess, run_ncii, shared_datadir

    root = shared_datadir(tmp_path, pg_url, public_read=False)
    config = (root / "config.toml").read_text()
    assert "[push]\nenabled = false" in config
    (root / "config.toml").write_text(config.replace("[push]\nenabled = false", "[push]\nenabled = true"))
    removed = reader(tmp_path, DataDir(root), "removed")
    kept = reader(tmp_path, DataDir(root), "kept")
    processes = [ServeProcess(root, "a"), ServeProcess(root, "b")]
    try:
        for process in processes:
            process.start()
        assert await asyncio.to_thread(processes[0].append, {"kind": "submission", "signal": "pdq",
                                                              "fingerprint": f"{7:064x}"}) is not None
        async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as stack:
            streams, kept_streams = [], []
            for process in processes:
                url = process.public_url + "/push/stream?wait=30"
                await wait_for(lambda: _size_of(session, process.public_url), 20)
                streams.append(await held_open(stack, session, url, removed))
                kept_streams.append(await held_open(stack, session, url, kept))
                for response in (streams[-1], kept_streams[-1]):
                    assert len(await read_frames(response, 1)) == 1
            url = processes[1].public_url + "/push/checkpoint?wait=30"
            async with session.get(processes[1].public_url + "/checkpoint") as r:
                etag = checkpoint_etag(await r.read())

            async def wait_answer():
                async with session.get(url, headers=signed(removed, url, etag)) as r:
                    return r.status, time.monotonic()

            waiting = asyncio.create_task(wait_answer())
            await asyncio.sleep(1.5)
            assert not waiting.done()

            removed_at = time.monotonic()
            await asyncio.to_thread(run_ncii, "readers", "remove", "--dir", str(root), removed.keyid)
            done_at = time.monotonic()
            ended = await asyncio.wait_for(asyncio.gather(*(ends_after(s, removed_at) for s in streams)), 30)
            status, answered_at = await asyncio.wait_for(waiting, 30)
            print(f"\nPostgreSQL, removal in a third process (the command took {done_at - removed_at:.2f} s): streams "
                  f"ended {', '.join(f'{e:.2f}' for e in ended)} s, wait answered {answered_at - removed_at:.2f} s "
                  "after it started")
            assert status == 401
            assert max(*ended, answered_at - removed_at) < (done_at - removed_at) + ENDED_WITHIN
            for process in processes:
                for path in ("/push/stream?wait=1", "/push/checkpoint?wait=1", "/status"):
                    assert (await refusal(session, process.public_url + path, removed))[0] == 401, path
            # The kept reader's streams go on, on both processes.
            for response in kept_streams:
                assert not response.content.at_eof()
            assert await asyncio.to_thread(processes[1].append, {"kind": "submission", "signal": "pdq",
                                                                  "fingerprint": f"{8:064x}"}) is not None
            for response in kept_streams:
                assert len(await read_frames(response, 1)) == 1
    finally:
        for process in processes:
            process.stop()


async def _size_of(session, base: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with session.get(base + "/checkpoint") as r:
            return r.status == 200 and int((await r.read()).split(b"\n")[1]) > 0
    return False


pytestmark = pytest.mark.timeout(180)
