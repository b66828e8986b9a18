"""Tests of protocol/note: C2SP signed notes, verifier keys, signer keys, key files.

Conformance vectors come from ../shared/conformance/note (generated with Go's
golang.org/x/mod/sumdb/note); the rest are unit and property tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import KeyFormatError, NoteError, UsageError
from protocol.note import (
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    add_signatures,
    open_note,
    parse_note,
    sign_note,
)

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "note"
VECTOR_FILE = CONFORMANCE / "signed-notes.json"
VECTOR_FIELDS = {"desc", "verifier_keys", "note", "want_text", "want_error", "want_verified_by"}


def _load_vectors():
    if not VECTOR_FILE.exists():
        return None
    return json.loads(VECTOR_FILE.read_text(encoding="utf-8"))


VECTORS = _load_vectors()


def _vector_params():
    if VECTORS is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{VECTOR_FILE} not found"))]
    return [pytest.param(v, id=v["desc"]) for v in VECTORS["vectors"]]


# --------------------------------------------------------------------------
# Conformance vectors


@pytest.mark.parametrize("vector", _vector_params())
def test_conformance_vector(vector):
    # A field we do not know would be a rule we do not test: fail loudly.
    assert set(vector) <= VECTOR_FIELDS, f"unknown vector fields {set(vector) - VECTOR_FIELDS}"
    verifiers = [Verifier.from_vkey(k) for k in vector["verifier_keys"]]
    data = vector["note"].encode("utf-8")
    if vector["want_error"]:
        with pytest.raises(NoteError):
            open_note(data, verifiers)
        return
    note = open_note(data, verifiers)
    assert note.text == vector["want_text"]
    assert [v.name for v in note.verified_by] == vector["want_verified_by"]
    # One encoding per note: parsing and printing gives the same bytes back.
    assert note.to_bytes() == data
    assert parse_note(data).to_bytes() == data


@pytest.mark.skipif(VECTORS is None, reason="shared conformance data not found")
def test_conformance_keys():
    keys = VECTORS["keys"]
    signer = Signer.from_go_private_key(keys["log_skey_go_format"])
    assert signer.verifier_key() == keys["log_vkey"]
    assert signer.to_go_private_key() == keys["log_skey_go_format"]
    impostor = Verifier.from_vkey(keys["impostor_vkey_same_name"])
    log = Verifier.from_vkey(keys["log_vkey"])
    assert impostor.name == log.name and impostor.key_id != log.key_id
    witness = Verifier.from_vkey(keys["witness_vkey"])
    assert witness.vkey == keys["witness_vkey"]


@pytest.mark.skipif(VECTORS is None, reason="shared conformance data not found")
def test_signing_reproduces_go_bytes():
    # Ed25519 is deterministic: our signature of the same text must be Go's, byte for byte.
    signer = Signer.from_go_private_key(VECTORS["keys"]["log_skey_go_format"])
    for vector in VECTORS["vectors"]:
        if vector["desc"] == "checkpoint signed by the log key":
            assert sign_note(vector["want_text"], [signer]) == vector["note"].encode()
            break
    else:
        pytest.fail("vector 'checkpoint signed by the log key' is missing")


# The worked example in the documentation of golang.org/x/mod/sumdb/note.
GO_DOC_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_DOC_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_DOC_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_DOC_NOTE = (
    GO_DOC_TEXT
    + "\n"
    + "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_DOC_ENOCH_LINE = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)


def test_go_documentation_example():
    signer = Signer.from_go_private_key(GO_DOC_SKEY)
    assert signer.verifier_key() == GO_DOC_VKEY
    assert sign_note(GO_DOC_TEXT, [signer]) == GO_DOC_NOTE.encode()
    verifier = Verifier.from_vkey(GO_DOC_VKEY)
    note = open_note((GO_DOC_NOTE + GO_DOC_ENOCH_LINE).encode(), [verifier])
    assert note.text == GO_DOC_TEXT
    assert note.verified_by == [verifier]
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]


# --------------------------------------------------------------------------
# Keys


def test_key_id_and_vkey_layout():
    signer = Signer("example.com/log", bytes(range(32)))
    expected_id = hashlib.sha256(b"example.com/log\n\x01" + signer.public_key).digest()[:4]
    assert signer.key_id == expected_id
    name, key_id_hex, data = signer.verifier_key().split("+", 2)
    assert name == "example.com/log"
    assert key_id_hex == expected_id.hex()
    assert base64.b64decode(data) == b"\x01" + signer.public_key
    verifier = Verifier.from_vkey(signer.verifier_key())
    assert verifier == signer.verifier()
    assert (verifier.name, verifier.key_id, verifier.public_key) == (
        signer.name,
        signer.key_id,
        signer.public_key,
    )
    assert verifier.vkey == signer.verifier_key()


def test_generate_gives_distinct_working_keys():
    a, b = Signer.generate("a.example/log"), Signer.generate("a.example/log")
    assert a.public_key != b.public_key
    message = b"hello\n"
    assert a.verifier().verify(message, a.sign(message))
    assert not b.verifier().verify(message, a.sign(message))
    assert len(a.sign(message)) == 64


def _vkey_with(name="example.com/log", key_id=None, data=None):
    signer = Signer("example.com/log", bytes(32))
    real_name, real_id, real_data = signer.verifier_key().split("+", 2)
    return f"{name}+{real_id if key_id is None else key_id}+{real_data if data is None else data}"


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "example.com/log",
        "example.com/log+00000000",
        _vkey_with(key_id="00000000"),  # key ID does not match
        _vkey_with(key_id=_vkey_with().split("+")[1].upper()),  # uppercase hex
        _vkey_with(key_id="1234567"),
        _vkey_with(name="other.example/log"),  # name changed: key ID no longer matches
        _vkey_with(name=""),
        _vkey_with(name="has space"),
        _vkey_with(data=""),
        _vkey_with(data="AQ=="),  # type byte only
        _vkey_with(data=base64.b64encode(b"\x01" + bytes(31)).decode()),  # short key
        _vkey_with(data=base64.b64encode(b"\x02" + bytes(32)).decode()),  # unknown type
        _vkey_with(data=_vkey_with().split("+", 2)[2].rstrip("=") + "!"),
        _vkey_with() + "\n",
        " " + _vkey_with(),
    ],
)
def test_bad_vkeys_are_rejected(vkey):
    with pytest.raises(KeyFormatError):
        Verifier.from_vkey(vkey)


def test_cosignature_vkey_is_not_a_note_vkey():
    # A type 0x04 key (a witness) must not be accepted where a log key is expected.
    with pytest.raises(KeyFormatError, match="given is a witness cosignature key .*, not a log verifier key"):
        Verifier.from_vkey("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "a\u2028b", "a\u0085b", "a\tb", "a\x00b", "\udc80"],
)
def test_bad_key_names(name):
    with pytest.raises(KeyFormatError):
        Signer(name, bytes(32))
    with pytest.raises(KeyFormatError):
        Verifier(name, Signer("x", bytes(32)).public_key)


def test_unusual_but_valid_key_names():
    for name in ["ü.example/ключ", "a—b", "x", "a/b/c?d=e"]:
        signer = Signer(name, bytes(32))
        assert Verifier.from_vkey(signer.verifier_key()).name == name
        assert open_note(sign_note("t\n", [signer]), [signer.verifier()]).text == "t\n"


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "0" * 32, None])
def test_bad_seeds(seed):
    with pytest.raises(KeyFormatError):
        Signer("example.com/log", seed)


def test_go_private_key_round_trip_and_errors():
    signer = Signer("example.com/log", bytes(range(32)))
    skey = signer.to_go_private_key()
    assert skey.startswith("PRIVATE+KEY+example.com/log+")
    again = Signer.from_go_private_key(skey)
    assert again.verifier_key() == signer.verifier_key()
    assert Signer.from_go_private_key(skey + "\n").verifier_key() == signer.verifier_key()
    prefix, key_id_hex, data = skey.rsplit("+", 2)
    short_seed = base64.b64encode(b"\x01" + bytes(31)).decode()
    cosignature_type = base64.b64encode(b"\x04" + bytes(range(32))).decode()
    bad = [
        skey.replace("PRIVATE+KEY", "PUBLIC+KEY"),
        f"{prefix}+00000000+{data}",  # key ID does not match the seed
        skey.replace("example.com/log", "example.com/other"),
        f"{prefix}+{key_id_hex.upper()}+{data}",
        f"{prefix}+{key_id_hex}+{short_seed}",
        f"{prefix}+{key_id_hex}+{cosignature_type}",
        f"{prefix}+{key_id_hex}+{data[:-1]}",
        skey + "\n\n",
        signer.verifier_key(),
    ]
    for s in bad:
        with pytest.raises(KeyFormatError):
            Signer.from_go_private_key(s)


def test_key_file_round_trip_and_layout():
    signer = Signer("helpline.example/log", bytes(range(32)))
    data = signer.to_key_file()
    lines = data.decode().split("\n")
    assert lines == [
        "ncii-node private key v1",
        "type ed25519-note",
        "name helpline.example/log",
        "seed " + base64.b64encode(bytes(range(32))).decode(),
        "vkey " + signer.verifier_key(),
        "",
    ]
    assert Signer.from_key_file(data).verifier_key() == signer.verifier_key()
    assert "seed" not in repr(signer) and base64.b64encode(signer.seed).decode() not in repr(signer)


def test_key_file_strictness():
    signer = Signer("helpline.example/log", bytes(range(32)))
    good = signer.to_key_file()
    other = Signer("helpline.example/log", bytes(32)).verifier_key()
    bad = [
        b"",
        good[:-1],  # no final newline
        good.replace(b"\n", b"\r\n"),
        good + b"\n",
        good + b"extra line\n",
        good.replace(b"ncii-node private key v1", b"ncii-node private key v2"),
        good.replace(b"type ed25519-note", b"type ed25519-cosignature"),
        good.replace(b"type ed25519-note", b"type rsa"),
        good.replace(b"name ", b"name  "),
        good.replace(b"name ", b"Name "),
        good.replace(signer.verifier_key().encode(), other.encode()),  # vkey does not match seed
        good.replace(b"helpline.example/log\nseed", b"helpline.example/other\nseed"),
        good.replace(b"seed AAEC", b"seed AAED"),  # seed altered: vkey no longer matches
        good.replace(b"=\nvkey", b"\nvkey"),  # unpadded base64
        b"\xff" + good,
        good * 2,
        b"x" * 5000,
    ]
    for data in bad:
        with pytest.raises(KeyFormatError):
            Signer.from_key_file(data)
    with pytest.raises(KeyFormatError):
        Signer.from_key_file(good.decode())  # text, not bytes


# --------------------------------------------------------------------------
# Note syntax and verification rules

LOG = Signer("log.example/a", bytes([1]) * 32)
WITNESS = Signer("witness.example/w", bytes([2]) * 32)
OTHER = Signer("other.example/o", bytes([3]) * 32)
TEXT = "log.example/a\n7\nq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"


def _line(name: str, payload: bytes) -> str:
    return f"— {name} {base64.b64encode(payload).decode()}\n"


def test_sign_and_open_many_signers():
    data = sign_note(TEXT, [LOG, WITNESS])
    note = open_note(data, [WITNESS.verifier(), LOG.verifier()])
    assert note.text == TEXT
    assert [v.name for v in note.verified_by] == [LOG.name, WITNESS.name]
    assert [s.name for s in note.signatures] == [LOG.name, WITNESS.name]
    assert all(len(s.key_id) == 4 and len(s.signature) == 64 for s in note.signatures)


def test_unknown_signatures_are_ignored_and_known_ones_required():
    data = sign_note(TEXT, [LOG, OTHER])
    assert open_note(data, [LOG.verifier()]).verified_by == [LOG.verifier()]
    with pytest.raises(NoteError, match="not signed by any known key"):
        open_note(data, [WITNESS.verifier()])
    with pytest.raises(NoteError):
        open_note(data, [])


def test_failing_known_signature_rejects_even_with_a_good_one():
    good = sign_note(TEXT, [LOG])
    forged = _line(WITNESS.name, WITNESS.key_id + bytes(64))
    data = good + forged.encode()
    assert open_note(data, [LOG.verifier()]).text == TEXT  # witness unknown: ignored
    with pytest.raises(NoteError, match="does not verify"):
        open_note(data, [LOG.verifier(), WITNESS.verifier()])


def test_same_name_other_key_is_unknown_not_failing():
    impostor = Signer(LOG.name, bytes([9]) * 32)
    data = sign_note(TEXT, [LOG, impostor])
    note = open_note(data, [LOG.verifier()])
    assert note.verified_by == [LOG.verifier()]


def test_same_key_id_other_name_is_unknown():
    # A line carrying LOG's key ID under another name is not LOG's signature.
    data = sign_note(TEXT, [LOG])
    extra = _line("renamed.example/a", LOG.key_id + LOG.sign(TEXT.encode()))
    assert open_note(data + extra.encode(), [LOG.verifier()]).verified_by == [LOG.verifier()]
    with pytest.raises(NoteError):
        open_note(TEXT.encode() + b"\n" + extra.encode(), [LOG.verifier()])


def test_duplicate_signatures_each_verified():
    data = sign_note(TEXT, [LOG, LOG])
    note = open_note(data, [LOG.verifier()])
    assert note.verified_by == [LOG.verifier()] and len(note.signatures) == 2
    bad_duplicate = data + _line(LOG.name, LOG.key_id + bytes(64)).encode()
    with pytest.raises(NoteError):
        open_note(bad_duplicate, [LOG.verifier()])


def test_ambiguous_verifier_configuration():
    # Two different keys with the same name and key ID cannot be told apart.
    v = LOG.verifier()

    class Twin:
        name, key_id = v.name, v.key_id

        def verify_note_signature(self, text, sig):
            return True

    data = sign_note(TEXT, [LOG])
    with pytest.raises(NoteError, match="share the name"):
        open_note(data, [v, Twin()])
    assert open_note(data, [v, LOG.verifier()]).verified_by == [v]  # same key twice is fine


def test_signature_count_limit():
    signers = [Signer(f"s{i}.example", bytes([i]) * 32) for i in range(MAX_SIGNATURES)]
    data = sign_note(TEXT, signers)
    note = open_note(data, [s.verifier() for s in signers])
    assert len(note.verified_by) == MAX_SIGNATURES
    extra = _line("unknown.example", bytes(68)).encode()
    with pytest.raises(NoteError, match="at most 16"):
        open_note(data + extra, [signers[0].verifier()])
    with pytest.raises(NoteError):
        parse_note(data + extra)
    with pytest.raises(UsageError):
        sign_note(TEXT, signers + [LOG])


GOOD = sign_note(TEXT, [LOG]).decode()
GOOD_LINE = GOOD[len(TEXT) + 1 :]
GOOD_B64 = GOOD_LINE.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(GOOD.replace("\n7\n", "\n7\r\n").encode(), id="carriage return"),
        pytest.param(GOOD.replace("\n7\n", "\n7\t\n").encode(), id="tab"),
        pytest.param(GOOD.replace("\n7\n", "\n7\x00\n").encode(), id="NUL"),
        pytest.param(GOOD.replace("\n7\n", "\n7\x1f\n").encode(), id="unit separator"),
        pytest.param(GOOD.encode().replace(b"\n7\n", b"\n7\xff\n"), id="invalid UTF-8"),
        pytest.param(GOOD.encode().replace(b"\n7\n", b"\n7\xed\xa0\x80\n"), id="surrogate"),
        pytest.param(GOOD.encode().replace(b"\n7\n", b"\n7\xc0\xb7\n"), id="overlong"),
        pytest.param(GOOD.encode().replace("—".encode(), b"\xe2\x80"), id="truncated em dash"),
        pytest.param(GOOD[:-1].encode(), id="no final newline"),
        pytest.param(GOOD.replace("\n\n", "\n").encode(), id="no blank line"),
        pytest.param((GOOD + "\n").encode(), id="blank line at end"),
        pytest.param((TEXT + "\n").encode(), id="no signatures"),
        pytest.param(GOOD.replace("— ", "- ").encode(), id="hyphen"),
        pytest.param(GOOD.replace("— ", "– ").encode(), id="en dash"),
        pytest.param(GOOD.replace("— ", "—").encode(), id="no space after dash"),
        pytest.param(GOOD.replace("— ", "—  ").encode(), id="empty name"),
        pytest.param(GOOD.replace("— ", " — ").encode(), id="leading space"),
        pytest.param(GOOD.replace(f" {GOOD_B64}", f"  {GOOD_B64}").encode(), id="two spaces"),
        pytest.param(GOOD.replace(f" {GOOD_B64}", f"{GOOD_B64}").encode(), id="no space"),
        pytest.param(GOOD.replace(GOOD_B64, GOOD_B64 + " ").encode(), id="trailing space"),
        pytest.param(GOOD.replace(GOOD_B64, GOOD_B64.rstrip("=")).encode(), id="unpadded"),
        pytest.param(GOOD.replace(GOOD_B64, GOOD_B64 + "====").encode(), id="overpadded"),
        pytest.param(GOOD.replace(GOOD_B64, GOOD_B64.replace("+", "-")).encode(), id="urlsafe")
        if "+" in GOOD_B64
        else pytest.param(GOOD.replace(GOOD_B64, "-" + GOOD_B64[1:]).encode(), id="urlsafe"),
        pytest.param(GOOD.replace(GOOD_B64, "").encode(), id="empty signature"),
        pytest.param(GOOD.replace(GOOD_B64, "AAAAAA==").encode(), id="4 bytes"),
        pytest.param(GOOD.replace("log.example/a ", "log.example+a ").encode(), id="plus in name"),
        pytest.param(GOOD.replace("log.example/a ", "log.example\u00a0a ").encode(), id="nbsp in name"),
    ],
)
def test_malformed_notes_are_rejected(data):
    with pytest.raises(NoteError):
        open_note(data, [LOG.verifier()])
    with pytest.raises(NoteError):
        parse_note(data)


def test_non_canonical_base64_is_rejected():
    # 68 bytes leave 2 unused bits in the last base64 character; Go ignores them,
    # we require them to be zero so that a signature line has one spelling.
    last = GOOD_B64[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1]
    data = GOOD.replace(GOOD_B64, GOOD_B64[:-2] + twin + "=").encode()
    assert base64.b64decode(data.split(b" ")[-1]) == base64.b64decode(GOOD_B64)
    with pytest.raises(NoteError, match="canonical"):
        open_note(data, [LOG.verifier()])


def test_five_byte_signature_is_syntactically_fine():
    data = (TEXT + "\n" + _line("x.example", bytes(5))).encode()
    assert parse_note(data).signatures == [NoteSignature("x.example", bytes(4), bytes(1))]
    with pytest.raises(NoteError):
        open_note(data, [LOG.verifier()])


def test_text_with_empty_lines_is_split_at_the_last_blank_line():
    text = "first\n\nsecond\n\n"
    data = sign_note(text, [LOG])
    assert data.startswith(b"first\n\nsecond\n\n\n")
    assert open_note(data, [LOG.verifier()]).text == text
    assert open_note(sign_note("\n", [LOG]), [LOG.verifier()]).text == "\n"


def test_sign_note_refuses_bad_text():
    for text in ["no newline", "", "a\r\n", "a\x00\n"]:
        with pytest.raises(NoteError):
            sign_note(text, [LOG])
    with pytest.raises(NoteError):
        sign_note("\udc80\n", [LOG])
    with pytest.raises(UsageError):
        sign_note(TEXT, [])
    with pytest.raises(UsageError):
        sign_note(TEXT.encode(), [LOG])
    with pytest.raises(UsageError):
        open_note(GOOD, [LOG.verifier()])  # str, not bytes


def test_parse_note_does_not_verify():
    data = GOOD.replace("\n7\n", "\n8\n").encode()
    note = parse_note(data)
    assert note.text.startswith("log.example/a\n8\n") and note.verified_by == []
    with pytest.raises(NoteError):
        open_note(data, [LOG.verifier()])


def test_add_signatures():
    data = sign_note(TEXT, [LOG])
    witness_line = sign_note(TEXT, [WITNESS])[len(TEXT) + 1 :].decode()
    both = add_signatures(data, [witness_line])
    assert both == sign_note(TEXT, [LOG, WITNESS])
    assert add_signatures(data, [witness_line.rstrip("\n")]) == both
    # The same key signing again replaces its earlier line.
    assert add_signatures(both, [witness_line]) == both
    note = open_note(both, [LOG.verifier(), WITNESS.verifier()])
    assert len(note.verified_by) == 2
    for bad in ["", "— x", "- x AAAAAAA=", "— x AAAA\n— y AAAA", "— x\x00 AAAAAAA=", "— a b AAAAAAA="]:
        with pytest.raises(NoteError):
            add_signatures(data, [bad])
    many = [_line(f"w{i}.example", bytes(68)) for i in range(MAX_SIGNATURES)]
    with pytest.raises(NoteError, match="at most 16"):
        add_signatures(data, many)


def test_note_to_bytes():
    note = Note("hi\n", [NoteSignature("a", b"\x00\x01\x02\x03", b"\xff")])
    assert note.to_bytes() == b"hi\n\n\xe2\x80\x94 a AAECA/8=\n"


# --------------------------------------------------------------------------
# Properties

note_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(0x20) if c != 0x0A],
    ),
    max_size=200,
).map(lambda t: t + "\n")


@settings(max_examples=200, deadline=None)
@given(text=note_text)
def test_property_sign_open_round_trip(text):
    data = sign_note(text, [LOG, WITNESS])
    note = open_note(data, [LOG.verifier(), WITNESS.verifier()])
    assert note.text == text
    assert note.to_bytes() == data
    assert open_note(data, [WITNESS.verifier()]).verified_by == [WITNESS.verifier()]


SIGNED = sign_note(TEXT, [LOG])


def _mutations(data: bytes):
    """Every byte replaced by a handful of values chosen to hit the grammar."""
    for i in range(len(data)):
        for value in {data[i] ^ 0x01, data[i] ^ 0x80, 0x0A, 0x20, ord("+"), ord("="), 0x00}:
            if value != data[i]:
                yield data[:i] + bytes([value]) + data[i + 1 :]
        yield data[:i] + data[i + 1 :]
        yield data[:i] + b"\n" + data[i:]


def _assert_rejected_or_different(mutated: bytes, original_text: str, verifiers, min_verified=1):
    try:
        note = open_note(mutated, verifiers)
    except NoteError:
        return
    # Accepted: only if what is vouched for changed.
    assert note.text != original_text or len(note.verified_by) < min_verified, mutated


def test_every_single_byte_mutation_is_rejected():
    verifiers = [LOG.verifier()]
    count = 0
    for mutated in _mutations(SIGNED):
        _assert_rejected_or_different(mutated, TEXT, verifiers)
        count += 1
    assert count > 1000


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=note_text, two=st.booleans())
def test_property_single_byte_change(data, text, two):
    signers = [LOG, WITNESS] if two else [LOG]
    signed = sign_note(text, signers)
    position = data.draw(st.integers(0, len(signed) - 1), label="position")
    kind = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="kind")
    value = data.draw(st.integers(0, 255), label="value")
    if kind == "replace":
        if value == signed[position]:
            value ^= 0xFF
        mutated = signed[:position] + bytes([value]) + signed[position + 1 :]
    elif kind == "delete":
        mutated = signed[:position] + signed[position + 1 :]
    else:
        mutated = signed[:position] + bytes([value]) + signed[position:]
    _assert_rejected_or_different(
        mutated, text, [s.verifier() for s in signers], min_verified=len(signers)
    )


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=300))
def test_property_arbitrary_bytes_only_raise_note_error(blob):
    for data in (blob, SIGNED[:40] + blob, blob + SIGNED[-60:]):
        try:
            open_note(data, [LOG.verifier()])
        except NoteError:
            pass
        try:
            parse_note(data)
        except NoteError:
            pass


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=120), blob=st.binary(max_size=200))
def test_property_key_parsers_only_raise_key_format_error(text, blob):
    signer = Signer("example.com/log", bytes(32))
    for parse, value in [
        (Verifier.from_vkey, text),
        (Verifier.from_vkey, signer.verifier_key()[:20] + text),
        (Signer.from_go_private_key, text),
        (Signer.from_go_private_key, "PRIVATE+KEY+" + text),
        (Signer.from_key_file, blob),
        (Signer.from_key_file, signer.to_key_file()[:60] + blob),
    ]:
        try:
            parse(value)
        except KeyFormatError:
            pass


@settings(max_examples=200, deadline=None)
@given(line=st.binary(max_size=120))
def test_property_signature_line_parser(line):
    from protocol.note import parse_signature_line

    for raw in (line, "— ".encode() + line):
        try:
            parse_signature_line(raw)
        except NoteError:
            pass
