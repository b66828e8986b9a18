"""One round of following a log: fetch, verify everything, apply in one transaction.

This module is where the follower decides what to believe; all verification lives in
`LogVerifier._round`, `verify_chunk` and `_consistent`, in this order:

  1. CHECKPOINT  fetch /checkpoint; it must verify under the pinned key, be for the
                 followed origin (protocol.checkpoint.open_checkpoint).
  2. COMPARE     with the last verified checkpoint (size m, root r_m):
                   same size, same root  -> in sync, nothing to do;
                   same size, other root -> FORK;
                   smaller, and it is a checkpoint we verified before, or the root of
                       the first n leaves of our verified tree (from the leaf hashes we
                       kept, else its tiles fetched again) -> stale copy (a cache), an
                       error but not a fork;
                   smaller otherwise     -> FORK (a log never shrinks), with evidence
                       from our own leaf hashes even if the log withholds its tiles;
                   larger                -> 3.
  3. TILES       fetch every tile the tree of size n has that the tree of size m lacks
                 or has narrower, plus the partial tiles of n (its right edge); check
                 them against the signed root r_n (protocol.tiles.verify_tiles), chunk
                 by chunk, each chunk with the ancestors it hangs from.
  4. CONSISTENCY compute the root of the first m leaves from the (now authentic) tiles
                 of n; it must be r_m, else the log rewrote history: FORK.
  5. LEAVES      fetch the entry bundles [m, n); each must decode strictly and its
                 entries' leaf hashes (SHA-256(0x00 || entry)) must be exactly the
                 hashes of the level-0 tile of the same index; every entry >= m must
                 decode (protocol.entries.decode_entry), else the peer broke the
                 protocol and nothing of the round is applied.
  6. APPLY       in ONE write transaction: the entries (node/follow/apply.py), the new
                 checkpoint as the verified state; the listener's on_withdrawn runs
                 before COMMIT, on_added after.

Invariants: the verified state (size, root, note) changes only in step 6, and only to
a checkpoint that passed 1-5; nothing verified is ever rolled back; a fork is stored
as evidence (both notes, and a portable evidence file: node/follow/forks.py) and stops
the log for good. Any other failure leaves the
state as it was and records the reason, and the next round starts again from 1.

The follower needs no tree state but (m, r_m) to follow: tiles are immutable, so
whatever a round needs from the old tree it reads from the tiles of the new one and
checks. It also keeps every leaf hash it verified (node/store/follow_leaves.py), only
to prove a shrinking log's fork from its own data.
Verification and database work run in a worker thread (node/store/worker.py); while it
checks one chunk the event loop already fetches the next.

Steps 1-5 belong to `LogVerifier`, which knows no storage: what it verified goes to
hooks (`_verify`, `_apply`, `_fork`, ...). `Follower` implements them with the
database (step 6); node/interop/logreader.py implements them with a checkpoint held
in memory, for readers that are not nodes (the python-threatexchange extension). Both
therefore believe exactly the same things.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from node.follow import forks
from node.follow.apply import Applied, apply_staged, stage_entries
from node.follow.client import FetchError, PeerClient
from node.follow.listener import FollowListener
from node.logsummary import PeriodicSummary
from node.store import follow as store
from node.store.worker import DatabaseWorker
from node.witness.policy import check_followed_checkpoint
from protocol.checkpoint import open_checkpoint
from protocol.errors import CosignatureError, EntryError, ProtocolError, TileError
from protocol.merkle import EMPTY_ROOT, leaf_hash, range_hash
from protocol.note import Verifier
from protocol.tiles import (
    TILE_HEIGHT,
    BundleId,
    TileId,
    TileNodes,
    decode_bundle,
    new_bundles,
    new_tiles,
    partial_tiles_for_size,
    tile_hashes,
    verify_tiles,
)

log = logging.getLogger(__name__)

#: Entry bundles verified and staged per step (256 entries each): bounds memory.
DEFAULT_CHUNK_BUNDLES = 128
#: Requests in flight per followed log.
DEFAULT_CONCURRENCY = 8
#: Largest growth accepted in one round. A validly signed checkpoint can still claim
#: any size up to 2**63; without a bound, merely listing the tiles of such a tree
#: would exhaust memory. 100 million entries is ten times the scale this node targets.
MAX_ROUND_ENTRIES = 100_000_000


class SyncError(Exception):
    """A round failed; the verified state is unchanged. The message says why.
    `unreachable`: "down" or "timeout" when the node could not be read at all
    (FetchError.unreachable), else None."""

    unreachable: str | None = None


class PeerMisbehaved(SyncError):
    """The peer served data that does not verify or does not follow the protocol."""


class AwaitingCosignatures(SyncError):
    """The checkpoint lacks the witness cosignatures the log's policy requires; a
    cosigned copy of it usually follows within moments."""


class ForkDetected(SyncError):
    """Two validly signed checkpoints of one log that cannot both be true. `tiles`:
    verified tiles of the larger tree, when the check that found the fork had them."""

    def __init__(self, message: str, tiles: dict | None = None):
        super().__init__(message)
        self.tiles = tiles


@dataclass(frozen=True)
class RoundResult:
    origin: str
    outcome: str            # "in-sync" | "applied" | "forked" (log already stopped)
    old_size: int
    new_size: int
    applied: Applied | None = None
    seconds: float = 0.0


@dataclass
class RoundState:
    """What one growing round knows while it verifies (worker-thread side)."""
    origin: str
    old_size: int
    old_root: bytes | None
    size: int
    root: bytes
    edge: dict[TileId, bytes]            # partial tiles of n, every level
    upper: dict[tuple[int, int], TileId]  # (level, index) -> fetched tile, levels >= 1
    upper_data: dict[TileId, bytes]


class LogVerifier:
    """Steps 1-5 of a round of one log, without storage (see the module docstring).

    `state` is what was verified before: any object with `size`, `root_hash`,
    `checkpoint_note` and `vkey` (the key checkpoints must be signed by), such as a
    node.store.follow.FollowedLog. Subclasses implement the hooks: `_verify` (check a
    chunk, with `verify_chunk`, and keep its entries), `_apply` (step 6) and `_fork`
    (record the evidence, then raise ForkDetected); the others default to nothing."""

    def __init__(self, origin: str, client: PeerClient, *, chunk_bundles: int = DEFAULT_CHUNK_BUNDLES,
                 concurrency: int = DEFAULT_CONCURRENCY):
        self.origin = origin
        self.client = client
        self.chunk_bundles = chunk_bundles
        self._limit = asyncio.Semaphore(concurrency)

    # ------------------------------------------------------------------ hooks
    async def _in_sync(self, size: int) -> None:
        """The log's checkpoint is the one verified before."""

    async def _checkpoint_at(self, size: int) -> tuple[bytes, bytes] | None:
        """(root, note) of a checkpoint of `size` verified before, if known."""
        return None

    async def _require_cosignatures(self, note: bytes) -> None:
        """Raise SyncError unless the growing checkpoint `note` is cosigned as required."""

    async def _remote_size(self, size: int) -> None:
        """The log's newest checkpoint, signed and not a fork, claims `size` entries."""

    async def _start_round(self) -> None:
        """Steps 3-5 are about to run (drop what an unfinished round kept)."""

    async def _stored_tree(self, size: int, root: bytes):
        """Our verified tree of `size` leaves from leaf hashes kept earlier, if any
        (node/follow/forks.stored_tree); None makes the round fetch its tiles again."""
        return None

    async def _verify(self, rnd: RoundState, chunk: list[BundleId], level0_data: dict[TileId, bytes],
                      bundle_data: list[bytes], first: bool) -> None:
        """Steps 3-5 for one chunk: `verify_chunk`, then keep what it returns."""
        raise NotImplementedError

    async def _apply(self, state, rnd: RoundState, note: bytes) -> RoundResult:
        """Step 6: make the round's verified entries and checkpoint the new state."""
        raise NotImplementedError

    async def _fork(self, state, reason: str, earlier_size: int, earlier_note: bytes | None,
                    later_size: int, later_note: bytes, larger_tree=None, tiles_problem: str | None = None) -> None:
        """Record the fork (both notes, evidence), then raise ForkDetected(reason)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ steps 1-2
    async def _round(self, state, note: bytes | None = None) -> RoundResult:
        """`note`: the checkpoint as a push delivered it (else /checkpoint is fetched);
        it is verified exactly like a fetched one."""
        if note is None:
            note = await self._fetch(self.client.checkpoint())
        try:
            # The pinned key was configured for this origin; its name need not be the origin
            # (C2SP tlog-checkpoint: SHOULD).
            cp, _ = open_checkpoint(note, [Verifier.from_vkey(state.vkey)], origin=self.origin,
                                    key_name_is_origin=False)
        except ProtocolError as exc:
            raise PeerMisbehaved(f"checkpoint rejected: {exc}") from None
        if cp.size == 0 and cp.root_hash != EMPTY_ROOT:
            raise PeerMisbehaved("checkpoint of size 0 whose root is not the empty tree's")
        m = state.size
        if cp.size == m:
            if m == 0 or cp.root_hash == state.root_hash:
                await self._in_sync(m)
                return RoundResult(self.origin, "in-sync", m, m)
            await self._fork(state, f"two checkpoints of size {m} with different roots", m, state.checkpoint_note,
                             cp.size, note)
        if cp.size < m:
            earlier = await self._checkpoint_at(cp.size)
            if earlier is not None and earlier[0] == cp.root_hash:
                raise SyncError(f"the log served its older checkpoint of size {cp.size} (verified before; "
                                f"we hold size {m}): a stale copy, perhaps a cache; waiting for a newer one")
            if earlier is not None:
                await self._fork(state, f"two checkpoints of size {cp.size} with different roots", cp.size,
                                 earlier[1], cp.size, note)
            # Never verified at that size: compare with our own tree of size m (the larger),
            # from the leaf hashes we verified and kept (so a log that withholds its old
            # tiles cannot escape), else from its tiles fetched again and checked against
            # the root we verified. Its first n leaves having root r_n means an older
            # checkpoint of the same history (a cache that lags): no fork. Otherwise our
            # tree makes the evidence. Without it the log is stopped all the same: it went
            # back on a size it had signed and we cannot show that the history is the same.
            if cp.size == 0:
                raise SyncError(f"the log served a checkpoint of size 0 (we hold size {m}): a stale copy; "
                                "waiting for a newer one")
            tiles_problem = None
            ours = await self._stored_tree(m, state.root_hash)
            if ours is None:
                try:
                    ours = await self._fetch(forks.fetch_verified_tree(self.client, m, state.root_hash, cp.size))
                except (SyncError, ProtocolError) as exc:
                    tiles_problem = f"the tiles of our verified tree of size {m} are not available ({exc})"
                    log.warning("follow %s: %s", self.origin, tiles_problem)
                    ours = None
            if ours is not None and range_hash(0, cp.size, ours) == cp.root_hash:
                raise SyncError(f"the log served an older checkpoint of size {cp.size} (we hold size {m}; its "
                                "root is that of our first entries): a stale copy, perhaps a cache; waiting "
                                "for a newer one")
            await self._fork(state, f"the log shrank from the verified size {m} to {cp.size}", m,
                             state.checkpoint_note, cp.size, note, larger_tree=ours, tiles_problem=tiles_problem)
        await self._require_cosignatures(note)
        await self._remote_size(cp.size)
        if cp.size - m > MAX_ROUND_ENTRIES:
            raise PeerMisbehaved(f"the checkpoint claims {cp.size - m:,} new entries, more than the "
                                 f"{MAX_ROUND_ENTRIES:,} a follower accepts in one round")
        return await self._catch_up(state, cp, note)

    async def _fetch(self, coro):
        try:
            async with self._limit:
                return await coro
        except FetchError as exc:
            error = SyncError(f"cannot read the log: {exc}")
            error.unreachable = exc.unreachable
            raise error from None
        finally:
            coro.close()  # a fetch cancelled while waiting for its turn never started: no warning

    async def _fetch_all(self, coros: list) -> list[bytes]:
        tasks = [asyncio.ensure_future(self._fetch(c)) for c in coros]
        try:
            return await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    # ------------------------------------------------------------------ steps 3-5, then _apply (6)
    async def _catch_up(self, state, cp, note: bytes) -> RoundResult:
        m, n = state.size, cp.size
        tiles = new_tiles(m, n)
        edge_ids = partial_tiles_for_size(n)  # the right edge of the tree
        fetch_first = [t for t in dict.fromkeys(t for t in tiles + edge_ids if t.level > 0 or not t.is_full)]
        first_data = await self._fetch_all([self.client.tile(t) for t in fetch_first])
        fetched = dict(zip(fetch_first, first_data))
        rnd = RoundState(self.origin, m, state.root_hash, n, cp.root_hash,
                     edge={t: fetched[t] for t in edge_ids},
                     upper={(t.level, t.index): t for t in fetched if t.level > 0},
                     upper_data={t: d for t, d in fetched.items() if t.level > 0})
        level0 = {t.index: t for t in tiles if t.level == 0}
        bundles = new_bundles(m, n)
        chunks = [bundles[i:i + self.chunk_bundles] for i in range(0, len(bundles), self.chunk_bundles)]

        async def fetch_chunk(chunk: list[BundleId]):
            wanted = [level0[b.index] for b in chunk if level0[b.index] not in rnd.edge]
            data = await self._fetch_all([self.client.tile(t) for t in wanted]
                                         + [self.client.bundle(b) for b in chunk])
            return dict(zip(wanted, data)), data[len(wanted):]

        await self._start_round()
        pending = asyncio.ensure_future(fetch_chunk(chunks[0]))
        try:
            for k, chunk in enumerate(chunks):
                level0_data, bundle_data = await pending
                if k + 1 < len(chunks):
                    pending = asyncio.ensure_future(fetch_chunk(chunks[k + 1]))
                await self._verify(rnd, chunk, level0_data, bundle_data, k == 0)
        except ForkDetected as exc:
            await self._fork(state, str(exc), m, state.checkpoint_note, n, note,
                             larger_tree=TileNodes(n, exc.tiles) if exc.tiles else None)
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
        return await self._apply(state, rnd, note)


class Follower(LogVerifier):
    """Follows one log into the database. `sync_once()` runs one round (see the module
    docstring)."""

    def __init__(self, origin: str, client: PeerClient, worker: DatabaseWorker, *,
                 listener: FollowListener | None = None, own_origin: str | None = None,
                 chunk_bundles: int = DEFAULT_CHUNK_BUNDLES, concurrency: int = DEFAULT_CONCURRENCY,
                 evidence_dir: Path | None = None):
        super().__init__(origin, client, chunk_bundles=chunk_bundles, concurrency=concurrency)
        #: Where fork evidence files go (DIR/evidence); by default beside the database.
        self.evidence_dir = Path(evidence_dir) if evidence_dir is not None else \
            Path(worker.db_path).parent / forks.EVIDENCE_DIR
        self.worker = worker
        self.listener = listener or FollowListener()
        self.own_origin = own_origin
        self._summary = PeriodicSummary()  # one INFO line a minute about applied rounds

    async def sync_once(self, note: bytes | None = None) -> RoundResult:
        """One round. Raises SyncError (PeerMisbehaved, ForkDetected) after recording it.
        `note`: the checkpoint as the push channel delivered it (else /checkpoint is
        fetched); it is verified exactly like a fetched one."""
        started = time.monotonic()
        state = await self.worker.follow.get_log(self.origin)
        if state is None:
            raise SyncError(f"log {self.origin!r} is not followed")
        if state.forked:
            return RoundResult(self.origin, "forked", state.size, state.size)
        try:
            result = await self._round(state, note)
        except ForkDetected as exc:
            log.critical("FORK in log %s: %s. Nothing more is applied from it; both checkpoints are kept "
                         "(ncii-node status --dir DIR).", self.origin, exc)
            raise
        except SyncError as exc:
            # A pushed checkpoint usually comes before its cosignatures: not worth a warning
            # each time (the status still shows it while it lasts).
            log.log(logging.DEBUG if isinstance(exc, AwaitingCosignatures) else logging.WARNING,
                    "follow %s: %s", self.origin, exc)
            await self.worker.follow.record_error(self.origin, str(exc))
            raise
        return RoundResult(result.origin, result.outcome, result.old_size, result.new_size, result.applied,
                           time.monotonic() - started)

    # ------------------------------------------------------------------ hooks: the database
    async def _in_sync(self, size: int) -> None:
        await self.worker.follow.record_in_sync(self.origin, size)

    async def _checkpoint_at(self, size: int) -> tuple[bytes, bytes] | None:
        return await self.worker.follow.checkpoint_at(self.origin, size)

    async def _remote_size(self, size: int) -> None:
        await self.worker.follow.record_remote_size(self.origin, size)

    async def _start_round(self) -> None:
        await self.worker.call(_reset_staging, self.origin)

    async def _stored_tree(self, size: int, root: bytes):
        return await self.worker.call(forks.stored_tree, self.origin, size, root)

    async def _verify(self, rnd: RoundState, chunk: list[BundleId], level0_data: dict[TileId, bytes],
                      bundle_data: list[bytes], first: bool) -> None:
        await self.worker.call(_verify_chunk, rnd, chunk, level0_data, bundle_data, first)

    async def _apply(self, state: store.FollowedLog, rnd: RoundState, note: bytes) -> RoundResult:
        applied = await self.worker.call(_commit, rnd, state.vkey, note, self.own_origin, self.listener)
        m, n = rnd.old_size, rnd.size
        log.debug("follow %s: verified checkpoint %d (+%d entries, %d fingerprints, %d withdrawn)",
                  self.origin, n, n - m, applied.added, len(applied.withdrawn))
        due = self._summary.add(rounds=1, entries=n - m, added=applied.added, withdrawn=len(applied.withdrawn))
        if due:
            totals, _, seconds = due
            log.info("follow %s: verified checkpoint %d (+%d entries, %d fingerprints, %d withdrawn%s)",
                     self.origin, n, totals["entries"], totals["added"], totals["withdrawn"],
                     f"; {totals['rounds']} rounds over the last {seconds:.0f} s" if seconds else "")
        return RoundResult(self.origin, "applied", m, n, applied)

    async def _require_cosignatures(self, note: bytes) -> None:
        """Witness policy (`ncii-node witness require`, node/witness/policy.py): a growing
        checkpoint is applied only with k of n witness cosignatures, if the log has such
        a policy. Fork detection above does not depend on it."""
        try:
            await self.worker.call(check_followed_checkpoint, self.origin, note)
        except CosignatureError as exc:
            raise AwaitingCosignatures(f"checkpoint not applied: {exc}") from None

    async def _fork(self, state: store.FollowedLog, reason: str, earlier_size: int, earlier_note: bytes | None,
                    later_size: int, later_note: bytes, larger_tree=None, tiles_problem: str | None = None) -> None:
        """Record the fork with its evidence file (node/follow/forks.py), then stop the round."""
        url = self.client.base_url
        await self.worker.call(forks.record_fork, self.origin, reason, earlier_size, earlier_note or b"",
                               later_size, later_note, vkey=state.vkey, larger_tree=larger_tree,
                               sources=[(f"verified earlier by this node from {url}", state.verified_at),
                                        f"served later by {url}"],
                               evidence_dir=self.evidence_dir, source="follower", tiles_problem=tiles_problem)
        raise ForkDetected(reason)


# ---------------------------------------------------------------------- worker thread

def _verify_chunk(db, rnd: RoundState, chunk: list[BundleId], level0_data: dict[TileId, bytes],
                  bundle_data: list[bytes], first: bool) -> None:
    """Steps 3-5 for one chunk of entry bundles; stages the entries and the chunk's
    level-0 tiles, whose leaf hashes are kept (node/store/follow_leaves.py; no lock taken)."""
    for first_entry, entries, leaves in verify_chunk(rnd, chunk, level0_data, bundle_data, first):
        try:
            stage_entries(db, rnd.origin, first_entry, entries, leaves)
        except EntryError as exc:
            raise PeerMisbehaved(f"protocol violation: {exc}") from None
    tiles = {**rnd.edge, **level0_data}  # verified by verify_chunk
    db.follow_leaves.stage(rnd.origin, [(b.index, b.width, tiles[TileId(0, b.index, b.width)]) for b in chunk])


def _reset_staging(db, origin: str) -> None:
    db.follow.reset_staging(origin)
    db.follow_leaves.reset_staging(origin)


def verify_chunk(rnd: RoundState, chunk: list[BundleId], level0_data: dict[TileId, bytes],
                 bundle_data: list[bytes], first: bool) -> list[tuple[int, list[bytes], list[bytes]]]:
    """Steps 3-5 for one chunk of entry bundles, without storage: every tile checked
    against the signed root, consistency (on the first chunk), every entry against its
    leaf hash. Returns, per bundle, (index of its first new entry, the new entries,
    their leaf hashes): entries the log held before this round (m) are left out.
    Raises PeerMisbehaved or ForkDetected. The entries are not decoded yet."""
    tiles: dict[TileId, bytes] = dict(rnd.edge)
    tiles.update(level0_data)
    # Each level-0 tile is checked against its parent, which is checked against its
    # own parent, ... up to the partial tiles that give the signed root.
    for tile in level0_data:
        index, level = tile.index, 0
        while rnd.size >> (TILE_HEIGHT * (level + 1)):
            index >>= TILE_HEIGHT
            level += 1
            upper = rnd.upper.get((level, index))
            if upper is not None:
                tiles[upper] = rnd.upper_data[upper]
    try:
        verify_tiles(rnd.size, rnd.root, tiles)
    except TileError as exc:
        raise PeerMisbehaved(f"tiles do not match the signed checkpoint of size {rnd.size}: {exc}") from None
    if first and rnd.old_size > 0:
        _consistent(rnd, tiles)
    verified = []
    for bundle, data in zip(chunk, bundle_data):
        try:
            entries = decode_bundle(data, bundle.width)
        except TileError as exc:
            raise PeerMisbehaved(f"entry bundle {bundle.path()} is malformed: {exc}") from None
        hashes = tile_hashes(tiles[TileId(0, bundle.index, bundle.width)], bundle.width)
        leaves = [leaf_hash(e) for e in entries]
        if leaves != hashes:
            bad = next(i for i, (a, b) in enumerate(zip(leaves, hashes)) if a != b)
            raise PeerMisbehaved(f"entry bundle {bundle.path()}: entry {bundle.first_entry + bad} does not "
                                 "hash to its leaf hash in the level-0 tile")
        skip = max(0, rnd.old_size - bundle.first_entry)  # entries verified in an earlier round
        verified.append((bundle.first_entry + skip, entries[skip:], leaves[skip:]))
    return verified


def _consistent(rnd: RoundState, tiles: dict[TileId, bytes]) -> None:
    """Step 4: the authentic tree of size n must begin with the tree we verified."""
    try:
        old_root = TileNodes(rnd.size, tiles).range_hash(0, rnd.old_size)
    except TileError as exc:  # a tile we should have fetched: our bug, not the peer's
        raise SyncError(f"internal error checking consistency: {exc}") from None
    if old_root != rnd.old_root:
        # The evidence's consistency proof is read from the tiles fetched so far (the
        # chunk's and every upper tile), once they are all checked against r_n.
        fetched = {**rnd.upper_data, **tiles}
        try:
            verify_tiles(rnd.size, rnd.root, fetched)
        except TileError:
            fetched = tiles
        raise ForkDetected(f"the checkpoint of size {rnd.size} does not extend the verified checkpoint of "
                           f"size {rnd.old_size} (its first {rnd.old_size} entries have another root)",
                           tiles=fetched)


def _commit(db, rnd: RoundState, vkey: str, note: bytes, own_origin: str | None,
            listener: FollowListener) -> Applied:
    """Step 6: one write transaction; on_withdrawn before COMMIT, on_added after."""
    with db.atomic():  # BEGIN IMMEDIATE (node.store.NodeDatabase)
        state = db.follow.get_log(rnd.origin)
        if state is None or state.forked or state.size != rnd.old_size:
            raise SyncError("the log was removed, forked or advanced while this round ran; starting over")
        applied = apply_staged(db, rnd.origin, vkey, own_origin)
        db.follow_leaves.move_staged(rnd.origin)
        db.follow.store_checkpoint(rnd.origin, rnd.size, rnd.root, note, time.time())
        if applied.withdrawn:
            try:
                listener.on_withdrawn(rnd.origin, applied.withdrawn)
            except Exception as exc:
                raise SyncError(f"the matcher could not drop withdrawn entries ({exc}); round not applied") from exc
    _reset_staging(db, rnd.origin)
    try:
        listener.on_added(rnd.origin, db.follow.iter_fingerprints(rnd.origin, rnd.old_size, rnd.size,
                                                               active_only=True))
    except Exception:
        log.exception("follow %s: listener failed on entries %d..%d (they are stored; not acknowledged)",
                      rnd.origin, rnd.old_size, rnd.size - 1)
        return applied
    try:
        # Now the matcher has dropped the withdrawn entries (before COMMIT) and indexed the new ones.
        listener.on_applied(rnd.origin, rnd.size, rnd.root, note, applied, time.time())
    except Exception:
        log.exception("follow %s: listener failed after applying checkpoint %d", rnd.origin, rnd.size)
    return applied
