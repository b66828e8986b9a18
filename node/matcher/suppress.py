"""Local suppression of an entry as a known false match, and its `disputed-false-match` feedback.

A platform that finds an entry of a followed log matching content that is not NCII
(helplines cannot review everything; issue #1873 of ThreatExchange) suppresses it:

  1. the database records it first (node/store/matching.py, and
     `fingerprints.suppressed`), so it holds across restarts and re-follows;
  2. the running matcher drops it at once: no search that starts afterwards finds it;
  3. unless told not to, the node publishes a `disputed-false-match` feedback entry in
     its own log (through node/feedback.py, which quotes the leaf hash from this
     node's verified copy), so the helpline sees the dispute.

`Suppressor(db, matcher, feedback)` does this inside the running node. The feedback is
"at least once": the suppression row says 'pending' until the entry is published, and
a node that starts with pending feedback publishes it (`publish_pending`, called once
the matcher is built). A suppression made while no node runs (`suppress_offline`) is
published that way at the next start.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from node.errors import NotFound
from node.feedback import check_entry_name
from node.store import matching as matching_store

log = logging.getLogger(__name__)

VERDICT = "disputed-false-match"


@dataclass
class SuppressOutcome:
    origin: str
    index: int
    was_matching: bool              # the running matcher held it just before (False offline or if withdrawn)
    feedback: str                   # 'none' | 'pending' | 'published'
    feedback_index: int | None = None
    feedback_error: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def record_suppression(db, origin: object, index: object, want_feedback: bool) -> matching_store.Suppression:
    """Steps that touch only the database: the entry must be a submission this node
    holds (withdrawn or not); records the suppression and marks the fingerprint row.
    Raises BadRequest or NotFound."""
    check_entry_name(origin, index)
    row = db.follow.get_fingerprint(origin, index)
    if row is None:
        raise NotFound(f"entry {index} of {origin!r} is not a fingerprint this node holds "
                       "(see `ncii-node follow list`; only submissions of followed logs can be suppressed)")
    suppression = db.matching.add_suppression(origin, index, row.leaf_hash, want_feedback)
    db.follow.set_suppressed(origin, index, True)
    return suppression


def suppress_offline(db, origin: str, index: int, want_feedback: bool = True) -> SuppressOutcome:
    """Suppress with no node running: recorded now, feedback published at the next start."""
    suppression = record_suppression(db, origin, index, want_feedback)
    return SuppressOutcome(origin, index, False, suppression.feedback, suppression.feedback_index)


class Suppressor:
    """Suppressions inside the running node: the database, the matcher, then the feedback."""

    def __init__(self, db, matcher, feedback):
        self.db = db
        self.matcher = matcher
        self.feedback = feedback      # node.feedback.FeedbackPublisher

    async def suppress(self, origin: object, index: object, want_feedback: bool = True) -> SuppressOutcome:
        """Database, matcher, then the feedback entry. A failure to publish leaves the
        feedback 'pending' (retried at the next start) and is reported; the suppression
        stands. `was_matching` says whether the matcher held the entry before the
        suppression: on PostgreSQL this process's replica may take the recorded
        suppression in force (node/matcher/replica.py) before `matcher.suppress` runs."""
        check_entry_name(origin, index)
        held = self.matcher.ready and (origin, index) in self.matcher
        suppression = record_suppression(self.db, origin, index, want_feedback)
        was_matching = self.matcher.suppress(origin, index, suppression.leaf_hash) or held
        outcome = SuppressOutcome(origin, index, was_matching, suppression.feedback, suppression.feedback_index)
        if suppression.feedback == "pending":
            try:
                outcome.feedback_index = await self._publish(suppression)
                outcome.feedback = "published"
            except Exception as exc:  # noqa: BLE001 -- the suppression stands; say why feedback is not
                outcome.feedback_error = str(exc)
                log.warning("suppressed %s#%d; its %s feedback is not published yet: %s", origin, index, VERDICT,
                            exc)
        return outcome

    async def _publish(self, suppression: matching_store.Suppression) -> int:
        published = await self.feedback.publish(suppression.origin, suppression.index, VERDICT)
        self.db.matching.mark_feedback_published(suppression.origin, suppression.index, published["index"])
        return published["index"]

    async def publish_pending(self) -> int:
        """Publish every feedback still pending (suppressions made offline, or whose
        publication failed). Returns how many were published; failures are logged."""
        done = 0
        for suppression in self.db.matching.pending_feedback():
            try:
                await self._publish(suppression)
                done += 1
            except Exception as exc:  # noqa: BLE001 -- logged; retried at the next start
                log.warning("feedback %s on %s#%d still pending: %s", VERDICT, suppression.origin,
                            suppression.index, exc)
        return done
