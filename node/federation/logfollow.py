"""Fetching the federation list through its append-only log (spec/parts/joining.md §3.3).

The list at URL .../federation/list has its log at .../federation/ (checkpoint,
tiles, version/<serial>). One fetch (`fetch_list`):

  1. CHECKPOINT  GET checkpoint: at least `quorum` distinct list keys signed it, for the
                 federation's origin, and `witness_quorum` of the federation's witnesses
                 cosigned it when the follower requires it. A 404 means the list has no log: the plain signed
                 list is fetched as before the log existed, unless this node ever
                 accepted a checkpoint of the list's log (a list without its log would
                 hide a split view: refused).
                 The very checkpoint accepted last: nothing more is fetched.
  2. COMPARE     with the checkpoint accepted last (m, r_m): a smaller tree is a rollback
                 (refused); the same size with another root, or a larger tree whose first
                 m leaves do not hash to r_m, is a fork (ListForked: both checkpoints and
                 the evidence are kept, node/follow/forks.py, as for any followed log).
  3. ENTRIES     every tile and bundle of the tree, checked against its signed root; every
                 entry a version entry of the federation, serials strictly growing.
  4. VERSION     GET version/<serial of the last entry>: a signed list (k of n, as a plain
                 list) whose text is exactly the one the last entry names: "a version not
                 in the log" is refused.

Nothing is written here; the caller accepts the result in one transaction
(subscription.py `accept`), which checks that the checkpoint it was compared with is
still the one kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.federation.listlog import check_history, open_list_checkpoint, parse_entry, read_entries
from node.federation.members import MAX_LIST_BYTES, ListError, open_list
from node.follow.client import FetchError, PeerClient
from protocol.checkpoint import Checkpoint
from protocol.errors import ProtocolError
from protocol.note import parse_note
from protocol.tiles import TileNodes, bundles_for_size, tiles_for_size, verify_tiles

FETCH_TIMEOUT = 10.0


class FetchRefused(ValueError):
    """The list (or its log) is refused; the message says why."""


class ListForked(FetchRefused):
    """Two checkpoints of the list's log that no append-only history can produce."""

    def __init__(self, reason: str, earlier: bytes, later: bytes, tree: TileNodes | None, doc: dict | None = None):
        super().__init__(f"the federation list's log is FORKED: {reason}")
        self.reason, self.earlier, self.later, self.tree = reason, earlier, later, tree
        self.doc = doc  # evidence already built and verified (a peer's), else built from `tree`


@dataclass(frozen=True)
class Fetched:
    data: bytes                 # the signed list
    checkpoint: bytes | None    # the list log's checkpoint it is the last entry of (None: a plain list)
    compared_with: bytes | None = None  # the checkpoint accepted before, which `checkpoint` extends


@dataclass(frozen=True)
class Trust:
    """What a fetch is checked against: the list keys and quorum, the federation (once
    known), and the list log's checkpoint accepted last."""

    list_vkeys: tuple[str, ...]
    quorum: int
    federation: str | None
    checkpoint: bytes | None
    witnesses: tuple[str, ...] = ()
    witness_quorum: int = 0
    accepted_list: bytes | None = None  # the version accepted under `checkpoint`


def log_base(url: str) -> str:
    """The list log's URL prefix: the list's URL without its last segment."""
    return url.rpartition("/")[0]


async def fetch_list(url: str, trust: Trust, timeout: float = FETCH_TIMEOUT) -> Fetched:
    """One fetch (module docstring); raises FetchRefused or ListForked."""
    name = url.rpartition("/")[2]
    try:
        async with PeerClient(log_base(url), timeout=timeout) as client:
            try:
                note = await client.checkpoint()
            except FetchError as exc:
                if exc.status != 404:
                    raise
                if trust.checkpoint is not None:
                    raise FetchRefused("the list's log is gone (checkpoint: HTTP 404), but this node followed it: "
                                       "a list without its log could hide a split view") from None
                return Fetched(await client.get(name, max_bytes=MAX_LIST_BYTES + 16 * 1024), None, trust.checkpoint)
            return await _through_log(client, note, trust)
    except FetchError as exc:
        raise FetchRefused(f"could not fetch the list: {exc}") from None
    except (ListError, ProtocolError) as exc:
        raise FetchRefused(str(exc)) from None


async def _through_log(client: PeerClient, note: bytes, trust: Trust) -> Fetched:
    cp = open_list_checkpoint(note, list(trust.list_vkeys), trust.quorum, trust.federation, trust.witnesses,
                              trust.witness_quorum)
    if note == trust.checkpoint and trust.accepted_list is not None:
        return Fetched(trust.accepted_list, note, trust.checkpoint)  # verified when accepted: one GET while idle
    earlier = Checkpoint.parse(parse_note(trust.checkpoint).text) if trust.checkpoint else None
    if earlier is not None:
        if cp.size < earlier.size:
            raise FetchRefused(f"rollback refused: the list's log has {cp.size} entries, fewer than the "
                               f"{earlier.size} of its checkpoint accepted before")
        if cp.size == earlier.size and cp.root_hash != earlier.root_hash:
            raise ListForked(f"two checkpoints of size {cp.size} with different roots", trust.checkpoint, note, None)
    tiles = {tile: await client.tile(tile) for tile in tiles_for_size(cp.size)}
    verify_tiles(cp.size, cp.root_hash, tiles)
    tree = TileNodes(cp.size, tiles)
    if earlier is not None and cp.size > earlier.size and tree.range_hash(0, earlier.size) != earlier.root_hash:
        raise ListForked(f"the tree of size {cp.size} does not extend the tree of size {earlier.size} accepted "
                         "before", trust.checkpoint, note, tree)
    bundles = {bundle: await client.bundle(bundle) for bundle in bundles_for_size(cp.size)}
    versions = [parse_entry(entry, i) for i, entry in enumerate(read_entries(cp.size, tiles, bundles))]
    check_history(versions, trust.federation or cp.origin)
    newest = versions[-1]
    if newest.federation != cp.origin:
        raise FetchRefused(f"the list's log is {cp.origin!r}, but its entries are of {newest.federation!r}")
    data = await client.get(f"version/{newest.serial}", max_bytes=MAX_LIST_BYTES + 16 * 1024)
    member_list = open_list(data, list(trust.list_vkeys), trust.quorum)
    if not newest.matches(member_list):
        raise FetchRefused(f"the list served as version {newest.serial} is not the one the list's log holds "
                           f"(entry {cp.size - 1}): a version not in the log is refused")
    return Fetched(data, note, trust.checkpoint)
