#!/usr/bin/env python3
"""Benchmark of on-device hashing (node/hashing), printing the figures it claims.

  .venv/bin/python scripts/bench_hash.py [--images 12] [--video-seconds 20] [--jobs 2]

1. Photos: synthetic photo-like 12-megapixel JPEGs (4000 x 3000, quality 90):
   decode-only and decode+hash time per photo, the way we hash (reduced JPEG decoding
   and a shrink to HASH_SIZE before PDQ) and at full resolution; photos per second
   on one process and on `--jobs` processes, and the speed-up.
2. The price of the speed trick: the largest PDQ distance it causes against the
   full-resolution hash, on the conformance images (../shared/conformance/pdq when
   present) and on the synthetic photos, and the largest distance of our hashes to
   the reference hashes (PDQ's rule: <= 10 for quality >= 80).
3. Video: a synthetic 720p, 30 frame/s H.264 video (`--video-seconds` long) made with
   PyAV: seconds of hashing (MD5 + vPDQ at 1 frame/s) per minute of video, beside
   decode-only time.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from node.hashing import HASH_SIZE, decode_image, hash_file, pdq_from_rgb  # noqa: E402
from node.hashing.batch import default_jobs, hash_many  # noqa: E402
from node.hashing.videos import hash_video_file  # noqa: E402

CONFORMANCE = ROOT.parent / "shared" / "conformance" / "pdq"


def photo_like(seed: int, width: int = 4000, height: int = 3000) -> np.ndarray:
    """Smooth shapes at several scales, a light gradient and sensor-like noise."""
    rng = np.random.default_rng(seed)
    layers = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((4, 0.45), (24, 0.35), (160, 0.2)):
        field = rng.integers(0, 256, (cells * 3 // 4 + 1, cells + 1, 3), dtype=np.uint8)
        layers += weight * np.asarray(Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    layers += np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    layers += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return np.clip(layers, 0, 255).astype(np.uint8)


def full_resolution_hash(path: Path) -> str:
    with open(path, "rb") as f:
        return pdq_from_rgb(decode_image(f, size=None))[0]


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_photo(label: str, paths: list[Path], work) -> float:
    times = []
    for path in paths:
        start = time.perf_counter()
        work(path)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"  {label:<44} {median * 1000:7.1f} ms/photo (median of {len(paths)})")
    return median


def bench_photos(folder: Path, count: int, jobs: int, rounds: int) -> list[Path]:
    print(f"Generating {count} photo-like 4000 x 3000 JPEGs (quality 90)...", flush=True)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:02}.jpg"
        Image.fromarray(photo_like(i)).save(path, quality=90)
        paths.append(path)
    size = statistics.mean(p.stat().st_size for p in paths) / 1e6
    print(f"  mean file size {size:.1f} MB")

    print(f"\n1. Photos, one process (shrink to {HASH_SIZE} px before PDQ):")
    decode = per_photo("decode only (reduced decoding + shrink)", paths, lambda p: decode_image(open(p, "rb")))
    both = per_photo("decode + PDQ (what `ncii-node hash` does)", paths, hash_file)
    full_decode = per_photo("decode only, full resolution", paths, lambda p: decode_image(open(p, "rb"), size=None))
    full_both = per_photo("decode + PDQ, full resolution", paths, full_resolution_hash)
    print(f"  PDQ itself: {(both - decode) * 1000:.1f} ms on the shrunk photo, "
          f"{(full_both - full_decode) * 1000:.1f} ms at full resolution; whole pipeline "
          f"{full_both / both:.1f}x faster than full resolution")

    list(hash_many(paths[:jobs], jobs=jobs))  # warm the page cache and the pool start
    # The machine may be shared: alternate the two settings over `rounds` rounds and
    # keep each one's best, so a burst of someone else's work does not pick the winner.
    best: dict[int, tuple[float, float]] = {}
    for _ in range(rounds):
        for workers in sorted({1, jobs}):
            cpu_before = cpu_seconds()
            start = time.perf_counter()
            outcomes = list(hash_many(paths, jobs=workers))
            elapsed = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_before
            assert all(o.fingerprints for o in outcomes)
            if workers not in best or elapsed < best[workers][0]:
                best[workers] = (elapsed, cpu)
    rates = {workers: len(paths) / elapsed for workers, (elapsed, _) in best.items()}
    for workers, (elapsed, cpu) in best.items():
        # CPU seconds per wall second: how many cores the run actually got. Below the
        # number of processes means other work on the machine held the cores.
        print(f"  {workers} process(es): {rates[workers]:.2f} photos/s "
              f"({elapsed:.2f} s for {len(paths)}, best of {rounds} rounds; "
              f"{cpu / elapsed:.2f} cores busy, {cpu / len(paths) * 1000:.0f} CPU-ms/photo)")
    if jobs > 1:
        print(f"  speed-up on {jobs} processes: {rates[jobs] / rates[1]:.2f}x (target >= 1.8x on 2 cores)")
    return paths


def bench_distances(paths: list[Path]) -> None:
    print("\n2. What the speed trick costs in PDQ distance (to the full-resolution hash):")
    worst = max((distance(hash_file(p)[0]["fingerprint"], full_resolution_hash(p)), p.name) for p in paths)
    print(f"  synthetic 12 MP photos: largest distance {worst[0]} ({worst[1]})")
    if not CONFORMANCE.is_dir():
        print(f"  conformance images: {CONFORMANCE} is absent, skipped")
        return
    with open(CONFORMANCE / "expected-hashes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    to_full, to_reference, checked = [], [], 0
    for name in sorted({r["path"] for r in rows}):
        ours = hash_file(CONFORMANCE / name)[0]
        to_full.append((distance(ours["fingerprint"], full_resolution_hash(CONFORMANCE / name)), name))
    for row in rows:
        ours = hash_file(CONFORMANCE / row["path"])[0]
        if ours["quality"] >= 80:
            checked += 1
            to_reference.append((distance(ours["fingerprint"], row["pdq_hex"]), f"{row['path']} ({row['produced_by']})"))
    print(f"  conformance images: largest distance to our full-resolution hash {max(to_full)[0]} ({max(to_full)[1]})")
    print(f"  conformance rows of quality >= 80 ({checked}): largest distance to the reference "
          f"{max(to_reference)[0]} ({max(to_reference)[1]}); PDQ's rule is <= 10")


def make_video(path: Path, seconds: int) -> None:
    import av

    base = photo_like(99, 1600, 900)
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(seconds * 30):
            # A slow pan across a photo-like scene, with a cut every 5 seconds.
            x, y = (i * 7) % 320, (i * 3) % 180
            frame = base[y : y + 720, x : x + 1280]
            if (i // 150) % 2:
                frame = frame[:, ::-1]
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)


def decode_only(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def bench_video(folder: Path, seconds: int) -> None:
    print(f"\n3. Video: generating a {seconds} s 1280 x 720 30 frame/s H.264 MP4...", flush=True)
    path = folder / "clip-720p.mp4"
    make_video(path, seconds)
    print(f"  file size {path.stat().st_size / 1e6:.1f} MB")
    start = time.perf_counter()
    frames = decode_only(path)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    md5, vpdq = hash_video_file(path)
    both = time.perf_counter() - start
    per_minute = 60 / seconds
    print(f"  (machine load average before the video: {os.getloadavg()[0]:.1f})")
    print(f"  decode only ({frames} frames): {decode:.2f} s = {decode * per_minute:.1f} s per minute of video")
    print(f"  MD5 + vPDQ ({len(vpdq['fingerprint'])} distinct frames hashed): {both:.2f} s = "
          f"{both * per_minute:.1f} s of hashing per minute of 720p video")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12, help="synthetic 12 MP photos (default 12)")
    parser.add_argument("--video-seconds", type=int, default=20, help="length of the 720p video (default 20)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="processes for the parallel run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the 1-process vs parallel runs (best kept)")
    args = parser.parse_args()
    print(f"ncii-node hashing benchmark: {default_jobs()} core(s) available, parallel run on {args.jobs}; "
          f"load average {os.getloadavg()[0]:.1f} (other work on the machine skews the figures)")
    with tempfile.TemporaryDirectory(prefix="bench-hash-") as tmp:
        folder = Path(tmp)
        paths = bench_photos(folder, args.images, args.jobs, args.rounds)
        bench_distances(paths)
        bench_video(folder, args.video_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
