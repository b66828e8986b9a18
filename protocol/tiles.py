"""C2SP tlog-tiles arithmetic: tile coordinates, paths, entry bundles, roots from tiles.

A log's Merkle tree (see `merkle`) is published as *tiles* of height 8: the tile
`(L, N)` holds the 256 consecutive hashes of tree level 8·L with indices
N·256 ... N·256 + 255, i.e. the roots of the perfect subtrees over leaves
[(N·256 + i)·256**L, (N·256 + i + 1)·256**L). A tree of size s has, at every level
L with s >> 8L > 0, `s >> 8(L+1)` full tiles and, if `W = (s >> 8L) mod 256` is not
zero, one partial tile of width W. The leaves themselves are served as *entry
bundles* shaped like the level-0 tiles: each entry preceded by its length as a
big-endian uint16.

Invariant kept here: every path this module produces is the one canonical spelling,
and `parse_tile_path` accepts that spelling and nothing else, so a path is also a
safe file name below the log's directory (no "..", no "//", no leading zeros).

Nothing here does I/O; the sequencer writes what `build_tile` returns, the follower
hands what it fetched to `verify_tiles` / `root_from_tiles` / `TileNodes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .errors import ProofError, TileError, UsageError
from .merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash, range_hash, root_from_nodes, root_of

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile, entries in a full bundle
FULL_TILE_SIZE = TILE_WIDTH * HASH_SIZE  # 8,192 bytes
MAX_TILE_LEVEL = 63  # C2SP: <L> is 0..63
MAX_TREE_SIZE = (1 << 64) - 1  # tree sizes and indices are uint64 in checkpoints and proofs
MAX_ENTRY_SIZE = 0xFFFF  # a uint16 length prefix

NodeGetter = Callable[[int, int], bytes]


# --- Identifiers and paths --------------------------------------------------------


def encode_index(index: int) -> str:
    """A tile or bundle index as C2SP path elements: zero-padded groups of three
    digits, all but the last prefixed with "x" (1234067 -> "x001/x234/067")."""
    if not isinstance(index, int) or not 0 <= index <= MAX_TREE_SIZE:
        raise UsageError(f"tile index must be an integer in 0..2**64-1, got {index!r}")
    text = f"{index % 1000:03d}"
    index //= 1000
    while index:
        text = f"x{index % 1000:03d}/{text}"
        index //= 1000
    return text


def _check_width(width: int) -> None:
    if not isinstance(width, int) or not 1 <= width <= TILE_WIDTH:
        raise UsageError(f"tile width must be an integer in 1..{TILE_WIDTH}, got {width!r}")


def _width_suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


@dataclass(frozen=True)
class TileId:
    """One hash tile: `level` (tile level, 0..63), `index` within the level, and
    `width` (number of hashes, 1..255 for a partial tile, 256 for a full one)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not isinstance(self.level, int) or not 0 <= self.level <= MAX_TILE_LEVEL:
            raise UsageError(f"tile level must be an integer in 0..{MAX_TILE_LEVEL}, got {self.level!r}")
        if not isinstance(self.index, int) or not 0 <= self.index <= MAX_TREE_SIZE:
            raise UsageError(f"tile index must be an integer in 0..2**64-1, got {self.index!r}")
        _check_width(self.width)

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def first_node(self) -> int:
        """Index, at tree level 8·level, of the tile's first hash."""
        return self.index * TILE_WIDTH

    def path(self) -> str:
        """"tile/<L>/<N>[.p/<W>]", relative to the log's prefix."""
        return f"tile/{self.level}/{encode_index(self.index)}{_width_suffix(self.width)}"

    def __str__(self) -> str:
        return self.path()


class BundleId(NamedTuple):
    """One entry bundle: `index` (bundle N holds entries N·256 ...) and `width`
    (number of entries, 256 for a full bundle). Unpacks as (index, width)."""

    index: int
    width: int = TILE_WIDTH

    def path(self) -> str:
        return entries_path(self.index, self.width)

    @property
    def first_entry(self) -> int:
        return self.index * TILE_WIDTH


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """"tile/entries/<N>[.p/<W>]", relative to the log's prefix."""
    _check_width(width)
    return f"tile/entries/{encode_index(index)}{_width_suffix(width)}"


