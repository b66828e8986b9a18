"""Fixtures for the browser tests of the victim web page: one Debian chromium for
the session (Playwright, never a downloaded browser), one real helpline node serving
the page (webapp_support.ThreadedNode), pages whose every request is kept."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from webapp_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, CONFORMANCE, REPO, Recorder, ThreadedNode


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        installer = REPO / "scripts" / "install_browser"
        if shutil.which("bash") and installer.exists():
            try:  # under the suite's 300 s per-test limit
                subprocess.run(["bash", str(installer)], capture_output=True, timeout=240)
            except subprocess.TimeoutExpired:
                pass
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium (/usr/bin/chromium) is absent and scripts/install_browser could not install it")
    return str(CHROMIUM)


# Module scope, not session: Playwright's sync API keeps an event loop running in the
# main thread while it is open, and any asyncio test collected after it would fail
# with "Cannot run the event loop while another loop is running".
@pytest.fixture(scope="module")
def browser(chromium_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def web_server(recorder, tmp_path_factory):
    """The helpline node serving the page (session-wide)."""
    with ThreadedNode(tmp_path_factory.mktemp("helpline"), recorder) as node:
        yield node


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

    def open_(locale="fr-FR", viewport=None, path="/", base_url=None):
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
        page.goto((base_url or web_server.base_url) + path)
        page.wait_for_selector("body[data-ready=true]")
        return page, requests

    yield open_
    for context in contexts:
        context.close()
