"""Support for the browser tests of the victim web page (node/web/static).

One Debian chromium for the whole session, driven by Playwright (never a
downloaded browser), and one real helpline node (node.web.app.RunningNode with its
case service) on 127.0.0.1, which serves the page itself (node/web/static_routes.py);
the tests add a fallback GET route to that same application for test-only files
(conformance images, axe-core), so that the page and POST /v1/cases share one
origin, as in production. The browser side
keeps every request with its body (Playwright); the node side records what it
received (method, path, type, length) without consuming bodies.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "node" / "web" / "static"
CONFORMANCE = REPO.parent / "shared" / "conformance"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}


# ---------------------------------------------------------------- the node under test

@dataclass
class Recorded:
    method: str
    path: str
    content_type: str
    content_length: int | None  # the body itself is checked in the browser (the node must read it)


@dataclass
class Recorder:
    """Every request the node received, and test-only GET routes (path -> (bytes, type))."""
    requests: list = field(default_factory=list)
    extra_routes: dict = field(default_factory=dict)


HEX = re.compile(r"^[0-9a-f]+$")


def contract_error(fingerprint) -> str | None:
    """Why a fingerprint object breaks the contract's JSON shape, or None."""
    if not isinstance(fingerprint, dict):
        return "fingerprint is not an object"
    signal = fingerprint.get("signal")
    allowed = {"signal", "fingerprint", "quality", "low_quality"}
    if set(fingerprint) - allowed:
        return f"unexpected keys {sorted(set(fingerprint) - allowed)}"
    value = fingerprint.get("fingerprint")
    if signal == "pdq":
        if not (isinstance(value, str) and len(value) == 64 and HEX.match(value)):
            return "pdq fingerprint must be 64 lowercase hex digits"
        quality = fingerprint.get("quality")
        if not (isinstance(quality, int) and 0 <= quality <= 100):
            return "pdq quality must be an integer 0..100"
    elif signal == "md5":
        if not (isinstance(value, str) and len(value) == 32 and HEX.match(value)):
            return "md5 fingerprint must be 32 lowercase hex digits"
        if set(fingerprint) - {"signal", "fingerprint"}:
            return "md5 takes no other keys"
    elif signal == "vpdq":
        if not (isinstance(value, list) and 1 <= len(value) <= 1770):
            return "vpdq fingerprint must be a list of 1 to 1770 frames"
        for frame in value:
            if not (isinstance(frame, dict) and set(frame) == {"pdq", "quality", "timestamp"}):
                return "a vpdq frame is exactly {pdq, quality, timestamp}"
            if not (isinstance(frame["pdq"], str) and len(frame["pdq"]) == 64 and HEX.match(frame["pdq"])):
                return "a vpdq frame's pdq must be 64 lowercase hex digits"
            if not (isinstance(frame["quality"], int) and 0 <= frame["quality"] <= 100):
                return "a vpdq frame's quality must be an integer 0..100"
            if not (isinstance(frame["timestamp"], (int, float)) and frame["timestamp"] >= 0):
                return "a vpdq frame's timestamp must be seconds >= 0"
        if "quality" in fingerprint:
            return "vpdq carries its qualities in its frames"
    else:
        return f"unknown signal {signal!r}"
    return None


def add_page_routes(app: web.Application, recorder: Recorder) -> None:
    """Serve node/web/static at / on the node's own application, and record every request it gets."""

    @web.middleware
    async def record(request: web.Request, handler):
        recorder.requests.append(Recorded(request.method, request.path, request.content_type,
                                          request.content_length))
        # Test-only files (conformance images, raw pixels) are answered here, whatever
        # routes the node has: a middleware runs even when no route matches.
        extra = recorder.extra_routes.get(request.path.lstrip("/")) if request.method == "GET" else None
        if extra is not None:
            return web.Response(body=extra[0], content_type=extra[1])
        return await handler(request)

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"] or "index.html"
        path = (STATIC / name).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                                               "Cache-Control": "no-store"})

    app.middlewares.insert(0, record)
    # After the node's own routes, which win: once the node serves the page itself,
    # the tests use the node's route.
    app.router.add_get("/{path:.*}", static)


MEDIA_SOURCE = "media-src blob:"
"""The page reads the person's videos through object URLs of the local files
(video-frames.js): its Content-Security-Policy must allow blob: media."""


