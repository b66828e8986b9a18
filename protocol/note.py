"""C2SP signed notes with Ed25519 keys (c2sp.org/signed-note).

A signed note is a text ending in a newline, a blank line, and one or more
signature lines `— <key name> base64(key ID || signature)`. This module signs
notes, parses them strictly, and opens them against a set of known verifier keys.
It also reads and writes the key encodings: verifier keys (`vkey` strings), Go's
`PRIVATE+KEY+...` signer keys and our own private-key file.

Invariants kept here:
- `parse_note` and `open_note` accept exactly the byte strings that `Note.to_bytes`
  can produce: valid UTF-8, no ASCII control character but newline, canonical
  base64. So a note has one encoding, and a changed byte is never silently the
  same note.
- Every rejection of input raises `NoteError` or `KeyFormatError` (both
  `ProtocolError`); misuse by our own code raises `UsageError`.

The byte-exact rules are written out in spec/parts/notes.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import KeyFormatError, NoteError, UsageError

# Signature type bytes of c2sp.org/signed-note ("Signature types").
SIGNATURE_TYPE_ED25519 = 0x01
SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04
#: A node's read-request key (RFC 9421 signatures of read requests,
#: spec/parts/readaccess.md) is no note key: signed-note reserves 0xff for "signature
#: types without an identifier byte assigned", followed by a longer identifier. Its
#: vkey and key ID therefore differ from those of a log key with the same seed and
#: name, and a parser expecting one kind refuses the other.
REQUEST_KEY_TYPE = b"\xff" + b"ncii-node/request-key"

# The spec says verifiers MUST accept at least 16 signatures; we accept exactly
# that many so that a note cannot make us verify an unbounded number of them.
MAX_SIGNATURES = 16

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4

EM_DASH_PREFIX = "\u2014 "  # em dash U+2014 and a space open every signature line
_EM_DASH_PREFIX_BYTES = EM_DASH_PREFIX.encode()

# Unicode White_Space characters (the set Go's unicode.IsSpace reports), which a
# key name must not contain. Written out so the rule does not depend on the
# Unicode version of the Python that runs it.
UNICODE_SPACES = frozenset(
    "\t\n\v\f\r \u0085\u00a0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# ASCII control characters other than newline: forbidden anywhere in a note.
_FORBIDDEN_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_FORBIDDEN_CONTROL_STR = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


# --------------------------------------------------------------------------
# Small helpers shared with checkpoint.py and cosignature.py


def check_key_name(name: object, what: str = "key name") -> str:
    """Return `name` if it is a valid key name, else raise KeyFormatError.

    A key name is non-empty UTF-8 without Unicode spaces, plus signs or ASCII
    control characters (the last can never appear in a note anyway)."""
    if not isinstance(name, str):
        raise KeyFormatError(f"{what} must be text, not {type(name).__name__}")
    if not name:
        raise KeyFormatError(f"{what} is empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFormatError(f"{what} {name!r} is not valid UTF-8 text") from None
    if "+" in name:
        raise KeyFormatError(f"{what} {name!r} contains '+', which key names may not hold")
    bad = next((c for c in name if c in UNICODE_SPACES), None)
    if bad is not None:
        raise KeyFormatError(f"{what} {name!r} contains a space character (U+{ord(bad):04X})")
    if _FORBIDDEN_CONTROL_STR.search(name):
        raise KeyFormatError(f"{what} {name!r} contains a control character")
    return name


def is_valid_key_name(name: str) -> bool:
    try:
        check_key_name(name)
    except KeyFormatError:
        return False
    return True


def decode_base64_strict(text: str | bytes) -> bytes | None:
    """Decode standard, padded base64 (RFC 4648 section 4) in its one canonical
    form, or return None. Go's decoder accepts non-zero unused bits in the last
    character; we do not, so that each byte string has exactly one encoding."""
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not text or len(text) % 4:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw) != text:
        return None
    return raw


SignatureType = int | bytes  # one type byte, or 0xff followed by an identifier


def _type_bytes(signature_type: SignatureType) -> bytes:
    return bytes([signature_type]) if isinstance(signature_type, int) else bytes(signature_type)


def key_id_for(name: str, signature_type: SignatureType, public_key: bytes) -> bytes:
    """key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + _type_bytes(signature_type) + public_key
    ).digest()
    return digest[:KEY_ID_SIZE]


