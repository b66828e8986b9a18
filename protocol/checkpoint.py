"""C2SP tlog-checkpoint: the signed tree head of a log (c2sp.org/tlog-checkpoint).

A checkpoint is the text of a signed note:

    <origin>\\n<tree size in decimal>\\n<base64 of the 32-byte root hash>\\n[<extension line>\\n ...]

Invariant: a `Checkpoint` value always holds a valid checkpoint (checked on
construction), and `Checkpoint.parse(cp.to_text()) == cp`. Our logs never write
extension lines; parsing keeps them so a foreign checkpoint can be cosigned and
printed back byte for byte. The byte rules are in spec/parts/notes.md.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Iterable

from protocol.errors import CheckpointError, UsageError
from protocol.note import (
    SIGNATURE_TYPE_ED25519,
    Note,
    NoteVerifier,
    Signer,
    decode_base64_strict,
    open_note,
    sign_note,
)

ROOT_HASH_SIZE = 32
MAX_TREE_SIZE = 2**63 - 1  # sizes are uint64 on the wire elsewhere; we keep them below 2**63

_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")  # ASCII digits only, no leading zeroes
_CONTROL = re.compile(r"[\x00-\x1f]")


def _check_line(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CheckpointError(f"checkpoint {what} must be text, not {type(value).__name__}")
    if not value:
        raise CheckpointError(f"checkpoint {what} is empty")
    match = _CONTROL.search(value)
    if match:
        raise CheckpointError(
            f"checkpoint {what} contains control character 0x{ord(match.group()):02x}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"checkpoint {what} is not valid UTF-8 text") from None
    return value


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError(f"checkpoint tree size must be an int, not {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is outside 0..2**63-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != ROOT_HASH_SIZE:
            raise CheckpointError("checkpoint root hash must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("checkpoint extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line(line, "extension line")

    def to_text(self) -> str:
        """The note text: origin, size, root hash and any extension lines, each
        ending in a newline."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> "Checkpoint":
        """Parse a checkpoint note text strictly; raises CheckpointError."""
        if not isinstance(text, str):
            raise UsageError(f"checkpoint text must be str, not {type(text).__name__}")
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint has {len(lines)} line(s); it needs origin, tree size and root hash"
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise CheckpointError("checkpoint origin line is empty")
        if not _TREE_SIZE.fullmatch(size_text):
            raise CheckpointError(
                f"checkpoint tree size {size_text[:40]!r} is not a decimal number without leading zeroes"
            )
        # Bound the digits before int() so a huge line costs nothing.
        if len(size_text) > 19 or int(size_text) > MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {size_text[:40]} is 2**63 or more")
        root_hash = decode_base64_strict(root_text)
        if root_hash is None:
            raise CheckpointError("checkpoint root hash is not canonical padded base64")
        if len(root_hash) != ROOT_HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash is {len(root_hash)} bytes, expected 32")
        for number, line in enumerate(extensions, start=4):
            if not line:
                raise CheckpointError(f"checkpoint line {number} (an extension line) is empty")
        return cls(origin, int(size_text), root_hash, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> bytes:
    """The signed note of a checkpoint. The key name must be the origin (as
    c2sp.org/tlog-checkpoint recommends, and as `open_checkpoint` requires)."""
    if cp.extensions:
        raise UsageError("our logs never write checkpoint extension lines")
    if signer.name != cp.origin:
        raise UsageError(
            f"log key name {signer.name!r} differs from the checkpoint origin {cp.origin!r}"
        )
    return sign_note(cp.to_text(), [signer])


def open_checkpoint(
    data: bytes,
    verifiers: Iterable[NoteVerifier],
    origin: str | None = None,
    *,
    key_name_is_origin: bool = True,
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint and parse it.

    The note must verify against `verifiers` (see `open_note`). If `origin` is
    given, the checkpoint must be for that log. Then at least one verified
    signature must come from a log key (signature type 0x01, never a witness's
    cosignature): a witness alone cannot vouch for a log.

    With `key_name_is_origin` (the default, our choice for our own logs) that
    key's name must also equal the checkpoint's origin. C2SP tlog-checkpoint only
    says it SHOULD, so for logs we did not write (witnessed, followed) the caller
    may pass `key_name_is_origin=False` together with `origin`: the caller's
    configuration, which trusts exactly these keys for exactly that origin, binds
    key and origin instead of the name. Raises NoteError or CheckpointError."""
    if not key_name_is_origin and origin is None:
        raise UsageError("open_checkpoint: key_name_is_origin=False needs the origin the keys are trusted for")
    note = open_note(data, verifiers)
    cp = Checkpoint.parse(note.text)
    if origin is not None and cp.origin != origin:
        raise CheckpointError(f"checkpoint is for log {cp.origin!r}, expected {origin!r}")
    log_keys = [v for v in note.verified_by if getattr(v, "signature_type", None) == SIGNATURE_TYPE_ED25519]
    if key_name_is_origin:
        log_keys = [v for v in log_keys if v.name == cp.origin]
    if not log_keys:
        raise CheckpointError(
            f"checkpoint for {cp.origin!r} is not signed by a known key of that log "
            f"(verified only by {', '.join(v.name for v in note.verified_by)})"
        )
    return cp, note