def make_helpline_datadir(root: Path, page: dict | None = None, node: dict | None = None, cases: dict | None = None):
    """A helpline's data directory; `page` and `node` set [page] and [node] keys (the
    helpline's own page: its name, contact, help, platforms), `cases` [cases] keys."""
    from node.cli import main as cli_main
    from node.config import Config
    from node.datadir import DataDir

    argv = ["init", "--dir", str(root), "--origin", "helpline.test/log", "--role", "helpline", "--public-read"]
    assert cli_main(argv) == 0
    datadir = DataDir(root)
    config = datadir.config
    config.log.sequencing_interval = 0.05
    config.cases.pin_scrypt_n = 2**12  # cheaper PIN hashes: tests check many PINs
    # One browser on one address opens many cases in a session: lift the creation limits
    # (node/cases/creation.py; their own tests are tests/test_abuse_intake.py).
    for key in ("per_address_per_hour", "per_address_per_day", "per_network_per_hour", "per_network_per_day",
                "proof_of_work_above_per_hour"):
        setattr(config.cases, key, 100_000)
    for key, value in (cases or {}).items():  # a test's own [cases] settings
        setattr(config.cases, key, value)
    if page or node:
        values = config.to_dict()
        values["page"].update(page or {})
        values["node"].update(node or {})
        config = Config.from_dict(values)  # validated as a config file would be
    datadir.save_config(config)
    return DataDir(root)


