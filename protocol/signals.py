"""Fingerprint types ("signals"): PDQ, MD5 and vPDQ.

One class per algorithm, in the manner of python-threatexchange's SignalType: each
knows its binary type code, how to parse its JSON and raw-byte forms, how to check a
value, how to compare two values and how to give examples. Code elsewhere looks a
signal up in `SIGNALS` (by name) or `SIGNALS_BY_CODE` (by the byte in an entry) and
calls these methods; it never tests an algorithm's name.

Invariant: every value that leaves this module (from `parse_json`, `parse_bytes`) is
the canonical byte string of its signal, and `to_json(parse_json(v))` is the
canonical JSON form of `v` (lowercase hex, timestamps rounded to milliseconds).
Bad input raises `SignalError`, with `offset=` into the bytes when there are bytes.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any, NamedTuple

from .errors import SignalError

DEFAULT_PDQ_THRESHOLD = 31
"""Largest Hamming distance at which two PDQ hashes match (Meta's recommended default)."""

LOW_QUALITY = 50
"""PDQ quality below this is flagged as low (Meta drops quality <= 49)."""

MAX_QUALITY = 100

DEGENERATE_PDQ_DISTANCE = DEFAULT_PDQ_THRESHOLD
"""A PDQ hash this close to all zeros or all ones is degenerate (see PdqSignal.is_degenerate)."""

EMPTY_FILE_MD5 = bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e")
"""MD5 of no bytes: degenerate."""

VPDQ_QUERY_COVERAGE = 80.0
"""Default share (percent) of the query video's unique frames that must match."""

VPDQ_INDEXED_COVERAGE = 0.0
"""Default share (percent) of the indexed video's unique frames that must match."""

# A vPDQ fingerprint travels inside a submission entry, which is capped at 65,535
# bytes (uint16 length prefix in an entry bundle). The submission header is 12 bytes,
# the frame count 2, each frame 37: floor((65535 - 12 - 2) / 37) = 1770.
VPDQ_FRAME_SIZE = 37
MAX_VPDQ_FRAMES = 1770
MAX_VPDQ_TIMESTAMP_MS = 0xFFFFFFFF

_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}\Z")


