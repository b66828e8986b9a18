/**
 * Web Worker that turns files into fingerprints, away from the page's thread.
 *
 * Message in:  { id, file: File|Blob, kind: "image"|"video", maxSide, thumbSide }
 *           or { id, kind: "frame", picture: ImageBitmap } (one video frame, decoded
 *              by the page: see video-frames.js; the bitmap is transferred and closed here)
 * Messages out: { id, progress: 0..1 } while working, then
 *               { id, ok: true, result } or { id, ok: false, error: code, detail }.
 * result for an image: { signal: "pdq", fingerprint: hex64, quality, width, height,
 *                        hashedWidth, hashedHeight, thumbnail: ImageBitmap, ms }
 * result for a video:  { signal: "md5", fingerprint: hex32, bytes, ms }
 * result for a frame:  { signal: "pdq", fingerprint: hex64, quality, width, height, ms }
 *
 * Invariant: file contents never leave this worker; only fingerprints and a
 * small thumbnail (for the page, on this device) are posted back.
 * Files are handled one at a time so that two large photos never sit in memory together.
 */
import { pdqFromRGBA, MIN_HASHABLE_SIDE } from './pdq.js';
import { MD5 } from './md5.js';

const VIDEO_CHUNK_BYTES = 4 * 1024 * 1024;

class HashError extends Error {
  constructor(code, detail) {
    super(detail || code);
    this.code = code;
  }
}

// Decode with the pixels exactly as stored: no colour-profile conversion and no
// alpha premultiplication (like Pillow, which platform-side hashers use), but
// with the EXIF orientation applied, so the hash is of the picture as people see it.
const DECODE = { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' };

function fitWithin(width, height, maxSide) {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

function pixelsOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  canvas.width = canvas.height = 0; // let the canvas memory go now, not at the next collection
  return pixels;
}

async function hashImage(file, maxSide, thumbSide, onProgress, resizeQuality = 'high') {
  const timings = { start: performance.now() };
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, DECODE);
    timings.decoded = performance.now();
  } catch (error) {
    throw new HashError('unreadable_image', String(error));
  }
  const { width, height } = bitmap;
  let source = bitmap;
  let thumbnail = null;
  try {
    if (width < MIN_HASHABLE_SIDE || height < MIN_HASHABLE_SIDE) throw new HashError('too_small');
    const [thumbWidth, thumbHeight] = fitWithin(width, height, thumbSide);
    thumbnail = await createImageBitmap(bitmap, { resizeWidth: thumbWidth, resizeHeight: thumbHeight, resizeQuality: 'medium' });
    // Very large photos are resized first so that a phone does not run out of
    // memory (about 16 bytes per pixel otherwise). The page's default limit
    // leaves 12-megapixel photos untouched: see spec/parts/webapp.md.
    if (maxSide && Math.max(width, height) > maxSide) {
      const [resizeWidth, resizeHeight] = fitWithin(width, height, maxSide);
      source = await createImageBitmap(bitmap, { ...DECODE, resizeWidth, resizeHeight, resizeQuality });
      bitmap.close();
    }
    onProgress(0.5);
    const pixels = pixelsOf(source);
    const hashedWidth = source.width;
    const hashedHeight = source.height;
    source.close();
    timings.pixels = performance.now();
    const { hex, quality } = pdqFromRGBA(pixels, hashedWidth, hashedHeight, { inPlace: true });
    timings.hashed = performance.now();
    // How long each stage took (ms), for the speed figures in spec/parts/webapp.md.
    const stages = {
      decode: timings.decoded - timings.start,
      pixels: timings.pixels - timings.decoded,
      pdq: timings.hashed - timings.pixels,
    };
    return { signal: 'pdq', fingerprint: hex, quality, width, height, hashedWidth, hashedHeight, thumbnail, stages };
  } catch (error) {
    if (thumbnail) thumbnail.close();
    throw error;
  } finally {
    bitmap.close();
    source.close();
  }
}

async function hashVideo(file, onProgress) {
  const md5 = new MD5();
  for (let offset = 0; offset < file.size; offset += VIDEO_CHUNK_BYTES) {
    const chunk = await file.slice(offset, offset + VIDEO_CHUNK_BYTES).arrayBuffer();
    md5.update(new Uint8Array(chunk));
    onProgress(Math.min(1, (offset + chunk.byteLength) / file.size));
  }
  return { signal: 'md5', fingerprint: md5.hex(), bytes: file.size };
}

// One video frame: the same PDQ as a photo's, on the pixels the page decoded.
function hashFrame(picture) {
  try {
    const { width, height } = picture;
    if (width < MIN_HASHABLE_SIDE || height < MIN_HASHABLE_SIDE) throw new HashError('too_small');
    const pixels = pixelsOf(picture);
    const { hex, quality } = pdqFromRGBA(pixels, width, height, { inPlace: true });
    return { signal: 'pdq', fingerprint: hex, quality, width, height };
  } finally {
    picture.close();
  }
}

async function handle({ id, file, kind, picture, maxSide = 0, thumbSide = 144, resizeQuality }) {
  const started = performance.now();
  try {
    let result;
    const onProgress = (progress) => self.postMessage({ id, progress });
    if (kind === 'image') {
      result = await hashImage(file, maxSide, thumbSide, onProgress, resizeQuality);
    } else if (kind === 'video') {
      result = await hashVideo(file, onProgress);
    } else if (kind === 'frame') {
      result = hashFrame(picture);
    } else {
      throw new HashError('unsupported');
    }
    result.ms = performance.now() - started;
    self.postMessage({ id, ok: true, result }, result.thumbnail ? [result.thumbnail] : []);
  } catch (error) {
    const code = error instanceof HashError ? error.code : 'failed';
    self.postMessage({ id, ok: false, error: code, detail: String(error && error.message) });
  }
}

// One file at a time, in the order they were given.
let queue = Promise.resolve();
self.onmessage = (event) => {
  queue = queue.then(() => handle(event.data));
};