class ThreadedNode:
    """A real helpline node serving the page, on 127.0.0.1 (free port), in its own thread and loop."""

    def __init__(self, root: Path, recorder: Recorder, page: dict | None = None, node: dict | None = None,
                 cases: dict | None = None):
        from node.web.app import RunningNode

        self.datadir = make_helpline_datadir(root, page, node, cases)
        self.node = RunningNode(self.datadir)
        add_page_routes(self.node.app, recorder)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.node.start("127.0.0.1", 0))
        except BaseException as exc:  # reported to the test thread
            self.failure = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.node.stop())
        self.loop.close()

    def __enter__(self):
        self.thread.start()
        if not self.ready.wait(30) or self.failure:
            raise RuntimeError(f"the helpline node did not start: {self.failure!r}")
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    @property
    def base_url(self) -> str:
        return self.node.public_url

    def log_vkey(self) -> str:
        return self.datadir.load_log_signer().verifier_key()

    def run(self, coroutine, timeout: float = 30.0):
        """Run a coroutine on the node's own loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


# ---------------------------------------------------------------- driving the page

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"ftyp", b"GIF8", b"\x1aE\xdf\xa3", b"moov", b"mdat")


def shoot(page, artifacts: Path, name: str):
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    # Phone-sized screens: nothing may stick out sideways.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: page is {overflow}px wider than the screen"


def wait_until(page, expression: str, timeout: float = 30.0):
    # wait_for_function evaluates strings, which the page's CSP forbids: poll instead.
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => {expression}"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def expect_view(page, name: str):
    # Views change a moment after the click.
    page.wait_for_selector(f"#view-{name}:not([hidden])", timeout=5_000)
    assert page.evaluate("document.querySelectorAll('.view:not([hidden])').length") == 1


def read_log(node) -> list:
    """The node's whole log, read over HTTP and verified with protocol/ only:
    signed checkpoint, entry bundles, Merkle root. Returns the raw entries."""
    from protocol.checkpoint import open_checkpoint
    from protocol.merkle import leaf_hash, root_of
    from protocol.note import Verifier
    from protocol.tiles import bundles_for_size, decode_bundle

    def get(path):
        with urllib.request.urlopen(f"{node.base_url}/{path}", timeout=10) as answer:
            return answer.read()

    checkpoint, _ = open_checkpoint(get("checkpoint"), [Verifier.from_vkey(node.log_vkey())])
    raw = []
    for bundle in bundles_for_size(checkpoint.size):
        raw += decode_bundle(get(bundle.path()), bundle.width)
    assert root_of([leaf_hash(entry) for entry in raw]) == checkpoint.root_hash
    return raw


def check_requests(requests, base_url):
    """Every request stays on the loopback server; every body is contract JSON.
    Returns the POSTs as (path, body)."""
    posts = []
    for request in requests:
        url = urlsplit(request.url)
        if url.scheme in ("blob", "data"):
            continue  # local to the browser (the text-file download), never on the network
        assert url.hostname == "127.0.0.1", f"request to another host: {request.url}"
        assert request.url.startswith(base_url)
        body = request.post_data_buffer
        if request.method == "GET":
            assert not body
            continue
        assert request.method == "POST", request.method
        assert url.path in ("/v1/cases", "/v1/cases/status", "/v1/cases/withdraw", "/v1/cases/receipt"), url.path
        assert request.headers.get("content-type", "").startswith("application/json")
        assert len(body) < 16_384
        assert not any(magic in body for magic in IMAGE_MAGIC)
        data = json.loads(body)
        if url.path == "/v1/cases":
            assert set(data) == {"eligibility", "fingerprints", "lang"}
            for fingerprint in data["fingerprints"]:
                assert contract_error(fingerprint) is None, (fingerprint, contract_error(fingerprint))
        else:
            assert set(data) == {"case_number", "pin"}
        posts.append((url.path, data))
    return posts


def post_json(base_url: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(base_url + path, headers={"Content-Type": "application/json"},
                                     data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# ---------------------------------------------------------------- PDQ on the Python side

def python_pdq(path_or_image) -> tuple[str, int]:
    """pdqhash on Pillow-decoded RGB pixels, EXIF orientation applied (as the browser shows the picture)."""
    import pdqhash
    from PIL import Image, ImageOps

    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    bits, quality = pdqhash.compute(pixels)
    return bytes(np.packbits(bits.astype(np.uint8))).hex(), int(quality)


def distance(hex_a: str, hex_b: str) -> int:
    return bin(int(hex_a, 16) ^ int(hex_b, 16)).count("1")


# ---------------------------------------------------------------- videos made for the tests

def synthetic_frames(width: int, height: int, seconds: float, rate, seed: int = 5):
    """RGB frames (H x W x 3 uint8) of a made-up video: a textured scene that pans
    slowly, and a new scene every 2 seconds, so that the frames a second apart
    differ as they do in a real video. Deterministic."""
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    rate = Fraction(rate)
    count = int(seconds * rate)
    margin_x, margin_y = width // 4, height // 4

    def scene():
        # Detail at two scales (smooth shapes, finer texture), upsampled with Pillow.
        from PIL import Image

        layers = []
        for cells in (6, 40):
            grid = rng.integers(0, 256, size=(cells * (height + margin_y) // width + 2, cells + 2, 3), dtype=np.uint8)
            layer = Image.fromarray(grid).resize((width + margin_x, height + margin_y), Image.Resampling.BICUBIC)
            layers.append(np.asarray(layer, dtype=np.float32))
        return np.clip(0.75 * layers[0] + 0.25 * layers[1], 0, 255).astype(np.uint8)

    scenes = {}
    for index in range(count):
        t = index / rate
        number = int(t // 2)
        if number not in scenes:
            scenes.clear()
            scenes[number] = scene()
        phase = float(t % 2) / 2
        x = int(margin_x * phase)
        y = int(margin_y * phase / 2)
        yield np.ascontiguousarray(scenes[number][y:y + height, x:x + width])


def make_video(path: Path, *, codec: str, width: int, height: int, seconds: float, rate, options=None,
               bt709: bool = False) -> Path:
    """Encode synthetic_frames with PyAV (container from the file name: .webm, .mp4).
    `bt709` tags the stream's colours as BT.709, as phones tag their HD videos: an
    untagged HD video is shown (and hashed) by browsers as BT.709 but read by
    FFmpeg/PyAV as BT.601, which moves PDQ bits (see spec/parts/webapp.md)."""
    from fractions import Fraction

    import av

    rate = Fraction(rate)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options or {})
        if bt709:
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = 1  # ITU-R BT.709
        for pixels in synthetic_frames(width, height, seconds, rate):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def js_constant(source: str, name: str):
    """The value of `export const NAME = <number or product of numbers>;` in a page script."""
    match = re.search(rf"export const {name} = ([0-9_ *.]+);", source)
    assert match, f"{name} not found"
    value = 1
    for factor in match.group(1).replace("_", "").split("*"):
        value *= float(factor)
    return int(value) if value == int(value) else value


MAX_VPDQ_FRAMES_JS = js_constant((STATIC / "video-frames.js").read_text("utf-8"), "MAX_VPDQ_FRAMES")
