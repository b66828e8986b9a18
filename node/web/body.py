"""Reading request bodies and parsing JSON: the one way every route of the node does it.

    read_body(request, limit) -> bytes   the whole body (or an error, below)
    parse_json(raw, what=, hint=)         the JSON value, or BodyError(400)

Rules kept here (spec/parts/publishing.md §1.1):

- A declared Content-Length above `limit` (each route's own cap, sized for what it
  carries) is refused (BodyError 413) before a byte is read; a chunked body as soon
  as it passes `limit`.
- Bodies are read in **pools** (BodyPools, `app[BODY_GATE]`), chosen by route, so that
  the routes a person or a witness needs never wait behind everything else: on the
  public site `cases` (POST /v1/cases), `person` (status and withdrawal: 4 KiB bodies),
  `witness` (POST /add-checkpoint) and `other`; the admin site has one pool. A full
  pool answers 503 with Retry-After at once, without reading.
- A body that has arrived whole when its route starts reading needs no slot: slots
  are for bodies the node would have to wait for.
- **Per client**: in each pool one client address (an IPv6 /64) holds at most
  `[http] bodies_per_address` bodies being read, one network (IPv4 /24, IPv6 /56) at
  most `[http] bodies_per_network`; beyond, 429 with Retry-After at once. So a few
  slow connections fill only their own share. The client is the peer, or behind
  `[http] trusted_proxies` the X-Forwarded-For client (node/cases/proxies.py).
- **Minimum rate**: after the first GRACE seconds a body must have arrived at
  `[http] min_body_rate` bytes per second on average, and whole within `[http]
  body_timeout`; otherwise 408 and the connection is closed. A body sent a byte at a
  time, shorter than its Content-Length, or chunked without its last chunk never holds
  a slot for long.
- Nothing is returned before the body's end: a route never judges part of a body.

408, 429 and 503 are raised as aiohttp HTTP exceptions (`{"error": ...}`, `Connection:
close`): whatever the route, there is nothing to add to them, so they pass through
every route's own error handling. 413 and 400 are BodyError, which each route turns
into its own error shape.

JSON: `parse_json` refuses bytes that are not UTF-8, text that is not JSON, and JSON
nested deeper than Python's parser can take (RecursionError, which would otherwise be
a 500), each with a message saying which.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

READ_CHUNK = 65536
BUSY_RETRY_AFTER = 1  # seconds
#: Seconds a body may take before the minimum rate applies (a small body always fits).
GRACE = 2.0
#: Pools of the public site by route; any other route reads in "other".
ROUTE_POOLS = {
    "/v1/cases": "cases",
    "/v1/cases/status": "person",
    "/v1/cases/withdraw": "person",
    "/v1/cases/receipt": "person",
    "/add-checkpoint": "witness",
}
#: Pools whose routes carry small bodies (4 KiB: 4 MiB in all; 64 KiB: 16 MiB) are
#: wide, so that filling one takes hundreds of networks: (size, per address, per
#: network), None for [http] bodies_per_address/network. A witness is fed by logs and
#: by distributors that post for many logs from one address: a wider share each.
#: `cases` and `other` take [http] max_concurrent_bodies.
SMALL_POOLS = {"person": (1024, None, None), "witness": (256, 16, 32)}


class BodyError(Exception):
    """A body the route must refuse: `status` 413 (too large) or 400 (not JSON)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class BodyPool:
    """Bodies of one pool being read now, in all and per client key. The event loop
    is single-threaded, so plain counters are exact."""

    name: str
    max_concurrent: int
    per_address: int
    per_network: int
    active: int = 0
    by_client: dict = field(default_factory=dict)

    def refusal(self, keys: tuple) -> web.HTTPException | None:
        if self.active >= self.max_concurrent:
            return _closing(web.HTTPServiceUnavailable, "the node is busy reading other requests; try again in a "
                            "moment", **{"Retry-After": str(BUSY_RETRY_AFTER)})
        address, network = keys
        if address is not None and (self.by_client.get(address, 0) >= self.per_address
                                    or self.by_client.get(network, 0) >= self.per_network):
            return _closing(web.HTTPTooManyRequests, "too many requests at once from your connection; wait for "
                            "the others to finish, then try again", **{"Retry-After": str(BUSY_RETRY_AFTER)})
        return None

    def take(self, keys: tuple) -> None:
        self.active += 1
        for key in keys:
            if key is not None:
                self.by_client[key] = self.by_client.get(key, 0) + 1

    def give_back(self, keys: tuple) -> None:
        self.active -= 1
        for key in keys:
            if key is not None:
                left = self.by_client[key] - 1
                if left:
                    self.by_client[key] = left
                else:
                    del self.by_client[key]


