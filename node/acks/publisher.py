"""Publishing this node's acknowledgements (spec/parts/acknowledgements.md §3).

Two things, both signed with DIR/keys/ack.key (a C2SP cosigner key named like the
origin):

  - The publication cosignature. Each checkpoint of this node's own log, as soon as
    the sequencer publishes it, is served with one more signature line: this key's
    tlog-cosignature with the time the checkpoint was recorded as published
    (log_checkpoints.published_at, whole seconds). Deterministic (Ed25519, a stored
    time), so a restart serves the same bytes. It never enters the log itself.

  - Acknowledgements. Every tree of a followed log that added submissions or
    withdrawals, once applied (the follower's `on_applied` hook, after the round is
    committed and the matcher updated; the time is then), is acknowledged by one
    entry appended to this node's own log, carrying the followed log's publication
    cosignature when its checkpoint had one. At most one acknowledgement per log per
    `[acknowledgements] interval` seconds -- the first at once, later ones for the
    newest tree once the interval has passed -- except that a round that applied a
    withdrawal is acknowledged at once (the legal clock runs on withdrawals). Once
    published, the acknowledgement is recorded in acks_sent.

At start-up, a followed log that publishes submissions and grew beyond its last
acknowledgement (a stop between applying and acknowledging) is acknowledged with
the time of start-up: late, but true.

Threads: decisions and appends on the event loop; database reads through its own
database worker (node/store/worker.py); `on_applied` arrives in the follower's thread
and is handed to the loop. The node (node/runtime.py) makes it the follower's first
listener and starts it right after the sequencer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

from node.follow.listener import FollowListener
from node.log.sequencer import LogUnavailable
from node.store.worker import DatabaseWorker
from protocol.acknowledgements import acknowledge, publication_of
from protocol.checkpoint import Checkpoint
from protocol.entries import Publication, encode_entry
from protocol.errors import ProtocolError
from protocol.note import add_signatures, parse_note

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 5.0


@dataclass
class _Tree:
    size: int
    root_hash: bytes
    at: float
    publication: Publication | None = None


@dataclass
class _LogState:
    sent_size: int = 0
    last_sent: float = -1e18        # monotonic time of the last append
    pending: _Tree | None = None
    urgent: bool = False
    sending: bool = False
    timer: asyncio.TimerHandle | None = None


def _tree(size: int, root_hash: bytes, note: bytes, at: float) -> _Tree:
    try:
        publication = publication_of(parse_note(note))
    except ProtocolError:  # cannot happen for a note the follower verified; no publication time then
        publication = None
    return _Tree(size, root_hash, at, publication)


class Acknowledger(FollowListener):
    def __init__(self, datadir, config, sequencer, db, *, interval: float | None = None):
        self.datadir = datadir
        self.config = config
        self.sequencer = sequencer
        self.db = db                     # the node's event-loop connection: one row per publication
        self.origin = config.node.origin
        self.enabled = config.acknowledgements.enabled
        self.interval = config.acknowledgements.interval if interval is None else interval
        self.signer = None               # DIR/keys/ack.key, loaded (made if missing) by start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.worker = DatabaseWorker(datadir.db_path, name="acks-db")
        self._logs: dict[str, _LogState] = {}
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False

    @property
    def vkey(self) -> str:
        return self.signer.verifier_key()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.signer = self.datadir.load_ack_signer(create=True)
        sent = await self.worker.acks.sent()
        for origin, row in sent.items():
            self._logs[origin] = _LogState(sent_size=row.size)
        if self.enabled:
            self.sequencer.on_publish.append(self._on_publish)
            if self.sequencer.published is not None:
                self._on_publish(self.sequencer.published)  # the checkpoint found at start
        await self._catch_up(sent)

    async def stop(self) -> None:
        self._stopping = True
        if self._on_publish in self.sequencer.on_publish:
            self.sequencer.on_publish.remove(self._on_publish)
        for state in self._logs.values():
            if state.timer is not None:
                state.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.worker.close()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, sent: dict) -> None:
        def unacknowledged(db) -> list[tuple[str, _Tree]]:
            out = []
            for followed in db.follow.list_logs():
                done = sent[followed.origin].size if followed.origin in sent else 0
                if followed.forked or followed.size <= done or followed.checkpoint_note is None:
                    continue
                # A log that publishes submissions: what a platform acknowledges.
                if db.follow.holds_fingerprints(followed.origin):
                    out.append((followed.origin, _tree(followed.size, followed.root_hash,
                                                       followed.checkpoint_note, time.time())))
            return out

        if not self.enabled:
            return
        for origin, tree in await self.worker.call(unacknowledged):
            log.info("acknowledgements: %s size %d was applied but not acknowledged before the last stop; "
                     "acknowledging it now", origin, tree.size)
            self._note(origin, tree, urgent=True)

    # ------------------------------------------------------------------ own checkpoints
    def _on_publish(self, published) -> None:
        """(sequencer hook, event loop, before anyone can fetch the new checkpoint)
        Serve it with this node's publication cosignature."""
        if published.size == 0:
            return
        stored = self.db.log.checkpoint_at(published.size)
        if stored is None:
            return
        current = self.sequencer.published
        if current is not None and (current.size, current.root_hash) == (published.size, published.root_hash):
            self.sequencer.published = dataclasses.replace(
                current, note=self.cosigned(current.note, published.note, stored.published_at))

    def cosigned(self, note: bytes, checkpoint_note: bytes, published_at: float) -> bytes:
        """`note` with our publication cosignature of the checkpoint (deterministic: any
        process of the node holding the key makes the same line)."""
        line = self.signer.cosign(parse_note(checkpoint_note).text, int(published_at))
        return add_signatures(note, [line])

    # ------------------------------------------------------------------ what was applied
    def on_applied(self, origin: str, size: int, root_hash: bytes, note: bytes, applied, at: float) -> None:
        """(follower thread) A round of a followed log was committed."""
        if self._loop is None or not (applied.added or applied.withdrawals):
            return
        self._loop.call_soon_threadsafe(self._note, origin, _tree(size, root_hash, note, at),
                                        bool(applied.withdrawals))

    # ------------------------------------------------------------------ when to acknowledge
    def _note(self, origin: str, tree: _Tree, urgent: bool) -> None:
        if self._stopping or not self.enabled:
            return
        state = self._logs.setdefault(origin, _LogState())
        if tree.size <= state.sent_size or (state.pending is not None and tree.size <= state.pending.size):
            return
        state.pending = tree
        state.urgent = state.urgent or urgent
        self._schedule(origin, state)

    def _schedule(self, origin: str, state: _LogState) -> None:
        if state.sending or state.pending is None or self._stopping:
            return
        wait = 0.0 if state.urgent else max(0.0, state.last_sent + self.interval - time.monotonic())
        if state.timer is not None:
            if wait > 0:
                return  # already due then
            state.timer.cancel()
            state.timer = None
        if wait > 0:
            state.timer = self._loop.call_later(wait, self._due, origin)
            return
        state.sending = True
        self._spawn(self._send(origin, state))

    def _due(self, origin: str) -> None:
        state = self._logs[origin]
        state.timer = None
        state.urgent = True
        self._schedule(origin, state)

    async def _send(self, origin: str, state: _LogState) -> None:
        tree, state.pending, state.urgent = state.pending, None, False
        try:
            ack = acknowledge(self.signer, Checkpoint(origin, tree.size, tree.root_hash), int(tree.at * 1000),
                              tree.publication)
            try:
                (appended,) = await self.sequencer.append([encode_entry(ack)])
            except LogUnavailable as exc:
                log.warning("acknowledgements: cannot publish the acknowledgement of %s size %d (%s); retrying",
                            origin, tree.size, exc)
                if state.pending is None:
                    state.pending = tree
                state.last_sent = time.monotonic() + RETRY_AFTER_FAILURE - self.interval
                return
            state.sent_size = max(state.sent_size, tree.size)
            state.last_sent = time.monotonic()
            await self.worker.acks.record_sent(origin, tree.size, tree.root_hash,
                                ack.timestamp * 1000 + ack.milliseconds, appended.index)
            log.debug("acknowledgements: %s size %d acknowledged at entry %d", origin, tree.size, appended.index)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("acknowledgements: could not acknowledge %s size %d", origin, tree.size)
        finally:
            state.sending = False
            if state.pending is not None and state.pending.size <= state.sent_size:
                state.pending = None
            self._schedule(origin, state)
