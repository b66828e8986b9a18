/**
 * PDQ perceptual hash (256 bits + quality 0..100), written for the browser.
 *
 * The algorithm follows Meta's PDQ reference (facebook/ThreatExchange pdq/cpp):
 *   luminance (0.299 R + 0.587 G + 0.114 B)
 *   -> two passes of a Jarosz box filter along rows then columns
 *      (window = ceil(side / 128), so two passes cover 1/64 of the side)
 *   -> decimation to 64x64 at the centres of the cells
 *   -> quality from the sum of quantised gradients of the 64x64 image
 *   -> DCT keeping frequencies 1..16 on each axis (16x16)
 *   -> bit k (k = row * 16 + column) is 1 when that coefficient is above the median.
 *
 * Invariant: arithmetic is done in 32-bit floats where the reference uses
 * `float` (Math.fround and Float32Array), so identical pixels give the same
 * hash as the reference implementation, bit for bit in all but rare ties.
 *
 * The hex form is the reference's: sixteen 16-bit words printed from word 15
 * down to word 0, bit k living in word k >> 4 at position k & 15.
 * This module is pure: no DOM, usable in a Web Worker.
 */

export const MIN_HASHABLE_SIDE = 5;
const fround = Math.fround;

// DCT-II basis rows 1..16 for a 64-sample signal, scaled by sqrt(2/64), in float32.
const DCT_16x64 = (() => {
  const matrix = new Float32Array(16 * 64);
  const scale = fround(Math.sqrt(2 / 64));
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      matrix[i * 64 + j] = scale * Math.cos((Math.PI / 2 / 64) * (i + 1) * (2 * j + 1));
    }
  }
  return matrix;
})();

/** Luminance of RGBA pixels (as from ImageData.data) into a new Float32Array. */
export function lumaFromRGBA(rgba, width, height) {
  const count = width * height;
  const luma = new Float32Array(count);
  for (let p = 0, q = 0; p < count; p++, q += 4) {
    // Computed in double then stored as float32, like numpy's float64 -> float32.
    luma[p] = 0.299 * rgba[q] + 0.587 * rgba[q + 1] + 0.114 * rgba[q + 2];
  }
  return luma;
}

/** Box-filter window so that two passes span 1/64 of the side (reference: rounded up). */
export function jaroszWindow(oldSide, newSide) {
  return Math.floor((oldSide + 2 * newSide - 1) / (2 * newSide));
}

// One box pass along one row of `src` into `dst`, starting at offset `base`.
// The window is centred: it reaches `half - 1` samples back and
// `window - half` ahead, and shrinks at both edges. The running sum is a
// float32, as in the reference, so every output is the reference's to the bit.
function boxOneRow(src, dst, base, width, window) {
  const half = (window + 2) >> 1;
  let sum = 0;
  let size = 0;
  let right = base;
  let left = base;
  let out = base;
  for (let i = 0; i < half - 1; i++) {
    sum = fround(sum + src[right++]);
    size++;
  }
  for (let i = 0; i < window - half + 1; i++) {
    sum = fround(sum + src[right++]);
    size++;
    dst[out++] = sum / size;
  }
  for (let i = 0; i < width - window; i++) {
    sum = fround(fround(sum + src[right++]) - src[left++]);
    dst[out++] = sum / size;
  }
  for (let i = 0; i < half - 1; i++) {
    sum = fround(sum - src[left++]);
    size--;
    dst[out++] = sum / size;
  }
}

