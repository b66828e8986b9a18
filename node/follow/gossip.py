"""Comparing views with peer nodes, so that a log showing two histories is caught.

A log can show history A to some followers and history B to others; each follower
alone sees a consistent log. So a node regularly reads what its peers have seen
(GET <peer>/witness/seen, node/witness/seen.py) and compares it with what it verified
itself. Peers are chosen by the operator (`ncii-node follow peers add --dir DIR URL`,
table `gossip_peers`); with none, nothing is requested. `GossipService` runs inside
`serve`: one apscheduler job per peer, every `interval` seconds (30 by default).

One round with one peer (`GossipService.run_round`):

  1. SEEN     fetch <peer>/witness/seen with node.follow.client.PeerClient (10 s, 4 MiB,
              no redirect), signed with the node's request key: the peer serves it only
              to registered readers (unless it is public_read), so peers register each
              other's request keys (`ncii-node readers add`). Not a JSON object with a "checkpoints" list: the round fails
              and the error is recorded for the peer; nothing else changes.
  2. VERIFY   for each followed log that is not forked and holds a verified checkpoint
              (m, r_m), each note the peer lists for its origin (at most 8) must verify
              under the key WE pinned for it (open_checkpoint). One that does not (garbage,
              another key) is an error recorded for the peer, and nothing else.
  3. COMPARE  with the peer's checkpoint (n, r_n):
                n = m: the roots must be equal;
                n < m: if we verified a checkpoint of size n, its root must be r_n;
                       otherwise the root of the first n leaves of OUR tree, read from its
                       tiles (fetched from the log, checked against r_m), must be r_n;
                n > m: the root of the first m leaves of the peer's tree, read from its
                       tiles (fetched from the log, checked against the signed r_n), must
                       be r_m.
              Tiles are fetched from the followed log's own URL, signed with the node's
              request key (restricted logs), only the few needed (node/follow/forks.py).
  4. FORK     an inconsistency is recorded exactly as the follower records one
              (node/follow/forks.py: both notes kept, log marked forked, evidence file
              written, shown by `status`), with source "gossip <peer URL>".
  5. LIST     the federation list's log, when this node follows one, is compared the
              same way (node/federation/compare.py).

When the tiles of step 3 cannot be had -- typically the log shows us A and will not
serve the tiles of B -- the peer may already hold the evidence (it followed B and
built it from B's tiles): GET <peer>/witness/evidence?origin=O is read and a document
accepted only if `verify_evidence` holds, it is made under our pinned key, and one of
its two checkpoints is exactly our verified one. Otherwise the comparison is
inconclusive: recorded for the peer, nothing else changes (the next round tries again).

Nothing a peer says is believed for being said: only notes signed by the pinned key
and hashes checked against such notes can mark a log forked.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from node.follow import forks
from node.follow.client import DEFAULT_TIMEOUT, FetchError, PeerClient
from node.store import follow as store
from node.store.worker import DatabaseWorker
from node.witness.seen import MAX_SEEN_BYTES, notes_for_origin
from protocol.checkpoint import open_checkpoint
from protocol.errors import ProtocolError
from protocol.evidence import EvidenceError, verify_evidence
from protocol.merkle import EMPTY_ROOT
from protocol.note import Verifier

log = logging.getLogger(__name__)

DEFAULT_GOSSIP_INTERVAL = 30.0
DEFAULT_RELOAD_INTERVAL = 5.0
#: Notes compared per origin and peer (a peer lists one per origin; more is noise).
MAX_NOTES_PER_ORIGIN = 8
#: Evidence documents read per origin from a peer.
MAX_PEER_EVIDENCE = 16


class GossipError(Exception):
    """The peer's answer could not be used; nothing was changed."""


@dataclass
class GossipResult:
    url: str
    compared: int = 0                                   # notes compared with our view
    forks: list[str] = field(default_factory=list)     # origins found forked in this round
    problems: list[str] = field(default_factory=list)  # notes that did not verify, inconclusive comparisons


