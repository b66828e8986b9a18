"""The entry grammar: what one leaf of a log says, in bytes and in JSON.

A log leaf is the exact bytes of one entry (leaf hash = SHA-256(0x00 || bytes), see
protocol.merkle). Entries are binary, versioned and strict; spec/parts/entries.md is
the normative description and this module must stay true to it.

Invariants kept here:
- `decode_entry` accepts only canonical bytes: for every `b` it accepts,
  `encode_entry(decode_entry(b)) == b`. Anything else raises EntryError naming the
  byte offset where decoding failed.
- `entry_from_json(entry_to_json(e)) == e` for every valid entry `e`, and
  `entry_and_bytes_from_json(obj) == (entry_from_json(obj), encode_entry(entry_from_json(obj)))`.
- No field can hold free text about a person: codes and labels come from closed
  vocabularies; the only strings describe a node (an organisation) or name a log.
"""

from __future__ import annotations

import datetime
import re
import struct
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import urlsplit

from .errors import EntryError, KeyFormatError, SignalError, UsageError
from .note import SIGNATURE_TYPE_ED25519, decode_vkey
from .signals import SIGNALS, SIGNALS_BY_CODE, Signal

VERSION = 1
MAX_ENTRY_SIZE = 65535
"""An entry bundle prefixes each entry with a uint16 length, so no entry is longer."""

KIND_SUBMISSION = 1
KIND_WITHDRAWAL = 2
KIND_FEEDBACK = 3
KIND_ANNOUNCEMENT = 4
KIND_ACKNOWLEDGEMENT = 5

NO_QUALITY = 0xFF
"""Quality byte of a submission that gives no quality score."""

# Closed vocabularies. The position in each tuple is the binary code (labels: the bit
# number; reasons and verdicts: the code minus one). Append only, never reorder.
LABELS: tuple[str, ...] = ("nude", "semi-nude", "sexual", "image", "video", "synthetic")
WITHDRAWAL_REASONS: tuple[str, ...] = ("withdrawn-by-person", "duplicate", "error", "not-eligible", "abuse")
VERDICTS: tuple[str, ...] = ("matched-pending-review", "removed", "not-violating", "disputed-false-match")

DEFAULT_WITHDRAWAL_REASON = "withdrawn-by-person"

MAX_TARGETS = 1024
MAX_INDEX = 2**64 - 1
MAX_ORIGIN = 255
MAX_DISPLAY_NAME = 100
MAX_URL = 2048
MAX_VKEY = 512
ROTATION_SIGNATURE_SIZE = 64
MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size (and cosignature timestamp): C2SP keeps both below 2**63."""
MAX_MILLISECONDS = 999

EPOCH = datetime.date(1970, 1, 1)
MAX_DAY = (datetime.date.max - EPOCH).days
"""Day number of 9999-12-31, the last day the JSON view can write."""

ROTATION_CONTEXT = b"ncii-node/key-rotation/v1\n"


@dataclass(frozen=True, slots=True)
class Submission:
    """A fingerprint to match, with coarse context. `day` = whole days since
    1970-01-01 UTC, 0 when not given; `labels` in the order of LABELS."""

    signal: str
    fingerprint: bytes
    quality: int | None = None
    labels: tuple[str, ...] = ()
    day: int = 0


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """Stop matching earlier entries of the same log (their indices, increasing)."""

    targets: tuple[int, ...]
    reason: str = DEFAULT_WITHDRAWAL_REASON


@dataclass(frozen=True, slots=True)
class Feedback:
    """A platform's verdict on entry `index` of the log `origin`, whose leaf hash it
    quotes so the verdict cannot be moved to another entry."""

    origin: str
    index: int
    leaf_hash: bytes
    verdict: str


@dataclass(frozen=True, slots=True)
class Announcement:
    """Who runs this log; optionally a move to a new log key, signed by the current one
    over `rotation_message(new_vkey)`."""

    display_name: str
    contact_url: str
    policy_url: str
    new_vkey: str | None = None
    rotation_signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """The acknowledged log's own cosignature on the acknowledged checkpoint: when that
    log says it published it (its acknowledgement key's C2SP tlog-cosignature, as the
    acknowledger found it on the checkpoint it fetched; key ID, timestamp, signature)."""

    key_id: bytes
    timestamp: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A C2SP tlog-cosignature/v1 (Ed25519) by the publishing node's acknowledgement key
    over the checkpoint (origin, size, root_hash) of a log it follows, with the
    statement that the node had verified and applied every entry of that tree at
    `timestamp` (POSIX seconds, the cosignature's) + `milliseconds`. The cosigner's name
    is the origin of the log that publishes the entry. `publication`, if the
    acknowledged checkpoint carried one, is that log's own statement of when it
    published it (protocol/acknowledgements.py checks and lifts both)."""

    origin: str
    size: int
    root_hash: bytes
    timestamp: int
    milliseconds: int
    public_key: bytes
    signature: bytes
    publication: Publication | None = None


