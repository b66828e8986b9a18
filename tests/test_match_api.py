"""The match API and CLI of a platform node, end to end: a real node (`RunningNode`, real
HTTP on 127.0.0.1) follows a real log served over HTTP (tests/follow_support.py),
its follower feeds the matcher, and requests go through the admin site with the
admin token. Answers are checked against brute force over the log's active entries."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from PIL import Image

from node.cli import main as cli_main
from node.datadir import DataDir
from node.hashing import hash_file, hash_image_bytes
from node.store import open_db
from node.web.server import RunningNode
from node.web.match_routes import MATCH_SETTINGS
from protocol.entries import (
    Feedback,
    Submission,
    Withdrawal,
    decode_entry,
    encode_entry,
)
from protocol.signals import PDQ

from follow_support import LogServer, StaticLog

PLATFORM = "platform.example/feedback"
HELPLINE = "helpline.example/log"


# ------------------------------------------------------------------------------ media

def picture(k: int, size: int = 256) -> np.ndarray:
    """A smooth picture (a few low-frequency waves per channel), different for each k:
    like a photo, it survives resizing and re-compression within a few PDQ bits."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(k)
    image = np.zeros((size, size, 3))
    for channel in range(3):
        for _ in range(4):
            fx, fy, phase = rng.uniform(0.5, 4), rng.uniform(0.5, 4), rng.uniform(0, 2 * np.pi)
            image[..., channel] += np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    image = (image - image.min()) / (image.max() - image.min()) * 255
    return image.astype(np.uint8)


