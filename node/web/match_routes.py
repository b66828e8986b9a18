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
they are read whole (`MatchSettings`: [admin] max_body_bytes for JSON, 256 MiB for
media); larger ones get 413.

Only nodes with `[node] role = "platform"` have a matcher and these routes.

Resources: the Matcher is created in `setup` (so it hears the follower from its first
round, see node/web/follow_routes.add_follow_listener) and built from the database in
a worker thread by this module's cleanup_ctx; meanwhile the routes answer 503 with
Retry-After. Once built, feedback left pending by `ncii-node suppress` while the node
was down is published, and every minute the fingerprints held by the hourly and daily
budgets that the budgets now allow go in the index (node/matcher/holds.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.web.app import NODE

log = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_MATCHES = 100          # per query, nearest first; "total" says how many matched in all
MEDIA_LIMIT = 256 * 1024 * 1024
REVIEW_INTERVAL = 60.0     # seconds between looks at what the budgets now allow


@dataclass
class MatchSettings:
    json_limit: int
    media_limit: int = MEDIA_LIMIT
    max_batch: int = MAX_BATCH
    max_matches: int = MAX_MATCHES


MATCH_SETTINGS = web.AppKey("match_settings", MatchSettings)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, **extra):
        super().__init__(message)
        self.status = status
        self.extra = extra


# --------------------------------------------------------------------------- setup

def setup(app: web.Application) -> None:
    from node.matcher.service import Matcher
    from node.web.follow_routes import add_follow_listener

    from node.matcher.holds import Budget

    ctx = app[NODE]
    if ctx.config.node.role != "platform":
        return
    settings = ctx.config.match
    ctx.matcher = Matcher(pending_load=True,
                          budget=Budget(settings.max_fingerprints_per_log, settings.max_per_hour_per_log,
                                        settings.max_per_day_per_log),
                          cluster_size=settings.cluster_size, cluster_keep=settings.cluster_keep)
    add_follow_listener(app, ctx.matcher)
    app.cleanup_ctx.append(_matcher_resources)


def setup_admin(admin: web.Application) -> None:
    ctx = admin[NODE]
    if ctx.config.node.role != "platform":
        return
    admin[MATCH_SETTINGS] = MatchSettings(json_limit=ctx.config.admin.max_body_bytes)
    admin.router.add_post("/v1/match", post_match)
    admin.router.add_post("/v1/match/media", post_match_media)
    admin.router.add_get("/v1/match/status", get_status)
    admin.router.add_post("/v1/match/suppress", post_suppress)
    admin.router.add_post("/v1/match/threshold", post_threshold)
    admin.router.add_post("/v1/match/budget", post_budget)
    admin.router.add_post("/v1/match/release", post_release)


async def _matcher_resources(app: web.Application):
    ctx = app[NODE]
    matcher = ctx.matcher

    async def build():
        from node.matcher.suppress import publish_pending_feedback

        try:
            await asyncio.to_thread(matcher.load, ctx.datadir.db_path)
        except Exception:
            if not matcher.load_cancelled:
                log.exception("matcher: building the index failed; matching is unavailable")
            return
        published = await publish_pending_feedback(ctx)
        if published:
            log.info("matcher: published %d pending disputed-false-match feedback entries", published)
        while True:  # the hourly and daily budgets let held fingerprints in as time passes
            await asyncio.sleep(REVIEW_INTERVAL)
            try:
                await asyncio.to_thread(matcher.review_holds)
            except Exception:  # noqa: BLE001 -- logged; tried again in a minute
                log.exception("matcher: indexing fingerprints the budgets now allow failed")

    task = asyncio.create_task(build())
    try:
        yield
    finally:
        matcher.cancel_load()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        matcher.close()


# --------------------------------------------------------------------------- helpers

def _error(status: int, message: str, **extra) -> web.Response:
    headers = {"Retry-After": str(extra.pop("retry_after"))} if "retry_after" in extra else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes:
    from node.web.body import BodyError, read_body

    try:
        return await read_body(request, limit)
    except BodyError as exc:
        raise BadRequest(f"{exc}; send less per request", exc.status) from None