def encode_vkey(name: str, signature_type: SignatureType, public_key: bytes) -> str:
    """The verifier key string `name+hhhhhhhh+base64(type || public key)`."""
    key_id = key_id_for(name, signature_type, public_key)
    key_data = base64.b64encode(_type_bytes(signature_type) + public_key).decode("ascii")
    return f"{name}+{key_id.hex()}+{key_data}"


def _decode_key_fields(what: str, name: str, key_id_hex: str, key_data_b64: str) -> bytes:
    """Check the name, key ID and key data fields that verifier keys and Go
    signer keys share (`<name>+<8 hex digits>+<base64>`); returns the key data
    (type byte first). `what` names the string in messages."""
    check_key_name(name, f"the name in the {what}")
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise KeyFormatError(
            f"{what} for {name!r}: key ID {key_id_hex!r} is not 8 lowercase hex digits"
        )
    key_data = decode_base64_strict(key_data_b64)
    if key_data is None:
        raise KeyFormatError(f"{what} for {name!r}: key data is not canonical padded base64")
    return key_data


def decode_vkey(vkey: object, signature_type: SignatureType) -> tuple[str, bytes]:
    """Parse `name+hhhhhhhh+base64(type || 32-byte Ed25519 public key)`.

    Returns (name, public key). Raises KeyFormatError when the string is
    malformed, of another signature type, or its key ID does not match."""
    if not isinstance(vkey, str):
        raise KeyFormatError(f"a verifier key must be text, not {type(vkey).__name__}")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError(
            f"verifier key {vkey!r} is not of the form <name>+<8 hex digits>+<base64 key>"
        )
    name, key_id_hex, key_data_b64 = parts
    key_data = _decode_key_fields("verifier key", name, key_id_hex, key_data_b64)
    wanted = _type_bytes(signature_type)
    if not key_data.startswith(wanted):
        raise KeyFormatError(
            f"the key {name!r} given is {key_kind(key_data)}, not {key_kind(wanted)}"
        )
    public_key = key_data[len(wanted):]
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise KeyFormatError(
            f"verifier key for {name!r}: Ed25519 public key has {len(public_key)} bytes, expected 32"
        )
    if key_id_for(name, signature_type, public_key).hex() != key_id_hex:
        raise KeyFormatError(
            f"verifier key for {name!r}: key ID {key_id_hex} does not match the name and key "
            "(the string was altered or copied wrongly)"
        )
    return name, public_key


def key_kind(key_data: bytes) -> str:
    """What kind of key a vkey's key data (type bytes first) holds, in words: error
    messages say what was given and what was expected."""
    if key_data.startswith(REQUEST_KEY_TYPE):
        return "a read-request key (type 0xff ncii-node/request-key: it signs requests to read a log)"
    if key_data[:1] == bytes([SIGNATURE_TYPE_ED25519]):
        return "a log verifier key (type 0x01: it checks a log's signed checkpoints)"
    if key_data[:1] == bytes([SIGNATURE_TYPE_COSIGNATURE_V1]):
        return "a witness cosignature key (type 0x04: it checks a witness's cosignatures)"
    return f"a key of signature type 0x{key_data[0]:02x}" if key_data else "an empty key"


