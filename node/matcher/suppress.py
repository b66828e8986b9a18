"""Local suppression of an entry as a known false match, and its `disputed-false-match` feedback.

A platform that finds an entry of a followed log matching content that is not NCII
(helplines cannot review everything; issue #1873 of ThreatExchange) suppresses it:

  1. the database records it first (node/store/matching.py, and
     `fingerprints.suppressed`), so it holds across restarts and re-follows;
  2. the running matcher drops it at once: no search that starts afterwards finds it;
  3. unless told not to, the node publishes a `disputed-false-match` feedback entry in
     its own log (through node/web/feedback_routes.publish_feedback, which quotes the
     leaf hash from this node's verified copy), so the helpline sees the dispute.

The feedback is "at least once": the suppression row says 'pending' until the entry
is published, and a node that starts with pending feedback publishes it
(`publish_pending_feedback`, called once the matcher is built). A suppression made
while no node runs (`suppress_offline`) is published that way at the next start.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from node.store import follow as follow_store
from node.store import matching as matching_store

log = logging.getLogger(__name__)

VERDICT = "disputed-false-match"


class SuppressError(Exception):
    """The entry cannot be suppressed (unknown here, bad arguments). `status` is the
    HTTP status the admin API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class SuppressOutcome:
    origin: str
    index: int
    was_matching: bool              # the running matcher held it (False offline or if withdrawn)
    feedback: str                   # 'none' | 'pending' | 'published'
    feedback_index: int | None = None
    feedback_error: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _check(origin: object, index: object) -> None:
    from protocol.checkpoint import MAX_TREE_SIZE

    if not isinstance(origin, str) or not origin:
        raise SuppressError('origin must be the origin of a followed log, e.g. "helpline.example/log"')
    # An entry's index is below its log's size, and sizes stay below 2**63 (what SQLite holds).
    if type(index) is not int or not 0 <= index < MAX_TREE_SIZE:
        raise SuppressError("index must be a non-negative integer: the entry's index in that log")


def record_suppression(db, origin: str, index: int, want_feedback: bool) -> matching_store.Suppression:
    """Steps that touch only the database: the entry must be a submission this node
    holds (withdrawn or not); records the suppression and marks the fingerprint row."""
    _check(origin, index)
    row = follow_store.get_fingerprint(db, origin, index)
    if row is None:
        raise SuppressError(f"entry {index} of {origin!r} is not a fingerprint this node holds "
                            "(see `ncii-node follow list`; only submissions of followed logs can be suppressed)",
                            status=404)
    suppression = matching_store.add_suppression(db, origin, index, row.leaf_hash, want_feedback)
    follow_store.set_suppressed(db, origin, index, True)
    return suppression


def suppress_offline(db, origin: str, index: int, want_feedback: bool = True) -> SuppressOutcome:
    """Suppress with no node running: recorded now, feedback published at the next start."""
    suppression = record_suppression(db, origin, index, want_feedback)
    return SuppressOutcome(origin, index, False, suppression.feedback, suppression.feedback_index)


async def suppress_entry(ctx, origin: object, index: object, want_feedback: bool = True) -> SuppressOutcome:
    """Suppress inside the running node (`ctx` = node.web.app.NodeContext): database,
    matcher, then the feedback entry. A failure to publish leaves the feedback
    'pending' (retried at the next start) and is reported, the suppression stands."""
    suppression = record_suppression(ctx.db, origin, index, want_feedback)
    was_matching = False
    if ctx.matcher is not None:
        was_matching = ctx.matcher.suppress(origin, index, suppression.leaf_hash)
    outcome = SuppressOutcome(origin, index, was_matching, suppression.feedback, suppression.feedback_index)
    if suppression.feedback == "pending":
        try:
            outcome.feedback_index = await _publish(ctx, suppression)
            outcome.feedback = "published"
        except Exception as exc:  # noqa: BLE001 -- the suppression stands; say why feedback is not
            outcome.feedback_error = str(exc)
            log.warning("suppressed %s#%d; its %s feedback is not published yet: %s", origin, index, VERDICT, exc)
    return outcome


async def _publish(ctx, suppression: matching_store.Suppression) -> int:
    from node.web.feedback_routes import publish_feedback

    published = await publish_feedback(ctx, suppression.origin, suppression.index, VERDICT)
    matching_store.mark_feedback_published(ctx.db, suppression.origin, suppression.index, published["index"])
    return published["index"]


async def publish_pending_feedback(ctx) -> int:
    """Publish every feedback still pending (suppressions made offline, or whose
    publication failed). Returns how many were published; failures are logged."""
    done = 0
    for suppression in matching_store.pending_feedback(ctx.db):
        try:
            await _publish(ctx, suppression)
            done += 1
        except Exception as exc:  # noqa: BLE001 -- logged; retried at the next start
            log.warning("feedback %s on %s#%d still pending: %s", VERDICT, suppression.origin,
                        suppression.index, exc)
    return done
