/**
 * Frames of a video, decoded by this browser, one per second: the pictures vPDQ
 * is computed on. Runs on the page (a <video> element cannot live in a worker);
 * the hashing itself happens in hash-worker.js.
 *
 * The video is read through an object URL of the local file by an off-screen,
 * muted <video> that never plays: nothing is uploaded, nothing is shown. The
 * sampling rule is node/hashing/videos.py's, so that the browser and
 * `ncii-node hash` give the same frames:
 *   - times are counted from the first frame (its presentation time is 0);
 *   - for each slot k = 0, 1, 2, ... seconds, the frame taken is the first one
 *     whose presentation time is at or after k; a frame is taken at most once
 *     (after a long frame, the slots it covered are skipped), and its own
 *     presentation time, in ms, is the record's timestamp;
 *   - the slots end with the last frame: no frame starts at or after the next slot.
 * Removing runs of identical consecutive frames is the caller's (it needs the hashes).
 *
 * A seek shows the last frame that starts at or before the time asked, and
 * requestVideoFrameCallback says which frame that is (its mediaTime). So to get
 * the first frame at or after k, the page seeks to just under k + one frame
 * duration; when that lands before k (frame times that do not fall on a regular
 * grid, gaps), it searches forward for the next frame (frameAfter).
 *
 * Invariant: every wait is bounded (FRAME_TIMEOUT_MS per frame), the number of
 * slots is at most MAX_VPDQ_FRAMES, and the object URL is always revoked.
 */

/** protocol/signals.py MAX_VPDQ_FRAMES: the most frames one vPDQ fingerprint (one log entry) holds. */
export const MAX_VPDQ_FRAMES = 1770;
/** Seconds between sampled frames (node/hashing/videos.py DEFAULT_INTERVAL, Meta's vpdq default). */
export const SAMPLE_INTERVAL = 1;
/**
 * Longest video whose frames the page samples (29 min 30 s): at one frame a
 * second, a shorter video has at most MAX_VPDQ_FRAMES slots (0, 1, ..., 1769 s).
 * Longer videos get their MD5 only (node/hashing/videos.py refuses them too,
 * unless asked to sample less often).
 */
export const MAX_VIDEO_SECONDS = MAX_VPDQ_FRAMES * SAMPLE_INTERVAL;
/** Largest frame decoded (node/hashing/videos.py MAX_FRAME_PIXELS: 8K). */
export const MAX_FRAME_PIXELS = 8192 * 4320;
/** Longer side of the picture handed to PDQ (node/hashing/images.py HASH_SIZE). */
export const HASH_SIZE = 1024;
/** Longest wait for one frame (seek, decode, frame callback) before giving up. */
export const FRAME_TIMEOUT_MS = 15_000;
/** Longest wait for the browser to open the file and decode its first frame. */
export const OPEN_TIMEOUT_MS = 20_000;
// After `seeked`, how long to wait for the frame callback that names the frame.
const FRAME_CALLBACK_GRACE_MS = 500;
// Times closer than this are the same instant (node/hashing/videos.py's 1e-6 s).
const EPSILON = 1e-6;

/** A reason this browser gives no frames for a video; `code` names the translation. */
export class VideoError extends Error {
  constructor(code, detail) {
    super(detail || code);
    this.code = code;
  }
}

function withTimeout(promise, ms, code) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new VideoError(code)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function mediaErrorCode(video) {
  // MEDIA_ERR_SRC_NOT_SUPPORTED (4) and MEDIA_ERR_DECODE (3): this browser cannot read it.
  return video.error && video.error.code === 2 ? 'video_failed' : 'video_unreadable';
}

