"""The fingerprints of a new case, checked and turned into submission entries.

Input: the JSON objects `ncii-node hash --json` and the web page produce,
    {"signal": "pdq", "fingerprint": "<64 hex>", "quality": 87}
    {"signal": "md5", "fingerprint": "<32 hex>"}
    {"signal": "vpdq", "fingerprint": [{"pdq": ..., "quality": ..., "timestamp": ...}, ...]}
optionally with "low_quality" (ignored: recomputed here). Any other field is refused,
"path" above all: a file name says something about the person and must not reach
the helpline.

Degenerate fingerprints -- those that can only cause false matches, as the hash of
a blank picture or of an empty file (`Signal.is_degenerate` in protocol/signals.py)
-- are refused, all of them named in one message, so that the person can remove
them and send the others.

Per-case caps (`check_caps`, `[cases]` in config.toml, spec/parts/cases.md §5) are sized
for what a real person has, not for what the log can hold: at most 50 photos, 10
videos (an MD5 and a vPDQ each) and 3,600 video frames in all (an hour of video at one
frame a second). A case above them is refused whole, saying which cap and what to do.

Output: one Submission per distinct (signal, fingerprint) -- a photo picked twice is
submitted once -- with the quality when the signal has one, a label saying whether it
came from an image or a video, and the day (whole UTC days since 1970) of submission.
Nothing else the person gave goes into an entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.entries import Submission, encode_entry
from protocol.errors import ProtocolError
from protocol.signals import LOW_QUALITY, SIGNALS

ALLOWED_FIELDS = {"signal", "fingerprint", "quality", "low_quality"}
LABEL_OF_SIGNAL = {"pdq": "image", "md5": "video", "vpdq": "video"}


class FingerprintError(ValueError):
    """A fingerprint cannot be accepted; the message names which one and why."""


class DegenerateFingerprints(FingerprintError):
    """Fingerprints that can only cause false matches; `positions` are their 1-based
    places in the list sent."""

    def __init__(self, message: str, positions: list[int]):
        super().__init__(message)
        self.positions = positions


def check_caps(fingerprints: list[CaseFingerprint], caps) -> None:
    """Raise FingerprintError naming the first cap (`caps`: [cases] of the config:
    max_photos, max_videos, max_video_frames) the case goes beyond."""
    count = {name: sum(fp.signal == name for fp in fingerprints) for name in ("pdq", "md5", "vpdq")}
    frames = sum(fp.frames for fp in fingerprints)
    for what, have, cap, advice in (
            ("photos", count["pdq"], caps.max_photos, "Open a second case for the others"),
            ("videos (MD5)", count["md5"], caps.max_videos, "Open a second case for the others"),
            ("videos (vPDQ)", count["vpdq"], caps.max_videos, "Open a second case for the others"),
            ("video frames in all", frames, caps.max_video_frames,
             "Send the longest videos in a case of their own, or cut them into shorter parts")):
        if have > cap:
            raise FingerprintError(f"a case holds at most {cap} {what}; this one has {have}. {advice}, "
                                   "or ask the helpline for help.")


@dataclass(frozen=True)
class CaseFingerprint:
    signal: str
    entry: bytes          # the encoded submission entry (the log leaf)
    low_quality: bool
    frames: int = 0       # vPDQ frames (0 for photos and MD5)


def _is_low_quality(signal: str, canonical: bytes, quality: int | None) -> bool:
    if signal == "vpdq":
        frames = SIGNALS["vpdq"].frames(canonical)
        return all(f.quality < LOW_QUALITY for f in frames)
    return quality is not None and quality < LOW_QUALITY


def parse_fingerprints(items: object, *, caps, day: int) -> list[CaseFingerprint]:
    """`caps`: [cases] of the config (node.config.CasesSection)."""
    if not isinstance(items, list) or not items:
        raise FingerprintError("fingerprints must be a non-empty list of objects like "
                               '{"signal": "pdq", "fingerprint": "<64 hex>", "quality": 87}')
    if len(items) > caps.max_fingerprints:
        raise FingerprintError(f"a case holds at most {caps.max_fingerprints} fingerprints; {len(items)} were sent. "
                               "Open a second case for the others.")
    seen: set[bytes] = set()
    out: list[CaseFingerprint] = []
    degenerate: list[tuple[int, str]] = []
    for number, item in enumerate(items, start=1):
        where = f"fingerprint {number}"
        if not isinstance(item, dict):
            raise FingerprintError(f"{where} must be an object with signal and fingerprint")
        if "path" in item:
            raise FingerprintError(f"{where} carries a file name (\"path\"); send fingerprints only, "
                                   "never file names")
        extra = sorted(set(map(str, item)) - ALLOWED_FIELDS)
        if extra:
            raise FingerprintError(f"{where} has unknown fields: {', '.join(extra)}")
        signal_name = item.get("signal")
        signal = SIGNALS.get(signal_name) if isinstance(signal_name, str) else None
        if signal is None:
            raise FingerprintError(f"{where}: signal must be one of {', '.join(SIGNALS)}")
        quality = item.get("quality")
        try:
            canonical = signal.parse_json(item.get("fingerprint"))
            signal.check_quality(quality)  # md5 and vpdq carry none (vPDQ frames have their own)
            entry = Submission(signal.name, canonical, quality, (LABEL_OF_SIGNAL[signal.name],), day)
            data = encode_entry(entry)
        except ProtocolError as exc:
            raise FingerprintError(f"{where}: {exc}") from None
        reason = signal.is_degenerate(canonical)
        if reason is not None:
            degenerate.append((number, reason))
            continue
        if data in seen:
            continue
        seen.add(data)
        frames = len(SIGNALS["vpdq"].frames(canonical)) if signal.name == "vpdq" else 0
        out.append(CaseFingerprint(signal.name, data, _is_low_quality(signal.name, canonical, quality), frames))
    if degenerate:
        raise DegenerateFingerprints(
            "nothing was registered: these fingerprints can only cause false matches (hashes of no "
            "content, such as a blank picture or an empty file gives), so the helpline does not publish "
            "them. Remove them and send the others. "
            + " ".join(f"Fingerprint {number}: {reason}." for number, reason in degenerate),
            [number for number, _ in degenerate])
    check_caps(out, caps)
    return out
