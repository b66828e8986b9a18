"""The running node's side of the federation list: fetch it every `interval` seconds
(the subscription's), accept or refuse it (node/federation/subscription.py), and tell
the follower and the gossip when something was applied at once.

The subscription is re-read every CHECK seconds, so `ncii-node federation follow`
takes effect while the node runs. A list that cannot be fetched or is refused is
logged and recorded for `status`; nothing else changes. One small GET per interval
(default 300 s): the list costs nothing measurable while idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from node.federation.subscription import Own, SubscriptionError, trust_of, update
from node.store.worker import DatabaseWorker

log = logging.getLogger(__name__)

CHECK = 5.0


class FederationService:
    def __init__(self, db_path: Path | str, own: Own, on_change, evidence_dir: Path | None = None):
        self.worker = DatabaseWorker(db_path, name="federation")
        self.own = own
        self.evidence_dir = evidence_dir
        self.on_change = on_change  # async: re-read the followed logs and peers
        self._task: asyncio.Task | None = None
        self._fetched_at = 0.0
        self._url: str | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="federation-list")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.worker.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 -- logged; tried again later
                log.exception("federation: checking the list failed")
            await asyncio.sleep(CHECK)

    async def check(self) -> str | None:
        """Fetch the list if it is due; returns what happened (None: not due)."""
        subscription = await self.worker.federation.subscription()
        if subscription is None:
            return None
        now = time.monotonic()
        if subscription.url == self._url and now - self._fetched_at < subscription.interval:
            return None
        self._url, self._fetched_at = subscription.url, now
        try:
            outcome = await update(self.worker.call, subscription.url, trust_of(subscription), self.own,
                                   self.evidence_dir)
        except SubscriptionError as exc:
            log.warning("federation: the list at %s is refused: %s (nothing changed)", subscription.url, exc)
            return "refused"
        if outcome.result == "accepted":
            log.info("federation: accepted the list's serial %d; %d change(s) applied at once, %d wait for "
                     "approval (ncii-node federation pending)", outcome.serial, len(outcome.applied),
                     len(outcome.pending))
        if outcome.applied:
            await self.on_change()
        return outcome.result