// The pass along every row. A running sum is a chain of dependent float32
// operations, so four rows are walked side by side: four independent chains
// keep the processor busy (about three times faster), with the same
// operations per row as boxOneRow.
function boxAlongRows(src, dst, width, height, window) {
  const half = (window + 2) >> 1;
  const w1 = width;
  const w2 = 2 * width;
  const w3 = 3 * width;
  let row = 0;
  for (; row + 4 <= height; row += 4) {
    const base = row * width;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let size = 0;
    let right = base;
    let left = base;
    let out = base;
    for (let i = 0; i < half - 1; i++, right++) {
      s0 = fround(s0 + src[right]);
      s1 = fround(s1 + src[right + w1]);
      s2 = fround(s2 + src[right + w2]);
      s3 = fround(s3 + src[right + w3]);
      size++;
    }
    for (let i = 0; i < window - half + 1; i++, right++, out++) {
      s0 = fround(s0 + src[right]);
      s1 = fround(s1 + src[right + w1]);
      s2 = fround(s2 + src[right + w2]);
      s3 = fround(s3 + src[right + w3]);
      size++;
      dst[out] = s0 / size;
      dst[out + w1] = s1 / size;
      dst[out + w2] = s2 / size;
      dst[out + w3] = s3 / size;
    }
    for (let i = 0; i < width - window; i++, right++, left++, out++) {
      s0 = fround(fround(s0 + src[right]) - src[left]);
      s1 = fround(fround(s1 + src[right + w1]) - src[left + w1]);
      s2 = fround(fround(s2 + src[right + w2]) - src[left + w2]);
      s3 = fround(fround(s3 + src[right + w3]) - src[left + w3]);
      dst[out] = s0 / size;
      dst[out + w1] = s1 / size;
      dst[out + w2] = s2 / size;
      dst[out + w3] = s3 / size;
    }
    for (let i = 0; i < half - 1; i++, left++, out++) {
      s0 = fround(s0 - src[left]);
      s1 = fround(s1 - src[left + w1]);
      s2 = fround(s2 - src[left + w2]);
      s3 = fround(s3 - src[left + w3]);
      size--;
      dst[out] = s0 / size;
      dst[out + w1] = s1 / size;
      dst[out + w2] = s2 / size;
      dst[out + w3] = s3 / size;
    }
  }
  for (; row < height; row++) boxOneRow(src, dst, row * width, width, window);
}

// The same pass along every column. Rather than striding down one column at a
// time (slow: a cache miss per sample), it walks rows and keeps one running
// float32 sum per column; each column sees exactly the same sequence of
// operations as in the reference, so the results are identical.
function boxAlongColumns(src, dst, width, height, window, sums) {
  const half = (window + 2) >> 1;
  const warmup = half - 1;
  const firstWrites = window - half + 1;
  const fullWrites = height - window;
  sums.fill(0);
  let size = 0;
  let right = 0; // offset of the row to add next
  let left = 0; // offset of the row to subtract next
  let out = 0; // offset of the next output row
  for (let i = 0; i < warmup; i++, right += width) {
    for (let c = 0; c < width; c++) sums[c] = sums[c] + src[right + c];
    size++;
  }
  for (let i = 0; i < firstWrites; i++, right += width, out += width) {
    size++;
    for (let c = 0; c < width; c++) {
      const sum = fround(sums[c] + src[right + c]);
      sums[c] = sum;
      dst[out + c] = sum / size;
    }
  }
  for (let i = 0; i < fullWrites; i++, right += width, left += width, out += width) {
    for (let c = 0; c < width; c++) {
      const sum = fround(fround(sums[c] + src[right + c]) - src[left + c]);
      sums[c] = sum;
      dst[out + c] = sum / size;
    }
  }
  for (let i = 0; i < warmup; i++, left += width, out += width) {
    size--;
    for (let c = 0; c < width; c++) {
      const sum = fround(sums[c] - src[left + c]);
      sums[c] = sum;
      dst[out + c] = sum / size;
    }
  }
}

/** Blur `luma` in place (two row+column passes) and pick the 64x64 cell centres. */
export function downscaleTo64(luma, width, height) {
  const scratch = new Float32Array(width * height);
  const columnSums = new Float32Array(width); // float32 running sums, as in the reference
  const windowAlongRows = jaroszWindow(width, 64);
  const windowAlongColumns = jaroszWindow(height, 64);
  for (let pass = 0; pass < 2; pass++) {
    boxAlongRows(luma, scratch, width, height, windowAlongRows);
    boxAlongColumns(scratch, luma, width, height, windowAlongColumns, columnSums);
  }
  const out = new Float32Array(64 * 64);
  for (let i = 0; i < 64; i++) {
    const srcRow = Math.floor(((i + 0.5) * height) / 64);
    for (let j = 0; j < 64; j++) {
      const srcCol = Math.floor(((j + 0.5) * width) / 64);
      out[i * 64 + j] = luma[srcRow * width + srcCol];
    }
  }
  return out;
}

