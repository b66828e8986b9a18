"""Photos to PDQ fingerprints, on the device, from the file's bytes.

Pipeline (spec/parts/hashing.md is normative):

1. identify the format from the file's contents; only JPEG (and MPO), PNG, WebP,
   GIF, BMP, TIFF and HEIC/HEIF are opened, so no other Pillow plugin ever parses
   a file here (EPS, for one, would start Ghostscript);
2. refuse images above MAX_IMAGE_PIXELS before a single pixel is decoded
   (decompression bombs);
3. decode the first frame, for JPEG at a reduced DCT scale ("draft") when the image
   is much larger than HASH_SIZE;
4. convert to 8-bit RGB, shrink so the longer side is at most HASH_SIZE (bicubic),
   apply the EXIF orientation;
5. PDQ of those pixels with the `pdqhash` package, hex in Meta's order.

Invariant: `pdq_from_rgb(pixels)` is exactly `pdqhash.compute(pixels)`: the same
pixels give the same hash as the reference C++ code. Steps 3-4 only choose which
pixels; their effect on the hash is measured against the conformance images by
tests/test_hash_images.py and scripts/bench_hash.py.

Nothing here keeps pixels: the decoded image is dropped as soon as it is hashed,
and no error message carries a file name (callers add one only when asked to).
"""

from __future__ import annotations

import io
import warnings
from typing import BinaryIO

import numpy as np

from protocol.signals import LOW_QUALITY

from .errors import HashingError

MAX_IMAGE_PIXELS = 100_000_000
"""Largest image (width x height) decoded: 100 megapixels. A phone photo is 12 to 50
MP; anything larger is refused as a likely decompression bomb."""

HASH_SIZE = 1024
"""Longer side, in pixels, of the image handed to PDQ. PDQ box-filters every image
down to 64 x 64, so detail above this size cannot change the hash much; measured on
the conformance images the shrink moves no hash by more than 8 bits (the reference
Python hasher shrinks to 512, which moves some by 12)."""

MIN_SIDE = 5
"""PDQ refuses images smaller than this on a side (as the reference does)."""

# Pillow format names this module opens (JPEG includes MPO, the multi-picture JPEG
# some phones write); everything else is refused unread.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF")

_ORIENTATION_TAG = 0x0112  # EXIF Orientation

_heif_registered = False


def _register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF (iPhone photos) through pillow-heif, once."""
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


DIHEDRAL_VARIANTS = ("original", "rotate-90", "rotate-180", "rotate-270", "flip-x", "flip-y",
                     "flip-plus-1", "flip-minus-1")
"""Names of the 8 rotations and flips `pdq_dihedral_from_rgb` hashes, in its order
(that of pdqhash.compute_dihedral)."""


def _pdq_pixels(pixels: np.ndarray) -> np.ndarray:
    """`pixels` as pdqhash takes them, after checking PDQ can hash them."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise HashingError(f"PDQ needs H x W x 3 8-bit RGB pixels, not {pixels.dtype} {pixels.shape}")
    if min(pixels.shape[0], pixels.shape[1]) < MIN_SIDE:
        raise HashingError(
            f"the image is {pixels.shape[1]} x {pixels.shape[0]} pixels; PDQ needs at least "
            f"{MIN_SIDE} on each side"
        )
    return np.ascontiguousarray(pixels)


def pdq_from_rgb(pixels: np.ndarray) -> tuple[str, int]:
    """PDQ hash (64 lowercase hex digits, Meta's order) and quality (0-100) of an
    H x W x 3 uint8 RGB array. Exactly `pdqhash.compute`, nothing added."""
    import pdqhash

    bits, quality = pdqhash.compute(_pdq_pixels(pixels))
    return pdq_hex(bits), int(quality)


def pdq_dihedral_from_rgb(pixels: np.ndarray) -> tuple[list[str], int]:
    """The PDQ hashes of the pixels and of their 7 rotations and flips (PDQ is not
    rotation invariant), in the order of DIHEDRAL_VARIANTS, and their quality (one
    for all eight), in one pass: exactly `pdqhash.compute_dihedral`."""
    import pdqhash

    vectors, quality = pdqhash.compute_dihedral(_pdq_pixels(pixels))
    return [pdq_hex(bits) for bits in vectors], int(quality)


