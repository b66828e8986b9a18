"""GET /status: the follower's health (node/follow/status.py), on both sites.

/status holds no personal data (origins, sizes, counts, error messages about peers),
but it does say whom a node follows: on the public site it is for registered readers
only (signed requests) unless the node is public_read; the admin site (loopback)
answers it to the operator. The follower and the gossip themselves are parts of the
node (node/runtime.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.follow.status import status_report
from node.store import connect
from node.web.context import NODE, READ_PROTECTED


def setup(app: web.Application, node) -> None:
    app.router.add_get("/status", get_status)
    app[READ_PROTECTED].append("/status")


def setup_admin(admin: web.Application, node) -> None:
    admin.router.add_get("/status", get_status)


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
