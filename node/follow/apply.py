"""Applying verified entries of a followed log to the local tables.

Called by node/follow/sync.py only with entries that were checked against the tiles
and a signed root. Two steps:

  `stage_entries`   while a round verifies, chunk by chunk: each entry is decoded
                    strictly (protocol.entries.decode_entry) -- an entry that does not
                    decode raises EntryError and the whole round is dropped -- and
                    staged (submissions as fingerprint rows, every other entry raw).
  `apply_staged`    inside the round's one write transaction: submissions enter the
                    fingerprint table, then the other entries take effect in index order:
                      withdrawal   marks its targets withdrawn -- only entries of the
                                   same log (a log can only withdraw what it published);
                      feedback     attaches to the (origin, index) it names, noting
                                   whether the quoted leaf hash is the one we know; feedback
                                   that names no entry we hold, or quotes another leaf
                                   hash, is kept up to MAX_UNMATCHED_FEEDBACK rows per log
                                   and only counted beyond (a peer cannot fill our disk
                                   with verdicts about nothing);
                      announcement updates the peer's metadata; a key rotation is
                                   honoured only when signed by the log's current key
                                   (and only for a key named like the log's origin);
                      acknowledgement is recorded with whether its cosignature verifies
                                   and whether the tree it names is one the named log
                                   had (this node's own log: checked against every
                                   checkpoint it published; one that was never
                                   published is logged as evidence of a lie).

Every write is idempotent (keyed on (origin, index); the first withdrawal of an entry
wins), so applying the same batch twice changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from node.store import follow as store
from node.store import peer_feedback
from node.store import stats as stats_store
from protocol.acknowledgements import is_valid_acknowledgement
from protocol.entries import (
    Acknowledgement,
    Announcement,
    Feedback,
    Submission,
    Withdrawal,
    decode_entry,
    verify_rotation,
)
from protocol.errors import EntryError, KeyFormatError
from protocol.note import Verifier

log = logging.getLogger(__name__)

#: Feedback rows a followed log may have stored that refer to no entry this node holds
#: as quoted (an index beyond the log, another leaf hash); the rest is only counted.
MAX_UNMATCHED_FEEDBACK = 1000


def stage_entries(db, origin: str, first_index: int, entries: list[bytes], leaf_hashes: list[bytes]) -> int:
    """Decode and stage entries first_index, first_index + 1, ... Raises EntryError
    (naming the log index) on the first entry that does not decode. Returns how many
    were submissions."""
    fingerprints: list[tuple] = []
    others: list[tuple] = []
    for offset, (data, leaf) in enumerate(zip(entries, leaf_hashes)):
        index = first_index + offset
        try:
            entry = decode_entry(data)
        except EntryError as exc:
            raise EntryError(f"entry {index} does not follow the entry grammar: {exc}") from None
        if type(entry) is Submission:
            fingerprints.append((index, entry.signal, entry.fingerprint, entry.quality,
                                 ",".join(entry.labels), entry.day, leaf))
        else:
            others.append((index, data, leaf))
    store.stage(db, origin, fingerprints, others)
    return len(fingerprints)


@dataclass
class Applied:
    """What one round changed: for the listener and the logs."""
    added: int = 0
    withdrawn: list[int] = field(default_factory=list)
    withdrawals: int = 0      # withdrawal entries (whatever they named)
    feedback: int = 0
    acks: int = 0
    announcements: int = 0
    rotations: list[tuple[int, str, bool]] = field(default_factory=list)  # (index, new vkey, honoured)
    vkey: str = ""  # the pinned key after this round


def apply_staged(db, origin: str, vkey: str, own_origin: str | None = None, now: float | None = None) -> Applied:
    """Inside the caller's transaction: move staged submissions into `fingerprints`,
    then apply the staged non-submission entries in index order, then add the
    round's feedback to the operator's summaries (node/store/stats.py), as received
    `now`."""
    result = Applied(vkey=vkey)
    feedback_range: list[int] = []
    result.added = store.move_staged_fingerprints(db, origin)
    unmatched = None  # rows of this log that refer to nothing we hold, read when first needed
    dropped = 0
    for index, data, _leaf in store.staged_entries(db, origin):
        entry = decode_entry(data)  # decoded once already while staging: cannot fail
        if isinstance(entry, Withdrawal):
            result.withdrawals += 1
            for target in entry.targets:
                # A withdrawal can only name earlier entries; later indices are ignored.
                if target < index and store.withdraw(db, origin, target, index):
                    result.withdrawn.append(target)
        elif isinstance(entry, Feedback):
            known = store.known_leaf_hash(db, entry.origin, entry.index, own_origin)
            matches = None if known is None else known == entry.leaf_hash
            if not matches:
                if unmatched is None:
                    unmatched = peer_feedback.unmatched_stored(db, origin)
                if unmatched >= MAX_UNMATCHED_FEEDBACK:
                    dropped += 1
                    continue
                unmatched += 1
            if matches is False:
                log.warning("follow %s: feedback at %d names %s#%d with a leaf hash that is not that entry's",
                            origin, index, entry.origin, entry.index)
            store.add_feedback(db, origin, index, entry.origin, entry.index, entry.leaf_hash, entry.verdict, matches)
            result.feedback += 1
            feedback_range[:] = [feedback_range[0] if feedback_range else index, index + 1]
        elif isinstance(entry, Acknowledgement):
            _record_ack(db, origin, index, entry, own_origin)
            result.acks += 1
        elif isinstance(entry, Announcement):
            store.set_peer_metadata(db, origin, index, entry.display_name, entry.contact_url, entry.policy_url)
            result.announcements += 1
            if entry.new_vkey is not None:
                honoured, reason = _check_rotation(origin, result.vkey, entry)
                store.record_rotation(db, origin, index, result.vkey, entry.new_vkey, honoured, reason)
                result.rotations.append((index, entry.new_vkey, honoured))
                if honoured:
                    log.warning("follow %s: key rotation at entry %d honoured; checkpoints must now be "
                                "signed by %s", origin, index, entry.new_vkey)
                    result.vkey = entry.new_vkey
                else:
                    log.error("follow %s: key rotation at entry %d REFUSED: %s", origin, index, reason)
    if dropped:
        peer_feedback.add_dropped(db, origin, dropped)
        log.warning("follow %s: %d feedback entries refer to no entry this node holds (%d such are kept per "
                    "log); they were counted, not stored", origin, dropped, MAX_UNMATCHED_FEEDBACK)
    if feedback_range:
        stats_store.summarise_feedback(db, origin, *feedback_range, time.time() if now is None else now, own_origin)
    return result


def _record_ack(db, origin: str, index: int, ack: Acknowledgement, own_origin: str | None) -> None:
    valid = is_valid_acknowledgement(ack, origin)
    authoritative, root = store.known_root(db, ack.origin, ack.size, own_origin)
    root_ok = (root == ack.root_hash) if root is not None else (False if authoritative else None)
    if not valid:
        log.warning("follow %s: acknowledgement at %d has a cosignature that does not verify; ignored",
                    origin, index)
    elif root_ok is False:
        log.critical("follow %s: acknowledgement at %d names a tree of size %d of %s that this log never had "
                     "(EVIDENCE: the platform was shown another history, or says what is not true; "
                     "`ncii-node status`, and an audit with --platform writes the evidence file)",
                     origin, index, ack.size, ack.origin)
    store.add_ack(db, origin, index, ack.origin, ack.size, ack.root_hash, ack.timestamp * 1000 + ack.milliseconds,
                  ack.public_key, ack.signature, valid, root_ok)


def _check_rotation(origin: str, current_vkey: str, announcement: Announcement) -> tuple[bool, str]:
    """(honoured, reason): the rotation must be signed by the current key and the new
    key must carry the log's name, or the current key's name for a log whose key is
    not named like its origin (C2SP: SHOULD)."""
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