def parse_seen(body: bytes) -> dict:
    """A /witness/seen document, or GossipError."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GossipError("its /witness/seen is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("checkpoints"), list):
        raise GossipError("its /witness/seen is not an object with a \"checkpoints\" list")
    return doc


class Gossip:
    """Compares this node's verified checkpoints with one peer's (see the module docstring)."""

    def __init__(self, worker: DatabaseWorker, *, signer=None, evidence_dir: Path | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        self.worker = worker
        self.signer = signer
        self.evidence_dir = Path(evidence_dir) if evidence_dir is not None else \
            Path(worker.db_path).parent / forks.EVIDENCE_DIR
        self.timeout = timeout

    async def run_round(self, url: str) -> GossipResult:
        """One round with the peer at `url`; records its outcome. Raises GossipError
        (after recording it) when the peer's view could not be read at all."""
        result = GossipResult(url)
        try:
            # Signed like every read of another node: /witness/seen and /witness/evidence
            # are for registered readers (peers register each other's request keys).
            async with PeerClient(url, signer=self.signer, timeout=self.timeout) as peer:
                try:
                    body = await peer.get("witness/seen", max_bytes=MAX_SEEN_BYTES)
                except FetchError as exc:
                    raise GossipError(f"cannot read its /witness/seen: {exc}") from None
                seen = parse_seen(body)
                for entry in await self.worker.follow.list_logs():
                    if entry.forked or entry.checkpoint_note is None:
                        continue
                    for theirs in notes_for_origin(seen, entry.origin)[:MAX_NOTES_PER_ORIGIN]:
                        result.compared += 1
                        problem = await self._compare(peer, entry, theirs, result)
                        if problem:
                            result.problems.append(f"{entry.origin}: {problem}")
                        if entry.origin in result.forks:
                            break
                # The federation list's log, when this node follows one (joining.md §3.3).
                from node.federation.compare import compare_with_peer

                compared, problems, forked = await compare_with_peer(self.worker, seen, peer, self.evidence_dir,
                                                                     self.timeout)
                result.compared += compared
                result.problems += problems
                if forked:
                    result.forks.append("federation list")
        except GossipError as exc:
            log.warning("gossip with %s: %s", url, exc)
            await self.worker.follow.record_gossip_result(url, str(exc))
            raise
        if result.problems:
            log.warning("gossip with %s: %s", url, "; ".join(result.problems))
        await self.worker.follow.record_gossip_result(url, "; ".join(result.problems) or None)
        return result

    async def _compare(self, peer: PeerClient, entry: store.FollowedLog, theirs: bytes,
                       result: GossipResult) -> str | None:
        """Steps 2-4 for one note; returns a problem (or None)."""
        verifier = Verifier.from_vkey(entry.vkey)
        try:
            cp, _ = open_checkpoint(theirs, [verifier], origin=entry.origin, key_name_is_origin=False)
        except ProtocolError as exc:
            return f"the peer's checkpoint does not verify under the pinned key: {exc}"
        m, ours = entry.size, entry.checkpoint_note
        larger_tree = None
        if cp.size == m:
            if cp.root_hash == entry.root_hash:
                return None
            reason = f"a peer has seen a checkpoint of size {m} with another root than ours"
        else:
            if cp.size < m:
                earlier = await self.worker.follow.checkpoint_at(entry.origin, cp.size)
                if earlier is not None:
                    if earlier[0] == cp.root_hash:
                        return None
                    # A same-size pair, both signed: our own verified data prove it.
                    await self._record(entry, f"a peer has seen a checkpoint of size {cp.size} with another root "
                                              f"than the one we verified", cp.size, earlier[1], theirs, None,
                                       peer.base_url, result)
                    return None
                size, root, small = m, entry.root_hash, cp.size
            else:
                size, root, small = cp.size, cp.root_hash, m
            if small == 0:  # the empty tree is a prefix of every tree
                prefix = EMPTY_ROOT
            else:
                try:
                    async with PeerClient(entry.url, signer=self.signer, timeout=self.timeout) as client:
                        larger_tree = await forks.fetch_verified_tree(client, size, root, small)
                except (FetchError, ProtocolError) as exc:
                    return await self._peer_evidence(peer, entry, result, f"the log does not serve verifiable "
                                                     f"tiles of its tree of size {size} ({exc})")
                prefix = larger_tree.range_hash(0, small)
            if prefix == (cp.root_hash if cp.size < m else entry.root_hash):
                return None
            reason = (f"a peer has seen a checkpoint of size {cp.size} that is inconsistent with our verified "
                      f"checkpoint of size {m}")
        await self._record(entry, reason, m, ours, theirs, larger_tree, peer.base_url, result)
        return None

    async def _record(self, entry: store.FollowedLog, reason: str, earlier_size: int, earlier_note: bytes,
                      theirs: bytes, larger_tree, peer_url: str, result: GossipResult, doc: dict | None = None):
        later_size = open_checkpoint(theirs, [Verifier.from_vkey(entry.vkey)], origin=entry.origin,
                                     key_name_is_origin=False)[0].size
        await self.worker.call(forks.record_fork, entry.origin, f"{reason} ({peer_url})", earlier_size,
                               earlier_note, later_size, theirs, vkey=entry.vkey, larger_tree=larger_tree,
                               sources=[(f"verified by this node from {entry.url}", entry.verified_at),
                                        f"seen by peer {peer_url}"],
                               evidence_dir=self.evidence_dir, source=f"gossip {peer_url}", doc=doc)
        result.forks.append(entry.origin)

    async def _peer_evidence(self, peer: PeerClient, entry: store.FollowedLog, result: GossipResult,
                             why: str) -> str | None:
        """The fallback of the module docstring: evidence the peer already holds."""
        pinned = Verifier.from_vkey(entry.vkey)
        doc = await evidence_about(peer, entry.origin, {(pinned.key_id, pinned.public_key)},
                                   (entry.size, entry.root_hash))
        if doc is not None:
            other = doc["checkpoints"][1 if _note_is(doc["checkpoints"][0], entry) else 0].encode("utf-8")
            doc = dict(doc, observed=list(doc.get("observed", [])) + [
                {"source": f"evidence served by peer {peer.base_url}", "at": _now_iso()}])
            await self._record(entry, "a peer holds evidence that the log signed a checkpoint inconsistent with "
                                      "ours", entry.size, entry.checkpoint_note, other, None, peer.base_url, result,
                               doc=doc)
            return None
        return f"inconclusive: {why}, and the peer holds no evidence about our checkpoint"


