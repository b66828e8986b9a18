"""k-of-n cosignature policies: does a checkpoint carry enough witness cosignatures?

A follower that requires witnesses calls `require_cosignatures(note, verifiers, k)`
(or `check_followed_checkpoint(db, origin, note)`, which reads the policy stored with
`ncii-node witness require`) AFTER the log's own signature has been verified and
BEFORE it accepts the checkpoint. A checkpoint that fails is refused like a bad
signature: nothing from it is applied, and the next round tries again (the publisher
adds cosignatures shortly after publishing).

Only cosignatures from the listed witnesses count, each witness at most once, and a
cosignature line from a listed witness that does not verify rejects the note (it was
altered). Lines from other keys are ignored (C2SP signed-note).
"""

from __future__ import annotations

from typing import Iterable

from protocol.cosignature import CosignatureVerifier
from protocol.errors import CosignatureError
from protocol.note import parse_note


class NotEnoughCosignatures(CosignatureError):
    """A checkpoint has fewer valid cosignatures from trusted witnesses than required."""


def count_cosignatures(note_bytes: bytes, witnesses: Iterable[CosignatureVerifier]) -> dict[str, int]:
    """Valid cosignatures on the note: {witness vkey: timestamp}. Raises
    CosignatureError if a line claiming to be from a listed witness fails."""
    note = parse_note(note_bytes)
    found: dict[str, int] = {}
    for witness in set(witnesses):
        if any(s.name == witness.name and s.key_id == witness.key_id for s in note.signatures):
            found[witness.vkey] = witness.verify(note)
    return found


def require_cosignatures(note_bytes: bytes, witnesses: Iterable[CosignatureVerifier | str], k: int) -> dict[str, int]:
    """Raise NotEnoughCosignatures unless at least k of `witnesses` (verifiers or
    cosigner vkey strings) validly cosigned the checkpoint note. Returns the valid
    cosignatures ({vkey: timestamp}). k <= 0 always passes."""
    verifiers = [w if isinstance(w, CosignatureVerifier) else CosignatureVerifier.from_vkey(w) for w in witnesses]
    if k <= 0:
        return {}
    found = count_cosignatures(note_bytes, verifiers)
    if len(found) < k:
        raise NotEnoughCosignatures(
            f"checkpoint carries {len(found)} valid cosignature(s) from the {len(set(verifiers))} trusted "
            f"witness(es); {k} are required (the publisher may not have collected them yet)")
    return found


def check_followed_checkpoint(db, origin: str, note_bytes: bytes) -> dict[str, int]:
    """Apply the stored policy for `origin` (none stored: passes). For the follower."""
    from node.store import witness as store

    policy = store.get_follow_policy(db, origin)
    if policy is None:
        return {}
    witnesses, k = policy
    return require_cosignatures(note_bytes, witnesses, k)
