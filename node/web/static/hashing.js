/**
 * The page's side of the hashing worker: sends files to hash-worker.js and
 * turns its answers into promises, and shapes results into the fingerprint
 * objects of the case API ({"signal": "pdq", "fingerprint": hex, "quality": q},
 * {"signal": "md5", "fingerprint": hex} or {"signal": "vpdq", "fingerprint":
 * [{"pdq": hex, "quality": q, "timestamp": seconds}, ...]}).
 *
 * A video gives two fingerprints: the MD5 of its file (exact copies) and vPDQ,
 * the PDQ of one frame a second (edited copies: re-encoded, trimmed, resized).
 * The frames are decoded by this browser (video-frames.js) and hashed in the
 * worker; when the browser cannot decode the video, the MD5 is still given,
 * with the reason (result.vpdqError).
 */
import { VideoError, sampleFrames } from './video-frames.js';


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

/** Every fingerprint object of a result: a photo's PDQ; a video's MD5, then its vPDQ when decoded. */
export function fingerprintsOf(result) {
  const fingerprints = [fingerprintOf(result)];
  if (result.vpdq && result.vpdq.length) {
    const vpdq = { signal: 'vpdq', fingerprint: result.vpdq.map(({ pdq, quality, timestamp }) => ({ pdq, quality, timestamp })) };
    // As node/hashing/videos.py: flagged when no frame is good enough to match on.
    if (result.vpdq.every((frame) => frame.quality < LOW_QUALITY)) vpdq.low_quality = true;
    fingerprints.push(vpdq);
  }
  return fingerprints;
}

/**
 * vPDQ frame records from the hashed sampled frames, in order: a run of
 * consecutive frames with the same hash and quality is kept once (matching
 * works on distinct frames), as node/hashing/videos.py does.
 */
export function vpdqRecords(hashedFrames) {
  const records = [];
  for (const { pdq, quality, seconds } of hashedFrames) {
    const last = records[records.length - 1];
    if (last && last.pdq === pdq && last.quality === quality) continue;
    records.push({ pdq, quality, timestamp: Math.round(seconds * 1000) / 1000 });
  }
  return records;
}

// Share of a video's progress given to its MD5 (reading the file is quick next to decoding it).
const MD5_SHARE = 0.1;

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
  hash(file, { kind = kindOf(file), maxSide = DEFAULT_MAX_SIDE, resizeQuality = 'high', thumbSide = 144, onProgress = () => {}, vpdq = true, isCancelled = () => false } = {}) {
    if (kind === 'video' && vpdq) return this.hashVideo(file, { thumbSide, onProgress, isCancelled });
    return this.post({ file, kind, maxSide, resizeQuality, thumbSide }, [], onProgress);
  }

  post(message, transfer = [], onProgress = () => {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, ...message }, transfer);
    });
  }

  /**
   * A video's MD5 (in the worker), then its vPDQ: frames decoded here, one video
   * at a time, each hashed in the worker. Resolves to the MD5 result with
   * `vpdq` (frame records, or null), `vpdqError` (why there are none, or why they
   * stop early: a VideoError code), `vpdqComplete`, `duration`, `sampled` (frames
   * hashed before removing repeats), `thumbnail` (first frame, for this page
   * only) and `stages` (ms). Rejects only when the file cannot be read at all.
   */
  async hashVideo(file, { thumbSide = 144, onProgress = () => {}, isCancelled = () => false } = {}) {
    const started = performance.now();
    const result = await this.post({ file, kind: 'video' }, [], (p) => onProgress(p * MD5_SHARE));
    const md5Done = performance.now();
    // One video decodes at a time: two decoders at once would only compete.
    const stop = () => this.terminated || isCancelled();
    const turn = (this.videoTurn || Promise.resolve()).then(() => this.sampleVideo(file, thumbSide, (p) => onProgress(MD5_SHARE + (1 - MD5_SHARE) * p), stop));
    this.videoTurn = turn.catch(() => {});
    const frames = await turn;
    Object.assign(result, frames);
    result.stages = { md5: md5Done - started, vpdq: performance.now() - md5Done };
    result.ms = performance.now() - started;
    return result;
  }

  async sampleVideo(file, thumbSide, onProgress, isCancelled) {
    const hashed = [];
    let thumbnail = null;
    const onFrame = async (picture, seconds, index) => {
      if (index === 0) {
        const scale = Math.min(1, thumbSide / Math.max(picture.width, picture.height));
        thumbnail = await createImageBitmap(picture, {
          resizeWidth: Math.max(1, Math.round(picture.width * scale)),
          resizeHeight: Math.max(1, Math.round(picture.height * scale)),
          resizeQuality: 'medium',
        });
      }
      const frame = await this.post({ kind: 'frame', picture }, [picture]);
      hashed[index] = { pdq: frame.fingerprint, quality: frame.quality, seconds };
    };
    try {
      const run = await sampleFrames(file, { onFrame, onProgress, isCancelled });
      return {
        vpdq: vpdqRecords(hashed),
        vpdqError: run.failure,
        vpdqComplete: run.complete,
        duration: run.duration,
        sampled: run.frames,
        seeks: run.seeks,
        thumbnail,
      };
    } catch (error) {
      if (thumbnail) thumbnail.close();
      const code = error instanceof VideoError ? error.code : 'video_failed';
      return { vpdq: null, vpdqError: code, vpdqComplete: false, duration: null, sampled: 0, thumbnail: null, detail: String(error && error.message) };
    }
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
    this.terminated = true; // a video being decoded stops at its next frame
    this.worker.terminate();
    // Nothing will answer now: settle what waits, so a video's decoding unwinds and lets its file go.
    const cancelled = Object.assign(new Error('cancelled'), { code: 'cancelled' });
    for (const { reject } of this.waiting.values()) reject(cancelled);
    this.waiting.clear();
  }
}
