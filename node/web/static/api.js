/**
 * Calls to the helpline's case API (same origin, JSON only, no cookies).
 * Each call resolves to { status, data } whatever the HTTP status, and rejects
 * only when the helpline cannot be reached at all.
 */

async function post(path, body) {
  const response = await fetch(new URL(path, document.baseURI), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, data };
}

/** POST /v1/cases: eligibility answers, fingerprints (and nothing else), language, and
 * the proof of work when the helpline asked for one (pow.js). */
export function openCase(eligibility, fingerprints, lang, proof = null) {
  return post('v1/cases', proof ? { eligibility, fingerprints, lang, proof_of_work: proof } : { eligibility, fingerprints, lang });
}

export function caseStatus(caseNumber, pin) {
  return post('v1/cases/status', { case_number: caseNumber, pin });
}

export function withdrawCase(caseNumber, pin) {
  return post('v1/cases/withdraw', { case_number: caseNumber, pin });
}

/** POST /v1/cases/receipt: the newest receipt of the case (it may carry platforms' acknowledgements). */
export function caseReceipt(caseNumber, pin) {
  return post('v1/cases/receipt', { case_number: caseNumber, pin });
}

/** GET /v1/cases/receipt-policy: the helpline's keys a receipt is checked with (text). */
export async function loadReceiptPolicy() {
  const response = await fetch(new URL('v1/cases/receipt-policy', document.baseURI), { credentials: 'omit', cache: 'no-cache', referrerPolicy: 'no-referrer' });
  if (!response.ok) throw new Error(`receipt-policy: ${response.status}`);
  return response.text();
}

/** "abcd efgh-ijkl mnop" -> "ABCD-EFGH-IJKL-MNOP"; other shapes are only trimmed and upper-cased. */
export function normaliseCaseNumber(text) {
  const compact = String(text).toUpperCase().replace(/[^0-9A-Z]/g, '');
  return compact.length === 16 ? compact.match(/.{4}/g).join('-') : String(text).trim().toUpperCase();
}

export function normalisePin(text) {
  return String(text).replace(/\D/g, '');
}

/** GET /helpline.json: what makes the page this helpline's own (see static_routes.py). */
export async function loadHelpline() {
  const response = await fetch(new URL('helpline.json', document.baseURI), { credentials: 'omit', cache: 'no-cache', referrerPolicy: 'no-referrer' });
  if (!response.ok) throw new Error(`helpline.json: ${response.status}`);
  return response.json();
}
