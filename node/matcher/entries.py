"""The matcher's entry table: which (origin, log index) each indexed item is, shared by every signal's index.

Every indexed item has a dense **entry id** (0, 1, 2, ... in the order items were
added; never reused while the process runs, so an id found by a search always names
the same (origin, index)). Arrays indexed by entry id hold its log (`origin`, 2 bytes),
log index (`index`, 8 bytes) and signal code (`signal`, 1 byte; GONE once withdrawn,
suppressed or held: searches re-check it, so a search that ran while an entry was
dropped leaves it out). Per followed log, `slots[code]` maps log index -> entry id
(NO_ID: none), so a withdrawal finds its targets without any database read.

Per followed log, `thresholds[code]` is its match distance (PDQ bits; vPDQ frames) and
`indexed[code]` how many of its entries are in the indexes (for its budget).

The signal indexes (node/matcher/signal_indexes.py) take entry ids from `new` and
read these arrays; the matcher service (node/matcher/service.py) changes them under
its lock. Readers may hold an older array: arrays grow by copying, never shrink in use.
"""

from __future__ import annotations

import numpy as np

from protocol.errors import UsageError

GONE = 0  # the signal code of an entry id whose item was withdrawn, suppressed or held
NO_ID = np.uint32(0xFFFFFFFF)  # "no entry id" in a log's slots
MAX_ORIGINS = 0x10000


class Grow:
    """A numpy array that grows by a quarter when it fills (amortized appends, and at
    most 25 % unused room at 10 million entries, not 100 %)."""

    __slots__ = ("array", "fill", "length")

    def __init__(self, dtype, fill=0, capacity: int = 1024):
        self.array = np.full(capacity, fill, dtype=dtype)
        self.length = 0
        self.fill = fill

    def reserve(self, n: int, slack: float = 0.25) -> None:
        if n > len(self.array):
            self._resize(max(n, len(self.array) + int(len(self.array) * slack) + 1024))

    def trim(self, n: int) -> None:
        """Drop the unused room beyond `n` items (after a bulk load)."""
        if len(self.array) > n:
            self._resize(max(n, 1024))

    def append(self, values: np.ndarray, slack: float = 0.25) -> int:
        """Put `values` after the last item; returns the position of the first."""
        first, n = self.length, len(values)
        self.reserve(first + n, slack)
        self.array[first:first + n] = values
        self.length = first + n
        return first

    def _resize(self, size: int) -> None:
        resized = np.zeros(size, dtype=self.array.dtype) if self.fill == 0 else \
            np.full(size, self.fill, dtype=self.array.dtype)
        keep = min(size, len(self.array))
        resized[:keep] = self.array[:keep]
        self.array = resized  # readers holding the old array still see valid ids


class Entries:
    """Entry ids, followed logs and their thresholds (the module's docstring)."""

    def __init__(self, default_threshold: int):
        self.default_threshold = default_threshold
        self.origins: list[str] = []                 # origin code -> origin
        self.codes: dict[str, int] = {}              # origin -> origin code
        self.slots: list[Grow] = []                  # per origin code: log index -> entry id
        self.thresholds = np.full(16, default_threshold, dtype=np.int16)  # per origin code
        self.indexed = np.zeros(16, dtype=np.int64)  # per origin code: entries in the indexes
        self.origin = Grow(np.uint16)
        self.index = Grow(np.int64)
        self.signal = Grow(np.uint8)
        self.loading = False  # a bulk load: arrays double (trimmed at the end) instead of growing by a quarter
        self._name_rank = np.zeros(0, dtype=np.int64)

    # -- followed logs ----------------------------------------------------------------------

    def origin_code(self, origin: str, threshold: int) -> int:
        """The code of `origin`, given `threshold` if it is new."""
        code = self.codes.get(origin)
        if code is None:
            code = len(self.origins)
            if code >= MAX_ORIGINS:
                raise UsageError("more than 65,536 followed logs")
            self.origins.append(origin)
            self.codes[origin] = code
            self.slots.append(Grow(np.uint32, fill=NO_ID, capacity=256))
            if code >= len(self.thresholds):
                grown = np.full(2 * len(self.thresholds), self.default_threshold, dtype=np.int16)
                grown[: len(self.thresholds)] = self.thresholds
                self.thresholds = grown
                counts = np.zeros(len(grown), dtype=np.int64)
                counts[: len(self.indexed)] = self.indexed
                self.indexed = counts
            self.thresholds[code] = threshold
        return code

    def name_rank(self) -> np.ndarray:
        """origin code -> its rank among the origins in name order (hits sort by origin
        name: node/matcher/answers.py); computed again only when a log is added."""
        rank = self._name_rank
        if len(rank) != len(self.origins):
            names = self.origins[:]
            rank = np.empty(len(names), dtype=np.int64)
            rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
            self._name_rank = rank
        return rank

    def search_threshold(self) -> int:
        """The largest threshold in use (a search that keeps each hit within its log's)."""
        n = len(self.origins)
        return int(self.thresholds[:n].max()) if n else self.default_threshold

    # -- entries ----------------------------------------------------------------------------

    def new(self, code: int, indices: np.ndarray, signal_code: int) -> np.ndarray:
        """Entry ids for new items of the log `code` at these log indices (recorded in
        its slots); the caller holds the matcher's lock or is loading."""
        n = len(indices)
        first = self.signal.length
        slack = 1.0 if self.loading else 0.25
        for grow in (self.origin, self.index, self.signal):
            grow.reserve(first + n, slack)
        ids = np.arange(first, first + n, dtype=np.int64)
        self.indexed[code] += n
        self.origin.array[first:first + n] = code
        self.index.array[first:first + n] = indices
        self.signal.array[first:first + n] = signal_code
        for grow in (self.origin, self.index, self.signal):
            grow.length = first + n
        slots = self.slots[code]
        top = int(indices.max()) + 1
        if top > len(slots.array):
            slots.reserve(top, slack)
        slots.array[indices] = ids.astype(np.uint32)
        return ids

    def live(self, ids: np.ndarray, signal_code: int) -> np.ndarray:
        """Which of these entry ids are still indexed items of that signal (read after
        a search: every id it found exists in the arrays)."""
        return self.signal.array[ids] == signal_code

    def name(self, entry: int) -> tuple[str, int]:
        """(origin, log index) of an entry id."""
        return self.origins[int(self.origin.array[entry])], int(self.index.array[entry])

    def present(self, code: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log indices, entry ids) of those of `indices` (ascending, none twice) that the
        log `code` has in the indexes."""
        slots = self.slots[code].array
        indices = indices[(indices >= 0) & (indices < len(slots))]
        ids = slots[indices]
        there = ids != NO_ID
        return indices[there], ids[there].astype(np.int64)

    def trim(self) -> None:
        """After a bulk load: drop the room the doubling left."""
        for grow in (self.origin, self.index, self.signal):
            grow.trim(grow.length)
        for slots in self.slots:
            used = np.flatnonzero(slots.array != NO_ID)
            slots.trim(int(used[-1]) + 1 if len(used) else 0)

    def contains(self, origin: str, index: int) -> bool:
        code = self.codes.get(origin)
        if code is None:
            return False
        slots = self.slots[code].array
        return 0 <= index < len(slots) and slots[index] != NO_ID
