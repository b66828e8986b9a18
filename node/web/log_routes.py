"""HTTP routes of the node's own log (C2SP tlog-tiles) and its admin append endpoint.

Public site:
    GET /checkpoint                  latest signed checkpoint (text/plain; cached 1 s at most)
    GET /tile/<L>/<N>[.p/<W>]        hash tiles   (application/octet-stream, immutable)
    GET /tile/entries/<N>[.p/<W>]    entry bundles (application/octet-stream, immutable, gzip if asked)
    GET /node.json                   who this node is: origin, keys, role, display name, contact,
                                     and what route modules add (the push channel, witnessing)
Admin site only:
    POST /admin/append               JSON lines in, one JSON line per entry out once published

A tile or bundle the storage cannot read (a PostgreSQL node whose database went away,
even half-way through an answer) is a 503 with Retry-After, nothing of it served.

Invariant kept here: no tile or bundle is served beyond the size of the latest
published checkpoint (see node/log/sequencer.py for why that, with the order of
writes, means a served file never changes). Request paths are parsed strictly by
protocol.tiles.parse_tile_path and the file name is rebuilt from the parsed value, so
no request can name a file outside the tiles directory.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from node.errors import Refused, TooLarge
from node.log.append import parse_append_lines
from node.logsummary import PeriodicSummary
from node.store.tiles import TileReadError
from node.web.bearer import ADMIN_TOKEN_NEEDED, has_admin_token, unauthorized
from node.web.body import read_body
from node.web.context import NODE
from node.web.errors import json_error
from protocol.errors import TileError
from protocol.tiles import BundleId, parse_tile_path, tile_for_size

log = logging.getLogger(__name__)

IMMUTABLE = "max-age=31536000, immutable"
NDJSON = "application/x-ndjson"
#: Tile reads the storage failed (the database went away): one WARNING line a minute at most.
_READ_FAILURES = PeriodicSummary(60.0)


def setup(app: web.Application, node) -> None:
    app.router.add_get("/checkpoint", get_checkpoint)
    app.router.add_get("/node.json", get_node_json)
    app.router.add_get("/tile/{rest:.+}", get_tile)


def setup_admin(admin: web.Application, node) -> None:
    admin.router.add_post("/admin/append", post_append)


# ------------------------------------------------------------------------- public

def _published(node):
    """The checkpoint served; 503 while a process of a PostgreSQL node has not read one
    yet (the sequencing process publishes the first at its start)."""
    published = node.sequencer.published
    if published is None:
        raise web.HTTPServiceUnavailable(text="no checkpoint yet: the log is starting\n", headers={"Retry-After": "1"})
    return published


async def get_checkpoint(request: web.Request) -> web.Response:
    published = _published(request.app[NODE])
    return web.Response(body=published.note, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=1"})


async def get_node_json(request: web.Request) -> web.Response:
    document = await request.app[NODE].node_json()
    return web.json_response(document, headers={"Cache-Control": "public, max-age=60"})


def in_tree(ident, size: int) -> bool:
    """Whether a tile or bundle may be served for a log of `size`. A bundle has the
    shape of the level-0 tile with its index. An older, narrower partial tile stays
    servable: its bytes are a prefix of the wider one's."""
    level = 0 if isinstance(ident, BundleId) else ident.level
    tile = tile_for_size(level, ident.index, size)
    return tile is not None and ident.width <= tile.width


async def get_tile(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    try:
        ident = parse_tile_path(request.path)
    except TileError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n")
    published = _published(node)
    if not in_tree(ident, published.size):
        raise web.HTTPNotFound(text=f"no such tile in the log at its published size {published.size}\n")
    try:
        data = await node.sequencer.tiles.read_published(ident, published.size)
    except TileReadError as exc:
        if due := _READ_FAILURES.add(failed=1):
            totals, _, seconds = due
            log.warning("tile reads failing (%d in %.0f s): %s", totals["failed"], seconds, exc)
        raise web.HTTPServiceUnavailable(text="the log's storage cannot be read right now; try again in a moment\n",
                                         headers={"Retry-After": "1"}) from None
    if data is None:
        # A partial tile of a size the log never published a checkpoint for.
        raise web.HTTPNotFound(text="no such tile\n")
    cache = ("public, " if node.config.http.public_read else "private, ") + IMMUTABLE
    response = web.Response(body=data, content_type="application/octet-stream",
                            headers={"Cache-Control": cache})
    if isinstance(ident, BundleId):
        response.enable_compression()  # negotiated with Accept-Encoding (C2SP: SHOULD compress)
    return response


# ------------------------------------------------------------------------- admin

async def post_append(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if not has_admin_token(request):
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        try:
            body = await read_body(request, node.config.admin.max_body_bytes)
        except TooLarge as exc:
            raise TooLarge(f"{exc}; send fewer lines per request") from None
        appended = await node.sequencer.append(parse_append_lines(body, node.sequencer.published.size))
    except Refused as exc:
        return json_error(exc)
    lines = "".join(
        json.dumps({"index": a.index, "leaf_hash": a.leaf_hash.hex(), "checkpoint_size": a.checkpoint_size})
        + "\n" for a in appended)
    return web.Response(text=lines, content_type=NDJSON)
