"""GET /federation/list: the federation membership list this node publishes
(`ncii-node federation publish`, node/cli/federation.py), byte for byte as signed;
404 when it publishes none. Public: the list holds only what invitation bundles
hold (URLs, public keys, roles, names of organisations), and a follower verifies it
with the list keys it was given, whoever serves it."""

from __future__ import annotations

import hashlib

from aiohttp import web

from node.federation import PUBLISHED_LIST
from node.errors import NotFound
from node.web.context import NODE
from node.web.errors import json_error


def setup(app: web.Application, node) -> None:
    app.router.add_get("/federation/list", get_list)


async def get_list(request: web.Request) -> web.Response:
    path = request.app[NODE].datadir.root / PUBLISHED_LIST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return json_error(NotFound("this node publishes no federation list"))
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="text/plain", charset="utf-8", headers=headers)
