"""A person's receipt: an offline proof that their case's entries are in the helpline's
log (spec/parts/acknowledgements.md §5, spec/parts/cases.md §7).

The receipt is a C2SP tlog-proof (one entry) or our bundle of them under one checkpoint
(protocol/tlogproof.py; node/witness/proofs.py builds it from the tiles on disk), so
`ncii-node audit verify-proof` and the page verify it with the code they use for any
proof. It holds the case's entries (the fingerprints; after a withdrawal, the
withdrawal entries too), their inclusion proofs, and the checkpoint with every
signature that says something about it:

  - the log's signature;
  - the helpline's publication cosignature (its acknowledgement key, the time the
    checkpoint was recorded as published: the same line it served);
  - the cosignatures of this log's witnesses that cosigned that very checkpoint;
  - the acknowledgements of the platforms that acknowledged that very checkpoint,
    lifted out of their logs as C2SP cosignature lines.

Among the checkpoints that hold every entry (the first, the latest, those witnesses
cosigned, the first few platforms acknowledged), the one with the most of these lines
is chosen, the earliest on a tie. No case number, PIN or anything else of the person
is in it: only log entries, hashes and signatures.

`receipt_policy` is the C2SP tlog-policy to check receipts with: the log's key, the
helpline's acknowledgement key (`published-by:<origin>`), the witnesses' keys, and each
followed platform's acknowledgement key as its log states it (`applied-by:<name>`);
quorum `none` -- a receipt proves inclusion with the log's signature alone, and says
which of the others cosigned.
"""

from __future__ import annotations

import re

from node.store import follow as follow_store
from node.store import log as log_store
from node.store import witness as witness_store
from node.witness.proofs import ProofUnavailable, best_cosigned_checkpoint, proofs_from_disk
from protocol.acknowledgements import ack_vkey, cosignature_line
from protocol.cosignature import CosignatureVerifier
from protocol.entries import Acknowledgement
from protocol.errors import ProtocolError
from protocol.note import SIGNATURE_TYPE_COSIGNATURE_V1, encode_vkey
from protocol.tlogproof import TlogProofs

PUBLISHED_BY = "published-by:"
APPLIED_BY = "applied-by:"
MAX_ACKED_CANDIDATES = 16   # acknowledged checkpoints considered, the earliest first
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._:/-]+")


def policy_name(text: str) -> str:
    """A tlog-policy name (no spaces) from an operator's name for a platform."""
    return _NAME_CHARS.sub("-", text).strip("-") or "platform"


def build_receipt(db, tiles, ack_signer, origin: str, indices: list[int]) -> TlogProofs:
    """The receipt of entries `indices` of this node's own log (see the module
    docstring). Raises ProofUnavailable."""
    needed = max(indices) + 1
    first = db.execute("SELECT MIN(size) FROM log_checkpoints WHERE size >= ?", (needed,)).fetchone()[0]
    acked = follow_store.acked_sizes(db, origin, needed)[:MAX_ACKED_CANDIDATES]

    def lines(size: int, text: str) -> list[tuple[str, str]]:
        out = []
        stored = log_store.checkpoint_at(db, size)
        if stored is not None:
            out.append((PUBLISHED_BY + origin, ack_signer.cosign(text, int(stored.published_at))))
        names = {f.origin: f.name or f.origin for f in follow_store.list_logs(db)}
        for row in follow_store.acks_at_size(db, origin, size):
            ack = Acknowledgement(row.origin, row.size, row.root_hash, row.time_ms // 1000, row.time_ms % 1000,
                                  row.public_key, row.signature)
            line = cosignature_line(ack, row.from_origin)
            try:
                CosignatureVerifier.from_vkey(ack_vkey(ack, row.from_origin)).verify_line(text, line)
            except ProtocolError:
                continue  # not about this very checkpoint text: keep the receipt valid
            out.append((APPLIED_BY + names.get(row.from_origin, row.from_origin), line))
        return out

    candidate = best_cosigned_checkpoint(db, needed, more_sizes=[s for s in [first, *acked] if s],
                                         more_lines=lines, prefer_smaller=True)
    if candidate is None:
        raise ProofUnavailable(f"entry {needed - 1} is not in a published checkpoint yet")
    return proofs_from_disk(db, tiles, candidate.note, indices)


def receipt_policy(db, origin: str, log_vkey: str, ack_vkey_: str) -> bytes:
    """The C2SP tlog-policy that names every key a receipt of this log can carry."""
    lines = [f"# Receipts of {origin}: check one with `ncii-node audit verify-proof RECEIPT --policy THIS-FILE`.",
             "# A receipt is valid with the log's signature alone (quorum none); the other keys say who",
             "# else signed the checkpoint: the helpline when it published it, its witnesses, and the",
             "# platforms that acknowledged applying it (their keys as their own logs state them).",
             f"log {log_vkey}",
             f"witness {PUBLISHED_BY}{origin} {ack_vkey_}"]
    seen = {ack_vkey_}
    for w in witness_store.list_log_witnesses(db):
        if w.vkey not in seen:
            seen.add(w.vkey)
            lines.append(f"witness witness:{policy_name(w.name or w.vkey.split('+', 1)[0])} {w.vkey}")
    keys = follow_store.ack_keys(db)
    used: set[str] = set()
    for followed in follow_store.list_logs(db):
        key = keys.get(followed.origin)
        if key is None:
            continue
        vkey = encode_vkey(followed.origin, SIGNATURE_TYPE_COSIGNATURE_V1, key)
        if vkey in seen:
            continue
        seen.add(vkey)
        name = APPLIED_BY + policy_name(followed.name or followed.origin)
        while name in used:
            name += "_"
        used.add(name)
        lines.append(f"witness {name} {vkey}")
    lines.append("quorum none")
    return ("\n".join(lines) + "\n").encode("utf-8")
