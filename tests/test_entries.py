"""The entry grammar: round trips, strictness of bytes and JSON, key rotation."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.entries import (
    LABELS,
    MAX_DAY,
    MAX_ORIGIN,
    MAX_TARGETS,
    VERDICTS,
    WITHDRAWAL_REASONS,
    Acknowledgement,
    Announcement,
    Publication,
    Feedback,
    Submission,
    Withdrawal,
    decode_entry,
    encode_entry,
    entry_and_bytes_from_json,
    entry_from_json,
    entry_to_json,
    kind_name,
    rotation_message,
    verify_rotation,
)
from protocol.errors import EntryError, UsageError
from protocol.note import Signer, Verifier
from protocol.signals import MD5, PDQ, VPDQ, VpdqFrame

ORIGIN = "helpline.example/log"
OLD_KEY = Signer(ORIGIN, bytes(32))
NEW_KEY = Signer(ORIGIN, bytes([1]) * 32)
NEW_VKEY = NEW_KEY.verifier_key()

# --- strategies -------------------------------------------------------------------

labels_st = st.sets(st.sampled_from(LABELS)).map(lambda s: tuple(x for x in LABELS if x in s))
frames_st = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 100), st.integers(0, 2**32 - 1)),
    min_size=1, max_size=8,
).map(lambda fs: VPDQ.from_frames([VpdqFrame(*f) for f in sorted(fs, key=lambda f: f[2])]))

submissions = st.one_of(
    st.builds(Submission, st.just("pdq"), st.binary(min_size=32, max_size=32),
              st.none() | st.integers(0, 100), labels_st, st.integers(0, MAX_DAY)),
    st.builds(Submission, st.just("md5"), st.binary(min_size=16, max_size=16),
              st.none(), labels_st, st.integers(0, MAX_DAY)),
    st.builds(Submission, st.just("vpdq"), frames_st, st.none(), labels_st, st.integers(0, MAX_DAY)),
)
withdrawals = st.builds(
    Withdrawal,
    st.sets(st.integers(0, 2**64 - 1), min_size=1, max_size=40).map(lambda s: tuple(sorted(s))),
    st.sampled_from(WITHDRAWAL_REASONS),
)
origin_chars = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "+")
feedbacks = st.builds(
    Feedback,
    st.text(alphabet=origin_chars, min_size=1, max_size=MAX_ORIGIN),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.sampled_from(VERDICTS),
)
name_st = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
    min_size=1, max_size=25,
)
url_st = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["https", "http"]),
    st.from_regex(r"[a-z0-9-]{1,20}\.example(:[0-9]{1,4})?", fullmatch=True),
    st.from_regex(r"(/[A-Za-z0-9._~%-]{0,12}){0,3}(\?[a-z=&]{0,10})?", fullmatch=True),
)
rotation_st = st.none() | st.binary(min_size=64, max_size=64)
announcements = st.builds(
    lambda name, contact, policy, sig: Announcement(
        name, contact, policy, None if sig is None else NEW_VKEY, sig),
    name_st, url_st, url_st, rotation_st,
)
acknowledgements = st.builds(
    Acknowledgement,
    st.text(alphabet=origin_chars, min_size=1, max_size=MAX_ORIGIN),
    st.integers(1, 2**63 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**63 - 1),
    st.integers(0, 999),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=64, max_size=64),
    st.none() | st.builds(Publication, st.binary(min_size=4, max_size=4), st.integers(0, 2**63 - 1),
                          st.binary(min_size=64, max_size=64)),
)
entries = st.one_of(submissions, withdrawals, feedbacks, announcements, acknowledgements)

SMALL = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Typical entries of every kind, for the exhaustive checks.
TYPICAL = [
    Submission("pdq", PDQ.examples()[0], 87, ("nude", "image"), 19800),
    Submission("pdq", PDQ.examples()[1]),
    Submission("md5", MD5.examples()[0], None, ("video",), 1),
    Submission("vpdq", VPDQ.examples()[1], None, ("semi-nude", "video"), 20000),
    Withdrawal((3, 4, 900), "duplicate"),
    Feedback("platform.example/feedback", 7, bytes(range(32)), "disputed-false-match"),
    Announcement("Hilfe", "https://h.example/c", "http://h.example/p"),
    Announcement("Hilfe", "https://h.example/c", "http://h.example/p", NEW_VKEY,
                 OLD_KEY.sign(rotation_message(NEW_VKEY))),
    Acknowledgement("helpline.example/log", 44, bytes(range(32)), 1742300000, 250, bytes(range(32, 64)),
                    bytes(range(64)), Publication(b"\x01\x02\x03\x04", 1742299999, bytes(range(64, 128)))),
]


# --- round trips -----------------------------------------------------------------


@given(entries)
@SMALL
def test_round_trip(entry):
    data = encode_entry(entry)
    assert len(data) <= 65535
    assert decode_entry(data) == entry
    assert encode_entry(decode_entry(data)) == data
    view = json.loads(json.dumps(entry_to_json(entry)))
    assert view["kind"] == kind_name(entry)
    assert entry_from_json(view) == entry
    assert entry_and_bytes_from_json(view) == (entry, data)


@pytest.mark.parametrize("entry", TYPICAL, ids=lambda e: kind_name(e))
def test_decode_accepts_any_bytes_like(entry):
    data = encode_entry(entry)
    assert decode_entry(bytearray(data)) == entry
    assert decode_entry(memoryview(data)) == entry


def test_typical_pdq_submission_layout():
    entry = TYPICAL[0]
    data = encode_entry(entry)
    assert len(data) == 44
    assert data[:12].hex() == "01" "01" "01" "57" "0009" "00004d58" "0020"
    assert data[12:] == entry.fingerprint


# --- strictness of the bytes --------------------------------------------------------


def _check_mutant(original, mutated: bytes) -> None:
    """A changed byte string is refused, or is the canonical encoding of another entry."""
    try:
        decoded = decode_entry(mutated)
    except EntryError as e:
        assert e.offset is not None and 0 <= e.offset <= len(mutated)
        return
    assert decoded != original
    assert encode_entry(decoded) == mutated


@pytest.mark.parametrize("entry", TYPICAL, ids=lambda e: kind_name(e))
def test_every_single_byte_change(entry):
    data = encode_entry(entry)
    for i in range(len(data)):
        for value in range(256):
            if value != data[i]:
                _check_mutant(entry, data[:i] + bytes([value]) + data[i + 1:])


@given(entries, st.data())
@SMALL
def test_random_byte_changes(entry, data):
    encoded = encode_entry(entry)
    for _ in range(20):
        i = data.draw(st.integers(0, len(encoded) - 1))
        value = data.draw(st.integers(0, 255).filter(lambda v: v != encoded[i]))
        _check_mutant(entry, encoded[:i] + bytes([value]) + encoded[i + 1:])


@given(entries)
@SMALL
def test_every_truncation_and_extension_is_refused(entry):
    data = encode_entry(entry)
    for end in range(len(data)):
        with pytest.raises(EntryError) as caught:
            decode_entry(data[:end])
        assert caught.value.offset is not None
    for extra in (b"\x00", b"\x01\x01"):
        with pytest.raises(EntryError) as caught:
            decode_entry(data + extra)
        assert caught.value.offset == len(data)


@given(st.sampled_from([b"\x01\x01", b"\x01\x02", b"\x01\x03", b"\x01\x04", b"\x01\x05"]),
       st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_raise_only_entry_error(head, tail):
    try:
        entry = decode_entry(head + tail)
    except EntryError as e:
        assert e.offset is not None
        return
    assert encode_entry(entry) == head + tail


def test_error_names_the_offset():
    with pytest.raises(EntryError, match=r"unknown entry kind 9 \(at byte 1\)"):
        decode_entry(b"\x01\x09")
    with pytest.raises(EntryError, match=r"version 2 .*\(at byte 0\)"):
        decode_entry(b"\x02\x01" + bytes(42))


# --- strictness of the JSON view --------------------------------------------------------

PDQ_HEX = PDQ.examples()[0].hex()


def test_minimal_json_lines_and_defaults():
    s = entry_from_json({"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX})
    assert s == Submission("pdq", PDQ.examples()[0], None, (), 0)
    w = entry_from_json({"kind": "withdrawal", "targets": [3, 4]})
    assert w == Withdrawal((3, 4), "withdrawn-by-person")
    a = entry_from_json({"kind": "announcement", "display_name": "X", "contact_url": "https://x.example",
                         "policy_url": "https://x.example/p"})
    assert a.new_vkey is None and a.rotation_signature is None
    assert entry_to_json(s) == {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX,
                                "quality": None, "labels": [], "day": None}


def test_json_upper_case_hex_is_read_and_written_lower_case():
    s = entry_from_json({"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX.upper()})
    assert entry_to_json(s)["fingerprint"] == PDQ_HEX


def test_json_days():
    base = {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX}
    assert entry_from_json({**base, "day": "1970-01-02"}).day == 1
    assert entry_from_json({**base, "day": "2024-02-29"}).day == 19782
    assert entry_from_json({**base, "day": "9999-12-31"}).day == MAX_DAY
    assert entry_from_json({**base, "day": None}).day == 0
    for bad in ["1970-01-01", "1969-12-31", "2023-02-29", "2024-1-01", "2024-01-01T00:00:00", "20240101",
                19782, "２０２４-01-01"]:
        with pytest.raises(EntryError, match="day"):
            entry_from_json({**base, "day": bad})


BAD_JSON = [
    ("not an object", ["kind", "submission"], "object"),
    ("no kind", {"signal": "pdq", "fingerprint": PDQ_HEX}, "kind"),
    ("unknown kind", {"kind": "deletion", "targets": [1]}, "kind"),
    ("unknown field", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "case": "A1"},
     "unknown field.*case"),
    ("missing field", {"kind": "submission", "signal": "pdq"}, "fingerprint"),
    ("unknown signal", {"kind": "submission", "signal": "sha1", "fingerprint": PDQ_HEX}, "signal"),
    ("short fingerprint", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX[:-2]}, "fingerprint"),
    ("quality as text", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "quality": "87"},
     "quality"),
    ("quality as boolean", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "quality": True},
     "quality"),
    ("quality 101", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "quality": 101}, "quality"),
    ("md5 with quality", {"kind": "submission", "signal": "md5", "fingerprint": "00" * 16, "quality": 80},
     "no quality"),
    ("unknown label", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "labels": ["porn"]},
     "labels"),
    ("labels out of order",
     {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "labels": ["video", "nude"]}, "labels"),
    ("repeated label",
     {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "labels": ["nude", "nude"]}, "labels"),
    ("labels as text", {"kind": "submission", "signal": "pdq", "fingerprint": PDQ_HEX, "labels": "nude"},
     "labels"),
    ("no targets", {"kind": "withdrawal", "targets": []}, "targets"),
    ("too many targets", {"kind": "withdrawal", "targets": list(range(MAX_TARGETS + 1))}, "targets"),
    ("unsorted targets", {"kind": "withdrawal", "targets": [4, 3]}, "increasing"),
    ("repeated target", {"kind": "withdrawal", "targets": [3, 3]}, "increasing"),
    ("negative target", {"kind": "withdrawal", "targets": [-1]}, "target"),
    ("target too large", {"kind": "withdrawal", "targets": [2**64]}, "target"),
    ("target as text", {"kind": "withdrawal", "targets": ["3"]}, "target"),
    ("unknown reason", {"kind": "withdrawal", "targets": [3], "reason": "changed-mind"}, "reason"),
    ("feedback origin with space",
     {"kind": "feedback", "origin": "a b", "index": 1, "leaf_hash": "00" * 32, "verdict": "removed"}, "origin"),
    ("feedback origin too long",
     {"kind": "feedback", "origin": "a" * 256, "index": 1, "leaf_hash": "00" * 32, "verdict": "removed"},
     "origin"),
    ("feedback unknown verdict",
     {"kind": "feedback", "origin": "a", "index": 1, "leaf_hash": "00" * 32, "verdict": "blocked"}, "verdict"),
    ("feedback short leaf hash",
     {"kind": "feedback", "origin": "a", "index": 1, "leaf_hash": "00" * 31, "verdict": "removed"}, "leaf_hash"),
    ("feedback leaf hash not hex",
     {"kind": "feedback", "origin": "a", "index": 1, "leaf_hash": "zz" * 32, "verdict": "removed"}, "leaf_hash"),
    ("announcement mailto contact",
     {"kind": "announcement", "display_name": "X", "contact_url": "mailto:help@x.example",
      "policy_url": "https://x.example/p"}, "contact_url"),
    ("announcement contact with user",
     {"kind": "announcement", "display_name": "X", "contact_url": "https://me@x.example/",
      "policy_url": "https://x.example/p"}, "contact_url"),
    ("announcement URL without host",
     {"kind": "announcement", "display_name": "X", "contact_url": "https:///path",
      "policy_url": "https://x.example/p"}, "contact_url"),
    ("announcement URL with bad port",
     {"kind": "announcement", "display_name": "X", "contact_url": "https://x.example:99999/",
      "policy_url": "https://x.example/p"}, "contact_url"),
    ("announcement non-ASCII URL",
     {"kind": "announcement", "display_name": "X", "contact_url": "https://zürich.example/",
      "policy_url": "https://x.example/p"}, "contact_url"),
    ("announcement empty name",
     {"kind": "announcement", "display_name": "", "contact_url": "https://x.example",
      "policy_url": "https://x.example/p"}, "display_name"),
    ("announcement name with newline",
     {"kind": "announcement", "display_name": "a\nb", "contact_url": "https://x.example",
      "policy_url": "https://x.example/p"}, "display_name"),
    ("announcement name of 101 bytes",
     {"kind": "announcement", "display_name": "a" * 101, "contact_url": "https://x.example",
      "policy_url": "https://x.example/p"}, "display_name"),
    ("announcement rotation without signature",
     {"kind": "announcement", "display_name": "X", "contact_url": "https://x.example",
      "policy_url": "https://x.example/p", "new_vkey": NEW_VKEY}, "both"),
    ("announcement rotation with a bad key",
     {"kind": "announcement", "display_name": "X", "contact_url": "https://x.example",
      "policy_url": "https://x.example/p", "new_vkey": NEW_VKEY[:-4] + "AAA=",
      "rotation_signature": "00" * 64}, "new_vkey"),
    ("announcement short signature",
     {"kind": "announcement", "display_name": "X", "contact_url": "https://x.example",
      "policy_url": "https://x.example/p", "new_vkey": NEW_VKEY, "rotation_signature": "00" * 63},
     "rotation_signature"),
    ("acknowledgement without signature",
     {"kind": "acknowledgement", "origin": "h.example/log", "size": 3, "root_hash": "00" * 32, "timestamp": 1,
      "public_key": "00" * 32}, "signature"),
    ("acknowledgement of the empty tree",
     {"kind": "acknowledgement", "origin": "h.example/log", "size": 0, "root_hash": "00" * 32, "timestamp": 1,
      "public_key": "00" * 32, "signature": "00" * 64}, "size"),
    ("acknowledgement milliseconds 1000",
     {"kind": "acknowledgement", "origin": "h.example/log", "size": 3, "root_hash": "00" * 32, "timestamp": 1,
      "milliseconds": 1000, "public_key": "00" * 32, "signature": "00" * 64}, "milliseconds"),
    ("acknowledgement timestamp as a string",
     {"kind": "acknowledgement", "origin": "h.example/log", "size": 3, "root_hash": "00" * 32, "timestamp": "1",
      "public_key": "00" * 32, "signature": "00" * 64}, "timestamp"),
    ("acknowledgement root of 31 bytes",
     {"kind": "acknowledgement", "origin": "h.example/log", "size": 3, "root_hash": "00" * 31, "timestamp": 1,
      "public_key": "00" * 32, "signature": "00" * 64}, "root_hash"),
]


@pytest.mark.parametrize("obj, pattern", [(o, p) for _, o, p in BAD_JSON], ids=[d for d, _, _ in BAD_JSON])
def test_bad_json_is_refused_with_a_clear_message(obj, pattern):
    with pytest.raises(EntryError, match=pattern):
        entry_from_json(obj)
    with pytest.raises(EntryError, match=pattern):
        entry_and_bytes_from_json(obj)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**64) | st.floats() | st.text(max_size=70)
    | st.sampled_from([PDQ_HEX, "pdq", "md5", "vpdq", "nude", "removed", "https://x.example", NEW_VKEY]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
json_fields = st.sampled_from(["signal", "fingerprint", "quality", "labels", "day", "targets", "reason", "origin",
                               "index", "leaf_hash", "verdict", "display_name", "contact_url", "policy_url",
                               "new_vkey", "rotation_signature", "size", "root_hash", "timestamp", "milliseconds",
                               "public_key", "signature", "publication", "other"])


@given(st.sampled_from(["submission", "withdrawal", "feedback", "announcement", "acknowledgement", None, 1, []]),
       st.dictionaries(json_fields, json_values, max_size=7))
@SMALL
def test_arbitrary_json_raises_only_entry_error(kind, fields):
    try:
        entry = entry_from_json({"kind": kind, **fields})
    except EntryError:
        return
    assert entry_from_json(entry_to_json(entry)) == entry


# --- encoding checks the dataclass --------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        Submission("pdq", bytes(31)),
        Submission("pdq", "00" * 32),
        Submission("pdq", bytes(32), 50, ["nude"]),
        Submission("pdq", bytes(32), 50, ("image", "nude")),
        Submission("pdq", bytes(32), 50, (["nude"],)),
        Submission(["pdq"], bytes(32)),
        Submission("pdq", bytes(32), day=-1),
        Submission("pdq", bytes(32), day=MAX_DAY + 1),
        Submission("vpdq", bytes(2)),
        Withdrawal([1, 2]),
        Withdrawal((True,)),
        Feedback("", 1, bytes(32), "removed"),
        Feedback("a", 1, bytearray(32), "removed"),
        Announcement("X", "https://x.example", "https://x.example", None, bytes(64)),
        Acknowledgement("a", 0, bytes(32), 1, 0, bytes(32), bytes(64)),
        Acknowledgement("a", 1, bytes(32), 1, 1000, bytes(32), bytes(64)),
        Acknowledgement("a", 1, bytes(32), -1, 0, bytes(32), bytes(64)),
        Acknowledgement("a", 1, bytes(32), 1, 0, bytes(31), bytes(64)),
        Acknowledgement("a b", 1, bytes(32), 1, 0, bytes(32), bytes(64)),
        Acknowledgement("a", 1, bytes(32), 1, 0, bytes(32), bytes(64), Publication(b"abc", 1, bytes(64))),
        Acknowledgement("a", 1, bytes(32), 1, 0, bytes(32), bytes(64), Publication(b"abcd", 2**63, bytes(64))),
    ],
)
def test_encode_refuses_invalid_values(entry):
    with pytest.raises(EntryError):
        encode_entry(entry)


def test_encode_refuses_what_is_not_an_entry():
    with pytest.raises(UsageError):
        encode_entry({"kind": "withdrawal", "targets": [1]})  # type: ignore[arg-type]


# --- key rotation ------------------------------------------------------------------


def test_rotation_message_and_verification():
    assert rotation_message(NEW_VKEY) == b"ncii-node/key-rotation/v1\n" + NEW_VKEY.encode() + b"\n"
    current = Verifier.from_vkey(OLD_KEY.verifier_key())
    good = TYPICAL[-2]
    assert verify_rotation(decode_entry(encode_entry(good)), current)
    # Signed by the wrong key, or naming another new key than the one signed.
    assert not verify_rotation(good, Verifier.from_vkey(NEW_VKEY))
    other = Signer(ORIGIN, bytes([2]) * 32).verifier_key()
    assert not verify_rotation(
        Announcement(good.display_name, good.contact_url, good.policy_url, other, good.rotation_signature), current)
    assert not verify_rotation(TYPICAL[-3], current)  # no rotation at all
