"""Recording a fork: both signed notes in the database, and a portable evidence file.

A fork is two checkpoints of one log, both validly signed by its pinned key, that no
append-only history can produce (spec/parts/following.md §6). Whoever finds one -- the
follower's own round (node/follow/sync.py) or a comparison with a peer's view
(node/follow/gossip.py) -- calls `record_fork`, which, in this order:

  1. builds the split-view evidence document (node/witness/evidence.py `check_pair`)
     from the two notes and, when their sizes differ, node hashes of the LARGER tree
     read from tiles already verified against that tree's signed root;
  2. writes it to DIR/evidence/<origin-safe-name>-<size1>-<size2>.json (mode 0644,
     atomically), where size1 <= size2 and the origin-safe name holds no path
     separator (`origin_safe_name`);
  3. in one transaction: stores both notes in `follow_forks` with the file's path (or
     the reason no evidence could be built), marks the log forked, and keeps the
     evidence in `split_view_evidence` too, so GET /witness/evidence shares it.

Invariant: a fork is recorded and the log stopped even when no evidence can be built
(tiles unavailable, notes signed by keys of a rotation); the reason is then kept in
`evidence_problem` and shown by `status`. Evidence is never built from unverified
hashes: `fetch_verified_tree` checks every tile it returns against a signed root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from node.store import follow as store
from node.witness import evidence as evidence_mod
from protocol.errors import ProtocolError
from protocol.merkle import consistency_proof, node_hash, range_hash, root_from_nodes
from protocol.tiles import (
    TILE_HEIGHT,
    TileId,
    TileNodes,
    locate_node,
    partial_tiles_for_size,
    tile_for_size,
    verify_tiles,
)

log = logging.getLogger(__name__)

EVIDENCE_DIR = "evidence"


@dataclass(frozen=True)
class ForkRecord:
    evidence_path: str | None
    evidence_problem: str | None


def origin_safe_name(origin: str) -> str:
    """A file-name part for an origin: letters, digits, '.', '_' and '-' only (never a
    path separator), plus a short hash so that distinct origins never share a name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", origin).strip(".")[:60] or "log"
    return f"{slug}-{hashlib.sha256(origin.encode('utf-8')).hexdigest()[:8]}"


def evidence_file_name(origin: str, size1: int, size2: int) -> str:
    small, large = sorted((size1, size2))
    return f"{origin_safe_name(origin)}-{small}-{large}.json"


# ---------------------------------------------------------------------- verified tiles

def tiles_for_evidence(small: int, size: int) -> list[TileId]:
    """The tiles of a tree of `size` leaves from which the root of its first `small`
    leaves and the consistency proof from `small` to `size` can be read, and checked:
    the tiles holding those nodes, every ancestor of them, and the right edge (partial
    tiles), so that `verify_tiles(size, root, ...)` accepts exactly this set."""
    nodes: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        nodes.add((level, index))
        return bytes(32)

    if 0 < small < size:
        range_hash(0, small, record)
        consistency_proof(small, size, record)
    wanted: set[TileId] = set()
    for level, index in nodes:
        span = locate_node(level, index)
        tile = tile_for_size(span.tile_level, span.tile_index, size)
        while tile is not None:
            wanted.add(tile)
            tile = tile_for_size(tile.level + 1, tile.index >> TILE_HEIGHT, size)
    wanted.update(partial_tiles_for_size(size))  # the right edge: the root every other tile hangs from
    return sorted(wanted, key=lambda t: (t.level, t.index))


class LeafTree:
    """Node hashes of a tree of `size` leaves computed from its leaf hashes (a
    merkle.NodeGetter; each perfect subtree hashed once)."""

    def __init__(self, leaves: list[bytes]):
        self.size = len(leaves)
        self._leaves = leaves
        self._nodes: dict[tuple[int, int], bytes] = {}

    def __call__(self, level: int, index: int) -> bytes:
        if level == 0:
            return self._leaves[index]
        node = self._nodes.get((level, index))
        if node is None:
            node = self._nodes[(level, index)] = node_hash(self(level - 1, 2 * index), self(level - 1, 2 * index + 1))
        return node


def stored_tree(db, origin: str, size: int, root: bytes) -> LeafTree | None:
    """(worker thread) Our own tree of `size` leaves from the leaf hashes we verified
    and kept (node/store/follow_leaves.py), checked against its signed `root`; None if
    we did not keep them all."""
    from node.store import follow_leaves

    leaves = follow_leaves.leaf_hashes(db, origin, size)
    if leaves is None:
        return None
    tree = LeafTree(leaves)
    if root_from_nodes(size, tree) != root:  # never from a tree we did not verify
        log.error("follow %s: the kept leaf hashes do not give the verified root of size %d", origin, size)
        return None
    return tree


