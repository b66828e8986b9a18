"""Acknowledgement evidence: a portable JSON file proving that a node acknowledged a
tree that the acknowledged log never had (spec/parts/acknowledgements.md §7).

An acknowledgement (protocol/acknowledgements.py) is a node's signed, logged statement
"I verified and applied the tree (N, R) of log H". If H's own signed tree of size
M >= N begins with a tree of N entries whose root is not R, then either H showed the
acknowledger another history (a split view: the acknowledger holds H's signed note of
(N, R)) or the acknowledger's statement is false. Either way someone lied, and this
file shows it to anyone who holds the two logs' verifier keys:

    {
      "type": "ncii-node/acknowledgement-evidence/v1",
      "origin": "<H>", "vkey": "<H's log key>",
      "checkpoint": "<H's signed note of size M>",
      "acknowledger": {"origin": "<P>", "vkey": "<P's log key>",
                       "proof": "<C2SP tlog-proof of the acknowledgement entry in P's log>"},
      "proof": {"kind": "same-size"}                                   (N == M)
            or {"kind": "consistency", "size": N, "new_size": M,
                "root_in_new_tree": "<base64>", "hashes": ["<base64>", ...]},   (N < M)
      "observed": [{"source": "...", "at": "<RFC 3339>"}]    context only, never checked
    }

Why it proves it: the tlog-proof shows P's log (signed by P's key) holds the
acknowledgement entry, whose cosignature verifies (so P's acknowledgement key made
it); H's note verifies under H's key; for N < M the RFC 6962 consistency proof binds
`root_in_new_tree` as the root of H's first N entries to H's signed root, and it is
not the acknowledged root. `ncii-node audit verify-evidence FILE` checks it. Pure, like protocol/evidence.py (the
auditor, node/audit/acks.py, builds it; times in "observed" come from the caller).
"""

from __future__ import annotations

import base64
import json

from .acknowledgements import verify_acknowledgement
from .checkpoint import open_checkpoint
from .entries import Acknowledgement, decode_entry
from .errors import ProofError, ProtocolError
from .evidence import MAX_EVIDENCE_BYTES, MAX_PROOF_HASHES, EvidenceError, observed
from .merkle import consistency_proof, range_hash, verify_consistency
from .note import Verifier, decode_base64_strict
from .policy import Policy
from .tlogproof import verify_proofs

ACK_EVIDENCE_TYPE = "ncii-node/acknowledgement-evidence/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_ack_evidence(vkey: str, note: bytes, size: int, tree, ack: Acknowledgement, acknowledger: str,
                       acknowledger_vkey: str, ack_proof: bytes, sources: list | None = None, *,
                       now: float | None = None) -> dict | None:
    """The evidence document if `ack` (proven in the acknowledger's log by `ack_proof`)
    names a tree of the log that its signed `note` (of `size` entries, whose node hashes
    `tree` gives, verified by the caller) contradicts; None if it does not."""
    if ack.size > size:
        return None  # not provable from this checkpoint: the log may have grown to it since
    root = range_hash(0, ack.size, tree)
    if root == ack.root_hash:
        return None
    if ack.size == size:
        proof: dict = {"kind": "same-size"}
    else:
        hashes = consistency_proof(ack.size, size, tree)
        proof = {"kind": "consistency", "size": ack.size, "new_size": size, "root_in_new_tree": _b64(root),
                 "hashes": [_b64(h) for h in hashes]}
    return {"type": ACK_EVIDENCE_TYPE, "origin": ack.origin, "vkey": vkey, "checkpoint": note.decode("utf-8"),
            "acknowledger": {"origin": acknowledger, "vkey": acknowledger_vkey, "proof": ack_proof.decode("utf-8")},
            "proof": proof, "observed": observed(sources, now)}


