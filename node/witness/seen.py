"""Sharing the checkpoints a node has seen, so that split views come to light.

A log that shows one history to some nodes and another to others is caught as soon
as two of those nodes compare notes. Each node serves, at GET /witness/seen, the
latest verified checkpoint it holds for every origin:

    {"node": "<this node's origin>",
     "checkpoints": [{"origin": "...", "size": N, "note": "<signed note>",
                      "source": "witness" | "follower" | "auditor" | ..., "seen_at": <unix s>}]}

drawn from the witness's cosigned checkpoints, the follower's verified checkpoints
(node/store/follow.py), the federation list log's checkpoint accepted last
(node/federation/compare.py) and `seen_checkpoints`. A peer that
reads it verifies each note with the log key IT pinned and compares it with its own
view (`compare_views`); an inconsistency yields an evidence file
(protocol/evidence.py). Notes are never trusted for being listed here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from protocol import evidence as evidence_mod
from protocol.checkpoint import Checkpoint
from protocol.errors import ProtocolError
from protocol.note import Verifier, parse_note

MAX_SEEN_BYTES = 4 * 1024 * 1024


def seen_document(db, node_origin: str) -> dict:
    """The body of GET /witness/seen: per origin, the largest checkpoint known here."""
    best: dict[str, dict] = {}

    def offer(origin: str, size: int, note: bytes, source: str, seen_at: float | None) -> None:
        if origin not in best or size > best[origin]["size"]:
            best[origin] = {"origin": origin, "size": size, "note": note.decode("utf-8", "replace"),
                            "source": source, "seen_at": int(seen_at or 0)}

    for row in db.witness.list_seen():
        offer(row.origin, row.size, row.note, row.source, row.seen_at)
    for row in db.witness.all_witness_latest():
        offer(row.origin, row.size, row.note, "witness", row.cosigned_at)
    for followed in db.follow.list_logs():
        if followed.checkpoint_note is not None:
            offer(followed.origin, followed.size, followed.checkpoint_note, "follower", followed.verified_at)
    subscription = db.federation.subscription()
    if subscription is not None and subscription.checkpoint is not None:  # the federation list's log
        cp = Checkpoint.parse(parse_note(subscription.checkpoint).text)
        offer(cp.origin, cp.size, subscription.checkpoint, "federation list", subscription.accepted_at)
    return {"node": node_origin, "checkpoints": [best[o] for o in sorted(best)]}


def notes_for_origin(document: bytes | dict, origin: str) -> list[bytes]:
    """Every note a /witness/seen document lists for `origin` (unverified)."""
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            return []
    if not isinstance(document, dict) or not isinstance(document.get("checkpoints"), list):
        return []
    notes = [c["note"] for c in document["checkpoints"]
             if isinstance(c, dict) and c.get("origin") == origin and isinstance(c.get("note"), str)]
    # JSON can spell a lone surrogate ("\udddd"), which no UTF-8 note holds: not a note.
    return [note.encode("utf-8") for note in notes if _is_utf8(note)]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Comparison:
    consistent: bool
    evidence: dict | None = None
    problem: str | None = None   # a note that did not verify, or tiles that could not be had


async def compare_views(vkey: str, ours: bytes, theirs: bytes,
                        tree_nodes: Callable[[int, bytes], Awaitable[Callable[[int, int], bytes] | None]],
                        sources: list[str] | None = None) -> Comparison:
    """Compare our verified checkpoint note with one a peer has seen.

    `tree_nodes(size, root)` returns a node getter over VERIFIED tiles of the log's tree
    of that size (from local storage, or fetched and checked with
    protocol.tiles.verify_tiles), or None if it cannot. Notes that do not verify under
    `vkey` are reported as a problem, never as evidence."""
    verifier = Verifier.from_vkey(vkey)
    try:
        cp_ours, cp_theirs = evidence_mod.open_pair(verifier, ours, theirs)
    except ProtocolError as exc:
        return Comparison(True, problem=f"the peer's checkpoint does not verify: {exc}")
    if cp_ours.size == cp_theirs.size:
        doc = evidence_mod.check_pair(vkey, ours, theirs, None, sources, now=time.time())
        return Comparison(doc is None, doc)
    larger = cp_ours if cp_ours.size > cp_theirs.size else cp_theirs
    nodes = await tree_nodes(larger.size, larger.root_hash)
    if nodes is None:
        return Comparison(True, problem=f"could not get verified tiles of the tree of size {larger.size} "
                                        "to compare the two checkpoints")
    doc = evidence_mod.check_pair(vkey, ours, theirs, nodes, sources, now=time.time())
    return Comparison(doc is None, doc)