/** Open `file` in an off-screen <video>; resolves once its first frame is decoded. */
async function openVideo(file) {
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = false;
  video.playsInline = true;
  video.preload = 'auto';
  video.disablePictureInPicture = true;
  video.disableRemotePlayback = true;
  const url = URL.createObjectURL(file);
  video.src = url;
  const close = () => {
    video.removeAttribute('src');
    video.load(); // releases the decoder now, not at the next garbage collection
    URL.revokeObjectURL(url);
  };
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        video.addEventListener('loadeddata', resolve, { once: true });
        video.addEventListener('error', () => reject(new VideoError(mediaErrorCode(video), video.error && video.error.message)), { once: true });
      }),
      OPEN_TIMEOUT_MS,
      'video_unreadable',
    );
    if (!video.videoWidth || !video.videoHeight) throw new VideoError('video_no_picture');
    if (video.videoWidth * video.videoHeight > MAX_FRAME_PIXELS) throw new VideoError('video_too_large');
    if (video.duration === Infinity) {
      // Some recordings (MediaRecorder WebM) do not state their length; asking for
      // a time far past the end makes the browser find it.
      const found = new Promise((resolve) => video.addEventListener('durationchange', resolve, { once: true }));
      video.currentTime = 1e101;
      await withTimeout(found, FRAME_TIMEOUT_MS, 'video_unreadable');
    }
    if (!Number.isFinite(video.duration) || video.duration <= 0) throw new VideoError('video_unreadable');
    return { video, close };
  } catch (error) {
    close();
    throw error;
  }
}

/**
 * Seek to `time` and resolve with the presentation time of the frame then shown
 * (from requestVideoFrameCallback), or with `fallback` when this browser does not
 * say which frame it shows.
 */
function showFrameAt(video, time, fallback) {
  return new Promise((resolve, reject) => {
    let mediaTime = null;
    let seeked = false;
    let settled = false;
    let callbackId = null;
    let grace = null;
    const finish = (value, error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      video.removeEventListener('seeked', onSeeked);
      video.removeEventListener('error', onError);
      if (callbackId !== null && video.cancelVideoFrameCallback) video.cancelVideoFrameCallback(callbackId);
      if (error) reject(error);
      else resolve(value);
    };
    const onSeeked = () => {
      seeked = true;
      if (mediaTime !== null) finish(mediaTime);
      else grace = setTimeout(() => finish(fallback), FRAME_CALLBACK_GRACE_MS);
    };
    const onError = () => finish(null, new VideoError(mediaErrorCode(video), video.error && video.error.message));
    const timer = setTimeout(() => finish(null, new VideoError('video_timeout')), FRAME_TIMEOUT_MS);
    if (video.requestVideoFrameCallback) {
      callbackId = video.requestVideoFrameCallback((now, metadata) => {
        callbackId = null;
        mediaTime = metadata.mediaTime;
        if (seeked) finish(mediaTime);
      });
    }
    video.addEventListener('seeked', onSeeked);
    video.addEventListener('error', onError);
    video.currentTime = time;
  });
}

/** The picture shown now, as an ImageBitmap whose longer side is at most HASH_SIZE. */
async function currentPicture(video, hashSize = HASH_SIZE) {
  const width = video.videoWidth;
  const height = video.videoHeight;
  const scale = hashSize ? Math.min(1, hashSize / Math.max(width, height)) : 1;
  if (scale === 1) return createImageBitmap(video);
  // Shrunk as node/hashing/images.py shrinks (antialiased, to the same size).
  return createImageBitmap(video, {
    resizeWidth: Math.max(1, Math.round(width * scale)),
    resizeHeight: Math.max(1, Math.round(height * scale)),
    resizeQuality: 'high',
  });
}

/**
 * Decode the sampled frames of `file` (a video File or Blob). For each one, in
 * order, `onFrame(picture, seconds, index)` is called with an ImageBitmap the
 * callee owns (and must close or transfer) and the frame's time in seconds from
 * the first frame; its promise is awaited only to keep at most two frames in
 * flight. `onProgress(fraction)` follows the slots; decoding stops (VideoError
 * "video_cancelled") as soon as `isCancelled()` is true.
 *
 * Resolves with { frames: number of frames given, duration, slots, seeks,
 * timed: whether frame times come from the browser, complete: false when decoding
 * stopped early (damage or timeout after the first frame) }.
 * Rejects with a VideoError when not even the first frame can be read.
 */
