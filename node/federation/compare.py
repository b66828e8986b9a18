"""Comparing this node's view of the federation list's log with a peer's, so that a
coordinator showing one list to some nodes and another to others is caught
(spec/parts/joining.md §3.3). Called by the gossip round (node/follow/gossip.py) with
the peer's /witness/seen document, where every node lists the list log's checkpoint
it accepted last (node/witness/seen.py).

For each note the peer lists under the federation's origin (at most 8): it must carry
the quorum of OUR list keys, else it is a problem reported for the peer, never
evidence. Then, with ours (m, r_m) and theirs (n, r_n):
  n = m   the roots must be equal;
  n < m   the root of the first n leaves of our tree, read from the list log's tiles
          (fetched and verified against r_m), must be r_n;
  n > m   the first m leaves of their tree must give r_m: its tiles are asked of the
          list log; a coordinator showing us another history will not serve them, and
          the comparison is inconclusive here -- the peer, comparing with our smaller
          tree from its side, finds the fork with the tiles it is served.
A fork is recorded as the follower records one (subscription.py `record_fork`).
"""

from __future__ import annotations

from pathlib import Path

from node.federation.listlog import open_list_checkpoint
from node.federation.logfollow import ListForked, log_base
from node.federation.members import ListError
from node.federation.subscription import record_fork
from node.follow.client import FetchError, PeerClient
from node.follow.forks import fetch_verified_tree
from node.witness.seen import notes_for_origin
from protocol.checkpoint import Checkpoint
from protocol.errors import ProtocolError
from protocol.note import parse_note

MAX_NOTES = 8


async def compare_with_peer(worker, seen: dict, peer_url: str, evidence_dir: Path | None,
                            timeout: float = 10.0) -> tuple[int, list[str], bool]:
    """(notes compared, problems, whether a fork was recorded)."""
    subscription = await worker.federation.subscription()
    if subscription is None or subscription.checkpoint is None or subscription.fork is not None:
        return 0, [], False
    ours = Checkpoint.parse(parse_note(subscription.checkpoint).text)
    compared, problems = 0, []
    for theirs in notes_for_origin(seen, ours.origin)[:MAX_NOTES]:
        compared += 1
        try:
            cp = open_list_checkpoint(theirs, list(subscription.list_vkeys), subscription.quorum, ours.origin)
        except ListError as exc:
            problems.append(f"federation list: the peer's checkpoint is refused: {exc}")
            continue
        tree = None
        if cp.size == ours.size:
            if cp.root_hash == ours.root_hash:
                continue
            reason = f"a peer ({peer_url}) has seen a checkpoint of size {cp.size} with another root than ours"
        else:
            size, root, small = (ours.size, ours.root_hash, cp.size) if cp.size < ours.size else \
                (cp.size, cp.root_hash, ours.size)
            try:
                async with PeerClient(log_base(subscription.url), timeout=timeout) as client:
                    tree = await fetch_verified_tree(client, size, root, small)
            except (FetchError, ProtocolError) as exc:
                problems.append(f"federation list: inconclusive: the list's log does not serve verifiable tiles "
                                f"of its tree of size {size} ({exc})")
                continue
            if tree.range_hash(0, small) == (cp.root_hash if cp.size < ours.size else ours.root_hash):
                continue
            reason = (f"a peer ({peer_url}) has seen a checkpoint of size {cp.size} inconsistent with ours of "
                      f"size {ours.size}")
        earlier, later = (subscription.checkpoint, theirs) if cp.size >= ours.size else (theirs, subscription.checkpoint)
        forked = ListForked(reason, earlier, later, tree)
        await worker.call(lambda db: record_fork(db, forked, evidence_dir))
        return compared, problems, True
    return compared, problems, False
