"""The federation membership list this node publishes (`ncii-node federation publish`,
node/federation/publish.py), as an append-only log (C2SP tlog-tiles) and as a plain
signed list:

    GET /federation/checkpoint               the list log's checkpoint (signed by the list keys)
    GET /federation/tile/<L>/<N>[.p/<W>]     its hash tiles (immutable)
    GET /federation/tile/entries/<N>[...]    its entry bundles: one version entry each
    GET /federation/version/<serial>         the signed list of each version
    GET /federation/list                     the newest signed list (ETag/304)

404 when it publishes none. Public: the list holds only what invitation bundles hold
(URLs, public keys, roles, names of organisations), and a follower verifies it with
the list keys it was given, whoever serves it. No tile beyond the published
checkpoint's size is served (node/web/log_routes.py `in_tree`)."""

from __future__ import annotations

import hashlib
import re

from aiohttp import web

from node.errors import NotFound
from node.federation import PUBLISHED_LIST
from node.federation.publish import VERSION_DIR, log_store
from node.web.context import NODE
from node.web.errors import json_error
from node.web.log_routes import IMMUTABLE, in_tree
from protocol.checkpoint import Checkpoint
from protocol.errors import TileError
from protocol.note import parse_note
from protocol.tiles import BundleId, parse_tile_path

_SERIAL = re.compile(r"0|[1-9][0-9]{0,17}")


def setup(app: web.Application, node) -> None:
    app.router.add_get("/federation/list", get_list)
    app.router.add_get("/federation/checkpoint", get_checkpoint)
    app.router.add_get("/federation/tile/{rest:.+}", get_tile)
    app.router.add_get("/federation/version/{serial}", get_version)


def _not_published() -> web.Response:
    return json_error(NotFound("this node publishes no federation list"))


def _text(request: web.Request, data: bytes, cache: str = "no-cache") -> web.Response:
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": cache}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="text/plain", charset="utf-8", headers=headers)


async def get_list(request: web.Request) -> web.Response:
    try:
        data = (request.app[NODE].datadir.root / PUBLISHED_LIST).read_bytes()
    except FileNotFoundError:
        return _not_published()
    return _text(request, data)


async def get_checkpoint(request: web.Request) -> web.Response:
    data = log_store(request.app[NODE].datadir.root).read("checkpoint")
    return _not_published() if data is None else _text(request, data)


async def get_version(request: web.Request) -> web.Response:
    serial = request.match_info["serial"]
    if not _SERIAL.fullmatch(serial):
        return json_error(NotFound("a version is named by its serial (decimal, no leading zero)"))
    data = log_store(request.app[NODE].datadir.root).read(f"{VERSION_DIR}/{serial}")
    if data is None:
        return json_error(NotFound(f"no version {serial} of the federation list is published here"))
    return _text(request, data)


async def get_tile(request: web.Request) -> web.Response:
    store = log_store(request.app[NODE].datadir.root)
    try:
        ident = parse_tile_path("tile/" + request.match_info["rest"])
    except TileError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n")
    note = store.read("checkpoint")
    if note is None:
        return _not_published()
    size = Checkpoint.parse(parse_note(note).text).size
    data = store.read(ident.path()) if in_tree(ident, size) else None
    if data is None:
        raise web.HTTPNotFound(text=f"no such tile in the list log at its published size {size}\n")
    response = web.Response(body=data, content_type="application/octet-stream",
                            headers={"Cache-Control": "public, " + IMMUTABLE})
    if isinstance(ident, BundleId):
        response.enable_compression()
    return response
