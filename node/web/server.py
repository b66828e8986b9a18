"""Running a node's two sites: what `ncii-node serve` does, and what tests start.

    RunningNode(datadir)         the node (node/runtime.py) and both its applications
    await running.start(host, port)   the node's parts, then the public site on host:port
                                 and the admin site on [admin] host:port (loopback);
                                 DIR/serve.json says where they listen
    await running.stop()         the sites close, then the node stops (idempotent)
    serve(datadir, host, port)   start, and stop on SIGINT/SIGTERM

Both sites run with `server_settings(config)` (header timeout through the keep-alive
timer, header size limits, lingering after an unread body: spec/parts/publishing.md
§1.1) and log through PrivateAccessLogger, which records no client address, user agent,
referrer or query string; aiohttp's own message about a request its parser refused,
or whose client went away mid-request, says only what kind of fault it was
(_drop_client_address).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from node.datadir import DataDir
from node.runtime import Node
from node.web.app import address_names, create_admin_app, create_app, is_loopback
from node.web.context import loggable_method, route_pattern

log = logging.getLogger(__name__)


class PrivateAccessLogger(AbstractAccessLogger):
    """'"GET /checkpoint" 200 123 0.001s': no address, user agent, referrer or query.

    Successful reads (GET/HEAD below 400) go at DEBUG: every follower polls
    /checkpoint each second and fetches tiles, which at INFO would bury what an
    operator needs to see. Writes and every error stay at INFO."""

    def log(self, request, response, time):
        path = route_pattern(request) if response.status >= 400 else request.path
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
    # shutdown_timeout: aiohttp's own default (60 s) equals systemd's TimeoutStopSec in
    # deploy/systemd, which would kill the node before its parts stop cleanly.
    return {"keepalive_timeout": config.http.idle_timeout, "lingering_time": LINGERING_TIME,
            "shutdown_timeout": config.http.stop_grace, **HEADER_LIMITS}



def _url(address) -> str:
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class RunningNode:
    """Both sites of a node, started; `node` (the node.runtime.Node), `public_url`,
    `admin_url` and `stop()`. Port 0 picks a free port."""

    def __init__(self, datadir: DataDir):
        self.datadir = datadir
        self.node = Node(datadir)
        self.app = create_app(self.node)
        self.admin_app = create_admin_app(self.node)
        self._runners: list[web.AppRunner] = []
        self.public_url = ""
        self.admin_url = ""
        self._announced = None  # DIR/serve.d file's descriptor and path (datadir.announce_serving)

    async def start(self, host: str | None = None, port: int | None = None) -> RunningNode:
        config = self.datadir.config
        host = config.http.host if host is None else host
        port = config.http.port if port is None else port
        admin_host, admin_port = config.admin.host, config.admin.port
        if not config.admin.allow_remote and not is_loopback(admin_host) and admin_host != "localhost":
            raise RuntimeError(f"[admin] host {admin_host!r} is not a loopback address; set [admin] "
                               "allow_remote = true to serve the admin endpoint beyond this machine")
        settings = server_settings(config)
        public = web.AppRunner(self.app, access_log_class=PrivateAccessLogger, handle_signals=False, **settings)
        await public.setup()  # starts the node (create_app's cleanup_ctx): lock, database, sequencer, ...
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
        self._announced = self.datadir.announce_serving({"pid": os.getpid(), "public_url": self.public_url,
                                                         "admin_url": self.admin_url})
        self.node.serving.set()  # the followed logs are read from now on (node/runtime.py)
        log.info("serving log %s at %s (admin endpoint at %s)", config.node.origin,
                 self.public_url, self.admin_url)
        if not config.http.public_read:
            names = sorted(self.node.public_names | address_names(*public.addresses[0][:2]))
            log.info("signed reads are accepted only when sent to: %s ([http] public_names, and the address a "
                     "connection arrives on)", ", ".join(names))
        return self

    async def stop(self) -> None:
        if not self._runners:
            return
        announced, self._announced = self._announced, None
        if announced is not None:
            self.datadir.withdraw_serving(announced)
        while self._runners:
            await self._runners.pop().cleanup()


async def serve(datadir: DataDir, host: str | None = None, port: int | None = None) -> None:
    """Run the node until SIGINT or SIGTERM."""
    running = RunningNode(datadir)
    await running.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping: publishing pending entries first")
    finally:
        await running.stop()
