"""Match replicas: every `serve` process of a PostgreSQL node matches, each from its own
in-memory index, kept up to date with what the sequencing process's follower applies.

    announcer = MatchAnnouncer(target)     # a listener of the follower (the sequencing
                                           #   process): tells the others (NOTIFY)
    replica = MatchReplica(matcher, target)
    sizes = await replica.sizes()          # before the index is built from the database
    await replica.start(sizes)             # then: notifications, and a catch-up look
    await replica.stop()

Only one process follows (node/runtime.py: the lease holder); it writes what it
verified, round by round, in one transaction each (node/store/follow.py). Every
process, that one included, builds its index at start and then applies what each
round committed, by sequence number: the verified size of each followed log
(node/store/replica.py says what lies between two sizes). A replica looks when told
(a notification on MATCH after each round) and every CATCH_UP_INTERVAL seconds
anyway, so a notification missed (its connection broke, it was starting) loses
nothing. Applying is idempotent (an entry indexed or withdrawn twice changes
nothing), so the follower's own process applying a round twice (the follower's
listener call, then the look) is harmless.

Withdrawals are faster still: the follower's `on_withdrawn` runs BEFORE its round
commits (the matcher's promise: a withdrawal stops matching before the round is
reported applied), and the announcer sends the withdrawn indices in the notification
itself, so every replica stops matching them at once, without waiting for the commit
(a round that then fails is tried again: erring on the side of not matching, as the
follower's own matcher does). The look by sequence number applies them again, from
the database, for a replica that missed the notification.

Holds (per-log budgets, held clusters: node/matcher/holds.py) are decided once, by
the sequencing process's matcher as its follower adds entries: it writes the holds
and the intake, then (its `on_applied`) the log's decided size (`match_decided`). The
other processes decide nothing: they index a log's entries only below its decided
size (their build too), taking over the holds written for them first, so a held
fingerprint never matches in any process, not even for a moment; they take over the
intake at every look, ready to decide should they take the lease.

Settings travel the same way. A suppression, a threshold, a budget or a released
cluster set through any process (its admin site or a command), and the fingerprints
the sequencing process lets out of a budget hold as the hours pass, raise a counter
in the changing transaction, which notifies on MATCH at its commit
(node/store/matching.py `match_settings_version`); each replica then re-reads the
settings and puts them in force in its own index (`Matcher.adopt_settings`), and
compares the counter at every look, so a missed notification costs at most a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from node.follow.listener import FollowListener
from node.store import replica as store
from node.store.pg import connect
from node.store.pg_changes import MATCH, ChangeListener, notify
from node.store.worker import DatabaseWorker

log = logging.getLogger(__name__)

#: Seconds between looks at the database without a notification (the catch-up).
CATCH_UP_INTERVAL = 1.0
#: Withdrawn indices per notification (PostgreSQL's payload is at most 8000 bytes).
INDICES_PER_NOTICE = 400


class MatchAnnouncer(FollowListener):
    """The follower's listener in the sequencing process: tells the other processes."""

    def __init__(self, target):
        self.target = target
        self._db = None
        self._lock = threading.Lock()  # the follower's thread; one connection

    def on_withdrawn(self, origin: str, indices) -> None:
        indices = [int(i) for i in indices]
        for start in range(0, len(indices), INDICES_PER_NOTICE):
            self._send({"withdrawn": origin, "indices": indices[start:start + INDICES_PER_NOTICE]})

    def on_applied(self, origin: str, size: int, root_hash: bytes, note: bytes, applied, at: float) -> None:
        self._send({"applied": origin, "size": size})

    def on_removed(self, origin: str) -> None:
        self._send({"removed": origin})

    def _send(self, message: dict) -> None:
        with self._lock:
            try:
                if self._db is not None and self._db.broken:  # PostgreSQL went away: a new one
                    self.close()
                if self._db is None:
                    self._db = connect(self.target)
                notify(self._db, MATCH, json.dumps(message))
            except Exception as exc:  # noqa: BLE001 -- the replicas' catch-up covers it
                log.warning("matcher: could not notify the other processes (%s); they catch up within %.0f s",
                            exc, CATCH_UP_INTERVAL)
                self.close()

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.close()
            except Exception:  # noqa: BLE001
                pass