_LEVEL_RE = re.compile(r"0|[1-9][0-9]?", re.ASCII)
_INDEX_RE = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}", re.ASCII)
_WIDTH_RE = re.compile(r"[1-9][0-9]{0,2}", re.ASCII)
# Longest canonical path: "tile/entries/" + 7 groups ("x018/.../615") + ".p/255".
_MAX_PATH_LENGTH = 64


def parse_tile_path(path: str) -> TileId | BundleId:
    """Parse "tile/<L>/<N>[.p/<W>]" into a TileId or "tile/entries/<N>[.p/<W>]" into
    a BundleId. One leading "/" is allowed (as in a URL path); anything else that is
    not the canonical spelling raises TileError."""
    if not isinstance(path, str):
        raise TileError(f"tile path must be text, not {type(path).__name__}")
    shown = repr(path[:80])
    if path.startswith("/"):
        path = path[1:]
    if len(path) > _MAX_PATH_LENGTH:
        raise TileError(f"tile path {shown} is too long to be a tile path")
    if not path.startswith("tile/"):
        raise TileError(f"tile path {shown} does not start with 'tile/'")
    rest = path[len("tile/") :]

    width = TILE_WIDTH
    if ".p/" in rest:
        rest, width_text = rest.split(".p/", 1)
        if not _WIDTH_RE.fullmatch(width_text) or int(width_text) >= TILE_WIDTH:
            raise TileError(
                f"tile path {shown}: partial width {width_text!r} must be 1..255 "
                "without leading zeros (a full tile has no .p/ suffix)"
            )
        width = int(width_text)

    level_text, slash, index_text = rest.partition("/")
    if not slash:
        raise TileError(f"tile path {shown} has no tile index")
    if level_text == "entries":
        level = None
    elif _LEVEL_RE.fullmatch(level_text) and int(level_text) <= MAX_TILE_LEVEL:
        level = int(level_text)
    else:
        raise TileError(
            f"tile path {shown}: level {level_text!r} must be 'entries' or 0..{MAX_TILE_LEVEL} without leading zeros"
        )

    if not _INDEX_RE.fullmatch(index_text):
        raise TileError(
            f"tile path {shown}: index {index_text!r} must be 3-digit groups, all but the last "
            "prefixed with 'x' (e.g. x001/x234/067)"
        )
    index = int(index_text.replace("x", "").replace("/", ""))
    if index > MAX_TREE_SIZE:
        raise TileError(f"tile path {shown}: index {index} is beyond any 64-bit tree")
    if encode_index(index) != index_text:
        raise TileError(f"tile path {shown}: index is not canonical, write it {encode_index(index)!r}")

    if level is None:
        return BundleId(index, width)
    return TileId(level, index, width)


# --- Which tiles a tree has --------------------------------------------------------


def _check_size(size: int) -> None:
    if not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise UsageError(f"tree size must be an integer in 0..2**64-1, got {size!r}")


def tile_for_size(level: int, index: int, size: int) -> TileId | None:
    """The tile (level, index) as a tree of `size` leaves has it (full, or partial
    with its width), or None when that tree has no such tile."""
    _check_size(size)
    nodes = size >> (TILE_HEIGHT * level)  # hashes at tree level 8·level
    full = nodes >> TILE_HEIGHT
    if index < full:
        return TileId(level, index)
    width = nodes & (TILE_WIDTH - 1)
    if index == full and width:
        return TileId(level, index, width)
    return None


def tiles_for_size(size: int) -> list[TileId]:
    """Every hash tile of a tree of `size` leaves, level by level, left to right
    (e.g. 70,000 -> 273 full + .p/112 at level 0, one full + .p/17 at level 1, .p/1
    at level 2; 256 -> one full level-0 tile and tile/1/000.p/1)."""
    return new_tiles(0, size)


def partial_tiles_for_size(size: int) -> list[TileId]:
    """The partial tile of every level of a tree of `size` leaves that has one,
    lowest level first: the tree's right edge, all `root_from_tiles` needs
    (70,000 -> .p/112 at level 0, .p/17 at level 1, .p/1 at level 2)."""
    _check_size(size)
    tiles = []
    level = 0
    while nodes := size >> (TILE_HEIGHT * level):
        width = nodes & (TILE_WIDTH - 1)
        if width:
            tiles.append(TileId(level, nodes >> TILE_HEIGHT, width))
        level += 1
    return tiles


