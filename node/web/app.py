"""The node's aiohttp applications: the public site and the admin site.

    create_app(node)          the public application (/checkpoint, /tile/..., /node.json, ...)
    create_admin_app(node)    the admin application (POST /admin/append, ...), served on
                              its own socket, bound to loopback by default

`node` is a node.runtime.Node, built by the composition root; the public application
starts and stops it (its cleanup_ctx) and both reach it as `request.app[NODE]`. The
route modules are listed here, in the order they are set up, with the role that has
them: a module's `setup(app, node)` adds its routes (and may add path prefixes to
`app[READ_PROTECTED]`, the paths only registered readers may fetch, or to
`app[READERS_ONLY]`, those only registered readers may fetch even on a public_read
node). A module may append its own resources to `app.cleanup_ctx`: they start after
the node and stop before it. Routes translate
HTTP into calls of the node's parts, and refusals (node/errors.py) into answers
through one table (node/web/errors.py); node/web/server.py runs the sites.

Read access: unless `[http] public_read` is true, requests under `app[READ_PROTECTED]`
(by default "/tile/") go through the check of node/readaccess/ (RFC 9421 signed
requests by a registered reader, sent to one of this node's names: `own_names`), each
signature accepted once (the node's replay cache, node/replaycache.py); requests under
`app[READERS_ONLY]` (the push channel) always do.

Hardening (spec/parts/publishing.md §1.1): every route reads a request body through
node/web/body.py (a timeout and a minimum rate on the whole body, pools of bodies read
at once by route, with a share per client: `app[BODY_GATE]`); both sites run with
`server_settings(config)` (node/web/server.py); every answer says `Server: ncii-node`;
the admin site refuses a Host that is not loopback (DNS rebinding) unless `[admin]
allow_remote`; on the public site, a route only the admin site serves is answered
with a JSON 404 that says so (node/web/admin_only_routes.py).

Logging (node/web/server.py): the access log never records client addresses (who asks
a helpline for help is personal data), user agents, referrers or query strings: only
the method (a standard one, else "(other method)"), the path (for an error answer,
only the route's pattern, since a mistyped URL may hold a case number), status, size
and time (PrivateAccessLogger). aiohttp's own error message "Error handling request
from <address>" loses its address, and for a request its parser refused says only what
kind of fault it was, never the parser's message, which quotes the request
(_drop_client_address): nothing of a refused request's line, headers or body is logged.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging

from aiohttp import web
from aiohttp import web_response as aiohttp_web_response

from node import readaccess
from node.runtime import Node
from node.web import (
    admin_only_routes,
    case_routes,
    console_routes,
    federation_routes,
    feedback_routes,
    follow_routes,
    health_routes,
    log_routes,
    match_routes,
    metrics_routes,
    push_routes,
    static_routes,
    witness_routes,
)
from node.web.body import BODY_GATE, BodyPools
from node.web.context import NODE, READ_PROTECTED, READERS_ONLY, loggable_method, route_pattern

log = logging.getLogger(__name__)

def create_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[_common_headers])
    app[NODE] = node
    app[READ_PROTECTED] = ["/tile/"]
    app[READERS_ONLY] = []
    app[BODY_GATE] = BodyPools.public(node.config.http, node.clients)
    app.cleanup_ctx.append(_node_lifetime)
    admin_only_routes.setup(app, node)    # a JSON 404 for the admin site's routes
    if node.role == "helpline":
        case_routes.setup(app, node)      # POST /v1/cases..., and no image or video on any path
    federation_routes.setup(app, node)    # GET /federation/list (when this node publishes one)
    follow_routes.setup(app, node)        # GET /status
    health_routes.setup(app, node)        # GET /healthz (for load balancers)
    log_routes.setup(app, node)           # GET /checkpoint, /node.json, /tile/...
    metrics_routes.setup(app, node)       # every answer counted
    push_routes.setup(app, node)          # GET /push/checkpoint (unless [push] enabled = false)
    if node.role == "helpline":
        static_routes.setup(app, node)    # the victim web page, GET /helpline.json
    witness_routes.setup(app, node)       # POST /add-checkpoint, GET /witness/...
    protected = ([] if node.config.http.public_read else app[READ_PROTECTED]) + app[READERS_ONLY]
    if protected:
        app.middlewares.append(readaccess.read_access_middleware(
            lambda request: ReaderTable(request.app[NODE].db), protected_prefixes=tuple(protected),
            authorities=own_names, replay_cache=node.replay_cache))
    return app


def create_admin_app(node: Node) -> web.Application:
    admin = web.Application(middlewares=[_common_headers, _admin_guard])
    admin[NODE] = node
    admin[BODY_GATE] = BodyPools.admin(node.config.http, node.config.admin)  # its own: the operator is never crowded out
    if node.role == "helpline":
        case_routes.setup_admin(admin, node)   # POST /admin/cases/withdraw
    console_routes.setup_admin(admin, node)    # GET /console
    feedback_routes.setup_admin(admin, node)   # POST /v1/feedback
    follow_routes.setup_admin(admin, node)     # GET /status, POST /admin/follow/reload
    health_routes.setup_admin(admin, node)     # GET /healthz (for load balancers)
    log_routes.setup_admin(admin, node)        # POST /admin/append
    if node.role == "platform":
        match_routes.setup_admin(admin, node)  # POST /v1/match..., the suppressions and thresholds
    metrics_routes.setup_admin(admin, node)    # GET /metrics, every answer counted
    return admin


async def _node_lifetime(app: web.Application):
    """cleanup_ctx of the public site: the node starts before the sites listen and
    stops after they have closed (node/runtime.py says in which order its parts do)."""
    node = app[NODE]
    await node.start()
    try:
        yield
    finally:
        await node.stop()


class ReaderTable:
    """Reader lookup for node.readaccess: keyid (a request vkey) -> the vkey if it is
    registered in the readers table, else None. Read on every request, so
    `ncii-node readers add/remove` takes effect at once, even while serving."""

    def __init__(self, db):
        self.db = db

    def get(self, keyid: str):
        return keyid if self.db.readers.is_reader(keyid) else None


#: The Server header of every answer: which software and version answers is nobody's
#: business (aiohttp would say "Python/3.11 aiohttp/3.x.y").
SERVER_NAME = "ncii-node"
# Answers that aiohttp's HTTP parser makes itself, before any middleware runs (a
# malformed request line, headers too large), take their Server header from this
# module global; every other answer gets it from _common_headers below.
aiohttp_web_response.SERVER_SOFTWARE = SERVER_NAME

@web.middleware
async def _common_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        # A bug: logged here (without the client's address), answered plainly.
        log.exception("error handling %s %s", loggable_method(request), route_pattern(request))
        response = web.json_response({"error": "internal error (see the node's log)"}, status=500)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = SERVER_NAME
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def _admin_guard(request: web.Request, handler):
    """Second line of defence behind the loopback binding, unless the operator
    explicitly allowed remote admin access: refuse non-loopback peers (403), and
    requests whose Host is not a loopback address or localhost (421). The Host check
    stops DNS rebinding: a web page in the operator's browser whose name was made to
    resolve to 127.0.0.1 reaches the admin site from a loopback peer, but its
    requests carry the page's own host name."""
    if not request.app[NODE].config.admin.allow_remote:
        if not is_loopback(request.remote):
            return web.json_response({"error": "the admin endpoint accepts only local connections"}, status=403)
        if not is_loopback_host(request.headers.get("Host", "")):
            return web.json_response({"error": "the admin endpoint answers only requests addressed to a loopback "
                                      "address or localhost (Host header); set [admin] allow_remote = true to "
                                      "serve it under another name"}, status=421)
    return await handler(request)


