"""The match API of a platform node (admin site; spec/parts/matching-api.md).

    POST /v1/match              a fingerprint, or a batch of up to 1,000 -> the matches of each
    POST /v1/match/media        an image or video (the platform's own upload), hashed here -> the same
                                (?dihedral=true: a photo also rotated and flipped)
    GET  /v1/match/status       is the index built; how many fingerprints of how many logs
    POST /v1/match/suppress     {"origin", "index", "feedback": true} -> never match that entry again
    POST /v1/match/threshold    {"origin", "threshold": 0..256 | null} -> that log's PDQ distance
    POST /v1/match/budget       {"origin", "max_fingerprints"?, "max_per_hour"?, "max_per_day"?} -> that
                                log's budgets (null = the [match] default)
    POST /v1/match/release      {"cluster": id} -> a held cluster goes in the index

Every route needs `Authorization: Bearer <token>` (node/web/bearer.py). Matching
(POST /v1/match, /v1/match/media, GET /v1/match/status) takes the match token
(DIR/match.token, for the platform's upload service) or the admin token; suppress and
threshold change what matches, and suppress publishes feedback, so they take the admin
token only (DIR/admin.token, the token of POST /admin/append and /v1/feedback); so do
budget and release, which change what is held out of the index. The
routes live on the admin site, which listens on
loopback unless `[admin] allow_remote`: the index says which images people asked to
be protected, so it is never offered on the public site. Bodies are bounded before
they are read whole (node.matcher.api.MatchSettings: [admin] max_body_bytes for JSON,
256 MiB for media); larger ones get 413.

Only nodes with `[node] role = "platform"` have a matcher and these routes. What each
route does, without HTTP, is node/matcher/api.py (and node/matcher/suppress.py); the
matcher itself is a part of the node (node/runtime.py), built from the database at
start, meanwhile the routes answer 503 with Retry-After; the node also lets in,
every minute, the fingerprints held by the hourly and daily budgets that the
budgets now allow (node/matcher/holds.py).
"""

from __future__ import annotations

import logging

from aiohttp import web

from node.errors import BadRequest, Refused, TooLarge
from node.jsontext import parse_json
from node.matcher.api import (
    BUDGET_HINT,
    RELEASE_HINT,
    MatchSettings,
    match_and_describe,
    match_answer,
    media_answer,
    merge_variants,
    parse_match_body,
    release_cluster,
    set_budget,
    set_threshold,
    upload_fingerprints,
)
from node.matcher.service import MatcherLoading, Query
from node.web.bearer import bearer_token_ok, unauthorized
from node.web.body import read_body
from node.web.context import NODE
from node.web.errors import json_error

log = logging.getLogger(__name__)

MATCH_SETTINGS = web.AppKey("match_settings", MatchSettings)

MATCH_HINT = 'send a fingerprint {"signal": "pdq", "fingerprint": "<64 hex>"}, or {"fingerprints": [...]} for a batch'
SUPPRESS_HINT = 'send {"origin": "<log origin>", "index": <entry index>, "feedback": true}'
THRESHOLD_HINT = 'send {"origin": "<log origin>", "threshold": 0..256, or null for the default}'
LOADING = "the match index is being built from the database; try again in a moment"


def setup_admin(admin: web.Application, node) -> None:
    admin[MATCH_SETTINGS] = MatchSettings(json_limit=node.config.admin.max_body_bytes)
    admin.router.add_post("/v1/match", post_match)
    admin.router.add_post("/v1/match/media", post_match_media)
    admin.router.add_get("/v1/match/status", get_status)
    admin.router.add_post("/v1/match/suppress", post_suppress)
    admin.router.add_post("/v1/match/threshold", post_threshold)
    admin.router.add_post("/v1/match/budget", post_budget)
    admin.router.add_post("/v1/match/release", post_release)


# --------------------------------------------------------------------------- helpers

async def _read_body(request: web.Request, limit: int) -> bytes:
    try:
        return await read_body(request, limit)
    except TooLarge as exc:
        raise TooLarge(f"{exc}; send less per request") from None


async def _read_json(request: web.Request, limit: int, hint: str):
    return parse_json(await _read_body(request, limit), hint=hint)


def _matcher(request: web.Request):
    matcher = request.app[NODE].matcher
    if matcher is None or not matcher.ready:
        raise MatcherLoading(LOADING)
    return matcher


async def _match(request: web.Request, queries) -> list[tuple]:
    node = request.app[NODE]
    return await match_and_describe(_matcher(request), node.metrics, queries, request.app[MATCH_SETTINGS].max_matches)


