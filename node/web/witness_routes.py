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

Resources opened here (cleanup_ctx, after the node's own):
- the witness: its cosigning key (DIR/keys/witness.key, created if this node is a
  witness or knows logs to witness) and a database connection used from one worker
  thread, so add-checkpoint never blocks the event loop and requests are judged one
  at a time (the store makes each check-and-store atomic anyway);
- the submitter of this node's own checkpoints to its witnesses (node/witness/submit.py),
  hooked to the sequencer's on_publish callbacks.

Access: /add-checkpoint and what a witness cosigned (/witness/checkpoints,
/witness/checkpoint) are public: submitters and monitors need them. /witness/seen and
/witness/evidence say which logs this node follows, so, like GET /status, they are for
registered readers (signed requests, node/readaccess.py) unless the node is
public_read; nodes that gossip register each other's request keys as readers.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import logging

from aiohttp import web

from node.web.app import NODE, NODE_JSON_SECTIONS, READ_PROTECTED

log = logging.getLogger(__name__)

WITNESS = web.AppKey("witness", object)
SUBMITTER = web.AppKey("witness_submitter", object)


class WitnessService:
    """The witness of a serving node, or an inactive one (every origin unknown)."""

    def __init__(self):
        self.witness = None
        self.db = None
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="witness")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def setup(app: web.Application) -> None:
    app.router.add_post("/add-checkpoint", post_add_checkpoint)
    app.router.add_get("/witness/checkpoints", get_cosigned_checkpoints)
    app.router.add_get("/witness/checkpoint", get_cosigned_checkpoint)
    app.router.add_get(r"/{origin_hash:[0-9a-f]{64}}/checkpoint", get_monitored_checkpoint)
    app.router.add_get("/witness/seen", get_seen)
    app.router.add_get("/witness/evidence", get_evidence)
    # Which logs this node follows or witnesses is the operator's business (as for
    # GET /status): registered readers only, unless the node is public_read.
    app[READ_PROTECTED].extend(["/witness/seen", "/witness/evidence"])
    app[NODE_JSON_SECTIONS].append(node_json_witnessing)
    app.cleanup_ctx.append(_witness_resources)


async def _witness_resources(app: web.Application):
    from node.store import open_db
    from node.store import witness as store
    from node.witness.addcheckpoint import Witness
    from node.witness.keys import has_witness_key, load_witness_signer
    from node.witness.submit import WitnessSubmitter

    ctx = app[NODE]
    service = WitnessService()
    service.db = await service.run(lambda: open_db(ctx.datadir.db_path, check_same_thread=False))
    knows_logs = bool(await service.run(store.list_known_logs, service.db))
    if ctx.config.node.role == "witness" or knows_logs or has_witness_key(ctx.datadir):
        signer = load_witness_signer(ctx.datadir, create=True)
        service.witness = Witness(signer, service.db)
        log.info("witness %s: cosigning for %s", signer.verifier_key(),
                 ", ".join(sorted({k.origin for k in store.list_known_logs(ctx.db)})) or "no log yet")
    app[WITNESS] = service
    submitter = WitnessSubmitter(ctx.sequencer, ctx.datadir.db_path,
                                 interval=ctx.config.witness.add_checkpoint_interval)
    await submitter.start()
    app[SUBMITTER] = submitter
    try:
        yield
    finally:
        await submitter.stop()
        await service.run(service.db.close)
        service.executor.shutdown(wait=True)


async def node_json_witnessing(app: web.Application) -> dict:
    """What /node.json says about witnessing. `witnessing`: the add-checkpoint rate this
    log keeps to (the public witness network asks logs to declare it) and its witnesses'
    cosigner keys. `witness` (a node that witnesses): its cosigner key and, per log it
    witnesses, the rate that log declared (null: none declared)."""
    from node.store import witness as store

    ctx, service = app[NODE], app[WITNESS]

    def read():
        return store.list_log_witnesses(service.db), store.list_known_logs(service.db), store.log_rates(service.db)

    witnesses, known, rates = await service.run(read)
    doc = {"witnessing": {"add_checkpoint_interval": ctx.config.witness.add_checkpoint_interval,
                          "witnesses": [w.vkey for w in witnesses]}}
    if service.witness is not None:
        doc["witness"] = {"cosigner_key": service.witness.vkey,
                          "logs": [{"origin": origin, "add_checkpoint_interval": rates.get(origin)}
                                   for origin in sorted({k.origin for k in known})]}
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def post_add_checkpoint(request: web.Request) -> web.Response:
    from node.web.body import BodyError, read_body
    from node.witness.addcheckpoint import MAX_BODY_BYTES

    service = request.app[WITNESS]
    if service.witness is None:  # nothing to judge: the body is not read
        return web.Response(status=404, text="this node witnesses no log\n")
    try:
        # The whole declared body, within [http] body_timeout: never part of it.
        body = await read_body(request, MAX_BODY_BYTES)
    except BodyError:
        return web.Response(status=413, text=f"body larger than {MAX_BODY_BYTES} bytes\n")
    reply = await service.run(service.witness.add_checkpoint, body)
    return web.Response(status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type})


async def get_cosigned_checkpoints(request: web.Request) -> web.Response:
    from node.store import witness as store

    service = request.app[WITNESS]
    rows = await service.run(store.all_witness_latest, service.db)
    return web.json_response({
        "witness": service.witness.vkey if service.witness else None,
        "checkpoints": [{"origin": r.origin, "size": r.size, "root_hash": _b64(r.root_hash),
                         "note": r.note.decode("utf-8"), "cosigned_at": int(r.cosigned_at)} for r in rows],
    }, headers={"Cache-Control": "no-cache"})


async def get_cosigned_checkpoint(request: web.Request) -> web.Response:
    from node.store import witness as store

    origin = request.query.get("origin", "")
    service = request.app[WITNESS]
    row = await service.run(store.witness_latest, service.db, origin) if origin else None
    return _cosigned_note(row)


async def get_monitored_checkpoint(request: web.Request) -> web.Response:
    """C2SP tlog-witness: GET <monitoring prefix>/<lowercase hex SHA-256 of the
    origin>/checkpoint is the latest checkpoint this witness cosigned, with the log's
    signature and the witness's cosignature (and nothing nobody verified)."""
    from node.store import witness as store

    service = request.app[WITNESS]
    row = await service.run(store.witness_latest_by_origin_hash, service.db, request.match_info["origin_hash"])
    return _cosigned_note(row)


def _cosigned_note(row) -> web.Response:
    if row is None:
        return web.Response(status=404, text="no cosigned checkpoint for that origin\n")
    return web.Response(body=row.note, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def get_seen(request: web.Request) -> web.Response:
    from node.witness.seen import seen_document

    ctx = request.app[NODE]
    service = request.app[WITNESS]
    doc = await service.run(seen_document, service.db, ctx.config.node.origin)
    return web.json_response(doc, headers={"Cache-Control": "no-cache"})


#: Evidence documents served per request (each a few kilobytes), the newest.
MAX_EVIDENCE_SERVED = 16


async def get_evidence(request: web.Request) -> web.Response:
    import json

    from node.store import witness as store

    origin = request.query.get("origin")
    service = request.app[WITNESS]
    rows = await service.run(store.list_evidence, service.db)
    docs = [json.loads(text) for _, row_origin, text, _ in rows if origin is None or row_origin == origin]
    return web.json_response({"evidence": docs[-MAX_EVIDENCE_SERVED:]}, headers={"Cache-Control": "no-cache"})
