"""Tests of node/hashing for videos: MD5 of the file, vPDQ of sampled frames, every
container we claim to read (generated with PyAV), limits and damaged files.

Conformance data: ../shared/conformance/video (Meta's tmk sample videos); their
`md5sum` is the reference MD5 fingerprint.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from node.hashing import HashingError, hash_file, hash_video_bytes, hash_video_file, videos
from protocol.signals import VPDQ

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "video"
needs_conformance = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="../shared/conformance/video is absent")


def scene(second: float, height: int = 72, width: int = 96) -> np.ndarray:
    """A picture that changes clearly from one second to the next (so each sampled
    frame has its own hash) and is textured enough for PDQ quality 100."""
    y, x = np.mgrid[0:height, 0:width]
    k = int(second)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = ((x * (k + 1) * 7 + y * 3) % 256).astype(np.uint8)
    frame[..., 1] = np.where(((x + 5 * k) // 8 + (y + 3 * k) // 8) % 2 == 0, 220, 30)
    frame[..., 2] = np.where((x < width * ((k % 3) + 1) // 4) & (y > height // 3), 230, 20)
    return frame


def make_video(path: Path, container: str, codec: str, *, seconds: float = 4, fps: int = 10,
               picture=scene, height: int = 72, width: int = 96) -> Path:
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 2_000_000  # high for the size: codec noise is not what is tested
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(picture(i / fps, height, width), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


CONTAINERS = [
    ("mp4", "mp4", "libx264"),
    ("mov", "mov", "libx264"),
    ("webm", "webm", "libvpx-vp9"),
    ("mkv", "matroska", "libx264"),
    ("avi", "avi", "mpeg4"),
]


# --- conformance -------------------------------------------------------------------


def _conformance_videos() -> list[Path]:
    return sorted(CONFORMANCE.glob("*.mp4")) if CONFORMANCE.is_dir() else []


@pytest.fixture(scope="module")
def conformance_fingerprints():
    return {path.name: hash_file(path) for path in _conformance_videos()}


@needs_conformance
def test_md5_is_the_md5sum_of_the_file(conformance_fingerprints):
    md5sum = shutil.which("md5sum")
    assert len(conformance_fingerprints) == 3
    for path in _conformance_videos():
        md5, vpdq = conformance_fingerprints[path.name]
        assert md5 == {"signal": "md5", "fingerprint": hashlib.md5(path.read_bytes()).hexdigest()}
        if md5sum:
            output = subprocess.run([md5sum, str(path)], capture_output=True, text=True, check=True).stdout
            assert md5["fingerprint"] == output.split()[0]
        assert vpdq["signal"] == "vpdq"


@needs_conformance
def test_vpdq_samples_one_frame_per_second(conformance_fingerprints):
    for path in _conformance_videos():
        frames = conformance_fingerprints[path.name][1]["fingerprint"]
        with av.open(str(path)) as container:
            seconds = container.duration / 1e6
        stamps = [f["timestamp"] for f in frames]
        assert stamps[0] == 0.0 and stamps == sorted(stamps)
        # One frame a second, fewer only where consecutive samples hash identically.
        assert len(frames) <= int(seconds) + 1
        assert all(abs(t - round(t)) < 0.05 for t in stamps), stamps
        VPDQ.parse_json(frames)  # the shape POST /v1/cases and the log entry take


@needs_conformance
def test_vpdq_matches_itself_and_records_pairs(conformance_fingerprints, record_property):
    """Each video matches itself under the default rule (80 % of the query's unique
    frames, 0 % of the indexed video's); the other pairs are recorded."""
    values = {name: VPDQ.parse_json(fps[1]["fingerprint"]) for name, fps in conformance_fingerprints.items()}
    matching = []
    lines = []
    for query, q in values.items():
        for indexed, t in values.items():
            coverage = VPDQ.compare(q, t)
            matched = VPDQ.matches(q, t)
            lines.append(f"{query} vs {indexed}: query {coverage.query_percent:.0f} %, "
                         f"indexed {coverage.indexed_percent:.0f} % -> {'match' if matched else 'no match'}")
            if matched:
                matching.append((query, indexed))
    print("\nvPDQ pairs under the default rule:\n  " + "\n  ".join(lines))
    record_property("vpdq_matching_pairs", matching)
    assert {(a, a) for a in values} <= set(matching)
    # Measured: the two chair edits share some scenes (about 10 % of frames), not enough
    # to match; the pattern video shares none. Only self-matches.
    assert set(matching) == {(a, a) for a in values}


# --- containers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {suffix: make_video(folder / f"clip.{suffix}", container, codec) for suffix, container, codec in CONTAINERS}


@pytest.mark.parametrize("suffix", [c[0] for c in CONTAINERS])
def test_every_container(generated, suffix):
    path = generated[suffix]
    md5, vpdq = hash_file(path)
    assert md5 == {"signal": "md5", "fingerprint": hashlib.md5(path.read_bytes()).hexdigest()}
    assert set(vpdq) == {"signal", "fingerprint"}  # good quality: no low_quality flag
    frames = vpdq["fingerprint"]
    assert [f["timestamp"] for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert all(f["quality"] >= 50 for f in frames)
    assert hash_video_file(path) == [md5, vpdq] == hash_video_bytes(path.read_bytes())


def test_same_video_in_every_container_matches(generated):
    values = {suffix: VPDQ.parse_json(hash_file(path)[1]["fingerprint"]) for suffix, path in generated.items()}
    for a in values.values():
        for b in values.values():
            assert VPDQ.matches(a, b)
    other = make_video(next(iter(generated.values())).parent / "other.mp4", "mp4", "libx264",
                       picture=lambda s, h, w: np.rot90(scene(s + 7, w, h)).copy())
    assert not VPDQ.matches(VPDQ.parse_json(hash_file(other)[1]["fingerprint"]), values["mp4"])


def test_interval_and_still_scenes(tmp_path):
    path = make_video(tmp_path / "clip.mp4", "mp4", "libx264", seconds=3, fps=10)
    frames = hash_video_file(path, interval=0.5)[1]["fingerprint"]
    # The scene changes once a second, so the half-second samples inside a second
    # hash alike and are kept once... unless encoding noise tells them apart.
    assert {0.0, 1.0, 2.0} <= {f["timestamp"] for f in frames}
    still = make_video(tmp_path / "still.mp4", "mp4", "libx264", seconds=5, fps=5, picture=lambda s, h, w: scene(0, h, w))
    [frame] = hash_file(still)[1]["fingerprint"]
    assert frame["timestamp"] == 0.0


def test_flat_video_is_flagged_low_quality(tmp_path):
    path = make_video(tmp_path / "grey.mkv", "matroska", "libx264", seconds=2,
                      picture=lambda s, h, w: np.full((h, w, 3), 128, np.uint8))
    vpdq = hash_file(path)[1]
    assert vpdq["low_quality"] is True


# --- limits and damage ---------------------------------------------------------------


def test_frame_size_is_bounded(tmp_path, monkeypatch):
    path = make_video(tmp_path / "clip.mp4", "mp4", "libx264", seconds=1)
    monkeypatch.setattr(videos, "MAX_FRAME_PIXELS", 96 * 72 - 1)
    with pytest.raises(HashingError, match="96 x 72; the limit"):
        hash_file(path)


def test_duration_is_bounded(tmp_path, monkeypatch):
    path = make_video(tmp_path / "clip.webm", "webm", "libvpx-vp9", seconds=3)
    monkeypatch.setattr(videos, "MAX_VIDEO_SECONDS", 2)
    with pytest.raises(HashingError, match="the limit is"):
        hash_file(path)


def test_frame_count_is_bounded_by_the_entry_size(tmp_path, monkeypatch):
    path = make_video(tmp_path / "clip.mp4", "mp4", "libx264", seconds=4)
    monkeypatch.setattr(videos, "MAX_VPDQ_FRAMES", 3)
    with pytest.raises(HashingError, match="more than 3 distinct sampled frames.*--vpdq-interval 2"):
        hash_file(path)


def test_timestamps_without_container_times(tmp_path):
    """Frames whose container gives no time are placed by the frame rate."""

    class Frame:
        time = None

    class Stream:
        average_rate = Fraction(25)
        guessed_rate = None

    assert videos._frame_time(Frame(), Stream(), 51) == 2.0


def test_damaged_videos_give_a_reason_without_the_file_name(tmp_path):
    good = make_video(tmp_path / "good.mp4", "mp4", "libx264", seconds=2).read_bytes()
    audio = tmp_path / "voice.mkv"
    with av.open(str(audio), "w", format="matroska") as output:
        stream = output.add_stream("flac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            output.mux(packet)
    cases = {
        # MP4 keeps its index at the end: half a file has no index and no frame.
        "half.mp4": (good[: len(good) // 2], "damaged|not a video|no frame"),
        "noise.mkv": (b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 16, "damaged|not a video|no frame|no video"),
        "noise.avi": (b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(200), "damaged|not a video|no frame|no video"),
        "voice.mkv": (audio.read_bytes(), "no video track"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(HashingError, match=reason) as caught:
            hash_file(path)
        assert str(tmp_path) not in str(caught.value) and name not in str(caught.value)


def test_truncated_stream_keeps_the_frames_before_the_damage(tmp_path):
    """A Matroska file cut short (an interrupted download) still plays up to the cut;
    its frames up to there are hashed, as a player would show them."""
    path = make_video(tmp_path / "clip.mkv", "matroska", "libx264", seconds=4)
    whole = hash_file(path)[1]["fingerprint"]
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    partial = hash_file(cut)[1]["fingerprint"]
    assert 1 <= len(partial) < len(whole)
    assert partial == whole[: len(partial)]


def _yuv_video(path: Path, width: int, height: int, colorspace: int | None) -> Path:
    """Two frames of the same YUV samples; `colorspace` tags the matrix (None: untagged)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=1)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if colorspace is not None:
        stream.codec_context.colorspace = colorspace
    luma = np.repeat(np.linspace(16, 235, height).astype(np.uint8)[:, None], width, axis=1)
    for i in range(2):
        yuv = np.full((height * 3 // 2, width), 128, np.uint8)
        yuv[:height] = luma
        yuv[height:height + height // 4] = 60 + 60 * i  # a strong colour: the matrix matters
        for packet in stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.mark.parametrize("height,standard", [(720, 1), (480, 6)])  # HD: BT.709, SD: BT.601 (SMPTE 170M)
def test_untagged_colours_are_read_as_browsers_read_them(tmp_path, height, standard):
    # The person's browser reads an untagged HD video as BT.709 and an SD one as
    # BT.601; the platform's node must agree or the same video lands far away.
    def frames(path):
        [vpdq] = [fp["fingerprint"] for fp in hash_file(path) if fp["signal"] == "vpdq"]
        return [bytes.fromhex(frame["pdq"]) for frame in vpdq]

    tagged = frames(_yuv_video(tmp_path / "tagged.mp4", height * 16 // 9 // 2 * 2, height, standard))
    untagged = frames(_yuv_video(tmp_path / "untagged.mp4", height * 16 // 9 // 2 * 2, height, None))
    assert len(tagged) == len(untagged) == 2
    assert tagged == untagged
