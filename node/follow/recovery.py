"""Learning within a second or two that a followed node that was down is back.

After failed rounds a follower backs off (node/follow/scheduler.py: 1, 2, 4 ... s up
to 60 s, jittered), so that a broken or overloaded node is not hammered. But a node
that was merely down (restarted, redeployed, its network cut) should not be left
alone for up to a minute after it is back: a withdrawal published at its return would
stay matchable at its followers all that time.

So while a log backs off after a round that could not reach its node at all
(FetchError.unreachable: connection refused or closed, a gateway's 502/504, or a time
limit), its task takes a cheap look every PROBE_INTERVAL (0.5) seconds (jittered): an
unsigned GET <prefix>/checkpoint with a short time limit (PeerClient.probe: no
signature, no replay-cache place at the node, a few hundred bytes). A node that stays
down costs two refused connections a second per follower, nothing more.

  * A probe that fails confirms the node is down.
  * A probe that answers after the node was seen down (a refused connection, or a
    failed probe) ends the back-off at once: the next round runs now, and the push
    channel is asked again at once too.
  * A probe that answers when the node was never seen down (the round only timed
    out: a slow node, not a dead one) stops the probing: the back-off runs its course.

Failures of another kind (a status the node chose, data that does not verify) are
not probed: the node is up, and the back-off is what protects it.
"""

from __future__ import annotations

import logging
import random
import time

log = logging.getLogger(__name__)

#: Seconds between two probes of a node that is down (jittered by ±25 %): a node is
#: seen back at most 0.625 s after it answers, leaving the rest of the 2 s the issue
#: allows (issue 22) to the round, and to a witness's cosignature where one is required.
#: While it stays down, two refused connections a second per follower.
PROBE_INTERVAL = 0.5
#: Time limit of one probe.
PROBE_TIMEOUT = 2.0


class Recovery:
    """The probing state of one followed log (one per scheduler job)."""

    def __init__(self) -> None:
        self.probing = False   # the current back-off follows a round that reached nothing
        self.seen_down = False  # the node refused or closed the connection, or a probe failed
        self.probes = 0        # probes taken (the benchmark and tests read it)

    def failed(self, unreachable: str | None) -> None:
        """A round failed; `unreachable` is SyncError.unreachable."""
        self.probing = unreachable is not None
        self.seen_down = unreachable == "down" or (self.probing and self.seen_down)

    def succeeded(self) -> None:
        self.probing = self.seen_down = False

    def next_probe(self, rng: random.Random | None = None) -> float:
        """Monotonic time of the next probe."""
        return time.monotonic() + PROBE_INTERVAL * (rng or random).uniform(0.75, 1.25)

    async def probe(self, client, origin: str) -> bool:
        """Take one look; True if the back-off should end now (the node is back)."""
        self.probes += 1
        if not await client.probe(PROBE_TIMEOUT):
            self.seen_down = True
            return False
        if self.seen_down:
            log.info("follow %s: the node answers again; reading it now", origin)
            self.succeeded()
            return True
        self.probing = False  # up all along, only slow: the back-off runs its course
        return False
