"""Reading request bodies and parsing JSON: the one way every route of the node does it.

    read_body(request, limit) -> bytes   the whole body (or an error, below)
    parse_json(raw, what=, hint=)         the JSON value, or BodyError(400)

Rules kept here (spec/parts/publishing.md §1.1):

- A declared Content-Length above `limit` is refused (BodyError 413) before a byte is
  read; a chunked body as soon as it passes `limit`.
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
every route's own error handling. 413 and 400 are BodyError, which each route turns
into its own error shape.

JSON: `parse_json` refuses bytes that are not UTF-8, text that is not JSON, and JSON
nested deeper than Python's parser can take (RecursionError, which would otherwise be
a 500), each with a message saying which.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

READ_CHUNK = 65536
BUSY_RETRY_AFTER = 1  # seconds


class BodyError(Exception):
    """A body the route must refuse: `status` 413 (too large) or 400 (not JSON)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


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
        raise BodyError(f"body of {declared} bytes exceeds the limit of {limit} bytes", status=413)
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