class Signal:
    """Base class. Subclasses set `name`, `code`, `size` (fixed byte length or None)
    and `has_quality` (whether a submission may carry a quality score)."""

    name: str
    code: int
    size: int | None
    has_quality: bool

    def parse_json(self, value: Any) -> bytes:
        """The canonical bytes of a fingerprint given in its JSON form."""
        raise NotImplementedError

    def to_json(self, data: bytes) -> Any:
        """The JSON form of canonical fingerprint bytes."""
        raise NotImplementedError

    def parse_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Check raw fingerprint bytes and return them as `bytes`."""
        data = bytes(data)
        self.validate(data)
        return data

    def validate(self, data: bytes) -> None:
        """Raise SignalError unless `data` is a canonical value of this signal."""
        if not isinstance(data, bytes):
            raise SignalError(f"a {self.name} fingerprint must be bytes, not {type(data).__name__}")
        if self.size is not None and len(data) != self.size:
            raise SignalError(
                f"a {self.name} fingerprint is {self.size} bytes, this one is {len(data)}",
                offset=min(len(data), self.size),
            )

    def distance(self, a: bytes, b: bytes) -> float:
        """How far apart two values are: 0 for identical; larger is further."""
        raise NotImplementedError

    def matches(self, query: bytes, indexed: bytes, **params: Any) -> bool:
        """Whether `query` (an upload) matches `indexed` (a logged fingerprint)."""
        raise NotImplementedError

    def examples(self) -> list[bytes]:
        """A few valid values, for tests and documentation."""
        raise NotImplementedError

    def is_degenerate(self, data: bytes) -> str | None:
        """Why a canonical value can only cause false matches (the hash of no content),
        or None. Such values are valid, but a helpline refuses to publish them."""
        return None

    def check_quality(self, quality: int | None) -> None:
        """Raise SignalError unless `quality` is allowed beside a fingerprint of this type."""
        if quality is None:
            return
        if not self.has_quality:
            raise SignalError(f"a {self.name} fingerprint has no quality score; give none")
        if type(quality) is not int or not 0 <= quality <= MAX_QUALITY:
            raise SignalError(f"quality must be an integer from 0 to {MAX_QUALITY}, not {quality!r}")

    @staticmethod
    def is_low_quality(quality: int | None) -> bool:
        """Quality known and below LOW_QUALITY: worth flagging to the person."""
        return quality is not None and quality < LOW_QUALITY

    def __repr__(self) -> str:
        return f"<Signal {self.name} code={self.code}>"


class PdqSignal(Signal):
    """PDQ: a 256-bit perceptual hash of an image; near-duplicates are close in
    Hamming distance."""

    name = "pdq"
    code = 1
    size = 32
    has_quality = True

    def parse_json(self, value: Any) -> bytes:
        if not isinstance(value, str) or not _HEX64.match(value):
            raise SignalError(f"a pdq fingerprint is 64 hex digits, got {value!r:.80}")
        return bytes.fromhex(value)

    def to_json(self, data: bytes) -> str:
        self.validate(data)
        return data.hex()

    def distance(self, a: bytes, b: bytes) -> int:
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()

    def matches(self, query: bytes, indexed: bytes, *, threshold: int = DEFAULT_PDQ_THRESHOLD) -> bool:
        return self.distance(query, indexed) <= threshold

    def is_degenerate(self, data: bytes) -> str | None:
        # PDQ sets one bit per DCT coefficient above their median, so the hash of a
        # picture with any content has about 128 of its 256 bits set. A fully black
        # picture hashes to all zeros; a hash within the match distance of all zeros
        # (or all ones) would match every such blank picture and no real one.
        ones = int.from_bytes(data, "big").bit_count()
        if ones <= DEGENERATE_PDQ_DISTANCE:
            what = "all zeros" if ones == 0 else f"only {ones} of its 256 bits set"
            return (f"this pdq hash is {what}, as a blank (black) picture gives: it would match every "
                    "blank picture and no real one")
        if ones >= 256 - DEGENERATE_PDQ_DISTANCE:
            what = "all ones" if ones == 256 else f"{256 - ones} of its 256 bits clear"
            return (f"this pdq hash is {what}; no picture gives such a hash (a real one has about half "
                    "its bits set), and it would match only other such hashes")
        return None

    def examples(self) -> list[bytes]:
        # PDQ hashes of three synthetic images (gradient, checkerboard, waves).
        return [
            bytes.fromhex("50be04453306004d11924d7f21450f55eaba55d5255d8dfd13a2f5550755ffff"),
            bytes.fromhex("00002a5500002a55025508777d0882fd0000d52857205f28085d5fa020ff5720"),
            bytes.fromhex("229fffe0001f7fe0881fffe0a01fffe0001fffe0001fffe0001f001fffe0001f"),
        ]


class Md5Signal(Signal):
    """MD5 of a file's bytes (StopNCII's video hash): matches only identical files."""

    name = "md5"
    code = 2
    size = 16
    has_quality = False

    def parse_json(self, value: Any) -> bytes:
        if not isinstance(value, str) or not _HEX32.match(value):
            raise SignalError(f"an md5 fingerprint is 32 hex digits, got {value!r:.80}")
        return bytes.fromhex(value)

    def to_json(self, data: bytes) -> str:
        self.validate(data)
        return data.hex()

    def distance(self, a: bytes, b: bytes) -> int:
        return 0 if a == b else 1

    def matches(self, query: bytes, indexed: bytes) -> bool:
        return query == indexed

    def is_degenerate(self, data: bytes) -> str | None:
        if data == EMPTY_FILE_MD5:
            return ("this is the md5 of an empty file (0 bytes), which would match every empty file "
                    "uploaded anywhere; the file was probably not read")
        return None

    def examples(self) -> list[bytes]:
        return [
            bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e"),  # MD5 of no bytes
            bytes.fromhex("9e107d9d372bb6826bd81d3542a419d6"),  # "The quick brown fox jumps over the lazy dog"
        ]


class VpdqFrame(NamedTuple):
    """One sampled frame of a video: its PDQ hash, PDQ quality and time."""

    pdq: bytes
    quality: int
    timestamp_ms: int


class VpdqComparison(NamedTuple):
    """Coverage percentages as Meta's vPDQ computes them."""

    query_percent: float
    indexed_percent: float


_VPDQ_COUNT = struct.Struct(">H")
_VPDQ_FRAME = struct.Struct(">32sBI")
_VPDQ_TIMES = struct.Struct(">33xI")  # only the timestamp of each frame