def load_public_key(public_key: bytes) -> Ed25519PublicKey:
    if not isinstance(public_key, (bytes, bytearray)) or len(public_key) != PUBLIC_KEY_SIZE:
        raise KeyFormatError("an Ed25519 public key must be 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(public_key))
    except ValueError as exc:  # cryptography rejects some encodings outright
        raise KeyFormatError(f"not a usable Ed25519 public key: {exc}") from None


def load_seed(seed: object) -> Ed25519PrivateKey:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
        raise KeyFormatError("an Ed25519 private key seed must be 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(seed))


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --------------------------------------------------------------------------
# Private-key file (our format; see spec/parts/notes.md "Private-key file")

KEY_FILE_HEADER = "ncii-node private key v1"
KEY_FILE_TYPE_NOTE = "ed25519-note"
KEY_FILE_TYPE_COSIGNATURE = "ed25519-cosignature"
_KEY_FILE_MAX_SIZE = 4096
_KEY_FILE_TYPES = {
    KEY_FILE_TYPE_NOTE: SIGNATURE_TYPE_ED25519,
    KEY_FILE_TYPE_COSIGNATURE: SIGNATURE_TYPE_COSIGNATURE_V1,
}


def encode_key_file(file_type: str, name: str, seed: bytes, vkey: str) -> bytes:
    seed_b64 = base64.b64encode(seed).decode("ascii")
    return (
        f"{KEY_FILE_HEADER}\ntype {file_type}\nname {name}\nseed {seed_b64}\nvkey {vkey}\n"
    ).encode("utf-8")


def decode_key_file(data: object, file_type: str) -> tuple[str, bytes, str]:
    """Parse a private-key file of the given type; returns (name, seed, vkey line).

    The caller derives the verifier key from the seed and checks it equals the
    `vkey` line, so a file whose parts do not belong together is refused."""
    if not isinstance(data, (bytes, bytearray)):
        raise KeyFormatError(f"a key file must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > _KEY_FILE_MAX_SIZE:
        raise KeyFormatError(f"key file is {len(data)} bytes; a key file is far smaller")
    if not data.startswith(KEY_FILE_HEADER.encode() + b"\n"):
        raise KeyFormatError(
            f"not an ncii-node private key file (the first line must be {KEY_FILE_HEADER!r})"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyFormatError("key file is not valid UTF-8", offset=exc.start) from None
    match = _FORBIDDEN_CONTROL_STR.search(text)
    if match:
        raise KeyFormatError(
            "key file contains a control character (Windows line ends are not accepted)",
            offset=len(text[: match.start()].encode("utf-8")),
        )
    if not text.endswith("\n"):
        raise KeyFormatError("key file must end with a newline")
    lines = text[:-1].split("\n")
    labels = ["type", "name", "seed", "vkey"]
    if len(lines) != 1 + len(labels):
        raise KeyFormatError(
            f"key file has {len(lines)} lines, expected {1 + len(labels)}: "
            "the header, then type, name, seed and vkey lines"
        )
    values = {}
    for number, (line, label) in enumerate(zip(lines[1:], labels), start=2):
        if not line.startswith(label + " "):
            raise KeyFormatError(f"key file line {number} must start with {label!r} and a space")
        values[label] = line[len(label) + 1 :]
    found_type = values["type"]
    if found_type not in _KEY_FILE_TYPES:
        raise KeyFormatError(f"key file has unknown key type {found_type!r}")
    if found_type != file_type:
        raise KeyFormatError(
            f"key file holds a {found_type!r} key, but a {file_type!r} key is needed here"
        )
    name = check_key_name(values["name"], "key file name")
    seed = decode_base64_strict(values["seed"])
    if seed is None or len(seed) != SEED_SIZE:
        raise KeyFormatError("key file seed must be 32 bytes in canonical padded base64")
    return name, seed, values["vkey"]


# --------------------------------------------------------------------------
# Signers and verifiers
#
# A key of either signature type (0x01 note signatures here, 0x04 witness
# cosignatures in cosignature.py) is an Ed25519 key with a name; the key ID,
# the vkey string and the private-key file depend only on the signature type.
# The two base classes hold that shared part; the subclasses say which type
# they are and add what they sign or verify.


class Ed25519VerifierBase:
    """A named Ed25519 public key of the subclass's `signature_type`."""

    signature_type: int
    name_label = "key name"  # what a bad name is called in error messages

    __slots__ = ("name", "public_key", "key_id", "vkey", "_key")

    def __init__(self, name: str, public_key: bytes):
        self.name = check_key_name(name, self.name_label)
        self._key = load_public_key(public_key)
        self.public_key = bytes(public_key)
        self.key_id = key_id_for(self.name, self.signature_type, self.public_key)
        self.vkey = encode_vkey(self.name, self.signature_type, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        name, public_key = decode_vkey(vkey, cls.signature_type)
        return cls(name, public_key)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Ed25519VerifierBase)
            and other.signature_type == self.signature_type
            and other.name == self.name
            and other.public_key == self.public_key
        )

    def __hash__(self) -> int:
        return hash((self.signature_type, self.name, self.public_key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey!r})"


class Ed25519SignerBase:
    """A named Ed25519 private key (32-byte seed) of the subclass's
    `signature_type`, stored in a private-key file of `key_file_type`."""

    signature_type: int
    key_file_type: str
    verifier_class: type[Ed25519VerifierBase]
    name_label = "key name"

    __slots__ = ("name", "public_key", "key_id", "_seed", "_key")

    def __init__(self, name: str, seed: bytes):
        self.name = check_key_name(name, self.name_label)
        self._key = load_seed(seed)
        self._seed = bytes(seed)
        self.public_key = raw_public_key(self._key)
        self.key_id = key_id_for(self.name, self.signature_type, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Self:
        """A new key from the operating system's random source."""
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @property
    def seed(self) -> bytes:
        return self._seed

    def verifier_key(self) -> str:
        return encode_vkey(self.name, self.signature_type, self.public_key)

    def verifier(self) -> Ed25519VerifierBase:
        return self.verifier_class(self.name, self.public_key)

    def to_key_file(self) -> bytes:
        return encode_key_file(self.key_file_type, self.name, self._seed, self.verifier_key())

    @classmethod
    def from_key_file(cls, data: bytes) -> Self:
        name, seed, vkey = decode_key_file(data, cls.key_file_type)
        signer = cls(name, seed)
        if signer.verifier_key() != vkey:
            raise KeyFormatError(
                "key file vkey line does not match the key derived from its name and seed "
                f"(derived {signer.verifier_key()!r})"
            )
        return signer

    def __repr__(self) -> str:  # never print the seed
        return f"{type(self).__name__}({self.verifier_key()!r})"


class Verifier(Ed25519VerifierBase):
    """An Ed25519 note verifier key: a name and a public key (signature type 0x01)."""

    signature_type = SIGNATURE_TYPE_ED25519

    __slots__ = ()

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` is a valid Ed25519 signature of `message`."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    # The interface `open_note` uses: check the bytes after the key ID of a
    # signature line against the note text. For this key type that is verify().
    verify_note_signature = verify


class Signer(Ed25519SignerBase):
    """An Ed25519 note signing key: a name and a 32-byte seed."""

    signature_type = SIGNATURE_TYPE_ED25519
    key_file_type = KEY_FILE_TYPE_NOTE
    verifier_class = Verifier

    __slots__ = ()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        return self._key.sign(message)

    def to_go_private_key(self) -> str:
        key_data = base64.b64encode(bytes([SIGNATURE_TYPE_ED25519]) + self._seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{key_data}"

    @classmethod
    def from_go_private_key(cls, skey: str) -> "Signer":
        """Import Go's `PRIVATE+KEY+<name>+<key ID hex>+base64(0x01 || seed)`.

        One trailing newline is tolerated (the usual end of a key file); the key
        ID must match the name and the public key derived from the seed."""
        if not isinstance(skey, str):
            raise KeyFormatError(f"a signer key must be text, not {type(skey).__name__}")
        if skey.endswith("\n"):
            skey = skey[:-1]
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise KeyFormatError(
                "not a Go signer key: expected PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
            )
        _, _, name, key_id_hex, key_data_b64 = parts
        key_data = _decode_key_fields("signer key", name, key_id_hex, key_data_b64)
        if key_data[0] != SIGNATURE_TYPE_ED25519:
            raise KeyFormatError(
                f"signer key for {name!r} has algorithm 0x{key_data[0]:02x}, expected 0x01 (Ed25519)"
            )
        if len(key_data) != 1 + SEED_SIZE:
            raise KeyFormatError(f"signer key for {name!r}: seed must be 32 bytes")
        signer = cls(name, key_data[1:])
        if signer.key_id.hex() != key_id_hex:
            raise KeyFormatError(
                f"signer key for {name!r}: key ID {key_id_hex} does not match the key "
                f"(it should be {signer.key_id.hex()}); the string was altered"
            )
        return signer


# --------------------------------------------------------------------------
# Notes


class NoteVerifier(Protocol):
    """What `open_note` needs from a known key (Verifier, CosignatureVerifier)."""

    name: str
    key_id: bytes

    def verify_note_signature(self, text: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, and the bytes after the key ID."""

    name: str
    key_id: bytes
    signature: bytes

    def to_line(self) -> str:
        """The line without its newline: `— name base64(key ID || signature)`."""
        payload = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{EM_DASH_PREFIX}{self.name} {payload}"


@dataclass
class Note:
    """A parsed signed note. `text` ends with a newline; `signatures` lists every
    signature line in order; `verified_by` lists, once each, the known keys whose
    signatures verified (empty for a note from `parse_note`)."""

    text: str
    signatures: list[NoteSignature]
    verified_by: list = field(default_factory=list)

    def to_bytes(self) -> bytes:
        lines = "".join(sig.to_line() + "\n" for sig in self.signatures)
        return (self.text + "\n" + lines).encode("utf-8")


def check_note_text(text: object) -> bytes:
    """The UTF-8 bytes of a note text, after checking it can be signed."""
    if not isinstance(text, str):
        raise UsageError(f"note text must be str, not {type(text).__name__}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("note text is not valid UTF-8 (it holds a lone surrogate)") from None
    if not data.endswith(b"\n"):
        raise NoteError("note text must end with a newline")
    match = _FORBIDDEN_CONTROL.search(data)
    if match:
        raise NoteError(
            f"note text contains control character 0x{data[match.start()]:02x}",
            offset=match.start(),
        )
    return data


def parse_signature_line(line: bytes, offset: int = 0) -> NoteSignature:
    """Parse one signature line (UTF-8 bytes without its newline, already free
    of control characters). `offset` is where it starts in the note, for errors."""
    if not line.startswith(_EM_DASH_PREFIX_BYTES):
        raise NoteError(
            "signature line must start with an em dash (U+2014) and a space", offset=offset
        )
    try:
        body = line[len(_EM_DASH_PREFIX_BYTES) :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("signature line is not valid UTF-8", offset=offset + 4 + exc.start) from None
    name, space, payload_b64 = body.partition(" ")
    if not space:
        raise NoteError("signature line has no space between key name and signature", offset=offset)
    try:
        check_key_name(name)
    except KeyFormatError as exc:
        raise NoteError(f"signature line has an invalid {exc}", offset=offset) from None
    payload = decode_base64_strict(payload_b64)
    if payload is None:
        raise NoteError(
            f"signature by {name!r} is not canonical padded base64", offset=offset
        )
    if len(payload) < KEY_ID_SIZE + 1:
        raise NoteError(
            f"signature by {name!r} is {len(payload)} bytes; it needs a 4-byte key ID and a signature",
            offset=offset,
        )
    return NoteSignature(name, payload[:KEY_ID_SIZE], payload[KEY_ID_SIZE:])


def parse_signature_text(line: str) -> NoteSignature:
    """Parse one signature line given as text, with or without its final
    newline (a witness's answer, a line typed in). Raises NoteError."""
    if not isinstance(line, str):
        raise UsageError(f"signature lines must be str, not {type(line).__name__}")
    raw = line.encode("utf-8", "surrogatepass")
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if b"\n" in raw:
        raise NoteError("a signature line must not contain a newline")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("signature line is not valid UTF-8", offset=exc.start) from None
    match = _FORBIDDEN_CONTROL.search(raw)
    if match:
        raise NoteError("signature line contains a control character", offset=match.start())
    return parse_signature_line(raw, 0)


def _split(data: object) -> tuple[bytes, list[NoteSignature]]:
    """Strict syntax of a signed note: returns (text bytes, signatures)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UsageError(f"a signed note must be bytes, not {type(data).__name__}")
    data = bytes(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("note is not valid UTF-8", offset=exc.start) from None
    match = _FORBIDDEN_CONTROL.search(data)
    if match:
        raise NoteError(
            f"note contains control character 0x{data[match.start()]:02x} "
            "(only newline is allowed; Windows line ends are not)",
            offset=match.start(),
        )
    # The text ends at the last blank line: everything after it is signatures.
    split = data.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block:
        raise NoteError("note has no signature lines after its last blank line")
    if not block.endswith(b"\n"):
        raise NoteError("note must end with a newline", offset=len(data))
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures; at most {MAX_SIGNATURES} are accepted")
    signatures = []
    offset = split + 2
    for line in lines:
        signatures.append(parse_signature_line(line, offset))
        offset += len(line) + 1
    return text, signatures


def parse_note(data: bytes) -> Note:
    """Parse a signed note strictly, without checking any signature.

    The text of such a note MUST NOT be trusted; use `open_note` for that."""
    text, signatures = _split(data)
    return Note(text.decode("utf-8"), signatures)


def open_note(data: bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse a signed note and verify it against the known keys.

    Signature lines whose (name, key ID) pair matches no known key are ignored.
    Every line from a known key must verify, or the note is rejected; at least
    one must. Raises NoteError."""
    text, signatures = _split(data)
    known: dict[tuple[str, bytes], NoteVerifier | None] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            known[slot] = None  # two different keys share name and ID: ambiguous
        else:
            known[slot] = verifier
    verified_by: list = []
    for sig in signatures:
        slot = (sig.name, sig.key_id)
        if slot not in known:
            continue
        verifier = known[slot]
        if verifier is None:
            raise NoteError(
                f"two configured keys share the name {sig.name!r} and key ID "
                f"{sig.key_id.hex()}; fix the key configuration"
            )
        if not verifier.verify_note_signature(text, sig.signature):
            raise NoteError(
                f"signature by known key {sig.name}+{sig.key_id.hex()} does not verify: "
                "the note was altered or not signed by that key"
            )
        if verifier not in verified_by:
            verified_by.append(verifier)
    if not verified_by:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        raise NoteError(f"note is not signed by any known key (it is signed by {names})")
    return Note(text.decode("utf-8"), signatures, verified_by)


def sign_note(text: str, signers: list[Signer]) -> bytes:
    """The signed note: `text`, a blank line, one signature line per signer."""
    data = check_note_text(text)
    signers = list(signers)
    if not signers:
        raise UsageError("sign_note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise UsageError(f"at most {MAX_SIGNATURES} signatures fit in a note")
    lines = [
        NoteSignature(s.name, s.key_id, s.sign(data)).to_line() + "\n" for s in signers
    ]
    return data + b"\n" + "".join(lines).encode("utf-8")


def add_signatures(data: bytes, lines: list[str]) -> bytes:
    """Append signature lines (e.g. witness cosignatures) to a signed note.

    Each line is `— <name> <base64>` with or without its final newline. A new
    line replaces an existing one with the same key name and key ID (a witness
    that cosigns again). No signature is verified here."""
    note = parse_note(data)
    signatures = list(note.signatures)
    for line in lines:
        new = parse_signature_text(line)
        signatures = [
            s for s in signatures if (s.name, s.key_id) != (new.name, new.key_id)
        ]
        signatures.append(new)
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError(
            f"note would have {len(signatures)} signatures; at most {MAX_SIGNATURES} are accepted"
        )
    return Note(note.text, signatures).to_bytes()
