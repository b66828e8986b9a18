"""The victim web page (node/web/static/), served by helpline nodes at `/`.

Only helpline nodes serve it: it talks to the case API, which only they have. Files are
looked up by exact name in a fixed list built at start-up (no path from a request ever
reaches the file system), sent with the page's Content-Security-Policy as a header
too (the meta tag cannot forbid framing; `media-src blob:` lets the page read the
person's own videos through object URLs, never from anywhere else), no cookies, and `no-cache` so a helpline
that updates the page never leaves a person on an old copy of its JavaScript.

`GET /helpline.json` gives the page what makes it this helpline's own (its `[page]`
and `[node] display_name`/`contact` configuration, spec/parts/webapp.md "Making the
page your own"): name, contact, countries, help services and emergency numbers per
country, questions and answers, and the participating platforms. A platform is listed
only while its name is one the operator gave a registered reader or a followed log
(`readers add --name`, `follow add --name`): the page never claims a platform that
does not read this log, and never shows a name a peer announced about itself.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from aiohttp import web

from node.cases.resources import LANGUAGES, HelpDirectory
from node.web.app import NODE

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
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

    config = app[NODE].config
    directory = HelpDirectory.from_config(config.page)
    unmatched_warned: set[str] = set()

    async def get_helpline(request: web.Request) -> web.Response:
        names = operator_names(request.app[NODE].db)
        for platform in config.page.platforms:
            if platform["name"] not in names and platform["name"] not in unmatched_warned:
                unmatched_warned.add(platform["name"])
                log.warning("page: [[page.platforms]] %r is not shown: no registered reader or followed log has "
                            "that name (give it with `readers add --name` or `follow add --name`)", platform["name"])
        body = helpline_settings(config, directory, names)
        return web.Response(body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                            headers={"Content-Type": CONTENT_TYPES[".json"], **SECURITY_HEADERS})

    app.router.add_get("/helpline.json", get_helpline)


def operator_names(db) -> set[str]:
    """The names this operator gave its registered readers and followed logs."""
    from node.store import follow as follow_store
    from node.store import log as log_store

    names = {reader.name for reader in log_store.list_readers(db)}
    try:
        names |= {followed.name for followed in follow_store.list_logs(db)}
    except sqlite3.OperationalError:  # no follower tables in this database
        pass
    return names - {""}


def helpline_settings(config, directory: HelpDirectory, operator_names: set[str]) -> dict:
    """The document GET /helpline.json answers (spec/parts/webapp.md)."""
    page = config.page
    return {
        "name": config.node.display_name,
        "contact": config.node.contact,
        "languages": list(LANGUAGES),
        "countries": list(directory.countries),
        "default_country": directory.default_country,
        "quick_exit_url": page.quick_exit_url,
        "resources": [resource.for_page() for resource in directory.resources],
        "emergency": [number.for_page() for number in directory.emergency],
        "faq": page.faq,
        "default_faq": page.default_faq,
        "platforms": [platform for platform in page.platforms if platform["name"] in operator_names],
    }
