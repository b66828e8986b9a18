"""Tests of node/hashing for photos: PDQ conformance against Meta's reference hashes,
every format we claim to read, EXIF orientation, and refusal of bad files.

Conformance data: ../shared/conformance/pdq (Meta's pdq/data images and the hashes the
C++, Python and WebAssembly references produced). PDQ's rule: identical pixels give
the identical hash; images of quality >= 80 stay within Hamming distance 10 of the
reference even through a different decoder.
"""

from __future__ import annotations

import csv
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image

from node.hashing import (
    HASH_SIZE,
    MAX_IMAGE_PIXELS,
    HashingError,
    decode_image,
    hash_file,
    hash_image_bytes,
    hash_media_bytes,
    pdq_from_rgb,
)
from protocol.signals import PDQ

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "pdq"
PDQ_TOLERANCE = 10  # PDQ's own rule for quality >= 80 across decoders

needs_conformance = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="../shared/conformance/pdq is absent")


def distance(a: str, b: str) -> int:
    return PDQ.distance(bytes.fromhex(a), bytes.fromhex(b))


def reference_hex(pixels: np.ndarray) -> str:
    """pdqhash.compute's bits as Meta's hex, written independently of node/hashing:
    bit i of the 256 is bit (255 - i) of the hash, and the hex string starts with
    word 15, most significant nibble first."""
    bits, _ = pdqhash.compute(pixels)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:064x}"


