"""What one process of a PostgreSQL node tells the others at once: LISTEN/NOTIFY.

    notify(db, CHECKPOINT, "123")     # after a commit: a new checkpoint of size 123
    listener = ChangeListener(target, [CHECKPOINT, PENDING], callback)   # a thread
    listener.close()

Channels: CHECKPOINT (the sequencer published; payload the size), PENDING (an entry
waits in pending_entries), MATCH (fingerprints were added or withdrawn: node/matcher).
A notification is only a hint to look now: a process that missed one (its listening
connection broke, it was starting) loses nothing, because every reader also looks by
sequence number on a timer (catch-up). `callback(channel, payload)` runs in the
listener's thread: it must only hand over (loop.call_soon_threadsafe).

When the server goes away the listener says so once (WARNING), tries again after
RETRY seconds, doubling up to RETRY_MAX, and says once that it listens again (INFO).
"""

from __future__ import annotations

import logging
import threading
import time

from node.errors import error_line
from node.store.pg import raw_connection

log = logging.getLogger(__name__)

CHECKPOINT = "ncii_checkpoint"
PENDING = "ncii_pending"
MATCH = "ncii_match"
#: Seconds before the first attempt to listen again after the connection broke; the
#: wait doubles at each failed attempt, up to RETRY_MAX.
RETRY = 0.5
RETRY_MAX = 4.0


def notify(db, channel: str, payload: str = "") -> None:
    """Send a notification (at the commit of the caller's transaction, if in one)."""
    db.execute("SELECT pg_notify(?, ?)", (channel, payload))


class ChangeListener:
    def __init__(self, target, channels: list[str], callback):
        self.target = target
        self.channels = channels
        self.callback = callback
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing_since, retry = None, RETRY
        while not self._closed.is_set():
            try:
                with raw_connection(self.target, application_name="ncii-node listener") as conn:
                    for channel in self.channels:
                        conn.execute(f"LISTEN {channel}")
                    if failing_since is not None:
                        log.info("database notifications: listening again (after %.1f s)",
                                 time.monotonic() - failing_since)
                    failing_since, retry = None, RETRY
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.callback(note.channel, note.payload)
            except Exception as exc:  # noqa: BLE001 -- the timers catch up meanwhile
                if self._closed.is_set():
                    break
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("database notifications interrupted (%s); listening again as soon as the database "
                                "answers (the timers catch up meanwhile)", error_line(exc))
                self._closed.wait(retry)
                retry = min(RETRY_MAX, retry * 2)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
