#!/usr/bin/env python3
"""Generate the entry test vectors in spec/vectors/.

  entries.json          valid entries: {desc, json, hex, leaf_hash}
  entries-invalid.json  byte strings every decoder must reject: {desc, hex, error_offset}

Output is deterministic (fixed keys, no randomness): running the script twice gives
identical files, and tests/test_vectors.py checks the committed files equal its output.
Usage: scripts/gen_vectors.py [--check]   (--check: exit 1 if the files are stale)
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.acknowledgements import acknowledge, publication_of  # noqa: E402
from protocol.checkpoint import Checkpoint  # noqa: E402
from protocol.cosignature import CosignatureSigner  # noqa: E402
from protocol.entries import (  # noqa: E402
    LABELS,
    MAX_TREE_SIZE,
    MAX_DAY,
    MAX_DISPLAY_NAME,
    MAX_ORIGIN,
    MAX_TARGETS,
    MAX_URL,
    VERDICTS,
    WITHDRAWAL_REASONS,
    Acknowledgement,
    Announcement,
    EntryError,
    Feedback,
    Submission,
    Withdrawal,
    decode_entry,
    encode_entry,
    entry_to_json,
    rotation_message,
)
from protocol.merkle import leaf_hash  # noqa: E402
from protocol.note import Signer, add_signatures, parse_note  # noqa: E402
from protocol.signals import MAX_VPDQ_FRAMES, MD5, PDQ, VPDQ, VpdqFrame  # noqa: E402

VECTOR_DIR = ROOT / "spec" / "vectors"
ORIGIN = "helpline.example/log"
# Fixed seeds: these keys exist only for the vectors.
CURRENT_KEY = Signer(ORIGIN, bytes(range(32)))
NEXT_KEY = Signer(ORIGIN, bytes(range(32, 64)))
PLATFORM = "platform.example/log"
ACK_KEY = CosignatureSigner(PLATFORM, bytes(range(64, 96)))
HELPLINE_ACK_KEY = CosignatureSigner(ORIGIN, bytes(range(96, 128)))
ACKED = Checkpoint(ORIGIN, 10, leaf_hash(b"root"))


def _published_note():
    """The helpline's checkpoint of size 10 as it serves it: its log signature and its
    publication cosignature (1742299999)."""
    from protocol.checkpoint import sign_checkpoint

    note = sign_checkpoint(ACKED, CURRENT_KEY)
    return parse_note(add_signatures(note, [HELPLINE_ACK_KEY.cosign(ACKED.to_text(), 1742299999)]))


def _pdq(i: int) -> bytes:
    """A deterministic 32-byte value standing in for a PDQ hash."""
    return bytes((i * 37 + j * 11) % 256 for j in range(32))


def valid_entries() -> list[tuple[str, object]]:
    pdq = PDQ.examples()
    new_vkey = NEXT_KEY.verifier_key()
    signature = CURRENT_KEY.sign(rotation_message(new_vkey))
    long_frames = [VpdqFrame(_pdq(i), 50 + i % 51, i * 1000) for i in range(MAX_VPDQ_FRAMES)]
    long_url = "https://helpline.example/" + "p" * (MAX_URL - len("https://helpline.example/"))
    # 100 bytes of UTF-8: 50 two-byte characters.
    long_name = "é" * (MAX_DISPLAY_NAME // 2)
    return [
        ("pdq submission, only the required fields", Submission("pdq", pdq[0])),
        ("pdq submission with quality, labels and day",
         Submission("pdq", pdq[1], 87, ("nude", "image"), 19800)),
        ("pdq submission, quality 0 (lowest)", Submission("pdq", pdq[2], 0)),
        ("pdq submission, quality 100 (highest)", Submission("pdq", pdq[2], 100)),
        ("pdq submission, every label", Submission("pdq", pdq[0], 60, LABELS)),
        ("pdq submission, day 1 (1970-01-02, the earliest)", Submission("pdq", pdq[0], None, (), 1)),
        ("pdq submission, day 9999-12-31 (the latest)", Submission("pdq", pdq[0], None, ("sexual",), MAX_DAY)),
        ("pdq submission, all zero bits, quality 50", Submission("pdq", bytes(32), 50)),
        ("pdq submission, all one bits, quality 49", Submission("pdq", b"\xff" * 32, 49)),
        ("md5 submission (no quality)", Submission("md5", MD5.examples()[1], None, ("video",), 19900)),
        ("vpdq submission, one frame", Submission("vpdq", VPDQ.examples()[0], None, ("video",))),
        ("vpdq submission, three frames with a low-quality repeat",
         Submission("vpdq", VPDQ.examples()[1], None, ("semi-nude", "video"), 20000)),
        ("vpdq submission, frames with fractional-second timestamps",
         Submission("vpdq", VPDQ.from_frames([VpdqFrame(pdq[0], 90, 0), VpdqFrame(pdq[1], 91, 1),
                                               VpdqFrame(pdq[2], 92, 1), VpdqFrame(pdq[0], 93, 4294967295)]))),
        (f"vpdq submission, {MAX_VPDQ_FRAMES} frames (the most that fit in one entry)",
         Submission("vpdq", VPDQ.from_frames(long_frames), None, ("nude", "video"), 20000)),
        ("withdrawal of entry 0, default reason", Withdrawal((0,))),
        *[(f"withdrawal, reason {r}", Withdrawal((5, 6, 9), r)) for r in WITHDRAWAL_REASONS],
        ("withdrawal of the largest index", Withdrawal((2**64 - 1,), "error")),
        (f"withdrawal of {MAX_TARGETS} entries (the most allowed)",
         Withdrawal(tuple(range(1000, 1000 + 3 * MAX_TARGETS, 3)), "duplicate")),
        *[(f"feedback, verdict {v}", Feedback(ORIGIN, 42, leaf_hash(b"\x01\x01"), v)) for v in VERDICTS],
        ("feedback, index 0 and a one-character origin", Feedback("x", 0, bytes(32), "removed")),
        (f"feedback, origin of {MAX_ORIGIN} characters and the largest index",
         Feedback("platform.example/" + "a" * (MAX_ORIGIN - 17), 2**64 - 1, b"\xff" * 32, "not-violating")),
        ("announcement without key rotation",
         Announcement("Example Helpline", "https://helpline.example/contact", "https://helpline.example/policy")),
        ("announcement with http URLs, a port, a query and a non-ASCII name",
         Announcement("Hilfetelefon Zürich", "http://127.0.0.1:8080/kontakt?lang=de", "http://[::1]:8443/p#x")),
        ("announcement with key rotation",
         Announcement("Example Helpline", "https://helpline.example/contact", "https://helpline.example/policy",
                      new_vkey, signature)),
        ("announcement with the longest name and URLs",
         Announcement(long_name, long_url, long_url, new_vkey, signature)),
        (f"acknowledgement by {PLATFORM} of {ORIGIN} at size 10, with {ORIGIN}'s publication cosignature",
         acknowledge(ACK_KEY, ACKED, 1742300000123, publication_of(_published_note()))),
        (f"acknowledgement by {PLATFORM} of {ORIGIN} at size 10, no publication cosignature, milliseconds 999",
         acknowledge(ACK_KEY, ACKED, 1742300001999)),
        ("acknowledgement, size 1, time 0, a one-character origin (the signature is not checked by decoding)",
         Acknowledgement("x", 1, bytes(32), 0, 0, bytes(32), bytes(64))),
        (f"acknowledgement, the largest size and timestamp, origin of {MAX_ORIGIN} characters",
         Acknowledgement("helpline.example/" + "a" * (MAX_ORIGIN - 17), MAX_TREE_SIZE, b"\xff" * 32, MAX_TREE_SIZE,
                         999, b"\xee" * 32, b"\xdd" * 64)),
    ]


def _hex(*parts: bytes | str) -> bytes:
    return b"".join(bytes.fromhex(p) if isinstance(p, str) else p for p in parts)


def invalid_entries() -> list[tuple[str, bytes]]:
    pdq_entry = encode_entry(Submission("pdq", PDQ.examples()[0], 87, ("nude",), 19800))
    md5_entry = encode_entry(Submission("md5", MD5.examples()[0]))
    vpdq_entry = encode_entry(Submission("vpdq", VPDQ.examples()[1]))
    withdrawal = encode_entry(Withdrawal((3, 4, 7)))
    feedback = encode_entry(Feedback(ORIGIN, 42, bytes(32), "removed"))
    announcement = encode_entry(Announcement("Helpline", "https://a.example/c", "https://a.example/p"))
    rotation = encode_entry(Announcement("Helpline", "https://a.example/c", "https://a.example/p",
                                         NEXT_KEY.verifier_key(), CURRENT_KEY.sign(b"x")))
    ack = encode_entry(acknowledge(ACK_KEY, ACKED, 1742300000123))
    with_publication = encode_entry(acknowledge(ACK_KEY, ACKED, 1742300000123, publication_of(_published_note())))
    flag = 149 + len(ORIGIN)

    def at(data: bytes, offset: int, value: bytes) -> bytes:
        return data[:offset] + value + data[offset + len(value):]

    vkey_at = 2 + 1 + 8 + 2 + 19 + 2 + 19 + 1 + 2  # first byte of new_vkey in `rotation`
    ann_contact = 2 + 1 + 8 + 2  # first byte of contact_url in `announcement`
    ann_name = 3
    return [
        ("empty", b""),
        ("only a version byte", b"\x01"),
        ("version 0", at(pdq_entry, 0, b"\x00")),
        ("version 2", at(pdq_entry, 0, b"\x02")),
        ("kind 0", at(pdq_entry, 1, b"\x00")),
        ("kind 6", at(pdq_entry, 1, b"\x06")),
        ("longer than 65,535 bytes", b"\x01\x01" + bytes(65534)),
        # submission
        ("submission header cut short", pdq_entry[:11]),
        ("submission: signal code 0", at(pdq_entry, 2, b"\x00")),
        ("submission: signal code 4", at(pdq_entry, 2, b"\x04")),
        ("submission: quality 101", at(pdq_entry, 3, b"\x65")),
        ("submission: quality 254", at(pdq_entry, 3, b"\xfe")),
        ("submission: md5 with a quality", at(md5_entry, 3, b"\x32")),
        ("submission: vpdq with an entry-level quality", at(vpdq_entry, 3, b"\x32")),
        ("submission: unknown label bit 6", at(pdq_entry, 4, b"\x00\x41")),
        ("submission: unknown label bit 15", at(pdq_entry, 4, b"\x80\x01")),
        ("submission: day after 9999-12-31", at(pdq_entry, 6, struct.pack(">I", MAX_DAY + 1))),
        ("submission: fingerprint cut short", pdq_entry[:-1]),
        ("submission: a byte after the fingerprint", pdq_entry + b"\x00"),
        ("submission: pdq of 31 bytes", at(pdq_entry, 10, b"\x00\x1f")[:-1]),
        ("submission: pdq of 33 bytes", at(pdq_entry, 10, b"\x00\x21") + b"\x00"),
        ("submission: md5 of 32 bytes", at(md5_entry, 10, b"\x00\x20") + bytes(16)),
        ("submission: vpdq with no frames", _hex(vpdq_entry[:10], "0002", "0000")),
        ("submission: vpdq frame count says 2, three frames given", at(vpdq_entry, 12, b"\x00\x02")),
        ("submission: vpdq frame count says 4, three frames given", at(vpdq_entry, 12, b"\x00\x04")),
        ("submission: vpdq frame count above the maximum",
         at(vpdq_entry, 12, struct.pack(">H", MAX_VPDQ_FRAMES + 1))),
        ("submission: vpdq frame quality 101", at(vpdq_entry, 12 + 2 + 37 + 32, b"\x65")),
        ("submission: vpdq timestamps going backwards",
         at(vpdq_entry, 12 + 2 + 2 * 37 + 33, b"\x00\x00\x00\x01")),
        # withdrawal
        ("withdrawal header cut short", withdrawal[:4]),
        ("withdrawal: reason code 0", at(withdrawal, 2, b"\x00")),
        ("withdrawal: reason code 6", at(withdrawal, 2, b"\x06")),
        ("withdrawal: no targets", _hex(withdrawal[:3], "0000")),
        ("withdrawal: 1025 targets", _hex(withdrawal[:3], "0401") + b"".join(
            struct.pack(">Q", i) for i in range(1025))),
        ("withdrawal: targets out of order", at(withdrawal, 5 + 8, struct.pack(">Q", 2))),
        ("withdrawal: a target repeated", at(withdrawal, 5 + 8, struct.pack(">Q", 3))),
        ("withdrawal: target list cut short", withdrawal[:-3]),
        ("withdrawal: a byte after the targets", withdrawal + b"\x00"),
        # feedback
        ("feedback header cut short", feedback[:43]),
        ("feedback: verdict code 0", at(feedback, 2, b"\x00")),
        ("feedback: verdict code 5", at(feedback, 2, b"\x05")),
        ("feedback: empty origin", feedback[:43] + b"\x00"),
        ("feedback: origin cut short", feedback[:-1]),
        ("feedback: a byte after the origin", feedback + b"x"),
        ("feedback: space in the origin", at(feedback, 44 + 8, b" ")),
        ("feedback: plus sign in the origin", at(feedback, 44 + 3, b"+")),
        ("feedback: non-ASCII byte in the origin", at(feedback, 44, b"\xc3")),
        ("feedback: newline in the origin", at(feedback, 44 + 19, b"\n")),
        # announcement
        ("announcement: empty display name", _hex(announcement[:2], "00")),
        ("announcement: display name of 101 bytes", _hex(announcement[:2], "65") + b"a" * 101),
        ("announcement: display name not UTF-8", at(announcement, ann_name + 2, b"\xff")),
        ("announcement: control character in the display name", at(announcement, ann_name + 2, b"\x07")),
        ("announcement: display name ends with a space", at(announcement, ann_name + 7, b" ")),
        ("announcement: contact URL with ftp scheme", at(announcement, ann_contact, b"ftp://a.ex")),
        ("announcement: contact URL with upper-case scheme", at(announcement, ann_contact, b"HTTPS")),
        ("announcement: contact URL with a user name", at(announcement, ann_contact + 8, b"u@a.ex")),
        ("announcement: space inside the contact URL", at(announcement, ann_contact + 17, b" ")),
        ("announcement: empty contact URL", _hex(announcement[:ann_contact - 2], "0000")),
        ("announcement: rotation flag 2", at(announcement, len(announcement) - 1, b"\x02")),
        ("announcement: rotation flag missing", announcement[:-1]),
        ("announcement: a byte after the end", announcement + b"\x00"),
        ("announcement: new key with a wrong key ID", at(rotation, vkey_at + len(ORIGIN) + 1, b"0")),
        ("announcement: new key string not a vkey", at(rotation, vkey_at + len(ORIGIN), b"-")),
        ("announcement: rotation signature cut short", rotation[:-1]),
        ("announcement: a byte after the rotation signature", rotation + b"\x00"),
        # acknowledgement
        ("acknowledgement header cut short", ack[:148]),
        ("acknowledgement: timestamp 2**63", at(ack, 2, struct.pack(">Q", 2**63))),
        ("acknowledgement: milliseconds 1000", at(ack, 10, struct.pack(">H", 1000))),
        ("acknowledgement: size 0", at(ack, 12, bytes(8))),
        ("acknowledgement: size 2**63", at(ack, 12, struct.pack(">Q", 2**63))),
        ("acknowledgement: empty origin", ack[:148] + b"\x00\x00"),
        ("acknowledgement: origin cut short", ack[:flag - 1]),
        ("acknowledgement: publication flag missing", ack[:-1]),
        ("acknowledgement: publication flag 2", at(ack, flag, b"\x02")),
        ("acknowledgement: a byte after the end", ack + b"\x00"),
        ("acknowledgement: space in the origin", at(ack, 149 + 8, b" ")),
        ("acknowledgement: plus sign in the origin", at(ack, 149, b"+")),
        ("acknowledgement: publication cut short", with_publication[:-1]),
        ("acknowledgement: a byte after the publication", with_publication + b"\x00"),
        ("acknowledgement: publication timestamp 2**63", at(with_publication, flag + 5, struct.pack(">Q", 2**63))),
    ]


def build() -> dict[str, str]:
    """File name -> file text."""
    valid = []
    for desc, entry in valid_entries():
        data = encode_entry(entry)
        valid.append({"desc": desc, "json": entry_to_json(entry), "hex": data.hex(),
                      "leaf_hash": leaf_hash(data).hex()})
    invalid = []
    for desc, data in invalid_entries():
        try:
            decode_entry(data)
        except EntryError as e:
            invalid.append({"desc": desc, "hex": data.hex(), "error_offset": e.offset})
        else:
            raise SystemExit(f"invalid vector {desc!r} decodes: fix the generator")
    return {"entries.json": _dump(valid), "entries-invalid.json": _dump(invalid)}


def _dump(vectors: list[dict]) -> str:
    """A JSON list with one vector per line: diffs stay readable, files stay small."""
    return "[\n" + ",\n".join(json.dumps(v, ensure_ascii=False) for v in vectors) + "\n]\n"


def main(argv: list[str]) -> int:
    files = build()
    if "--check" in argv:
        stale = [n for n, text in files.items()
                 if not (VECTOR_DIR / n).exists() or (VECTOR_DIR / n).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"stale: spec/vectors/{name}")
        return 1 if stale else 0
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (VECTOR_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote spec/vectors/{name} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
