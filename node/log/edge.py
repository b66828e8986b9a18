"""The right edge of a Merkle tree, kept tile by tile, for a sequencer that only appends.

For a tree of size s, level l (l = 0, 1, ...) holds the hashes of the rightmost,
still incomplete tile of that level: floor(s / 256**l) mod 256 hashes, each the Merkle
Tree Hash of 256**l consecutive leaves. These are exactly the hashes of the partial
tiles C2SP tlog-tiles serves for size s, and they are all a sequencer needs: appending
leaves completes tiles bottom-up, and the root is computed from them alone. Nothing
else of the tree is re-read.

Invariant: `sum(len(levels[l]) * 256**l) == size` and every list is shorter than 256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

TILE_WIDTH = 256
HASH_SIZE = 32


def _node(left: bytes, right: bytes) -> bytes:
    # RFC 6962 interior node: SHA-256(0x01 || left || right). Inlined rather than
    # calling protocol.merkle.node_hash because it runs ~2 times per appended entry.
    return hashlib.sha256(b"\x01" + left + right).digest()


def perfect_root(hashes: list[bytes]) -> bytes:
    """Merkle Tree Hash over a power-of-two number of subtree hashes."""
    level = hashes
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


EMPTY_ROOT = hashlib.sha256(b"").digest()


@dataclass
class CompletedTile:
    level: int
    index: int
    data: bytes  # 8192 bytes: 256 hashes


@dataclass
class TreeEdge:
    size: int = 0
    levels: list[list[bytes]] = field(default_factory=lambda: [[]])

    def copy(self) -> "TreeEdge":
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
        self.levels[level + 1].append(perfect_root(hashes))
        if len(self.levels[level + 1]) == TILE_WIDTH:
            self._complete(level + 1, completed)

    def partial_tiles(self, since: int | None = None) -> list[CompletedTile]:
        """The partial tiles (width 1..255) of the current size, one per non-empty level;
        with `since`, only those a tree of size `since` did not already have."""
        out = []
        for level, hashes in enumerate(self.levels):
            unchanged = since is not None and since // TILE_WIDTH ** level == self.size // TILE_WIDTH ** level
            if hashes and not unchanged:
                index = self.size // TILE_WIDTH ** (level + 1)
                out.append(CompletedTile(level, index, b"".join(hashes)))
        return out

    def root(self) -> bytes:
        """RFC 6962 Merkle Tree Hash of the whole tree.

        The tree of size s is the fold of the perfect subtrees of s's binary
        decomposition, largest (leftmost) first: MTH = H(P1, H(P2, ... H(Pm-1, Pm))).
        Within level l, the count c of hashes decomposes into perfect subtrees of 2**b
        hashes for each bit b of c."""
        if self.size == 0:
            return EMPTY_ROOT
        subtrees: list[bytes] = []
        for hashes in reversed(self.levels):  # highest level = leftmost leaves
            offset = 0
            for bit in range(7, -1, -1):
                width = 1 << bit
                if len(hashes) & width:
                    subtrees.append(perfect_root(hashes[offset:offset + width]))
                    offset += width
        acc = subtrees[-1]
        for h in reversed(subtrees[:-1]):
            acc = _node(h, acc)
        return acc

    @classmethod
    def from_level_hashes(cls, size: int, levels: list[list[bytes]]) -> "TreeEdge":
        """Rebuild from the partial-tile hashes of each level (as read back from disk)."""
        expected = sum(len(h) * TILE_WIDTH ** lvl for lvl, h in enumerate(levels))
        if expected != size or any(len(h) >= TILE_WIDTH for h in levels):
            raise ValueError(f"tile hashes do not describe a tree of size {size}")
        if not levels:
            levels = [[]]
        return cls(size, [list(h) for h in levels])

    @staticmethod
    def widths(size: int) -> list[int]:
        """Width of the partial tile at each level for a tree of `size` (0 = none)."""
        widths = []
        level = 0
        while TILE_WIDTH ** level <= size or level == 0:
            widths.append(size // TILE_WIDTH ** level % TILE_WIDTH)
            level += 1
        return widths