def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine: `localhost` or a loopback address
    literal (`127.x.y.z`, `[::1]`), with or without a port."""
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket:
            return False
        try:
            loopback = ipaddress.IPv6Address(name).is_loopback
        except ValueError:
            return False
    else:
        name = host.split(":", 1)[0]
        port = host[len(name):]
        if name.lower() == "localhost":
            loopback = True
        else:
            try:
                loopback = ipaddress.IPv4Address(name).is_loopback
            except ValueError:
                return False
    if port and not (port.startswith(":") and port[1:].isdigit() and len(port) <= 6):
        return False
    return loopback


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def own_names(request: web.BaseRequest) -> frozenset[str]:
    """The names a signed read sent on this connection may carry (readaccess.md):
    [http] public_names, and the address the connection arrived on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    configured = request.app[NODE].public_names
    return configured | address_names(*sockname[:2]) if sockname else configured


@functools.lru_cache(maxsize=64)
def address_names(host: str, port: int) -> frozenset[str]:
    """An address as readers write it (`127.0.0.1:8080`, `[::1]:8080`), and for a
    loopback address also `localhost:PORT` and the other loopback literals."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return frozenset()
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    names = {readaccess.normalize_authority(f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}")}
    if ip.is_loopback or ip.is_unspecified:
        names |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    return frozenset(names)
