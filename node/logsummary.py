"""One INFO line per minute instead of one per event.

With checkpoints published as soon as entries arrive (node/log/sequencer.py) and
followers applying each one as it is pushed (node/follow/scheduler.py), an INFO line
per event would be dozens of lines a second under load and bury what an operator
needs to see. So each such event adds to a `PeriodicSummary`, which says when a line
is due: at the first event, then at most once per period while events keep coming.
Every event is still logged at DEBUG by its module.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable


class PeriodicSummary:
    def __init__(self, period: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self.clock = clock
        self.totals: Counter = Counter()
        self.peaks: dict[str, float] = {}
        self._last: float | None = None

    def add(self, peaks: dict[str, float] | None = None, **counts: int) -> tuple[Counter, dict, float] | None:
        """Count one event. Returns (totals, largest values of `peaks`, seconds covered)
        and starts over when a line is due, else None."""
        self.totals.update(counts)
        for name, value in (peaks or {}).items():
            self.peaks[name] = max(value, self.peaks.get(name, value))
        now = self.clock()
        if self._last is not None and now - self._last < self.period:
            return None
        covered = 0.0 if self._last is None else now - self._last
        due = (self.totals, self.peaks, covered)
        self.totals, self.peaks, self._last = Counter(), {}, now
        return due