def new_tiles(old_size: int, new_size: int) -> list[TileId]:
    """The tiles a tree of `new_size` has that a tree of `old_size` lacks or has
    narrower: what a sequencer writes, and what a follower fetches, when the log
    grows from old_size to new_size."""
    _check_size(old_size)
    _check_size(new_size)
    if old_size > new_size:
        raise UsageError(f"tree shrinks from {old_size} to {new_size}")
    tiles = []
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        old_nodes = old_size >> (TILE_HEIGHT * level)
        new_nodes = new_size >> (TILE_HEIGHT * level)
        if old_nodes != new_nodes:
            full = new_nodes >> TILE_HEIGHT
            tiles.extend(TileId(level, n) for n in range(old_nodes >> TILE_HEIGHT, full))
            width = new_nodes & (TILE_WIDTH - 1)
            if width:
                tiles.append(TileId(level, full, width))
        level += 1
    return tiles


def tiles_for_update(old_size: int, new_size: int) -> list[TileId]:
    """The tiles that `verify_extension` needs to check a log that grew from old_size
    to new_size: the new tiles, plus the partial tiles of new_size that did not
    change (a follower kept those from the last update)."""
    fresh = new_tiles(old_size, new_size)
    fresh_set = set(fresh)
    return fresh + [t for t in partial_tiles_for_size(new_size) if t not in fresh_set]


def bundles_for_size(size: int) -> list[BundleId]:
    """Every entry bundle of a log of `size` entries: full ones, then the partial one."""
    return new_bundles(0, size)


def new_bundles(old_size: int, new_size: int) -> list[BundleId]:
    """The entry bundles that appear or grow when the log grows from old_size to new_size."""
    return [BundleId(t.index, t.width) for t in new_tiles(old_size, new_size) if t.level == 0]


# --- Where a tree node lives in the tiles ------------------------------------------


class TileSpan(NamedTuple):
    """Where tree node (level, index) lives: hashes [start, start + count) of tile
    (tile_level, tile_index) are its leaves-at-tile-level; a tile needs at least
    `min_width` hashes to contain it."""

    tile_level: int
    tile_index: int
    start: int
    count: int

    @property
    def min_width(self) -> int:
        return self.start + self.count


def locate_node(level: int, index: int) -> TileSpan:
    """The tile coordinates of tree node (level, index). A node at level 8·L + r is
    not stored itself (unless r == 0); it is the root of 2**r hashes of a level-L tile."""
    if not isinstance(level, int) or not isinstance(index, int) or level < 0 or index < 0:
        raise UsageError(f"bad tree node ({level!r}, {index!r})")
    tile_level, r = divmod(level, TILE_HEIGHT)
    first = index << r  # first descendant at tree level 8·tile_level
    return TileSpan(tile_level, first >> TILE_HEIGHT, first & (TILE_WIDTH - 1), 1 << r)


# --- Tile bytes ---------------------------------------------------------------------


