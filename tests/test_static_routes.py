"""The helpline node serves the victim page itself; a platform node does not."""

from __future__ import annotations

import pytest

from node.web.app import NODE, create_app
from node.web.static_routes import STATIC


@pytest.fixture
def make_datadir(tmp_path):
    from node.cli import main as cli_main
    from node.datadir import DataDir

    def make(role: str) -> DataDir:
        root = tmp_path / role
        assert cli_main(["init", "--dir", str(root), "--origin", f"{role}.test/log", "--role", role]) == 0
        return DataDir(root)

    return make


async def test_helpline_serves_the_page_with_its_security_headers(aiohttp_client, make_datadir):
    client = await aiohttp_client(create_app(make_datadir("helpline")))
    index = await client.get("/")
    assert index.status == 200
    assert index.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in index.headers["Content-Security-Policy"]
    assert "Set-Cookie" not in index.headers
    assert await index.read() == (STATIC / "index.html").read_bytes()
    for name in ("app.js", "hash-worker.js", "pdq.js", "style.css", "i18n/fr.json", "i18n/en.json"):
        response = await client.get("/" + name)
        assert response.status == 200, name
        assert await response.read() == (STATIC / name).read_bytes()
    assert (await client.get("/app.js")).headers["Content-Type"].startswith("text/javascript")
    # Its own favicon, so that no browser logs an error for a missing one.
    assert (await client.get("/favicon.svg")).headers["Content-Type"] == "image/svg+xml"
    assert (await client.get("/favicon.ico")).headers["Content-Type"] == "image/x-icon"
    for lang in ("es", "de", "it", "pt", "ar"):
        assert (await client.get(f"/i18n/{lang}.json")).status == 200


@pytest.mark.parametrize("path", ["/../config.toml", "/%2e%2e/config.toml", "/i18n/../../app.py",
                                  "/static/app.js", "/nope.js", "/i18n/"])
async def test_nothing_outside_the_page_is_served(aiohttp_client, make_datadir, path):
    client = await aiohttp_client(create_app(make_datadir("helpline")))
    response = await client.get(path)
    assert response.status == 404


async def test_platform_does_not_serve_the_page(aiohttp_client, make_datadir):
    app = create_app(make_datadir("platform"))
    client = await aiohttp_client(app)
    assert app[NODE].config.node.role == "platform"
    assert (await client.get("/")).status == 404
    assert (await client.get("/app.js")).status == 404
