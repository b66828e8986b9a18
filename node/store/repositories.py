"""The repositories every connection gives, whatever the engine (node/store/__init__.py)."""

from __future__ import annotations

import functools

from node.store.acks import AckRepository
from node.store.cases import CaseRepository
from node.store.follow import FollowRepository
from node.store.follow_leaves import LeafTileRepository
from node.store.log import LogRepository, ReaderRepository
from node.store.matching import MatchingRepository
from node.store.peer_feedback import PeerFeedbackRepository
from node.store.stats import StatsRepository
from node.store.witness import WitnessRepository

#: The repositories every connection (and every DatabaseWorker) gives, by attribute.
REPOSITORIES = ("acks", "cases", "follow", "follow_leaves", "log", "matching", "peer_feedback", "readers", "stats",
                "witness")


class Repositories:
    """Mixed into each engine's connection class: `db.log`, `db.cases`, ... built on first use."""

    acks = functools.cached_property(AckRepository)
    cases = functools.cached_property(CaseRepository)
    follow = functools.cached_property(FollowRepository)
    follow_leaves = functools.cached_property(LeafTileRepository)
    log = functools.cached_property(LogRepository)
    matching = functools.cached_property(MatchingRepository)
    peer_feedback = functools.cached_property(PeerFeedbackRepository)
    readers = functools.cached_property(ReaderRepository)
    stats = functools.cached_property(StatsRepository)
    witness = functools.cached_property(WitnessRepository)
