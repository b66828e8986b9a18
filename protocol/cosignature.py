"""C2SP tlog-cosignature/v1 with Ed25519 (signature type 0x04): witness cosignatures.

A cosignature is one extra signature line on a checkpoint note:

    — <cosigner name> base64(key ID || uint64 big-endian timestamp || 64-byte Ed25519 signature)

with key ID = SHA-256(name || 0x0A || 0x04 || public key)[:4], over the message

    "cosignature/v1\\n" "time <timestamp>\\n" <checkpoint note text>

The timestamp is POSIX seconds, 0 <= t <= 2**63-1. Callers pass it in: this
module never reads a clock. The byte rules are in spec/parts/notes.md.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidSignature

from protocol.checkpoint import Checkpoint
from protocol.errors import CosignatureError, NoteError, UsageError
from protocol.note import (
    KEY_FILE_TYPE_COSIGNATURE,
    KEY_ID_SIZE,
    SIGNATURE_SIZE,
    SIGNATURE_TYPE_COSIGNATURE_V1,
    Ed25519SignerBase,
    Ed25519VerifierBase,
    Note,
    NoteSignature,
    parse_signature_text,
)

MAX_TIMESTAMP = 2**63 - 1
TIMESTAMP_SIZE = 8
PAYLOAD_SIZE = TIMESTAMP_SIZE + SIGNATURE_SIZE  # bytes after the key ID


def cosigned_message(checkpoint_text: bytes, timestamp: int) -> bytes:
    """The exact bytes an Ed25519 v1 cosignature signs."""
    return b"cosignature/v1\ntime %d\n" % timestamp + checkpoint_text


def _check_timestamp(timestamp: object) -> int:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise UsageError(f"a cosignature timestamp must be an int, not {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise UsageError(f"cosignature timestamp {timestamp} is outside 0..2**63-1")
    return timestamp


def _split_payload(name: str, payload: bytes) -> tuple[int, bytes]:
    """The timestamp and the Ed25519 signature in the bytes after the key ID of
    a cosignature line by `name`. Raises CosignatureError when they are not
    shaped like an Ed25519 v1 cosignature."""
    if len(payload) != PAYLOAD_SIZE:
        raise CosignatureError(
            f"signature by {name!r} is not an Ed25519 cosignature "
            f"({KEY_ID_SIZE + len(payload)} bytes, expected {KEY_ID_SIZE + PAYLOAD_SIZE}: "
            "key ID, timestamp, signature)"
        )
    (timestamp,) = struct.unpack(">Q", payload[:TIMESTAMP_SIZE])
    if timestamp > MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature by {name!r} has timestamp {timestamp} >= 2**63")
    return timestamp, payload[TIMESTAMP_SIZE:]


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The timestamp a cosignature line claims, WITHOUT verifying it (for
    display and sorting only). Raises CosignatureError if it is not shaped
    like an Ed25519 v1 cosignature."""
    timestamp, _ = _split_payload(signature.name, signature.signature)
    return timestamp


class CosignatureVerifier(Ed25519VerifierBase):
    """A witness's public key (vkey signature type 0x04).

    It can also be passed to `open_note` / `open_checkpoint` among the known
    keys: then a bad cosignature from this witness rejects the note."""

    signature_type = SIGNATURE_TYPE_COSIGNATURE_V1
    name_label = "cosigner name"

    __slots__ = ()

    def check_payload(self, text: bytes, payload: bytes) -> int:
        """Verify the bytes after the key ID of a cosignature line over a note
        text; returns the timestamp. Raises CosignatureError."""
        timestamp, signature = _split_payload(self.name, payload)
        try:
            self._key.verify(signature, cosigned_message(text, timestamp))
        except InvalidSignature:
            raise CosignatureError(
                f"cosignature by {self.name!r} does not verify: the checkpoint or its "
                "timestamp was altered, or another key signed it"
            ) from None
        return timestamp

    def verify_note_signature(self, text: bytes, signature: bytes) -> bool:
        """The `open_note` interface: whether this cosignature verifies."""
        try:
            self.check_payload(text, signature)
        except CosignatureError:
            return False
        return True

    def verify(self, note: Note) -> int:
        """The timestamp of this witness's cosignature on `note` (parsed or
        opened). Every line with this key's name and key ID must verify; raises
        CosignatureError if there is none or one fails."""
        text = note.text.encode("utf-8")
        timestamps = [
            self.check_payload(text, sig.signature)
            for sig in note.signatures
            if sig.name == self.name and sig.key_id == self.key_id
        ]
        if not timestamps:
            raise CosignatureError(f"note has no cosignature from witness {self.vkey}")
        return max(timestamps)

    def verify_line(self, checkpoint_text: str, line: str) -> int:
        """Verify one cosignature line (with or without its final newline) for a
        checkpoint text; returns the timestamp. Raises CosignatureError."""
        if not isinstance(line, str) or not isinstance(checkpoint_text, str):
            raise UsageError("verify_line takes the checkpoint text and the line as str")
        try:
            text = checkpoint_text.encode("utf-8")
        except UnicodeEncodeError:
            raise CosignatureError("checkpoint is not valid UTF-8 text") from None
        try:
            sig = parse_signature_text(line)
        except NoteError as exc:
            raise CosignatureError(f"malformed cosignature line: {exc}") from None
        if sig.name != self.name or sig.key_id != self.key_id:
            raise CosignatureError(
                f"line is signed by {sig.name}+{sig.key_id.hex()}, not by witness {self.vkey}"
            )
        return self.check_payload(text, sig.signature)


class CosignatureSigner(Ed25519SignerBase):
    """A witness key: signs tlog-cosignature/v1 lines for checkpoints."""

    signature_type = SIGNATURE_TYPE_COSIGNATURE_V1
    key_file_type = KEY_FILE_TYPE_COSIGNATURE
    verifier_class = CosignatureVerifier
    name_label = "cosigner name"

    __slots__ = ()

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """One note signature line (no final newline) cosigning the checkpoint.

        `checkpoint_text` is the whole note text, extension lines included; it
        must parse as a checkpoint (raises CheckpointError otherwise)."""
        _check_timestamp(timestamp)
        Checkpoint.parse(checkpoint_text)  # a witness only ever vouches for checkpoints
        message = cosigned_message(checkpoint_text.encode("utf-8"), timestamp)
        payload = struct.pack(">Q", timestamp) + self._key.sign(message)
        return NoteSignature(self.name, self.key_id, payload).to_line()
