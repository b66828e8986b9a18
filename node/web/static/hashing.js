/**
 * The page's side of the hashing worker: sends files to hash-worker.js and
 * turns its answers into promises, and shapes results into the fingerprint
 * objects of the case API ({"signal": "pdq", "fingerprint": hex, "quality": q}
 * or {"signal": "md5", "fingerprint": hex}).
 */

/**
 * Photos with a longer side above this are resized in the browser before PDQ,
 * to bound memory on phones. 12-megapixel photos (4000 x 3000, 4032 x 3024)
 * stay whole, so their fingerprint is pdqhash's to the bit (see spec/parts/webapp.md).
 */
export const DEFAULT_MAX_SIDE = 4096;
/** Below this quality a PDQ fingerprint matches poorly (flagged, still sent). */
export const LOW_QUALITY = 50;

const VIDEO_EXTENSIONS = /\.(mp4|m4v|mov|webm|mkv|avi|3gp|mpe?g|wmv|ogv)$/i;
const IMAGE_EXTENSIONS = /\.(jpe?g|png|gif|webp|bmp|avif|heic|heif|tiff?)$/i;

/** "image", "video" or null, from the type the browser reports or else the file name. */
export function kindOf(file) {
  if (file.type.startsWith('image/')) return 'image';
  if (file.type.startsWith('video/')) return 'video';
  if (IMAGE_EXTENSIONS.test(file.name || '')) return 'image';
  if (VIDEO_EXTENSIONS.test(file.name || '')) return 'video';
  return null;
}

/** The case API's fingerprint object for a worker result (never anything else about the file). */
export function fingerprintOf(result) {
  if (result.signal === 'pdq') {
    const fingerprint = { signal: 'pdq', fingerprint: result.fingerprint, quality: result.quality };
    if (result.quality < LOW_QUALITY) fingerprint.low_quality = true;
    return fingerprint;
  }
  return { signal: 'md5', fingerprint: result.fingerprint };
}

export class Hasher {
  constructor() {
    this.worker = new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module' });
    this.waiting = new Map();
    this.nextId = 1;
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => {
      for (const { reject } of this.waiting.values()) reject(new Error(event.message || 'worker failed'));
      this.waiting.clear();
    };
  }

  /**
   * Hash one file. Resolves to the worker's result; rejects with an Error whose
   * `code` is "unreadable_image", "too_small", "unsupported" or "failed".
   */
  hash(file, { kind = kindOf(file), maxSide = DEFAULT_MAX_SIDE, resizeQuality = 'high', thumbSide = 144, onProgress = () => {} } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, file, kind, maxSide, resizeQuality, thumbSide });
    });
  }

  receive(message) {
    const entry = this.waiting.get(message.id);
    if (!entry) return;
    if ('progress' in message && !('ok' in message)) {
      entry.onProgress(message.progress);
      return;
    }
    this.waiting.delete(message.id);
    if (message.ok) {
      entry.resolve(message.result);
    } else {
      const error = new Error(message.detail || message.error);
      error.code = message.error;
      entry.reject(error);
    }
  }

  terminate() {
    this.worker.terminate();
    this.waiting.clear();
  }
}
