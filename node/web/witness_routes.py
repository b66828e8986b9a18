"""HTTP routes of the witness area (public site).

    POST /add-checkpoint        C2SP tlog-witness: cosign a checkpoint of a known log
                                (node/witness/addcheckpoint.py has the status codes)
    GET  /witness/checkpoints   monitors: the latest cosigned checkpoint per origin (JSON)
    GET  /witness/checkpoint?origin=O   the same for one origin, as the signed note text
    GET  /<hex SHA-256 of O>/checkpoint the same at C2SP tlog-witness's monitoring path
    GET  /witness/seen          the latest verified checkpoint of each origin this node has
                                seen in any role (witness, follower, auditor), for split-view
                                comparison by other nodes (JSON)
    GET  /witness/evidence[?origin=O]   the split-view evidence documents this node holds
                                (its witness's, its follower's, its gossip's), newest last

The witness and the submitter of this node's own checkpoints to its witnesses are
parts of the node (node/witness/service.py, node/witness/submit.py; node/runtime.py
starts them); these routes only translate HTTP.

Access: /add-checkpoint and what a witness cosigned (/witness/checkpoints,
/witness/checkpoint) are public: submitters and monitors need them. /witness/seen and
/witness/evidence say which logs this node follows, so, like GET /status, they are for
registered readers (signed requests, node/readaccess/) unless the node is
public_read; nodes that gossip register each other's request keys as readers.
"""

from __future__ import annotations

import base64

from aiohttp import web

from node.errors import TooLarge
from node.web.body import read_body
from node.web.context import NODE, READ_PROTECTED
from node.witness.addcheckpoint import MAX_BODY_BYTES


def setup(app: web.Application, node) -> None:
    app.router.add_post("/add-checkpoint", post_add_checkpoint)
    app.router.add_get("/witness/checkpoints", get_cosigned_checkpoints)
    app.router.add_get("/witness/checkpoint", get_cosigned_checkpoint)
    app.router.add_get(r"/{origin_hash:[0-9a-f]{64}}/checkpoint", get_monitored_checkpoint)
    app.router.add_get("/witness/seen", get_seen)
    app.router.add_get("/witness/evidence", get_evidence)
    # Which logs this node follows or witnesses is the operator's business (as for
    # GET /status): registered readers only, unless the node is public_read.
    app[READ_PROTECTED].extend(["/witness/seen", "/witness/evidence"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def post_add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[NODE].witness
    if not witness.active:  # nothing to judge: the body is not read
        return web.Response(status=404, text="this node witnesses no log\n")
    try:
        # The whole declared body, within [http] body_timeout: never part of it.
        body = await read_body(request, MAX_BODY_BYTES)
    except TooLarge:
        return web.Response(status=413, text=f"body larger than {MAX_BODY_BYTES} bytes\n")
    reply = await witness.add_checkpoint(body)
    return web.Response(status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type})


async def get_cosigned_checkpoints(request: web.Request) -> web.Response:
    witness = request.app[NODE].witness
    rows = await witness.cosigned()
    return web.json_response({
        "witness": witness.vkey,
        "checkpoints": [{"origin": r.origin, "size": r.size, "root_hash": _b64(r.root_hash),
                         "note": r.note.decode("utf-8"), "cosigned_at": int(r.cosigned_at)} for r in rows],
    }, headers={"Cache-Control": "no-cache"})


async def get_cosigned_checkpoint(request: web.Request) -> web.Response:
    origin = request.query.get("origin", "")
    row = await request.app[NODE].witness.cosigned_for(origin) if origin else None
    return _cosigned_note(row)


async def get_monitored_checkpoint(request: web.Request) -> web.Response:
    """C2SP tlog-witness: GET <monitoring prefix>/<lowercase hex SHA-256 of the
    origin>/checkpoint is the latest checkpoint this witness cosigned, with the log's
    signature and the witness's cosignature (and nothing nobody verified)."""
    row = await request.app[NODE].witness.cosigned_for_hash(request.match_info["origin_hash"])
    return _cosigned_note(row)


def _cosigned_note(row) -> web.Response:
    if row is None:
        return web.Response(status=404, text="no cosigned checkpoint for that origin\n")
    return web.Response(body=row.note, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def get_seen(request: web.Request) -> web.Response:
    node = request.app[NODE]
    doc = await node.witness.seen(node.origin)
    return web.json_response(doc, headers={"Cache-Control": "no-cache"})


async def get_evidence(request: web.Request) -> web.Response:
    docs = await request.app[NODE].witness.evidence(request.query.get("origin"))
    return web.json_response({"evidence": docs}, headers={"Cache-Control": "no-cache"})