def pdq_hex(bits: np.ndarray) -> str:
    """Meta's 64-hex-digit string of a 256-bit vector from pdqhash (compute or
    compute_dihedral). pdqhash gives hash bit 255 first (it reverses Meta's word
    order), so packing the bits most significant first gives the string, word 15 first."""
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def pdq_fingerprint(hex_hash: str, quality: int) -> dict:
    """The JSON object of one PDQ fingerprint, flagged when its quality is low."""
    fingerprint = {"signal": "pdq", "fingerprint": hex_hash, "quality": quality}
    if quality < LOW_QUALITY:
        fingerprint["low_quality"] = True
    return fingerprint


def shrink_for_hashing(image, size: int = HASH_SIZE):
    """`image` (Pillow, RGB) with its longer side at most `size`, by bicubic
    resampling (Pillow's is antialiased: the whole footprint contributes)."""
    from PIL import Image

    width, height = image.size
    scale = size / max(width, height)
    if scale >= 1:
        return image
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(target, Image.Resampling.BICUBIC)


def decode_image(source: BinaryIO, *, size: int | None = HASH_SIZE) -> np.ndarray:
    """Decode an image file into the RGB pixels PDQ is computed on: first frame,
    8-bit RGB, longer side at most `size` (None: full resolution), upright as its
    EXIF orientation says. Raises HashingError with a reason a person understands."""
    from PIL import Image

    _register_heif()
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow warns above it, refuses above twice it
    try:
        with warnings.catch_warnings():
            # Make Pillow's bomb warning an error, so the limit is MAX_IMAGE_PIXELS, not 2x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _too_large(width, height)
                if size is not None and image.format in ("JPEG", "MPO"):
                    scale = size / max(width, height)
                    if scale < 0.5:
                        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the
                        # target size: most of a 12 MP photo's decoding time saved.
                        image.draft("RGB", (round(width * scale), round(height * scale)))
                image.load()
                rgb = _to_rgb(image)
                if size is not None:
                    rgb = shrink_for_hashing(rgb, size)
                rgb = _upright(rgb, image.getexif().get(_ORIENTATION_TAG, 1))
            return np.asarray(rgb)
    except HashingError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _too_large(0, 0) from None
    except Image.UnidentifiedImageError:
        raise HashingError(
            "the image cannot be identified: it is damaged, or not JPEG, PNG, WebP, GIF, "
            "BMP, TIFF or HEIC/HEIF"
        ) from None
    except MemoryError:
        raise HashingError("not enough memory to decode this image") from None
    except Exception as exc:
        # Decoders raise anything (OSError, SyntaxError, EOFError, KeyError, struct.error...)
        # on damaged files, and their messages may name the file: only the kind of
        # failure is reported.
        raise HashingError(_damage_reason(exc)) from None


def _upright(image, orientation):
    """`image` turned as its EXIF orientation tag (1-8) says. The tag is read from
    the original but applied after the shrink, which turns fewer pixels; the result
    is the same as Pillow's ImageOps.exif_transpose."""
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image if method is None else image.transpose(method)


def _to_rgb(image):
    """8-bit RGB version of a decoded image of any mode Pillow gives."""
    from PIL import Image

    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey (PNG, TIFF): scale to 8 bits instead of letting convert() clip.
        grey = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "RGB":
        return image
    # Alpha is dropped (not composited), as Meta's reference hashers do.
    return image.convert("RGB")


def _damage_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError):
        return "the image is truncated (the file ends before the picture does)"
    if isinstance(exc, PermissionError):
        return "the file cannot be read: permission denied"
    return "the image is damaged and cannot be decoded"


def _too_large(width: int, height: int) -> HashingError:
    megapixels = width * height / 1e6
    size = f" ({width} x {height}, {megapixels:.0f} megapixels)" if width and height else ""
    return HashingError(
        f"the image is too large to decode safely{size}; the limit is "
        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
    )


def hash_image(source: BinaryIO) -> list[dict]:
    """Fingerprints of one image read from an open binary file: one PDQ object."""
    return [pdq_fingerprint(*pdq_from_rgb(decode_image(source)))]


def hash_image_bytes(data: bytes) -> list[dict]:
    """Fingerprints of an image given as the bytes of its file (e.g. an upload)."""
    return hash_image(io.BytesIO(data))
