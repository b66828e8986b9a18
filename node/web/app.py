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
only registered readers may fetch (`app[READERS_ONLY]`: even on a public_read node).

Resources (lock, database, sequencer) are opened in `cleanup_ctx` and reached through
`request.app[NODE]`, a NodeContext. The admin app shares the same context object.

Read access: unless `[http] public_read` is true, requests under `app[READ_PROTECTED]`
(by default "/tile/") go through the check of node/readaccess.py (RFC 9421 signed
requests by a registered reader); requests under `app[READERS_ONLY]` always do. If that module cannot be imported, those paths are
refused outright: the node fails closed, never open.

Hardening (spec/parts/publishing.md §1.1): every route reads a request body through
node/web/body.py (a timeout and a minimum rate on the whole body, pools of bodies read
at once by route, with a share per client: `app[BODY_GATE]`); both sites run with `server_settings(config)` (the keep-alive timer
closes a connection whose request head does not arrive, header size limits); every
answer says `Server: ncii-node`; the admin site refuses a Host that is not loopback
(DNS rebinding) unless `[admin] allow_remote`.

Logging: the access log never records client addresses (who asks a helpline for help
is personal data), user agents, referrers or query strings: only the method (a
standard one, else "(other method)"), the path (for an error answer, only the route's
pattern, since a mistyped URL may hold a case number), status, size and time
(PrivateAccessLogger). aiohttp's own error message "Error handling request from
<address>" loses its address, and for a request its parser refused says only what
kind of fault it was, never the parser's message, which quotes the request
(_drop_client_address): nothing of a refused request's line, headers or body is logged.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import ipaddress
import logging
import os
import pkgutil
import signal
import time
from types import ModuleType

from aiohttp import web
from aiohttp import web_response as aiohttp_web_response
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from node.datadir import DataDir
from node.metrics import NodeMetrics
from node.web.body import BODY_GATE, BodyPools

log = logging.getLogger(__name__)

class PrivateAccessLogger(AbstractAccessLogger):
    """'"GET /checkpoint" 200 123 0.001s': no address, user agent, referrer or query.

    Successful reads (GET/HEAD below 400) go at DEBUG: every follower polls
    /checkpoint each second and fetches tiles, which at INFO would bury what an
    operator needs to see. Writes and every error stay at INFO."""

    def log(self, request, response, time):
        path = _route_pattern(request) if response.status >= 400 else request.path
        quiet = request.method in ("GET", "HEAD") and response.status < 400
        self.logger.log(logging.DEBUG if quiet else logging.INFO, '"%s %s" %s %s %.3fs', loggable_method(request),
                        path, response.status, response.body_length, time)


