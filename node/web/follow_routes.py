"""The follower and the gossip inside `serve`, and GET /status.

`setup(app)` registers GET /status on the public site and two cleanup_ctx resources
that run, for as long as the node serves, the FollowService (node/follow/scheduler.py:
one apscheduler job per followed log) and the GossipService (node/follow/gossip.py:
one job per peer whose view is compared with ours; none without peers). Both write
fork evidence files into DIR/evidence. Other route modules that want to hear
about applied entries (the matcher) call `add_follow_listener(app, listener)` (a
node.follow.listener.FollowListener) in their own `setup`, whatever their module's
name; the listeners are read when the node starts. The running FollowService is
`app[FOLLOW_SERVICE]["service"]` once the node has started. The admin site's
POST /admin/follow/reload (admin token) makes both re-read their lists at once.

/status holds no personal data (origins, sizes, counts, error messages about peers),
but it does say whom a node follows: registered readers only on the public site.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from node.web.app import NODE, READ_PROTECTED

log = logging.getLogger(__name__)

FOLLOW_LISTENERS = web.AppKey("follow_listeners", list)
FOLLOW_SERVICE = web.AppKey("follow_service", dict)
GOSSIP_SERVICE = web.AppKey("gossip_service", dict)


def add_follow_listener(app: web.Application, listener) -> None:
    app.setdefault(FOLLOW_LISTENERS, []).append(listener)


def setup(app: web.Application) -> None:
    app.setdefault(FOLLOW_LISTENERS, [])
    app[FOLLOW_SERVICE] = {}
    app[GOSSIP_SERVICE] = {}
    app.router.add_get("/status", get_status)
    # Which logs a node follows, and their errors, are an operator's business: on the
    # public site /status is for registered readers (signed requests) unless the node
    # is public_read; the admin site (loopback) answers it to the operator.
    app[READ_PROTECTED].append("/status")
    app.cleanup_ctx.append(_follow_service)
    app.cleanup_ctx.append(_gossip_service)


def setup_admin(admin: web.Application) -> None:
    admin.router.add_get("/status", get_status)
    admin.router.add_post("/admin/follow/reload", post_follow_reload)


async def post_follow_reload(request: web.Request) -> web.Response:
    """Re-read the followed logs and gossip peers now (`ncii-node follow add/remove`
    call it, so a new log is verified within a round trip, not at the next 5 s reload)."""
    from node.web.bearer import unauthorized
    from node.web.log_routes import ADMIN_TOKEN_NEEDED, has_admin_token

    if not has_admin_token(request):
        return unauthorized(ADMIN_TOKEN_NEEDED)
    services = request.app[NODE].services
    follow, gossip = services.get("follow"), services.get("gossip")
    if follow is None or gossip is None:
        return web.json_response({"error": "the node is starting or stopping; try again"}, status=503)
    following = await follow.reload()
    await gossip.reload()
    return web.json_response({"following": following})


async def _follow_service(app: web.Application):
    from node.follow.listener import Listeners
    from node.follow.scheduler import FollowService
    from node.readaccess import RequestSigner

    ctx = app[NODE]
    key = ctx.datadir.load_request_signer()
    service = FollowService(ctx.datadir.db_path, signer=RequestSigner.from_seed(key.name, key.seed),
                            listener=Listeners(app[FOLLOW_LISTENERS]), own_origin=ctx.config.node.origin,
                            evidence_dir=_evidence_dir(ctx))
    await service.start()
    app[FOLLOW_SERVICE]["service"] = ctx.services["follow"] = service
    try:
        yield
    finally:
        app[FOLLOW_SERVICE].pop("service", None)
        ctx.services.pop("follow", None)
        await service.stop()


def _evidence_dir(ctx):
    from node.follow.forks import EVIDENCE_DIR

    return ctx.datadir.root / EVIDENCE_DIR


async def _gossip_service(app: web.Application):
    from node.follow.gossip import GossipService
    from node.readaccess import RequestSigner

    ctx = app[NODE]
    key = ctx.datadir.load_request_signer()
    service = GossipService(ctx.datadir.db_path, signer=RequestSigner.from_seed(key.name, key.seed),
                            evidence_dir=_evidence_dir(ctx))
    await service.start()
    app[GOSSIP_SERVICE]["service"] = ctx.services["gossip"] = service
    try:
        yield
    finally:
        app[GOSSIP_SERVICE].pop("service", None)
        ctx.services.pop("gossip", None)
        await service.stop()


def _report(db_path, own_origin: str) -> dict:
    from node.follow.status import status_report
    from node.store import connect

    db = connect(db_path)
    try:
        return status_report(db, own_origin=own_origin)
    finally:
        db.close()


async def get_status(request: web.Request) -> web.Response:
    ctx = request.app[NODE]
    report = await asyncio.to_thread(_report, ctx.datadir.db_path, ctx.config.node.origin)
    return web.json_response(report, headers={"Cache-Control": "no-store"})
