"""What the follower tells the rest of the node (the matcher) as it applies entries.

The order is the promise (issue 7: a withdrawal stops matching before the follower
reports the batch applied):

  on_withdrawn(origin, indices)  called BEFORE the round's transaction commits. If it
                                 raises, the round is rolled back and retried later:
                                 a failure errs on the side of not matching.
  on_added(origin, rows)         called AFTER the commit, with the round's new active
                                 fingerprints (a lazy iterable read from the database
                                 in chunks; iterate it at most once, inside the call).
  on_applied(origin, size, root_hash, note, applied, at)
                                 AFTER the commit (after on_added): the round made the
                                 verified tree of `origin` (size, root_hash; `note` the
                                 signed checkpoint as fetched) at `at` (POSIX seconds);
                                 `applied` says what it held (node.follow.apply.Applied).
                                 Acknowledgements hang here.
  on_removed(origin)             the log is no longer followed: forget all its entries.

All three run in the follower's worker thread, never on the event loop. A listener
must ignore indices it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from node.store.follow import FingerprintRow


class FollowListener:
    """The no-op listener; subclass and override what you need."""

    def on_withdrawn(self, origin: str, indices: Sequence[int]) -> None:
        pass

    def on_added(self, origin: str, rows: Iterable[FingerprintRow]) -> None:
        pass

    def on_applied(self, origin: str, size: int, root_hash: bytes, note: bytes, applied, at: float) -> None:
        pass

    def on_removed(self, origin: str) -> None:
        pass


class Listeners(FollowListener):
    """Several listeners called in turn (the first that raises stops the others)."""

    def __init__(self, listeners: Iterable[FollowListener] = ()):
        self.listeners = list(listeners)

    def on_withdrawn(self, origin: str, indices: Sequence[int]) -> None:
        for listener in self.listeners:
            listener.on_withdrawn(origin, indices)

    def on_added(self, origin: str, rows: Iterable[FingerprintRow]) -> None:
        if len(self.listeners) == 1:
            self.listeners[0].on_added(origin, rows)
            return
        rows = list(rows)  # each listener gets its own pass
        for listener in self.listeners:
            listener.on_added(origin, rows)

    def on_applied(self, origin: str, size: int, root_hash: bytes, note: bytes, applied, at: float) -> None:
        for listener in self.listeners:
            listener.on_applied(origin, size, root_hash, note, applied, at)

    def on_removed(self, origin: str) -> None:
        for listener in self.listeners:
            listener.on_removed(origin)
