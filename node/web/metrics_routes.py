"""Prometheus metrics (GET /metrics on the admin site) and what feeds the figures.

    GET /metrics   Authorization: Bearer <DIR/metrics.token or DIR/admin.token>
                   -> the Prometheus text format (node/metrics.py lists the metrics)

Also, on both sites, a middleware that counts every answer by site, route pattern
and status (ncii_http_requests_total), and, for as long as the node serves:
  * a DatabaseWorker (`ctx.reader`: its own connection, off the event loop) that the
    figures (/metrics, the console) are read through;
  * the sequencer's batch times into ncii_sequencer_batch_seconds;
  * the match counts gathered in memory, stored every FLUSH_INTERVAL seconds into the
    daily summary (node/store/stats.py), and once more when the node stops.

The metrics token can read /metrics and nothing else: give it to Prometheus
(`authorization: {credentials_file: DIR/metrics.token}`), never the admin token.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from node.web.app import NODE, _route_pattern

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 10.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def setup(app: web.Application) -> None:
    app.middlewares.append(_counting("public"))
    app.cleanup_ctx.append(_figures_resources)


def setup_admin(admin: web.Application) -> None:
    admin.middlewares.append(_counting("admin"))
    admin.router.add_get("/metrics", get_metrics)


def _counting(site: str):
    @web.middleware
    async def count_answers(request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            request.app[NODE].metrics.observe_request(site, _route_pattern(request), exc.status)
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            request.app[NODE].metrics.observe_request(site, _route_pattern(request), 500)
            raise
        request.app[NODE].metrics.observe_request(site, _route_pattern(request), response.status)
        return response

    return count_answers


async def _figures_resources(app: web.Application):
    from node.follow.sync import DatabaseWorker

    ctx = app[NODE]
    ctx.reader = DatabaseWorker(ctx.datadir.db_path)
    ctx.sequencer.on_batch.append(ctx.metrics.observe_batch)
    flusher = asyncio.create_task(_flush_matches_every(ctx, FLUSH_INTERVAL), name="match-stats")
    try:
        yield
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await flush_matches(ctx)
        await ctx.reader.close()


async def flush_matches(ctx) -> None:
    """Store the match counts gathered since the last flush (kept for later on failure)."""
    from node.store import stats as stats_store

    queries, matches = ctx.metrics.take_pending_matches()
    if not queries and not matches:
        return
    try:
        await ctx.reader.call(stats_store.add_matches, stats_store.day_of(time.time()), queries, matches)
    except Exception as exc:  # noqa: BLE001 - a busy or full database: try again next time
        log.warning("figures: could not store match counts (%s); will retry", exc)
        ctx.metrics.give_back_matches(queries, matches)


async def _flush_matches_every(ctx, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await flush_matches(ctx)


def live_figures(ctx) -> dict:
    """What only the running process knows."""
    import psutil

    live = {"rss_bytes": psutil.Process().memory_info().rss}
    if ctx.sequencer is not None and ctx.sequencer.published is not None:
        live["log_size"] = ctx.sequencer.published.size
    if ctx.matcher is not None:
        live["matcher"] = ctx.matcher.stats()
        live["latency"] = ctx.metrics.latency_percentiles()
    return live


async def get_metrics(request: web.Request) -> web.Response:
    from node.figures import store_snapshot
    from node.web.bearer import bearer_token_ok, unauthorized

    ctx = request.app[NODE]
    if not bearer_token_ok(request, ctx.admin_token, ctx.metrics_token):
        return unauthorized("missing or wrong token (Authorization: Bearer <token from the data directory's "
                            "metrics.token or admin.token>)")
    live = live_figures(ctx)
    snapshot = await ctx.reader.call(store_snapshot, ctx.config, live)
    return web.Response(body=ctx.metrics.exposition(snapshot), headers={"Content-Type": CONTENT_TYPE,
                                                                         "Cache-Control": "no-store"})
