"""node.client against a real platform node (test_match_api's `world`: a RunningNode on
127.0.0.1 following a real log): typed answers equal to the HTTP API's, batches split,
media, feedback, tokens, errors as exceptions, retries only where they are safe, and
the JSON 404 of the public site for match routes. The client is synchronous: it runs
in a thread while the node runs in the test's event loop."""

from __future__ import annotations

import asyncio
import socket
import threading

import numpy as np
import pytest

from node.client import (
    BadRequest,
    MatchResult,
    NodeClient,
    NotFound,
    Unauthorized,
    Unreachable,
)
from test_match_api import HELPLINE, flip, jpeg, picture, platform_database, world  # noqa: F401  (fixtures)


def client(world, token: str | None = None, **options) -> NodeClient:
    platform = world["platform"]
    return NodeClient(platform.node.admin_url, token or platform.token, **options)


async def test_match_and_match_many_are_the_api_answers_typed(world):
    platform, query = world["platform"], world["query"]
    raw = await platform.match("pdq", query.hex())
    with client(world, platform.datadir.match_token()) as node:
        result = await asyncio.to_thread(node.match, "pdq", query.hex())
        assert isinstance(result, MatchResult) and result.total == raw["total"] and result.signal == "pdq"
        assert [(m.origin, m.index, m.distance, list(m.labels), m.quality) for m in result.matches] == \
            [(m["origin"], m["index"], m["distance"], m["labels"], m["quality"]) for m in raw["matches"]]
        assert all(m.distance <= 31 and m.origin == HELPLINE for m in result.matches)
        # 1,001 fingerprints: two requests, one result per fingerprint, in order.
        rng = world["rng"]
        queries = [("pdq", flip(query, d % 40, rng).hex()) for d in range(1001)]
        results = await asyncio.to_thread(node.match_many, queries)
        assert len(results) == 1001
        for k in (0, 17, 999, 1000):  # each result is that fingerprint's own answer
            assert results[k].total == (await platform.match(*queries[k]))["total"]
        assert results[0].total > 0
        with pytest.raises(BadRequest, match="pdq"):
            await asyncio.to_thread(node.match, "pdq", "not hex")


async def test_match_media_photo_rotated_and_video(world):
    with client(world) as node:
        upload = jpeg(picture(1), quality=60, size=200)
        result = await asyncio.to_thread(node.match_media, upload)
        assert result.kind == "image" and result.matched
        assert [m.index for m in result.matches] == [world["photo_index"]]
        assert result.results[0].fingerprint and result.results[0].quality >= 50
        rotated = jpeg(np.ascontiguousarray(np.rot90(picture(1))))
        plain = await asyncio.to_thread(node.match_media, rotated)
        turned = await asyncio.to_thread(lambda: node.match_media(rotated, dihedral=True))
        assert not plain.matched and turned.matched and turned.matches[0].variant not in (None, "original")
        video = await asyncio.to_thread(node.match_media, world["video"].read_bytes())
        assert video.kind == "video" and {r.signal for r in video.results} == {"md5", "vpdq"}
        assert {m.index for m in video.matches} == set(world["video_indices"].values())
        with pytest.raises(BadRequest, match="cannot fingerprint"):
            await asyncio.to_thread(node.match_media, b"not an image at all")


async def test_feedback_tokens_and_errors(world):
    platform = world["platform"]
    with client(world) as node:
        receipt = await asyncio.to_thread(node.feedback, HELPLINE, world["photo_index"], "removed")
        assert (receipt.origin, receipt.target_index, receipt.verdict) == (HELPLINE, world["photo_index"], "removed")
        assert receipt.index >= 0 and len(receipt.leaf_hash) == 64
        with pytest.raises(NotFound, match="not a submission"):
            await asyncio.to_thread(node.feedback, HELPLINE, 10**9, "removed")
        with pytest.raises(ValueError, match="verdict must be one of"):
            await asyncio.to_thread(node.feedback, HELPLINE, 0, "deleted")
    with client(world, platform.datadir.match_token()) as matcher_only:
        with pytest.raises(Unauthorized, match="admin token") as refused:
            await asyncio.to_thread(matcher_only.feedback, HELPLINE, 0, "removed")
        assert refused.value.status == 401 and "error" in refused.value.detail
    with client(world, "wrong-token") as stranger:
        with pytest.raises(Unauthorized):
            await asyncio.to_thread(stranger.status)
    with pytest.raises(ValueError):
        NodeClient("ftp://127.0.0.1:1", "x")


async def test_the_public_site_says_where_the_match_api_is(world):
    platform = world["platform"]
    with NodeClient(platform.node.public_url, platform.token) as wrong_site:
        with pytest.raises(NotFound, match="admin site") as refused:
            await asyncio.to_thread(wrong_site.match, "pdq", world["query"].hex())
    assert refused.value.detail["admin_site_only"] is True
    assert platform.node.admin_url not in str(refused.value)  # the admin address is not given away
    async with platform.session.get(platform.node.public_url + "/v1/match/status") as answer:
        assert answer.status == 404 and (await answer.json())["admin_site_only"] is True
    async with platform.session.post(platform.node.public_url + "/v1/feedback", json={}) as answer:
        assert answer.status == 404 and "admin site" in (await answer.json())["error"]
    async with platform.session.get(platform.node.public_url + "/no-such-page") as answer:
        assert answer.status == 404 and answer.content_type != "application/json"


async def test_from_datadir_and_a_restarting_node(world):
    """Reading requests retry while the node is down (connection refused) and succeed
    once it is back; from_datadir finds a serving node, and says when there is none."""
    platform = world["platform"]
    node = NodeClient.from_datadir(platform.root, retries=8, max_retry_wait=1.0)
    assert (await asyncio.to_thread(node.status))["ready"]
    admin_port = int(platform.node.admin_url.rsplit(":", 1)[1])
    config = platform.datadir.config
    config.admin.port = admin_port  # come back on the same address
    platform.datadir.save_config(config)
    await platform.stop()
    with pytest.raises(Unreachable, match="no node is serving"):
        NodeClient.from_datadir(platform.root)
    pending = asyncio.create_task(asyncio.to_thread(node.match, "pdq", world["query"].hex()))
    await asyncio.sleep(0.5)
    assert not pending.done()
    await platform.start()
    result = await asyncio.wait_for(pending, 30)
    assert result.total > 0
    node.close()


def silent_server() -> tuple[int, list, threading.Event]:
    """A TCP peer that accepts connections, reads, and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], accepted, stop


def test_no_answer_retries_a_reading_request_but_never_a_write():
    port, accepted, stop = silent_server()
    try:
        node = NodeClient(f"http://127.0.0.1:{port}", "token", timeout=0.3, retries=2, max_retry_wait=0.05)
        with pytest.raises(Unreachable, match="no answer"):
            node.match("pdq", "0" * 64)
        assert len(accepted) == 3  # the first attempt and two retries
        with pytest.raises(Unreachable, match="no answer"):
            node.feedback(HELPLINE, 0, "removed")
        assert len(accepted) == 4  # a feedback that may have arrived is never sent twice
    finally:
        stop.set()
        for conn in accepted:
            conn.close()
