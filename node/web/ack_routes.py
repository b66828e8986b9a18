"""This node's acknowledgements, inside `serve` (node/acks/publisher.py).

`setup(app)` registers the Acknowledger as a follow listener (it hears of every round
a follower commits), starts it after the node's own resources (it needs the
sequencer) and adds the acknowledgement key to /node.json. There are no routes:
acknowledgements travel in the log.
"""

from __future__ import annotations

from aiohttp import web

from node.web.app import NODE, NODE_JSON_SECTIONS

ACKNOWLEDGER = web.AppKey("acknowledger", object)


def setup(app: web.Application) -> None:
    from node.acks.publisher import Acknowledger
    from node.web.follow_routes import add_follow_listener

    acknowledger = Acknowledger(app[NODE])
    app[ACKNOWLEDGER] = acknowledger
    add_follow_listener(app, acknowledger)
    app.cleanup_ctx.append(_run)
    app[NODE_JSON_SECTIONS].append(_node_json)


async def _run(app: web.Application):
    acknowledger = app[ACKNOWLEDGER]
    await acknowledger.start()
    try:
        yield
    finally:
        await acknowledger.stop()


async def _node_json(app: web.Application) -> dict:
    acknowledger = app[ACKNOWLEDGER]
    return {"acknowledgement_key": acknowledger.vkey if acknowledger.signer else None}
