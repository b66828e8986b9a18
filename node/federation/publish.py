"""Publishing the federation list as an append-only log from a node's data directory
(`ncii-node federation publish`; spec/parts/joining.md §3.3).

On disk, DIR/federation-log/ is a static C2SP tlog-tiles log (node/store/tiles.py
TileStore: a tile once written never changes) served under /federation/ by
node/web/federation_routes.py:

    checkpoint              the list log's checkpoint, signed by the list key(s)
    tile/<L>/<N>[.p/<W>]    hash tiles
    tile/entries/<N>[...]   entry bundles: one version entry each (listlog.py)
    version/<serial>        each version's signed list, byte for byte

and DIR/federation-list (GET /federation/list) holds the newest signed list, as
before the log existed, for followers of a plain list.

Order of writes, so that a crash never publishes a checkpoint without its tiles nor
signs one inconsistent with an earlier one: the entries are read back from the
published bundles and checked against the published checkpoint's root; the new tiles
and bundles are written (durably), then the version file, then the checkpoint, then the
plain list. Tiles an interrupted publication left beyond the published checkpoint were
never served, and are replaced. Publishing the newest version again with another list key adds that key's
signature to the checkpoint (k of n); anything else must have a higher serial.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from node.datadir import write_atomic
from node.federation import PUBLISHED_LIST
from node.federation.listlog import (
    MAX_VERSIONS,
    check_history,
    log_files,
    parse_entry,
    sign_list_checkpoint,
    version_entry,
)
from node.federation.members import ListError, MemberList, parse_text
from node.follow.forks import LeafTree
from node.store.tiles import TileConflict, TileStore
from protocol.checkpoint import Checkpoint
from protocol.merkle import leaf_hash, root_from_nodes
from protocol.errors import ProtocolError
from protocol.note import Signer, add_signatures, parse_note
from protocol.tiles import bundles_for_size, decode_bundle

LOG_DIR = "federation-log"
VERSION_DIR = "version"


class PublishError(ValueError):
    """Nothing was published; the message says why."""


def log_store(root: Path) -> TileStore:
    return TileStore(Path(root) / LOG_DIR, Path(root) / (LOG_DIR + ".tmp"))


def published_checkpoint(store: TileStore) -> bytes | None:
    return store.read("checkpoint")


def published_entries(store: TileStore) -> list[bytes]:
    """The entries of the published log, checked against its checkpoint's root."""
    note = published_checkpoint(store)
    if note is None:
        return []
    cp = Checkpoint.parse(parse_note(note).text)
    entries: list[bytes] = []
    for bundle in bundles_for_size(cp.size):
        data = store.read(bundle.path())
        if data is None:
            raise PublishError(f"the published list log lacks {bundle.path()}; nothing published")
        entries += decode_bundle(data, bundle.width)
    if root_from_nodes(cp.size, LeafTree([leaf_hash(e) for e in entries])) != cp.root_hash:
        raise PublishError("the published list log's bundles do not give its checkpoint's root; nothing published")
    return entries


def _drop_unpublished(store: TileStore, files: list[tuple[str, bytes]], published: set[str]) -> None:
    """Remove what an interrupted publication left beyond the published tree: files
    no checkpoint covers were never served (node/web/federation_routes.py serves only
    tiles of the published size), so another version may take their place."""
    for path, data in files:
        if path not in published:
            found = store.read(path)
            if found is not None and found != data:
                (store.root / path).unlink()