class MatchReplica:
    def __init__(self, matcher, target):
        self.matcher = matcher
        self.target = target
        self.seen: dict[str, int] = {}   # origin -> verified size applied (worker thread)
        self.settings_seen = 0           # match_settings_version in force here (worker thread)
        self._worker = DatabaseWorker(target, name="match-replica")
        self._wake = asyncio.Event()
        self._listener: ChangeListener | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def sizes(self) -> dict[str, int]:
        """Read before the index is built: the followed logs' verified sizes (and the
        settings' version, which the build then reads or passes)."""
        def read(db):
            self.settings_seen = db.matching.settings_version()
            sizes = store.verified_sizes(db)
            if self.matcher.decides():
                self.matcher.load_limits = None
                return sizes
            # Not the deciding process: build only what its holds are decided for.
            decided = db.matching.decided_sizes()
            limits = {origin: min(size, decided[origin]) if origin in decided else size
                      for origin, size in sizes.items()}
            self.matcher.load_limits = limits
            return limits
        return await self._worker.call(read)

    async def start(self, sizes: dict[str, int]) -> None:
        """`sizes`: what the index was built from (read before the build: the look
        re-applies anything the build also saw, which changes nothing)."""
        self.seen = dict(sizes)
        if self.matcher.decides():  # its build decided the holds of all it read
            def decided(db):
                with db.atomic():
                    for origin, size in sizes.items():
                        db.matching.set_decided(origin, size)
            await self._worker.call(decided)
        loop = asyncio.get_running_loop()

        def heard(channel: str, payload: str) -> None:  # the listener's thread
            try:
                message = json.loads(payload)
                if "withdrawn" in message:
                    self.matcher.withdraw(message["withdrawn"], [int(i) for i in message["indices"]])
            except Exception as exc:  # noqa: BLE001 -- a bad notice: the look applies it from the database
                log.warning("matcher: could not apply a notification (%s)", exc)
            loop.call_soon_threadsafe(self._wake.set)

        self._listener = ChangeListener(self.target, [MATCH], heard)
        self._task = asyncio.create_task(self._run(), name="match-replica")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        await self._worker.close()

    async def _run(self) -> None:
        while not self._stopping:  # (Python 3.11's wait_for may swallow a cancellation)
            try:
                await asyncio.wait_for(self._wake.wait(), CATCH_UP_INTERVAL)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._worker.call(self.catch_up)
            except Exception as exc:  # noqa: BLE001 -- the next look tries again
                log.warning("matcher: catching up with the database failed (%s); trying again", exc)

    def catch_up(self, db) -> None:
        """(worker thread) Apply what every followed log's rounds committed since the
        sizes last applied."""
        version = db.matching.settings_version()
        if version != self.settings_seen:
            changed = self.matcher.adopt_settings(db)
            log.info("matcher: match settings changed (a threshold, suppression, budget or release): in force in "
                     "this process (%d entries in or out of its index)", changed)
            self.settings_seen = version
        sizes = store.verified_sizes(db)
        deciding = self.matcher.decides()
        if not deciding:  # the sequencing process decides holds: index only what it decided
            decided = db.matching.decided_sizes()
            self.matcher.holds.adopt_intake(db.matching.intake())
        for origin in [o for o in self.seen if o not in sizes]:
            self.matcher.on_removed(origin)
            del self.seen[origin]
        for origin, size in sizes.items():
            start = self.seen.get(origin, 0)
            if not deciding:
                size = min(size, decided.get(origin, start))
            if size <= start:
                continue
            if store.feedback_between(db, origin, start, size):
                self.matcher.descriptions.forget()  # what match answers say of the entries it names
            withdrawn = store.withdrawn_between(db, origin, start, size)
            if withdrawn:
                self.matcher.withdraw(origin, withdrawn)
            if not deciding:
                held = db.matching.held_between(origin, start, size)
                if "cluster" in held:
                    self.matcher.holds.adopt_clusters(db.matching.clusters(origin))
                self.matcher.holds.adopt_held(origin, held)
            self.matcher.on_added(origin, store.added_between(db, origin, start, size))
            self.seen[origin] = size
        if deciding:  # what this look decided (should the follower's own record have failed)
            stored = db.matching.decided_sizes()
            behind = {o: n for o, n in self.seen.items() if stored.get(o, -1) < n}
            if behind:
                with db.atomic():
                    for origin, size in behind.items():
                        db.matching.set_decided(origin, size)