Entry = Union[Submission, Withdrawal, Feedback, Announcement, Acknowledgement]

_KIND_NAMES = {Submission: "submission", Withdrawal: "withdrawal", Feedback: "feedback", Announcement: "announcement",
               Acknowledgement: "acknowledgement"}

# Labels travel as a bit mask: every set of labels has exactly one encoding, so
# "unsorted" or "repeated" labels cannot even be written in binary.
_LABELS_BY_MASK: dict[int, tuple[str, ...]] = {
    mask: tuple(label for bit, label in enumerate(LABELS) if mask >> bit & 1) for mask in range(1 << len(LABELS))
}
_MASK_BY_LABELS = {labels: mask for mask, labels in _LABELS_BY_MASK.items()}

_SUBMISSION = struct.Struct(">BBBBHIH")  # version kind signal quality labels day fp_len
_WITHDRAWAL = struct.Struct(">BBBH")  # version kind reason count
_FEEDBACK = struct.Struct(">BBBQ32sB")  # version kind verdict index leaf_hash origin_len
_ACKNOWLEDGEMENT = struct.Struct(">BBQHQ32s32s64sB")  # version kind timestamp ms size root key signature origin_len
_PUBLICATION = struct.Struct(">4sQ64s")  # key ID, timestamp, signature
_U16 = struct.Struct(">H")

