"""Reading request bodies: the one way every route of the node does it.

    read_body(request, limit) -> bytes   the whole body (or an error, below)

(JSON bodies are then parsed by node/jsontext.py.) Rules kept here
(spec/parts/publishing.md §1.1):

- A declared Content-Length above `limit` is refused (node.errors.TooLarge) before a
  byte is read; a chunked body as soon as it passes `limit`.
- Each site reads at most `[http] max_concurrent_bodies` bodies at once (BodyGate,
  `app[BODY_GATE]`). Beyond that a request is answered 503 with Retry-After at once and
  none of its body is read: a client holding many slow bodies open cannot make the node
  buffer them.
- The whole body must arrive within `[http] body_timeout` seconds, else 408 and the
  connection is closed. A body that is slow, shorter than its Content-Length, or chunked
  without its last chunk never holds a connection or a reading slot longer than that.
- Nothing is returned before the body's end: a route never judges part of a body.

408 and 503 are raised as aiohttp HTTP exceptions (`{"error": ...}`, `Connection:
close`): whatever the route, there is nothing to add to them, so they pass through
every route's own error handling. A body over the limit is TooLarge, which each route
words and answers as it answers other refusals.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from aiohttp import web

from node.errors import TooLarge

READ_CHUNK = 65536
BUSY_RETRY_AFTER = 1  # seconds


@dataclass
class BodyGate:
    """How many bodies one site reads at once, and how long one may take.
    One per site (the event loop is single-threaded, so a plain counter is exact)."""

    max_concurrent: int = 8
    timeout: float = 30.0
    active: int = 0

    @classmethod
    def from_config(cls, http) -> BodyGate:
        return cls(max_concurrent=http.max_concurrent_bodies, timeout=http.body_timeout)


BODY_GATE = web.AppKey("body_gate", BodyGate)
_DEFAULT_GATE = BodyGate()  # for an application built without one (none of the node's)


def _closing(exc_class, message: str, **headers: str) -> web.HTTPException:
    exc = exc_class(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
    exc.force_close()  # the rest of the body, if any, is not read: the connection ends
    return exc


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes (see the module docstring)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise TooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    if declared == 0 or not request.body_exists:
        return b""
    gate = request.app.get(BODY_GATE) or _DEFAULT_GATE
    if gate.active >= gate.max_concurrent:
        raise _closing(web.HTTPServiceUnavailable, "the node is busy reading other requests; try again in a moment",
                       **{"Retry-After": str(BUSY_RETRY_AFTER)})
    gate.active += 1
    try:
        async with asyncio.timeout(gate.timeout):
            return await _read_all(request, limit)
    except TimeoutError:
        raise _closing(web.HTTPRequestTimeout, f"the request body did not arrive whole within "
                                               f"{gate.timeout:g} seconds") from None
    finally:
        gate.active -= 1


async def _read_all(request: web.Request, limit: int) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = await request.content.read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
