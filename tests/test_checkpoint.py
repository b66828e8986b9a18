"""Tests of protocol/checkpoint: C2SP tlog-checkpoint parsing, printing, signing, opening."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint, sign_checkpoint
from protocol.errors import CheckpointError, NoteError, UsageError
from protocol.note import Signer, Verifier, add_signatures, sign_note

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "note"

LOG = Signer("log.example/a", bytes([1]) * 32)
WITNESS = Signer("witness.example/w", bytes([2]) * 32)
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()


def test_to_text_layout():
    cp = Checkpoint("log.example/a", 42, ROOT)
    assert cp.to_text() == f"log.example/a\n42\n{ROOT_B64}\n"
    assert Checkpoint("o", 0, bytes(32)).to_text() == "o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def test_c2sp_example_parses():
    # The example in c2sp.org/tlog-checkpoint.
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint.parse(text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.to_text() == text


def test_extensions_are_kept():
    text = f"o\n5\n{ROOT_B64}\nfirst extension\nsecond — ünïcode\n"
    cp = Checkpoint.parse(text)
    assert cp.extensions == ("first extension", "second — ünïcode")
    assert cp.to_text() == text


def test_size_bounds():
    assert Checkpoint.parse(f"o\n{MAX_TREE_SIZE}\n{ROOT_B64}\n").size == 2**63 - 1
    with pytest.raises(CheckpointError):
        Checkpoint.parse(f"o\n{2**63}\n{ROOT_B64}\n")
    with pytest.raises(CheckpointError):
        Checkpoint.parse(f"o\n{'9' * 5000}\n{ROOT_B64}\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        f"o\n5\n{ROOT_B64}",  # no final newline
        "o\n5\n",
        f"\n5\n{ROOT_B64}\n",  # empty origin
        f"o\n\n{ROOT_B64}\n",
        f"o\n05\n{ROOT_B64}\n",  # leading zero
        f"o\n00\n{ROOT_B64}\n",
        f"o\n+5\n{ROOT_B64}\n",
        f"o\n-5\n{ROOT_B64}\n",
        f"o\n 5\n{ROOT_B64}\n",
        f"o\n5 \n{ROOT_B64}\n",
        f"o\n1_000\n{ROOT_B64}\n",
        f"o\n٣\n{ROOT_B64}\n",  # Arabic-Indic digit: int() would take it
        f"o\n５\n{ROOT_B64}\n",  # fullwidth digit
        f"o\n0x10\n{ROOT_B64}\n",
        f"o\n5\n{ROOT_B64.rstrip('=')}\n",  # unpadded
        f"o\n5\n{ROOT_B64} \n",
        f"o\n5\n{base64.b64encode(bytes(31)).decode()}\n",
        f"o\n5\n{base64.b64encode(bytes(33)).decode()}\n",
        f"o\n5\n{base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode()}\n",
        f"o\n5\n{ROOT_B64[:-2]}B=\n",  # non-canonical: unused bits set
        f"o\n5\n{ROOT_B64}\n\n",  # empty extension line
        f"o\n5\n{ROOT_B64}\next\n\nmore\n",
        f"o\r\n5\n{ROOT_B64}\n",
        f"o\n5\r\n{ROOT_B64}\n",
        f"o\x00\n5\n{ROOT_B64}\n",
        f"o\n5\n{ROOT_B64}\next\tension\n",
    ],
)
def test_malformed_checkpoints(text):
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(origin="", size=1, root_hash=ROOT),
        dict(origin="a\nb", size=1, root_hash=ROOT),
        dict(origin="a", size=-1, root_hash=ROOT),
        dict(origin="a", size=2**63, root_hash=ROOT),
        dict(origin="a", size=True, root_hash=ROOT),
        dict(origin="a", size=1.0, root_hash=ROOT),
        dict(origin="a", size=1, root_hash=ROOT[:31]),
        dict(origin="a", size=1, root_hash=bytearray(ROOT)),
        dict(origin="a", size=1, root_hash=ROOT, extensions=("",)),
        dict(origin="a", size=1, root_hash=ROOT, extensions=("x\ny",)),
        dict(origin="a", size=1, root_hash=ROOT, extensions=["x"]),
        dict(origin="\udc80", size=1, root_hash=ROOT),
    ],
)
def test_constructor_validates(kwargs):
    with pytest.raises(CheckpointError):
        Checkpoint(**kwargs)


def test_parse_refuses_bytes():
    with pytest.raises(UsageError):
        Checkpoint.parse(b"o\n1\n" + ROOT_B64.encode() + b"\n")


# --------------------------------------------------------------------------
# Signing and opening


def test_sign_and_open():
    cp = Checkpoint(LOG.name, 7, ROOT)
    data = sign_checkpoint(cp, LOG)
    got, note = open_checkpoint(data, [LOG.verifier()])
    assert got == cp and note.text == cp.to_text()
    got, _ = open_checkpoint(data, [LOG.verifier(), WITNESS.verifier()], origin=LOG.name)
    assert got == cp


def test_open_checks_origin():
    data = sign_checkpoint(Checkpoint(LOG.name, 7, ROOT), LOG)
    with pytest.raises(CheckpointError, match="expected"):
        open_checkpoint(data, [LOG.verifier()], origin="log.example/b")


def test_open_requires_the_logs_own_signature():
    cp = Checkpoint(LOG.name, 7, ROOT)
    # Signed by a witness only: the note verifies, but no key of the log vouches for it.
    only_witness = sign_note(cp.to_text(), [WITNESS])
    with pytest.raises(CheckpointError, match="not signed by a known key of that log"):
        open_checkpoint(only_witness, [LOG.verifier(), WITNESS.verifier()])
    # Signed by the log and a witness, only the witness known.
    both = add_signatures(sign_checkpoint(cp, LOG), [only_witness.decode().split("\n\n")[1]])
    with pytest.raises(CheckpointError):
        open_checkpoint(both, [WITNESS.verifier()])
    assert open_checkpoint(both, [LOG.verifier(), WITNESS.verifier()])[0] == cp


def test_open_rejects_notes_that_are_not_checkpoints():
    data = sign_note("just a note\n", [LOG])
    with pytest.raises(CheckpointError):
        open_checkpoint(data, [LOG.verifier()])
    with pytest.raises(NoteError):
        open_checkpoint(data, [WITNESS.verifier()])


def test_sign_checkpoint_misuse():
    with pytest.raises(UsageError):
        sign_checkpoint(Checkpoint(LOG.name, 1, ROOT, ("ext",)), LOG)
    with pytest.raises(UsageError):
        sign_checkpoint(Checkpoint("another.example/log", 1, ROOT), LOG)


@pytest.mark.skipif(not (CONFORMANCE / "signed-notes.json").exists(), reason="shared data absent")
def test_conformance_checkpoint():
    data = json.loads((CONFORMANCE / "signed-notes.json").read_text(encoding="utf-8"))
    vector = next(v for v in data["vectors"] if v["desc"] == "checkpoint signed by the log key")
    log = Verifier.from_vkey(data["keys"]["log_vkey"])
    cp, note = open_checkpoint(vector["note"].encode(), [log], origin="helpline.example/log")
    assert cp.size == 42 and cp.origin == "helpline.example/log"
    signer = Signer.from_go_private_key(data["keys"]["log_skey_go_format"])
    assert sign_checkpoint(cp, signer) == vector["note"].encode()


# --------------------------------------------------------------------------
# Properties

line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in range(0x20)]),
    min_size=1,
    max_size=40,
)
checkpoints = st.builds(
    Checkpoint,
    origin=line_text,
    size=st.one_of(st.integers(0, 1000), st.integers(0, MAX_TREE_SIZE)),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(line_text, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(cp=checkpoints)
def test_property_print_parse_round_trip(cp):
    assert Checkpoint.parse(cp.to_text()) == cp


@settings(max_examples=200, deadline=None)
@given(cp=checkpoints, data=st.data())
def test_property_text_mutation(cp, data):
    """Any one-character change is rejected, or it is a different checkpoint that
    prints back to exactly the changed text (never a silent normalisation)."""
    text = cp.to_text()
    position = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.characters(blacklist_categories=("Cs",)))
    kind = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    if kind == "replace":
        mutated = text[:position] + char + text[position + 1 :]
    elif kind == "delete":
        mutated = text[:position] + text[position + 1 :]
    else:
        mutated = text[:position] + char + text[position:]
    try:
        parsed = Checkpoint.parse(mutated)
    except CheckpointError:
        return
    assert parsed.to_text() == mutated
    assert (parsed == cp) == (mutated == text)


def test_every_byte_of_the_fixed_fields_matters():
    # Changes inside the size and root-hash lines either fail or change the value.
    cp = Checkpoint("o", 1234, ROOT)
    text = cp.to_text()
    for i in range(2, len(text)):
        for c in "0159AZaz+/=\n x":
            if c == text[i]:
                continue
            mutated = text[:i] + c + text[i + 1 :]
            try:
                parsed = Checkpoint.parse(mutated)
            except CheckpointError:
                continue
            assert parsed != cp and parsed.to_text() == mutated


@settings(max_examples=200, deadline=None)
@given(cp=checkpoints.map(lambda c: Checkpoint(LOG.name, c.size, c.root_hash)), data=st.data())
def test_property_signed_checkpoint_mutation(cp, data):
    signed = sign_checkpoint(cp, LOG)
    position = data.draw(st.integers(0, len(signed) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != signed[position]))
    mutated = signed[:position] + bytes([value]) + signed[position + 1 :]
    with pytest.raises((NoteError, CheckpointError)):
        open_checkpoint(mutated, [LOG.verifier()], origin=LOG.name)
