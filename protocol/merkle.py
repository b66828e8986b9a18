"""RFC 6962 Merkle trees: hashing, roots, inclusion and consistency proofs.

(A growing tree's right edge, kept tile by tile, is protocol/edge.py.)

The tree over leaves d[0..n) is the one of RFC 6962 §2.1 (RFC 9162 §2.1):

    leaf hash   SHA-256(0x00 || entry bytes)
    node hash   SHA-256(0x01 || left || right)
    empty tree  SHA-256("")
    MTH(d[0:n]) = node_hash(MTH(d[0:k]), MTH(d[k:n])), k the largest power of two < n

Nodes are named `(level, index)`: the node at `level` with `index` is the root of the
*perfect* subtree over leaves [index * 2**level, (index + 1) * 2**level). Proof
generation never needs anything but such nodes, so it takes a `node_at(level, index)`
getter (tiles, a database, a list of leaf hashes), and the right-hand "border" hashes
of RFC 6962, which cover an incomplete subtree, are computed from perfect ones.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 to the letter and raises
`ProofError` with the reason on every failure; it returns None on success, so a caller
cannot forget to look at a boolean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Union

from .errors import ProofError, UsageError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]
# Proof generation accepts either the leaf hashes themselves or a node getter.
NodeSource = Union[Sequence[bytes], NodeGetter]

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes (EMPTY_ROOT for none).

    Level by level: pair neighbours, carry an odd last hash up unchanged. That gives
    exactly the RFC 6962 tree (its left subtrees are always perfect), and keeps the
    per-node Python work to one list-comprehension step.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    if set(map(len, level)) != {HASH_SIZE}:
        raise UsageError(f"root_of needs {HASH_SIZE}-byte leaf hashes")
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    while len(level) > 1:
        pairs = iter(level)
        upper = [sha256(prefix + left + right).digest() for left, right in zip(pairs, pairs)]
        if len(level) & 1:
            upper.append(level[-1])
        level = upper
    return level[0]


# --- Perfect subtrees ------------------------------------------------------------


def covering_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees `(level, index)` that cover leaves [start, end), largest
    first where the range is aligned (as every RFC 6962 subtree is): greedily the
    biggest aligned power of two that fits. For [0, n) these are the binary digits
    of n, i.e. the perfect subtrees whose roots fold into the root of a tree of size n."""
    if not 0 <= start <= end:
        raise UsageError(f"bad leaf range [{start}, {end})")
    result = []
    while start < end:
        # Largest power of two dividing `start` (any size when start == 0) ...
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        # ... that still fits in what is left.
        while (1 << level) > end - start:
            level -= 1
        result.append((level, start >> level))
        start += 1 << level
    return result


def range_hash(start: int, end: int, node_at: NodeGetter) -> bytes:
    """MTH of leaves [start, end), an RFC 6962 subtree (start aligned to the power
    of two at or above end - start), built from perfect-subtree hashes: the right
    border of the tree is the fold of its perfect parts from the right."""
    if end <= start:
        raise UsageError(f"empty leaf range [{start}, {end})")
    parts = covering_subtrees(start, end)
    result = node_at(*parts[-1])
    for level, index in reversed(parts[:-1]):
        result = node_hash(node_at(level, index), result)
    return result


def root_from_nodes(size: int, node_at: NodeGetter) -> bytes:
    """The root of a tree of `size` leaves from its perfect subtrees (one per set bit
    of size): what a sequencer or follower does with tiles instead of leaves."""
    if size < 0:
        raise UsageError(f"negative tree size {size}")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(0, size, node_at)


def _node_getter(source: NodeSource, size: int) -> NodeGetter:
    """A `node_at` getter from either a getter or the leaf hashes (then each node is
    recomputed from its leaves, which is fine for tests and small trees)."""
    if callable(source):
        return source
    leaves = source
    if len(leaves) < size:
        raise UsageError(f"{len(leaves)} leaf hashes given for a tree of size {size}")

    def node_at(level: int, index: int) -> bytes:
        return root_of(leaves[index << level : (index + 1) << level])

    return node_at


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n >= 2): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


# --- Inclusion proofs -------------------------------------------------------------


def _check_index_and_size(index: int, size: int) -> None:
    if not isinstance(index, int) or not isinstance(size, int):
        raise ProofError("leaf index and tree size must be integers")
    if index < 0 or size < 0:
        raise ProofError(f"negative leaf index or tree size ({index}, {size})")
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size} (index must be < size)")


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """The RFC 6962 audit path PATH(index, D[0:size]), bottom up.

    `source` is the leaf hashes or a `node_at(level, index)` getter."""
    _check_index_and_size(index, size)
    node_at = _node_getter(source, size)
    # Walk down from the root, noting the sibling subtree at each split.
    siblings = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            siblings.append((start + k, end))
            end = start + k
        else:
            siblings.append((start, start + k))
            start += k
    return [range_hash(a, b, node_at) for a, b in reversed(siblings)]


