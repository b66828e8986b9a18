"""Domain refusals (node/errors.py) as HTTP answers: the one table, and the answer shape.

    STATUS[type]            the HTTP status of each kind of refusal
    status_of(exc)          the status of one refusal (its class or the nearest base in STATUS)
    json_error(exc, headers)    {"error": message, **details}, with Retry-After when it says to wait

Routes catch node.errors.Refused and answer with `json_error`; a route whose protocol
prescribes another body shape (plain text) still takes its status from `status_of`.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import (
    BadRequest,
    Failed,
    NotFound,
    ProofOfWorkRequired,
    Refused,
    TooLarge,
    TooManyRequests,
    Unavailable,
    Unprocessable,
    UnsupportedMedia,
    WrongCredentials,
)

STATUS: dict[type[Refused], int] = {
    BadRequest: 400,
    WrongCredentials: 401,
    NotFound: 404,
    TooLarge: 413,
    UnsupportedMedia: 415,
    Unprocessable: 422,
    ProofOfWorkRequired: 428,
    TooManyRequests: 429,
    Failed: 500,
    Unavailable: 503,
}


def status_of(exc: Refused) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def json_error(exc: Refused, headers: dict[str, str] | None = None) -> web.Response:
    headers = dict(headers or {})
    if exc.wait is not None:
        headers["Retry-After"] = str(exc.wait)
    return web.json_response({"error": exc.message, **exc.details}, status=status_of(exc), headers=headers)
