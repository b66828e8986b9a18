"""Split-view evidence: a portable JSON file proving that a log signed two checkpoints
that cannot both be true.

A log equivocates (shows a "split view") when it signs two checkpoints of one origin
that no single append-only history can produce. Anyone who holds the log's verifier
key can check an evidence file offline with `ncii-node audit verify-evidence FILE`
(exit status 0: the evidence holds, the log equivocated). The file says:

    {
      "type": "ncii-node/split-view-evidence/v1",
      "origin": "<log origin>",
      "vkey": "<the log's verifier key>",
      "checkpoints": ["<signed note A>", "<signed note B>"],     # as served, UTF-8
      "proof": {"kind": "same-size"}
            or {"kind": "consistency", "old_size": n1, "new_size": n2,
                "old_root_in_new_tree": "<base64>", "hashes": ["<base64>", ...]},
      "observed": [{"source": "...", "at": "<RFC 3339>"}, ...]   # context only, never checked
    }

Why it proves equivocation (assuming SHA-256 collision resistance and Ed25519
unforgeability), with A the smaller checkpoint (n1, R1) and B the larger (n2, R2),
both verifying under `vkey` for `origin` (the key's name need not be the origin:
C2SP only says it SHOULD, and what matters is what this key signed):
  * same-size: n1 == n2 and R1 != R2. One tree size has exactly one root.
  * consistency: n1 < n2. `hashes` is an RFC 6962 consistency proof, computed from the
    log's own tree of size n2, that proves the tree (n2, R2) extends a tree of size n1
    whose root is X = `old_root_in_new_tree`. Since the proof verifies against the
    signed R2, X is the root of the first n1 leaves of the log's tree B; X != R1, so
    A is not a prefix of B. (The proof is taken from the log itself -- its tiles --
    so the log cannot claim the evidence was made up: only the log's own signature
    over R2 makes the hashes binding.)
  * n1 == 0 is the degenerate case: the empty tree has one root, SHA-256("").

Nothing in "observed" is checked: it tells a person where and when each note was
seen. spec/parts/witness.md is the normative description.
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from typing import Callable

from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.errors import KeyFormatError, NoteError, CheckpointError, ProofError, ProtocolError
from protocol.merkle import EMPTY_ROOT, consistency_proof, range_hash, verify_consistency
from protocol.note import Verifier, decode_base64_strict, parse_note

EVIDENCE_TYPE = "ncii-node/split-view-evidence/v1"
MAX_EVIDENCE_BYTES = 1 << 20  # two notes and at most 64 hashes: far below this
MAX_PROOF_HASHES = 130        # a consistency proof between uint64 sizes has fewer

NodeGetter = Callable[[int, int], bytes]


class EvidenceError(ProtocolError):
    """The file is not valid evidence (malformed, wrong signatures, or it proves nothing)."""


@dataclass(frozen=True)
class VerifiedEvidence:
    origin: str
    vkey: str
    smaller: Checkpoint
    larger: Checkpoint
    kind: str
    explanation: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _observed(sources: list | None) -> list[dict]:
    """Each source is a text (seen now) or (text, POSIX time it was seen, or None for now)."""
    out = []
    for source in sources or []:
        text, when = source if isinstance(source, tuple) else (source, None)
        at = _now() if when is None else datetime.datetime.fromtimestamp(
            when, datetime.timezone.utc).isoformat(timespec="seconds")
        out.append({"source": text, "at": at})
    return out


def _document(origin: str, vkey: str, note_a: bytes, note_b: bytes, proof: dict,
              sources: list[str] | None) -> dict:
    return {
        "type": EVIDENCE_TYPE,
        "origin": origin,
        "vkey": vkey,
        "checkpoints": [note_a.decode("utf-8"), note_b.decode("utf-8")],
        "proof": proof,
        "observed": _observed(sources),
    }


def open_pair(verifier: Verifier, note_a: bytes, note_b: bytes) -> tuple[Checkpoint, Checkpoint]:
    """Open two checkpoint notes that must both verify under one log key and carry one
    origin. The key's name need not be the origin (C2SP: SHOULD): evidence is about
    what this key signed for this origin, whatever the key is called."""
    origin = Checkpoint.parse(parse_note(note_a).text).origin
    cp_a, _ = open_checkpoint(note_a, [verifier], origin=origin, key_name_is_origin=False)
    cp_b, _ = open_checkpoint(note_b, [verifier], origin=origin, key_name_is_origin=False)
    return cp_a, cp_b


def check_pair(vkey: str, note_a: bytes, note_b: bytes, larger_tree: NodeGetter | None,
               sources: list[str] | None = None) -> dict | None:
    """Compare two checkpoint notes of one log (both must verify under `vkey`).

    Returns an evidence document (dict) if they are inconsistent, None if they are
    consistent. `larger_tree(level, index)` gives node hashes of the log's tree at the
    larger of the two sizes, read from tiles the caller has ALREADY verified against
    that checkpoint (protocol.tiles.verify_tiles / TileNodes); it is needed only when
    the sizes differ, and if it is None then, UsageError-like ValueError is raised so
    the caller fetches the tiles first."""
    cp_a, cp_b = open_pair(Verifier.from_vkey(vkey), note_a, note_b)
    if cp_a.size > cp_b.size:
        cp_a, cp_b, note_a, note_b = cp_b, cp_a, note_b, note_a
    if cp_a.size == cp_b.size:
        if cp_a.root_hash == cp_b.root_hash:
            return None
        return _document(cp_a.origin, vkey, note_a, note_b, {"kind": "same-size"}, sources)
    if cp_a.size == 0:
        if cp_a.root_hash == EMPTY_ROOT:
            return None
        return _document(cp_a.origin, vkey, note_a, note_b,
                         {"kind": "consistency", "old_size": 0, "new_size": cp_b.size,
                          "old_root_in_new_tree": _b64(EMPTY_ROOT), "hashes": []}, sources)
    if larger_tree is None:
        raise ValueError(f"comparing sizes {cp_a.size} and {cp_b.size} needs the verified tiles "
                         f"of the tree of size {cp_b.size}")
    prefix_root = range_hash(0, cp_a.size, larger_tree)
    if prefix_root == cp_a.root_hash:
        return None
    proof = consistency_proof(cp_a.size, cp_b.size, larger_tree)
    # Self-check before publishing an accusation: the proof must bind prefix_root to R2.
    verify_consistency(cp_a.size, cp_b.size, proof, prefix_root, cp_b.root_hash)
    return _document(cp_a.origin, vkey, note_a, note_b,
                     {"kind": "consistency", "old_size": cp_a.size, "new_size": cp_b.size,
                      "old_root_in_new_tree": _b64(prefix_root), "hashes": [_b64(h) for h in proof]},
                     sources)


def dumps(evidence: dict) -> str:
    return json.dumps(evidence, indent=2, ensure_ascii=False) + "\n"


def _field(obj: dict, name: str, kind: type, what: str):
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise EvidenceError(f"evidence field {what!r} is missing or not a {kind.__name__}")
    return value


def _hash(text: object, what: str) -> bytes:
    raw = decode_base64_strict(text) if isinstance(text, str) else None
    if raw is None or len(raw) != 32:
        raise EvidenceError(f"{what} must be a 32-byte hash in canonical base64")
    return raw


def verify_evidence(data: bytes | str) -> VerifiedEvidence:
    """Check an evidence file. Returns what it proves; raises EvidenceError if it
    proves nothing (malformed, a signature fails, or the checkpoints are consistent)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EvidenceError(f"evidence file is {len(data)} bytes; real evidence is a few kilobytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EvidenceError(f"evidence is not a JSON document: {exc}") from None
    except RecursionError:
        raise EvidenceError("evidence is JSON nested too deeply to be read; real evidence is flat") from None
    if not isinstance(doc, dict):
        raise EvidenceError("evidence must be a JSON object")
    if doc.get("type") != EVIDENCE_TYPE:
        raise EvidenceError(f"evidence \"type\" must be {EVIDENCE_TYPE!r}")
    origin = _field(doc, "origin", str, "origin")
    vkey = _field(doc, "vkey", str, "vkey")
    notes = _field(doc, "checkpoints", list, "checkpoints")
    proof = _field(doc, "proof", dict, "proof")
    if len(notes) != 2 or not all(isinstance(n, str) for n in notes):
        raise EvidenceError("evidence \"checkpoints\" must hold exactly two signed notes (strings)")
    try:
        verifier = Verifier.from_vkey(vkey)
    except KeyFormatError as exc:
        raise EvidenceError(f"evidence vkey: {exc}") from None
    cps = []
    for i, note in enumerate(notes):
        try:
            raw = note.encode("utf-8")
        except UnicodeEncodeError:  # JSON can spell a lone surrogate ("\udddd"); no note holds one
            raise EvidenceError(f"checkpoint {i + 1} is not UTF-8 text") from None
        try:
            cp, _ = open_checkpoint(raw, [verifier], origin=origin, key_name_is_origin=False)
        except (NoteError, CheckpointError) as exc:
            raise EvidenceError(f"checkpoint {i + 1} is not validly signed by {vkey}: {exc}") from None
        cps.append(cp)
    small, large = sorted(cps, key=lambda cp: cp.size)
    kind = proof.get("kind")
    if small.size == large.size:
        if kind != "same-size":
            raise EvidenceError(f"both checkpoints have size {small.size}: the proof kind must be \"same-size\"")
        if small.root_hash == large.root_hash:
            raise EvidenceError(f"both checkpoints have size {small.size} and the same root: they agree")
        return VerifiedEvidence(origin, vkey, small, large, kind,
                                f"the log signed two different roots for tree size {small.size}: "
                                f"{small.root_hash.hex()} and {large.root_hash.hex()}")
    if kind != "consistency":
        raise EvidenceError("checkpoints of different sizes need a proof of kind \"consistency\"")
    if proof.get("old_size") != small.size or proof.get("new_size") != large.size:
        raise EvidenceError(f"the proof must be from size {small.size} to size {large.size}")
    prefix_root = _hash(proof.get("old_root_in_new_tree"), "old_root_in_new_tree")
    hashes = proof.get("hashes")
    if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
        raise EvidenceError("proof \"hashes\" must be a list of base64 hashes")
    path = [_hash(h, f"proof hash {i}") for i, h in enumerate(hashes)]
    if small.size == 0:
        if path or prefix_root != EMPTY_ROOT:
            raise EvidenceError("from size 0 the proof is empty and the old root is SHA-256 of nothing")
    else:
        try:
            verify_consistency(small.size, large.size, path, prefix_root, large.root_hash)
        except ProofError as exc:
            raise EvidenceError(f"the consistency proof does not bind the old root to the signed tree "
                                f"of size {large.size}: {exc}") from None
    if prefix_root == small.root_hash:
        raise EvidenceError(f"the tree of size {large.size} extends the checkpoint of size {small.size}: "
                            "the checkpoints are consistent")
    return VerifiedEvidence(origin, vkey, small, large, "consistency",
                            f"the log's signed tree of size {large.size} begins with a tree of size "
                            f"{small.size} whose root is {prefix_root.hex()}, but the log also signed "
                            f"root {small.root_hash.hex()} for size {small.size}")
