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

Witnesses: `publish` asks each once (`cosign_with`, through `ask_witness`); the running
node asks those that did not again (cosigning.py), adding their lines with
`add_cosignatures` under the same lock (`publisher_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from node.store.witness import LogWitness

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


@contextlib.contextmanager
def publisher_lock(root: Path, wait: bool = True):
    """One writer of DIR's list log at a time: `federation publish`, and the running
    node adding cosignatures (cosigning.py). Yields False, without the lock, when
    `wait` is False and another writer holds it."""
    with open(Path(root) / (LOG_DIR + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def add_cosignatures(root: Path, text: str, lines: list[str]) -> bytes | None:
    """Add witnesses' cosignature lines (each verified over `text` by the caller) to
    DIR's served list checkpoint, if its text is still `text`; returns the checkpoint
    now served, or None (another checkpoint is served, or a publisher is at work: the
    caller looks again). The file is replaced atomically by the same body with more
    signature lines (a witness's newer line replaces its older one): a reader never
    sees a torn file or a checkpoint that goes backwards."""
    store = log_store(root)
    with publisher_lock(root, wait=False) as held:
        if not held:
            return None
        current = published_checkpoint(store)
        if current is None or parse_note(current).text != text:
            return None
        updated = add_signatures(current, lines)
        if updated != current:
            write_atomic(store.root / "checkpoint", updated)
        return updated


def publish(root: Path, data: bytes, signers: list[Signer], cosign=None) -> tuple[MemberList, int, bool]:
    """Append the signed list `data` to DIR's list log and sign its checkpoint with
    `signers`; returns (the list, the log's size, whether it was a new version).
    `cosign(note, previous_size, store)`, if given, returns the note with witnesses'
    cosignatures added (`cosign_with`), before it is published."""
    member_list = parse_text(parse_note(data).text)
    store = log_store(root)
    with publisher_lock(root):
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


@dataclass(frozen=True)
class WitnessAnswer:
    """How asking one witness to cosign a list checkpoint went."""

    witness: LogWitness
    lines: tuple[str, ...] = ()  # its cosignature lines, each verified under its key (empty: not cosigned)
    problem: str = ""            # why not
    down: bool = False           # it could not be reached at all (node/witness/submit.py `unreachable`)

    @property
    def who(self) -> str:
        return self.witness.name or self.witness.vkey

    def describe(self) -> str:
        return f"cosigned by the witness {self.who}" if self.lines else \
            f"NOT cosigned by the witness {self.who}: {self.problem}"


async def ask_witness(session, witness: LogWitness, note: bytes, previous_size: int,
                      store: TileStore) -> WitnessAnswer:
    """Ask one witness to cosign the checkpoint `note` (C2SP tlog-witness add-checkpoint,
    the consistency proof from `previous_size` -- or from the size a 409 says the
    witness holds -- read from the log's tiles). Only lines that verify under the
    witness's key over this very checkpoint come back (node/witness/submit.py
    `cosignature_lines`); anything else is a problem, never an exception."""
    import aiohttp

    from node.witness.addcheckpoint import SIZE_CONTENT_TYPE, encode_request
    from node.witness.submit import WitnessFailure, cosignature_lines, post_add_checkpoint, unreachable
    from protocol.cosignature import CosignatureVerifier
    from protocol.merkle import consistency_proof
    from protocol.tiles import TileNodes

    text = parse_note(note).text
    size = Checkpoint.parse(text).size
    old = previous_size
    try:
        verifier = CosignatureVerifier.from_vkey(witness.vkey)
        for _attempt in range(2):
            proof = consistency_proof(old, size, TileNodes(size, store)) if 0 < old < size else []
            try:
                status, reply, content_type = await post_add_checkpoint(session, witness.url,
                                                                        encode_request(old, proof, note))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise unreachable(exc) from None
            if status == 200:
                return WitnessAnswer(witness, tuple(cosignature_lines(reply, text, verifier)))
            held = reply.decode("ascii", "replace")
            if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE) and held[:-1].isdigit() \
                    and len(held) < 22 and int(held) != old and int(held) <= size:
                old = int(held)  # the size the witness holds: ask again from there
                continue
            shown = "".join(c if c.isprintable() else "?" for c in held.strip()[:200])  # no line of its own in our log
            return WitnessAnswer(witness, problem=f"HTTP {status}: {shown}", down=status in (502, 504))
        return WitnessAnswer(witness, problem=f"HTTP 409: it holds another size than {old} again")
    except WitnessFailure as exc:
        return WitnessAnswer(witness, problem=str(exc), down=exc.down)
    except ProtocolError as exc:
        return WitnessAnswer(witness, problem=str(exc))


async def cosign_with(witnesses, note: bytes, previous_size: int, store: TileStore,
                      timeout: float = 10.0) -> tuple[bytes, list[str]]:
    """The checkpoint `note` with the cosignature of each witness (node/store/witness.py
    LogWitness: vkey, url) that gives one (`ask_witness`), and one line per witness
    saying how it went. A witness that refuses or is down is reported, never fatal: the
    running node asks it again in the background (cosigning.py), and so does
    publishing the same version again."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        answers = [await ask_witness(session, witness, note, previous_size, store) for witness in witnesses]
    note = add_signatures(note, [line for answer in answers for line in answer.lines])
    return note, [answer.describe() for answer in answers]
