"""Fixed keys and a fixed tree that the harnesses check input against, and their seeds
are made from. Deterministic (seeds from constants), so a crash input found today
replays the same way tomorrow."""

from __future__ import annotations

import functools

from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.cosignature import CosignatureSigner
from protocol.merkle import EMPTY_ROOT, leaf_hash, node_hash, root_from_nodes
from protocol.note import Signer, add_signatures
from protocol.tiles import TILE_HEIGHT, TileId, build_tile

LOG_ORIGIN = "fuzz.example/log"
LOG_SIGNER = Signer(LOG_ORIGIN, bytes(range(32)))
LOG_VERIFIER = LOG_SIGNER.verifier()
OTHER_SIGNER = Signer(LOG_ORIGIN, bytes(range(1, 33)))  # same name, another key
WITNESS_SIGNER = CosignatureSigner("fuzz.example/witness", bytes([7]) * 32)
WITNESS_VERIFIER = WITNESS_SIGNER.verifier()
NOTE_VERIFIERS = [LOG_VERIFIER, WITNESS_VERIFIER]
READER_NAME = "reader.example"
READER_SEED = bytes([9]) * 32
COSIGNED_AT = 1_700_000_000

# 65,536 + 300 leaves: tiles on three levels (the third holds one hash).
TREE_SIZE = 65_836


class Tree:
    """Every perfect-subtree hash of a tree over leaves b"leaf <i>"; a tree of any
    smaller size has the same perfect subtrees, so one table serves every size."""

    def __init__(self, size: int, prefix: bytes = b"leaf "):
        self.size = size
        level = [leaf_hash(prefix + b"%d" % i) for i in range(size)]
        self.levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)

    def node_at(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    @functools.lru_cache(maxsize=4096)
    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else root_from_nodes(size, self.node_at)

    def tile(self, tile: TileId) -> bytes:
        """The bytes of `tile` (its own width decides which tree size it belongs to)."""
        tree_level = TILE_HEIGHT * tile.level
        return b"".join(self.node_at(tree_level, tile.first_node + i) for i in range(tile.width))

    def tile_of_size(self, level: int, index: int, size: int) -> bytes:
        return build_tile(level, index, size, self.node_at)

    def checkpoint(self, size: int, signer: Signer = LOG_SIGNER) -> bytes:
        return sign_checkpoint(Checkpoint(signer.name, size, self.root(size)), signer)


@functools.cache
def tree() -> Tree:
    return Tree(TREE_SIZE)


@functools.cache
def forked_tree() -> Tree:
    """Another history of the same log: what a log showing a split view signs too."""
    return Tree(64, prefix=b"other ")


def cosigned(note: bytes, at: int = COSIGNED_AT) -> bytes:
    text = note.split(b"\n\n", 1)[0].decode() + "\n"
    return add_signatures(note, [WITNESS_SIGNER.cosign(text, at)])


# ----------------------------------------------------------------- federation, acknowledgements

LIST_FEDERATION = "fuzz.example/federation"
LIST_SIGNERS = [Signer("fuzz.example/list-a", bytes([11]) * 32), Signer("fuzz.example/list-b", bytes([12]) * 32)]
LIST_VKEYS = [s.verifier_key() for s in LIST_SIGNERS]
PLATFORM_ORIGIN = "fuzz.example/platform"
PLATFORM_SIGNER = Signer(PLATFORM_ORIGIN, bytes([13]) * 32)
PLATFORM_ACK_SIGNER = CosignatureSigner(PLATFORM_ORIGIN, bytes([14]) * 32)


def member_line_fields(n: int) -> dict:
    """The fields of a valid member n (an Invitation's), keys made from constants."""
    from node.readaccess import RequestSigner

    origin = f"member{n}.example/log"
    return {"url": f"https://member{n}.example/log", "origin": origin,
            "role": ("helpline", "platform")[n % 2], "name": f"Member {n}",
            "log_vkey": Signer(origin, bytes([20 + n]) * 32).verifier_key(),
            "request_vkey": RequestSigner.from_seed(f"member{n}.example", bytes([40 + n]) * 32).keyid}
WITNESS_VERIFIER_KEY = WITNESS_SIGNER.verifier_key()