def jpeg(pixels: np.ndarray, quality: int = 95, size: int | None = None) -> bytes:
    image = Image.fromarray(pixels)
    if size:
        image = image.resize((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def make_video(path: Path, seconds: int = 3, fps: int = 5) -> Path:
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 96, "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(picture(10 + i // fps, 96), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def flip(fingerprint: bytes, distance: int, rng) -> bytes:
    bits = np.unpackbits(np.frombuffer(fingerprint, dtype=np.uint8))
    bits[rng.choice(256, size=distance, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def submission(signal: str, fingerprint, quality=None, labels=()) -> bytes:
    from protocol.signals import signal_named

    raw = signal_named(signal).parse_json(fingerprint) if not isinstance(fingerprint, bytes) else fingerprint
    return encode_entry(Submission(signal, raw, quality, tuple(labels), 0))


# ------------------------------------------------------------------------------ the platform

class Platform:
    def __init__(self, tmp_path: Path, start_node, database: str | None = None):
        self.tmp_path = tmp_path
        self.start_node = start_node
        self.root = tmp_path / "platform"
        assert cli_main(["init", "--dir", str(self.root), "--origin", PLATFORM, "--role", "platform"]
                        + (["--database", database] if database else [])) == 0
        datadir = DataDir(self.root)
        config = datadir.config
        config.log.sequencing_interval = 0.05
        datadir.save_config(config)
        self.datadir = DataDir(self.root)
        self.token = self.datadir.admin_token()
        self.node: RunningNode | None = None
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> Platform:
        self.node = await self.start_node(DataDir(self.root), host=None)
        self.session = self.session or aiohttp.ClientSession()
        await self.wait(lambda s: s["ready"], "the index is built")
        return self

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.stop()
            self.node = None

    async def close(self) -> None:
        await self.stop()
        if self.session is not None:
            await self.session.close()

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, path: str, body=None, *, data: bytes | None = None, headers=None):
        async with self.session.post(self.node.admin_url + path, json=body if data is None else None, data=data,
                                     headers=self.headers if headers is None else headers) as r:
            return r.status, await r.json()

    async def status(self) -> dict:
        async with self.session.get(self.node.admin_url + "/v1/match/status", headers=self.headers) as r:
            return await r.json() if r.status == 200 else {"ready": False}

    async def wait(self, condition, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status()
            if condition(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting until {what}: {status}")
            await asyncio.sleep(0.05)

    async def match(self, signal: str, fingerprint) -> dict:
        status, answer = await self.post("/v1/match", {"signal": signal, "fingerprint": fingerprint})
        assert status == 200, answer
        return answer


@pytest.fixture(params=["sqlite", "postgresql"])
def platform_database(request):
    """None (SQLite), then a PostgreSQL database: set up before start_node, so that the
    node stops before its database is dropped."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


@pytest.fixture
async def world(tmp_path, platform_database, start_node):
    """A helpline log of 1,500 random PDQ plus neighbours planted at 0..40 around a
    query, a photo's PDQ, a video's MD5 and vPDQ; a platform node following it, on
    SQLite, then on PostgreSQL (its follower, matcher and holds in the database)."""
    rng = np.random.default_rng(3)
    log = StaticLog(HELPLINE)
    model: dict[int, bytes] = {}
    entries = []
    for _ in range(1500):
        model[len(entries)] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        entries.append(submission("pdq", model[len(entries)], 90))
    query = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    for distance in list(range(41)) + [31, 32]:
        model[len(entries)] = flip(query, distance, rng)
        entries.append(submission("pdq", model[len(entries)], 80, ("sexual",)))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(picture(1)))
    (photo_fp,) = hash_file(photo)
    photo_index = len(entries)
    model[photo_index] = bytes.fromhex(photo_fp["fingerprint"])
    entries.append(submission("pdq", photo_fp["fingerprint"], photo_fp["quality"]))
    video = make_video(tmp_path / "video.mp4")
    video_fps = hash_file(video)
    video_indices = {}
    for fp in video_fps:
        video_indices[fp["signal"]] = len(entries)
        entries.append(submission(fp["signal"], fp["fingerprint"]))
    log.append(*entries)
    server = await LogServer(log).start()
    platform = Platform(tmp_path, start_node, platform_database)
    db = open_db(platform.datadir.db_path)
    db.follow.add_log(HELPLINE, server.url, log.vkey, interval=0.1)
    db.close()
    await platform.start()
    await platform.wait(lambda s: s["pdq"] == len(model) and s["md5"] == 1 and s["vpdq"] == 1,
                        "the follower applied the log")
    try:
        yield {"log": log, "server": server, "platform": platform, "model": model, "query": query,
               "photo": photo, "photo_index": photo_index, "video": video, "video_indices": video_indices,
               "rng": rng}
    finally:
        await platform.close()
        await server.stop()


def brute(model: dict[int, bytes], fingerprint: bytes, threshold: int = 31) -> list[tuple[int, int]]:
    found = [(PDQ.distance(fingerprint, fp), index) for index, fp in model.items()]
    return sorted((d, i) for d, i in found if d <= threshold)


def pairs(answer: dict) -> list[tuple[int, int]]:
    return [(m["distance"], m["index"]) for m in answer["matches"]]


# ------------------------------------------------------------------------------ tests

async def test_single_query_edges_31_and_32(world):
    platform, model, query = world["platform"], world["model"], world["query"]
    answer = await platform.match("pdq", query.hex())
    assert answer["signal"] == "pdq"
    assert pairs(answer) == brute(model, query)[:100]
    assert answer["total"] == len(brute(model, query))
    distances = [d for d, _ in pairs(answer)]
    assert distances.count(31) == 2 and 32 not in distances
    first = answer["matches"][0]
    assert first["origin"] == HELPLINE and first["labels"] == ["sexual"] and first["quality"] == 80
    assert first["feedback"] == {} and first["day"] is None


async def test_batch_of_1000_equals_brute_force(world):
    platform, model, rng = world["platform"], world["model"], world["rng"]
    indices = list(model)
    queries = []
    for k in range(1000):
        if k % 3 == 0:  # near an indexed fingerprint, at up to 40 bits
            queries.append(flip(model[indices[int(rng.integers(0, len(indices)))]], int(rng.integers(0, 41)), rng))
        else:
            queries.append(rng.integers(0, 256, 32, dtype=np.uint8).tobytes())
    status, answer = await platform.post("/v1/match", {"fingerprints": [{"signal": "pdq", "fingerprint": q.hex()}
                                                                        for q in queries]})
    assert status == 200
    assert len(answer["results"]) == 1000
    matched = 0
    for q, result in zip(queries, answer["results"]):
        assert pairs(result) == brute(model, q)
        matched += bool(result["matches"])
    assert matched > 250
    # a bare list is a batch too
    status, answer = await platform.post("/v1/match", [{"signal": "pdq", "fingerprint": queries[0].hex()}])
    assert status == 200 and pairs(answer["results"][0]) == brute(model, queries[0])


async def test_auth_body_limits_and_bad_input(world):
    platform = world["platform"]
    one = {"signal": "pdq", "fingerprint": world["query"].hex()}
    for path, body in [("/v1/match", one), ("/v1/match/suppress", {"origin": HELPLINE, "index": 0}),
                       ("/v1/match/threshold", {"origin": HELPLINE, "threshold": 3})]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": platform.token}):
            status, answer = await platform.post(path, body, headers=headers)
            assert status == 401 and "token" in answer["error"]
    status, _ = await platform.post("/v1/match/media", data=world["photo"].read_bytes(), headers={})
    assert status == 401
    async with platform.session.get(platform.node.admin_url + "/v1/match/status") as r:
        assert r.status == 401
    # nothing of this lives on the public site
    async with platform.session.post(platform.node.public_url + "/v1/match", json=one,
                                     headers=platform.headers) as r:
        assert r.status in (404, 405)

    settings = platform.node.admin_app[MATCH_SETTINGS]
    settings.json_limit, settings.media_limit = 20_000, 50_000
    big = {"fingerprints": [one] * 300}  # about 27 kB
    status, answer = await platform.post("/v1/match", big)
    assert status == 413 and "limit" in answer["error"]
    status, answer = await platform.post("/v1/match/media", data=b"\xff\xd8" + bytes(60_000))
    assert status == 413
    settings.json_limit = 16 * 1024 * 1024
    status, answer = await platform.post("/v1/match", {"fingerprints": [one] * 1001})
    assert status == 413 and "1000" in answer["error"]
    bad = [one, {"signal": "pdq", "fingerprint": "abc"}]
    status, answer = await platform.post("/v1/match", {"fingerprints": bad})
    assert status == 400 and answer["item"] == 1 and "fingerprint 1" in answer["error"]
    for body in [{"fingerprints": []}, {"nothing": 1}, "pdq", {"signal": "sha1", "fingerprint": "00"}]:
        status, answer = await platform.post("/v1/match", body)
        assert status == 400, body
    status, answer = await platform.post("/v1/match", data=b"{not json")
    assert status == 400
    status, answer = await platform.post("/v1/match/media", data=b"this is not a photo or a video")
    assert status == 422 and "cannot fingerprint" in answer["error"]


async def test_match_token_matches_and_does_nothing_else(world, capsys):
    platform, query = world["platform"], world["query"]
    assert cli_main(["key", "--dir", str(platform.root), "--match-token"]) == 0
    match_token = capsys.readouterr().out.strip()
    assert match_token and match_token != platform.token
    assert match_token == platform.datadir.match_token_path.read_text().strip()
    assert platform.datadir.match_token_path.stat().st_mode & 0o777 == 0o600
    as_matcher = {"Authorization": f"Bearer {match_token}"}
    one = {"signal": "pdq", "fingerprint": query.hex()}

    # it matches, as the admin token still does, with the same answer
    status, by_match_token = await platform.post("/v1/match", one, headers=as_matcher)
    assert status == 200 and pairs(by_match_token) == brute(world["model"], query)[:100]
    status, by_admin_token = await platform.post("/v1/match", one)
    assert status == 200 and by_admin_token == by_match_token
    status, answer = await platform.post("/v1/match/media", data=world["photo"].read_bytes(), headers=as_matcher)
    assert status == 200 and answer["matched"]
    async with platform.session.get(platform.node.admin_url + "/v1/match/status", headers=as_matcher) as r:
        assert r.status == 200 and (await r.json())["ready"]

    # it cannot append, publish feedback, suppress or change a threshold
    async with platform.session.post(platform.node.admin_url + "/admin/append", headers=as_matcher,
                                     data=json.dumps(one | {"kind": "submission"}) + "\n") as r:
        assert r.status == 401 and "admin token" in (await r.json())["error"]
    feedback = {"origin": HELPLINE, "index": 0, "verdict": "removed"}
    status, answer = await platform.post("/v1/feedback", feedback, headers=as_matcher)
    assert status == 401 and "admin token" in answer["error"]
    for path, body in [("/v1/match/suppress", {"origin": HELPLINE, "index": 0}),
                       ("/v1/match/threshold", {"origin": HELPLINE, "threshold": 3})]:
        status, answer = await platform.post(path, body, headers=as_matcher)
        assert status == 401 and "admin token" in answer["error"]
    # nothing reached the log but the platform's own acknowledgements of what it applied
    kinds = [row[0] for row in platform.node.node.db.execute("SELECT substr(data, 2, 1) FROM log_entries")]
    assert set(kinds) <= {b"\x05"}
    # ... which the admin token can
    status, answer = await platform.post("/v1/feedback", feedback)
    assert status == 200 and answer["entry"]["verdict"] == "removed"


async def test_match_token_is_made_at_init_or_on_first_serve(tmp_path, capsys, start_node):
    # `init` makes it for a platform only
    helpline = tmp_path / "helpline"
    assert cli_main(["init", "--dir", str(helpline), "--origin", HELPLINE]) == 0
    assert not DataDir(helpline).match_token_path.exists()
    capsys.readouterr()
    assert cli_main(["key", "--dir", str(helpline), "--match-token"]) == 1
    assert "no match API" in capsys.readouterr().err
    # a platform's data directory from before the match token gets one when it is served
    platform = Platform(tmp_path, start_node)
    platform.datadir.match_token_path.unlink()
    assert cli_main(["key", "--dir", str(platform.root), "--match-token"]) == 1
    assert "when it next starts" in capsys.readouterr().err
    await platform.start()
    try:
        made = platform.datadir.match_token_path
        assert made.stat().st_mode & 0o777 == 0o600
        status, _ = await platform.post("/v1/match", {"signal": "pdq", "fingerprint": "00" * 32},
                                        headers={"Authorization": f"Bearer {made.read_text().strip()}"})
        assert status == 200
    finally:
        await platform.close()


async def test_media_endpoint_with_a_real_jpeg_and_video(world):
    platform = world["platform"]
    # the platform's upload: the same photo, resized and re-compressed
    upload = jpeg(picture(1), quality=60, size=200)
    status, answer = await platform.post("/v1/match/media", data=upload, headers={**platform.headers,
                                                                                  "Content-Type": "image/jpeg"})
    assert status == 200, answer
    assert answer["kind"] == "image" and answer["matched"] is True
    (result,) = answer["results"]
    assert result["signal"] == "pdq" and result["quality"] >= 50
    assert [m["index"] for m in result["matches"]] == [world["photo_index"]]
    assert result["matches"][0]["distance"] <= 31
    # an unrelated photo
    status, answer = await platform.post("/v1/match/media", data=jpeg(picture(7)))
    assert status == 200 and answer["matched"] is False
    # the video: MD5 and vPDQ both match
    status, answer = await platform.post("/v1/match/media", data=world["video"].read_bytes())
    assert status == 200, answer
    assert answer["kind"] == "video" and answer["matched"] is True
    by_signal = {r["signal"]: r for r in answer["results"]}
    assert [m["index"] for m in by_signal["md5"]["matches"]] == [world["video_indices"]["md5"]]
    vpdq = by_signal["vpdq"]["matches"]
    assert [m["index"] for m in vpdq] == [world["video_indices"]["vpdq"]]
    assert vpdq[0]["query_coverage"] == 100.0 and vpdq[0]["distance"] == 0


async def test_withdrawal_suppression_threshold_and_restart(world):
    platform, log, model, query = world["platform"], world["log"], world["model"], world["query"]
    answer = await platform.match("pdq", query.hex())
    nearest = answer["matches"][0]["index"]
    second = answer["matches"][1]["index"]

    # a withdrawal published by the helpline stops the match once the follower applied it
    log.append(encode_entry(Withdrawal((nearest,))))
    deadline = time.monotonic() + 20
    while nearest in [m["index"] for m in (await platform.match("pdq", query.hex()))["matches"]]:
        assert time.monotonic() < deadline, "the withdrawal was not applied"
        await asyncio.sleep(0.05)
    del model[nearest]

    # suppression: gone at once, and disputed-false-match feedback is published
    status, outcome = await platform.post("/v1/match/suppress", {"origin": HELPLINE, "index": second})
    assert status == 200, outcome
    assert outcome["was_matching"] is True and outcome["feedback"] == "published"
    answer = await platform.match("pdq", query.hex())
    assert second not in [m["index"] for m in answer["matches"]]
    del model[second]
    ctx = platform.node.node
    feedback = decode_entry(ctx.db.execute("SELECT data FROM log_entries WHERE idx = ?",
                                           (outcome["feedback_index"],)).fetchone()[0])
    assert feedback == Feedback(HELPLINE, second, feedback.leaf_hash, "disputed-false-match")
    assert feedback.leaf_hash == ctx.db.follow.get_fingerprint(HELPLINE, second).leaf_hash
    status, answer = await platform.post("/v1/match/suppress", {"origin": HELPLINE, "index": 10**6})
    assert status == 404
    status, answer = await platform.post("/v1/match/suppress", {"origin": HELPLINE, "index": -1})
    assert status == 400

    # the log's threshold: 30 drops the neighbours at 31
    status, answer = await platform.post("/v1/match/threshold", {"origin": HELPLINE, "threshold": 30})
    assert status == 200 and answer["threshold"] == 30
    answer = await platform.match("pdq", query.hex())
    assert pairs(answer) == brute(model, query, 30)
    status, _ = await platform.post("/v1/match/threshold", {"origin": HELPLINE, "threshold": 257})
    assert status == 400

    # a restart rebuilds the same index from the database
    before = [await platform.match("pdq", fp.hex()) for fp in [query] + list(model.values())[:50]]
    await platform.stop()
    await platform.start()
    status = await platform.status()
    assert status["pdq"] == len(model) and status["suppressed"] == 1
    after = [await platform.match("pdq", fp.hex()) for fp in [query] + list(model.values())[:50]]
    assert after == before
    assert pairs(after[0]) == brute(model, query, 30)


async def test_cli_match_and_suppress(world, capsys):
    platform, model, query = world["platform"], world["model"], world["query"]
    root = str(platform.root)

    async def cli(*argv) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = await asyncio.to_thread(cli_main, list(argv))
        return code, capsys.readouterr().out.splitlines()

    # against the running node
    code, lines = await cli("match", "--dir", root, "--json", "--pdq", query.hex(), "--pdq", "00" * 32)
    assert code == 0 and len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["query"] == {"signal": "pdq", "fingerprint": query.hex()}
    assert [(m["distance"], m["index"]) for m in first["matches"]] == brute(model, query)[:100]
    assert all({"origin", "index", "distance"} <= set(m) for m in first["matches"])
    assert second["matches"] == [] and second["total"] == 0
    upload = Path(root).parent / "upload.jpg"
    upload.write_bytes(jpeg(picture(1), quality=70, size=220))
    code, lines = await cli("match", "--dir", root, "--json", str(upload), str(world["video"]))
    assert code == 0 and len(lines) == 2
    photo, video = map(json.loads, lines)
    assert photo["path"] == str(upload) and [m["index"] for m in photo["matches"]] == [world["photo_index"]]
    assert sorted(m["signal"] for m in video["matches"]) == ["md5", "vpdq"]
    code, lines = await cli("match", "--dir", root, "--pdq", "zz")
    assert code == 2
    code, lines = await cli("match", "--dir", root, str(Path(root).parent / "missing.jpg"), "--json")
    assert code == 1 and json.loads(lines[0])["error"]

    # with the node stopped, the CLI builds the index itself and answers the same
    running = await cli("match", "--dir", root, "--json", "--pdq", query.hex())
    await platform.stop()
    assert await cli("match", "--dir", root, "--json", "--pdq", query.hex()) == running

    # suppress while no node runs: effective at the next start, feedback published then
    target = json.loads(running[1][0])["matches"][0]["index"]
    code, lines = await cli("suppress", "--dir", root, "--origin", HELPLINE, "--index", str(target))
    assert code == 0 and json.loads(lines[0])["feedback"] == "pending"
    code, lines = await cli("suppress", "--dir", root, "--origin", HELPLINE, "--index", "99999999")
    assert code == 1
    await platform.start()
    assert target not in [m["index"] for m in (await platform.match("pdq", query.hex()))["matches"]]
    db = platform.node.node.db
    deadline = time.monotonic() + 10
    while db.execute("SELECT feedback FROM match_suppressions WHERE idx = ?", (target,)).fetchone()[0] != "published":
        assert time.monotonic() < deadline, "pending feedback was not published at start"
        await asyncio.sleep(0.05)
    # suppress through the running node, without feedback
    other = (await platform.match("pdq", query.hex()))["matches"][0]["index"]
    code, lines = await cli("suppress", "--dir", root, "--origin", HELPLINE, "--index", str(other), "--no-feedback")
    assert code == 0 and json.loads(lines[0]) == {"origin": HELPLINE, "index": other, "was_matching": True,
                                                  "feedback": "none"}
    assert other not in [m["index"] for m in (await platform.match("pdq", query.hex()))["matches"]]
    # thresholds from the CLI reach the running node
    code, lines = await cli("match-threshold", "--dir", root, HELPLINE, "5")
    assert code == 0 and lines == [f"{HELPLINE}\t5"]
    assert all(m["distance"] <= 5 for m in (await platform.match("pdq", query.hex()))["matches"])


def index_build_waiting_for(gate: asyncio.Event):
    """A `prepare` for start_node: the node's index build waits until `gate` is set."""
    def slow_down(running):
        matcher = running.node.matcher
        original = matcher.load

        def slow_load(path):
            while not gate.is_set():
                time.sleep(0.01)
            original(path)

        matcher.load = slow_load
    return slow_down


async def test_matching_waits_for_the_index(tmp_path, start_node):
    """While the index is built, the API says so (503 + Retry-After), never 'no match'."""
    platform = Platform(tmp_path, start_node)
    gate = asyncio.Event()
    node = await start_node(DataDir(platform.root), host=None, prepare=index_build_waiting_for(gate))
    platform.node, platform.session = node, aiohttp.ClientSession()
    try:
        async with platform.session.post(node.admin_url + "/v1/match", headers=platform.headers,
                                         json={"signal": "pdq", "fingerprint": "00" * 32}) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
        gate.set()
        await platform.wait(lambda s: s["ready"], "the index is built")
        assert (await platform.match("pdq", "00" * 32))["matches"] == []
    finally:
        gate.set()
        await platform.close()


async def test_media_dihedral_finds_rotated_and_flipped_uploads(world):
    platform, log = world["platform"], world["log"]
    pixels = picture(3, 512)
    (fp,) = hash_image_bytes(jpeg(pixels))
    index = len(log.entries)
    count = (await platform.status())["pdq"]
    log.append(submission("pdq", fp["fingerprint"], fp["quality"]))
    await platform.wait(lambda s: s["pdq"] == count + 1, "the follower added the photo")
    for transformed in (np.rot90(pixels), pixels[:, ::-1], np.rot90(pixels, 2)):
        upload = jpeg(np.ascontiguousarray(transformed))
        status, plain = await platform.post("/v1/match/media", data=upload)
        assert status == 200 and plain["matched"] is False  # PDQ is not rotation invariant
        status, answer = await platform.post("/v1/match/media?dihedral=true", data=upload)
        assert status == 200, answer
        (result,) = answer["results"]
        assert [m["index"] for m in result["matches"]] == [index]
        assert result["matches"][0]["variant"] != "original" and result["matches"][0]["distance"] <= 31
    status, answer = await platform.post("/v1/match/media?dihedral=true", data=jpeg(pixels))
    assert answer["results"][0]["matches"][0]["variant"] == "original"
    status, answer = await platform.post("/v1/match/media?dihedral=maybe", data=jpeg(pixels))
    assert status == 400
    # a video ignores the flag
    status, answer = await platform.post("/v1/match/media?dihedral=true", data=world["video"].read_bytes())
    assert status == 200 and answer["kind"] == "video" and answer["matched"]

