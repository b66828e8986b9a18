"""Tests of protocol.tiles: C2SP tlog-tiles paths and tile sets, node lookup and
roots from tiles (past 65,536 leaves, where level-1 tiles fill up), tile
verification, and strict entry bundles."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProofError, TileError, UsageError
from protocol.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_nodes,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from protocol.tiles import (
    FULL_TILE_SIZE,
    BundleId,
    TileId,
    TileNodes,
    build_tile,
    bundles_for_size,
    decode_bundle,
    encode_bundle,
    encode_index,
    entries_path,
    locate_node,
    new_bundles,
    new_tiles,
    parse_tile_path,
    partial_tiles_for_size,
    root_from_tiles,
    tile_for_size,
    tile_hashes,
    tiles_for_size,
    tiles_for_update,
    verify_bundle,
    verify_extension,
    verify_tiles,
)

# --- Paths -------------------------------------------------------------------------


def test_index_encoding_examples() -> None:
    assert encode_index(0) == "000"
    assert encode_index(7) == "007"
    assert encode_index(999) == "999"
    assert encode_index(1000) == "x001/000"
    assert encode_index(1234067) == "x001/x234/067"  # the C2SP spec's example
    assert encode_index(2**64 - 1) == "x018/x446/x744/x073/x709/x551/615"


def test_path_examples() -> None:
    assert TileId(0, 1234067).path() == "tile/0/x001/x234/067"
    assert TileId(0, 1234067, 12).path() == "tile/0/x001/x234/067.p/12"
    assert TileId(2, 0, 1).path() == "tile/2/000.p/1"
    assert TileId(63, 5).path() == "tile/63/005"
    assert entries_path(1234067) == "tile/entries/x001/x234/067"
    assert entries_path(3, 255) == "tile/entries/003.p/255"
    assert BundleId(1000, 9).path() == "tile/entries/x001/000.p/9"
    assert parse_tile_path("tile/0/x001/x234/067.p/12") == TileId(0, 1234067, 12)
    assert parse_tile_path("/tile/1/000") == TileId(1, 0)
    assert parse_tile_path("tile/entries/x001/x234/067") == BundleId(1234067, 256)
    assert parse_tile_path("tile/entries/000.p/1") == (0, 1)


@settings(max_examples=200, deadline=None)
@given(
    level=st.integers(0, 63),
    index=st.one_of(st.integers(0, 2000), st.integers(0, 2**64 - 1)),
    width=st.integers(1, 256),
)
def test_path_round_trip(level, index, width) -> None:
    tile = TileId(level, index, width)
    assert parse_tile_path(tile.path()) == tile
    assert parse_tile_path("/" + tile.path()) == tile
    bundle = BundleId(index, width)
    assert parse_tile_path(bundle.path()) == bundle


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "tile",
        "tile/",
        "tile/0",
        "tile/0/",
        "tiles/0/000",
        "//tile/0/000",
        "tile//0/000",
        "tile/0//000",
        "tile/0/000/",
        "tile/00/000",  # leading zero in the level
        "tile/01/000",
        "tile/64/000",  # level above 63
        "tile/-1/000",
        "tile/+1/000",
        "tile/a/000",
        "tile/0/0",  # index groups are three digits
        "tile/0/00",
        "tile/0/0000",
        "tile/0/x000",  # the last group has no x
        "tile/0/x001",
        "tile/0/001/000",  # all but the last group need the x
        "tile/0/X001/000",
        "tile/0/x000/001",  # non-canonical: leading zero group
        "tile/0/x000/x001/000",
        "tile/0/x1/000",
        "tile/0/x0001/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",  # 2**64
        "tile/0/000.p/0",
        "tile/0/000.p/256",  # a full tile has no .p suffix
        "tile/0/000.p/300",
        "tile/0/000.p/012",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.p/12/",
        "tile/0/000.p/1.p/1",
        "tile/0/000.P/12",
        "tile/0/000.p/+5",
        "tile/0/../000",
        "tile/../0/000",
        "tile/0/./000",
        "tile/0/000/..",
        "tile\\0\\000",
        "tile/0/000\n",
        " tile/0/000",
        "tile/0/\u0660\u0660\u0660",  # Arabic-Indic digits are not ASCII digits
        "tile/entries",
        "tile/entries/",
        "tile/entry/000",
        "tile/entries/0",
        "tile/entries/000.p/256",
        "tile/entries/x000/005",
        "tile/0/" + "x999/" * 30 + "999",
    ],
)
def test_parse_rejects(path: str) -> None:
    with pytest.raises(TileError):
        parse_tile_path(path)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(TileError):
        parse_tile_path(b"tile/0/000")  # type: ignore[arg-type]


def test_parse_error_says_how_to_fix() -> None:
    with pytest.raises(TileError, match="write it '001'"):
        parse_tile_path("tile/0/x000/001")


# --- Which tiles a tree has --------------------------------------------------------


def test_c2sp_tile_set_examples() -> None:
    tiles = tiles_for_size(70_000)  # the C2SP spec's own example
    assert sum(1 for t in tiles if t.level == 0 and t.is_full) == 273
    assert TileId(0, 273, 112) in tiles
    assert [t for t in tiles if t.level > 0] == [TileId(1, 0), TileId(1, 1, 17), TileId(2, 0, 1)]
    assert len(tiles) == 277
    assert tiles_for_size(256) == [TileId(0, 0), TileId(1, 0, 1)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [TileId(0, 0, 1)]
    assert tiles_for_size(257) == [TileId(0, 0), TileId(0, 1, 1), TileId(1, 0, 1)]
    assert tiles_for_size(65_536)[-2:] == [TileId(1, 0), TileId(2, 0, 1)]
    assert bundles_for_size(513) == [(0, 256), (1, 256), (2, 1)]
    assert bundles_for_size(0) == []


@settings(max_examples=100, deadline=None)
@given(old=st.integers(0, 70_000), grow=st.integers(0, 70_000))
def test_new_tiles_is_the_difference(old, grow) -> None:
    new = old + grow
    old_set = set(tiles_for_size(old))
    assert new_tiles(old, new) == [t for t in tiles_for_size(new) if t not in old_set]
    assert new_bundles(old, new) == [(t.index, t.width) for t in new_tiles(old, new) if t.level == 0]
    # Partial width rule of C2SP: floor(s / 256**l) mod 256 at every level.
    for tile in tiles_for_size(new):
        nodes = new >> (8 * tile.level)
        if not tile.is_full:
            assert tile.width == nodes % 256 and tile.index == nodes // 256
        assert tile_for_size(tile.level, tile.index, new) == tile
    assert partial_tiles_for_size(new) == [t for t in tiles_for_size(new) if not t.is_full]


def test_partial_tiles_for_size_examples() -> None:
    assert partial_tiles_for_size(70_000) == [TileId(0, 273, 112), TileId(1, 1, 17), TileId(2, 0, 1)]
    assert partial_tiles_for_size(256) == [TileId(1, 0, 1)]
    assert partial_tiles_for_size(65_536) == [TileId(2, 0, 1)]
    assert partial_tiles_for_size(0) == []


def test_locate_node() -> None:
    assert locate_node(0, 1000) == (0, 3, 232, 1)
    assert locate_node(3, 5) == (0, 0, 40, 8)
    assert locate_node(7, 3) == (0, 1, 128, 128)
    assert locate_node(8, 3) == (1, 0, 3, 1)
    assert locate_node(16, 0) == (2, 0, 0, 1)
    assert locate_node(10, 70) == (1, 1, 24, 4)
    assert locate_node(10, 70).min_width == 28


# --- Roots, nodes and proofs from tiles --------------------------------------------

POOL = 70_000


@pytest.fixture(scope="module")
def tree() -> list[list[bytes]]:
    """Every level of a tree over 70,000 synthetic leaf hashes (past 65,536, so
    level-1 tiles fill up and a level-2 tile appears)."""
    levels = [[hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(POOL)]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def _tiles(levels, size: int) -> dict[TileId, bytes]:
    node_at = lambda level, index: levels[level][index]  # noqa: E731
    return {t: build_tile(t.level, t.index, size, node_at) for t in tiles_for_size(size)}


@pytest.mark.parametrize("size", [0, 1, 2, 255, 256, 257, 511, 65_535, 65_536, 65_537, 70_000])
def test_root_from_tiles_known_sizes(tree, size) -> None:
    tiles = _tiles(tree, size)
    root = root_of(tree[0][:size])
    assert root_from_tiles(size, tiles) == root
    verify_tiles(size, root, tiles)
    if size == 0:
        assert root == EMPTY_ROOT and tiles == {}


def test_root_needs_only_partial_tiles(tree) -> None:
    size = 70_000
    partial = {t: d for t, d in _tiles(tree, size).items() if not t.is_full}
    assert root_from_tiles(size, partial) == root_of(tree[0][:size])
    # A power of 256 is a single hash in the top partial tile.
    top = {TileId(2, 0, 1): tree[16][0]}
    assert root_from_tiles(65_536, top) == tree[16][0]


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 3000))
def test_root_from_tiles_random_sizes(tree, size) -> None:
    tiles = _tiles(tree, size)
    root = root_of(tree[0][:size])
    assert root_from_tiles(size, tiles) == root
    verify_tiles(size, root, tiles)


def test_tile_bytes(tree) -> None:
    tiles = _tiles(tree, 70_000)
    assert tiles[TileId(0, 5)] == b"".join(tree[0][1280:1536])
    assert len(tiles[TileId(0, 273, 112)]) == 112 * 32
    assert tiles[TileId(1, 1, 17)] == b"".join(tree[8][256:273])
    # A level-1 hash is the root of the full level-0 tile below it.
    assert tile_hashes(tiles[TileId(1, 0)], 256)[7] == root_of(tile_hashes(tiles[TileId(0, 7)], 256))
    assert tiles[TileId(2, 0, 1)] == tree[16][0]
    with pytest.raises(UsageError):
        build_tile(0, 274, 70_000, lambda level, index: tree[level][index])
    with pytest.raises(UsageError):
        build_tile(3, 0, 70_000, lambda level, index: tree[level][index])


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_proofs_from_tiles(tree, data) -> None:
    """Any node, and so any proof, can be had from the tiles of a tree: including
    trees past 65,536 leaves, where upper levels come from level-1/2 tiles."""
    size = data.draw(st.one_of(st.integers(1, 3000), st.integers(65_530, POOL)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    size1 = data.draw(st.integers(1, size), label="size1")
    nodes = TileNodes(size, _tiles(tree, size))
    direct = lambda level, i: tree[level][i]  # noqa: E731
    root = root_of(tree[0][:size])
    proof = inclusion_proof(index, size, nodes)
    assert proof == inclusion_proof(index, size, direct)
    verify_inclusion(tree[0][index], index, size, proof, root)
    cproof = consistency_proof(size1, size, nodes)
    verify_consistency(size1, size, cproof, root_of(tree[0][:size1]), root)
    assert root_from_nodes(size, nodes) == root


def test_old_tiles_serve_a_newer_tree(tree) -> None:
    """A follower keeps full tiles and adds new ones: the node lookup falls back to a
    full or wider tile when the exact partial tile of the size is not at hand."""
    tiles = _tiles(tree, 70_000)
    del tiles[TileId(0, 273, 112)]
    # Size 69,900 has partial tile 0/273.p/12, and no tile of index 273 is at hand.
    nodes = TileNodes(69_900, tiles)
    with pytest.raises(TileError, match=r"missing tile tile/0/273\.p/12"):
        nodes.root()
    tiles[TileId(0, 273, 100)] = b"".join(tree[0][273 * 256 : 273 * 256 + 100])
    assert TileNodes(69_900, tiles).root() == root_of(tree[0][:69_900])


def test_verify_tiles_catches_any_bad_tile(tree) -> None:
    size = 70_000
    root = root_of(tree[0][:size])
    good = _tiles(tree, size)
    for tile in [TileId(0, 0), TileId(0, 150), TileId(0, 273, 112), TileId(1, 0), TileId(1, 1, 17), TileId(2, 0, 1)]:
        bad = dict(good)
        data = bytearray(bad[tile])
        data[-1] ^= 0x01
        bad[tile] = bytes(data)
        with pytest.raises(TileError):
            verify_tiles(size, root, bad)
    with pytest.raises(TileError, match="root"):
        verify_tiles(size, leaf_hash(b"other"), good)
    with pytest.raises(TileError, match="not part of a tree"):
        verify_tiles(size, root, {**good, TileId(0, 274, 1): bytes(32)})
    with pytest.raises(TileError, match="8192 bytes"):
        verify_tiles(size, root, {**good, TileId(0, 3): good[TileId(0, 3)][:-1]})
    missing_parent = dict(good)
    del missing_parent[TileId(1, 0)]
    with pytest.raises(TileError, match="missing tile tile/1/000"):
        verify_tiles(size, root, missing_parent)
    # An older, narrower partial tile must agree with the current one.
    older = {**good, TileId(0, 273, 5): b"".join(tree[0][273 * 256 : 273 * 256 + 5])}
    verify_tiles(size, root, older)
    older[TileId(0, 273, 5)] = b"".join(tree[0][273 * 256 + 1 : 273 * 256 + 6])
    with pytest.raises(TileError, match="disagrees"):
        verify_tiles(size, root, older)


def test_tile_hashes_is_strict() -> None:
    assert tile_hashes(bytes(FULL_TILE_SIZE), 256) == [bytes(32)] * 256
    for data, width in [(bytes(31), 1), (bytes(33), 1), (b"", 1), (bytes(64), 1), (bytes(32), 0), (bytes(32 * 257), 257)]:
        with pytest.raises(TileError):
            tile_hashes(data, width)


# --- Entry bundles ------------------------------------------------------------------

_entries = st.lists(st.binary(max_size=300), min_size=1, max_size=256)


@settings(max_examples=60, deadline=None)
@given(entries=_entries)
def test_bundle_round_trip(entries) -> None:
    data = encode_bundle(entries)
    assert data[:2] == len(entries[0]).to_bytes(2, "big")
    assert decode_bundle(data) == entries
    assert decode_bundle(data, len(entries)) == entries


def test_bundle_with_largest_entry() -> None:
    entries = [b"\xff" * 65_535, b"", b"x"]
    data = encode_bundle(entries)
    assert data[:2] == b"\xff\xff"
    assert decode_bundle(data, 3) == entries
    with pytest.raises(UsageError):
        encode_bundle([b"x" * 65_536])
    with pytest.raises(UsageError):
        encode_bundle([])
    with pytest.raises(UsageError):
        encode_bundle([b""] * 257)


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(st.binary(max_size=40), min_size=1, max_size=20))
def test_every_truncation_is_rejected(entries) -> None:
    data = encode_bundle(entries)
    boundaries = set()
    pos = 0
    for entry in entries:
        boundaries.add(pos)
        pos += 2 + len(entry)
    for cut in range(len(data)):
        with pytest.raises(TileError) as excinfo:
            decode_bundle(data[:cut], len(entries))
        assert excinfo.value.offset is not None
        if cut not in boundaries:  # without a width, only a cut mid-entry is detectable
            with pytest.raises(TileError):
                decode_bundle(data[:cut])


def test_bundle_errors_carry_offsets() -> None:
    data = encode_bundle([b"abc", b"de"])
    assert data.hex() == "000361626300026465"  # the example of spec/parts/merkle.md
    with pytest.raises(TileError, match="at byte 5") as excinfo:
        decode_bundle(data[:-1])
    assert excinfo.value.offset == 5
    with pytest.raises(TileError, match="at byte 5"):
        decode_bundle(data[:6])  # half a length prefix
    with pytest.raises(TileError, match=r"trailing bytes.*at byte 5"):
        decode_bundle(data, 1)
    with pytest.raises(TileError, match="holds 2 entries, its width says 3"):
        decode_bundle(data, 3)
    with pytest.raises(TileError, match="empty"):
        decode_bundle(b"")
    with pytest.raises(TileError, match="more than 256"):
        decode_bundle(b"\x00\x00" * 257)
    with pytest.raises(TileError):
        decode_bundle(data + b"\x00")
    with pytest.raises(TileError):
        decode_bundle("text")  # type: ignore[arg-type]


def test_verify_bundle() -> None:
    entries = [b"entry %d" % i for i in range(10)]
    tile = b"".join(leaf_hash(e) for e in entries)
    verify_bundle(entries, tile)
    with pytest.raises(TileError, match="entry 3"):
        verify_bundle(entries[:3] + [b"forged"] + entries[4:], tile)
    with pytest.raises(TileError):
        verify_bundle(entries[:9], tile)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_verify_extension(tree, data) -> None:
    """A follower that kept its last partial tiles fetches tiles_for_update and
    checks the update from tiles alone; a different history is a ProofError."""
    new = data.draw(st.one_of(st.integers(0, 3000), st.integers(65_000, POOL)), label="new")
    old = data.draw(st.integers(0, new), label="old")
    node_at = lambda level, index: tree[level][index]  # noqa: E731
    needed = {t: build_tile(t.level, t.index, new, node_at) for t in tiles_for_update(old, new)}
    old_root, new_root = root_of(tree[0][:old]), root_of(tree[0][:new])
    verify_extension(old, old_root, new, new_root, needed)
    if old:
        forged_old_root = hashlib.sha256(old_root).digest()
        with pytest.raises(ProofError, match="forked"):
            verify_extension(old, forged_old_root, new, new_root, needed)
    if new:
        with pytest.raises(TileError):
            verify_extension(old, old_root, new, hashlib.sha256(new_root).digest(), needed)


def test_tiles_for_update_examples() -> None:
    assert tiles_for_update(300, 300) == [TileId(0, 1, 44), TileId(1, 0, 1)]
    assert tiles_for_update(300, 310) == [TileId(0, 1, 54), TileId(1, 0, 1)]
    assert tiles_for_update(500, 520) == [TileId(0, 1), TileId(0, 2, 8), TileId(1, 0, 2)]
    assert tiles_for_update(0, 0) == []