class VpdqSignal(Signal):
    """vPDQ: PDQ hashes of sampled video frames. A video matches another when enough
    of their unique good-quality frames are within PDQ distance of each other.

    Bytes: uint16 frame count (1..MAX_VPDQ_FRAMES), then per frame 32 bytes PDQ,
    1 byte quality (0..100), uint32 timestamp in milliseconds; big-endian; timestamps
    never decrease."""

    name = "vpdq"
    code = 3
    size = None
    has_quality = False

    def _check(self, data: bytes) -> int:
        """Check canonical vPDQ bytes without building frames; return the frame count.
        Fast: followers run this on every vPDQ submission they read."""
        n = len(data)
        if n < 2:
            raise SignalError("a vpdq fingerprint starts with a 2-byte frame count; it is cut short", offset=n)
        (count,) = _VPDQ_COUNT.unpack_from(data, 0)
        if not 1 <= count <= MAX_VPDQ_FRAMES:
            raise SignalError(f"a vpdq fingerprint has 1 to {MAX_VPDQ_FRAMES} frames, not {count}", offset=0)
        expected = 2 + count * VPDQ_FRAME_SIZE
        if n < expected:
            raise SignalError(f"{count} vpdq frames need {expected} bytes, only {n} given", offset=n)
        if n > expected:
            raise SignalError(f"{n - expected} bytes follow the last of {count} vpdq frames", offset=expected)
        qualities = data[2 + 32 :: VPDQ_FRAME_SIZE]
        if max(qualities) > MAX_QUALITY:
            i = next(i for i, q in enumerate(qualities) if q > MAX_QUALITY)
            raise SignalError(
                f"vpdq frame {i} has quality {qualities[i]}, above {MAX_QUALITY}", offset=2 + i * VPDQ_FRAME_SIZE + 32
            )
        times = [t for (t,) in _VPDQ_TIMES.iter_unpack(memoryview(data)[2:])]
        for i in range(1, count):
            if times[i] < times[i - 1]:
                raise SignalError(
                    f"vpdq frame {i} is earlier than the frame before it", offset=2 + i * VPDQ_FRAME_SIZE + 33
                )
        return count

    def frames(self, data: bytes) -> list[VpdqFrame]:
        """The frames of canonical vPDQ bytes (checked)."""
        self._check(data)
        return [VpdqFrame._make(f) for f in _VPDQ_FRAME.iter_unpack(memoryview(data)[2:])]

    def from_frames(self, frames: list[VpdqFrame] | list[tuple[bytes, int, int]]) -> bytes:
        """Canonical bytes of a list of frames (checked)."""
        if not 1 <= len(frames) <= MAX_VPDQ_FRAMES:
            raise SignalError(f"a vpdq fingerprint has 1 to {MAX_VPDQ_FRAMES} frames, not {len(frames)}")
        parts = [_VPDQ_COUNT.pack(len(frames))]
        for i, (pdq, quality, ms) in enumerate(frames):
            if not isinstance(pdq, bytes) or len(pdq) != 32:
                raise SignalError(f"vpdq frame {i}: the pdq hash must be 32 bytes")
            if type(quality) is not int or not 0 <= quality <= MAX_QUALITY:
                raise SignalError(f"vpdq frame {i}: quality must be an integer from 0 to {MAX_QUALITY}")
            if type(ms) is not int or not 0 <= ms <= MAX_VPDQ_TIMESTAMP_MS:
                raise SignalError(f"vpdq frame {i}: timestamp out of range")
            parts.append(_VPDQ_FRAME.pack(pdq, quality, ms))
        data = b"".join(parts)
        self._check(data)  # the order of timestamps
        return data

    def validate(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise SignalError(f"a vpdq fingerprint must be bytes, not {type(data).__name__}")
        self._check(data)

    def parse_json(self, value: Any) -> bytes:
        if not isinstance(value, list):
            raise SignalError("a vpdq fingerprint is a list of frames {\"pdq\", \"quality\", \"timestamp\"}")
        frames = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise SignalError(f"vpdq frame {i} must be an object with pdq, quality and timestamp")
            extra = set(item) - {"pdq", "quality", "timestamp"}
            if extra:
                raise SignalError(f"vpdq frame {i} has unknown fields: {', '.join(sorted(map(str, extra)))}")
            missing = {"pdq", "quality", "timestamp"} - set(item)
            if missing:
                raise SignalError(f"vpdq frame {i} lacks: {', '.join(sorted(missing))}")
            pdq = item["pdq"]
            if not isinstance(pdq, str) or not _HEX64.match(pdq):
                raise SignalError(f"vpdq frame {i}: pdq is 64 hex digits, got {pdq!r:.80}")
            quality = item["quality"]
            if type(quality) is not int or not 0 <= quality <= MAX_QUALITY:
                raise SignalError(f"vpdq frame {i}: quality must be an integer from 0 to {MAX_QUALITY}, not {quality!r}")
            ts = item["timestamp"]
            if type(ts) not in (int, float) or (type(ts) is float and not math.isfinite(ts)) or ts < 0:
                raise SignalError(f"vpdq frame {i}: timestamp must be a number of seconds >= 0, not {ts!r}")
            # Bound before scaling: 1e308 s is finite, but 1e308 * 1000 is not.
            if ts > MAX_VPDQ_TIMESTAMP_MS / 1000:
                raise SignalError(f"vpdq frame {i}: timestamp {ts} s is beyond {MAX_VPDQ_TIMESTAMP_MS / 1000} s")
            ms = round(ts * 1000)
            if ms > MAX_VPDQ_TIMESTAMP_MS:  # rounding up at the very edge
                raise SignalError(f"vpdq frame {i}: timestamp {ts} s is beyond {MAX_VPDQ_TIMESTAMP_MS / 1000} s")
            frames.append(VpdqFrame(bytes.fromhex(pdq), quality, ms))
        return self.from_frames(frames)

    def to_json(self, data: bytes) -> list[dict[str, Any]]:
        return [
            {"pdq": f.pdq.hex(), "quality": f.quality, "timestamp": f.timestamp_ms / 1000}
            for f in self.frames(data)
        ]

    def unique_frames(self, data: bytes, quality_threshold: int = LOW_QUALITY) -> set[int]:
        """The set of distinct PDQ hashes (as integers) of frames of good enough quality:
        vPDQ matching works on these sets, as python-threatexchange does (filter, then dedupe)."""
        return {
            int.from_bytes(f.pdq, "big") for f in self.frames(data) if f.quality >= quality_threshold
        }

    def compare(
        self,
        query: bytes,
        indexed: bytes,
        *,
        distance_threshold: int = DEFAULT_PDQ_THRESHOLD,
        quality_threshold: int = LOW_QUALITY,
    ) -> VpdqComparison:
        """Percent of the query's unique frames with a frame of the indexed video within
        `distance_threshold`, and the same the other way round. A side with no frame of
        sufficient quality covers 0 %."""
        return _coverage(
            self.unique_frames(query, quality_threshold),
            self.unique_frames(indexed, quality_threshold),
            distance_threshold,
        ) or VpdqComparison(0.0, 0.0)

    def distance(self, a: bytes, b: bytes) -> float:
        """100 minus the query coverage of `a` against `b` (percentage points of the
        query's frames left unmatched); 0 when every good frame of `a` is found in `b`."""
        return 100.0 - self.compare(a, b).query_percent

    def matches(
        self,
        query: bytes,
        indexed: bytes,
        *,
        distance_threshold: int = DEFAULT_PDQ_THRESHOLD,
        quality_threshold: int = LOW_QUALITY,
        query_coverage: float = VPDQ_QUERY_COVERAGE,
        indexed_coverage: float = VPDQ_INDEXED_COVERAGE,
    ) -> bool:
        result = _coverage(
            self.unique_frames(query, quality_threshold),
            self.unique_frames(indexed, quality_threshold),
            distance_threshold,
        )
        if result is None:
            return False  # nothing comparable is never a match (Meta's code divides by zero here)
        return result.query_percent >= query_coverage and result.indexed_percent >= indexed_coverage

    def is_degenerate(self, data: bytes) -> str | None:
        # A video some of whose frames are blank (a black opening) is fine: only a
        # video with nothing but blank frames has nothing to match on.
        if all(PDQ.is_degenerate(f.pdq) for f in self.frames(data)):
            return ("every frame of this vpdq fingerprint has a blank picture's pdq hash (all zeros or "
                    "nearly): it would match every blank video and no real one")
        return None

    def examples(self) -> list[bytes]:
        pdqs = PDQ.examples()
        one_frame = self.from_frames([VpdqFrame(pdqs[0], 80, 0)])
        three = self.from_frames(
            [VpdqFrame(pdqs[1], 100, 0), VpdqFrame(pdqs[2], 100, 1000), VpdqFrame(pdqs[2], 40, 2000)]
        )
        return [one_frame, three]


def _coverage(query: set[int], indexed: set[int], threshold: int) -> VpdqComparison | None:
    """Coverage of two unique-frame sets, computed like python-threatexchange's brute
    matcher: matched count * 100 / set size, on each side. None when a side is empty."""
    if not query or not indexed:
        return None
    q_hit = sum(1 for a in query if any((a ^ b).bit_count() <= threshold for b in indexed))
    t_hit = sum(1 for b in indexed if any((a ^ b).bit_count() <= threshold for a in query))
    return VpdqComparison(q_hit * 100 / len(query), t_hit * 100 / len(indexed))


PDQ = PdqSignal()
MD5 = Md5Signal()
VPDQ = VpdqSignal()

SIGNALS: dict[str, Signal] = {s.name: s for s in (PDQ, MD5, VPDQ)}
"""Every signal type by name ("pdq", "md5", "vpdq")."""

SIGNALS_BY_CODE: dict[int, Signal] = {s.code: s for s in SIGNALS.values()}
"""Every signal type by its binary type code (pdq=1, md5=2, vpdq=3)."""


def signal_named(name: Any) -> Signal:
    """The signal type called `name`, or SignalError listing the known ones."""
    signal = SIGNALS.get(name) if isinstance(name, str) else None
    if signal is None:
        raise SignalError(f"unknown signal type {name!r:.40}; known: {', '.join(SIGNALS)}")
    return signal
