"""GET /healthz on both sites: whether this process can serve (node.runtime.Node.health).

    200 {"status": "ok", "checks": {...}, "sequencer": true|false, "epoch": N}
    503 {"status": "unavailable", "checks": {"database": false, ...}, ...}   Retry-After: 1

For load balancers and monitoring: it says nothing about anyone (no case, no address,
no peer), so it needs no token and no signed read, and is never cached. Several
`serve` processes on one PostgreSQL database sit behind one nginx
(deploy/nginx/ncii-node-multi.conf); only one of them sequences (`"sequencer"`), every
one that says ok answers reads, appends, cases and matches.
"""

from __future__ import annotations

from aiohttp import web

from node.web.context import NODE


def setup(app: web.Application, node) -> None:
    app.router.add_get("/healthz", get_health)


setup_admin = setup


async def get_health(request: web.Request) -> web.Response:
    ok, report = await request.app[NODE].health()
    headers = {"Cache-Control": "no-store"}
    if not ok:
        headers["Retry-After"] = "1"
    return web.json_response(report, status=200 if ok else 503, headers=headers)
