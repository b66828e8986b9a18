"""The reader routes (the paths a node serves only to registered readers: app[READ_PROTECTED]
unless the node is public_read, and app[READERS_ONLY] always) against spec/openapi.yaml:
each is documented, documents the refusals read access gives (401, 503 when the replay
cache is full) and never a 403 (readaccess.md: no read access answer is ever 403), and
a live node answers a request signed by a key it does not know with exactly that 401:
the same status and text as a bad signature, on every reader route."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
import yaml

from node.web.context import READ_PROTECTED, READERS_ONLY
from publish_support import append, make_datadir
from test_push import pdq_line, reader

SPEC = Path(__file__).resolve().parents[1] / "spec" / "openapi.yaml"
#: A request for each documented reader route that a registered reader gets a 200 for.
EXAMPLES = {"/tile/{path}": "/tile/0/000.p/{size}", "/push/checkpoint": "/push/checkpoint?wait=1",
            "/push/stream": "/push/stream?wait=1"}
UNREGISTERED = "not a registered reader"


def public_get_operations() -> dict[str, dict]:
    """Documented GET operations of the public site, by path."""
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    return {path: item["get"] for path, item in paths.items()
            if "get" in item and not path.startswith(("/admin/", "/v1/match", "/metrics", "/console"))}


def reader_paths(app, public_read: bool) -> tuple[tuple[str, ...], dict[str, dict]]:
    """(the prefixes the node protects, the documented operations under them)."""
    prefixes = tuple(([] if public_read else app[READ_PROTECTED]) + app[READERS_ONLY])
    operations = {path: op for path, op in public_get_operations().items() if path.startswith(prefixes)}
    for prefix in prefixes:
        assert any(path.startswith(prefix) for path in operations), f"{prefix} is protected but not documented"
    return prefixes, operations


def test_every_reader_route_documents_the_read_access_refusals():
    for path, operation in public_get_operations().items():
        responses = operation["responses"]
        assert "403" not in responses, f"{path} documents a 403, which read access never sends"
        if "signedRequest" in str(operation.get("security", "")) or re.search(r"registered reader",
                                                                               str(responses.get("401", ""))):
            assert UNREGISTERED in responses["401"]["description"], path
            assert "replay cache" in responses["503"]["description"], path


@pytest.mark.parametrize("public_read", [False, True], ids=["restricted", "public_read"])
async def test_an_unknown_key_gets_the_documented_401_on_every_reader_route(tmp_path, start_node, public_read):
    helpline = make_datadir(tmp_path, name="helpline", origin="helpline.example/log", public_read=public_read)
    registered = reader(tmp_path, helpline, "registered")
    stranger = reader(tmp_path, helpline, "stranger", register=False)
    node = await start_node(helpline)
    prefixes, operations = reader_paths(node.app, public_read)
    assert set(operations) >= {"/push/checkpoint", "/push/stream"}
    if not public_read:
        assert set(operations) == {"/tile/{path}", "/status", "/witness/seen", "/witness/evidence",
                                   "/push/checkpoint", "/push/stream"}
    async with aiohttp.ClientSession() as session:
        assert (await append(session, node.admin_url, helpline.admin_token(), [pdq_line(0), pdq_line(1)]))[0] == 200

        async def get(path: str, signer) -> tuple[int, str, str | None]:
            url = node.public_url + path
            headers = signer.sign_headers("GET", url) if signer is not None else {}
            async with session.get(url, headers=headers) as r:
                return r.status, (await r.read()).decode(errors="replace"), r.headers.get("WWW-Authenticate")

        async with session.get(node.public_url + "/checkpoint") as r:
            size = int((await r.read()).split(b"\n")[1])
        for path, operation in public_get_operations().items():
            target = EXAMPLES.get(path, path).replace("{size}", str(size))
            if "{" in target:
                continue  # a public route with parameters (the web page's files, federation, witness)
            status, text, challenge = await get(target, stranger)
            if path in operations:
                assert status == 401 and UNREGISTERED in text and challenge, (path, status, text)
                assert str(status) in operation["responses"], (path, status, "undocumented")
                assert (await get(target, None))[0] == 401, path             # unsigned: the documented 401 too
                assert (await get(target, registered))[0] == 200, path       # and it is a live route
            else:
                assert status != 401, (path, status)                        # nobody's signature is asked for here
        # Public_read: what READ_PROTECTED covers is served to anyone, signed or not.
        if public_read:
            assert (await get(f"/tile/0/000.p/{size}", stranger))[0] == 200
