"""The auditor's checks of one whole log, on bytes already downloaded (no I/O here).

`audit_log(note, vkey, tiles, bundles)` runs, in order:

  1. every tile against the checkpoint's root (protocol.tiles.verify_tiles: each full
     tile hashes to its entry one level up, the partial tiles give the root);
  2. every entry bundle: strictly decoded, and every entry's leaf hash equal to the
     hash in the level-0 tile (a rewritten entry fails here);
  3. every entry decoded strictly (protocol.entries.decode_entry);
  4. the invariants entries must keep:
       - a withdrawal names only EARLIER entries of this log (a target at or after its
         own index is a violation; an earlier target that is not a submission is a
         warning: followers ignore it);
       - a feedback entry about this log names an earlier entry and quotes its leaf
         hash (feedback about other logs is counted; it cannot be checked here);
       - a key rotation is signed by the log's key current at that point (starting
         from the pinned vkey; a valid rotation makes the new key current);
       - an acknowledgement's cosignature verifies (its cosigner is this log); one
         about this log itself names an earlier tree this log had (its root);
         acknowledgements of other logs are counted and checked against those logs
         by node/audit/acks.py;
  5. the checkpoint's signature, by the pinned key or a key it rotated to in the
     entries just verified (the rotation chain is committed under the same root).

Each failure becomes a Violation; the audit goes on where it still makes sense (a
tile that fails means entries cannot be trusted, so stops the per-entry checks).
The counts for the report are gathered on the way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.acknowledgements import is_valid_acknowledgement
from protocol.entries import (
    Acknowledgement,
    Announcement,
    Feedback,
    Submission,
    Withdrawal,
    decode_entry,
    kind_name,
    verify_rotation,
)
from protocol.errors import ProtocolError
from protocol.merkle import leaf_hash
from protocol.note import Verifier, parse_note
from protocol.tiles import BundleId, TileId, TileNodes, decode_bundle, tile_hashes, tiles_for_size, verify_tiles


@dataclass(frozen=True)
class Violation:
    kind: str           # signature | tiles | bundle | entry | withdrawal | feedback | rotation | acknowledgement | consistency | unavailable | split-view
    message: str
    index: int | None = None

    def to_json(self) -> dict:
        out = {"kind": self.kind, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


@dataclass
class AuditResult:
    origin: str = ""
    size: int = 0
    root_hash: bytes = b""
    note: bytes = b""
    signed_by: str = ""
    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    signals: Counter = field(default_factory=Counter)
    withdrawn: set = field(default_factory=set)          # indices of submissions withdrawn
    submissions_by_day: Counter = field(default_factory=Counter)  # day number -> submissions (0 = undated)
    withdrawn_by_day: Counter = field(default_factory=Counter)    # day of the withdrawn submission
    external_feedback: Counter = field(default_factory=Counter)   # origin -> count
    acknowledgements: Counter = field(default_factory=Counter)    # acknowledged origin -> count
    verdicts: Counter = field(default_factory=Counter)
    rotations: list[str] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    tiles_verified: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    def violation(self, kind: str, message: str, index: int | None = None) -> None:
        self.violations.append(Violation(kind, message, index))

    def warning(self, kind: str, message: str, index: int | None = None) -> None:
        self.warnings.append(Violation(kind, message, index))

    @property
    def withdrawal_rate(self) -> float:
        submissions = self.kinds.get("submission", 0)
        return len(self.withdrawn) / submissions if submissions else 0.0


def audit_log(note: bytes, vkey: str, tiles: dict[TileId, bytes], bundles: dict[BundleId, bytes]) -> AuditResult:
    result = AuditResult(note=note)
    try:
        parsed = parse_note(note)
        cp = Checkpoint.parse(parsed.text)
    except ProtocolError as exc:
        result.violation("signature", f"the checkpoint is malformed: {exc}")
        return result
    result.origin, result.size, result.root_hash = cp.origin, cp.size, cp.root_hash

    # 1. Tiles against the root.
    missing = [t for t in tiles_for_size(cp.size) if t not in tiles]
    if missing:
        result.violation("unavailable", f"{len(missing)} tile(s) of the tree are missing, e.g. {missing[0].path()}")
    else:
        try:
            verify_tiles(cp.size, cp.root_hash, tiles)
            result.tiles_verified = True
        except ProtocolError as exc:
            result.violation("tiles", f"tiles do not match the checkpoint's root: {exc}")

    # 2 + 3. Bundles against the level-0 tiles, entries decoded.
    decoded = []
    if result.tiles_verified:
        for bundle in sorted(bundles, key=lambda b: b.index):
            first = bundle.index * 256
            try:
                entries = decode_bundle(bundles[bundle], bundle.width)
            except ProtocolError as exc:
                result.violation("bundle", f"entry bundle {bundle.path()} is malformed: {exc}", first)
                break  # later indices cannot be placed: stop the per-entry checks
            hashes = tile_hashes(tiles[TileId(0, bundle.index, bundle.width)], bundle.width)
            for i, (entry, h) in enumerate(zip(entries, hashes)):
                if leaf_hash(entry) != h:
                    result.violation("bundle", f"entry {first + i} does not match its leaf hash in the tiles "
                                               "(the entry was rewritten after the tree was built)", first + i)
            result.entries.extend(entries)
        if len(result.entries) != cp.size and not any(v.kind == "bundle" for v in result.violations):
            result.violation("unavailable", f"downloaded {len(result.entries)} entries, the checkpoint says {cp.size}")
        for index, data in enumerate(result.entries if len(result.entries) == cp.size else ()):
            try:
                entry = decode_entry(data)
            except ProtocolError as exc:
                result.violation("entry", f"entry {index} does not decode: {exc}", index)
                entry = None
            decoded.append(entry)

    # 4. Invariants; the rotation chain gives the keys that may sign checkpoints.
    current = Verifier.from_vkey(vkey)
    chain = [current]
    hashes_by_index = [leaf_hash(e) for e in result.entries]
    days: dict[int, int] = {}
    for index, entry in enumerate(decoded):
        if entry is None:
            continue
        result.kinds[kind_name(entry)] += 1
        if isinstance(entry, Submission):
            result.signals[entry.signal] += 1
            result.submissions_by_day[entry.day] += 1
            days[index] = entry.day
        elif isinstance(entry, Withdrawal):
            for target in entry.targets:
                if target >= index:
                    result.violation("withdrawal", f"withdrawal at index {index} names entry {target}, which is "
                                                   "not earlier in the log", index)
                elif not isinstance(decoded[target], Submission):
                    result.warning("withdrawal", f"withdrawal at index {index} names entry {target}, which is "
                                                 "not a submission (followers ignore it)", index)
                elif target not in result.withdrawn:
                    result.withdrawn.add(target)
                    result.withdrawn_by_day[days.get(target, 0)] += 1
        elif isinstance(entry, Feedback):
            result.verdicts[entry.verdict] += 1
            if entry.origin == cp.origin:
                if entry.index >= index:
                    result.violation("feedback", f"feedback at index {index} is about entry {entry.index} of this "
                                                 "log, which is not earlier", index)
                elif hashes_by_index[entry.index] != entry.leaf_hash:
                    result.violation("feedback", f"feedback at index {index} quotes a leaf hash that is not the one "
                                                 f"of entry {entry.index}", index)
            else:
                result.external_feedback[entry.origin] += 1
        elif isinstance(entry, Acknowledgement):
            result.acknowledgements[entry.origin] += 1
            if not is_valid_acknowledgement(entry, cp.origin):
                result.violation("acknowledgement", f"acknowledgement at index {index} (of {entry.origin} size "
                                                    f"{entry.size}) has a cosignature that does not verify", index)
            elif entry.origin == cp.origin and (entry.size > index or TileNodes(cp.size, tiles).range_hash(
                    0, entry.size) != entry.root_hash):
                result.violation("acknowledgement", f"acknowledgement at index {index} names a tree of {entry.size} "
                                                    "entries of this log that it did not have there", index)
        elif isinstance(entry, Announcement) and entry.new_vkey is not None:
            if verify_rotation(entry, current):
                current = Verifier.from_vkey(entry.new_vkey)
                chain.append(current)
                result.rotations.append(entry.new_vkey)
            else:
                result.violation("rotation", f"key rotation at index {index} to {entry.new_vkey} is not signed "
                                             f"by the log's current key {current.vkey}", index)

    # 5. The signature, by a key of the (verified) rotation chain.
    try:
        _, opened = open_checkpoint(note, chain, origin=cp.origin)
        result.signed_by = next(v.vkey for v in opened.verified_by if v.name == cp.origin)
    except ProtocolError as exc:
        result.violation("signature", f"the checkpoint is not validly signed by {vkey}"
                                      + (" or a key it rotated to" if len(chain) > 1 else "") + f": {exc}")
    return result
