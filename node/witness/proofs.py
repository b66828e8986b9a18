"""Offline proofs (C2SP tlog-proof, protocol/tlogproof.py) of entries of a log: built
from this node's own data directory, or fetched from any log this node may read.

    proofs_from_disk(db, tiles, note, indices)   the core: a note (cosigned or not),
                                                 tiles on disk, entries from the database
    local_proofs(datadir, indices)               this node's log, under the checkpoint
                                                 that carries the most valid cosignatures
    remote_proofs(url, vkey, indices, ...)       any log over HTTP (tiles, bundles and
                                                 checkpoint fetched, everything verified)

A receipt for a person (issue 21) is `proofs_from_disk` with the published, cosigned
note of the sequencer. Whatever the source, `protocol.tlogproof.build_proofs` checks
each proof against the checkpoint's signed root before it is returned, so a bad tile
or a lying server gives an error, never a proof that does not verify.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from node.store import log as log_store
from node.store import witness as witness_store
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.cosignature import CosignatureVerifier
from protocol.errors import ProtocolError
from protocol.note import Note, Verifier, parse_note, parse_signature_text
from protocol.tiles import TileNodes, decode_bundle
from protocol.tlogproof import TlogProofs, build_proofs, bundle_for_entry, tiles_for_inclusion

MAX_INDICES = 1000


class ProofUnavailable(Exception):
    """The proof cannot be made: no such entry, no checkpoint covers it, a fetch failed."""


class DiskTiles:
    """Mapping-like view (`get(TileId)`) of the tiles a node wrote (node/log/tilestore.py)."""

    def __init__(self, tile_store):
        self.tile_store = tile_store

    def get(self, tile, default=None):
        data = self.tile_store.read(tile.path())
        return default if data is None else data


def _check_indices(indices) -> list[int]:
    indices = sorted(set(indices))
    if not indices:
        raise ProofUnavailable("name at least one entry index")
    if len(indices) > MAX_INDICES:
        raise ProofUnavailable(f"at most {MAX_INDICES} entries per proof file")
    if indices[0] < 0:
        raise ProofUnavailable(f"entry index {indices[0]} is negative")
    return indices


def proofs_from_disk(db, tiles: DiskTiles, note: bytes, indices, *, include_entries: bool = True) -> TlogProofs:
    """Proofs of `indices` of this node's log under `note` (one of its checkpoints,
    with whatever cosignatures it carries)."""
    indices = _check_indices(indices)
    cp = Checkpoint.parse(parse_note(note).text)
    if indices[-1] >= cp.size:
        raise ProofUnavailable(f"entry {indices[-1]} is not in the checkpoint of size {cp.size}")
    entries = {}
    for index in indices:
        row = log_store.get_entry(db, index)
        if row is None:
            raise ProofUnavailable(f"entry {index} is not stored")
        entries[index] = row[0]
    try:
        return build_proofs(note, entries, TileNodes(cp.size, tiles), include_entries=include_entries)
    except ProtocolError as exc:
        raise ProofUnavailable(f"the tiles on disk do not prove entry against the checkpoint: {exc}") from None


@dataclass
class Candidate:
    size: int
    note: bytes
    witnesses: list[str]      # names of the witnesses whose cosignature it carries


def best_cosigned_checkpoint(db, needed_size: int, *, more_sizes=(), more_lines=None,
                             prefer_smaller: bool = False) -> Candidate | None:
    """Among this log's checkpoints of at least `needed_size` entries: the latest one,
    each one a witness last cosigned for us (its line is kept in log_witnesses) and
    `more_sizes`, the one carrying the most valid cosignatures (ties: the larger, or
    with `prefer_smaller` the smaller, i.e. the earlier). `more_lines(size, text)`
    gives further (name, signature line) pairs for a checkpoint, already verified (a
    receipt's publication cosignature and platforms' acknowledgements)."""
    latest = log_store.latest_checkpoint(db)
    if latest is None or latest.size < needed_size:
        return None
    witnesses = witness_store.list_log_witnesses(db)
    sizes = {latest.size} | {w.last_size for w in witnesses if w.last_line and w.last_size is not None}
    sizes |= {s for s in more_sizes if s <= latest.size}
    best = None
    for size in sorted((s for s in sizes if s >= needed_size), reverse=prefer_smaller):
        stored = log_store.checkpoint_at(db, size)
        if stored is None:
            continue
        plain = parse_note(stored.note)
        lines, names = [], []
        for w in witnesses:
            if w.last_size != size or not w.last_line:
                continue
            try:
                verifier = CosignatureVerifier.from_vkey(w.vkey)
                verifier.verify_line(plain.text, w.last_line)
            except ProtocolError:
                continue
            lines.append(w.last_line)
            names.append(w.name or verifier.name)
        for name, line in (more_lines(size, plain.text) if more_lines else ()):
            lines.append(line)
            names.append(name)
        note = Note(plain.text, plain.signatures + [parse_signature_text(line) for line in lines]).to_bytes()
        if best is None or len(names) >= len(best.witnesses):
            best = Candidate(size, note, names)
    return best


def local_proofs(datadir, indices, *, include_entries: bool = True) -> tuple[TlogProofs, Candidate]:
    """Proofs of entries of this node's own log, read from its data directory (the node
    may be running: reads are safe beside it)."""
    from node.log.tilestore import TileStore
    from node.store import open_db

    indices = _check_indices(indices)
    db = open_db(datadir.db_path)
    try:
        candidate = best_cosigned_checkpoint(db, indices[-1] + 1)
        if candidate is None:
            latest = log_store.latest_checkpoint(db)
            raise ProofUnavailable(f"entry {indices[-1]} is not in the log's latest checkpoint "
                                   f"(size {latest.size if latest else 0})")
        tiles = DiskTiles(TileStore(datadir.tiles_dir, datadir.tmp_dir))
        return proofs_from_disk(db, tiles, candidate.note, indices, include_entries=include_entries), candidate
    finally:
        db.close()


async def remote_proofs(url: str, vkey: str, indices, *, origin: str | None = None, signer=None,
                        timeout: float = 30.0, include_entries: bool = True) -> TlogProofs:
    """Proofs of entries of the log at `url`, under the checkpoint it serves (with the
    cosignatures it carries), verified under `vkey` for `origin` (default: the key's
    name). Only the tiles and bundles the proofs need are fetched."""
    from node.follow.client import FetchError, PeerClient

    indices = _check_indices(indices)
    verifier = Verifier.from_vkey(vkey)
    origin = verifier.name if origin is None else origin
    async with PeerClient(url, signer=signer, timeout=timeout) as client:
        try:
            note = await client.checkpoint()
            cp, _ = open_checkpoint(note, [verifier], origin=origin, key_name_is_origin=False)
            if indices[-1] >= cp.size:
                raise ProofUnavailable(f"entry {indices[-1]} is not in the log's checkpoint of size {cp.size}")
            needed = tiles_for_inclusion(indices, cp.size)
            fetched = await asyncio.gather(*(client.tile(t) for t in needed))
            tiles = dict(zip(needed, fetched))
            bundles = sorted({bundle_for_entry(i, cp.size) for i in indices})
            contents = await asyncio.gather(*(client.bundle(b) for b in bundles))
        except FetchError as exc:
            raise ProofUnavailable(f"cannot fetch from {url}: {exc}") from None
        except ProtocolError as exc:
            raise ProofUnavailable(f"the log's checkpoint does not verify under {vkey}: {exc}") from None
    entries = {}
    try:
        for bundle, data in zip(bundles, contents):
            decoded = decode_bundle(data, bundle.width)
            for index in indices:
                if bundle.first_entry <= index < bundle.first_entry + bundle.width:
                    entries[index] = decoded[index - bundle.first_entry]
        return build_proofs(note, entries, TileNodes(cp.size, tiles), include_entries=include_entries)
    except ProtocolError as exc:
        raise ProofUnavailable(f"the log served tiles or entries that do not match its signed root: {exc}") from None
