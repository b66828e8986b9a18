"""The operator console on the admin site (loopback): the node's figures as one page.

    GET  /console[?window=7d|30d|all][&lang=en|fr]   the page (HTML, server-rendered)
    POST /console/login     form field `token` = the admin token -> a session cookie, back to /console
    POST /console/logout    the cookie is cleared

Who may see it: the holder of the admin token, as for everything on the admin site.
A program sends `Authorization: Bearer <admin token>`; a browser, which cannot send
that header by itself, signs in once with the token and gets a cookie
`<expiry>.<HMAC-SHA256(admin token, "ncii-node console" + expiry)>`: HttpOnly,
SameSite=Strict, Path=/console, valid 12 hours, and void as soon as the admin token
changes. The admin site's guards (loopback peers, a loopback Host) apply as well.

The page is built by node/figures.py (through `ctx.reader`, off the event loop) and
rendered by node/web/console/page.py: no script, no external resource, a strict
content security policy; English or French (`?lang=`, else the browser's language).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs

from aiohttp import web

from node.web.app import NODE

COOKIE = "ncii_console"
SESSION_SECONDS = 12 * 3600
FORM_LIMIT = 4096


def setup_admin(admin: web.Application) -> None:
    admin.router.add_get("/console", get_console)
    admin.router.add_post("/console/login", post_login)
    admin.router.add_post("/console/logout", post_logout)


def _session_value(token: str, expiry: int) -> str:
    mac = hmac.new(token.encode(), f"ncii-node console {expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{expiry}.{mac}"


def _cookie_ok(request: web.Request, token: str, now: float) -> bool:
    value = request.cookies.get(COOKIE, "")
    expiry_text, _, _ = value.partition(".")
    if not token or not expiry_text.isdigit() or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    if not now < expiry <= now + SESSION_SECONDS:
        return False
    return hmac.compare_digest(value.encode(), _session_value(token, expiry).encode())


def _headers() -> dict:
    from node.web.console.page import CONTENT_SECURITY_POLICY

    return {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=_headers())


def _language(request: web.Request, chosen: str | None = None) -> str:
    from node.web.console.text import choose_language

    return choose_language(chosen or request.query.get("lang"), request.headers.get("Accept-Language", ""))


async def get_console(request: web.Request) -> web.Response:
    from node.figures import DEFAULT_WINDOW, WINDOWS, node_figures
    from node.web.bearer import bearer_token_ok
    from node.web.console.page import render_console, render_login
    from node.web.metrics_routes import flush_matches, live_figures

    ctx = request.app[NODE]
    lang = _language(request)
    by_cookie = _cookie_ok(request, ctx.admin_token, time.time())
    if not by_cookie and not bearer_token_ok(request, ctx.admin_token):
        return _html(render_login(lang), status=401)
    window = request.query.get("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    await flush_matches(ctx)  # the matches counted in memory since the last flush show too
    figures = await ctx.reader.call(node_figures, ctx.config, window, None, live_figures(ctx))
    return _html(render_console(figures, lang, signed_in_by_cookie=by_cookie))


def _plain_error(status: int, message: str) -> web.HTTPException:
    if status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=FORM_LIMIT, actual_size=FORM_LIMIT + 1, text=message + "\n")
    return web.HTTPBadRequest(text=message + "\n")


async def _form(request: web.Request) -> dict[str, str]:
    from node.web.body import BodyError, read_body

    try:
        raw = await read_body(request, FORM_LIMIT)
    except BodyError as exc:
        raise _plain_error(exc.status, str(exc)) from None
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        raise _plain_error(400, "send an HTML form (application/x-www-form-urlencoded)") from None
    return {key: values[0] for key, values in fields.items()}


async def post_login(request: web.Request) -> web.Response:
    from node.web.console.page import render_login

    ctx = request.app[NODE]
    form = await _form(request)
    lang = _language(request, form.get("lang"))
    given = form.get("token", "").strip().encode()
    if not ctx.admin_token or not hmac.compare_digest(given, ctx.admin_token.encode()):
        return _html(render_login(lang, error=True), status=401)
    expiry = int(time.time()) + SESSION_SECONDS
    redirect = web.HTTPSeeOther(f"/console?lang={lang}", headers=_headers())
    redirect.set_cookie(COOKIE, _session_value(ctx.admin_token, expiry), max_age=SESSION_SECONDS, path="/console",
                        httponly=True, samesite="Strict")
    raise redirect


async def post_logout(request: web.Request) -> web.Response:
    form = await _form(request)
    redirect = web.HTTPSeeOther(f"/console?lang={_language(request, form.get('lang'))}", headers=_headers())
    redirect.del_cookie(COOKIE, path="/console")
    raise redirect
