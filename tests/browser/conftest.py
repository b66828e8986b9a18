"""Fixtures for the browser tests of the victim web page (node/web/static).

One Debian chromium for the whole session, driven by Playwright (never a
downloaded browser), and one small aiohttp server on 127.0.0.1 that serves the
static folder as the helpline node does, plus a recording case API.

The case API here is a stand-in that keeps to the contract in the project brief
(POST /v1/cases, /v1/cases/status, /v1/cases/withdraw) until the helpline's real
case service lands; it records every request so tests can check that nothing
but fingerprints left the page.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
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


# ---------------------------------------------------------------- the recording case API

@dataclass
class Recorded:
    method: str
    path: str
    content_type: str
    body: bytes


@dataclass
class CaseStore:
    """What the stand-in case API remembers: cases by number, and every request it saw."""
    cases: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)
    extra_routes: dict = field(default_factory=dict)  # test-only GET routes: path -> (bytes, type)


HEX = re.compile(r"^[0-9a-f]+$")
QUESTIONS = ("in_image", "adult", "has_image", "intimate")


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
    else:
        return f"unknown signal {signal!r}"
    return None


def build_app(store: CaseStore) -> web.Application:
    async def record(request: web.Request) -> bytes:
        body = await request.read()
        store.requests.append(Recorded(request.method, request.path, request.content_type, body))
        return body

    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def open_case(request: web.Request) -> web.Response:
        try:
            data = json.loads(await record(request))
        except ValueError:
            return error(400, "body is not JSON")
        if set(data) != {"eligibility", "fingerprints", "lang"} or data["lang"] not in ("fr", "en"):
            return error(400, "expected eligibility, fingerprints and lang")
        answers = data["eligibility"]
        if set(answers) != set(QUESTIONS) or not all(isinstance(v, bool) for v in answers.values()):
            return error(400, "eligibility needs four booleans")
        if not all(answers.values()):
            return web.json_response({"eligible": False, "reason": "not eligible",
                                      "help": [{"name": "Example help", "url": "https://help.invalid/"}]}, status=422)
        fingerprints = data["fingerprints"]
        if not isinstance(fingerprints, list) or not fingerprints:
            return error(400, "fingerprints must be a non-empty list")
        for fingerprint in fingerprints:
            if (problem := contract_error(fingerprint)) is not None:
                return error(400, problem)
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        number = "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))
        pin = "".join(secrets.choice("0123456789") for _ in range(8))
        low = sum(1 for f in fingerprints if f.get("low_quality"))
        store.cases[number] = {"pin": pin, "state": "active", "fingerprints": fingerprints}
        return web.json_response({"case_number": number, "pin": pin, "fingerprints": len(fingerprints),
                                  "low_quality": low}, status=201)

    def find_case(data):
        case = store.cases.get(data.get("case_number"))
        if case is None or case["pin"] != data.get("pin"):
            return None
        return case

    def status_of(case):
        return {"state": case["state"], "fingerprints": len(case["fingerprints"]),
                "published": [{"index": i, "checkpoint_size": i + 1} for i in range(len(case["fingerprints"]))],
                "withdrawn_at": case.get("withdrawn_at"),
                "feedback": [{"platform": "platform.example", "verdict": "matched-pending-review"}]}

    async def case_status(request: web.Request) -> web.Response:
        data = json.loads(await record(request))
        case = find_case(data)
        if case is None:
            return error(401, "wrong case number or PIN")
        return web.json_response(status_of(case))

    async def withdraw(request: web.Request) -> web.Response:
        data = json.loads(await record(request))
        case = find_case(data)
        if case is None:
            return error(401, "wrong case number or PIN")
        case["state"] = "withdrawn"
        case["withdrawn_at"] = "2025-01-01"
        return web.json_response(status_of(case))

    async def static(request: web.Request) -> web.StreamResponse:
        await record(request)
        name = request.match_info["path"] or "index.html"
        if name in store.extra_routes:
            body, content_type = store.extra_routes[name]
            return web.Response(body=body, content_type=content_type)
        path = (STATIC / name).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                                               "Cache-Control": "no-store"})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/v1/cases", open_case)
    app.router.add_post("/v1/cases/status", case_status)
    app.router.add_post("/v1/cases/withdraw", withdraw)
    app.router.add_get("/{path:.*}", static)
    return app


class ThreadedServer:
    """An aiohttp app on 127.0.0.1 (free port) in its own thread and event loop."""

    def __init__(self, app: web.Application):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.port = 0

    def _run(self):
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self):
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("test web server did not start")
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        installer = REPO / "scripts" / "install_browser"
        if shutil.which("bash") and installer.exists():
            subprocess.run(["bash", str(installer)], capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium (/usr/bin/chromium) is absent and scripts/install_browser could not install it")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def browser(chromium_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def case_store() -> CaseStore:
    return CaseStore()


@pytest.fixture(scope="session")
def web_server(case_store):
    with ThreadedServer(build_app(case_store)) as server:
        yield server


@pytest.fixture(scope="session")
def conformance_pdq() -> Path:
    folder = CONFORMANCE / "pdq"
    if not folder.is_dir():
        pytest.skip(f"conformance data not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def open_page(browser, web_server):
    """open_page(locale=..., viewport=...) -> (page, requests): a fresh context whose every request is kept."""
    contexts = []

    def open_(locale="fr-FR", viewport=None, path="/"):
        options = {"locale": locale, "accept_downloads": True, "service_workers": "block"}
        if viewport:
            options["viewport"] = viewport
        context = browser.new_context(**options)
        contexts.append(context)
        requests = []
        context.on("request", lambda request: requests.append(request))
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        page.errors = errors
        page.goto(web_server.base_url + path)
        page.wait_for_selector("body[data-ready=true]")
        return page, requests

    yield open_
    for context in contexts:
        context.close()
