/**
 * Web Worker that does the helpline's proof of work (pow-sha256.js) away from the
 * page's thread, so the page stays usable (and its screen reader announcements keep
 * coming) while it runs.
 *
 * Message in:  { challenge: base64url, bits }
 * Messages out: { tries } about every 50,000 tries, then { nonce: hex16, tries, ms }
 *               or { error }.
 */
import { decodeChallenge, enoughZeros, nonceHex, solver } from './pow-sha256.js';

const REPORT_EVERY = 50000;

self.onmessage = (event) => {
  const { challenge, bits } = event.data;
  const started = performance.now();
  try {
    const digest = solver(decodeChallenge(challenge));
    // Start the low word at a random point: two tabs of one person never race on the same nonces.
    let hi = 0;
    let lo = (Math.random() * 0x100000000) >>> 0;
    for (let tries = 1; ; tries++) {
      if (enoughZeros(digest(hi, lo), bits)) {
        self.postMessage({ nonce: nonceHex(hi, lo), tries, ms: performance.now() - started });
        return;
      }
      lo = (lo + 1) >>> 0;
      if (lo === 0) hi = (hi + 1) >>> 0;
      if (tries % REPORT_EVERY === 0) self.postMessage({ tries });
    }
  } catch (error) {
    self.postMessage({ error: String(error && error.message || error) });
  }
};
