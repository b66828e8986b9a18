"""Tests of protocol/cosignature: C2SP tlog-cosignature/v1 with Ed25519 (type 0x04)."""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from protocol.cosignature import (
    MAX_TIMESTAMP,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_timestamp,
    cosigned_message,
)
from protocol.errors import CheckpointError, CosignatureError, KeyFormatError, NoteError, UsageError
from protocol.note import Signer, Verifier, add_signatures, parse_note, parse_signature_line

LOG = Signer("log.example/a", bytes([1]) * 32)
WITNESS = CosignatureSigner("witness.example/w1", bytes([2]) * 32)
OTHER_WITNESS = CosignatureSigner("witness.example/w2", bytes([3]) * 32)
CP = Checkpoint(LOG.name, 12, bytes(range(32)))
TEXT = CP.to_text()
T = 1_700_000_000


def _payload(line: str) -> bytes:
    return base64.b64decode(line.rsplit(" ", 1)[1])


def _with_payload(line: str, payload: bytes) -> str:
    head, _ = line.rsplit(" ", 1)
    return f"{head} {base64.b64encode(payload).decode()}"


def test_key_id_vkey_and_line_layout():
    pk = WITNESS.public_key
    key_id = hashlib.sha256(b"witness.example/w1\n\x04" + pk).digest()[:4]
    assert WITNESS.key_id == key_id
    key_data = base64.b64encode(b"\x04" + pk).decode()
    assert WITNESS.verifier_key() == f"witness.example/w1+{key_id.hex()}+{key_data}"
    line = WITNESS.cosign(TEXT, T)
    assert line.startswith("— witness.example/w1 ") and "\n" not in line
    payload = _payload(line)
    assert len(payload) == 4 + 8 + 64
    assert payload[:4] == key_id
    assert struct.unpack(">Q", payload[4:12]) == (T,)
    # The signed message, built independently from the spec's words.
    message = b"cosignature/v1\n" + b"time " + str(T).encode() + b"\n" + TEXT.encode()
    assert cosigned_message(TEXT.encode(), T) == message
    Ed25519PublicKey.from_public_bytes(pk).verify(payload[12:], message)  # raises if wrong


def test_sign_and_verify_in_a_note():
    signed = add_signatures(sign_checkpoint(CP, LOG), [WITNESS.cosign(TEXT, T)])
    cp, note = open_checkpoint(signed, [LOG.verifier()])
    assert cp == CP
    assert WITNESS.verifier().verify(note) == T
    assert WITNESS.verifier().verify(parse_note(signed)) == T
    with pytest.raises(CosignatureError, match="no cosignature"):
        OTHER_WITNESS.verifier().verify(note)


def test_verify_line():
    line = WITNESS.cosign(TEXT, T)
    verifier = CosignatureVerifier.from_vkey(WITNESS.verifier_key())
    assert verifier == WITNESS.verifier()
    assert verifier.verify_line(TEXT, line) == T
    assert verifier.verify_line(TEXT, line + "\n") == T
    with pytest.raises(CosignatureError, match="not by witness"):
        OTHER_WITNESS.verifier().verify_line(TEXT, line)
    for bad in ["", "— x", line + " ", line.replace("— ", "- "), line + "\n\n", line[:-4]]:
        with pytest.raises(CosignatureError):
            verifier.verify_line(TEXT, bad)


def test_wrong_key_same_name():
    impostor = CosignatureSigner(WITNESS.name, bytes([7]) * 32)
    line = impostor.cosign(TEXT, T)
    with pytest.raises(CosignatureError):
        WITNESS.verifier().verify_line(TEXT, line)
    # Claiming the real witness's key ID does not help either.
    forged = _with_payload(line, WITNESS.key_id + _payload(line)[4:])
    with pytest.raises(CosignatureError, match="does not verify"):
        WITNESS.verifier().verify_line(TEXT, forged)
    note = parse_note(add_signatures(sign_checkpoint(CP, LOG), [forged]))
    with pytest.raises(CosignatureError):
        WITNESS.verifier().verify(note)


def test_tampered_timestamp_and_checkpoint():
    line = WITNESS.cosign(TEXT, T)
    payload = _payload(line)
    for ts in (T + 1, T - 1, 0, MAX_TIMESTAMP):
        tampered = _with_payload(line, payload[:4] + struct.pack(">Q", ts) + payload[12:])
        with pytest.raises(CosignatureError):
            WITNESS.verifier().verify_line(TEXT, tampered)
    too_big = _with_payload(line, payload[:4] + struct.pack(">Q", 2**63) + payload[12:])
    with pytest.raises(CosignatureError, match="2\\*\\*63"):
        WITNESS.verifier().verify_line(TEXT, too_big)
    other_cp = Checkpoint(LOG.name, 13, CP.root_hash).to_text()
    with pytest.raises(CosignatureError):
        WITNESS.verifier().verify_line(other_cp, line)


def test_payload_length_must_be_exact():
    line = WITNESS.cosign(TEXT, T)
    payload = _payload(line)
    for bad in (payload[:-1], payload + b"\x00", payload[:12]):
        with pytest.raises(CosignatureError, match="expected 76"):
            WITNESS.verifier().verify_line(TEXT, _with_payload(line, bad))


def test_extension_lines_are_covered():
    text = TEXT + "an extension\n"
    line = WITNESS.cosign(text, T)
    assert WITNESS.verifier().verify_line(text, line) == T
    with pytest.raises(CosignatureError):
        WITNESS.verifier().verify_line(text.replace("an", "my"), line)