def asymmetric_picture(height: int = 90, width: int = 120) -> np.ndarray:
    """An RGB picture with no symmetry (so every rotation and flip hashes differently)."""
    y, x = np.mgrid[0:height, 0:width]
    picture = np.zeros((height, width, 3), np.uint8)
    picture[..., 0] = (x * 255 // width).astype(np.uint8)
    picture[..., 1] = np.where((x // 8 + y // 8) % 2 == 0, 220, 30)  # texture: quality 100
    picture[..., 2] = np.where((x < width // 3) & (y < height // 2), 230, 20)
    picture[height * 2 // 3 :, width // 2 :] = (250, 250, 40)
    return picture


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- conformance -------------------------------------------------------------------


def _reference_rows():
    if not CONFORMANCE.is_dir():
        return []
    with open(CONFORMANCE / "expected-hashes.csv", newline="") as f:
        return list(csv.DictReader(f))


@needs_conformance
def test_same_pixels_give_the_same_hash_as_pdqhash():
    """Our hash of the pixels we decode is exactly pdqhash.compute's: nothing is added
    between decoding and the reference code."""
    paths = sorted({row["path"] for row in _reference_rows()})
    assert paths
    for path in paths:
        with open(CONFORMANCE / path, "rb") as f:
            pixels = decode_image(f)
        bits, quality = pdqhash.compute(pixels)
        assert pdq_from_rgb(pixels) == (reference_hex(pixels), quality), path
        assert hash_file(CONFORMANCE / path)[0]["fingerprint"] == reference_hex(pixels), path


@needs_conformance
def test_full_resolution_pixels_match_pdqhash_on_the_same_array():
    """Without the shrink, a lossless file gives exactly pdqhash on Pillow's pixels."""
    path = CONFORMANCE / "misc-images" / "c.png"
    with open(path, "rb") as f:
        ours = pdq_from_rgb(decode_image(f, size=None))
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert ours == (reference_hex(pixels), pdqhash.compute(pixels)[1])


@needs_conformance
def test_reference_hashes_within_tolerance(record_property):
    """Every image of quality >= 80 is within distance 10 of every reference row for it."""
    rows = _reference_rows()
    assert len(rows) >= 30
    largest, worst = 0, None
    checked = 0
    for row in rows:
        [fingerprint] = hash_file(CONFORMANCE / row["path"])
        assert fingerprint["signal"] == "pdq"
        if fingerprint["quality"] < 80:
            continue
        checked += 1
        d = distance(fingerprint["fingerprint"], row["pdq_hex"])
        if d > largest:
            largest, worst = d, f"{row['path']} ({row['produced_by']})"
        assert d <= PDQ_TOLERANCE, f"{row['path']} vs {row['produced_by']}: distance {d}"
    record_property("pdq_largest_reference_distance", largest)
    print(f"\nPDQ conformance: {checked} rows of quality >= 80, largest distance {largest} ({worst})")
    assert checked >= 30


@needs_conformance
def test_low_quality_reference_image_is_flagged():
    [fingerprint] = hash_file(CONFORMANCE / "misc-images" / "small.jpg")
    row = next(r for r in _reference_rows() if r["path"] == "misc-images/small.jpg")
    assert fingerprint["quality"] < 50 and fingerprint["low_quality"] is True
    assert fingerprint["fingerprint"] == row["pdq_hex"]  # flat image: every decoder agrees


@needs_conformance
def test_rotated_files_match_their_dihedral_variants(record_property):
    """pdqhash.compute_dihedral of the original gives the hash of each rotation or flip;
    the rotated files must be within the tolerance of their variant (and far from the others)."""
    folder = CONFORMANCE / "reg-test-input" / "dih"
    files = sorted(folder.glob("bridge-*.jpg"))
    assert len(files) == 8
    with open(files[0], "rb") as f:
        variants, _ = pdqhash.compute_dihedral(decode_image(f))
    variants = [np.packbits(v.astype(np.uint8)).tobytes().hex() for v in variants]
    # compute_dihedral order: original, rotate 90, 180, 270, flip x, flip y, flip +1, flip -1,
    # which is the numbering of the files (bridge-1-original ... bridge-8-flip-minus-1).
    largest = 0
    for index, path in enumerate(files):
        ours = hash_file(path)[0]["fingerprint"]
        distances = [distance(ours, v) for v in variants]
        assert distances[index] <= PDQ_TOLERANCE, (path.name, distances)
        assert min(d for i, d in enumerate(distances) if i != index) > 31, (path.name, distances)
        largest = max(largest, distances[index])
    record_property("pdq_largest_dihedral_distance", largest)
    print(f"\nPDQ dihedral: largest distance of a rotated file to its variant {largest}")


@needs_conformance
def test_exif_orientation_is_applied_to_phone_photos():
    """The exif-rotn photos are stored sideways or upside down with an orientation tag;
    our pixels are the stored pixels turned as the tag says (checked with numpy)."""
    turn = {1: lambda a: a, 3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}
    for tag, undo in turn.items():
        path = CONFORMANCE / "reg-test-input" / "exif-rotn" / f"exif-rotn-{tag}.jpg"
        assert Image.open(path).getexif().get(0x0112) == tag
        with open(path, "rb") as f:
            upright = decode_image(f)
        stored = Image.open(path)
        stored.draft("RGB", (1024, 768))
        stored = np.asarray(stored.convert("RGB").resize((1024, 768), Image.Resampling.BICUBIC))
        assert np.array_equal(upright, undo(stored)), tag
        # Phones shoot landscape 4032 x 3024; 6 and 8 are portrait once upright.
        assert upright.shape[:2] == ((1024, 768) if tag in (6, 8) else (768, 1024))


# --- formats -------------------------------------------------------------------------


def test_every_lossless_format_gives_the_exact_hash(tmp_path):
    picture = asymmetric_picture()
    expected = reference_hex(picture)
    for fmt, suffix, options in [
        ("PNG", "png", {}),
        ("BMP", "bmp", {}),
        ("TIFF", "tif", {}),
        ("TIFF", "tiff", {"compression": "tiff_lzw"}),
        ("WEBP", "webp", {"lossless": True}),
    ]:
        path = tmp_path / f"picture.{suffix}"
        path.write_bytes(encode(picture, fmt, **options))
        [fingerprint] = hash_file(path)
        assert fingerprint == {"signal": "pdq", "fingerprint": expected, "quality": pdqhash.compute(picture)[1]}, fmt


def test_lossy_formats_stay_close(tmp_path):
    picture = asymmetric_picture()
    expected = reference_hex(picture)
    for fmt, options in [("JPEG", {"quality": 90}), ("WEBP", {"quality": 90}), ("GIF", {})]:
        data = encode(picture, fmt, **options)
        [fingerprint] = hash_image_bytes(data)
        assert distance(fingerprint["fingerprint"], expected) <= PDQ_TOLERANCE, fmt


def test_heic_as_phones_write_it(tmp_path):
    import pillow_heif

    pillow_heif.register_heif_opener()
    picture = asymmetric_picture()
    path = tmp_path / "IMG_0001.HEIC"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, as an iPhone held upright does
    Image.fromarray(np.rot90(picture, 1)).save(path, format="HEIF", quality=95, exif=exif.tobytes())
    assert path.read_bytes()[4:12] == b"ftypheic"
    [fingerprint] = hash_file(path)
    assert distance(fingerprint["fingerprint"], reference_hex(picture)) <= PDQ_TOLERANCE
    with open(path, "rb") as f:
        assert decode_image(f).shape == picture.shape  # upright, turned once only


def test_gif_gives_its_first_frame(tmp_path):
    first, second = asymmetric_picture(), asymmetric_picture()[::-1, ::-1].copy()
    path = tmp_path / "animation.gif"
    frames = [Image.fromarray(first), Image.fromarray(second)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with open(path, "rb") as f:
        pixels = decode_image(f)
    [fingerprint] = hash_file(path)
    assert fingerprint["fingerprint"] == reference_hex(pixels)
    assert distance(fingerprint["fingerprint"], reference_hex(first)) <= PDQ_TOLERANCE
    assert distance(fingerprint["fingerprint"], reference_hex(second)) > 31


@pytest.mark.parametrize("tag", range(1, 9))
def test_every_exif_orientation(tag, tmp_path):
    """A picture stored turned, with the tag that says how to turn it back, hashes as
    the upright picture (PNG: lossless, so exactly)."""
    upright = asymmetric_picture()
    stored = {
        1: upright,
        2: upright[:, ::-1],
        3: upright[::-1, ::-1],
        4: upright[::-1, :],
        5: upright.transpose(1, 0, 2),
        6: np.rot90(upright, 1),
        7: np.rot90(upright, 2).transpose(1, 0, 2),
        8: np.rot90(upright, -1),
    }[tag]
    exif = Image.Exif()
    exif[0x0112] = tag
    path = tmp_path / "turned.png"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif.tobytes())
    [fingerprint] = hash_file(path)
    assert fingerprint["fingerprint"] == reference_hex(upright)


def test_modes_are_converted_to_rgb():
    picture = asymmetric_picture()
    grey = Image.fromarray(picture).convert("L")
    rgba = Image.fromarray(picture).convert("RGBA")
    grey16 = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    assert grey16.mode.startswith("I;16")
    expected_grey = reference_hex(np.asarray(grey.convert("RGB")))
    for image, expected in [(grey, expected_grey), (rgba, reference_hex(picture)), (grey16, expected_grey)]:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        assert hash_image_bytes(buffer.getvalue())[0]["fingerprint"] == expected, image.mode


def test_large_photo_is_shrunk_before_hashing():
    """A 12 MP JPEG is decoded at reduced scale and shrunk to HASH_SIZE; its hash stays
    within the tolerance of the full-resolution hash."""
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    picture = np.asarray(Image.fromarray(coarse).resize((4000, 3000), Image.Resampling.BICUBIC))
    data = encode(picture, "JPEG", quality=90)
    pixels = decode_image(io.BytesIO(data))
    assert max(pixels.shape[:2]) == HASH_SIZE
    full = reference_hex(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert distance(hash_image_bytes(data)[0]["fingerprint"], full) <= PDQ_TOLERANCE


# --- refusals --------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (a decompression bomb's shape)."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "PNG"))
    ihdr = data[12:29]
    assert ihdr[:4] == b"IHDR"
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.mark.parametrize("width,height", [(10_001, 10_000), (100_000, 100_000)])
def test_decompression_bomb_is_refused_before_decoding(width, height):
    assert width * height > MAX_IMAGE_PIXELS
    with pytest.raises(HashingError, match="too large.*100 megapixels"):
        hash_image_bytes(png_claiming(width, height))


def test_images_at_the_limit_are_not_refused_as_bombs():
    with pytest.raises(HashingError) as caught:  # 100 MP exactly: opened, then the pixels are missing
        hash_image_bytes(png_claiming(10_000, 10_000))
    assert "too large" not in str(caught.value)


def test_damaged_files_give_a_reason_without_the_file_name(tmp_path):
    picture = asymmetric_picture(300, 400)
    jpeg = encode(picture, "JPEG", quality=90)
    png = encode(picture, "PNG")
    cases = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated|damaged"),
        "garbage.jpg": (b"\xff\xd8\xff" + bytes(range(256)) * 8, "damaged|truncated"),
        "empty.jpg": (b"", "empty"),
        "notes.jpg": (b"these are my notes, not a photo\n", "not a photo or video"),
        "drawing.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a photo or video"),
        "tiny.png": (encode(np.zeros((3, 40, 3), np.uint8), "PNG"), "at least 5"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(HashingError, match=reason) as caught:
            hash_file(path)
        assert str(tmp_path) not in str(caught.value) and name not in str(caught.value)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(HashingError, match="no such file"):
        hash_file(tmp_path / "gone.jpg")
    with pytest.raises(HashingError, match="directory"):
        hash_file(tmp_path)


def test_formats_outside_the_list_are_not_opened():
    """Pillow reads many formats; we open only the listed ones (less decoder surface)."""
    picture = asymmetric_picture()
    for fmt in ("PPM", "TGA", "PCX", "ICO"):
        data = encode(picture, fmt)
        with pytest.raises(HashingError, match="cannot be identified"):
            hash_image_bytes(data)
        with pytest.raises(HashingError, match="not a photo or video"):
            hash_media_bytes(data)


def test_pdq_from_rgb_rejects_wrong_arrays():
    with pytest.raises(HashingError, match="RGB"):
        pdq_from_rgb(np.zeros((10, 10), np.uint8))
    with pytest.raises(HashingError, match="RGB"):
        pdq_from_rgb(np.zeros((10, 10, 3), np.float32))
