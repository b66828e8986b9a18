"""Videos to fingerprints: the MD5 of the file and vPDQ (PDQ of sampled frames).

Decoding is PyAV's (`av`, FFmpeg libraries inside the wheel: nothing to install
from the system). Only MP4/MOV, Matroska/WebM and AVI containers are opened.

vPDQ here: starting with the first decoded frame, one frame every `interval`
seconds of presentation time (default 1 s, as Meta's vpdq); each frame is shrunk
and hashed exactly as a photo is (images.py), after the rotation the container
asks for. Frame records are {"pdq", "quality", "timestamp"} with the timestamp in
seconds from the first frame, rounded to milliseconds. A run of consecutive
frames with the same hash and quality is kept once (matching works on unique
frames, so nothing is lost), which lets long still scenes fit in an entry.

Limits (a hostile file must not make the device work forever): frames up to
MAX_FRAME_PIXELS, presentation time up to MAX_VIDEO_SECONDS, and at most
MAX_VPDQ_FRAMES frame records (the most one log entry holds).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from typing import BinaryIO

import numpy as np

from protocol.signals import LOW_QUALITY, MAX_VPDQ_FRAMES

from .errors import HashingError, open_error
from .images import pdq_from_rgb, shrink_for_hashing

DEFAULT_INTERVAL = 1.0
"""Seconds between sampled frames (Meta's vpdq default: one frame per second)."""

MAX_FRAME_PIXELS = 8192 * 4320
"""Largest frame decoded (8K, 35 megapixels)."""

MAX_VIDEO_SECONDS = 4 * 3600
"""Longest video decoded: 4 hours of presentation time."""

# FFmpeg demuxer names of the containers we open (MP4/MOV, MKV/WebM, AVI).
VIDEO_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})

_CHUNK = 1 << 20


