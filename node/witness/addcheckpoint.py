"""The witness side of C2SP tlog-witness: judge an add-checkpoint request, cosign.

Request body (every line ends in "\\n"):

    old <size>            decimal, no leading zeroes ("0" for zero)
    <base64 hash>         0..63 consistency proof lines (RFC 6962, old size -> new size)
    <empty line>
    <signed checkpoint note>

Answers, in the order the checks are made (spec/parts/witness.md §2.2, C2SP
tlog-witness):

    400  body malformed (old line, proof lines, note syntax, checkpoint text), or
         old size > checkpoint size
    404  the checkpoint's origin is not a log this witness knows
    403  no signature from a trusted key of that log verifies, or a line by a
         trusted key does not verify (lines by other keys are ignored)
    409  old size != size of the latest checkpoint we cosigned for the origin (body:
         that size + "\\n", Content-Type text/x.tlog.size)
    422  a size-0 checkpoint whose root is not the empty tree's; a proof line with
         old size 0; same size as the stored checkpoint but another root (or a
         non-empty proof); a consistency proof that does not verify
    200  one cosignature line per witness key ("— <name> <base64>\\n"), after the new
         checkpoint is durably stored

What is stored and served to monitors is the checkpoint text with only the lines
this witness verified: the log's (by the keys trusted for the origin) and its own
cosignature. Lines by unknown keys are ignored, as C2SP says, and never kept: a
note with 16 signature lines is accepted and cannot overflow what we store.

Invariant: the check against the stored checkpoint and the update of it happen in one
`BEGIN IMMEDIATE` transaction (node.store.witness.witness_update), so concurrent
requests can never move the witness's view of a log backwards, and a cosignature is
returned only after the checkpoint it covers is committed (synchronous=FULL).

A validly signed checkpoint that conflicts with the stored one at the same size is a
split view: the evidence file (node/witness/evidence.py) is stored as well.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from node.store import witness as store
from node.witness import evidence as evidence_mod
from protocol.checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.errors import CheckpointError, KeyFormatError, NoteError, ProofError
from protocol.merkle import EMPTY_ROOT, verify_consistency
from protocol.note import MAX_SIGNATURES, Note, Verifier, decode_base64_strict, parse_note, parse_signature_text

log = logging.getLogger(__name__)

MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 64 * 1024   # an old line, 63 hashes and a note with 16 signatures fit easily
SIZE_CONTENT_TYPE = "text/x.tlog.size"

_OLD_LINE = re.compile(rb"old (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class AddCheckpointRequest:
    old_size: int
    proof: list[bytes]
    note: bytes


def parse_request(body: bytes) -> AddCheckpointRequest:
    """Split an add-checkpoint body; raises BadRequest naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"request body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    end = body.find(b"\n\n")
    if end < 0:
        raise BadRequest("no empty line between the old size / proof lines and the checkpoint")
    header, note = body[:end].split(b"\n"), body[end + 2:]
    match = _OLD_LINE.fullmatch(header[0])
    if not match:
        raise BadRequest("the first line must be \"old <size>\" (decimal, no leading zeroes)")
    old_size = int(match.group(1))
    if old_size > MAX_TREE_SIZE:
        raise BadRequest(f"old size {old_size} is 2**63 or more")
    lines = header[1:]
    if len(lines) > MAX_PROOF_LINES:
        raise BadRequest(f"{len(lines)} consistency proof lines; at most {MAX_PROOF_LINES} are allowed")
    proof = []
    for number, line in enumerate(lines, start=2):
        raw = decode_base64_strict(line)
        if raw is None or len(raw) != 32:
            raise BadRequest(f"line {number}: a consistency proof line is one 32-byte hash in base64")
        proof.append(raw)
    return AddCheckpointRequest(old_size, proof, note)


def encode_request(old_size: int, proof: list[bytes], note: bytes) -> bytes:
    """The body a log sends (the publisher side uses this)."""
    import base64

    lines = [b"old %d\n" % old_size] + [base64.b64encode(h) + b"\n" for h in proof]
    return b"".join(lines) + b"\n" + note


def verified_lines(opened: Note) -> list:
    """The signature lines of an opened note made by the keys that verified it (the
    log's): what a witness keeps. At most MAX_SIGNATURES - 1, leaving room for ours."""
    keys = {(v.name, v.key_id) for v in opened.verified_by}
    return [s for s in opened.signatures if (s.name, s.key_id) in keys][:MAX_SIGNATURES - 1]


def _size_reply(size: int) -> Reply:
    return Reply(409, b"%d\n" % size, SIZE_CONTENT_TYPE)


