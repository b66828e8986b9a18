"""C2SP tlog-proof: offline proofs that entries are in a log, under a checkpoint that
witnesses cosigned (c2sp.org/tlog-proof).

One entry is a C2SP tlog-proof, byte for byte:

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry bytes>       optional; ours always carry it
    index <decimal>
    <base64 hash>                           0..63 lines: the RFC 6962 inclusion proof
    <empty line>
    <signed checkpoint note, verbatim>

Several entries under one checkpoint (a person's receipt, issue 21; `ncii-node proof`
with several indices) are the same lines repeated, under our own header (our format,
which is no C2SP format: each (extra, index, hashes) group and the checkpoint make one
C2SP tlog-proof, and `TlogProofs.split()` gives them):

    ncii-node/tlog-proofs@v1
    extra ... / index ... / hashes ...      two or more groups, indices increasing
    <empty line>
    <signed checkpoint note>

Our leaves are the exact entry bytes (leaf hash = SHA-256(0x00 || entry)), so `extra`
is the entry itself and a proof is self-contained. The extra data is not trusted for
being there: it counts only once its leaf hash, through the inclusion proof, gives the
signed root.

Invariants kept here:
- `parse_proofs` accepts exactly what `TlogProofs.to_bytes` can produce (one encoding)
  and raises ProofFormatError (a ProtocolError) otherwise; sizes are bounded.
- `verify_proofs` does what C2SP tlog-proof's "Verifying a tlog proof" says, in its
  order: leaf hash, log signature for an acceptable origin, cosignatures by the
  policy's quorum (protocol/policy.py), inclusion. Any failure raises; success returns
  what was proven, and nothing else.
- `build_proofs` never returns a proof that does not verify against the checkpoint's
  root (it checks its own output).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from protocol.checkpoint import MAX_TREE_SIZE, Checkpoint
from protocol.errors import CheckpointError, CosignatureError, NoteError, ProofError, ProtocolError, UsageError
from protocol.merkle import HASH_SIZE, inclusion_proof, leaf_hash, verify_inclusion
from protocol.note import Note, Verifier, decode_base64_strict, parse_note
from protocol.policy import Policy, QuorumNotMet, QuorumResult, verify_checkpoint
from protocol.tiles import TILE_WIDTH, BundleId, TileId, locate_node, tile_for_size

HEADER = b"c2sp.org/tlog-proof@v1"
BUNDLE_HEADER = b"ncii-node/tlog-proofs@v1"
MAX_PROOF_HASHES = 63
MAX_ENTRIES = 1000                    # a receipt holds a case's entries (at most ~100 today)
MAX_EXTRA_BYTES = 65535               # an entry is at most 65,535 bytes
MAX_BYTES = 8 * 1024 * 1024
_INDEX = re.compile(rb"index (0|[1-9][0-9]{0,18})")

NodeGetter = Callable[[int, int], bytes]


class ProofFormatError(ProtocolError):
    """A proof file that is not a C2SP tlog-proof (or our bundle of them)."""


@dataclass(frozen=True)
class EntryProof:
    """One entry's inclusion proof: its index, the audit path, and the entry (extra)."""

    index: int
    hashes: tuple[bytes, ...]
    extra: bytes | None = None


@dataclass(frozen=True)
class TlogProofs:
    """Inclusion proofs of one or more entries under one signed checkpoint note."""

    proofs: tuple[EntryProof, ...]
    checkpoint: bytes

    def to_bytes(self) -> bytes:
        """A C2SP tlog-proof for one entry, our bundle for several."""
        if not self.proofs:
            raise UsageError("a proof file holds at least one entry")
        out = [HEADER if len(self.proofs) == 1 else BUNDLE_HEADER]
        for proof in self.proofs:
            if proof.extra is not None:
                out.append(b"extra " + base64.b64encode(proof.extra))
            out.append(b"index %d" % proof.index)
            out.extend(base64.b64encode(h) for h in proof.hashes)
        return b"\n".join(out) + b"\n\n" + self.checkpoint

    def split(self) -> list[bytes]:
        """One C2SP tlog-proof per entry (what any C2SP verifier reads)."""
        return [TlogProofs((p,), self.checkpoint).to_bytes() for p in self.proofs]