def tile_hashes(data: bytes, width: int) -> list[bytes]:
    """Split tile bytes into `width` hashes; the length must be exactly 32·width."""
    if not isinstance(width, int) or not 1 <= width <= TILE_WIDTH:
        raise TileError(f"tile width must be 1..{TILE_WIDTH}, got {width!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TileError(f"tile data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != width * HASH_SIZE:
        raise TileError(
            f"a tile of width {width} is {width * HASH_SIZE} bytes, got {len(data)}",
            offset=min(len(data), width * HASH_SIZE),
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def build_tile(level: int, index: int, size: int, node_at: NodeGetter) -> bytes:
    """The bytes of tile (level, index) of a tree of `size` leaves: its hashes (tree
    level 8·level) taken from `node_at(level, index)`, concatenated."""
    tile = tile_for_size(level, index, size)
    if tile is None:
        raise UsageError(f"a tree of size {size} has no tile ({level}, {index})")
    tree_level = TILE_HEIGHT * level
    hashes = [node_at(tree_level, tile.first_node + i) for i in range(tile.width)]
    if set(map(len, hashes)) != {HASH_SIZE}:
        raise UsageError(f"node_at returned a hash that is not {HASH_SIZE} bytes")
    return b"".join(hashes)


class TileNodes:
    """Node hashes of a tree of `size` leaves, read out of a set of its tiles.

    `node_at(level, index)` (also the instance itself, as a callable) returns any
    perfect-subtree hash of the tree, so it can be handed to `merkle.inclusion_proof`,
    `merkle.consistency_proof` or `merkle.root_from_nodes`. For each node it reads the tile that the tree of
    `size` has; failing that, the full tile or a wider partial one (tiles are
    append-only, so a wider tile starts with the same hashes). A missing tile raises
    TileError naming the path to fetch.

    The hashes are only as trustworthy as the tiles: check them with `verify_tiles`.
    """

    def __init__(self, size: int, tiles: Mapping[TileId, bytes]):
        _check_size(size)
        self.size = size
        self._tiles = tiles
        self._parsed: dict[TileId, list[bytes]] = {}

    def _hashes(self, tile: TileId) -> list[bytes] | None:
        hashes = self._parsed.get(tile)
        if hashes is None:
            data = self._tiles.get(tile)
            if data is None:
                return None
            try:
                hashes = tile_hashes(data, tile.width)
            except TileError as e:
                raise TileError(f"tile {tile.path()}: {e}") from None
            self._parsed[tile] = hashes
        return hashes

    def node_at(self, level: int, index: int) -> bytes:
        if (index + 1) << level > self.size:
            raise UsageError(f"node ({level}, {index}) is not complete in a tree of size {self.size}")
        span = locate_node(level, index)
        own = tile_for_size(span.tile_level, span.tile_index, self.size)
        candidates = [own] if own is not None else []
        candidates.append(TileId(span.tile_level, span.tile_index))
        candidates.extend(
            TileId(span.tile_level, span.tile_index, w) for w in range(span.min_width, TILE_WIDTH)
        )
        for tile in candidates:
            hashes = self._hashes(tile)
            if hashes is not None:
                part = hashes[span.start : span.min_width]
                return part[0] if span.count == 1 else root_of(part)
        raise TileError(f"missing tile {own.path() if own else candidates[0].path()} for tree node ({level}, {index})")

    __call__ = node_at

    def root(self) -> bytes:
        return root_from_nodes(self.size, self.node_at)

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) (an RFC 6962 subtree)."""
        return range_hash(start, end, self.node_at)


def root_from_tiles(size: int, tiles: Mapping[TileId, bytes]) -> bytes:
    """The root of a tree of `size` leaves computed from its tiles. Only the
    partial tiles (the right edge at every level) are needed: each set bit of size
    is a perfect subtree whose hashes sit in the partial tile of its level."""
    return TileNodes(size, tiles).root()


def verify_tiles(size: int, root: bytes, tiles: Mapping[TileId, bytes]) -> None:
    """Check a set of tiles of a tree of `size` leaves against its (signed) `root`.

    Every tile given must belong to that tree and have the right length; the
    tree's partial tiles must give `root`; every full tile must hash to the
    matching hash in the tile one level up (which is then checked the same way,
    up to a partial tile); an older, narrower partial tile must agree with the
    tree's tile. Any tile whose upper neighbour is needed must be in `tiles`.
    Raises TileError on the first disagreement."""
    nodes = TileNodes(size, tiles)
    for tile, data in tiles.items():
        if not isinstance(tile, TileId):
            raise UsageError(f"tile keys must be TileId, got {tile!r}")
        own = tile_for_size(tile.level, tile.index, size)
        if own is None or tile.width > own.width:
            raise TileError(f"tile {tile.path()} is not part of a tree of size {size}")
        hashes = nodes._hashes(tile)
        tree_level = TILE_HEIGHT * tile.level
        if tile != own:
            for i, h in enumerate(hashes):
                if h != nodes.node_at(tree_level, tile.first_node + i):
                    raise TileError(f"tile {tile.path()} disagrees with {own.path()}", offset=i * HASH_SIZE)
        elif tile.is_full:
            if root_of(hashes) != nodes.node_at(tree_level + TILE_HEIGHT, tile.index):
                upper = tile_for_size(tile.level + 1, tile.index >> TILE_HEIGHT, size)
                raise TileError(f"tile {tile.path()} does not hash to its entry in tile {upper.path()}")
    computed = nodes.root()
    if computed != bytes(root):
        raise TileError(f"tiles give root {computed.hex()}, but the checkpoint of size {size} says {bytes(root).hex()}")


def verify_extension(
    old_size: int, old_root: bytes, new_size: int, new_root: bytes, tiles: Mapping[TileId, bytes]
) -> None:
    """A follower's whole check of one update, from tiles alone: the tiles (at
    least `tiles_for_update(old_size, new_size)`) belong to the tree of new_size with
    new_root (`verify_tiles`, TileError otherwise), and the perfect subtrees of the
    old tree, read out of those verified tiles, fold to old_root: the new tree
    extends the old one. That last failure raises ProofError: two signed roots that
    are not consistent are evidence of a fork, not a bad download."""
    if old_size > new_size:
        raise ProofError(f"tree size went down from {old_size} to {new_size}: the log has forked or rolled back")
    verify_tiles(new_size, new_root, tiles)
    if old_size == 0:
        if bytes(old_root) != EMPTY_ROOT:
            raise ProofError("the old checkpoint of size 0 does not carry the empty-tree root")
        return
    computed = root_from_nodes(old_size, TileNodes(new_size, tiles).node_at)
    if computed != bytes(old_root):
        raise ProofError(
            f"the tree of size {new_size} does not extend the old tree of size {old_size}: its first "
            f"{old_size} leaves have root {computed.hex()}, not {bytes(old_root).hex()} (the log has forked)"
        )


# --- Entry bundles ------------------------------------------------------------------


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as big-endian uint16 length + bytes, 1..256 entries."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise UsageError(f"an entry bundle holds 1..{TILE_WIDTH} entries, got {len(entries)}")
    parts = []
    for i, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise UsageError(f"entry {i} is {len(entry)} bytes; a bundle entry is at most {MAX_ENTRY_SIZE}")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(bytes(entry))
    return b"".join(parts)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of an entry bundle, strictly: every length prefix complete, every
    entry complete, 1..256 entries, no trailing bytes; with `width`, exactly that
    many entries. Raises TileError with the byte offset of the problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TileError(f"entry bundle must be bytes, not {type(data).__name__}")
    if width is not None and (not isinstance(width, int) or not 1 <= width <= TILE_WIDTH):
        raise UsageError(f"bundle width must be 1..{TILE_WIDTH}, got {width!r}")
    data = bytes(data)
    limit = TILE_WIDTH if width is None else width
    entries = []
    pos, end = 0, len(data)
    while pos < end:
        if len(entries) == limit:
            if width is None:
                raise TileError(f"entry bundle holds more than {TILE_WIDTH} entries", offset=pos)
            raise TileError(f"trailing bytes after the {width} entries of the bundle", offset=pos)
        if pos + 2 > end:
            raise TileError(f"entry {len(entries)}: length prefix cut short", offset=pos)
        length = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + length > end:
            raise TileError(
                f"entry {len(entries)}: declares {length} bytes but only {end - pos - 2} remain",
                offset=pos,
            )
        entries.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    if not entries:
        raise TileError("entry bundle is empty (empty bundles are never served)", offset=0)
    if width is not None and len(entries) != width:
        raise TileError(f"entry bundle holds {len(entries)} entries, its width says {width}", offset=end)
    return entries


def verify_bundle(entries: Sequence[bytes], tile_data: bytes, width: int | None = None) -> None:
    """Check that the entries hash (RFC 6962 leaf hash) to the hashes of the
    level-0 tile with the same index. Raises TileError naming the first mismatch."""
    hashes = tile_hashes(tile_data, len(entries) if width is None else width)
    if len(hashes) != len(entries):
        raise TileError(f"bundle holds {len(entries)} entries but the tile has {len(hashes)} hashes")
    for i, (entry, h) in enumerate(zip(entries, hashes)):
        if leaf_hash(entry) != h:
            raise TileError(f"entry {i} of the bundle does not match its leaf hash in the tile", offset=i * HASH_SIZE)
