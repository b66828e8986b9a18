"""Cosignature policies of followed logs: does a checkpoint carry the witness
cosignatures this node requires before it applies it?

A policy is a C2SP tlog-policy (protocol/policy.py): given as a file
(`ncii-node witness require ORIGIN --policy FILE`) or made from k-of-n flags
(`--witness VKEY ... -k K`, stored as the policy they mean), so followers and
auditors check both with the same quorum code. The follower calls
`check_followed_checkpoint(db, origin, note)` AFTER the log's own signature has been
verified with its pinned key and BEFORE it applies a checkpoint that grows the log;
a checkpoint that fails is refused like a bad signature: nothing from it is applied,
and the next round tries again (the publisher adds cosignatures shortly after
publishing).

Only cosignatures from the policy's witnesses count, each witness at most once per
group, and a cosignature line from a policy witness that does not verify rejects the
note (it was altered). Lines from other keys are ignored (C2SP signed-note). If the
policy lists logs, one of them must also have signed the checkpoint.
"""

from __future__ import annotations

from typing import Iterable

from protocol.cosignature import CosignatureVerifier
from protocol.errors import CheckpointError, NoteError
from protocol.policy import Policy, PolicyError, QuorumNotMet, check_quorum, parse_policy
from protocol.checkpoint import open_checkpoint

# Kept under its old name: callers catch it as "not enough cosignatures".
NotEnoughCosignatures = QuorumNotMet


def require_cosignatures(note_bytes: bytes, witnesses: Iterable[CosignatureVerifier | str], k: int) -> dict[str, int]:
    """Raise NotEnoughCosignatures unless at least k of `witnesses` (verifiers or
    cosigner vkey strings) validly cosigned the checkpoint note. Returns the valid
    cosignatures ({vkey: timestamp}). k <= 0 always passes."""
    vkeys = list(dict.fromkeys(w.vkey if isinstance(w, CosignatureVerifier) else w for w in witnesses))
    if k <= 0:
        return {}
    if k > len(vkeys):
        raise NotEnoughCosignatures(f"{k} cosignatures required but only {len(vkeys)} witness(es) trusted")
    policy = Policy.k_of_n(vkeys, k)
    return _by_vkey(policy, enforce(policy, note_bytes))


def enforce(policy: Policy, note_bytes: bytes, origin: str | None = None) -> dict[str, int]:
    """The quorum of `policy` on an already log-verified checkpoint note, and, if the
    policy lists logs, a signature by one of them. Returns {witness name: timestamp} of
    the valid cosignatures; raises NotEnoughCosignatures, CosignatureError, or
    CheckpointError/NoteError (no policy log signed it)."""
    if policy.logs:
        open_checkpoint(note_bytes, [log.verifier for log in policy.logs], origin=origin)
    result = check_quorum(policy, note_bytes)
    if not result.met:
        raise NotEnoughCosignatures(f"{result.explanation} (the publisher may not have collected them yet)")
    return result.cosigned


def _by_vkey(policy: Policy, cosigned: dict[str, int]) -> dict[str, int]:
    names = policy.witness_by_name
    return {names[name].verifier.vkey: t for name, t in cosigned.items()}


def check_followed_checkpoint(db, origin: str, note_bytes: bytes) -> dict[str, int]:
    """Apply the stored policy for `origin` (none stored: passes). For the follower.
    Returns {witness vkey: timestamp} of the cosignatures that counted."""
    from node.store import witness as store

    stored = store.get_follow_policy(db, origin)
    if stored is None:
        return {}
    try:
        policy = parse_policy(stored)
    except PolicyError as exc:
        raise NotEnoughCosignatures(f"the stored policy of {origin} is unusable ({exc}); set it again") from None
    try:
        return _by_vkey(policy, enforce(policy, note_bytes, origin))
    except (NoteError, CheckpointError) as exc:
        raise NotEnoughCosignatures(f"the policy's log keys do not vouch for this checkpoint: {exc}") from None


def witness_label(policy: Policy, name: str) -> str:
    """A policy witness as people read it: its policy name, and its key's name if other."""
    key_name = policy.witness_by_name[name].verifier.name
    return name if key_name == name else f"{name} ({key_name})"


class PolicyOptionError(ValueError):
    """Command-line options that do not make a policy."""


def policy_from_options(policy_file: str | None, witnesses: list[str], k: int | None) -> Policy | None:
    """The policy given as `--policy FILE`, or as `--witness VKEY ... -k K` (any K of
    them), or None when neither is given. Raises PolicyOptionError saying what is wrong."""
    from pathlib import Path

    if policy_file and (witnesses or k is not None):
        raise PolicyOptionError("give either --policy FILE or --witness VKEY ... -k K, not both")
    if policy_file:
        try:
            return parse_policy(Path(policy_file).read_bytes())
        except OSError as exc:
            raise PolicyOptionError(f"cannot read {policy_file}: {exc.strerror}") from None
        except PolicyError as exc:
            raise PolicyOptionError(f"{policy_file}: {exc}") from None
    if not witnesses and k is None:
        return None
    if not witnesses or k is None:
        raise PolicyOptionError("-k K and --witness VKEY go together")
    try:
        return Policy.k_of_n([w.strip() for w in witnesses], k)
    except PolicyError as exc:
        raise PolicyOptionError(str(exc)) from None