def _guarded(*, match_token: bool):
    """Token check first (the admin token, and with `match_token` the match token
    too), then refusals answered through node/web/errors.py."""
    if match_token:
        refusal = ("missing or wrong token (Authorization: Bearer <token from the data directory's "
                   "match.token or admin.token>)")
    else:
        refusal = ("missing or wrong admin token (Authorization: Bearer <token from the data directory's "
                   "admin.token>; the match token only matches)")

    def decorate(handler):
        async def wrapped(request: web.Request) -> web.StreamResponse:
            node = request.app[NODE]
            accepted = (node.admin_token, node.match_token) if match_token else (node.admin_token,)
            if not bearer_token_ok(request, *accepted):
                return unauthorized(refusal)
            try:
                return await handler(request)
            except Refused as exc:  # MatcherLoading too: 503, Retry-After: 1
                return json_error(exc)
        wrapped.__name__ = handler.__name__
        wrapped.__doc__ = handler.__doc__
        return wrapped
    return decorate


# --------------------------------------------------------------------------- handlers

@_guarded(match_token=True)
async def post_match(request: web.Request) -> web.Response:
    """One fingerprint -> {"signal", "matches", "total"}; a batch -> {"results": [...]}."""
    settings = request.app[MATCH_SETTINGS]
    body = await _read_json(request, settings.json_limit, MATCH_HINT)
    queries, batch = parse_match_body(body, settings.max_batch)
    text = await match_answer(_matcher(request), request.app[NODE].metrics, queries, settings.max_matches, batch)
    return web.Response(text=text, content_type="application/json", headers={"Cache-Control": "no-store"})


@_guarded(match_token=True)
async def post_match_media(request: web.Request) -> web.Response:
    """The body is the file itself (any Content-Type); fingerprints are computed here.
    `?dihedral=true`: a photo is also matched rotated and flipped (8 PDQ queries,
    one result whose matches name the `variant` that matched, nearest kept)."""
    settings = request.app[MATCH_SETTINGS]
    dihedral = request.query.get("dihedral", "false").lower()
    if dihedral not in ("true", "false", "1", "0"):
        raise BadRequest("dihedral must be true or false")
    data = await _read_body(request, settings.media_limit)
    if not data:
        raise BadRequest("send the image or video file as the request body")
    fingerprints = await upload_fingerprints(data, dihedral in ("true", "1"))
    del data
    queries = [Query.from_json(fp) for fp in fingerprints]
    answers = await _match(request, queries)
    if fingerprints and "variant" in fingerprints[0]:
        answers, fingerprints, queries = merge_variants(answers, fingerprints), fingerprints[:1], queries[:1]
    return web.json_response(media_answer(fingerprints, queries, answers), headers={"Cache-Control": "no-store"})


@_guarded(match_token=True)
async def get_status(request: web.Request) -> web.Response:
    matcher = request.app[NODE].matcher
    return web.json_response(matcher.stats(), headers={"Cache-Control": "no-store"})


@_guarded(match_token=False)
async def post_suppress(request: web.Request) -> web.Response:
    """{"origin": O, "index": I, "feedback": true|false} -> the suppression's outcome."""
    body = await _read_json(request, 4096, SUPPRESS_HINT)
    if not isinstance(body, dict) or not {"origin", "index"} <= set(body) \
            or set(body) - {"origin", "index", "feedback"}:
        raise BadRequest(SUPPRESS_HINT)
    feedback = body.get("feedback", True)
    if not isinstance(feedback, bool):
        raise BadRequest("feedback must be true or false")
    outcome = await request.app[NODE].suppressor.suppress(body["origin"], body["index"], feedback)
    return web.json_response(outcome.to_json())


@_guarded(match_token=False)
async def post_threshold(request: web.Request) -> web.Response:
    """{"origin": O, "threshold": T|null} -> stored, and in force for the next search."""
    body = await _read_json(request, 4096, THRESHOLD_HINT)
    if not isinstance(body, dict) or set(body) != {"origin", "threshold"} or not isinstance(body["origin"], str) \
            or not body["origin"]:
        raise BadRequest(THRESHOLD_HINT)
    node = request.app[NODE]
    threshold = set_threshold(node.db, node.matcher, body["origin"], body["threshold"])
    return web.json_response({"origin": body["origin"], "threshold": threshold})


@_guarded(match_token=False)
async def post_budget(request: web.Request) -> web.Response:
    """{"origin": O, "max_fingerprints"?: N|null, "max_per_hour"?: N|null, "max_per_day"?: N|null}
    -> stored, in force at once; fingerprints the new budgets allow go in the index."""
    body = await _read_json(request, 4096, BUDGET_HINT)
    node = request.app[NODE]
    budget = await set_budget(node.db, node.matcher, body)
    return web.json_response({"origin": body["origin"], "max_fingerprints": budget.max_fingerprints,
                              "max_per_hour": budget.max_per_hour, "max_per_day": budget.max_per_day})


@_guarded(match_token=False)
async def post_release(request: web.Request) -> web.Response:
    """{"cluster": id} -> the held cluster's fingerprints go in the index (within budgets)."""
    body = await _read_json(request, 4096, RELEASE_HINT)
    return web.json_response(await release_cluster(_matcher(request), body))