async def _read_json(request: web.Request, limit: int, hint: str) -> Any:
    from node.web.body import BodyError, parse_json

    raw = await _read_body(request, limit)
    try:
        return parse_json(raw, hint=hint)
    except BodyError as exc:
        raise BadRequest(str(exc), exc.status) from None


MATCH_HINT = 'send a fingerprint {"signal": "pdq", "fingerprint": "<64 hex>"}, or {"fingerprints": [...]} for a batch'
SUPPRESS_HINT = 'send {"origin": "<log origin>", "index": <entry index>, "feedback": true}'
THRESHOLD_HINT = 'send {"origin": "<log origin>", "threshold": 0..256, or null for the default}'
BUDGET_HINT = ('send {"origin": "<log origin>", "max_fingerprints": N, "max_per_hour": N, "max_per_day": N} '
               '(any of the three; null = the default)')
RELEASE_HINT = 'send {"cluster": <id of a held cluster, as ncii-node status shows it>}'


def parse_match_body(body: Any, max_batch: int = MAX_BATCH) -> tuple[list, bool]:
    """(queries, is_batch) from a JSON body: one fingerprint object, a list of them,
    or {"fingerprints": [...]}. Raises BadRequest naming the bad item."""
    from node.matcher.service import Query
    from protocol.errors import ProtocolError

    if isinstance(body, dict) and "signal" in body:
        items, batch = [body], False
    elif isinstance(body, dict) and set(body) == {"fingerprints"}:
        items, batch = body["fingerprints"], True
    elif isinstance(body, list):
        items, batch = body, True
    else:
        raise BadRequest('send a fingerprint {"signal": "pdq", "fingerprint": "<64 hex>"} or a batch '
                         '{"fingerprints": [...]}')
    if not isinstance(items, list) or not items:
        raise BadRequest("a batch is a non-empty list of fingerprints")
    if len(items) > max_batch:
        raise BadRequest(f"a batch holds at most {max_batch} fingerprints, not {len(items)}; split it",
                         status=413)
    queries = []
    for number, item in enumerate(items):
        try:
            queries.append(Query.from_json(item))
        except ProtocolError as exc:
            where = f"fingerprint {number}: " if batch else ""
            raise BadRequest(f"{where}{exc}", item=number) from None
    return queries, batch


def _result_json(result, described: list[dict], query=None) -> dict:
    out: dict[str, Any] = {}
    if query is not None:
        out["signal"] = query.signal
    out["matches"] = described
    out["total"] = result.total
    return out


def _run_matches(matcher, queries, limit: int) -> list[tuple]:
    """Search, then describe the hits from the database: runs on a worker thread."""
    results = matcher.match_many(queries, limit=limit)
    return [(result, matcher.describe(result.hits)) for result in results]


def _matcher(request: web.Request):
    from node.matcher.service import MatcherLoading

    matcher = request.app[NODE].matcher
    if matcher is None or not matcher.ready:
        raise MatcherLoading("the match index is being built from the database; try again in a moment")
    return matcher


async def _match(request: web.Request, queries) -> list[tuple]:
    settings = request.app[MATCH_SETTINGS]
    started = time.perf_counter()
    answers = await asyncio.to_thread(_run_matches, _matcher(request), queries, settings.max_matches)
    request.app[NODE].metrics.observe_match(time.perf_counter() - started, len(queries),
                                            (hit.origin for result, _ in answers for hit in result.hits))
    return answers