class Witness:
    """One witness key over one database connection. `add_checkpoint(body)` is
    synchronous and does database work: call it off the event loop."""

    def __init__(self, signer: CosignatureSigner, db, clock=time.time):
        self.signer = signer
        self.db = db
        self.clock = clock
        self._traffic: dict[str, tuple[float, int]] = {}   # origin -> (window start, signed requests)

    @property
    def vkey(self) -> str:
        return self.signer.verifier_key()

    def add_checkpoint(self, body: bytes) -> Reply:
        try:
            request = parse_request(body)
            note = parse_note(request.note)
            checkpoint = Checkpoint.parse(note.text)
        except BadRequest as exc:
            return Reply(400, f"{exc}\n".encode())
        except (NoteError, CheckpointError) as exc:
            return Reply(400, f"malformed checkpoint: {exc}\n".encode())
        origin = checkpoint.origin
        verifiers = []
        for vkey in store.known_vkeys(self.db, origin):
            try:
                verifiers.append(Verifier.from_vkey(vkey))
            except KeyFormatError:
                log.error("witness: stored key %r for %s is not a valid vkey; ignored", vkey, origin)
        if not verifiers:
            return Reply(404, f"unknown log {origin!r}\n".encode())
        try:
            # The keys were configured for this origin: their names need not be the
            # origin (C2SP tlog-checkpoint: SHOULD), so a conformant log we did not
            # write can be witnessed.
            _, opened = open_checkpoint(request.note, verifiers, origin=origin, key_name_is_origin=False)
        except (NoteError, CheckpointError) as exc:
            return Reply(403, f"no valid signature from a known key of {origin}: {exc}\n".encode())
        self._count_request(origin)
        if request.old_size > checkpoint.size:
            return Reply(400, f"old size {request.old_size} is larger than the checkpoint size "
                              f"{checkpoint.size}\n".encode())
        log_lines = verified_lines(opened)

        refusal: list[tuple[int, str]] = []
        evidence: list[str] = []

        def refuse(reason: str) -> tuple[Reply, None]:
            refusal.append((422, reason))
            return Reply(422, f"{reason}\n".encode()), None

        def decide(stored: store.CosignedCheckpoint | None):
            stored_size = stored.size if stored else 0
            if request.old_size != stored_size:
                return _size_reply(stored_size), None
            if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
                return refuse("a checkpoint of size 0 must have the empty tree's root (SHA-256 of nothing)")
            if request.old_size == 0 and request.proof:
                return refuse("the consistency proof must be empty when the old size is 0")
            if checkpoint.size == stored_size:
                stored_root = stored.root_hash if stored else EMPTY_ROOT
                if checkpoint.root_hash != stored_root:
                    if stored is not None:
                        doc = self._evidence(stored.note, request.note)
                        if doc is not None:
                            evidence.append(doc)
                    return refuse(f"checkpoint of size {checkpoint.size} has root {checkpoint.root_hash.hex()}, "
                                  f"but this witness cosigned root {stored_root.hex()} for that size")
                if request.proof:
                    # RFC 6962's proof between equal sizes is empty: anything else is not one.
                    return refuse(f"consistency proof does not verify: a proof from size {stored_size} to "
                                  f"itself is empty, not {len(request.proof)} hash(es)")
            elif request.old_size > 0:
                try:
                    verify_consistency(request.old_size, checkpoint.size, request.proof,
                                       stored.root_hash, checkpoint.root_hash)
                except ProofError as exc:
                    return refuse(f"consistency proof does not verify: {exc}")
            now = int(self.clock())
            line = self.signer.cosign(note.text, now)
            kept = Note(note.text, log_lines + [parse_signature_text(line)]).to_bytes()
            return Reply(200, (line + "\n").encode("utf-8")), (checkpoint.size, checkpoint.root_hash,
                                                                 kept, float(now))

        reply = store.witness_update(self.db, origin, decide)
        if refusal:
            status, reason = refusal[0]
            store.record_refusal(self.db, origin, status, reason, body)
            log.warning("witness: refused a validly signed checkpoint of %s (%d): %s", origin, status, reason)
        for doc in evidence:
            if store.store_evidence(self.db, origin, doc):
                log.error("witness: SPLIT VIEW of %s: two validly signed checkpoints of size %d with "
                          "different roots; evidence stored", origin, checkpoint.size)
        if reply.status == 200:
            store.record_seen(self.db, origin, checkpoint.size, checkpoint.root_hash,
                              Note(note.text, log_lines).to_bytes(), "witness")
        return reply

    def _count_request(self, origin: str) -> None:
        """Say so (once per window) when a log sends more validly signed requests than
        the rate it declared (`witness logs add --interval`) allows: a round is one
        request and one more after a 409. Nothing is refused for it: anyone can replay
        a log's signed checkpoints, and refusing would let them starve the log."""
        interval = store.log_rate(self.db, origin)
        if interval is None:
            return
        now = self.clock()
        window = max(60.0, 10 * interval)
        start, count = self._traffic.get(origin, (now, 0))
        if now - start >= window:
            start, count = now, 0
        count += 1
        self._traffic[origin] = (start, count)
        if count == int(2 * window / interval) + 3:
            log.warning("witness: log %s sent %d add-checkpoint requests in %.0f s; it declared at most one "
                        "round every %g s", origin, count, now - start, interval)

    def _evidence(self, stored_note: bytes, new_note: bytes) -> str | None:
        """Evidence for two same-size checkpoints: signed by which of the log's keys?
        The one that verifies both (the stored note carries our cosignature too, which
        open_checkpoint ignores)."""
        cp = Checkpoint.parse(parse_note(new_note).text)
        for vkey in store.known_vkeys(self.db, cp.origin):
            try:
                doc = evidence_mod.check_pair(vkey, stored_note, new_note, None, ["this witness (stored)",
                                                                                   "add-checkpoint request"])
            except (NoteError, CheckpointError, KeyFormatError):
                continue
            if doc is not None:
                return evidence_mod.dumps(doc)
        return None  # signed by two different keys of the log (a rotation): no one-key evidence
