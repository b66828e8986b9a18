"""The node's aiohttp applications: the public site and the admin site.

    create_app(datadir)          the public application (/checkpoint, /tile/..., /node.json, ...)
    create_admin_app(public_app) the admin application (POST /admin/append, ...), served
                                 on its own socket, bound to loopback by default
    serve(datadir, host, port)   run both until SIGINT/SIGTERM (what `ncii-node serve` does)

Adding routes: create `node/web/<area>_routes.py` with `setup(app)` (public routes)
and/or `setup_admin(admin_app)` (admin routes). Modules named `*_routes` are
discovered here, like CLI commands; nothing central is edited. A `setup` may append
its own resources to `app.cleanup_ctx` (they start after the node's own: the database
and the sequencer) and may add path prefixes to `app[READ_PROTECTED]`, the paths that
only registered readers may fetch.

Resources (lock, database, sequencer) are opened in `cleanup_ctx` and reached through
`request.app[NODE]`, a NodeContext. The admin app shares the same context object.

Read access: unless `[http] public_read` is true, requests under `app[READ_PROTECTED]`
(by default "/tile/") go through the check of node/readaccess.py (RFC 9421 signed
requests by a registered reader). If that module cannot be imported, those paths are
refused outright: the node fails closed, never open.

Logging: the access log never records client addresses (who asks a helpline for help
is personal data), user agents, referrers or query strings: only the method, the path
(for an error answer, only the route's pattern, since a mistyped URL may hold a case
number), status, size and time (PrivateAccessLogger). aiohttp's own error message
"Error handling request from <address>" loses its address (_drop_client_address).
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import os
import pkgutil
import signal
from types import ModuleType

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from node.datadir import DataDir

log = logging.getLogger(__name__)

ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'  # kept for reference; PrivateAccessLogger is what runs


class PrivateAccessLogger(AbstractAccessLogger):
    """'"GET /checkpoint" 200 123 0.001s': no address, user agent, referrer or query."""

    def log(self, request, response, time):
        path = request.path
        if response.status >= 400:
            route = request.match_info.route
            resource = route.resource if route is not None else None
            path = resource.canonical if resource is not None else "(no route)"
        self.logger.info('"%s %s" %s %s %.3fs', request.method, path, response.status,
                         response.body_length, time)


class _DropClientAddress(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Error handling request from"):
            record.msg, record.args = "Error handling request", ()
        return True


_drop_client_address = _DropClientAddress()
logging.getLogger("aiohttp.server").addFilter(_drop_client_address)


class NodeContext:
    """Everything a request handler may need, opened once per process."""

    def __init__(self, datadir: DataDir):
        self.datadir = datadir
        self.config = datadir.config
        self.db = None            # sqlite_utils.Database for the event-loop thread
        self.sequencer = None     # node.log.sequencer.Sequencer
        self.log_vkey: str = ""
        self.request_vkey: str = ""
        self.admin_token: str = ""
        self.match_token: str = ""  # platform nodes: allows the match API only (node/web/bearer.py)
        self.matcher = None       # node.matcher.service.Matcher, set by node/web/match_routes.py


NODE = web.AppKey("node", NodeContext)
READ_PROTECTED = web.AppKey("read_protected", list)


def route_modules() -> list[ModuleType]:
    package = importlib.import_module("node.web")
    modules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_routes") and not info.name.startswith("_"):
            modules.append(importlib.import_module(f"node.web.{info.name}"))
    return modules


async def _node_resources(app: web.Application):
    """cleanup_ctx: take the writer lock, open the database, start the sequencer."""
    from node.log.sequencer import Sequencer
    from node.store import open_db

    ctx = app[NODE]
    datadir = ctx.datadir
    datadir.acquire_lock()
    try:
        ctx.db = open_db(datadir.db_path)
        ctx.log_vkey = datadir.load_log_signer().verifier_key()
        ctx.request_vkey = datadir.load_request_signer().verifier_key()
        ctx.admin_token = datadir.admin_token()
        if ctx.config.node.role == "platform":
            ctx.match_token = datadir.match_token(create=True)
        ctx.sequencer = Sequencer(datadir)
        await ctx.sequencer.start()
    except BaseException:
        if ctx.db is not None:
            ctx.db.close()
        datadir.release_lock()
        raise
    try:
        yield
    finally:
        await ctx.sequencer.stop()
        ctx.db.close()
        datadir.release_lock()


class ReaderTable:
    """Reader lookup for node.readaccess: keyid (a request vkey) -> the vkey if it is
    registered in the readers table, else None. Read on every request, so
    `ncii-node readers add/remove` takes effect at once, even while serving."""

    def __init__(self, db):
        self.db = db

    def get(self, keyid: str):
        row = self.db.execute("SELECT vkey FROM readers WHERE vkey = ?", (keyid,)).fetchone()
        return row[0] if row else None


def _read_access_middleware(app: web.Application):
    prefixes = tuple(app[READ_PROTECTED])
    try:
        from node import readaccess
    except ImportError as exc:  # fail closed
        log.error("read access checking is unavailable (%s): refusing every read of %s", exc, prefixes)

        @web.middleware
        async def refuse_reads(request, handler):
            if ("/" + request.path.lstrip("/")).startswith(prefixes):
                return web.Response(status=401, text="this log is readable only by registered readers\n")
            return await handler(request)

        return refuse_reads
    return readaccess.read_access_middleware(lambda request: ReaderTable(request.app[NODE].db),
                                             protected_prefixes=prefixes)


@web.middleware
async def _common_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if isinstance(response, web.HTTPException):
        raise response
    return response


def create_app(datadir: DataDir) -> web.Application:
    ctx = NodeContext(datadir)
    app = web.Application(middlewares=[_common_headers])
    app[NODE] = ctx
    app[READ_PROTECTED] = ["/tile/"]
    app.cleanup_ctx.append(_node_resources)
    for module in route_modules():
        if hasattr(module, "setup"):
            module.setup(app)
    if not ctx.config.http.public_read:
        app.middlewares.append(_read_access_middleware(app))
    return app


def create_admin_app(public_app: web.Application) -> web.Application:
    ctx = public_app[NODE]
    admin = web.Application(middlewares=[_common_headers, _admin_guard])
    admin[NODE] = ctx
    for module in route_modules():
        if hasattr(module, "setup_admin"):
            module.setup_admin(admin)
    return admin


@web.middleware
async def _admin_guard(request: web.Request, handler):
    """Second line of defence behind the loopback binding: refuse non-loopback peers
    unless the operator explicitly allowed remote admin access."""
    ctx = request.app[NODE]
    if not ctx.config.admin.allow_remote and not _is_loopback(request.remote):
        return web.json_response({"error": "the admin endpoint accepts only local connections"}, status=403)
    return await handler(request)


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _url(address) -> str:
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class RunningNode:
    """Both sites of a node, started; `public_url`, `admin_url`, `app` and `stop()`.
    Tests use this directly (port 0 picks free ports)."""

    def __init__(self, datadir: DataDir):
        self.datadir = datadir
        self.app = create_app(datadir)
        self.admin_app = create_admin_app(self.app)
        self._runners: list[web.AppRunner] = []
        self.public_url = ""
        self.admin_url = ""

    @property
    def context(self) -> NodeContext:
        return self.app[NODE]

    async def start(self, host: str | None = None, port: int | None = None) -> "RunningNode":
        config = self.datadir.config
        host = config.http.host if host is None else host
        port = config.http.port if port is None else port
        admin_host, admin_port = config.admin.host, config.admin.port
        if not config.admin.allow_remote and not _is_loopback(admin_host) and admin_host != "localhost":
            raise RuntimeError(f"[admin] host {admin_host!r} is not a loopback address; set [admin] "
                               "allow_remote = true to serve the admin endpoint beyond this machine")
        public = web.AppRunner(self.app, access_log_class=PrivateAccessLogger, handle_signals=False)
        await public.setup()  # runs cleanup_ctx: lock, database, sequencer (with crash recovery)
        self._runners.append(public)
        try:
            await web.TCPSite(public, host, port).start()
            self.public_url = _url(public.addresses[0])
            admin = web.AppRunner(self.admin_app, access_log_class=PrivateAccessLogger, handle_signals=False)
            await admin.setup()
            self._runners.append(admin)
            await web.TCPSite(admin, admin_host, admin_port).start()
            self.admin_url = _url(admin.addresses[0])
        except BaseException:
            await self.stop()
            raise
        self.datadir.write_serve_info({"pid": os.getpid(), "public_url": self.public_url,
                                       "admin_url": self.admin_url})
        log.info("serving log %s at %s (admin endpoint at %s)", config.node.origin,
                 self.public_url, self.admin_url)
        return self

    async def stop(self) -> None:
        self.datadir.remove_serve_info()
        while self._runners:
            await self._runners.pop().cleanup()


async def serve(datadir: DataDir, host: str | None = None, port: int | None = None) -> None:
    """Run the node until SIGINT or SIGTERM."""
    node = RunningNode(datadir)
    await node.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping: publishing pending entries first")
    finally:
        await node.stop()

