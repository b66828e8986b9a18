"""The federation list as an append-only log (spec/parts/joining.md §3.3), without I/O.

Each version of the list is one entry of a small C2SP tlog-tiles log whose origin is
the federation's name and whose checkpoints are signed by the list key(s), k of n.
A list can reach 512 KiB, more than a tile entry holds (65,535 bytes), so an entry
names the version by the SHA-256 of its text; the signed list itself is served beside
the log (GET <base>/version/<serial>) and checked against its entry:

    ncii-node/federation-list-version/v1
    federation <name>
    serial <n>
    sha256 <64 lower-case hex digits of SHA-256(list text)>

Rules of the log (checked by every follower over every entry it reads, so that a
coordinator cannot slip an older serial in between): every entry names the same
federation, serials strictly grow, and the newest version is the last entry. One
encoding only: a parser accepts exactly what `version_entry` writes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from node.federation.members import ListError, MemberList
from node.follow.forks import LeafTree
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.errors import ProtocolError
from protocol.merkle import leaf_hash
from protocol.note import Signer, Verifier, sign_note
from protocol.tiles import (
    TILE_WIDTH,
    BundleId,
    TileId,
    bundles_for_size,
    build_tile,
    decode_bundle,
    encode_bundle,
    tile_for_size,
    tiles_for_size,
    verify_bundle,
)

ENTRY_HEADER = "ncii-node/federation-list-version/v1"
#: Versions a list log may hold (our bound: one a day for 170 years); a follower reads
#: every entry when the checkpoint moves: at most 256 bundles of < 200 bytes an entry.
MAX_VERSIONS = TILE_WIDTH * TILE_WIDTH
_ENTRY = re.compile(ENTRY_HEADER + r"\nfederation ([^ \n]+)\nserial (0|[1-9][0-9]{0,17})\nsha256 ([0-9a-f]{64})\n")


@dataclass(frozen=True)
class Version:
    """One entry: which list (federation, serial) and the digest of its text."""

    federation: str
    serial: int
    sha256: str

    def to_bytes(self) -> bytes:
        return (f"{ENTRY_HEADER}\nfederation {self.federation}\nserial {self.serial}\n"
                f"sha256 {self.sha256}\n").encode()

    def matches(self, member_list: MemberList) -> bool:
        return (member_list.federation, member_list.serial, text_digest(member_list.text())) == \
            (self.federation, self.serial, self.sha256)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def version_entry(member_list: MemberList) -> Version:
    return Version(member_list.federation, member_list.serial, text_digest(member_list.text()))


def parse_entry(data: bytes, index: int) -> Version:
    """A version entry, strictly; raises ListError naming the entry."""
    try:
        match = _ENTRY.fullmatch(data.decode("ascii"))
    except UnicodeDecodeError:
        match = None
    if match is None:
        raise ListError(f"entry {index} of the list's log is not a list version entry")
    return Version(match[1], int(match[2]), match[3])


def check_history(versions: list[Version], federation: str | None) -> None:
    """The log's rules over all its entries; raises ListError."""
    for index, version in enumerate(versions):
        if version.federation != (federation or versions[0].federation):
            raise ListError(f"entry {index} of the list's log is of the federation {version.federation!r}, not "
                            f"{federation or versions[0].federation!r}")
        if index and version.serial <= versions[index - 1].serial:
            raise ListError(f"entry {index} of the list's log has serial {version.serial}, not higher than "
                            f"the serial {versions[index - 1].serial} before it")


# ---------------------------------------------------------------------- checkpoints

def sign_list_checkpoint(federation: str, size: int, root: bytes, signers: list[Signer]) -> bytes:
    """The log's checkpoint (origin: the federation's name), signed by each list key given.
    The keys' names need not be the origin (k of n members name their keys as they
    like): the follower's configuration binds its list keys to the federation."""
    return sign_note(Checkpoint(federation, size, root).to_text(), signers)


def open_list_checkpoint(data: bytes, list_vkeys: list[str], quorum: int, federation: str | None,
                         witnesses: tuple[str, ...] = (), witness_quorum: int = 0) -> Checkpoint:
    """The checkpoint if at least `quorum` distinct list keys signed it (and it is
    the federation's, when known), and `witness_quorum` of the federation's
    `witnesses` cosigned it (C2SP tlog-cosignature); raises ListError."""
    if len(data) > 16 * 1024:
        raise ListError(f"the list's checkpoint is {len(data)} bytes; at most 16384 are accepted")
    try:
        text_origin = Checkpoint.parse(data.split(b"\n\n", 1)[0].decode("utf-8") + "\n").origin
        cp, note = open_checkpoint(data, [Verifier.from_vkey(v) for v in list_vkeys],
                                   origin=federation or text_origin, key_name_is_origin=False)
    except (ProtocolError, UnicodeDecodeError) as exc:
        raise ListError(f"the list's checkpoint is refused: {exc}") from None
    if len(note.verified_by) < quorum:
        raise ListError(f"the list's checkpoint is signed by {len(note.verified_by)} of the federation's list "
                        f"keys; {quorum} are required")
    if witness_quorum:
        from node.witness.policy import require_cosignatures

        try:
            require_cosignatures(data, list(witnesses), witness_quorum)
        except ProtocolError as exc:
            raise ListError(f"the list's checkpoint is not cosigned as required: {exc}") from None
    if not 1 <= cp.size <= MAX_VERSIONS:
        raise ListError(f"the list's log has {cp.size} entries; 1 to {MAX_VERSIONS} are accepted")
    return cp


# ---------------------------------------------------------------------- tiles

def log_files(entries: list[bytes]) -> list[tuple[str, bytes]]:
    """Every tile and entry bundle (C2SP paths) of the log of these entries: the
    publisher writes them all (files it wrote before come out byte for byte the same)."""
    tree = LeafTree([leaf_hash(e) for e in entries])
    size = len(entries)
    files = [(tile.path(), build_tile(tile.level, tile.index, size, tree)) for tile in tiles_for_size(size)]
    for bundle in bundles_for_size(size):
        first = bundle.index * TILE_WIDTH
        files.append((bundle.path(), encode_bundle(entries[first:first + bundle.width])))
    return files


def read_entries(size: int, tiles: dict[TileId, bytes], bundles: dict[BundleId, bytes]) -> list[bytes]:
    """All entries of a log of `size`, from its bundles checked against its level-0
    tiles, which the caller verified against its signed root (protocol.tiles.verify_tiles);
    raises ProtocolError (TileError)."""
    entries: list[bytes] = []
    for bundle in bundles_for_size(size):
        data = decode_bundle(bundles[bundle], bundle.width)
        verify_bundle(data, tiles[tile_for_size(0, bundle.index, size)], bundle.width)
        entries += data
    return entries