# Origin and key strings: printable ASCII without space or "+" (C2SP signed-note key
# names and tlog-checkpoint origins must not hold spaces or "+").
_ORIGIN_BYTES = re.compile(rb"[\x21-\x2a\x2c-\x7e]+")
_BAD_ORIGIN_BYTE = re.compile(rb"[^\x21-\x2a\x2c-\x7e]")
_URL_BYTES = re.compile(rb"[\x21-\x7e]+")
_BAD_URL_BYTE = re.compile(rb"[^\x21-\x7e]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def rotation_message(new_vkey: str) -> bytes:
    """The bytes the current log key signs to hand over to `new_vkey`."""
    return ROTATION_CONTEXT + new_vkey.encode("ascii") + b"\n"


def verify_rotation(announcement: Announcement, current_verifier: Any) -> bool:
    """Whether the announcement's rotation signature verifies under the log's current
    key (`current_verifier` has `.verify(message, signature) -> bool`, like
    protocol.note.Verifier). False when the announcement rotates nothing."""
    if announcement.new_vkey is None or announcement.rotation_signature is None:
        return False
    return bool(current_verifier.verify(rotation_message(announcement.new_vkey), announcement.rotation_signature))


# ---------------------------------------------------------------------------
# Checks shared by encoding and by the JSON view (decoding checks as it reads).


def _check_int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise EntryError(f"{what} must be an integer from {low} to {high}, not {value!r:.40}")
    return value


def _check_origin(origin: Any) -> bytes:
    if not isinstance(origin, str) or not origin.isascii():
        raise EntryError(f"origin must be an ASCII string, not {origin!r:.80}")
    raw = origin.encode("ascii")
    if not 1 <= len(raw) <= MAX_ORIGIN or not _ORIGIN_BYTES.fullmatch(raw):
        raise EntryError(
            f"origin must be 1 to {MAX_ORIGIN} printable ASCII characters without spaces or '+', not {origin!r:.80}"
        )
    return raw


def _url_problem(url: str) -> str | None:
    """Why `url` is not an acceptable node URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a bad port
    except ValueError as e:
        return f"cannot be parsed ({e})"
    if not url.startswith(("https://", "http://")):  # urlsplit lower-cases the scheme
        return "must start with https:// or http:// (lower case)"
    if not parts.hostname or "@" in parts.netloc:
        return "must name a host, without user name or password"
    return None


def _check_url(url: Any, what: str) -> bytes:
    if not isinstance(url, str) or not url.isascii():
        raise EntryError(f"{what} must be an ASCII URL (IDN hosts in punycode), not {url!r:.80}")
    raw = url.encode("ascii")
    if not 1 <= len(raw) <= MAX_URL or not _URL_BYTES.fullmatch(raw):
        raise EntryError(f"{what} must be 1 to {MAX_URL} printable ASCII characters without spaces")
    problem = _url_problem(url)
    if problem:
        raise EntryError(f"{what} {problem}: {url!r:.80}")
    return raw


def _display_name_problem(name: str) -> str | None:
    if not name.isprintable():
        return "must not hold control or invisible characters"
    if name != name.strip():
        return "must not start or end with a space"
    return None


def _check_display_name(name: Any) -> bytes:
    if not isinstance(name, str):
        raise EntryError(f"display_name must be a string, not {type(name).__name__}")
    raw = name.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= MAX_DISPLAY_NAME:
        raise EntryError(f"display_name must be 1 to {MAX_DISPLAY_NAME} bytes of UTF-8, it is {len(raw)}")
    problem = _display_name_problem(name)
    if problem:
        raise EntryError(f"display_name {problem}: {name!r:.80}")
    return raw


def _vkey_problem(vkey: str) -> str | None:
    """Why `vkey` is not an Ed25519 signed-note verifier key, or None."""
    try:
        decode_vkey(vkey, SIGNATURE_TYPE_ED25519)
    except KeyFormatError as e:
        return str(e)
    return None


def _check_vkey(vkey: Any) -> bytes:
    if not isinstance(vkey, str) or not vkey.isascii():
        raise EntryError(f"new_vkey must be an ASCII string, not {vkey!r:.80}")
    raw = vkey.encode("ascii")
    if not 1 <= len(raw) <= MAX_VKEY:
        raise EntryError(f"new_vkey must be 1 to {MAX_VKEY} characters, it is {len(raw)}")
    problem = _vkey_problem(vkey)
    if problem:
        raise EntryError(f"new_vkey is not an Ed25519 verifier key: {problem}")
    return raw


def _signal_for(name: Any) -> Signal:
    signal = SIGNALS.get(name) if isinstance(name, str) else None
    if signal is None:
        raise EntryError(f"unknown signal {name!r:.40}; known: {', '.join(SIGNALS)}")
    return signal


def _signal_message(e: SignalError) -> str:
    """A SignalError's message without the '(at byte N)' that ProtocolError appended."""
    message = str(e)
    if e.offset is not None:
        message = message.removesuffix(f" (at byte {e.offset})")
    return message


# ---------------------------------------------------------------------------
# Encoding


def encode_entry(entry: Entry) -> bytes:
    """The canonical bytes of `entry`, after checking every field (EntryError)."""
    kind = type(entry)
    if kind is Submission:
        data = _encode_submission(entry)  # type: ignore[arg-type]
    elif kind is Withdrawal:
        data = _encode_withdrawal(entry)  # type: ignore[arg-type]
    elif kind is Feedback:
        data = _encode_feedback(entry)  # type: ignore[arg-type]
    elif kind is Announcement:
        data = _encode_announcement(entry)  # type: ignore[arg-type]
    elif kind is Acknowledgement:
        data = _encode_acknowledgement(entry)  # type: ignore[arg-type]
    else:
        raise UsageError("encode_entry takes a Submission, Withdrawal, Feedback, Announcement or Acknowledgement, "
                         f"not {kind.__name__}")
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryError(f"the entry would be {len(data)} bytes, more than the {MAX_ENTRY_SIZE} allowed")
    return data


def _encode_submission(e: Submission) -> bytes:
    signal = _signal_for(e.signal)
    try:
        signal.validate(e.fingerprint)
        signal.check_quality(e.quality)
    except SignalError as err:
        raise EntryError(_signal_message(err)) from None
    labels = e.labels
    ok = isinstance(labels, tuple) and all(type(label) is str for label in labels)
    mask = _MASK_BY_LABELS.get(labels) if ok else None
    if mask is None:
        raise EntryError(
            f"labels must be distinct, from {', '.join(LABELS)}, in that order; got {e.labels!r:.120}"
        )
    day = _check_int(e.day, 0, MAX_DAY, "day")
    fingerprint = e.fingerprint
    if len(fingerprint) > MAX_ENTRY_SIZE - _SUBMISSION.size:
        raise EntryError(f"the fingerprint is {len(fingerprint)} bytes, too long for one entry")
    quality = NO_QUALITY if e.quality is None else e.quality
    return _SUBMISSION.pack(VERSION, KIND_SUBMISSION, signal.code, quality, mask, day, len(fingerprint)) + fingerprint


def _encode_withdrawal(e: Withdrawal) -> bytes:
    targets = e.targets
    if not isinstance(targets, tuple) or not 1 <= len(targets) <= MAX_TARGETS:
        raise EntryError(f"targets must be a tuple of 1 to {MAX_TARGETS} entry indices")
    previous = -1
    for t in targets:
        _check_int(t, 0, MAX_INDEX, "every target")
        if t <= previous:
            raise EntryError(f"targets must be strictly increasing (no repeats); {t} follows {previous}")
        previous = t
    if e.reason not in WITHDRAWAL_REASONS:
        raise EntryError(f"unknown withdrawal reason {e.reason!r:.40}; known: {', '.join(WITHDRAWAL_REASONS)}")
    reason = WITHDRAWAL_REASONS.index(e.reason) + 1
    return _WITHDRAWAL.pack(VERSION, KIND_WITHDRAWAL, reason, len(targets)) + struct.pack(f">{len(targets)}Q", *targets)


def _encode_feedback(e: Feedback) -> bytes:
    origin = _check_origin(e.origin)
    _check_int(e.index, 0, MAX_INDEX, "index")
    if not isinstance(e.leaf_hash, bytes) or len(e.leaf_hash) != 32:
        raise EntryError("leaf_hash must be 32 bytes (a SHA-256 leaf hash)")
    if e.verdict not in VERDICTS:
        raise EntryError(f"unknown verdict {e.verdict!r:.40}; known: {', '.join(VERDICTS)}")
    verdict = VERDICTS.index(e.verdict) + 1
    return _FEEDBACK.pack(VERSION, KIND_FEEDBACK, verdict, e.index, e.leaf_hash, len(origin)) + origin


def _encode_announcement(e: Announcement) -> bytes:
    name = _check_display_name(e.display_name)
    contact = _check_url(e.contact_url, "contact_url")
    policy = _check_url(e.policy_url, "policy_url")
    parts = [bytes((VERSION, KIND_ANNOUNCEMENT, len(name))), name,
             _U16.pack(len(contact)), contact, _U16.pack(len(policy)), policy]
    if e.new_vkey is None and e.rotation_signature is None:
        parts.append(b"\x00")
    elif e.new_vkey is None or e.rotation_signature is None:
        raise EntryError("a key rotation needs both new_vkey and rotation_signature (or neither)")
    else:
        vkey = _check_vkey(e.new_vkey)
        sig = e.rotation_signature
        if not isinstance(sig, bytes) or len(sig) != ROTATION_SIGNATURE_SIZE:
            raise EntryError(f"rotation_signature must be {ROTATION_SIGNATURE_SIZE} bytes (Ed25519)")
        parts += [b"\x01", _U16.pack(len(vkey)), vkey, sig]
    return b"".join(parts)


def _check_bytes(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise EntryError(f"{what} must be {size} bytes")
    return value


def _encode_acknowledgement(e: Acknowledgement) -> bytes:
    origin = _check_origin(e.origin)
    _check_int(e.timestamp, 0, MAX_TREE_SIZE, "timestamp")
    _check_int(e.milliseconds, 0, MAX_MILLISECONDS, "milliseconds")
    _check_int(e.size, 1, MAX_TREE_SIZE, "size")
    _check_bytes(e.root_hash, 32, "root_hash")
    _check_bytes(e.public_key, 32, "public_key (an Ed25519 public key)")
    _check_bytes(e.signature, 64, "signature (an Ed25519 signature)")
    head = _ACKNOWLEDGEMENT.pack(VERSION, KIND_ACKNOWLEDGEMENT, e.timestamp, e.milliseconds, e.size, e.root_hash,
                                 e.public_key, e.signature, len(origin)) + origin
    p = e.publication
    if p is None:
        return head + b"\x00"
    if type(p) is not Publication:
        raise EntryError("publication must be a Publication or None")
    _check_bytes(p.key_id, 4, "publication key_id")
    _check_int(p.timestamp, 0, MAX_TREE_SIZE, "publication timestamp")
    _check_bytes(p.signature, 64, "publication signature (an Ed25519 signature)")
    return head + b"\x01" + _PUBLICATION.pack(p.key_id, p.timestamp, p.signature)


# ---------------------------------------------------------------------------
# Decoding


def decode_entry(data: bytes | bytearray | memoryview) -> Entry:
    """The entry whose canonical bytes are `data`; EntryError (with the byte offset)
    for anything else."""
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < 2:
        raise EntryError("an entry starts with a version byte and a kind byte; it is cut short", offset=n)
    if n > MAX_ENTRY_SIZE:
        raise EntryError(f"an entry is at most {MAX_ENTRY_SIZE} bytes, this one is {n}", offset=MAX_ENTRY_SIZE)
    if data[0] != VERSION:
        raise EntryError(f"unknown entry version {data[0]} (this software reads version {VERSION})", offset=0)
    kind = data[1]
    if kind == KIND_SUBMISSION:
        return _decode_submission(data, n)
    if kind == KIND_WITHDRAWAL:
        return _decode_withdrawal(data, n)
    if kind == KIND_FEEDBACK:
        return _decode_feedback(data, n)
    if kind == KIND_ANNOUNCEMENT:
        return _decode_announcement(data, n)
    if kind == KIND_ACKNOWLEDGEMENT:
        return _decode_acknowledgement(data, n)
    raise EntryError(f"unknown entry kind {kind}", offset=1)


def _short(what: str, n: int) -> EntryError:
    return EntryError(f"the entry is cut short inside {what}", offset=n)


def _decode_submission(data: bytes, n: int) -> Submission:
    if n < 12:
        raise _short("the submission header", n)
    _, _, code, quality, mask, day, fp_len = _SUBMISSION.unpack_from(data)
    signal = SIGNALS_BY_CODE.get(code)
    if signal is None:
        raise EntryError(f"unknown signal type code {code}", offset=2)
    if quality == NO_QUALITY:
        quality = None
    elif quality > 100:
        raise EntryError(f"quality {quality} is above 100 (255 means none)", offset=3)
    elif not signal.has_quality:
        raise EntryError(f"a {signal.name} fingerprint has no quality score (the byte must be 255)", offset=3)
    labels = _LABELS_BY_MASK.get(mask)
    if labels is None:
        raise EntryError(f"unknown label bits in 0x{mask:04x}", offset=4)
    if day > MAX_DAY:
        raise EntryError(f"day {day} is after 9999-12-31", offset=6)
    end = 12 + fp_len
    if n != end:
        if n < end:
            raise _short("the fingerprint", n)
        raise EntryError(f"{n - end} bytes follow the end of the submission", offset=end)
    fingerprint = data[12:]
    if signal.size is not None:
        if fp_len != signal.size:
            raise EntryError(f"a {signal.name} fingerprint is {signal.size} bytes, not {fp_len}", offset=10)
    else:
        try:
            signal.validate(fingerprint)
        except SignalError as e:
            raise EntryError(_signal_message(e), offset=12 + (e.offset or 0)) from None
    return Submission(signal.name, fingerprint, quality, labels, day)


def _decode_withdrawal(data: bytes, n: int) -> Withdrawal:
    if n < 5:
        raise _short("the withdrawal header", n)
    _, _, reason, count = _WITHDRAWAL.unpack_from(data)
    if not 1 <= reason <= len(WITHDRAWAL_REASONS):
        raise EntryError(f"unknown withdrawal reason code {reason}", offset=2)
    if not 1 <= count <= MAX_TARGETS:
        raise EntryError(f"a withdrawal names 1 to {MAX_TARGETS} entries, not {count}", offset=3)
    end = 5 + 8 * count
    if n != end:
        if n < end:
            raise _short("the target list", n)
        raise EntryError(f"{n - end} bytes follow the end of the withdrawal", offset=end)
    targets = struct.unpack_from(f">{count}Q", data, 5)
    for i in range(1, count):
        if targets[i] <= targets[i - 1]:
            raise EntryError("targets must be strictly increasing", offset=5 + 8 * i)
    return Withdrawal(targets, WITHDRAWAL_REASONS[reason - 1])


def _decode_feedback(data: bytes, n: int) -> Feedback:
    if n < _FEEDBACK.size:
        raise _short("the feedback header", n)
    _, _, verdict, index, leaf_hash, origin_len = _FEEDBACK.unpack_from(data)
    if not 1 <= verdict <= len(VERDICTS):
        raise EntryError(f"unknown verdict code {verdict}", offset=2)
    origin = _trailing_origin(data, n, _FEEDBACK.size, origin_len, "feedback")
    return Feedback(origin, index, leaf_hash, VERDICTS[verdict - 1])


def _trailing_origin(data: bytes, n: int, start: int, origin_len: int, what: str) -> str:
    """The origin string that ends an entry: `origin_len` (the byte at start - 1)
    bytes from `start`, nothing after them."""
    if origin_len == 0:
        raise EntryError("the origin must not be empty", offset=start - 1)
    end = start + origin_len
    if n != end:
        if n < end:
            raise _short("the origin", n)
        raise EntryError(f"{n - end} bytes follow the end of the {what}", offset=end)
    return _check_origin_bytes(data[start:], start)


def _check_origin_bytes(origin: bytes, start: int) -> str:
    if not _ORIGIN_BYTES.fullmatch(origin):
        bad = _BAD_ORIGIN_BYTE.search(origin).start()  # type: ignore[union-attr]
        raise EntryError("the origin may hold only printable ASCII without spaces or '+'", offset=start + bad)
    return origin.decode("ascii")


def _decode_acknowledgement(data: bytes, n: int) -> Acknowledgement:
    if n < _ACKNOWLEDGEMENT.size:
        raise _short("the acknowledgement header", n)
    _, _, timestamp, ms, size, root, key, signature, origin_len = _ACKNOWLEDGEMENT.unpack_from(data)
    if timestamp > MAX_TREE_SIZE:
        raise EntryError(f"timestamp {timestamp} is 2**63 or more", offset=2)
    if ms > MAX_MILLISECONDS:
        raise EntryError(f"milliseconds {ms} is above {MAX_MILLISECONDS}", offset=10)
    if not 1 <= size <= MAX_TREE_SIZE:
        raise EntryError(f"an acknowledged tree has 1 to 2**63-1 entries, not {size}", offset=12)
    start = _ACKNOWLEDGEMENT.size
    if origin_len == 0:
        raise EntryError("the origin must not be empty", offset=start - 1)
    flag_at = start + origin_len
    if n <= flag_at:
        raise _short("the origin and the publication flag", n)
    flag = data[flag_at]
    end = flag_at + 1 + (_PUBLICATION.size if flag == 1 else 0)
    if flag > 1:
        raise EntryError(f"the publication flag is 0 or 1, not {flag}", offset=flag_at)
    if n != end:
        if n < end:
            raise _short("the publication cosignature", n)
        raise EntryError(f"{n - end} bytes follow the end of the acknowledgement", offset=end)
    origin = _check_origin_bytes(data[start:flag_at], start)
    publication = None
    if flag == 1:
        key_id, published, published_sig = _PUBLICATION.unpack_from(data, flag_at + 1)
        if published > MAX_TREE_SIZE:
            raise EntryError(f"publication timestamp {published} is 2**63 or more", offset=flag_at + 5)
        publication = Publication(key_id, published, published_sig)
    return Acknowledgement(origin, size, root, timestamp, ms, key, signature, publication)


class _Reader:
    """A cursor over entry bytes for the variable-length announcement."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int):
        self.data = data
        self.pos = pos

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise _short(what, len(self.data))
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return _U16.unpack(self.take(2, what))[0]


def _read_url(r: _Reader, what: str) -> str:
    at = r.pos
    size = r.u16(f"the length of {what}")
    if not 1 <= size <= MAX_URL:
        raise EntryError(f"{what} is 1 to {MAX_URL} bytes, not {size}", offset=at)
    start = r.pos
    raw = r.take(size, what)
    if not _URL_BYTES.fullmatch(raw):
        bad = _BAD_URL_BYTE.search(raw).start()  # type: ignore[union-attr]
        raise EntryError(f"{what} may hold only printable ASCII without spaces", offset=start + bad)
    url = raw.decode("ascii")
    problem = _url_problem(url)
    if problem:
        raise EntryError(f"{what} {problem}", offset=start)
    return url


def _decode_announcement(data: bytes, n: int) -> Announcement:
    r = _Reader(data, 2)
    size = r.u8("the length of display_name")
    if not 1 <= size <= MAX_DISPLAY_NAME:
        raise EntryError(f"display_name is 1 to {MAX_DISPLAY_NAME} bytes, not {size}", offset=2)
    raw = r.take(size, "display_name")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EntryError("display_name is not valid UTF-8", offset=3 + e.start) from None
    problem = _display_name_problem(name)
    if problem:
        raise EntryError(f"display_name {problem}", offset=3)
    contact = _read_url(r, "contact_url")
    policy = _read_url(r, "policy_url")
    at = r.pos
    flag = r.u8("the key rotation flag")
    new_vkey = signature = None
    if flag == 1:
        at = r.pos
        size = r.u16("the length of new_vkey")
        if not 1 <= size <= MAX_VKEY:
            raise EntryError(f"new_vkey is 1 to {MAX_VKEY} bytes, not {size}", offset=at)
        start = r.pos
        raw = r.take(size, "new_vkey")
        if not raw.isascii():
            raise EntryError("new_vkey must be ASCII", offset=start)
        new_vkey = raw.decode("ascii")
        problem = _vkey_problem(new_vkey)
        if problem:
            raise EntryError(f"new_vkey is not an Ed25519 verifier key: {problem}", offset=start)
        signature = r.take(ROTATION_SIGNATURE_SIZE, "rotation_signature")
    elif flag != 0:
        raise EntryError(f"the key rotation flag is 0 or 1, not {flag}", offset=at)
    if r.pos != n:
        raise EntryError(f"{n - r.pos} bytes follow the end of the announcement", offset=r.pos)
    return Announcement(name, contact, policy, new_vkey, signature)


# ---------------------------------------------------------------------------
# The JSON view


def day_to_json(day: int) -> str | None:
    """"YYYY-MM-DD" for a day number, None for 0 (not given)."""
    if day == 0:
        return None
    return (EPOCH + datetime.timedelta(days=day)).isoformat()


def day_from_json(value: Any) -> int:
    """The day number of "YYYY-MM-DD" (1970-01-02 or later), 0 for None."""
    if value is None:
        return 0
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise EntryError(f'day must be "YYYY-MM-DD" or null, not {value!r:.40}')
    try:
        day = (datetime.date.fromisoformat(value) - EPOCH).days
    except ValueError:
        raise EntryError(f"day {value!r} is not a date") from None
    if day < 1:
        raise EntryError(f"day must be 1970-01-02 or later (day 0 means 'not given'), not {value}")
    return day


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """The JSON view of a valid entry, every field present."""
    encode_entry(entry)  # refuse to show an entry that could not be logged
    if isinstance(entry, Submission):
        signal = SIGNALS[entry.signal]
        return {
            "kind": "submission",
            "signal": entry.signal,
            "fingerprint": signal.to_json(entry.fingerprint),
            "quality": entry.quality,
            "labels": list(entry.labels),
            "day": day_to_json(entry.day),
        }
    if isinstance(entry, Withdrawal):
        return {"kind": "withdrawal", "targets": list(entry.targets), "reason": entry.reason}
    if isinstance(entry, Feedback):
        return {
            "kind": "feedback",
            "origin": entry.origin,
            "index": entry.index,
            "leaf_hash": entry.leaf_hash.hex(),
            "verdict": entry.verdict,
        }
    if isinstance(entry, Acknowledgement):
        return {
            "kind": "acknowledgement",
            "origin": entry.origin,
            "size": entry.size,
            "root_hash": entry.root_hash.hex(),
            "timestamp": entry.timestamp,
            "milliseconds": entry.milliseconds,
            "public_key": entry.public_key.hex(),
            "signature": entry.signature.hex(),
            "publication": None if entry.publication is None else {
                "key_id": entry.publication.key_id.hex(), "timestamp": entry.publication.timestamp,
                "signature": entry.publication.signature.hex()},
        }
    return {
        "kind": "announcement",
        "display_name": entry.display_name,
        "contact_url": entry.contact_url,
        "policy_url": entry.policy_url,
        "new_vkey": entry.new_vkey,
        "rotation_signature": None if entry.rotation_signature is None else entry.rotation_signature.hex(),
    }


# Per kind: required fields, and optional fields with their defaults (JSON values).
_JSON_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "submission": (("signal", "fingerprint"), {"quality": None, "labels": [], "day": None}),
    "withdrawal": (("targets",), {"reason": DEFAULT_WITHDRAWAL_REASON}),
    "feedback": (("origin", "index", "leaf_hash", "verdict"), {}),
    "announcement": (("display_name", "contact_url", "policy_url"), {"new_vkey": None, "rotation_signature": None}),
    "acknowledgement": (("origin", "size", "root_hash", "timestamp", "public_key", "signature"),
                        {"milliseconds": 0, "publication": None}),
}


def _hex_field(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise EntryError(f"{what} must be {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise EntryError(f"{what} must be {2 * size} hex digits") from None


def _publication_from_json(value: Any) -> Publication | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"key_id", "timestamp", "signature"}:
        raise EntryError('publication must be null or {"key_id": 8 hex, "timestamp": int, "signature": 128 hex}')
    return Publication(_hex_field(value["key_id"], 4, "publication key_id"), value["timestamp"],
                       _hex_field(value["signature"], 64, "publication signature"))


def entry_from_json(obj: Any) -> Entry:
    """The entry shown by a JSON view (a dict as json.loads gives it). Strict: unknown
    fields, wrong types and values outside the grammar raise EntryError."""
    return entry_and_bytes_from_json(obj)[0]


def entry_and_bytes_from_json(obj: Any) -> tuple[Entry, bytes]:
    """`entry_from_json` and the entry's canonical bytes, from one encoding: what an
    append needs (the entry to check against the log, the bytes to log). The
    encoding is itself the last check, with the same messages as for bytes."""
    entry = _entry_from_json_fields(obj)
    return entry, encode_entry(entry)


def _entry_from_json_fields(obj: Any) -> Entry:
    """The entry a JSON view names, checked field by field as far as JSON goes;
    the grammar's checks are left to `encode_entry`."""
    if not isinstance(obj, dict):
        raise EntryError("an entry in JSON is an object with a \"kind\" field")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in _JSON_FIELDS:
        raise EntryError(f"\"kind\" must be one of {', '.join(_JSON_FIELDS)}, not {kind!r:.40}")
    required, optional = _JSON_FIELDS[kind]
    unknown = set(obj) - {"kind", *required, *optional}
    if unknown:
        raise EntryError(f"unknown field(s) in a {kind} entry: {', '.join(sorted(map(str, unknown)))}")
    missing = [f for f in required if f not in obj]
    if missing:
        raise EntryError(f"a {kind} entry needs the field(s): {', '.join(missing)}")
    v = {**optional, **obj}

    entry: Entry
    if kind == "submission":
        signal = _signal_for(v["signal"])
        try:
            fingerprint = signal.parse_json(v["fingerprint"])
        except SignalError as e:
            raise EntryError(f"fingerprint: {e}") from None
        labels = v["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise EntryError("labels must be a list of strings")
        entry = Submission(signal.name, fingerprint, v["quality"], tuple(labels), day_from_json(v["day"]))
    elif kind == "withdrawal":
        targets = v["targets"]
        if not isinstance(targets, list):
            raise EntryError("targets must be a list of entry indices")
        entry = Withdrawal(tuple(targets), v["reason"])
    elif kind == "feedback":
        entry = Feedback(v["origin"], v["index"], _hex_field(v["leaf_hash"], 32, "leaf_hash"), v["verdict"])
    elif kind == "acknowledgement":
        entry = Acknowledgement(v["origin"], v["size"], _hex_field(v["root_hash"], 32, "root_hash"), v["timestamp"],
                                v["milliseconds"], _hex_field(v["public_key"], 32, "public_key"),
                                _hex_field(v["signature"], 64, "signature"), _publication_from_json(v["publication"]))
    else:
        sig = v["rotation_signature"]
        if sig is not None:
            sig = _hex_field(sig, ROTATION_SIGNATURE_SIZE, "rotation_signature")
        entry = Announcement(v["display_name"], v["contact_url"], v["policy_url"], v["new_vkey"], sig)
    return entry


def kind_name(entry: Entry) -> str:
    """"submission", "withdrawal", "feedback", "announcement" or "acknowledgement"."""
    try:
        return _KIND_NAMES[type(entry)]
    except KeyError:
        raise UsageError(f"not an entry: {type(entry).__name__}") from None


def entry_summary_key(prefix: bytes) -> tuple[str, str]:
    """(kind, detail) of an entry from its first three bytes, for counting entries
    without decoding them: detail is the signal of a submission, the verdict of a
    feedback, the reason of a withdrawal, "" for an announcement or an acknowledgement. For entries that
    were validated before (a log's own entries); unknown codes give "unknown"."""
    if len(prefix) < 3:
        return "unknown", ""
    kind, code = prefix[1], prefix[2]
    if kind == KIND_SUBMISSION:
        signal = SIGNALS_BY_CODE.get(code)
        return "submission", signal.name if signal is not None else "unknown"
    vocabulary = {KIND_WITHDRAWAL: ("withdrawal", WITHDRAWAL_REASONS), KIND_FEEDBACK: ("feedback", VERDICTS)}.get(kind)
    if vocabulary is not None:
        name, words = vocabulary
        return name, words[code - 1] if 1 <= code <= len(words) else "unknown"
    return {KIND_ANNOUNCEMENT: ("announcement", ""), KIND_ACKNOWLEDGEMENT: ("acknowledgement", "")}.get(
        kind, ("unknown", ""))