def _guarded(*, match_token: bool):
    """Token check first (the admin token, and with `match_token` the match token
    too), then uniform error answers."""
    from node.web.bearer import bearer_token_ok, unauthorized

    if match_token:
        refusal = ("missing or wrong token (Authorization: Bearer <token from the data directory's "
                   "match.token or admin.token>)")
    else:
        refusal = ("missing or wrong admin token (Authorization: Bearer <token from the data directory's "
                   "admin.token>; the match token only matches)")

    def decorate(handler):
        async def wrapped(request: web.Request) -> web.StreamResponse:
            from node.matcher.service import MatcherLoading

            ctx = request.app[NODE]
            accepted = (ctx.admin_token, ctx.match_token) if match_token else (ctx.admin_token,)
            if not bearer_token_ok(request, *accepted):
                return unauthorized(refusal)
            try:
                return await handler(request)
            except BadRequest as exc:
                return _error(exc.status, str(exc), **exc.extra)
            except MatcherLoading as exc:
                return _error(503, str(exc), retry_after=1)
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
    answers = await _match(request, queries)
    results = [_result_json(result, described, query) for query, (result, described) in zip(queries, answers)]
    return web.json_response({"results": results} if batch else results[0], headers={"Cache-Control": "no-store"})


def _image_dihedral(data: bytes) -> list[dict]:
    """The PDQ fingerprints of a photo and of its 7 rotations and flips, each
    naming its `variant`."""
    import io

    from node.hashing import DIHEDRAL_VARIANTS, decode_image, pdq_dihedral_from_rgb, pdq_fingerprint

    hashes, quality = pdq_dihedral_from_rgb(decode_image(io.BytesIO(data)))
    return [{**pdq_fingerprint(hex_hash, quality), "variant": variant}
            for variant, hex_hash in zip(DIHEDRAL_VARIANTS, hashes)]


def _hash_upload(data: bytes, dihedral: bool) -> list[dict]:
    from node.hashing import hash_media_bytes, sniff

    if dihedral and sniff(data[:16]) == "image":
        return _image_dihedral(data)
    return hash_media_bytes(data)


@_guarded(match_token=True)
async def post_match_media(request: web.Request) -> web.Response:
    """The body is the file itself (any Content-Type); fingerprints are computed here.
    `?dihedral=true`: a photo is also matched rotated and flipped (8 PDQ queries,
    one result whose matches name the `variant` that matched, nearest kept)."""
    from node.hashing import HashingError
    from node.matcher.service import Query

    settings = request.app[MATCH_SETTINGS]
    dihedral = request.query.get("dihedral", "false").lower()
    if dihedral not in ("true", "false", "1", "0"):
        raise BadRequest("dihedral must be true or false")
    data = await _read_body(request, settings.media_limit)
    if not data:
        raise BadRequest("send the image or video file as the request body")
    try:
        fingerprints = await asyncio.to_thread(_hash_upload, data, dihedral in ("true", "1"))
    except HashingError as exc:
        raise BadRequest(f"cannot fingerprint this file: {exc}", status=422) from None
    del data
    queries = [Query.from_json(fp) for fp in fingerprints]
    answers = await _match(request, queries)
    if fingerprints and "variant" in fingerprints[0]:
        answers, fingerprints, queries = _merge_variants(answers, fingerprints), fingerprints[:1], queries[:1]
    results = []
    for fp, query, (result, described) in zip(fingerprints, queries, answers):
        item = _result_json(result, described, query)
        if query.signal != "vpdq":  # a video's frame list is long; its matches say enough
            item["fingerprint"] = fp["fingerprint"]
        else:
            item["frames"] = len(fp["fingerprint"])
        for key in ("quality", "low_quality"):
            if key in fp:
                item[key] = fp[key]
        results.append(item)
    kind = "video" if any(q.signal != "pdq" for q in queries) else "image"
    return web.json_response({"kind": kind, "matched": any(r["total"] for r in results), "results": results},
                             headers={"Cache-Control": "no-store"})


def _merge_variants(answers: list[tuple], fingerprints: list[dict]) -> list[tuple]:
    """One answer from the 8 variants' answers: each entry once, at its nearest variant."""
    from node.matcher.service import QueryResult

    best: dict[tuple[str, int], dict] = {}
    for fp, (_result, described) in zip(fingerprints, answers):
        for match in described:
            key = (match["origin"], match["index"])
            if key not in best or match["distance"] < best[key]["distance"]:
                best[key] = {**match, "variant": fp["variant"]}
    merged = sorted(best.values(), key=lambda m: (m["distance"], m["origin"], m["index"]))
    total = max([len(merged)] + [result.total for result, _ in answers])
    return [(QueryResult([], total), merged)]