async def evidence_about(peer: PeerClient, origin: str, keys: set[tuple[bytes, bytes]],
                         checkpoint: tuple[int, bytes]) -> dict | None:
    """The first split-view document the peer serves (GET witness/evidence) that
    verifies, is made under one of `keys` ((key id, public key)) for `origin`, and holds
    `checkpoint` (size, root hash); None if there is none or the peer serves nothing."""
    try:
        body = await peer.get(f"witness/evidence?origin={quote(origin, safe='')}", max_bytes=MAX_SEEN_BYTES)
        listed = json.loads(body.decode("utf-8")).get("evidence")
    except (FetchError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        return None
    for doc in (listed if isinstance(listed, list) else [])[:MAX_PEER_EVIDENCE]:
        try:
            verified = verify_evidence(json.dumps(doc))
            key = Verifier.from_vkey(verified.vkey)
        except (EvidenceError, ProtocolError, TypeError, ValueError):
            continue
        pair = {(verified.smaller.size, verified.smaller.root_hash), (verified.larger.size, verified.larger.root_hash)}
        if (key.key_id, key.public_key) in keys and verified.origin == origin and checkpoint in pair:
            return doc
    return None


def _note_is(note_text: str, entry: store.FollowedLog) -> bool:
    try:
        cp, _ = open_checkpoint(note_text.encode("utf-8"), [Verifier.from_vkey(entry.vkey)], origin=entry.origin,
                                key_name_is_origin=False)
    except ProtocolError:
        return False
    return (cp.size, cp.root_hash) == (entry.size, entry.root_hash)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class GossipService:
    """The gossip of one serving node: one apscheduler job per peer in `gossip_peers`,
    re-read every `reload_interval` seconds (so `follow peers add/remove` takes effect
    while the node runs). A peer's rounds never overlap."""

    def __init__(self, db_path: Path | str, *, signer=None, evidence_dir: Path | None = None,
                 timeout: float = DEFAULT_TIMEOUT, reload_interval: float = DEFAULT_RELOAD_INTERVAL,
                 interval_override: float | None = None):
        self.worker = DatabaseWorker(db_path)
        self.gossip = Gossip(self.worker, signer=signer, evidence_dir=evidence_dir, timeout=timeout)
        self.reload_interval = reload_interval
        self.interval_override = interval_override
        self.scheduler: AsyncIOScheduler | None = None
        self.intervals: dict[str, float] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.scheduler = AsyncIOScheduler()
        self.scheduler.start()
        await self.reload()
        self.scheduler.add_job(self.reload, IntervalTrigger(seconds=self.reload_interval), id="gossip-reload",
                               max_instances=1, coalesce=True)

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.worker.close()

    async def reload(self) -> None:
        peers = {p.url: p for p in await self.worker.follow.list_gossip_peers()}
        for url in list(self.intervals):
            if url not in peers or self._interval(peers[url]) != self.intervals[url]:
                self.intervals.pop(url)
                if self.scheduler is not None:
                    try:
                        self.scheduler.remove_job(f"gossip:{url}")
                    except JobLookupError:  # already gone
                        pass
        for url, peer in peers.items():
            if url not in self.intervals:
                interval = self._interval(peer)
                self.intervals[url] = interval
                log.info("comparing views with %s every %g s", url, interval)
                if self.scheduler is not None:
                    self.scheduler.add_job(self._tick, IntervalTrigger(seconds=interval), args=(url,),
                                           id=f"gossip:{url}", max_instances=3, coalesce=True)

    def _interval(self, peer: store.GossipPeer) -> float:
        return self.interval_override or peer.interval or DEFAULT_GOSSIP_INTERVAL

    async def _tick(self, url: str) -> None:
        if url in self._running or url not in self.intervals:
            return
        try:
            await self.run_round(url)
        except asyncio.CancelledError:
            pass  # stop() cut the round short: nothing to report (apscheduler would log a traceback)

    async def run_round(self, url: str) -> GossipResult | None:
        """One round with `url` now; None when it failed (the error is recorded)."""
        self._running.add(url)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            return await self.gossip.run_round(url)
        except GossipError:
            return None
        except Exception:
            log.exception("gossip with %s: unexpected error", url)
            await self.worker.follow.record_gossip_result(url, "internal error (see the node's log)")
            return None
        finally:
            self._running.discard(url)
            self._tasks.discard(task)
