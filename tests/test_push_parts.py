"""A push answer that carries its round's tiles and bundles (`have=<size>`,
spec/parts/following.md §4.2): the node sends exactly the bytes its tile endpoints
serve, only for a small growth; a follower at the head then reads nothing else, and
checks what the answer carried exactly as it checks fetched tiles: tampered,
mis-sized or malformed parts are refused and nothing of them is applied."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from follow_support import Harness, LogServer, StaticLog, helpline_and_platform, pdq_entry
from node.follow.client import FetchError
from node.follow.push import MAX_PARTS, PARTS_TYPE, encode_parts, parse_parts, part_ids
from node.follow.sync import PeerMisbehaved, SyncError
from node.store import open_db
from node.web.push_routes import checkpoint_etag
from protocol.tiles import encode_bundle
from publish_support import append, wait_for
from test_push import pdq_line, push_get, reader
from publish_support import make_datadir


async def test_the_node_sends_the_round_s_tiles_for_a_small_growth(tmp_path, start_node):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=False)
    signer = reader(tmp_path, helpline)
    node = await start_node(helpline)
    try:
        async with aiohttp.ClientSession() as session:
            token = helpline.admin_token()
            assert (await append(session, node.admin_url, token, [pdq_line(i) for i in range(3)]))[0] == 200
            assert (await append(session, node.admin_url, token, [pdq_line(i) for i in range(3, 300)]))[0] == 200
            async with session.get(node.public_url + "/checkpoint") as r:
                note = await r.read()
            size = int(note.split(b"\n")[1])
            assert size >= 300

            async def signed_get(path):
                url = node.public_url + "/" + path
                async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
                    assert r.status == 200
                    return await r.read()

            for have in (0, size - 1, size - 256, size - 3):
                url = node.public_url + f"/push/checkpoint?wait=30&have={have}"
                async with session.get(url, headers=signer.sign_headers("GET", url)) as r:
                    assert r.status == 200 and r.content_type == PARTS_TYPE or have == 0
                    assert r.headers["ETag"] == checkpoint_etag(note)
                    body = await r.read()
                if have == 0:  # more than 256 entries behind: the plain note, fetch the rest
                    assert body == note and r.content_type == "text/plain"
                    continue
                pushed, parts = parse_parts(body)
                assert pushed == note
                assert list(parts) == [ident.path() for ident in part_ids(have, size)]
                for path, data in parts.items():  # the very bytes the tile endpoints serve
                    assert data == await signed_get(path)

            # The follower's own size, or a bad value: the plain note, or 400.
            assert (await push_get(session, node, signer, query=f"?wait=30&have={size}"))[1] == note
            assert (await push_get(session, node, signer, query=f"?wait=30&have={size + 5}"))[1] == note
            for bad in ("01", "-1", "x", "1&have=2", "9" * 20, "", "1.0"):
                assert (await push_get(session, node, signer, query=f"?wait=30&have={bad}"))[0] == 400, bad
            # Not to a stranger, as before.
            assert (await push_get(session, node, None, query="?wait=30&have=1"))[0] == 401
    finally:
        await node.stop()


async def test_a_pushed_follower_reads_nothing_else_for_a_small_growth(tmp_path, start_node):
    async with helpline_and_platform(tmp_path, start_node) as (helpline, platform, publisher, follower):
        job = follower.node.follower.jobs["helpline.example/log"]
        assert await wait_for(lambda: job.push.verified and job.push.parts, timeout=20)
        fetched = []
        real_get = job.client.get

        async def counting_get(path, **kwargs):
            fetched.append(path)
            return await real_get(path, **kwargs)

        job.client.get = counting_get
        db = open_db(platform.db_path)
        try:
            async with aiohttp.ClientSession() as session:
                token = helpline.admin_token()
                start = db.follow.get_log("helpline.example/log").size
                for n in range(1, 4):
                    assert (await append(session, publisher.admin_url, token,
                                         [pdq_line(10 * n + k) for k in range(n)]))[0] == 200
                    assert await wait_for(lambda: db.follow.get_log("helpline.example/log").size >= start + n)
                assert [p for p in fetched if p.startswith("tile/")] == []
                # A growth beyond 256 entries: the plain note, and the tiles are fetched.
                target = db.follow.get_log("helpline.example/log").size + 300
                assert (await append(session, publisher.admin_url, token,
                                     [pdq_line(1000 + k) for k in range(300)]))[0] == 200
                assert await wait_for(lambda: db.follow.get_log("helpline.example/log").size >= target)
                assert any(p.startswith("tile/entries/") for p in fetched)
        finally:
            db.close()


@pytest.fixture
async def static_log(tmp_path):
    log = StaticLog("helpline.example/log")
    server = await LogServer(log).start()
    harness = Harness(tmp_path)
    follower = harness.follow(log.origin, server.url, log.vkey)
    log.append(*[pdq_entry(i) for i in range(3)])
    await follower.sync_once()
    try:
        yield log, server, harness, follower
    finally:
        await harness.close()
        await server.stop()


def _serve_parts(server: LogServer, log: StaticLog, have: int, change=None):
    """The push channel of `server` answers with the parts of the round from `have`,
    `change(parts)` applied first (a hostile node)."""
    size = len(log.entries)
    parts = {ident.path(): log.files[ident.path()] for ident in part_ids(have, size)}
    if change is not None:
        change(parts)

    async def answer(_request):
        return web.Response(body=encode_parts(log.note, list(parts.items())), content_type=PARTS_TYPE,
                            headers={"ETag": checkpoint_etag(log.note)})

    server.overrides["push/checkpoint"] = answer


async def _pushed_round(follower, have):
    note, _ = await follower.client.next_checkpoint("push/checkpoint", None, 30, have)
    try:
        return await follower.sync_once(note)
    finally:
        follower.client.drop_pushed()


async def test_pushed_parts_replace_the_reads_and_are_verified(static_log):
    log, server, harness, follower = static_log
    log.append(pdq_entry(3), pdq_entry(4))
    _serve_parts(server, log, 3)
    server.requests.clear()
    result = await _pushed_round(follower, 3)
    assert result.new_size == 5 and harness.state(log.origin).size == 5
    assert server.requests == ["push/checkpoint"]  # no tile, no bundle, no /checkpoint

    # A bundle with one entry swapped (each entry valid, the hashes not the tile's).
    log.append(pdq_entry(5))
    bundle = part_ids(5, 6)[-1].path()
    _serve_parts(server, log, 5, lambda parts: parts.__setitem__(
        bundle, encode_bundle([*log.entries[:5], pdq_entry(99)][len(log.entries) // 256 * 256:])))
    with pytest.raises(PeerMisbehaved):
        await _pushed_round(follower, 5)
    assert harness.state(log.origin).size == 5 and len(harness.fingerprints(log.origin)) == 5

    # A level-0 tile with a hash flipped.
    tile = part_ids(5, 6)[0].path()
    _serve_parts(server, log, 5, lambda parts: parts.__setitem__(tile, b"\x01" + parts[tile][1:]))
    with pytest.raises(PeerMisbehaved):
        await _pushed_round(follower, 5)
    # A tile of the wrong length: refused like a fetched one.
    _serve_parts(server, log, 5, lambda parts: parts.__setitem__(tile, parts[tile] + bytes(32)))
    with pytest.raises(SyncError, match="carried"):
        await _pushed_round(follower, 5)
    assert harness.state(log.origin).size == 5

    # Parts the round does not need are never used; the ones missing are fetched.
    _serve_parts(server, log, 5, lambda parts: (parts.pop(bundle), parts.__setitem__("tile/9/000", b"junk")))
    server.requests.clear()
    assert (await _pushed_round(follower, 5)).new_size == 6
    assert server.requests == ["push/checkpoint", bundle]
    assert follower.client._pushed == {}


def test_parts_bodies_are_parsed_strictly():
    note = b"helpline.example/log\n3\nAAAA\n\n- sig\n"
    good = encode_parts(note, [("tile/0/000.p/3", bytes(96)), ("tile/entries/000.p/3", b"abc")])
    assert parse_parts(good) == (note, {"tile/0/000.p/3": bytes(96), "tile/entries/000.p/3": b"abc"})
    assert parse_parts(encode_parts(note, [])) == (note, {})
    bad = [
        b"",
        b"tile/0/000.p/3 96\n" + bytes(96),                                        # no checkpoint first
        encode_parts(note, [("tile/0/000.p/3", b"x"), ("tile/0/000.p/3", b"y")]),  # twice
        encode_parts(note, [("tile/0/0.p/3", b"x")]),                              # not canonical
        encode_parts(note, [("tile/0/000.p/256", b"x")]),                          # width out of range
        encode_parts(note, [("checkpoint", b"x")]),                                # checkpoint twice
        encode_parts(note, [("node.json", b"{}")]),                                # not a tile
        good[:-1],                                                                 # cut short
        good + b"\n",                                                              # trailing bytes
        good.replace(b"checkpoint %d" % len(note), b"checkpoint 0%d" % len(note)),  # leading zero
        good.replace(b"checkpoint ", b"checkpoint  "),
        good.replace(b"tile/0/000.p/3 96", b"tile/0/000.p/3 +96"),
        good.replace(b"tile/0/", b"TILE/0/"),
        encode_parts(note, [(f"tile/0/{i:03d}", b"") for i in range(MAX_PARTS + 1)]),
        encode_parts(note, [("tile/entries/000", bytes(1024 * 1024))]),           # too large
    ]
    for body in bad:
        with pytest.raises(ValueError):
            parse_parts(body)


async def test_a_malformed_parts_answer_is_a_failed_push(static_log):
    log, server, harness, follower = static_log

    async def answer(_request):
        return web.Response(body=b"tile/0/000 32\n" + bytes(32), content_type=PARTS_TYPE,
                            headers={"ETag": checkpoint_etag(log.note)})

    server.overrides["push/checkpoint"] = answer
    with pytest.raises(FetchError, match="malformed push answer"):
        await follower.client.next_checkpoint("push/checkpoint", None, 30, 3)
    # Without `have` a follower never parses parts: the body is taken as a note (and
    # then refused as a checkpoint by the round).
    note, _ = await follower.client.next_checkpoint("push/checkpoint", None, 30)
    assert note.startswith(b"tile/0/000") and follower.client._pushed == {}