def verify_ack_evidence(doc: dict) -> str:
    """Check an acknowledgement evidence document; returns what it proves, in words.
    Raises EvidenceError when it proves nothing."""
    try:
        origin, vkey, note = doc["origin"], doc["vkey"], doc["checkpoint"]
        who = doc["acknowledger"]
        by, by_vkey, ack_proof = who["origin"], who["vkey"], who["proof"]
        proof = doc["proof"]
        if not all(isinstance(x, str) for x in (origin, vkey, note, by, by_vkey, ack_proof)) \
                or not isinstance(proof, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise EvidenceError("acknowledgement evidence needs origin, vkey, checkpoint, acknowledger {origin, vkey, "
                            "proof} and proof") from None
    try:
        for text in (origin, vkey, note, by, by_vkey, ack_proof):
            text.encode("utf-8")
    except UnicodeEncodeError:  # JSON can spell a lone surrogate ("\udddd"); no note, key or proof holds one
        raise EvidenceError("acknowledgement evidence holds text that is not Unicode (a lone surrogate)") from None
    try:
        cp, _ = open_checkpoint(note.encode("utf-8"), [Verifier.from_vkey(vkey)], origin=origin,
                                key_name_is_origin=False)
        verified = verify_proofs(ack_proof.encode("utf-8"), Policy.k_of_n([], 0), origin=by,
                                 log_keys=[Verifier.from_vkey(by_vkey)])
    except ProtocolError as exc:
        raise EvidenceError(f"a signature or proof does not verify: {exc}") from None
    if len(verified.entries) != 1 or verified.entries[0].entry is None:
        raise EvidenceError("the acknowledger's proof must carry exactly one entry, with its bytes")
    try:
        ack = decode_entry(verified.entries[0].entry)
        if not isinstance(ack, Acknowledgement):
            raise EvidenceError("the proven entry is not an acknowledgement")
        verify_acknowledgement(ack, by)
    except ProtocolError as exc:
        raise EvidenceError(f"the proven entry is not a valid acknowledgement: {exc}") from None
    if ack.origin != origin:
        raise EvidenceError(f"the acknowledgement is about {ack.origin}, not {origin}")
    if ack.size > cp.size:
        raise EvidenceError(f"the acknowledged tree ({ack.size} entries) is larger than the checkpoint given "
                            f"({cp.size}): nothing is proven")
    if ack.size == cp.size:
        if proof.get("kind") != "same-size":
            raise EvidenceError("same sizes need a proof of kind \"same-size\"")
        root = cp.root_hash
    else:
        if proof.get("kind") != "consistency" or proof.get("size") != ack.size or proof.get("new_size") != cp.size:
            raise EvidenceError(f"a proof of kind \"consistency\" from size {ack.size} to {cp.size} is needed")
        root = decode_base64_strict(proof.get("root_in_new_tree") or "")
        hashes = proof.get("hashes")
        if root is None or len(root) != 32 or not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
            raise EvidenceError("the consistency proof is malformed")
        path = [decode_base64_strict(h) if isinstance(h, str) else None for h in hashes]
        if any(h is None or len(h) != 32 for h in path):
            raise EvidenceError("the consistency proof hashes must be 32-byte base64 hashes")
        try:
            verify_consistency(ack.size, cp.size, path, root, cp.root_hash)
        except ProofError as exc:
            raise EvidenceError(f"the consistency proof does not verify: {exc}") from None
    if root == ack.root_hash:
        raise EvidenceError("the log's tree does begin with the acknowledged tree: nothing is wrong")
    return (f"{by} acknowledged, in its own signed log, having applied a tree of {ack.size} entries of {origin} "
            f"with root {_b64(ack.root_hash)}; but {origin}'s signed tree of size {cp.size} begins with a tree of "
            f"{ack.size} entries whose root is {_b64(root)}. Either {origin} showed {by} another history (a split "
            f"view), or {by}'s acknowledgement is false.")


def load(data: bytes) -> dict | None:
    """The document if `data` is JSON of the acknowledgement evidence type, else None."""
    if len(data) > MAX_EVIDENCE_BYTES:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("type") == ACK_EVIDENCE_TYPE else None
