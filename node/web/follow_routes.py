"""GET /status: the follower's health (node/follow/status.py), on both sites; and on
the admin site POST /admin/follow/reload (admin token), which makes the follower and
the gossip re-read their lists at once (`ncii-node follow add/remove` call it).

/status holds no personal data (origins, sizes, counts, error messages about peers),
but it does say whom a node follows: on the public site it is for registered readers
only (signed requests) unless the node is public_read; the admin site (loopback)
answers it to the operator. The follower and the gossip themselves are parts of the
node (node/runtime.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.errors import Refused
from node.follow.status import status_report
from node.store import connect
from node.web.bearer import ADMIN_TOKEN_NEEDED, has_admin_token, unauthorized
from node.web.context import NODE, READ_PROTECTED
from node.web.errors import json_error


def setup(app: web.Application, node) -> None:
    app.router.add_get("/status", get_status)
    app[READ_PROTECTED].append("/status")


def setup_admin(admin: web.Application, node) -> None:
    admin.router.add_get("/status", get_status)
    admin.router.add_post("/admin/follow/reload", post_follow_reload)


async def post_follow_reload(request: web.Request) -> web.Response:
    """Re-read the followed logs and gossip peers now, so that a new log is verified
    within a round trip, not at the next 5 s reload. Answer {"following": [origins]}."""
    if not has_admin_token(request):
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        following = await request.app[NODE].reload_followed()
    except Refused as exc:
        return json_error(exc)
    return web.json_response({"following": following})


def _report(db_path, own_origin: str) -> dict:
    db = connect(db_path)
    try:
        return status_report(db, own_origin=own_origin)
    finally:
        db.close()


async def get_status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    report = await asyncio.to_thread(_report, node.datadir.db_path, node.origin)
    return web.json_response(report, headers={"Cache-Control": "no-store"})
