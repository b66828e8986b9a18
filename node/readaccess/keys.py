"""Request verifier keys: "name+hhhhhhhh+base64(0xff "ncii-node/request-key" || pk)".

    request_vkey(name, public_key)   the key string a reader registers
    parse_request_vkey(vkey)         -> Ed25519PublicKey; KeyFormatError says what was
                                     given instead (e.g. a log's verifier key)
    request_key_id(vkey)             the 4-byte key ID

The grammar is C2SP signed-note's (protocol/note.py: encode_vkey, decode_vkey,
key_id_for) with signed-note's 0xff type for types it assigns no byte, followed by
"ncii-node/request-key" (protocol.note.REQUEST_KEY_TYPE), so that a request key can
never be taken for a log key or the reverse. Names are stricter than signed-note's:
printable ASCII, since the whole key string travels as the `keyid` parameter.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.errors import KeyFormatError, UsageError
from protocol.note import REQUEST_KEY_TYPE, decode_vkey, encode_vkey, key_id_for


def _check_key_name(name: str) -> None:
    # Stricter than signed-note (ASCII only): the whole vkey travels as the `keyid`
    # Structured Field String, which admits only printable ASCII.
    if not name:
        raise KeyFormatError("request key name is empty")
    if not (name.isascii() and name.isprintable()) or "+" in name or " " in name:
        raise KeyFormatError(
            f"request key name {name!r} must be printable ASCII without spaces or '+'"
        )


def request_vkey(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """The verifier key string of a request key: what `ncii-node key --request` prints
    and what a publishing node registers. Its type (0xff followed by
    "ncii-node/request-key", protocol.note.REQUEST_KEY_TYPE) makes it impossible to
    take for a log's verifier key, and the reverse."""
    _check_key_name(name)
    return encode_vkey(name, REQUEST_KEY_TYPE, _raw_public(public_key))


def parse_request_vkey(vkey: str) -> Ed25519PublicKey:
    """The public key of a request verifier key string; raises KeyFormatError (saying
    what kind of key was given instead, e.g. a log's verifier key)."""
    if not isinstance(vkey, str):
        raise KeyFormatError("request key must be a string")
    name, public_key = decode_vkey(vkey, REQUEST_KEY_TYPE)
    _check_key_name(name)
    return Ed25519PublicKey.from_public_bytes(public_key)


def request_key_id(vkey: str) -> bytes:
    """The 4-byte key ID of a request vkey (already parsed)."""
    name, public_key = decode_vkey(vkey, REQUEST_KEY_TYPE)
    return key_id_for(name, REQUEST_KEY_TYPE, public_key)


def _raw_public(public_key: Ed25519PublicKey | bytes) -> bytes:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes_raw()
    if isinstance(public_key, (bytes, bytearray)) and len(public_key) == 32:
        return bytes(public_key)
    raise UsageError("public key must be an Ed25519PublicKey or 32 raw bytes")
