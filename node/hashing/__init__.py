"""On-device fingerprints of photos and videos: PDQ for photos; MD5 and vPDQ for
videos. Only fingerprints come out (JSON objects in the shape `POST /v1/cases`
takes); pixels and file names never do. spec/parts/hashing.md is normative.

    hash_file(path)          -> [fingerprint, ...]   photo or video, kind sniffed
    hash_media_bytes(data)   -> [fingerprint, ...]   the same for an upload's bytes
    hash_image_bytes(data)   -> [pdq fingerprint]
    hash_video_file(path)    -> [md5 fingerprint, vpdq fingerprint]

All raise HashingError (a ProtocolError) with a reason a person can act on.
"""

from .errors import HashingError
from .images import (
    DIHEDRAL_VARIANTS,
    HASH_SIZE,
    MAX_IMAGE_PIXELS,
    decode_image,
    hash_image_bytes,
    pdq_dihedral_from_rgb,
    pdq_fingerprint,
    pdq_from_rgb,
    pdq_hex,
)
from .media import hash_file, hash_media_bytes, sniff
from .videos import DEFAULT_INTERVAL, MAX_FRAME_PIXELS, MAX_VIDEO_SECONDS, hash_video_bytes, hash_video_file

__all__ = [
    "DEFAULT_INTERVAL",
    "DIHEDRAL_VARIANTS",
    "HASH_SIZE",
    "HashingError",
    "MAX_FRAME_PIXELS",
    "MAX_IMAGE_PIXELS",
    "MAX_VIDEO_SECONDS",
    "decode_image",
    "hash_file",
    "hash_image_bytes",
    "hash_media_bytes",
    "hash_video_bytes",
    "hash_video_file",
    "pdq_dihedral_from_rgb",
    "pdq_fingerprint",
    "pdq_from_rgb",
    "pdq_hex",
    "sniff",
]
