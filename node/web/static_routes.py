"""The victim web page (node/web/static/), served by helpline nodes at `/`.

Only helpline nodes serve it: it talks to the case API, which only they have. Files are
looked up by exact name in a fixed list built at start-up (no path from a request ever
reaches the file system), sent with the page's Content-Security-Policy as a header
too (the meta tag cannot forbid framing; `media-src blob:` lets the page read the
person's own videos through object URLs, never from anywhere else), no cookies, and `no-cache` so a helpline
that updates the page never leaves a person on an old copy of its JavaScript.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from node.web.app import NODE

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; "
        "style-src 'self'; img-src 'self' data: blob:; media-src blob:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cache-Control": "no-cache",
}


def page_files() -> dict[str, Path]:
    """URL path -> file, for every file of the page; '/' is index.html."""
    files = {
        "/" + path.relative_to(STATIC).as_posix(): path
        for path in STATIC.rglob("*")
        if path.is_file() and path.suffix in CONTENT_TYPES
    }
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


def setup(app: web.Application) -> None:
    if app[NODE].config.node.role != "helpline":
        return
    files = page_files()

    async def get_page_file(request: web.Request) -> web.Response:
        path = files.get(request.path)
        if path is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=path.read_bytes(),
            headers={"Content-Type": CONTENT_TYPES[path.suffix], **SECURITY_HEADERS},
        )

    for url in files:
        app.router.add_get(url, get_page_file)
