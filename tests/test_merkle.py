"""Tests of protocol.merkle: transparency-dev/merkle conformance vectors, RFC 6962
roots, and bounded property tests of proofs and of a growing tree's right edge
(protocol.edge)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.edge import TreeEdge
from protocol.errors import ProofError, UsageError
from protocol.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    covering_subtrees,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_nodes,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from protocol.tiles import TILE_HEIGHT, TILE_WIDTH, partial_tiles_for_size

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "merkle"


def _vectors(kind: str) -> list[Path]:
    folder = CONFORMANCE / kind
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _vector_id(path: Path) -> str:
    return str(path.relative_to(CONFORMANCE))


def _need_conformance() -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip("../shared/conformance/merkle is not available")


# --- Conformance -------------------------------------------------------------------


@pytest.mark.parametrize("path", _vectors("inclusion"), ids=_vector_id)
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], [_b64(p) for p in v["proof"] or []], _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vectors("consistency"), ids=_vector_id)
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], [_b64(p) for p in v["proof"] or []], _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_conformance_vectors_present() -> None:
    _need_conformance()
    assert len(_vectors("inclusion")) > 50 and len(_vectors("consistency")) > 50


@pytest.fixture(scope="module")
def rfc6962() -> tuple[list[bytes], list[bytes]]:
    _need_conformance()
    data = json.loads((CONFORMANCE / "rfc6962-roots.json").read_text())
    leaves = [leaf_hash(bytes.fromhex(x)) for x in data["leaf_inputs_hex"]]
    roots = [bytes.fromhex(x) for x in data["root_hashes_hex_by_tree_size"]]
    return leaves, roots


def test_rfc6962_roots(rfc6962) -> None:
    leaves, roots = rfc6962
    assert roots[0] == EMPTY_ROOT
    for size, want in enumerate(roots):
        assert root_of(leaves[:size]) == want
        assert grown(leaves[:size]).root() == want
        assert root_from_nodes(size, lambda lvl, i: root_of(leaves[i << lvl : (i + 1) << lvl])) == want


def test_generated_proofs_match_happy_path_vectors(rfc6962) -> None:
    """The vectors' happy paths are proofs over the same eight leaves: ours must be
    byte for byte the same, not just verify."""
    leaves, _ = rfc6962
    checked = 0
    for path in _vectors("inclusion") + _vectors("consistency"):
        if path.name != "happy-path.json":
            continue
        v = json.loads(path.read_text())
        want = [_b64(p) for p in v["proof"] or []]
        if "size1" in v:
            assert consistency_proof(v["size1"], v["size2"], leaves) == want, path
        else:
            assert inclusion_proof(v["leafIdx"], v["treeSize"], leaves) == want, path
        checked += 1
    assert checked >= 10


def test_all_proofs_of_small_trees(rfc6962) -> None:
    leaves, roots = rfc6962
    for size in range(1, 9):
        for i in range(size):
            verify_inclusion(leaves[i], i, size, inclusion_proof(i, size, leaves), roots[size])
        for size1 in range(1, size + 1):
            proof = consistency_proof(size1, size, leaves)
            verify_consistency(size1, size, proof, roots[size1], roots[size])


# --- Hashing ------------------------------------------------------------------------


def test_hash_definitions() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert root_of([left]) == left
    assert root_of([left, right]) == node_hash(left, right)


def test_root_of_is_rfc6962_recursion() -> None:
    """Compare the fast level-by-level root with the textbook recursive definition."""

    def mth(hashes: list[bytes]) -> bytes:
        if len(hashes) == 1:
            return hashes[0]
        k = 1 << ((len(hashes) - 1).bit_length() - 1)
        return node_hash(mth(hashes[:k]), mth(hashes[k:]))

    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(300)]
    for size in list(range(1, 70)) + [127, 128, 129, 255, 256, 257, 300]:
        assert root_of(leaves[:size]) == mth(leaves[:size])


def test_root_of_rejects_bad_hashes() -> None:
    with pytest.raises(UsageError):
        root_of([b"short"])


def test_covering_subtrees() -> None:
    assert covering_subtrees(0, 0) == []
    assert covering_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert covering_subtrees(8, 13) == [(2, 2), (0, 12)]
    assert covering_subtrees(4, 20) == [(2, 1), (3, 1), (2, 4)]  # not RFC-aligned: still covers


# --- Property tests over a fixed pool of leaves ------------------------------------

POOL = 3000


@pytest.fixture(scope="module")
def pool() -> tuple[list[bytes], list[list[bytes]]]:
    """Synthetic leaf hashes and every level of perfect-subtree hashes above them."""
    leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(POOL)]
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return leaves, levels


def _node_getter(levels):
    return lambda level, index: levels[level][index]


def _flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    mutated = list(proof)
    h = bytearray(mutated[which])
    h[bit // 8] ^= 1 << (bit % 8)
    mutated[which] = bytes(h)
    return mutated


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_inclusion_properties(pool, data) -> None:
    leaves, levels = pool
    size = data.draw(st.integers(1, POOL), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_of(leaves[:size])
    proof = inclusion_proof(index, size, _node_getter(levels))
    verify_inclusion(leaves[index], index, size, proof, root)
    assert root_from_inclusion_proof(leaves[index], index, size, proof) == root

    if proof:  # any single flipped bit anywhere in the proof
        which = data.draw(st.integers(0, len(proof) - 1), label="which")
        bit = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, _flip(proof, which, bit), root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, proof[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, size, proof + [root], root)

    other_leaf = leaves[(index + 1) % POOL]
    with pytest.raises(ProofError):
        verify_inclusion(other_leaf, index, size, proof, root)

    if size > 1:
        wrong_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="wrong_index")
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], wrong_index, size, proof, root)

    # A wrong size, paired with the root the log has at that size. (With the
    # same root a different size can share the proof's shape, e.g. leaf 4 of
    # sizes 7 and 8: the size is bound by the signed checkpoint, not the proof.)
    wrong_size = data.draw(st.integers(index + 1, POOL).filter(lambda s: s != size), label="wrong_size")
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, wrong_size, proof, root_of(leaves[:wrong_size]))
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], size, size, proof, root)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_consistency_properties(pool, data) -> None:
    leaves, levels = pool
    size2 = data.draw(st.integers(1, POOL), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    root1, root2 = root_of(leaves[:size1]), root_of(leaves[:size2])
    proof = consistency_proof(size1, size2, _node_getter(levels))
    verify_consistency(size1, size2, proof, root1, root2)
    if size1 == size2:
        assert proof == []
        return

    which = data.draw(st.integers(0, len(proof) - 1), label="which")
    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, _flip(proof, which, bit), root1, root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof[:-1], root1, root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof + [root2], root1, root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root2, root1)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, leaves[0])

    wrong1 = data.draw(st.integers(1, size2).filter(lambda s: s != size1), label="wrong_size1")
    with pytest.raises(ProofError):
        verify_consistency(wrong1, size2, proof, root_of(leaves[:wrong1]), root2)
    wrong2 = data.draw(st.integers(size1, POOL).filter(lambda s: s != size2), label="wrong_size2")
    with pytest.raises(ProofError):
        verify_consistency(size1, wrong2, proof, root1, root_of(leaves[:wrong2]))


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_proofs_from_leaves_equal_proofs_from_nodes(pool, size, data) -> None:
    leaves, levels = pool
    index = data.draw(st.integers(0, size - 1))
    size1 = data.draw(st.integers(1, size))
    getter = _node_getter(levels)
    assert inclusion_proof(index, size, leaves) == inclusion_proof(index, size, getter)
    assert consistency_proof(size1, size, leaves) == consistency_proof(size1, size, getter)


def grown(leaf_hashes) -> TreeEdge:
    edge = TreeEdge()
    edge.append(list(leaf_hashes))
    return edge


def _edge_levels(size: int, levels) -> list[list[bytes]]:
    """The hashes of each partial tile of a tree of `size`, read from its nodes."""
    out: list[list[bytes]] = [[]]
    for tile in partial_tiles_for_size(size):
        out += [[] for _ in range(tile.level + 1 - len(out))]
        out[tile.level] = [levels[TILE_HEIGHT * tile.level][tile.index * TILE_WIDTH + i] for i in range(tile.width)]
    return out


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, POOL), more=st.integers(0, 40))
def test_edge_resume(pool, size, more) -> None:
    leaves, levels = pool
    more = min(more, POOL - size)
    edge = grown(leaves[:size])
    assert edge.size == size
    assert edge.root() == root_of(leaves[:size])
    for tile in edge.partial_tiles():
        assert tile.data == b"".join(levels[TILE_HEIGHT * tile.level][tile.index * TILE_WIDTH + i]
                                     for i in range(tile.id.width))

    resumed = TreeEdge.from_level_hashes(size, edge.copy().levels)
    from_nodes = TreeEdge.from_level_hashes(size, _edge_levels(size, levels))
    assert from_nodes.levels == edge.levels
    for i in range(size, size + more):
        resumed.append([leaves[i]])
        from_nodes.append([leaves[i]])
        assert resumed.root() == from_nodes.root() == root_of(leaves[: i + 1])
    assert edge.size == size  # resuming copied, did not share state


def test_edge_grows_one_leaf_at_a_time(pool) -> None:
    leaves, _ = pool
    edge = TreeEdge()
    assert edge.root() == EMPTY_ROOT
    for i in range(600):
        edge.append([leaves[i]])
        assert edge.root() == root_of(leaves[: i + 1])


def test_edge_rejects_bad_stored_state(pool) -> None:
    leaves, _ = pool
    good = grown(leaves[:300])
    with pytest.raises(ValueError, match="do not describe a tree of size 300"):
        TreeEdge.from_level_hashes(300, [good.levels[0][:-1], good.levels[1]])
    with pytest.raises(ValueError):
        TreeEdge.from_level_hashes(256, [[leaves[0]] * 256])


# --- Error messages and argument checks -------------------------------------------


def test_verification_errors_say_what_is_wrong(pool) -> None:
    leaves, levels = pool
    root = root_of(leaves[:10])
    proof = inclusion_proof(3, 10, leaves)
    with pytest.raises(ProofError, match="not in a tree of size 10"):
        verify_inclusion(leaves[3], 10, 10, proof, root)
    with pytest.raises(ProofError, match="must have 4 hashes, got 3"):
        verify_inclusion(leaves[3], 3, 10, proof[:3], root)
    with pytest.raises(ProofError, match="leaf hash is 5 bytes"):
        verify_inclusion(b"short", 3, 10, proof, root)
    with pytest.raises(ProofError, match="proof hash 1 must be bytes"):
        verify_inclusion(leaves[3], 3, 10, [proof[0], "text"], root)
    with pytest.raises(ProofError, match="gives root"):
        verify_inclusion(leaves[3], 3, 10, proof, leaves[0])
    with pytest.raises(ProofError, match="never shrinks"):
        verify_consistency(5, 4, [], root, root)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 4, [], EMPTY_ROOT, root)
    with pytest.raises(ProofError, match="forked"):
        verify_consistency(4, 4, [], root, leaves[0])
    with pytest.raises(ProofError, match="must have"):
        verify_consistency(3, 10, consistency_proof(3, 10, leaves) + [root], root_of(leaves[:3]), root)


def test_generation_argument_checks(pool) -> None:
    leaves, _ = pool
    with pytest.raises(ProofError):
        inclusion_proof(5, 5, leaves)
    with pytest.raises(ProofError):
        inclusion_proof(-1, 5, leaves)
    with pytest.raises(ProofError):
        consistency_proof(6, 5, leaves)
    with pytest.raises(ProofError):
        consistency_proof(0, 5, leaves)
    with pytest.raises(UsageError):
        inclusion_proof(1, 10, leaves[:5])
