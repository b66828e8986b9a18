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
          the peer, comparing with our smaller tree from its side, finds the fork with
          the tiles it is served, and shares the evidence at GET /witness/evidence: a
          document there that verifies, is made under one of OUR list keys and holds
          OUR checkpoint is taken (as node/follow/gossip.py does for followed logs);
          otherwise the comparison is inconclusive, and tried again next round.
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
from node.follow.gossip import evidence_about
from node.witness.seen import notes_for_origin
from protocol.checkpoint import Checkpoint
from protocol.errors import ProtocolError
from protocol.note import Verifier, parse_note

MAX_NOTES = 8


async def compare_with_peer(worker, seen: dict, peer: PeerClient, evidence_dir: Path | None,
                            timeout: float = 10.0) -> tuple[int, list[str], bool]:
    """(notes compared, problems, whether a fork was recorded). `peer`: a client of the
    peer node (signed with our request key)."""
    peer_url = peer.base_url
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
                doc = await peer_evidence(peer, subscription, ours)
                if doc is None:
                    problems.append(f"federation list: inconclusive: the list's log does not serve verifiable "
                                    f"tiles of its tree of size {size} ({exc}), and the peer holds no evidence "
                                    "about our checkpoint")
                    continue
                forked = ListForked(f"a peer ({peer_url}) holds evidence that the list's log signed a checkpoint "
                                    "inconsistent with ours", subscription.checkpoint, _other_note(doc, ours), None,
                                    doc)
                await worker.call(lambda db: record_fork(db, forked, evidence_dir))
                return compared, problems, True
            if tree.range_hash(0, small) == (cp.root_hash if cp.size < ours.size else ours.root_hash):
                continue
            reason = (f"a peer ({peer_url}) has seen a checkpoint of size {cp.size} inconsistent with ours of "
                      f"size {ours.size}")
        earlier, later = (subscription.checkpoint, theirs) if cp.size >= ours.size else (theirs, subscription.checkpoint)
        forked = ListForked(reason, earlier, later, tree)
        await worker.call(lambda db: record_fork(db, forked, evidence_dir))
        return compared, problems, True
    return compared, problems, False


async def peer_evidence(peer: PeerClient, subscription, ours: Checkpoint) -> dict | None:
    """A split-view document the peer serves that verifies, is made under one of our
    list keys, and holds our checkpoint; None if there is none."""
    keys = {(k.key_id, k.public_key) for k in map(Verifier.from_vkey, subscription.list_vkeys)}
    return await evidence_about(peer, ours.origin, keys, (ours.size, ours.root_hash))


def _other_note(doc: dict, ours: Checkpoint) -> bytes:
    """The checkpoint of the evidence that is not ours."""
    for text in doc["checkpoints"]:
        cp = Checkpoint.parse(parse_note(text.encode("utf-8")).text)
        if (cp.size, cp.root_hash) != (ours.size, ours.root_hash):
            return text.encode("utf-8")
    raise ValueError("the evidence holds our checkpoint twice")  # verify_evidence makes this impossible
