"""A platform's verdict on an entry of a followed log, published in its own log.

    publisher = FeedbackPublisher(db, sequencer, own_origin)
    await publisher.publish(origin, index, verdict)
        -> {"index", "leaf_hash", "checkpoint_size", "entry": JSON view of the Feedback entry}

The feedback entry quotes the leaf hash of the named entry *from this node's verified
copy* of the followed log (node/store/follow.py), never from the caller: a verdict can
only name an entry this node verified, and cannot be moved to another entry. POST
/v1/feedback (`ncii-node feedback`) and the matcher's `disputed-false-match`
(node/matcher/suppress.py) both publish through here.

Refusals: BadRequest (a malformed origin, index or verdict; this node's own log),
NotFound (a log this node does not follow, an entry it does not hold), Unavailable
(the log cannot publish right now).
"""

from __future__ import annotations

from node.errors import BadRequest, NotFound, Unavailable
from node.log.sequencer import LogUnavailable
from protocol.checkpoint import MAX_TREE_SIZE
from protocol.entries import VERDICTS, Feedback, encode_entry, entry_to_json
from protocol.errors import ProtocolError

ORIGIN_HINT = 'origin must be the origin of a followed log, e.g. "helpline.example/log"'
INDEX_HINT = "index must be a non-negative integer: the entry's index in that log"


def check_entry_name(origin: object, index: object) -> None:
    """BadRequest unless (origin, index) could name an entry of a followed log."""
    if not isinstance(origin, str) or not origin:
        raise BadRequest(ORIGIN_HINT)
    # An entry's index is below its log's size, and sizes stay below 2**63 (what SQLite holds).
    if type(index) is not int or not 0 <= index < MAX_TREE_SIZE:
        raise BadRequest(INDEX_HINT)


class FeedbackPublisher:
    def __init__(self, db, sequencer, own_origin: str):
        self.db = db                  # read on the event loop: a few rows per verdict
        self.sequencer = sequencer
        self.own_origin = own_origin

    async def publish(self, origin: object, index: object, verdict: object) -> dict:
        """Append one Feedback entry; return where it was published (see the module docstring)."""
        check_entry_name(origin, index)
        if verdict not in VERDICTS:
            raise BadRequest(f"verdict must be one of {', '.join(VERDICTS)}")
        if origin == self.own_origin:
            raise BadRequest("feedback names an entry of another node's log, not of this node's own")
        followed = self.db.follow.get_log(origin)
        if followed is None:
            raise NotFound(f"this node does not follow {origin!r} (see `ncii-node follow list`)")
        leaf = self.db.follow.known_leaf_hash(origin, index, self.own_origin)
        if leaf is None:
            raise NotFound(f"entry {index} of {origin} is not a submission in this node's verified copy "
                           f"(it holds {followed.size} entries of that log)")
        try:
            entry = Feedback(origin, index, leaf, verdict)
            data = encode_entry(entry)
        except ProtocolError as exc:
            raise BadRequest(str(exc)) from None
        try:
            (appended,) = await self.sequencer.append([data])
        except LogUnavailable as exc:
            raise Unavailable(str(exc)) from None
        return {"index": appended.index, "leaf_hash": appended.leaf_hash.hex(),
                "checkpoint_size": appended.checkpoint_size, "entry": entry_to_json(entry)}
