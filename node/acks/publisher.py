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

Threads: decisions and appends on the event loop; database reads in one worker
thread with its own connection; `on_applied` arrives in the follower's thread and is
handed to the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from dataclasses import dataclass

from node.follow.listener import FollowListener
from node.store import acks as store
from node.store import follow as follow_store
from node.store import log as log_store
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
    def __init__(self, ctx, *, interval: float | None = None):
        self.ctx = ctx
        self.origin = ctx.config.node.origin
        self.interval = ctx.config.acknowledgements.interval if interval is None else interval
        self.signer = None               # DIR/keys/ack.key, loaded (made if missing) by start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="acks-db")
        self._db = None
        self._logs: dict[str, _LogState] = {}
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False

    @property
    def vkey(self) -> str:
        return self.signer.verifier_key()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        from node.store import open_db

        self._loop = asyncio.get_running_loop()
        self.signer = self.ctx.datadir.load_ack_signer(create=True)
        self._db = await self._call(lambda: open_db(self.ctx.datadir.db_path, check_same_thread=False))
        sent = await self._db_call(store.sent)
        for origin, row in sent.items():
            self._logs[origin] = _LogState(sent_size=row.size)
        if self.ctx.config.acknowledgements.enabled:
            self.ctx.sequencer.on_publish.append(self._on_publish)
            if self.ctx.sequencer.published is not None:
                self._on_publish(self.ctx.sequencer.published)  # the checkpoint found at start
        await self._catch_up(sent)

    async def stop(self) -> None:
        self._stopping = True
        if self._on_publish in self.ctx.sequencer.on_publish:
            self.ctx.sequencer.on_publish.remove(self._on_publish)
        for state in self._logs.values():
            if state.timer is not None:
                state.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._db is not None:
            await self._call(self._db.close)
        self._executor.shutdown(wait=True)

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _db_call(self, fn, *args):
        return await self._call(lambda: fn(self._db, *args))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, sent: dict) -> None:
        def unacknowledged(db) -> list[tuple[str, _Tree]]:
            out = []
            for followed in follow_store.list_logs(db):
                done = sent[followed.origin].size if followed.origin in sent else 0
                if followed.forked or followed.size <= done or followed.checkpoint_note is None:
                    continue
                holds = db.execute("SELECT 1 FROM fingerprints WHERE origin = ? LIMIT 1",
                                   (followed.origin,)).fetchone()
                if holds:  # a log that publishes submissions: what a platform acknowledges
                    out.append((followed.origin, _tree(followed.size, followed.root_hash,
                                                       followed.checkpoint_note, time.time())))
            return out

        if not self.ctx.config.acknowledgements.enabled:
            return
        for origin, tree in await self._db_call(unacknowledged):
            log.info("acknowledgements: %s size %d was applied but not acknowledged before the last stop; "
                     "acknowledging it now", origin, tree.size)
            self._note(origin, tree, urgent=True)

    # ------------------------------------------------------------------ own checkpoints
    def _on_publish(self, published) -> None:
        """(sequencer hook, event loop, before anyone can fetch the new checkpoint)
        Serve it with this node's publication cosignature."""
        if published.size == 0:
            return
        stored = log_store.checkpoint_at(self.ctx.db, published.size)
        if stored is None:
            return
        text = parse_note(published.note).text
        line = self.signer.cosign(text, int(stored.published_at))
        current = self.ctx.sequencer.published
        if current is not None and (current.size, current.root_hash) == (published.size, published.root_hash):
            self.ctx.sequencer.published = dataclasses.replace(current, note=add_signatures(current.note, [line]))

    # ------------------------------------------------------------------ what was applied
    def on_applied(self, origin: str, size: int, root_hash: bytes, note: bytes, applied, at: float) -> None:
        """(follower thread) A round of a followed log was committed."""
        if self._loop is None or not (applied.added or applied.withdrawals):
            return
        self._loop.call_soon_threadsafe(self._note, origin, _tree(size, root_hash, note, at),
                                        bool(applied.withdrawals))

    # ------------------------------------------------------------------ when to acknowledge
    def _note(self, origin: str, tree: _Tree, urgent: bool) -> None:
        if self._stopping or not self.ctx.config.acknowledgements.enabled:
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
        from node.log.sequencer import LogUnavailable

        tree, state.pending, state.urgent = state.pending, None, False
        try:
            ack = acknowledge(self.signer, Checkpoint(origin, tree.size, tree.root_hash), int(tree.at * 1000),
                              tree.publication)
            try:
                (appended,) = await self.ctx.sequencer.append([encode_entry(ack)])
            except LogUnavailable as exc:
                log.warning("acknowledgements: cannot publish the acknowledgement of %s size %d (%s); retrying",
                            origin, tree.size, exc)
                if state.pending is None:
                    state.pending = tree
                state.last_sent = time.monotonic() + RETRY_AFTER_FAILURE - self.interval
                return
            state.sent_size = max(state.sent_size, tree.size)
            state.last_sent = time.monotonic()
            await self._db_call(store.record_sent, origin, tree.size, tree.root_hash,
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