def md5_of(source: BinaryIO) -> str:
    """MD5 (hex) of everything readable from `source`, from its start, in 1 MiB
    reads, so a video of any size takes constant memory."""
    digest = hashlib.md5(usedforsecurity=False)
    source.seek(0)
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def vpdq_frames(source: BinaryIO, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """vPDQ frame records of the video read from `source` (see the module docstring)."""
    import av

    if not (math.isfinite(interval) and interval > 0):
        raise HashingError(f"the frame interval must be a positive number of seconds, not {interval}")
    source.seek(0)
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.FFmpegError:
        raise HashingError("not a video this tool reads, or its header is damaged") from None
    with container:
        if container.format.name not in VIDEO_CONTAINERS:
            raise HashingError(f"not a video container this tool reads ({container.format.long_name})")
        if not container.streams.video:
            raise HashingError("the file holds no video track")
        if container.duration is not None and container.duration / 1e6 > MAX_VIDEO_SECONDS:
            raise _too_long(container.duration / 1e6)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg decodes on every core it is given
        frames: list[dict] = []
        first_time = None
        next_sample = 0.0
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if frame.width * frame.height > MAX_FRAME_PIXELS:
                    raise HashingError(
                        f"a frame is {frame.width} x {frame.height}; the limit is "
                        f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels"
                    )
                when = _frame_time(frame, stream, decoded)
                if first_time is None:
                    first_time = when
                elapsed = when - first_time
                if elapsed > MAX_VIDEO_SECONDS:
                    raise _too_long(elapsed)
                if elapsed + 1e-6 < next_sample:
                    continue
                # The next sample is due one interval after this one's slot, so a
                # variable frame rate cannot make samples drift or bunch up.
                while next_sample <= elapsed + 1e-6:
                    next_sample += interval
                _append(frames, _hash_frame(frame), elapsed, interval)
        except HashingError:
            raise
        except av.FFmpegError:
            if not frames:
                raise HashingError("the video is damaged: no frame could be decoded") from None
            # Later damage (a truncated download, typically): keep the frames before it,
            # as a player would show them.
        except MemoryError:
            raise HashingError("not enough memory to decode this video") from None
        except Exception as exc:  # from a decoder on a hostile file; its text may hold the path
            raise HashingError(f"the video is damaged and cannot be decoded ({type(exc).__name__})") from None
    if not frames:
        raise HashingError("the video has no frame that could be decoded")
    return frames


def _frame_time(frame, stream, decoded: int) -> float:
    """Presentation time of a frame in seconds; counted from the frame rate when the
    container gives no timestamps (some AVI files)."""
    if frame.time is not None:
        return float(frame.time)
    rate = stream.average_rate or stream.guessed_rate or 25
    return (decoded - 1) / float(rate)


# A frame whose colour matrix is not tagged is read the way players and browsers read
# it: BT.709 for HD, BT.601 for SD. The victim's browser hashes their video that way, so
# the platform's node must too (else an untagged HD video lands ~20 bits away).
_UNSPECIFIED_COLORSPACE = 2  # AVCOL_SPC_UNSPECIFIED
_HD_MIN_HEIGHT = 577         # taller than PAL SD (576 lines)


def _frame_rgb(frame):
    """The frame as an RGB PIL image, 8 bits."""
    if frame.colorspace == _UNSPECIFIED_COLORSPACE and frame.height >= _HD_MIN_HEIGHT:
        from av.video.reformatter import Colorspace

        return frame.reformat(format="rgb24", src_colorspace=Colorspace.ITU709).to_image()
    return frame.to_image()


def _hash_frame(frame) -> tuple[str, int]:
    from PIL import Image

    image = _frame_rgb(frame)
    image = shrink_for_hashing(image)
    rotation = getattr(frame, "rotation", 0) or 0  # degrees counter-clockwise to display
    turn = {90: Image.Transpose.ROTATE_90, -90: Image.Transpose.ROTATE_270, 270: Image.Transpose.ROTATE_270,
            180: Image.Transpose.ROTATE_180, -180: Image.Transpose.ROTATE_180}.get(round(rotation))
    if turn is not None:
        image = image.transpose(turn)
    return pdq_from_rgb(np.asarray(image))


def _append(frames: list[dict], hashed: tuple[str, int], elapsed: float, interval: float) -> None:
    pdq, quality = hashed
    if frames and frames[-1]["pdq"] == pdq and frames[-1]["quality"] == quality:
        return  # same picture as the frame before: matching would not see a difference
    if len(frames) == MAX_VPDQ_FRAMES:
        raise HashingError(
            f"the video has more than {MAX_VPDQ_FRAMES} distinct sampled frames, the most one "
            f"fingerprint holds; sample less often (e.g. --vpdq-interval "
            f"{max(2, math.ceil(interval * 2))}) or split the video"
        )
    frames.append({"pdq": pdq, "quality": quality, "timestamp": round(elapsed, 3)})


def _too_long(seconds: float) -> HashingError:
    return HashingError(
        f"the video lasts {seconds / 3600:.1f} hours; the limit is {MAX_VIDEO_SECONDS // 3600} hours"
    )


def video_fingerprints(source: BinaryIO, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """The MD5 and vPDQ fingerprint objects of a video read from an open binary file."""
    md5 = md5_of(source)
    frames = vpdq_frames(source, interval)
    vpdq: dict = {"signal": "vpdq", "fingerprint": frames}
    if all(f["quality"] < LOW_QUALITY for f in frames):
        vpdq["low_quality"] = True  # no frame good enough to match on
    return [{"signal": "md5", "fingerprint": md5}, vpdq]


def hash_video_file(path: str | os.PathLike, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """Fingerprints of the video at `path`: MD5 of the file, then vPDQ."""
    try:
        source = open(path, "rb")
    except OSError as exc:
        raise open_error(exc) from None
    with source:
        return video_fingerprints(source, interval)


def hash_video_bytes(data: bytes, interval: float = DEFAULT_INTERVAL) -> list[dict]:
    """Fingerprints of a video given as the bytes of its file (e.g. an upload)."""
    return video_fingerprints(io.BytesIO(data), interval)
