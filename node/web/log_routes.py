"""HTTP routes of the node's own log (C2SP tlog-tiles) and its admin append endpoint.

Public site:
    GET /checkpoint                  latest signed checkpoint (text/plain; cached 1 s at most)
    GET /tile/<L>/<N>[.p/<W>]        hash tiles   (application/octet-stream, immutable)
    GET /tile/entries/<N>[.p/<W>]    entry bundles (application/octet-stream, immutable, gzip if asked)
    GET /node.json                   who this node is: origin, keys, role, display name, contact,
                                     and what route modules add (the push channel, witnessing)
Admin site only:
    POST /admin/append               JSON lines in, one JSON line per entry out once published

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

from node.web.app import NODE, NODE_JSON_SECTIONS
from node.web.bearer import bearer_token_ok, unauthorized

log = logging.getLogger(__name__)

IMMUTABLE = "max-age=31536000, immutable"
NDJSON = "application/x-ndjson"


def setup(app: web.Application) -> None:
    app.router.add_get("/checkpoint", get_checkpoint)
    app.router.add_get("/node.json", get_node_json)
    app.router.add_get("/tile/{rest:.+}", get_tile)


def setup_admin(admin: web.Application) -> None:
    admin.router.add_post("/admin/append", post_append)


# ------------------------------------------------------------------------- public

async def get_checkpoint(request: web.Request) -> web.Response:
    published = request.app[NODE].sequencer.published
    return web.Response(body=published.note, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=1"})


async def get_node_json(request: web.Request) -> web.Response:
    ctx = request.app[NODE]
    config = ctx.config
    document = {
        "origin": config.node.origin,
        "role": config.node.role,
        "display_name": config.node.display_name,
        "contact": config.node.contact,
        "verifier_key": ctx.log_vkey,
        "request_key": ctx.request_vkey,
        "public_read": config.http.public_read,
    }
    for section in request.app[NODE_JSON_SECTIONS]:  # e.g. witnessing (node/web/witness_routes.py)
        document.update(await section(request.app))
    return web.json_response(document, headers={"Cache-Control": "public, max-age=60"})


async def get_tile(request: web.Request) -> web.StreamResponse:
    from protocol.errors import TileError
    from protocol.tiles import BundleId, parse_tile_path, tile_for_size

    ctx = request.app[NODE]
    try:
        ident = parse_tile_path(request.path)
    except TileError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n")
    published = ctx.sequencer.published
    # A bundle has the shape of the level-0 tile with its index. An older, narrower
    # partial tile stays servable: its bytes are a prefix of the wider one's.
    level = 0 if isinstance(ident, BundleId) else ident.level
    in_tree = tile_for_size(level, ident.index, published.size)
    if in_tree is None or ident.width > in_tree.width:
        raise web.HTTPNotFound(text=f"no such tile in the log at its published size {published.size}\n")
    try:
        with open(ctx.sequencer.tile_path(ident.path()), "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        # A partial tile of a size the log never published a checkpoint for.
        raise web.HTTPNotFound(text="no such tile\n")
    cache = ("public, " if ctx.config.http.public_read else "private, ") + IMMUTABLE
    response = web.Response(body=data, content_type="application/octet-stream",
                            headers={"Cache-Control": cache})
    if isinstance(ident, BundleId):
        response.enable_compression()  # negotiated with Accept-Encoding (C2SP: SHOULD compress)
    return response


# ------------------------------------------------------------------------- admin

class BadAppend(Exception):
    def __init__(self, message: str, line: int | None = None, status: int = 400):
        super().__init__(message)
        self.line = line
        self.status = status


def _error(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def has_admin_token(request: web.Request) -> bool:
    """Whether the request carries the admin token (the match token is not enough)."""
    return bearer_token_ok(request, request.app[NODE].admin_token)


ADMIN_TOKEN_NEEDED = "missing or wrong admin token (Authorization: Bearer <token from the data directory>)"


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body through node/web/body.py's read_body (timeout, cap on bodies
    read at once, 413 before reading a declared Content-Length over `limit`), with a
    413 raised as BadAppend."""
    from node.web.body import BodyError, read_body

    try:
        return await read_body(request, limit)
    except BodyError as exc:
        raise BadAppend(f"{exc}; send fewer lines per request", status=exc.status) from None


def parse_append_body(body: bytes, log_size: int) -> list[bytes]:
    """Validate every line (JSON view of an entry) and return the encoded entries.
    All or nothing: the first bad line raises BadAppend naming its line number."""
    from node.web.body import BodyError, parse_json
    from protocol.entries import Withdrawal, entry_and_bytes_from_json
    from protocol.errors import ProtocolError

    entries: list[bytes] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue  # blank lines (and the final newline) are allowed
        try:
            obj = parse_json(raw, what=f"line {number}")
        except BodyError as exc:
            raise BadAppend(str(exc), number) from None
        if not isinstance(obj, dict):
            raise BadAppend(f"line {number}: expected a JSON object like "
                            '{"kind": "submission", "signal": "pdq", "fingerprint": "<64 hex>"}', number)
        try:
            entry, data = entry_and_bytes_from_json(obj)  # refuses entries over MAX_ENTRY_SIZE too
        except ProtocolError as exc:
            raise BadAppend(f"line {number}: {exc}", number) from None
        if isinstance(entry, Withdrawal):
            beyond = [t for t in entry.targets if t >= log_size]
            if beyond:
                raise BadAppend(f"line {number}: withdrawal target {beyond[0]} is not a published entry "
                                f"of this log (it has {log_size} entries)", number)
        entries.append(data)
    if not entries:
        raise BadAppend("no entries in the body: send one JSON object per line")
    return entries


async def post_append(request: web.Request) -> web.Response:
    from node.log.sequencer import LogUnavailable

    ctx = request.app[NODE]
    if not has_admin_token(request):
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        body = await read_limited(request, ctx.config.admin.max_body_bytes)
        entries = parse_append_body(body, ctx.sequencer.published.size)
    except BadAppend as exc:
        extra = {"line": exc.line} if exc.line is not None else {}
        return _error(exc.status, str(exc), **extra)
    try:
        appended = await ctx.sequencer.append(entries)
    except LogUnavailable as exc:
        extra = {}
        if exc.stored_from is not None:
            extra = {"stored_from": exc.stored_from, "stored_to": exc.stored_to}
        return _error(503, str(exc), **extra)
    lines = "".join(
        json.dumps({"index": a.index, "leaf_hash": a.leaf_hash.hex(), "checkpoint_size": a.checkpoint_size})
        + "\n" for a in appended)
    return web.Response(text=lines, content_type=NDJSON)
