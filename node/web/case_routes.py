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

from aiohttp import web

from node.cases.eligibility import Refusal
from node.cases.service import OPERATOR_WITHDRAW_HINT, read_withdraw_window
from node.errors import BadRequest, Refused, TooLarge, UnsupportedMedia
from node.jsontext import parse_json
from node.web.bearer import ADMIN_TOKEN_NEEDED, has_admin_token, unauthorized
from node.web.body import read_body
from node.web.context import NODE
from node.web.errors import json_error, status_of

STATUS_BODY_LIMIT = 4096
MEDIA_REFUSED = ("this helpline never accepts images or videos, on any address: your images stay on "
                 "your device. Compute their fingerprints there (the helpline's web page does it in "
                 "your browser, or `ncii-node hash --json`) and send only the fingerprints, as JSON.")
ANSWER_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def setup(app: web.Application, node) -> None:
    app.middlewares.append(refuse_media)
    app.router.add_post("/v1/cases", post_case)
    app.router.add_post("/v1/cases/status", post_status)
    app.router.add_post("/v1/cases/withdraw", post_withdraw)
    app.router.add_post("/v1/cases/receipt", post_receipt)
    app.router.add_get("/v1/cases/receipt-policy", get_receipt_policy)


def setup_admin(admin: web.Application, node) -> None:
    admin.router.add_post("/admin/cases/withdraw", post_operator_withdraw)


def _is_media(content_type: str) -> bool:
    main = content_type.split("/", 1)[0].strip().lower()
    return main in ("image", "video", "multipart")


@web.middleware
async def refuse_media(request: web.Request, handler):
    if _is_media(request.headers.get("Content-Type", "")):
        return _answer(415, {"error": MEDIA_REFUSED}, headers={})
    return await handler(request)


def _answer(status: int, body: dict, headers: dict | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=ANSWER_HEADERS if headers is None else headers)


async def _read_json(request: web.Request, limit: int):
    if request.content_type != "application/json":
        raise UnsupportedMedia("send the request as JSON (Content-Type: application/json)")
    try:
        raw = await read_body(request, limit)
    except TooLarge:
        raise TooLarge(f"the request is larger than the {limit} bytes allowed") from None
    try:
        return parse_json(raw)
    except BadRequest:
        raise BadRequest("the body is not valid JSON") from None


async def _handle(request: web.Request, limit: int, call, created: int = 200) -> web.Response:
    try:
        outcome = await call(await _read_json(request, limit))
    except Refused as exc:
        headers = dict(ANSWER_HEADERS)
        if exc.wait is not None:
            headers["Retry-After"] = str(exc.wait)
        return _answer(status_of(exc), {"error": exc.message, **exc.details}, headers)
    if isinstance(outcome, Refusal):  # not eligible: where else to find help
        return _answer(422, outcome.to_json())
    return _answer(created, outcome)


async def post_case(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return await _handle(request, node.config.cases.max_body_bytes,
                         lambda body: node.cases.create(body, _client_address(request)), created=201)


def _client_address(request: web.Request) -> str | None:
    """Whom the failed-PIN limiter counts the request under: the peer, or behind a
    trusted proxy the X-Forwarded-For client (node/cases/proxies.py). Never stored or logged."""
    return request.app[NODE].cases.clients.client(request.remote, request.headers.getall("X-Forwarded-For", []))


async def post_operator_withdraw(request: web.Request) -> web.Response:
    """The operator's clean-up after a flood (node.cases.service.read_withdraw_window)."""
    if not has_admin_token(request):
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        body = parse_json(await read_body(request, STATUS_BODY_LIMIT), hint=OPERATOR_WITHDRAW_HINT)
        start, end, dry_run = read_withdraw_window(body)
        answer = await request.app[NODE].cases.withdraw_published_during(start, end, dry_run=dry_run)
    except Refused as exc:
        return json_error(exc)
    return web.json_response(answer)


def _with_codes(action: str):
    """A route whose body is the case number and PIN (status, withdraw, receipt): it
    calls CaseService.<action>(body, client address) and answers 200."""

    async def route(request: web.Request) -> web.Response:
        method = getattr(request.app[NODE].cases, action)
        return await _handle(request, STATUS_BODY_LIMIT, lambda body: method(body, _client_address(request)))

    route.__name__ = f"post_{action}"
    return route


post_status = _with_codes("status")
post_withdraw = _with_codes("withdraw")
post_receipt = _with_codes("receipt")


async def get_receipt_policy(request: web.Request) -> web.Response:
    policy = await request.app[NODE].cases.receipt_policy()
    return web.Response(body=policy, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-cache",
                                 "Content-Disposition": 'inline; filename="receipt-policy.txt"'})
