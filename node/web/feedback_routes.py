"""POST /v1/feedback: a platform publishes its verdict on an entry of a followed log.

    POST /v1/feedback  {"origin": "helpline.example/log", "index": 42, "verdict": "removed"}
    Authorization: Bearer <admin token of the data directory>
    -> 200 {"index": i, "leaf_hash": "<hex>", "checkpoint_size": n, "entry": {JSON view of the feedback}}

Served on the admin site (loopback by default), like POST /admin/append, with the
same token (the admin token; the match token is refused); `ncii-node feedback` is its
command-line face. What is published, and why it can only name an entry this node
verified: node/feedback.py.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import BadRequest, Refused
from node.jsontext import parse_json
from node.web.bearer import ADMIN_TOKEN_NEEDED, has_admin_token, unauthorized
from node.web.body import read_body
from node.web.context import NODE
from node.web.errors import json_error

BODY_LIMIT = 4096
FEEDBACK_HINT = 'send exactly {"origin": ..., "index": ..., "verdict": ...}'


def setup_admin(admin: web.Application, node) -> None:
    admin.router.add_post("/v1/feedback", post_feedback)


async def post_feedback(request: web.Request) -> web.Response:
    if not has_admin_token(request):  # the match token does not publish feedback
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        body = parse_json(await read_body(request, BODY_LIMIT), hint=FEEDBACK_HINT)
        if not isinstance(body, dict) or set(body) - {"origin", "index", "verdict"}:
            raise BadRequest(FEEDBACK_HINT)
        answer = await request.app[NODE].feedback.publish(body.get("origin"), body.get("index"), body.get("verdict"))
    except Refused as exc:
        return json_error(exc)
    return web.json_response(answer)
