"""The public site's answer for routes that only the admin site serves.

The match API (POST /v1/match, /v1/match/media, ...), POST /v1/feedback and POST
/admin/append live on the admin site (loopback only unless `[admin] allow_remote`),
never on the public site: the index says which images people asked to protect. A
platform engineer who points an upload service at the public URL by mistake gets, in
place of a bare "404: Not Found", a JSON 404 that says where the route is served and
how to find that address. The answer is the same on every node and for every method,
and names no address or port: the admin site is nobody's business outside the machine.
"""

from __future__ import annotations

from aiohttp import web

NOT_HERE = ("{route} is not served on a node's public site. The match API (/v1/match, /v1/match/media, "
            "/v1/match/status, /v1/match/suppress, /v1/match/threshold), /v1/feedback and /admin/append are "
            "served only on the admin site of a platform node (feedback and appends on any node's admin site): "
            "it listens on loopback unless [admin] allow_remote is set; its address is admin_url in "
            "DIR/serve.json (`[admin] port` in DIR/config.toml fixes the port). Send the match token or the "
            "admin token there (spec/parts/matching-api.md).")


def setup(app: web.Application) -> None:
    app.middlewares.append(_admin_only_hint)


def is_admin_only(path: str) -> bool:
    return path in ("/v1/match", "/v1/feedback") or path.startswith(("/v1/match/", "/admin/"))


@web.middleware
async def _admin_only_hint(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if not is_admin_only(request.path):
            raise
    # The route's family, not the path as sent (the answer echoes nothing the client typed).
    route = next(name for prefix, name in (("/v1/match/", "/v1/match/..."), ("/v1/match", "/v1/match"),
                                           ("/v1/feedback", "/v1/feedback"), ("/admin/", "/admin/..."))
                 if request.path.startswith(prefix))
    return web.json_response({"error": NOT_HERE.format(route=route), "admin_site_only": True}, status=404)