def test_cosigner_in_open_note_rejects_a_bad_cosignature():
    good = add_signatures(sign_checkpoint(CP, LOG), [WITNESS.cosign(TEXT, T)])
    cp, note = open_checkpoint(good, [LOG.verifier(), WITNESS.verifier()])
    assert note.verified_by == [LOG.verifier(), WITNESS.verifier()]
    line = WITNESS.cosign(TEXT, T)
    bad_line = _with_payload(line, _payload(line)[:4] + struct.pack(">Q", T + 5) + _payload(line)[12:])
    bad = add_signatures(sign_checkpoint(CP, LOG), [bad_line])
    assert open_checkpoint(bad, [LOG.verifier()])[0] == CP  # unknown witness: ignored
    with pytest.raises(NoteError):
        open_checkpoint(bad, [LOG.verifier(), WITNESS.verifier()])
    # A cosignature alone never stands in for the log's own signature.
    only_cosigned = TEXT.encode() + b"\n" + line.encode() + b"\n"
    with pytest.raises(CheckpointError):
        open_checkpoint(only_cosigned, [WITNESS.verifier()])


def test_cosign_checks_its_input():
    with pytest.raises(CheckpointError):
        WITNESS.cosign("not a checkpoint\n", T)
    for ts in (-1, 2**63, True, 1.5):
        with pytest.raises(UsageError):
            WITNESS.cosign(TEXT, ts)
    assert WITNESS.verifier().verify_line(TEXT, WITNESS.cosign(TEXT, MAX_TIMESTAMP)) == MAX_TIMESTAMP
    assert WITNESS.verifier().verify_line(TEXT, WITNESS.cosign(TEXT, 0)) == 0


def test_key_types_do_not_mix():
    with pytest.raises(KeyFormatError, match="given is a log verifier key"):
        CosignatureVerifier.from_vkey(LOG.verifier_key())
    with pytest.raises(KeyFormatError, match="given is a witness cosignature key"):
        Verifier.from_vkey(WITNESS.verifier_key())
    # The same seed and name as a note key gives a different key ID (domain separation).
    same = Signer(WITNESS.name, WITNESS.seed)
    assert same.public_key == WITNESS.public_key and same.key_id != WITNESS.key_id


def test_public_vectors():
    # A witness vkey published by transparency-dev/formats (note_cosigv1_test.go).
    v = CosignatureVerifier.from_vkey(
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    )
    assert v.name == "remora.n621.de" and v.key_id.hex() == "da77ade7"
    # Timestamps carried by published cosignature lines (same test file; c2sp.org/tlog-cosignature).
    line = "— w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
    assert cosignature_timestamp(parse_signature_line(line.encode())) == 1727964367
    spec = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    assert cosignature_timestamp(parse_signature_line(spec.encode())) == 1679315147
    note_sig = "— w eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
    with pytest.raises(CosignatureError):
        cosignature_timestamp(parse_signature_line(note_sig.encode()))


def test_key_file():
    data = WITNESS.to_key_file()
    assert data.split(b"\n")[1] == b"type ed25519-cosignature"
    assert CosignatureSigner.from_key_file(data).verifier_key() == WITNESS.verifier_key()
    with pytest.raises(KeyFormatError):
        Signer.from_key_file(data)
    with pytest.raises(KeyFormatError):
        CosignatureSigner.from_key_file(LOG.to_key_file())
    assert "AgICAgIC" not in repr(WITNESS)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    ts=st.integers(0, MAX_TIMESTAMP),
    data=st.data(),
)
def test_property_cosign_verify_and_tamper(size, root, ts, data):
    text = Checkpoint(LOG.name, size, root).to_text()
    line = WITNESS.cosign(text, ts)
    assert WITNESS.verifier().verify_line(text, line) == ts
    payload = bytearray(_payload(line))
    i = data.draw(st.integers(0, len(payload) - 1))
    payload[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CosignatureError):
        WITNESS.verifier().verify_line(text, _with_payload(line, bytes(payload)))
    with pytest.raises(CosignatureError):
        OTHER_WITNESS.verifier().verify_line(text, line)


SPEC = Path(__file__).resolve().parents[1] / "spec" / "parts" / "notes.md"


def test_spec_examples_are_true():
    """The worked examples in spec/parts/notes.md are what the code produces."""
    spec = SPEC.read_text(encoding="utf-8")
    log = Signer("helpline.example/log", bytes(range(32)))
    witness = CosignatureSigner("witness.example/w1", bytes(range(32, 64)))
    cp = Checkpoint("helpline.example/log", 0, hashlib.sha256(b"").digest())
    signed = add_signatures(sign_checkpoint(cp, log), [witness.cosign(cp.to_text(), 1767225600)])
    message = cosigned_message(cp.to_text().encode(), 1767225600)
    examples = [
        log.verifier_key(),
        log.to_go_private_key(),
        witness.verifier_key(),
        *log.to_key_file().decode().splitlines(),
        *signed.decode().splitlines(),
        *message.decode().splitlines(),
        f"signed these {len(message)} bytes",
    ]
    for example in examples:
        assert example in spec, f"spec/parts/notes.md lacks or misstates: {example}"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=150), line=st.text(max_size=150))
def test_property_verify_line_only_raises_cosignature_error(text, line):
    verifier = WITNESS.verifier()
    for t, l in [(text, line), (TEXT, line), (TEXT, "— witness.example/w1 " + line), (text, WITNESS.cosign(TEXT, T))]:
        try:
            verifier.verify_line(t, l)
        except CosignatureError:
            pass
