"""POST /v1/feedback: a platform publishes its verdict on an entry of a followed log.

    POST /v1/feedback  {"origin": "helpline.example/log", "index": 42, "verdict": "removed"}
    Authorization: Bearer <admin token of the data directory>
    -> 200 {"index": i, "leaf_hash": "<hex>", "checkpoint_size": n, "entry": {JSON view of the feedback}}

Served on the admin site (loopback by default), like POST /admin/append, with the
same token (the admin token; the match token is refused); `ncii-node feedback` is its
command-line face.

The feedback entry quotes the leaf hash of the named entry *from this node's verified
copy* of the followed log (node/store/follow.py), never from the caller: a verdict
can only name an entry this node verified, and cannot be moved to another entry.
`publish_feedback(ctx, origin, index, verdict)` is the same for code inside the node
(the matcher's `disputed-false-match`).
"""

from __future__ import annotations

from aiohttp import web

from node.web.app import NODE

BODY_LIMIT = 4096


class FeedbackError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def setup_admin(admin: web.Application) -> None:
    admin.router.add_post("/v1/feedback", post_feedback)


async def publish_feedback(ctx, origin: object, index: object, verdict: object) -> dict:
    """Append one Feedback entry to this node's log; return where it was published.
    Raises FeedbackError (400 bad input, 404 entry unknown here, 503 log unavailable)."""
    from node.log.sequencer import LogUnavailable
    from node.store import follow as follow_store
    from protocol.checkpoint import MAX_TREE_SIZE
    from protocol.entries import VERDICTS, Feedback, encode_entry, entry_to_json
    from protocol.errors import ProtocolError

    if not isinstance(origin, str) or not origin:
        raise FeedbackError(400, "origin must be the origin of a followed log, e.g. \"helpline.example/log\"")
    # An entry's index is below its log's size, and sizes stay below 2**63 (what SQLite holds).
    if type(index) is not int or not 0 <= index < MAX_TREE_SIZE:
        raise FeedbackError(400, "index must be a non-negative integer: the entry's index in that log")
    if verdict not in VERDICTS:
        raise FeedbackError(400, f"verdict must be one of {', '.join(VERDICTS)}")
    if origin == ctx.config.node.origin:
        raise FeedbackError(400, "feedback names an entry of another node's log, not of this node's own")
    followed = follow_store.get_log(ctx.db, origin)
    if followed is None:
        raise FeedbackError(404, f"this node does not follow {origin!r} (see `ncii-node follow list`)")
    leaf = follow_store.known_leaf_hash(ctx.db, origin, index, ctx.config.node.origin)
    if leaf is None:
        raise FeedbackError(404, f"entry {index} of {origin} is not a submission in this node's verified copy "
                            f"(it holds {followed.size} entries of that log)")
    try:
        entry = Feedback(origin, index, leaf, verdict)
        data = encode_entry(entry)
    except ProtocolError as exc:
        raise FeedbackError(400, str(exc)) from None
    try:
        (appended,) = await ctx.sequencer.append([data])
    except LogUnavailable as exc:
        raise FeedbackError(503, str(exc)) from None
    return {"index": appended.index, "leaf_hash": appended.leaf_hash.hex(),
            "checkpoint_size": appended.checkpoint_size, "entry": entry_to_json(entry)}


FEEDBACK_HINT = 'send exactly {"origin": ..., "index": ..., "verdict": ...}'


async def post_feedback(request: web.Request) -> web.Response:
    from node.web.bearer import unauthorized
    from node.web.body import BodyError, parse_json, read_body
    from node.web.log_routes import ADMIN_TOKEN_NEEDED, has_admin_token

    ctx = request.app[NODE]
    if not has_admin_token(request):  # the match token does not publish feedback
        return unauthorized(ADMIN_TOKEN_NEEDED)
    try:
        body = parse_json(await read_body(request, BODY_LIMIT), hint=FEEDBACK_HINT)
    except BodyError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    if not isinstance(body, dict) or set(body) - {"origin", "index", "verdict"}:
        return web.json_response({"error": FEEDBACK_HINT}, status=400)
    try:
        answer = await publish_feedback(ctx, body.get("origin"), body.get("index"), body.get("verdict"))
    except FeedbackError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    return web.json_response(answer)
