"""What entries of one log may do to each other: the rules a follower applies and an
auditor checks, written once (spec/parts/following.md §4, spec/parts/witness.md §6).

    split_targets(withdrawal, index)     -> (earlier, not_earlier) indices it names
    rotation_decision(origin, current_vkey, announcement) -> (honoured, reason)

A withdrawal can only withdraw entries published before it in the same log: a target
at or after its own index is ignored by followers and is a violation for an auditor.
A key rotation (an announcement naming a new key) is honoured only when it is signed by
the log's current key and the new key is named like the log's origin or like the
current key (C2SP: a key's name SHOULD be the origin); from then on checkpoints must be
signed by the new key. Pure: no I/O, no clock.
"""

from __future__ import annotations

from .entries import Announcement, Withdrawal, verify_rotation
from .errors import KeyFormatError
from .note import Verifier


def split_targets(withdrawal: Withdrawal, index: int) -> tuple[list[int], list[int]]:
    """The targets of the withdrawal at `index`: (earlier entries, the others)."""
    earlier = [target for target in withdrawal.targets if target < index]
    later = [target for target in withdrawal.targets if target >= index]
    return earlier, later


def rotation_decision(origin: str, current_vkey: str, announcement: Announcement) -> tuple[bool, str]:
    """(honoured, reason) for the key rotation an announcement makes, judged against
    the log's current key."""
    try:
        current = Verifier.from_vkey(current_vkey)
        new = Verifier.from_vkey(announcement.new_vkey)
    except KeyFormatError as exc:
        return False, f"unusable key: {exc}"
    if new.name not in (origin, current.name):
        return False, f"the new key is named {new.name!r}, neither like the log {origin!r} nor like its current key"
    if not verify_rotation(announcement, current):
        return False, "the rotation signature does not verify under the current key"
    return True, "signed by the current key"
