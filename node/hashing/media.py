"""Which kind of media a file is, from its first bytes, and the fingerprints of any
file we read: `hash_file(path)` and `hash_media_bytes(data)`.

The kind comes from the contents, never the name: a photo saved as ".dat" is still
hashed, and a text file named ".jpg" is refused before any decoder sees it.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Literal

from .errors import HashingError, open_error
from .images import hash_image
from .videos import DEFAULT_INTERVAL, video_fingerprints

Kind = Literal["image", "video"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".heic", ".heif", ".hif"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
"""File names a directory walk picks up (files named on the command line are tried
whatever their name)."""

# ISO base media ("ftyp") brands of still images: HEIC/HEIF as phones write them.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
# QuickTime files may start with another atom than "ftyp".
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}

UNSUPPORTED = (
    "not a photo or video this tool reads (photos: JPEG, PNG, WebP, GIF, BMP, TIFF, "
    "HEIC/HEIF; videos: MP4, MOV, WebM, MKV, AVI)"
)


def sniff(head: bytes) -> Kind | None:
    """"image", "video" or None (unsupported) from a file's first 16 bytes."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head[4:8] == b"ftyp":
        return "image" if head[8:12] in _HEIF_BRANDS else "video"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, WebM
        return "video"
    return None


def hash_source(source: BinaryIO, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """Fingerprints of the photo or video read from an open binary file: one PDQ
    object for a photo; MD5 then vPDQ for a video."""
    head = source.read(16)
    source.seek(0)
    if not head:
        raise HashingError("the file is empty")
    kind = sniff(head)
    if kind == "image":
        return hash_image(source)
    if kind == "video":
        return video_fingerprints(source, interval)
    raise HashingError(UNSUPPORTED)


def hash_file(path: str | os.PathLike, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """Fingerprints of the photo or video at `path` (see `hash_source`). Raises
    HashingError, whose message never names the file."""
    try:
        with open(path, "rb") as source:
            return hash_source(source, interval)
    except OSError as exc:  # open() itself, or a read error half-way
        raise open_error(exc) from None


def hash_media_bytes(data: bytes, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """Fingerprints of a photo or video given as the bytes of its file (an upload)."""
    return hash_source(io.BytesIO(data), interval)