async def fetch_verified_tree(client, size: int, root: bytes, small: int) -> TileNodes:
    """Node hashes of the log's tree (size, root), fetched with `client` (a
    node.follow.client.PeerClient, signed for restricted logs) and verified against
    `root`: enough to compare the tree's first `small` leaves. Raises FetchError or
    ProtocolError (TileError) when the log does not serve that tree."""
    tiles = {}
    for tile in tiles_for_evidence(small, size):
        tiles[tile] = await client.tile(tile)
    verify_tiles(size, root, tiles)
    return TileNodes(size, tiles)


# ---------------------------------------------------------------------- evidence

def build_evidence(vkey: str, note_a: bytes, note_b: bytes, larger_tree,
                   sources: list) -> tuple[dict | None, str | None]:
    """(evidence document, None), or (None, why there is none). Never raises."""
    try:
        doc = evidence_mod.check_pair(vkey, note_a, note_b, larger_tree, sources)
    except (ProtocolError, ValueError) as exc:  # includes UsageError and a missing tile
        return None, f"no evidence file could be built: {exc}"
    if doc is None:  # the caller's bug: it saw a fork where the notes agree
        return None, "no evidence file: the two checkpoints are consistent after all"
    return doc, None


def write_evidence_file(directory: Path, doc: dict) -> Path:
    """DIR/evidence/<origin-safe-name>-<size1>-<size2>.json; a file of that name that
    holds another pair of checkpoints is kept, and this one gets a digest suffix."""
    from node.datadir import write_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sizes = [_size_of(note) for note in doc["checkpoints"]]
    path = directory / evidence_file_name(doc["origin"], *sizes)
    if path.exists():
        try:
            same = sorted(json.loads(path.read_text("utf-8"))["checkpoints"]) == sorted(doc["checkpoints"])
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if same:
            return path
        digest = hashlib.sha256("".join(sorted(doc["checkpoints"])).encode("utf-8")).hexdigest()[:12]
        path = path.with_name(f"{path.stem}-{digest}.json")
    write_atomic(path, evidence_mod.dumps(doc).encode("utf-8"), mode=0o644)
    path.chmod(0o644)  # whatever the umask: evidence is for anyone to read
    return path


def _size_of(note_text: str) -> int:
    from protocol.checkpoint import Checkpoint
    from protocol.note import parse_note

    return Checkpoint.parse(parse_note(note_text.encode("utf-8")).text).size


def evidence_for_fork(earlier_size: int, earlier_note: bytes | None, later_size: int, later_note: bytes, *,
                      vkey: str, larger_tree=None, sources: list | None = None, evidence_dir: Path | None,
                      doc: dict | None = None, tiles_problem: str | None = None,
                      no_dir: str = "") -> tuple[dict | None, str | None, str | None]:
    """Steps 1-2 of the module docstring, without the database: (evidence document,
    path of its file, why there is no file). Never raises. `no_dir`: what becomes of
    the evidence when there is no `evidence_dir`."""
    problem = None
    if doc is None:
        doc, problem = build_evidence(vkey, earlier_note or b"", later_note, larger_tree, sources or [])
        if doc is None and larger_tree is None and tiles_problem and earlier_size != later_size:
            problem = f"no evidence file could be built: {tiles_problem}"
    path = None
    if doc is not None:
        if evidence_dir is None:
            problem = f"no evidence directory is configured; {no_dir}"
        else:
            try:
                path = str(write_evidence_file(evidence_dir, doc))
            except OSError as exc:
                problem = f"could not write the evidence file in {evidence_dir}: {exc.strerror or exc}"
    return doc, path, problem


def record_fork(db, origin: str, reason: str, earlier_size: int, earlier_note: bytes, later_size: int,
                later_note: bytes, *, vkey: str, larger_tree=None, sources: list | None = None,
                evidence_dir: Path | None, source: str, doc: dict | None = None,
                tiles_problem: str | None = None) -> ForkRecord:
    """Steps 1-3 of the module docstring (in the caller's database thread). `doc`:
    evidence already built and verified (a peer's), instead of building it here.
    `tiles_problem`: why the caller has no `larger_tree` (said in status if needed)."""
    from node.store import witness as witness_store

    doc, path, problem = evidence_for_fork(earlier_size, earlier_note, later_size, later_note, vkey=vkey,
                                           larger_tree=larger_tree, sources=sources, evidence_dir=evidence_dir,
                                           doc=doc, tiles_problem=tiles_problem,
                                           no_dir="the evidence is kept in the database only")
    store.record_fork(db, origin, reason, earlier_size, earlier_note or b"", later_size, later_note,
                      source=source, evidence_path=path, evidence_problem=problem)
    if doc is not None:
        witness_store.store_evidence(db, origin, evidence_mod.dumps(doc))
    if path is not None:
        log.critical("FORK in log %s (%s): evidence written to %s; anyone can check it with "
                     "`ncii-node audit verify-evidence %s`", origin, reason, path, path)
    else:
        log.critical("FORK in log %s (%s): %s", origin, reason, problem)
    return ForkRecord(path, problem)