@dataclass
class BodyPools:
    """The pools of one site, and how long and how fast a body must arrive."""

    pools: dict[str, BodyPool]
    timeout: float = 30.0
    min_rate: float = 4096.0
    clients: Any = None  # node.cases.proxies.ClientAddresses (None: no per-client count, e.g. admin)

    @classmethod
    def public(cls, http, clients) -> BodyPools:
        shapes = {"cases": (http.max_concurrent_bodies, None, None),
                  "other": (http.max_concurrent_bodies, None, None), **SMALL_POOLS}
        return cls({name: BodyPool(name, size, per_address or http.bodies_per_address,
                                   per_network or http.bodies_per_network)
                    for name, (size, per_address, per_network) in shapes.items()},
                   http.body_timeout, http.min_body_rate, clients)

    @classmethod
    def admin(cls, http, admin) -> BodyPools:
        """The admin site: loopback only, one pool, no per-client count."""
        size = admin.max_concurrent_bodies
        return cls({"other": BodyPool("admin", size, size, size)}, http.body_timeout, http.min_body_rate)

    def pool_for(self, request: web.Request) -> BodyPool:
        route = request.match_info.route.resource
        name = ROUTE_POOLS.get(route.canonical if route is not None else "", "other")
        return self.pools.get(name) or self.pools["other"]

    def client_keys(self, request: web.Request) -> tuple:
        if self.clients is None:
            return (None, None)
        from node.cases.proxies import client_networks

        address = self.clients.client(request.remote, request.headers.getall("X-Forwarded-For", []))
        return client_networks(address)


BODY_GATE = web.AppKey("body_gate", BodyPools)
_DEFAULT_GATE = BodyPools({"other": BodyPool("other", 8, 8, 8)})  # for an application built without one


def _closing(exc_class, message: str, **headers: str) -> web.HTTPException:
    exc = exc_class(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
    exc.force_close()  # the rest of the body, if any, is not read: the connection ends
    return exc


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes (see the module docstring)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyError(f"body of {declared} bytes exceeds the limit of {limit} bytes", status=413)
    if declared == 0 or not request.body_exists:
        return b""
    gate = request.app.get(BODY_GATE) or _DEFAULT_GATE
    if request.content.is_eof():  # all of it has arrived already: nothing to wait for, no slot
        return await _read_all(request, limit, gate.min_rate)
    pool, keys = gate.pool_for(request), gate.client_keys(request)
    refused = pool.refusal(keys)
    if refused is not None:
        raise refused
    pool.take(keys)
    try:
        async with asyncio.timeout(gate.timeout):
            return await _read_all(request, limit, gate.min_rate)
    except TimeoutError:
        raise _closing(web.HTTPRequestTimeout, f"the request body did not arrive whole within "
                                               f"{gate.timeout:g} seconds") from None
    finally:
        pool.give_back(keys)


async def _read_all(request: web.Request, limit: int, min_rate: float) -> bytes:
    loop = asyncio.get_running_loop()
    began = loop.time()
    chunks, total = [], 0
    while True:
        # The next bytes are due before the average falls below min_rate (after GRACE).
        due = began + GRACE + total / min_rate
        try:
            chunk = await asyncio.wait_for(request.content.read(READ_CHUNK), max(0.0, due - loop.time()))
        except TimeoutError:
            raise _closing(web.HTTPRequestTimeout, f"the request body arrived too slowly (less than "
                                                   f"{min_rate:g} bytes per second)") from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise BodyError(f"body exceeds the limit of {limit} bytes", status=413)
        chunks.append(chunk)


def parse_json(raw: bytes | str, *, what: str = "the body", hint: str | None = None) -> Any:
    """The JSON value of `raw`; BodyError(400) saying "<what>: <problem>[; <hint>]"."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        problem = "not valid UTF-8"
    else:
        try:
            return json.loads(text)
        except RecursionError:
            problem = "JSON nested too deeply to be read (a few hundred levels at most)"
        except ValueError as exc:
            problem = f"not valid JSON ({exc})"
    raise BodyError(f"{what}: {problem}" + (f"; {hint}" if hint else ""), status=400)