@_guarded(match_token=True)
async def get_status(request: web.Request) -> web.Response:
    matcher = request.app[NODE].matcher
    return web.json_response(matcher.stats(), headers={"Cache-Control": "no-store"})


@_guarded(match_token=False)
async def post_suppress(request: web.Request) -> web.Response:
    """{"origin": O, "index": I, "feedback": true|false} -> the suppression's outcome."""
    from node.matcher.suppress import SuppressError, suppress_entry

    body = await _read_json(request, 4096, SUPPRESS_HINT)
    if not isinstance(body, dict) or not {"origin", "index"} <= set(body) \
            or set(body) - {"origin", "index", "feedback"}:
        raise BadRequest(SUPPRESS_HINT)
    feedback = body.get("feedback", True)
    if not isinstance(feedback, bool):
        raise BadRequest("feedback must be true or false")
    try:
        outcome = await suppress_entry(request.app[NODE], body["origin"], body["index"], feedback)
    except SuppressError as exc:
        raise BadRequest(str(exc), exc.status) from None
    return web.json_response(outcome.to_json())


@_guarded(match_token=False)
async def post_threshold(request: web.Request) -> web.Response:
    """{"origin": O, "threshold": T|null} -> stored, and in force for the next search."""
    from node.store import matching as matching_store

    body = await _read_json(request, 4096, THRESHOLD_HINT)
    if not isinstance(body, dict) or set(body) != {"origin", "threshold"} or not isinstance(body["origin"], str) \
            or not body["origin"]:
        raise BadRequest(THRESHOLD_HINT)
    threshold = body["threshold"]
    if threshold is not None and (type(threshold) is not int or not 0 <= threshold <= 256):
        raise BadRequest("threshold must be an integer from 0 to 256, or null for the default (31)")
    ctx = request.app[NODE]
    matching_store.set_threshold(ctx.db, body["origin"], threshold)
    ctx.matcher.set_threshold(body["origin"], threshold)
    return web.json_response({"origin": body["origin"], "threshold": ctx.matcher.threshold_for(body["origin"])})


@_guarded(match_token=False)
async def post_budget(request: web.Request) -> web.Response:
    """{"origin": O, "max_fingerprints"?: N|null, "max_per_hour"?: N|null, "max_per_day"?: N|null}
    -> stored, in force at once; fingerprints the new budgets allow go in the index."""
    from node.store import matching as matching_store

    body = await _read_json(request, 4096, BUDGET_HINT)
    fields = set(matching_store.BUDGET_FIELDS)
    if not isinstance(body, dict) or "origin" not in body or not isinstance(body["origin"], str) \
            or not body["origin"] or set(body) - fields - {"origin"}:
        raise BadRequest(BUDGET_HINT)
    values = {key: body[key] for key in fields & set(body)}
    for key, value in values.items():
        if value is not None and (type(value) is not int or not 0 <= value <= 2**40):
            raise BadRequest(f"{key} must be a whole number from 0 up, or null for the default")
    ctx = request.app[NODE]
    matching_store.set_budget(ctx.db, body["origin"], values)
    budget = await asyncio.to_thread(ctx.matcher.set_budget, body["origin"], values)
    return web.json_response({"origin": body["origin"], "max_fingerprints": budget.max_fingerprints,
                              "max_per_hour": budget.max_per_hour, "max_per_day": budget.max_per_day})


@_guarded(match_token=False)
async def post_release(request: web.Request) -> web.Response:
    """{"cluster": id} -> the held cluster's fingerprints go in the index (within budgets)."""
    body = await _read_json(request, 4096, RELEASE_HINT)
    if not isinstance(body, dict) or set(body) != {"cluster"} or type(body["cluster"]) is not int \
            or not 0 < body["cluster"] < 2**63:
        raise BadRequest(RELEASE_HINT)
    outcome = await asyncio.to_thread(_matcher(request).release_cluster, body["cluster"])
    if outcome is None:
        raise BadRequest(f"no held cluster has the id {body['cluster']} (ncii-node status lists them)", 404)
    return web.json_response(outcome)