class _DropClientAddress(logging.Filter):
    """aiohttp's "Error handling request from <address>": the address goes (who talks
    to a helpline is personal data). When the request was malformed (the client's
    fault; anyone can send them) or the client went away while sending it, one line
    says what kind of fault it was, in words of our own: never the parser's message,
    which quotes the refused request line or header (`GET /?case_number=...&pin=...
    &x=<9000 bytes>`, an oversized User-Agent), and no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Error handling request from"):
            record.msg, record.args = "Error handling request", ()
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, HttpProcessingError):
                record.msg = f"refused a malformed request: {malformed_request_kind(exc)}"
            elif isinstance(exc, ConnectionResetError):
                record.msg = "a client went away before its request had arrived whole"
            else:
                return True
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.INFO, "INFO"
        return True


#: What an operator is told about a request aiohttp's parser refused, by the parser's
#: exception class (its own message is never logged: it may quote the request).
_MALFORMED_KINDS = {
    "LineTooLong": "a request line or header field longer than the limit",
    "BadHttpMethod": "an invalid method",
    "BadStatusLine": "an invalid request line",
    "InvalidURLError": "an invalid request target",
    "InvalidHeader": "an invalid header",
    "ContentLengthError": "a body that does not match its Content-Length",
    "TransferEncodingError": "an invalid chunked body",
    "ContentEncodingError": "a body in an unknown content encoding",
    "DecompressSizeError": "a compressed body too large once decompressed",
}


def malformed_request_kind(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in _MALFORMED_KINDS:
            return _MALFORMED_KINDS[cls.__name__]
    return "a request the HTTP parser could not read"


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
        self.metrics_token: str = ""  # allows GET /metrics only (node/web/metrics_routes.py)
        self.matcher = None       # node.matcher.service.Matcher, set by node/web/match_routes.py
        self.cases = None         # node.cases.service.CaseService (helpline), set by node/web/case_routes.py
        #: [http] public_names, normalized; with the address each connection arrived
        #: on (own_names), the names a signed read must be sent to.
        from node.readaccess import normalize_authority

        self.public_names = frozenset(normalize_authority(n) for n in self.config.http.public_names)
        #: Who a request comes from, for the limits that count per client (body pools,
        #: case creations, failed PINs): the peer, or X-Forwarded-For from trusted proxies.
        from node.cases.proxies import ClientAddresses

        self.clients = ClientAddresses(self.config.http.trusted_proxies)
        self.services: dict = {}  # running background services by name, for routes of both sites
        self.metrics = NodeMetrics()  # what this node measures in memory (node/metrics.py)
        self.reader = None        # a DatabaseWorker for the figures (node/web/metrics_routes.py)


NODE = web.AppKey("node", NodeContext)
READ_PROTECTED = web.AppKey("read_protected", list)
REPLAY_CACHE = web.AppKey("replay_cache", object)  # node.replaycache.ReplayCache
REPLAY_JOURNAL = "replay.journal"  # in the data directory
#: Paths for registered readers even on a public_read node: what they serve is public,
#: but each request holds resources that are bounded per reader (the push channel).
READERS_ONLY = web.AppKey("readers_only", list)
# Route modules may add sections to /node.json: async callables (app) -> {key: value}.
NODE_JSON_SECTIONS = web.AppKey("node_json_sections", list)


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
        ctx.metrics_token = datadir.metrics_token(create=True)
        if ctx.config.node.role == "platform":
            ctx.match_token = datadir.match_token(create=True)
        ctx.sequencer = Sequencer(datadir)
        await ctx.sequencer.start()
        if REPLAY_CACHE in app:
            from node.readaccess import MAX_CLOCK_SKEW

            log.info("read access: %s", app[REPLAY_CACHE].open_journal(datadir.root / REPLAY_JOURNAL, time.time(),
                                                                       MAX_CLOCK_SKEW))
    except BaseException:
        if ctx.db is not None:
            ctx.db.close()
        datadir.release_lock()
        raise
    try:
        yield
    finally:
        await ctx.sequencer.stop()
        if REPLAY_CACHE in app:
            app[REPLAY_CACHE].close()
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


def _read_access_middleware(app: web.Application, prefixes: tuple[str, ...]):
    from node.replaycache import ReplayCache

    app[REPLAY_CACHE] = ReplayCache()
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
                                             protected_prefixes=prefixes,
                                             authorities=own_names,
                                             replay_cache=app[REPLAY_CACHE])


#: The Server header of every answer: which software and version answers is nobody's
#: business (aiohttp would say "Python/3.11 aiohttp/3.x.y").
SERVER_NAME = "ncii-node"
# Answers that aiohttp's HTTP parser makes itself, before any middleware runs (a
# malformed request line, headers too large), take their Server header from this
# module global; every other answer gets it from _common_headers below.
aiohttp_web_response.SERVER_SOFTWARE = SERVER_NAME

#: Server settings of both sites (aiohttp's RequestHandler). aiohttp has no timeout on
#: reading a request head as such, but its keep-alive timer, started when a connection
#: opens and after each answer, closes a connection still waiting for a complete request
#: head: `keepalive_timeout` ([http] idle_timeout) is therefore the header timeout too.
#: `lingering_time`: after an answer to a request whose body was not read whole (401,
#: 408, 413, 503), the rest is read and dropped for at most this long, then the
#: connection is closed.
HEADER_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64}
LINGERING_TIME = 2.0


def server_settings(config) -> dict:
    return {"keepalive_timeout": config.http.idle_timeout, "lingering_time": LINGERING_TIME, **HEADER_LIMITS}


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
        log.exception("error handling %s %s", loggable_method(request), _route_pattern(request))
        response = web.json_response({"error": "internal error (see the node's log)"}, status=500)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = SERVER_NAME
    if isinstance(response, web.HTTPException):
        raise response
    return response


_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"))


def loggable_method(request: web.BaseRequest) -> str:
    """The method, if it is a standard one: any token is a valid method, and a client
    could send a case number or a PIN as one."""
    return request.method if request.method in _METHODS else "(other method)"


def _route_pattern(request: web.Request) -> str:
    try:
        match_info = request.match_info
    except AssertionError:  # a request aiohttp's parser refused never reached the router
        return "(no route)"
    route = match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "(no route)"


def create_app(datadir: DataDir) -> web.Application:
    ctx = NodeContext(datadir)
    app = web.Application(middlewares=[_common_headers])
    app[NODE] = ctx
    app[READ_PROTECTED] = ["/tile/"]
    app[BODY_GATE] = BodyPools.public(ctx.config.http, ctx.clients)
    app[READERS_ONLY] = []
    app[NODE_JSON_SECTIONS] = []
    app.cleanup_ctx.append(_node_resources)
    for module in route_modules():
        if hasattr(module, "setup"):
            module.setup(app)
    protected = [] if ctx.config.http.public_read else list(app[READ_PROTECTED])
    protected += app[READERS_ONLY]
    if protected:
        app.middlewares.append(_read_access_middleware(app, tuple(protected)))
    return app


def create_admin_app(public_app: web.Application) -> web.Application:
    ctx = public_app[NODE]
    admin = web.Application(middlewares=[_common_headers, _admin_guard])
    admin[NODE] = ctx
    admin[BODY_GATE] = BodyPools.admin(ctx.config.http, ctx.config.admin)  # its own: the operator is never crowded out
    for module in route_modules():
        if hasattr(module, "setup_admin"):
            module.setup_admin(admin)
    return admin


@web.middleware
async def _admin_guard(request: web.Request, handler):
    """Second line of defence behind the loopback binding, unless the operator
    explicitly allowed remote admin access: refuse non-loopback peers (403), and
    requests whose Host is not a loopback address or localhost (421). The Host check
    stops DNS rebinding: a web page in the operator's browser whose name was made to
    resolve to 127.0.0.1 reaches the admin site from a loopback peer, but its
    requests carry the page's own host name."""
    ctx = request.app[NODE]
    if not ctx.config.admin.allow_remote:
        if not _is_loopback(request.remote):
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


def _is_loopback(remote: str | None) -> bool:
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
    from node.readaccess import normalize_authority

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return frozenset()
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    names = {normalize_authority(f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}")}
    if ip.is_loopback or ip.is_unspecified:
        names |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    return frozenset(names)


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
        settings = server_settings(config)
        public = web.AppRunner(self.app, access_log_class=PrivateAccessLogger, handle_signals=False, **settings)
        await public.setup()  # runs cleanup_ctx: lock, database, sequencer (with crash recovery)
        self._runners.append(public)
        try:
            await web.TCPSite(public, host, port).start()
            self.public_url = _url(public.addresses[0])
            admin = web.AppRunner(self.admin_app, access_log_class=PrivateAccessLogger, handle_signals=False,
                                  **settings)
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
        if not config.http.public_read:
            names = sorted(self.context.public_names | address_names(*public.addresses[0][:2]))
            log.info("signed reads are accepted only when sent to: %s ([http] public_names, and the address a "
                     "connection arrives on)", ", ".join(names))
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