def publish(root: Path, data: bytes, signers: list[Signer], cosign=None) -> tuple[MemberList, int, bool]:
    """Append the signed list `data` to DIR's list log and sign its checkpoint with
    `signers`; returns (the list, the log's size, whether it was a new version).
    `cosign(note, previous_size, store)`, if given, returns the note with witnesses'
    cosignatures added (`cosign_with`), before it is published."""
    member_list = parse_text(parse_note(data).text)
    store = log_store(root)
    with open(Path(root) / (LOG_DIR + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one publisher at a time
        store.prepare()
        entries = published_entries(store)
        versions = [parse_entry(e, i) for i, e in enumerate(entries)]
        new = version_entry(member_list)
        old_note = published_checkpoint(store)
        if versions and versions[-1] == new:  # the same version again: one more checkpoint signature
            lines = [s.to_line() for s in parse_note(
                sign_list_checkpoint(member_list.federation, len(entries),
                                     Checkpoint.parse(parse_note(old_note).text).root_hash, signers)).signatures]
            checkpoint, added, previous = add_signatures(old_note, lines), False, len(entries)
        else:
            try:
                check_history(versions + [new], versions[0].federation if versions else None)
            except ListError as exc:
                raise PublishError(f"{exc}; nothing published") from None
            if len(entries) >= MAX_VERSIONS:
                raise PublishError(f"the list log holds {MAX_VERSIONS} versions, its bound; nothing published")
            published = {path for path, _ in log_files(entries)} if entries else set()
            entries.append(new.to_bytes())
            files = log_files(entries)
            _drop_unpublished(store, files, published)
            try:
                store.write_all(files)
            except TileConflict as exc:  # only a published file can conflict, and those are derived alike
                raise PublishError(f"{exc}: the list log's files disagree with its entries; nothing published") \
                    from None
            previous = len(entries) - 1
            tree = LeafTree([leaf_hash(e) for e in entries])
            checkpoint = sign_list_checkpoint(member_list.federation, len(entries),
                                              root_from_nodes(len(entries), tree), signers)
            added = True
        if cosign is not None:
            checkpoint = cosign(checkpoint, previous, store)
        (store.root / VERSION_DIR).mkdir(exist_ok=True)
        write_atomic(store.root / VERSION_DIR / str(member_list.serial), data)
        write_atomic(store.root / "checkpoint", checkpoint)
        write_atomic(Path(root) / PUBLISHED_LIST, data)
    return member_list, len(entries), added


async def cosign_with(witnesses, note: bytes, previous_size: int, store: TileStore,
                      timeout: float = 10.0) -> tuple[bytes, list[str]]:
    """The checkpoint `note` with the cosignature of each witness (node/store/witness.py
    LogWitness: vkey, url) that gives one (C2SP tlog-witness add-checkpoint, the
    consistency proof from `previous_size` -- or from the size a 409 says the witness
    holds -- read from the log's tiles), and one line per witness saying how it went.
    A witness that refuses or is down is reported, never fatal: publishing the same
    version again asks it again."""
    import aiohttp

    from node.witness.addcheckpoint import SIZE_CONTENT_TYPE, encode_request
    from node.witness.submit import WitnessFailure, cosignature_lines, post_add_checkpoint
    from protocol.cosignature import CosignatureVerifier
    from protocol.merkle import consistency_proof
    from protocol.tiles import TileNodes

    size = Checkpoint.parse(parse_note(note).text).size
    text, report = parse_note(note).text, []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for witness in witnesses:
            old = previous_size
            for _attempt in range(2):
                proof = consistency_proof(old, size, TileNodes(size, store)) if 0 < old < size else []
                try:
                    status, reply, content_type = await post_add_checkpoint(session, witness.url,
                                                                            encode_request(old, proof, note))
                    if status == 200:
                        note = add_signatures(note, cosignature_lines(reply, text, CosignatureVerifier.from_vkey(
                            witness.vkey)))
                        report.append(f"cosigned by the witness {witness.name or witness.vkey}")
                        break
                    held = reply.decode("ascii", "replace")
                    if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE) and held[:-1].isdigit() \
                            and int(held) != old and int(held) <= size:
                        old = int(held)  # the size the witness holds: ask again from there
                        continue
                    report.append(f"NOT cosigned by the witness {witness.name or witness.vkey}: HTTP {status}: "
                                  f"{held.strip()[:200]}")
                except (WitnessFailure, aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                    report.append(f"NOT cosigned by the witness {witness.name or witness.vkey}: {exc}")
                break
    return note, report