/** Quality 0..100: the count of significant gradients in the 64x64 image (reference heuristic). */
export function qualityOf64(image64) {
  let gradientSum = 0;
  const step = (u, v) => Math.abs(Math.trunc(fround(fround(fround(u - v) * 100) / 255)));
  for (let i = 0; i < 63; i++) {
    for (let j = 0; j < 64; j++) gradientSum += step(image64[i * 64 + j], image64[(i + 1) * 64 + j]);
  }
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 63; j++) gradientSum += step(image64[i * 64 + j], image64[i * 64 + j + 1]);
  }
  return Math.min(100, Math.floor(gradientSum / 90));
}

/** 16x16 low-frequency DCT coefficients of the 64x64 image: D * A * transpose(D). */
export function dct64To16(image64) {
  const partial = new Float32Array(16 * 64); // D * A
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum = fround(sum + fround(DCT_16x64[i * 64 + k] * image64[k * 64 + j]));
      partial[i * 64 + j] = sum;
    }
  }
  const out = new Float32Array(16 * 16);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum = fround(sum + fround(partial[i * 64 + k] * DCT_16x64[j * 64 + k]));
      out[i * 16 + j] = sum;
    }
  }
  return out;
}

/** Bits of the hash as sixteen 16-bit words: bit k is set when coefficient k is above the median. */
export function bitsFromCoefficients(coefficients) {
  // The reference's median (Torben's method) is the 128th smallest of the 256 values.
  const median = Float32Array.from(coefficients).sort()[127];
  const words = new Uint16Array(16);
  for (let k = 0; k < 256; k++) {
    if (coefficients[k] > median) words[k >> 4] |= 1 << (k & 15);
  }
  return words;
}

/** Reference hex form: word 15 first, four lowercase hex digits per word. */
export function hexFromWords(words) {
  let hex = '';
  for (let w = 15; w >= 0; w--) hex += words[w].toString(16).padStart(4, '0');
  return hex;
}

/**
 * PDQ of a luminance image. Consumes (overwrites) `luma`.
 * Returns { hex, quality }; images with a side under 5 pixels cannot be hashed
 * (the reference returns an all-zero hash of quality 0 for them: we refuse instead).
 */
export function pdqFromLuma(luma, width, height) {
  if (width < MIN_HASHABLE_SIDE || height < MIN_HASHABLE_SIDE) {
    throw new RangeError(`image too small to fingerprint: ${width}x${height} (minimum 5x5)`);
  }
  let image64;
  if (width === 64 && height === 64) {
    image64 = Float32Array.from(luma);
  } else {
    image64 = downscaleTo64(luma, width, height);
  }
  const quality = qualityOf64(image64);
  const words = bitsFromCoefficients(dct64To16(image64));
  return { hex: hexFromWords(words), quality };
}

/**
 * PDQ of RGBA pixels (ImageData.data layout). With `inPlace`, the luminance
 * overwrites the pixel buffer (4 bytes per pixel either way), which saves a
 * quarter of the memory a large photo needs; the pixels are destroyed.
 */
export function pdqFromRGBA(rgba, width, height, { inPlace = false } = {}) {
  let luma;
  if (inPlace && rgba.byteOffset === 0 && rgba.buffer.byteLength === width * height * 4) {
    luma = new Float32Array(rgba.buffer, 0, width * height);
    // Pixel p's float lands on bytes 4p..4p+3, after they have been read.
    for (let p = 0, q = 0; p < width * height; p++, q += 4) {
      luma[p] = 0.299 * rgba[q] + 0.587 * rgba[q + 1] + 0.114 * rgba[q + 2];
    }
  } else {
    luma = lumaFromRGBA(rgba, width, height);
  }
  return pdqFromLuma(luma, width, height);
}

/** Hamming distance between two 64-hex-digit PDQ hashes. */
export function pdqDistance(hexA, hexB) {
  let distance = 0;
  for (let i = 0; i < 64; i += 8) {
    let x = (parseInt(hexA.slice(i, i + 8), 16) ^ parseInt(hexB.slice(i, i + 8), 16)) >>> 0;
    while (x) {
      x &= x - 1;
      distance++;
    }
  }
  return distance;
}
