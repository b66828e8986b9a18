/**
 * MD5 (RFC 1321), incremental, for fingerprinting video files in the browser.
 *
 * SubtleCrypto has no MD5, so we carry our own. `update()` takes chunks of any
 * size (the worker feeds it slices of the file, so a large video never has to
 * sit in memory whole); `hex()` finishes and returns 32 lowercase hex digits.
 * Invariant: `buffer` holds fewer than 64 bytes not yet compressed.
 * This module is pure: no DOM, usable in a Web Worker.
 */

// Per-step left rotations: four values per round, repeated within the round.
const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
// K[i] = floor(|sin(i + 1)| * 2^32), as 32-bit integers.
const K = Int32Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0);

export class MD5 {
  constructor() {
    this.state = Int32Array.of(0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476);
    this.buffer = new Uint8Array(64);
    this.buffered = 0;
    this.length = 0; // bytes seen so far (a JS number: exact far beyond any real file)
    this.words = new Int32Array(16);
  }

  /** Feed bytes (Uint8Array). Returns this, for chaining. */
  update(bytes) {
    let offset = 0;
    this.length += bytes.length;
    if (this.buffered > 0) {
      const take = Math.min(64 - this.buffered, bytes.length);
      this.buffer.set(bytes.subarray(0, take), this.buffered);
      this.buffered += take;
      offset = take;
      if (this.buffered < 64) return this;
      this.compress(this.buffer, 0);
      this.buffered = 0;
    }
    for (; offset + 64 <= bytes.length; offset += 64) this.compress(bytes, offset);
    this.buffer.set(bytes.subarray(offset), 0);
    this.buffered = bytes.length - offset;
    return this;
  }

  /** Finish: pad, append the bit length, and return the digest as hex. */
  hex() {
    const bitLengthLow = ((this.length % 0x20000000) * 8) >>> 0;
    const bitLengthHigh = Math.floor(this.length / 0x20000000) >>> 0;
    const padding = new Uint8Array(((this.buffered < 56 ? 56 : 120) - this.buffered) + 8);
    padding[0] = 0x80;
    const end = padding.length - 8;
    for (let i = 0; i < 4; i++) {
      padding[end + i] = (bitLengthLow >>> (8 * i)) & 0xff;
      padding[end + 4 + i] = (bitLengthHigh >>> (8 * i)) & 0xff;
    }
    const length = this.length;
    this.update(padding);
    this.length = length;
    let hex = '';
    for (const word of this.state) {
      for (let i = 0; i < 4; i++) hex += ((word >>> (8 * i)) & 0xff).toString(16).padStart(2, '0');
    }
    return hex;
  }

  // One 64-byte block at bytes[offset..offset+64).
  compress(bytes, offset) {
    const m = this.words;
    for (let i = 0; i < 16; i++) {
      const p = offset + 4 * i;
      m[i] = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
    }
    let [a, b, c, d] = this.state;
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const shift = SHIFTS[((i >> 4) << 2) | (i & 3)];
      const sum = (f + a + K[i] + m[g]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << shift) | (sum >>> (32 - shift)))) | 0;
    }
    this.state[0] += a;
    this.state[1] += b;
    this.state[2] += c;
    this.state[3] += d;
  }
}

/** MD5 of a whole Uint8Array, as hex. */
export function md5Hex(bytes) {
  return new MD5().update(bytes).hex();
}
