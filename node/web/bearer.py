"""Who may use the admin site: the bearer tokens of the data directory.

Two tokens, two powers (spec/parts/publishing.md, "The data directory"):

- the **admin token** (DIR/admin.token) allows everything on the admin site:
  appending to the log, publishing feedback, suppressions and thresholds, matching;
- the **match token** (DIR/match.token, platform nodes only) allows matching and
  nothing else (POST /v1/match, POST /v1/match/media, GET /v1/match/status): the
  platform's upload service holds it, and cannot write to the log with it.

`has_admin_token(request)` checks the first, `bearer_token_ok(request, *tokens)` any.
Tokens are compared in constant time; an empty token (none configured) matches
nothing.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from node.web.context import NODE

ADMIN_TOKEN_NEEDED = "missing or wrong admin token (Authorization: Bearer <token from the data directory>)"


def bearer_token_ok(request: web.Request, *accepted: str) -> bool:
    """Whether the request's `Authorization: Bearer <token>` is one of `accepted`."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    given_bytes = given.strip().encode()
    # Every token is compared, so the time taken does not say which one was close.
    results = [hmac.compare_digest(given_bytes, token.encode()) for token in accepted if token]
    return any(results)


def has_admin_token(request: web.Request) -> bool:
    """Whether the request carries the admin token (the match token is not enough)."""
    return bearer_token_ok(request, request.app[NODE].admin_token)


def unauthorized(message: str) -> web.Response:
    """401 with `{"error": message}`, before the body is read."""
    return web.json_response({"error": message}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="ncii-node admin"'})
