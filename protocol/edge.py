"""The right edge of a Merkle tree, kept tile by tile, for a sequencer that only appends.

For a tree of size s, level l (l = 0, 1, ...) holds the hashes of the rightmost,
still incomplete tile of that level: floor(s / 256**l) mod 256 hashes, each the Merkle
Tree Hash of 256**l consecutive leaves. These are exactly the hashes of the partial
tiles C2SP tlog-tiles serves for size s (`protocol.tiles.partial_tiles_for_size`), and
they are all a sequencer needs: appending leaves completes tiles bottom-up, and the
root is computed from them alone. Nothing else of the tree is re-read.

The sequencer (node/log/sequencer.py) keeps one, and tests use it to compute the root
of a growing log independently of the node; the tree arithmetic (which tiles exist,
where a node sits in them, how the root folds) is protocol.tiles' and protocol.merkle's.

Invariant: `sum(len(levels[l]) * 256**l) == size` and every list is shorter than 256.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .merkle import HASH_SIZE, root_from_nodes, root_of
from .tiles import TILE_WIDTH, TileId, locate_node, partial_tiles_for_size


@dataclass
class CompletedTile:
    level: int
    index: int
    data: bytes  # the tile's hashes: 8192 bytes for a full tile

    @property
    def id(self) -> TileId:
        return TileId(self.level, self.index, len(self.data) // HASH_SIZE)


@dataclass
class TreeEdge:
    size: int = 0
    levels: list[list[bytes]] = field(default_factory=lambda: [[]])

    def copy(self) -> TreeEdge:
        return TreeEdge(self.size, [list(hashes) for hashes in self.levels])

    def append(self, leaf_hashes: list[bytes]) -> list[CompletedTile]:
        """Append leaves; return the full tiles (at every level) this completed."""
        completed: list[CompletedTile] = []
        level0 = self.levels[0]
        for h in leaf_hashes:
            level0.append(h)
            self.size += 1
            if len(level0) == TILE_WIDTH:
                self._complete(0, completed)
                level0 = self.levels[0]
        return completed

    def _complete(self, level: int, completed: list[CompletedTile]) -> None:
        hashes = self.levels[level]
        # Index of the tile that just filled: the number of full level-`level` tiles
        # before it. After the append, size // 256**(level+1) counts it too.
        index = self.size // TILE_WIDTH ** (level + 1) - 1
        completed.append(CompletedTile(level, index, b"".join(hashes)))
        self.levels[level] = []
        if level + 1 == len(self.levels):
            self.levels.append([])
        self.levels[level + 1].append(root_of(hashes))
        if len(self.levels[level + 1]) == TILE_WIDTH:
            self._complete(level + 1, completed)

    def partial_tiles(self, since: int | None = None) -> list[CompletedTile]:
        """The partial tiles (width 1..255) of the current size, one per non-empty level;
        with `since`, only those a tree of size `since` did not already have."""
        unchanged = set(partial_tiles_for_size(since)) if since is not None else set()
        return [CompletedTile(t.level, t.index, b"".join(self.levels[t.level]))
                for t in partial_tiles_for_size(self.size) if t not in unchanged]

    def node_at(self, level: int, index: int) -> bytes:
        """A perfect-subtree hash of the tree that lies on its right edge (every
        subtree of `covering_subtrees(0, size)` does): the root of its hashes in the
        partial tile of its tile level."""
        span = locate_node(level, index)
        return root_of(self.levels[span.tile_level][span.start:span.min_width])

    def root(self) -> bytes:
        """RFC 6962 Merkle Tree Hash of the whole tree."""
        return root_from_nodes(self.size, self.node_at)

    @classmethod
    def from_level_hashes(cls, size: int, levels: list[list[bytes]]) -> TreeEdge:
        """Rebuild from the partial-tile hashes of each level (as read back from disk)."""
        expected = sum(len(h) * TILE_WIDTH ** lvl for lvl, h in enumerate(levels))
        if expected != size or any(len(h) >= TILE_WIDTH for h in levels):
            raise ValueError(f"tile hashes do not describe a tree of size {size}")
        if not levels:
            levels = [[]]
        return cls(size, [list(h) for h in levels])