def parse_proofs(data: bytes) -> TlogProofs:
    """Parse a C2SP tlog-proof or our bundle of them, strictly. The checkpoint note is
    parsed (syntax only; `verify_proofs` checks its signatures)."""
    if not isinstance(data, (bytes, bytearray)):
        raise UsageError(f"a proof must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_BYTES:
        raise ProofFormatError(f"proof file is {len(data)} bytes; at most {MAX_BYTES} are accepted")
    head, blank, checkpoint = data.partition(b"\n\n")
    if not blank:
        raise ProofFormatError("no empty line between the proof lines and the checkpoint")
    lines = head.split(b"\n")
    header = lines[0]
    if header not in (HEADER, BUNDLE_HEADER):
        raise ProofFormatError(f"the first line must be {HEADER.decode()!r} (or {BUNDLE_HEADER.decode()!r} "
                               "for several entries)")
    proofs: list[EntryProof] = []
    number, lines = 2, lines[1:]
    while lines:
        extra = None
        if lines[0].startswith(b"extra "):
            extra = decode_base64_strict(lines[0][6:])
            if extra is None or not extra or len(extra) > MAX_EXTRA_BYTES:
                raise ProofFormatError(f"line {number}: extra data must be 1..{MAX_EXTRA_BYTES} bytes in "
                                       "canonical padded base64")
            number, lines = number + 1, lines[1:]
        match = _INDEX.fullmatch(lines[0]) if lines else None
        if match is None:
            raise ProofFormatError(f"line {number}: expected \"index <decimal, no leading zeroes>\"")
        index = int(match.group(1))
        if index > MAX_TREE_SIZE:
            raise ProofFormatError(f"line {number}: index {index} is 2**63 or more")
        number, lines = number + 1, lines[1:]
        hashes = []
        while lines and not lines[0].startswith((b"extra ", b"index ")):
            raw = decode_base64_strict(lines[0])
            if raw is None or len(raw) != HASH_SIZE:
                raise ProofFormatError(f"line {number}: an inclusion proof line is one 32-byte hash in base64")
            hashes.append(raw)
            number, lines = number + 1, lines[1:]
        if len(hashes) > MAX_PROOF_HASHES:
            raise ProofFormatError(f"entry {index}: {len(hashes)} proof hashes; at most {MAX_PROOF_HASHES}")
        if proofs and index <= proofs[-1].index:
            raise ProofFormatError(f"line {number}: indices must increase (entry {index} after "
                                   f"{proofs[-1].index})")
        if len(proofs) >= MAX_ENTRIES:
            raise ProofFormatError(f"more than {MAX_ENTRIES} entries in one proof file")
        proofs.append(EntryProof(index, tuple(hashes), extra))
    if not proofs:
        raise ProofFormatError("no \"index\" line: a proof names at least one entry")
    if header == HEADER and len(proofs) != 1:
        raise ProofFormatError(f"a {HEADER.decode()} holds exactly one entry; several are a "
                               f"{BUNDLE_HEADER.decode()}")
    if header == BUNDLE_HEADER and len(proofs) < 2:
        raise ProofFormatError(f"a {BUNDLE_HEADER.decode()} holds two entries or more; one is a "
                               f"{HEADER.decode()}")
    try:
        Checkpoint.parse(parse_note(checkpoint).text)
    except (NoteError, CheckpointError) as exc:
        raise ProofFormatError(f"the checkpoint is not a signed checkpoint note: {exc}") from None
    return TlogProofs(tuple(proofs), checkpoint)


# --------------------------------------------------------------------------
# Building


def build_proofs(note: bytes, entries: Mapping[int, bytes], node_at: NodeGetter, *,
                 include_entries: bool = True) -> TlogProofs:
    """Proofs of `entries` ({index: entry bytes}) under the checkpoint `note`, with the
    audit paths read from `node_at` (node hashes of the tree at the checkpoint's size,
    e.g. protocol.tiles.TileNodes). Each proof is verified against the checkpoint's
    root before it is returned: tiles that do not match raise ProofError."""
    cp = Checkpoint.parse(parse_note(note).text)
    if not entries:
        raise UsageError("build_proofs needs at least one entry")
    proofs = []
    for index in sorted(entries):
        hashes = inclusion_proof(index, cp.size, node_at)
        verify_inclusion(leaf_hash(entries[index]), index, cp.size, hashes, cp.root_hash)
        proofs.append(EntryProof(index, tuple(hashes), entries[index] if include_entries else None))
    return TlogProofs(tuple(proofs), note)


def tiles_for_inclusion(indices: Iterable[int], size: int) -> list[TileId]:
    """The tiles of a tree of `size` leaves that hold every node the inclusion proofs
    of `indices` need (fetch these, not the whole tree)."""
    needed: set[TileId] = set()

    def record(level: int, index: int) -> bytes:
        span = locate_node(level, index)
        tile = tile_for_size(span.tile_level, span.tile_index, size)
        needed.add(tile if tile is not None else TileId(span.tile_level, span.tile_index))
        return bytes(HASH_SIZE)

    for index in indices:
        inclusion_proof(index, size, record)
    return sorted(needed, key=lambda t: (t.level, t.index))


def bundle_for_entry(index: int, size: int) -> BundleId:
    """The entry bundle of a tree of `size` leaves that holds entry `index`."""
    tile = tile_for_size(0, index // TILE_WIDTH, size)
    if tile is None:
        raise UsageError(f"entry {index} is not in a tree of size {size}")
    return BundleId(tile.index, tile.width)


# --------------------------------------------------------------------------
# Verifying


@dataclass(frozen=True)
class ProvenEntry:
    index: int
    leaf_hash: bytes
    entry: bytes | None       # None when only the leaf hash was given


@dataclass(frozen=True)
class VerifiedProofs:
    checkpoint: Checkpoint
    note: Note
    log_key: str
    quorum: QuorumResult
    entries: tuple[ProvenEntry, ...]


def verify_proofs(proofs: TlogProofs | bytes, policy: Policy, *, entries: Mapping[int, bytes] | None = None,
                  leaf_hashes: Mapping[int, bytes] | None = None, origin: str | None = None,
                  log_keys: Iterable[Verifier] = ()) -> VerifiedProofs:
    """Verify a C2SP tlog-proof (or our bundle) offline against a C2SP tlog-policy.

    Step 1 of C2SP's procedure, the leaf hash, is the application's: ours is
    SHA-256(0x00 || entry), the entry taken from the proof's extra data or, for a proof
    without it, from `entries` ({index: bytes}; given both, they must be equal). A log
    whose leaves are not its extra data passes `leaf_hashes` ({index: hash}) instead.
    `origin` (if given) is the only acceptable origin; `log_keys` are log keys known
    from other context (see protocol.policy.verify_checkpoint). Raises
    ProofFormatError, NoteError, CheckpointError, CosignatureError (QuorumNotMet) or
    ProofError."""
    if isinstance(proofs, (bytes, bytearray)):
        proofs = parse_proofs(bytes(proofs))
    given, hashes_given = dict(entries or {}), dict(leaf_hashes or {})
    # 1. The leaf hashes.
    leaves = []
    for proof in proofs.proofs:
        entry = proof.extra if proof.extra is not None else given.get(proof.index)
        if proof.extra is not None and proof.index in given and given[proof.index] != proof.extra:
            raise ProofError(f"entry {proof.index} given differs from the one the proof carries")
        if entry is not None:
            leaves.append(ProvenEntry(proof.index, leaf_hash(entry), entry))
        elif proof.index in hashes_given:
            leaves.append(ProvenEntry(proof.index, hashes_given[proof.index], None))
        else:
            raise ProofFormatError(f"the proof of entry {proof.index} carries no entry and none was given")
    # 2 + 3. The checkpoint: an acceptable log's signature, and the policy's quorum.
    verified = verify_checkpoint(policy, proofs.checkpoint, origin=origin, log_keys=log_keys)
    cp = verified.checkpoint
    # 4. Inclusion of each leaf under the signed root.
    for proof, proven in zip(proofs.proofs, leaves):
        try:
            verify_inclusion(proven.leaf_hash, proof.index, cp.size, list(proof.hashes), cp.root_hash)
        except ProofError as exc:
            raise ProofError(f"entry {proof.index}: {exc}") from None
    return VerifiedProofs(cp, verified.note, verified.log_key, verified.quorum, tuple(leaves))


def failure_kind(exc: ProtocolError) -> str:
    """What a failed verification says about the proof, in one word: `format` (not a
    proof file), `signature` (no acceptable log signed the checkpoint), `cosignature`
    (a witness's line is forged or altered), `quorum` (too few witnesses), `inclusion`
    (the entry is not under the signed root)."""
    if isinstance(exc, ProofFormatError):
        return "format"
    if isinstance(exc, QuorumNotMet):
        return "quorum"
    if isinstance(exc, CosignatureError):
        return "cosignature"
    if isinstance(exc, ProofError):
        return "inclusion"
    if isinstance(exc, (NoteError, CheckpointError)):
        return "signature"
    return type(exc).__name__
