/**
 * The proof of work the helpline asks for when cases are being opened faster than usual
 * (node/cases/pow.py, spec/parts/cases.md §11): find an 8-byte nonce such that
 * SHA-256(challenge || nonce) begins with `bits` zero bits.
 *
 * The challenge is 38 bytes, so challenge || nonce (46 bytes) is one SHA-256 block:
 * words 0..8 are the challenge alone, and the first nine rounds are computed once
 * (a "midstate"); each try costs the other 55 rounds and the message schedule.
 * Nonce = hi (u32, big-endian) || lo (u32, big-endian).
 */

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
export const CHALLENGE_BYTES = 38;

/** base64url (no padding) -> bytes. */
export function decodeChallenge(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  if (bytes.length !== CHALLENGE_BYTES) throw new Error('a proof-of-work challenge is 38 bytes');
  return bytes;
}

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

/** A solver for one challenge: `digest(hi, lo)` gives the 8 words of SHA-256(challenge || nonce). */
export function solver(challenge) {
  const w = new Uint32Array(64);
  for (let i = 0; i < 9; i++) {
    w[i] = (challenge[4 * i] << 24) | (challenge[4 * i + 1] << 16) | (challenge[4 * i + 2] << 8) | challenge[4 * i + 3];
  }
  const tail = (challenge[36] << 24) | (challenge[37] << 16);
  // The first nine rounds use words 0..8 only: once per challenge.
  let [a, b, c, d, e, f, g, h] = IV;
  for (let i = 0; i < 9; i++) {
    const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  const m0 = a, m1 = b, m2 = c, m3 = d, m4 = e, m5 = f, m6 = g, m7 = h;
  const out = new Uint32Array(8);

  // The hot loop: plain local variables and inlined rotations (this is what runs 2^bits times).
  return function digest(hi, lo) {
    w[9] = tail | (hi >>> 16);
    w[10] = ((hi & 0xffff) << 16) | (lo >>> 16);
    w[11] = ((lo & 0xffff) << 16) | 0x8000;
    w[12] = 0; w[13] = 0; w[14] = 0; w[15] = 46 * 8;
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = m0, b = m1, c = m2, d = m3, e = m4, f = m5, g = m6, h = m7;
    for (let i = 9; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    out[0] = a + IV[0]; out[1] = b + IV[1]; out[2] = c + IV[2]; out[3] = d + IV[3];
    out[4] = e + IV[4]; out[5] = f + IV[5]; out[6] = g + IV[6]; out[7] = h + IV[7];
    return out;
  };
}

/** Whether a digest begins with `bits` zero bits (bits <= 64). */
export function enoughZeros(words, bits) {
  if (bits <= 32) return bits === 0 || words[0] >>> (32 - bits) === 0;
  return words[0] === 0 && (bits === 32 || words[1] >>> (64 - bits) === 0);
}

export function nonceHex(hi, lo) {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}
