"""HTTP routes of the helpline case service (helpline nodes only; spec/openapi.yaml).

    POST /v1/cases            eligibility answers + fingerprints -> case number and PIN (once)
    POST /v1/cases/status     case number + PIN -> state, publication, platform feedback
    POST /v1/cases/withdraw   case number + PIN -> withdrawal entries appended (idempotent)
    POST /admin/cases/withdraw   (admin site, admin token) the operator withdraws, as abuse,
                              the cases published in a time window (`ncii-node cases withdraw`)
    POST /v1/cases/receipt    case number + PIN -> the newest receipt (an offline proof, no codes in it)
    GET  /v1/cases/receipt-policy   the C2SP tlog-policy that receipts of this helpline are checked with

Rules kept here:
- Case numbers and PINs travel only in JSON bodies, never in URLs (so no URL, log
  line or browser history ever holds one); answers are `Cache-Control: no-store`.
- Bodies are bounded before they are read whole: [cases] max_body_bytes for a new
  case, STATUS_BODY_LIMIT for the others.
- A helpline node accepts no image or video on any path: a request whose
  Content-Type is image/*, video/* or multipart/* is refused with 415 and a message
  saying that only fingerprints, computed on the person's device, are accepted.
- Handlers log nothing about the request; the access log (node/web/app.py) holds
  neither the client address nor the user agent.
"""

from __future__ import annotations

import json

from aiohttp import web

from node.web.app import NODE

STATUS_BODY_LIMIT = 4096
MEDIA_REFUSED = ("this helpline never accepts images or videos, on any address: your images stay on "
                 "your device. Compute their fingerprints there (the helpline's web page does it in "
                 "your browser, or `ncii-node hash --json`) and send only the fingerprints, as JSON.")

CASES = web.AppKey("cases", object)


def setup(app: web.Application) -> None:
    if app[NODE].config.node.role != "helpline":
        return
    app.middlewares.append(refuse_media)
    app.cleanup_ctx.append(_case_service)
    app.router.add_post("/v1/cases", post_case)
    app.router.add_post("/v1/cases/status", post_status)
    app.router.add_post("/v1/cases/withdraw", post_withdraw)
    app.router.add_post("/v1/cases/receipt", post_receipt)
    app.router.add_get("/v1/cases/receipt-policy", get_receipt_policy)


def setup_admin(admin: web.Application) -> None:
    if admin[NODE].config.node.role != "helpline":
        return
    admin.router.add_post("/admin/cases/withdraw", post_operator_withdraw)


async def _case_service(app: web.Application):
    from node.cases.service import CaseService

    service = CaseService(app[NODE])
    await service.start()
    app[CASES] = service
    app[NODE].cases = service  # for the admin site's routes
    try:
        yield
    finally:
        await service.stop()


def _is_media(content_type: str) -> bool:
    main = content_type.split("/", 1)[0].strip().lower()
    return main in ("image", "video", "multipart")


@web.middleware
async def refuse_media(request: web.Request, handler):
    if _is_media(request.headers.get("Content-Type", "")):
        return web.json_response({"error": MEDIA_REFUSED}, status=415)
    return await handler(request)


def _answer(status: int, body: dict, retry_after: int | None = None) -> web.Response:
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.json_response(body, status=status, headers=headers)


async def _read_json(request: web.Request, limit: int):
    from node.cases.service import CaseApiError
    from node.web.log_routes import BadAppend, read_limited

    if request.content_type != "application/json":
        raise CaseApiError(415, "send the request as JSON (Content-Type: application/json)")
    try:
        raw = await read_limited(request, limit)
    except BadAppend:
        raise CaseApiError(413, f"the request is larger than the {limit} bytes allowed") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CaseApiError(400, "the body is not valid JSON") from None


async def _handle(request: web.Request, limit: int, call) -> web.Response:
    from node.cases.service import CaseApiError

    try:
        body = await _read_json(request, limit)
        status, answer = await call(body)
    except CaseApiError as exc:
        return _answer(exc.status, exc.body, exc.retry_after if exc.status in (429, 503) else None)
    return _answer(status, answer)


async def post_case(request: web.Request) -> web.Response:
    service = request.app[CASES]
    limit = request.app[NODE].config.cases.max_body_bytes

    async def call(body):
        return await service.create(body, _client_address(request))

    return await _handle(request, limit, call)


def _client_address(request: web.Request) -> str | None:
    """Whom the failed-PIN limiter counts the request under: the peer, or behind a
    trusted proxy the X-Forwarded-For client (node/cases/proxies.py). Never stored or logged."""
    return request.app[CASES].clients.client(request.remote, request.headers.getall("X-Forwarded-For", []))


OPERATOR_WITHDRAW_HINT = ('send {"from": <Unix seconds>, "to": <Unix seconds>, "dry_run": true|false}: the cases '
                          'whose entries the log published in that window are withdrawn with reason "abuse"')


async def post_operator_withdraw(request: web.Request) -> web.Response:
    """The operator's clean-up after a flood. Admin token; body {"from", "to",
    "dry_run"}; answer {"cases", "entries", "withdrawn", "first_size", "last_size"}."""
    from node.store import log as log_store
    from node.web.bearer import unauthorized
    from node.web.body import BodyError, parse_json, read_body
    from node.web.log_routes import ADMIN_TOKEN_NEEDED, has_admin_token

    if not has_admin_token(request):
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        body = parse_json(await read_body(request, STATUS_BODY_LIMIT), hint=OPERATOR_WITHDRAW_HINT)
    except BodyError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    window = (body.get("from"), body.get("to")) if isinstance(body, dict) else (None, None)
    if not isinstance(body, dict) or set(body) - {"from", "to", "dry_run"} or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in window) or window[0] >= window[1] \
            or not isinstance(body.get("dry_run", False), bool):
        return web.json_response({"error": OPERATOR_WITHDRAW_HINT}, status=400)
    db = request.app[NODE].db
    first, last = (log_store.size_published_by(db, t) for t in window)
    answer = await request.app[NODE].cases.withdraw_published_between(first, last, dry_run=body.get("dry_run", False))
    return web.json_response({**answer, "first_size": first, "last_size": last})


def _with_codes(action: str):
    """A route whose body is the case number and PIN (status, withdraw, receipt): it
    calls CaseService.<action>(body, client address) and answers 200."""

    async def route(request: web.Request) -> web.Response:
        method = getattr(request.app[CASES], action)

        async def call(body):
            return 200, await method(body, _client_address(request))

        return await _handle(request, STATUS_BODY_LIMIT, call)

    route.__name__ = f"post_{action}"
    return route


post_status = _with_codes("status")
post_withdraw = _with_codes("withdraw")
post_receipt = _with_codes("receipt")


async def get_receipt_policy(request: web.Request) -> web.Response:
    policy = await request.app[CASES].receipt_policy()
    return web.Response(body=policy, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-cache",
                                 "Content-Disposition": 'inline; filename="receipt-policy.txt"'})
