"""Prometheus metrics (GET /metrics on the admin site), and the count of every answer.

    GET /metrics   Authorization: Bearer <DIR/metrics.token or DIR/admin.token>
                   -> the Prometheus text format (node/metrics.py lists the metrics)

Also, on both sites, a middleware that counts every answer by site, route pattern and
status (ncii_http_requests_total). The figures read from the database come through
the node's figures worker (node/figures.py `Figures`), off the event loop.

The metrics token can read /metrics and nothing else: give it to Prometheus
(`authorization: {credentials_file: DIR/metrics.token}`), never the admin token.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.web.bearer import bearer_token_ok, unauthorized
from node.web.context import NODE, route_pattern

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def setup(app: web.Application, node) -> None:
    app.middlewares.append(_counting("public"))


def setup_admin(admin: web.Application, node) -> None:
    admin.middlewares.append(_counting("admin"))
    admin.router.add_get("/metrics", get_metrics)


def _counting(site: str):
    @web.middleware
    async def count_answers(request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            request.app[NODE].metrics.observe_request(site, route_pattern(request), exc.status)
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            request.app[NODE].metrics.observe_request(site, route_pattern(request), 500)
            raise
        request.app[NODE].metrics.observe_request(site, route_pattern(request), response.status)
        return response

    return count_answers


async def get_metrics(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if not bearer_token_ok(request, node.admin_token, node.metrics_token):
        return unauthorized("missing or wrong token (Authorization: Bearer <token from the data directory's "
                            "metrics.token or admin.token>)")
    snapshot = await node.figures.snapshot(node.live_figures())
    return web.Response(body=node.metrics.exposition(snapshot), headers={"Content-Type": CONTENT_TYPE,
                                                                         "Cache-Control": "no-store"})
