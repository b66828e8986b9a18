"""Signal types: parsing both ways, distances, and the vPDQ match rule on hand-built videos."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import SignalError
from protocol.signals import (
    DEFAULT_PDQ_THRESHOLD,
    LOW_QUALITY,
    MAX_VPDQ_FRAMES,
    MD5,
    PDQ,
    SIGNALS,
    SIGNALS_BY_CODE,
    VPDQ,
    VpdqFrame,
    signal_named,
)

pdq_bytes = st.binary(min_size=32, max_size=32)


def flip(pdq: bytes, bits: int, start: int = 0) -> bytes:
    """`pdq` with `bits` bits flipped, starting at bit `start`."""
    value = int.from_bytes(pdq, "big")
    for b in range(start, start + bits):
        value ^= 1 << b
    return value.to_bytes(32, "big")


# --- the registry -----------------------------------------------------------


def test_registry_names_and_codes():
    assert set(SIGNALS) == {"pdq", "md5", "vpdq"}
    assert {s.name: s.code for s in SIGNALS.values()} == {"pdq": 1, "md5": 2, "vpdq": 3}
    assert all(SIGNALS_BY_CODE[s.code] is s for s in SIGNALS.values())
    assert signal_named("vpdq") is VPDQ
    with pytest.raises(SignalError, match="unknown signal type"):
        signal_named("PDQ")
    with pytest.raises(SignalError):
        signal_named(None)


@pytest.mark.parametrize("signal", list(SIGNALS.values()), ids=list(SIGNALS))
def test_generic_interface(signal):
    """What matching code does with any signal, without knowing which one it is."""
    examples = signal.examples()
    assert len(examples) >= 2
    for value in examples:
        signal.validate(value)
        assert signal.parse_bytes(bytearray(value)) == value
        as_json = json.loads(json.dumps(signal.to_json(value)))
        assert signal.parse_json(as_json) == value
        assert signal.distance(value, value) == 0
        assert signal.matches(value, value)
    assert not signal.matches(examples[0], examples[1])
    assert signal.distance(examples[0], examples[1]) > 0


# --- PDQ ----------------------------------------------------------------------


@given(pdq_bytes)
@settings(max_examples=100)
def test_pdq_hex_round_trip(value):
    text = PDQ.to_json(value)
    assert text == value.hex() and len(text) == 64
    assert PDQ.parse_json(text) == value
    assert PDQ.parse_json(text.upper()) == value  # case-insensitive in, lowercase out
    assert PDQ.parse_bytes(value) == value


@pytest.mark.parametrize(
    "bad", ["", "0" * 63, "0" * 65, "g" * 64, " " + "0" * 63, "0" * 62 + "\n", 5, None, b"0" * 64, ["0" * 64]]
)
def test_pdq_bad_json(bad):
    with pytest.raises(SignalError):
        PDQ.parse_json(bad)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_pdq_bad_bytes(bad):
    with pytest.raises(SignalError) as caught:
        PDQ.parse_bytes(bad)
    assert caught.value.offset is not None
    with pytest.raises(SignalError):
        PDQ.validate("00" * 32)  # a hex string is not bytes


@given(pdq_bytes, pdq_bytes, pdq_bytes)
@settings(max_examples=100)
def test_pdq_distance_is_a_metric(a, b, c):
    d = PDQ.distance
    assert d(a, a) == 0
    assert d(a, b) == d(b, a)
    assert (d(a, b) == 0) == (a == b)
    assert d(a, c) <= d(a, b) + d(b, c)
    assert d(a, b) == sum(bin(x ^ y).count("1") for x, y in zip(a, b))
    assert 0 <= d(a, b) <= 256


def test_pdq_threshold_boundary():
    a = PDQ.examples()[0]
    assert DEFAULT_PDQ_THRESHOLD == 31
    assert PDQ.distance(a, flip(a, 31)) == 31 and PDQ.matches(a, flip(a, 31))
    assert PDQ.distance(a, flip(a, 32)) == 32 and not PDQ.matches(a, flip(a, 32))
    assert PDQ.matches(a, flip(a, 32), threshold=32)
    assert PDQ.distance(bytes(32), b"\xff" * 32) == 256


def test_quality():
    for q in (None, 0, 49, 50, 100):
        PDQ.check_quality(q)
    for q in (-1, 101, True, 50.0, "50"):
        with pytest.raises(SignalError):
            PDQ.check_quality(q)
    assert LOW_QUALITY == 50
    assert PDQ.is_low_quality(49) and not PDQ.is_low_quality(50) and not PDQ.is_low_quality(None)
    for signal in (MD5, VPDQ):  # a quality belongs to PDQ only (vPDQ has one per frame)
        signal.check_quality(None)
        with pytest.raises(SignalError, match="no quality"):
            signal.check_quality(80)


# --- MD5 ----------------------------------------------------------------------


@given(st.binary(min_size=16, max_size=16))
@settings(max_examples=50)
def test_md5_round_trip_and_exact_match(value):
    assert MD5.parse_json(MD5.to_json(value).upper()) == value
    assert MD5.matches(value, value)
    other = bytes([value[0] ^ 1]) + value[1:]
    assert not MD5.matches(value, other) and MD5.distance(value, other) == 1


@pytest.mark.parametrize("bad", ["0" * 31, "0" * 33, "z" * 32, 0, None])
def test_md5_bad_json(bad):
    with pytest.raises(SignalError):
        MD5.parse_json(bad)


# --- vPDQ: encoding ------------------------------------------------------------

frames_strategy = st.lists(
    st.tuples(pdq_bytes, st.integers(0, 100), st.integers(0, 2**32 - 1)), min_size=1, max_size=30
).map(lambda fs: [VpdqFrame(p, q, t) for p, q, t in sorted(fs, key=lambda f: f[2])])


@given(frames_strategy)
@settings(max_examples=60)
def test_vpdq_round_trips(frames):
    data = VPDQ.from_frames(frames)
    assert len(data) == 2 + 37 * len(frames)
    assert VPDQ.frames(data) == frames
    as_json = json.loads(json.dumps(VPDQ.to_json(data)))
    assert VPDQ.parse_json(as_json) == data
    assert VPDQ.to_json(VPDQ.parse_json(as_json)) == as_json


def test_vpdq_json_timestamps_are_milliseconds():
    pdq = PDQ.examples()[0].hex()
    data = VPDQ.parse_json([
        {"pdq": pdq.upper(), "quality": 90, "timestamp": 0},
        {"pdq": pdq, "quality": 90, "timestamp": 0.0004},   # rounds to 0 ms
        {"pdq": pdq, "quality": 90, "timestamp": 1.2345},   # rounds to 1234 or 1235 ms
        {"pdq": pdq, "quality": 90, "timestamp": 3600},
    ])
    assert [f.timestamp_ms for f in VPDQ.frames(data)][:2] == [0, 0]
    assert VPDQ.frames(data)[2].timestamp_ms in (1234, 1235)
    assert VPDQ.to_json(data)[3] == {"pdq": pdq, "quality": 90, "timestamp": 3600.0}


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "frames",
        [["pdq", 90, 0]],
        [{"pdq": "00" * 32, "quality": 90}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": 0, "frame": 1}],
        [{"pdq": "00" * 31, "quality": 90, "timestamp": 0}],
        [{"pdq": "00" * 32, "quality": 101, "timestamp": 0}],
        [{"pdq": "00" * 32, "quality": True, "timestamp": 0}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": -1}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": float("nan")}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": float("inf")}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": "0"}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": 2**32 / 1000}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": 1e308}],  # finite, but not once in milliseconds
        [{"pdq": "00" * 32, "quality": 90, "timestamp": 10**400}],
        [{"pdq": "00" * 32, "quality": 90, "timestamp": 2}, {"pdq": "00" * 32, "quality": 90, "timestamp": 1}],
    ],
)
def test_vpdq_bad_json(bad):
    with pytest.raises(SignalError):
        VPDQ.parse_json(bad)


def test_vpdq_frame_limit():
    frames = [VpdqFrame(bytes(32), 100, i) for i in range(MAX_VPDQ_FRAMES)]
    assert len(VPDQ.from_frames(frames)) == 2 + 37 * MAX_VPDQ_FRAMES
    with pytest.raises(SignalError, match="1 to 1770 frames"):
        VPDQ.from_frames(frames + [VpdqFrame(bytes(32), 100, MAX_VPDQ_FRAMES)])
    assert 12 + 2 + 37 * MAX_VPDQ_FRAMES <= 65535 < 12 + 2 + 37 * (MAX_VPDQ_FRAMES + 1)


@pytest.mark.parametrize(
    "data, offset",
    [
        (b"", 0),
        (b"\x00", 1),
        (b"\x00\x00", 0),
        (b"\x00\x01" + bytes(36), 38),
        (b"\x00\x01" + bytes(38), 39),
        (b"\x00\x01" + bytes(32) + b"\x65" + bytes(4), 34),
    ],
)
def test_vpdq_bad_bytes(data, offset):
    with pytest.raises(SignalError) as caught:
        VPDQ.validate(data)
    assert caught.value.offset == offset


# --- vPDQ: the match rule -------------------------------------------------------

# Far-apart PDQ hashes for hand-built videos (SHA-256 outputs: about 128 bits apart).
BASE = [hashlib.sha256(b"frame %d" % i).digest() for i in range(12)]


def test_base_hashes_are_far_apart():
    for i, a in enumerate(BASE):
        for b in BASE[i + 1:]:
            assert PDQ.distance(a, b) > 2 * DEFAULT_PDQ_THRESHOLD


def video(*frames: tuple[bytes, int]) -> bytes:
    """A vPDQ value from (pdq, quality) pairs, one per second."""
    return VPDQ.from_frames([VpdqFrame(p, q, i * 1000) for i, (p, q) in enumerate(frames)])


def test_identical_videos_match():
    v = video(*[(BASE[i], 90) for i in range(5)])
    assert VPDQ.compare(v, v) == (100.0, 100.0)
    assert VPDQ.matches(v, v)
    assert VPDQ.distance(v, v) == 0


def test_query_coverage_threshold_is_80_percent():
    indexed = video(*[(BASE[i], 90) for i in range(5)])
    four_of_five = video(*[(flip(BASE[i], 10), 90) for i in range(4)], (BASE[10], 90))
    three_of_five = video(*[(flip(BASE[i], 10), 90) for i in range(3)], (BASE[10], 90), (BASE[11], 90))
    assert VPDQ.compare(four_of_five, indexed) == (80.0, 80.0)
    assert VPDQ.matches(four_of_five, indexed)
    assert VPDQ.distance(four_of_five, indexed) == 20.0
    assert VPDQ.compare(three_of_five, indexed) == (60.0, 60.0)
    assert not VPDQ.matches(three_of_five, indexed)
    assert VPDQ.matches(three_of_five, indexed, query_coverage=60.0)


def test_frame_distance_boundary():
    indexed = video((BASE[0], 90))
    assert VPDQ.matches(video((flip(BASE[0], 31), 90)), indexed)
    assert not VPDQ.matches(video((flip(BASE[0], 32), 90)), indexed)
    assert VPDQ.matches(video((flip(BASE[0], 32), 90)), indexed, distance_threshold=32)


def test_low_quality_frames_are_ignored():
    indexed = video(*[(BASE[i], 90) for i in range(4)])
    # Four good matching frames and two poor frames that match nothing: 100 % of the good ones.
    query = video(*[(BASE[i], 90) for i in range(4)], (BASE[8], 49), (BASE[9], 0))
    assert VPDQ.compare(query, indexed) == (100.0, 100.0)
    assert VPDQ.matches(query, indexed)
    # The same poor frames counted (threshold 0): 4 of 6.
    assert VPDQ.compare(query, indexed, quality_threshold=0).query_percent == pytest.approx(400 / 6)
    assert not VPDQ.matches(query, indexed, quality_threshold=0)
    # A good frame in the indexed video is ignored once its quality is low.
    assert VPDQ.compare(indexed, video((BASE[0], 49), (BASE[1], 90))) == (25.0, 100.0)


def test_repeated_frames_count_once():
    indexed = video((BASE[0], 90))
    # Four identical frames that match and one that does not: by frame 80 %, but as a
    # set of unique hashes {BASE[0], BASE[7]} only 50 %.
    query = video(*[(BASE[0], 90)] * 4, (BASE[7], 90))
    assert VPDQ.compare(query, indexed) == (50.0, 100.0)
    assert not VPDQ.matches(query, indexed)


def test_indexed_coverage_parameter():
    # A 2-frame clip of a 10-frame indexed video: all of the query, 20 % of the indexed.
    indexed = video(*[(BASE[i], 90) for i in range(10)])
    clip = video((BASE[3], 90), (BASE[4], 90))
    assert VPDQ.compare(clip, indexed) == (100.0, 20.0)
    assert VPDQ.matches(clip, indexed)  # default indexed coverage 0 %
    assert VPDQ.matches(clip, indexed, indexed_coverage=20.0)
    assert not VPDQ.matches(clip, indexed, indexed_coverage=50.0)
    # The other way round the query coverage is what fails.
    assert VPDQ.compare(indexed, clip) == (20.0, 100.0)
    assert not VPDQ.matches(indexed, clip)


def test_nothing_comparable_never_matches():
    poor = video((BASE[0], 10), (BASE[1], 49))
    good = video((BASE[0], 90))
    assert VPDQ.compare(poor, good) == (0.0, 0.0)
    assert not VPDQ.matches(poor, good, query_coverage=0.0, indexed_coverage=0.0)
    assert not VPDQ.matches(good, poor, query_coverage=0.0, indexed_coverage=0.0)


@given(frames_strategy, frames_strategy)
@settings(max_examples=40)
def test_vpdq_compare_is_symmetric_in_its_two_percentages(a, b):
    va, vb = VPDQ.from_frames(a), VPDQ.from_frames(b)
    forward, backward = VPDQ.compare(va, vb), VPDQ.compare(vb, va)
    assert forward == (backward.indexed_percent, backward.query_percent)
    assert 0.0 <= forward.query_percent <= 100.0 and 0.0 <= forward.indexed_percent <= 100.0


# --- degenerate values (the hash of no content) -------------------------------


def test_degenerate_pdq_hashes():
    zeros, ones = bytes(32), b"\xff" * 32
    assert "all zeros" in PDQ.is_degenerate(zeros)
    assert "all ones" in PDQ.is_degenerate(ones)
    # Within the match distance of all zeros / all ones: it would match a black picture.
    assert "only 31 of its 256 bits" in PDQ.is_degenerate(flip(zeros, DEFAULT_PDQ_THRESHOLD))
    assert PDQ.matches(flip(zeros, DEFAULT_PDQ_THRESHOLD), zeros)
    assert PDQ.is_degenerate(flip(zeros, DEFAULT_PDQ_THRESHOLD + 1)) is None
    assert "31 of its 256 bits clear" in PDQ.is_degenerate(flip(ones, DEFAULT_PDQ_THRESHOLD))
    assert PDQ.is_degenerate(flip(ones, DEFAULT_PDQ_THRESHOLD + 1)) is None
    # Real pictures' hashes (about half the bits set) are not.
    assert all(PDQ.is_degenerate(value) is None for value in PDQ.examples())


@given(st.sets(st.integers(0, 255), max_size=64), st.booleans())
@settings(max_examples=150)
def test_pdq_degenerate_iff_it_matches_a_blank_picture(bits, from_ones):
    value = sum(1 << b for b in bits)
    value = value ^ ((1 << 256) - 1) if from_ones else value
    value = value.to_bytes(32, "big")
    blank = PDQ.is_degenerate(value) is not None
    assert blank == (PDQ.matches(value, bytes(32)) or PDQ.matches(value, b"\xff" * 32))


def test_degenerate_md5_is_the_empty_file():
    assert "empty file" in MD5.is_degenerate(hashlib.md5(b"").digest())
    assert MD5.is_degenerate(hashlib.md5(b"\0").digest()) is None
    assert MD5.is_degenerate(bytes(16)) is None  # odd, but some file could have it


def test_degenerate_vpdq_only_when_every_frame_is():
    black, nearly_black, real = bytes(32), flip(bytes(32), 3), PDQ.examples()[0]
    assert "every frame" in VPDQ.is_degenerate(video((black, 0), (nearly_black, 90), (b"\xff" * 32, 90)))
    assert VPDQ.is_degenerate(video((black, 0), (real, 90), (black, 0))) is None  # a black opening is fine
    assert all(VPDQ.is_degenerate(value) is None for value in VPDQ.examples())


def test_every_signal_says_whether_a_value_is_degenerate():
    for signal in SIGNALS.values():
        assert all(isinstance(signal.is_degenerate(v), (str, type(None))) for v in signal.examples())
