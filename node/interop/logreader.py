"""One verified round of a followed log, for a reader that keeps its own state.

A node's follower (node/follow/sync.py) keeps what it verified in its database. A
reader that is not a node -- the python-threatexchange extension (pytx.py) -- keeps it
somewhere else (there: pytx's fetch checkpoint). `LogReader` runs the follower's own
verification, the same code (node.follow.sync.LogVerifier and verify_chunk):

  - the checkpoint is signed by the pinned key, or by the key a verified rotation
    moved to, and names the log's origin (by default the key's name);
  - compared with the state: the same size with another root, or a smaller size that
    is not the same history, is a FORK; an older checkpoint of the same history is a
    stale copy (an error, not a fork);
  - every tile is checked against the signed root, the new tree must begin with the
    state's tree (else FORK), every entry must hash to its leaf and decode strictly;
  - a key rotation is honoured only if signed by the current key and named like the log
    or like the current key (node.follow.apply._check_rotation).

When things are returned: `on_entry(index, entry)` receives every new entry, in log
order, while the round verifies; `read_round()` returns the new `ReaderState` only once
the whole round has verified. The caller keeps what `on_entry` received aside and
drops it if the round raises: a round gives all its entries with its new state, or
nothing. Errors are node.follow.sync's: SyncError (the log cannot be read, or a stale
copy), PeerMisbehaved (bad tile, entry, signature) and ForkDetected, after the same
evidence file as the follower's was written to `evidence_dir`
(node.follow.forks.evidence_for_fork). The state passed in is never modified, so every
later round finds the same fork again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from node.follow import forks
from node.follow.apply import _check_rotation as check_rotation  # the follower's own rule
from node.follow.client import DEFAULT_TIMEOUT, PeerClient
from node.follow.sync import (
    ForkDetected,
    LogVerifier,
    PeerMisbehaved,
    RoundResult,
    RoundState,
    verify_chunk,
)
from protocol.entries import Announcement, Entry, decode_entry
from protocol.errors import EntryError
from protocol.note import Verifier
from protocol.tiles import BundleId, TileId

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ReaderState:
    """What a reader verified of the log `origin`: the checkpoint (size, root, note)
    and the key the next checkpoint must be signed by. The attributes LogVerifier reads
    are named as in node.store.follow.FollowedLog."""

    origin: str
    vkey: str
    size: int = 0
    root_hash: bytes | None = None
    checkpoint_note: bytes | None = None
    verified_at: float | None = None

    @classmethod
    def first(cls, vkey: str, origin: str | None = None) -> ReaderState:
        """Nothing verified yet. `origin`: the log's origin line, by default the key's
        name (C2SP tlog-checkpoint: a log's key SHOULD be named like its origin)."""
        return cls(origin if origin is not None else Verifier.from_vkey(vkey).name, vkey)


@dataclass(frozen=True)
class Rotation:
    index: int
    new_vkey: str
    honoured: bool
    reason: str


class LogReader(LogVerifier):
    """Reads one log from `client` (node.follow.client.PeerClient, signing its reads
    for restricted logs), starting from `state`."""

    def __init__(self, client: PeerClient, state: ReaderState, on_entry: Callable[[int, Entry], None], *,
                 evidence_dir: Path | None, **options):
        super().__init__(state.origin, client, **options)
        self.state = state
        self.on_entry = on_entry
        self.evidence_dir = evidence_dir
        self.rotations: list[Rotation] = []
        self._vkey = state.vkey

    async def read_round(self) -> RoundResult:
        """One round; afterwards `self.state` is the new state (unchanged when in sync)."""
        self._vkey, self.rotations = self.state.vkey, []
        return await self._round(self.state)

    # ------------------------------------------------------------------ hooks
    async def _verify(self, rnd: RoundState, chunk: list[BundleId], level0_data: dict[TileId, bytes],
                      bundle_data: list[bytes], first: bool) -> None:
        # Off the event loop, which meanwhile fetches the next chunk (as the follower does).
        await asyncio.to_thread(self._verify_and_decode, rnd, chunk, level0_data, bundle_data, first)

    def _verify_and_decode(self, rnd: RoundState, chunk: list[BundleId], level0_data: dict[TileId, bytes],
                           bundle_data: list[bytes], first: bool) -> None:
        for first_index, entries, _leaves in verify_chunk(rnd, chunk, level0_data, bundle_data, first):
            for index, data in enumerate(entries, first_index):
                try:
                    entry = decode_entry(data)
                except EntryError as exc:
                    raise PeerMisbehaved(f"protocol violation: entry {index} does not follow the entry "
                                         f"grammar: {exc}") from None
                if type(entry) is Announcement and entry.new_vkey is not None:
                    self._rotate(index, entry)
                self.on_entry(index, entry)

    def _rotate(self, index: int, announcement: Announcement) -> None:
        honoured, reason = check_rotation(self.origin, self._vkey, announcement)
        self.rotations.append(Rotation(index, announcement.new_vkey, honoured, reason))
        if honoured:
            log.warning("log %s: key rotation at entry %d honoured; checkpoints must now be signed by %s",
                        self.origin, index, announcement.new_vkey)
            self._vkey = announcement.new_vkey
        else:
            log.error("log %s: key rotation at entry %d REFUSED: %s", self.origin, index, reason)

    async def _apply(self, state: ReaderState, rnd: RoundState, note: bytes) -> RoundResult:
        self.state = ReaderState(self.origin, self._vkey, rnd.size, rnd.root, note, time.time())
        return RoundResult(self.origin, "applied", rnd.old_size, rnd.size)

    async def _fork(self, state: ReaderState, reason: str, earlier_size: int, earlier_note: bytes | None,
                    later_size: int, later_note: bytes, larger_tree=None, tiles_problem: str | None = None) -> None:
        url = self.client.base_url
        sources = [(f"verified earlier by this reader from {url}", state.verified_at), f"served later by {url}"]
        _doc, path, problem = await asyncio.to_thread(
            forks.evidence_for_fork, earlier_size, earlier_note, later_size, later_note, vkey=state.vkey,
            larger_tree=larger_tree, sources=sources, evidence_dir=self.evidence_dir, tiles_problem=tiles_problem,
            no_dir="give one to keep the evidence")
        where = (f"evidence written to {path} (anyone can check it: ncii-node audit verify-evidence FILE)"
                 if path else problem)
        log.critical("FORK in log %s (%s): %s", self.origin, reason, where)
        raise ForkDetected(f"FORK: {reason}; nothing past the last verified checkpoint (size {state.size}) "
                           f"is believed; {where}")


def read_round(url: str, state: ReaderState, on_entry: Callable[[int, Entry], None], *, signer=None,
               evidence_dir: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
               **options) -> tuple[ReaderState, RoundResult, list[Rotation]]:
    """`LogReader.read_round` for synchronous callers: (new state, result, rotations)."""

    async def run():
        async with PeerClient(url, signer=signer, timeout=timeout) as client:
            reader = LogReader(client, state, on_entry, evidence_dir=evidence_dir, **options)
            result = await reader.read_round()
            return reader.state, result, reader.rotations

    return run_sync(run())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from synchronous code, even from a thread whose event
    loop is running (then in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