def _as_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ProofError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _check_hash(value: object, what: str) -> bytes:
    value = _as_bytes(value, what)
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes long, want {HASH_SIZE}")
    return value


def _check_proof(proof: Iterable[bytes] | None) -> list[bytes]:
    items = list(proof or ())
    return [_check_hash(h, f"proof hash {i}") for i, h in enumerate(items)]


def _inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[0:size]) has: one per level below the point
    where the paths to `index` and to the last leaf part (inner), plus one per left
    sibling above it (border)."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner + border


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for `leaf` at `index` in a tree of `size`
    (RFC 9162 §2.1.3.2 without the final comparison). Raises ProofError if the
    proof is malformed."""
    _check_index_and_size(index, size)
    leaf = _check_hash(leaf, "leaf hash")
    path = _check_proof(proof)
    want = _inclusion_proof_length(index, size)
    if len(path) != want:
        raise ProofError(
            f"inclusion proof for leaf {index} of tree size {size} must have {want} hashes, got {len(path)}"
        )
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A right-border node has no right sibling at the levels it skips.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves
    with `root`. Returns None; raises ProofError on any failure."""
    computed = root_from_inclusion_proof(leaf, index, size, proof)
    root = _check_hash(root, "root hash")
    if computed != root:
        raise ProofError(
            f"inclusion proof for leaf {index} gives root {computed.hex()}, "
            f"not the expected {root.hex()} of tree size {size}"
        )


# --- Consistency proofs -----------------------------------------------------------


def _check_sizes(size1: int, size2: int) -> None:
    if not isinstance(size1, int) or not isinstance(size2, int):
        raise ProofError("tree sizes must be integers")
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size ({size1}, {size2})")
    if size1 > size2:
        raise ProofError(f"old tree size {size1} is larger than new tree size {size2}: a log never shrinks")
    if size1 == 0:
        # Every tree extends the empty tree; a proof for it proves nothing, and
        # accepting one would let garbage pass as "verified".
        raise ProofError("a consistency proof from the empty tree (size 0) is meaningless; skip the check")


def consistency_proof(size1: int, size2: int, source: NodeSource) -> list[bytes]:
    """The RFC 6962 consistency proof PROOF(size1, D[0:size2]) for 0 < size1 <= size2
    (empty when the sizes are equal). `source`: leaf hashes or a node getter."""
    _check_sizes(size1, size2)
    node_at = _node_getter(source, size2)
    # SUBPROOF(m, D[start:end], b) unrolled: walk down, collecting subtrees.
    parts = []
    start, end, whole_old_tree = 0, size2, True
    while True:
        if size1 == end:
            if not whole_old_tree:
                parts.append((start, end))
            break
        k = _largest_power_of_two_below(end - start)
        if size1 - start <= k:
            parts.append((start + k, end))
            end = start + k
        else:
            parts.append((start, start + k))
            start += k
            whole_old_tree = False
    return [range_hash(a, b, node_at) for a, b in reversed(parts)]


def _consistency_proof_length(size1: int, size2: int) -> int:
    """The hashes in PROOF(size1, D[0:size2]) for 0 < size1 < size2: the inclusion
    path of leaf size1 - 1 from the level where size1's last perfect subtree sits,
    plus that subtree's own hash unless it is the whole old tree."""
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length() - shift
    border = bin((size1 - 1) >> (inner + shift)).count("1")
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner + border


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of size2 with root2 extends the tree of size1 with root1
    (RFC 9162 §2.1.4.2). Returns None; raises ProofError on any failure.

    size1 must be > 0 (there is nothing to prove about the empty tree). When the
    sizes are equal the proof must be empty and the roots identical."""
    _check_sizes(size1, size2)
    path = _check_proof(proof)
    if size1 == size2:
        if path:
            raise ProofError(f"tree sizes are equal ({size1}) but the consistency proof is not empty")
        if _as_bytes(root1, "old root hash") != _as_bytes(root2, "new root hash"):
            raise ProofError(f"two different roots for the same tree size {size1}: the log has forked")
        return
    root1 = _check_hash(root1, "old root hash")
    root2 = _check_hash(root2, "new root hash")
    if not path:
        raise ProofError(f"empty consistency proof between different sizes {size1} and {size2}")
    want = _consistency_proof_length(size1, size2)
    if len(path) != want:
        raise ProofError(f"consistency proof from size {size1} to {size2} must have {want} hashes, got {len(path)}")
    if size1 & (size1 - 1) == 0:
        # The old tree is a perfect subtree of the new one: its root is the seed.
        path = [root1] + path
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise ProofError(
            f"consistency proof gives old root {fr.hex()}, not the expected {root1.hex()} of tree size {size1}"
        )
    if sr != root2:
        raise ProofError(
            f"consistency proof gives new root {sr.hex()}, not the expected {root2.hex()} of tree size {size2}"
        )