export async function sampleFrames(file, { onFrame, onProgress = () => {}, isCancelled = () => false, interval = SAMPLE_INTERVAL, hashSize = HASH_SIZE } = {}) {
  const { video, close } = await openVideo(file);
  const timed = typeof video.requestVideoFrameCallback === 'function';
  const duration = video.duration;
  let seeks = 0;
  const show = (time, fallback) => {
    seeks += 1;
    return showFrameAt(video, Math.min(time, duration), fallback);
  };
  const inFlight = [];
  let given = 0;
  let complete = true;
  let failure = null;
  const take = async (seconds) => {
    const picture = await currentPicture(video, hashSize);
    inFlight.push(Promise.resolve(onFrame(picture, seconds, given)));
    given += 1;
    if (inFlight.length > 2) await inFlight.shift();
  };
  try {
    if (duration > MAX_VPDQ_FRAMES * interval) throw new VideoError('video_too_long');
    const start = await show(0, 0);
    // One frame's duration: seeking to `start + step` shows the second frame for
    // the first step at or above it (and below twice it), so doubling finds it.
    let frameDuration = null;
    for (let step = 0.004; timed && start + step < duration + 0.004 && frameDuration === null; step *= 2) {
      const shown = await show(start + step, start);
      if (shown > start + EPSILON) frameDuration = shown - start;
    }
    await show(start, start);
    await take(0);
    let previous = start;
    let nextSlot = interval;
    // The first frame after the frame starting at `after`, given a time `known` at
    // which that frame still shows. Seeks further, doubling the step, until a later
    // frame shows; the one wanted starts between the last two times tried, which are
    // then brought closer until less than one frame duration apart (so that only one
    // frame can start between them, at a regular frame rate). Null at the end.
    const unit = frameDuration || interval;
    const frameAfter = async (after, known) => {
      let low = Math.max(after, known);
      let high = null;
      let found = null;
      for (let step = unit / 2; high === null; step *= 2) {
        const target = Math.min(low + step, duration);
        const shown = await show(target, target);
        if (shown > after + EPSILON) {
          high = target;
          found = shown;
        } else if (target >= duration) {
          return null;
        } else {
          low = target;
        }
      }
      while (high - low > 0.99 * unit && high - low > 0.001) {
        const middle = (low + high) / 2;
        const shown = await show(middle, middle);
        if (shown > after + EPSILON) {
          high = middle;
          found = shown;
        } else {
          low = middle;
        }
      }
      return { time: found, known: high };
    };
    while (given < MAX_VPDQ_FRAMES) {
      if (isCancelled()) throw new VideoError('video_cancelled'); // removed from the list, or the page left
      const slot = start + nextSlot;
      if (slot >= duration - EPSILON) break; // no frame starts at or after the end
      let shown;
      try {
        if (frameDuration === null) {
          // Frame times unknown (no frame callback, or a single-frame video):
          // the frame shown at the slot's time stands for it.
          shown = await show(slot, slot);
        } else {
          let target = slot + frameDuration - Math.min(0.001, frameDuration / 4);
          shown = await show(target, slot);
          while (shown !== null && shown < slot - EPSILON) {
            const next = await frameAfter(shown, target);
            shown = next && next.time;
            target = next && next.known;
          }
        }
      } catch (error) {
        if (!(error instanceof VideoError)) throw error;
        // Damage or a stall after the first frame: keep what came before, as
        // node/hashing/videos.py does for a video damaged part way.
        complete = false;
        failure = error.code;
        break;
      }
      if (shown === null || shown <= previous + EPSILON) break; // no later frame
      previous = shown;
      const elapsed = shown - start;
      // The next slot is due one interval after this one's, skipping the slots
      // this frame already stood for (videos.py: `while next_sample <= elapsed`).
      while (nextSlot <= elapsed + EPSILON) nextSlot += interval;
      await take(elapsed);
      onProgress(Math.min(1, nextSlot / duration));
    }
    await Promise.all(inFlight);
    onProgress(1);
    return { frames: given, duration, seeks, timed, complete, failure };
  } finally {
    close();
  }
}
