/**
 * The page's side of the proof of work (pow-worker.js): when the helpline answers 428
 * with { proof_of_work: { challenge, bits } }, the work is done in a worker and the
 * case is sent again with { challenge, nonce }. The person is told what happens in
 * the page's live region; nothing about them is involved.
 */

export function proveWork({ challenge, bits }, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./pow-worker.js', import.meta.url), { type: 'module' });
    worker.onmessage = (event) => {
      const message = event.data;
      if (message.nonce) {
        worker.terminate();
        resolve({ proof: { challenge, nonce: message.nonce }, tries: message.tries, ms: message.ms });
      } else if (message.error) {
        worker.terminate();
        reject(new Error(message.error));
      } else {
        onProgress(message.tries);
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(event.message || 'proof-of-work worker failed'));
    };
    worker.postMessage({ challenge, bits });
  });
}
