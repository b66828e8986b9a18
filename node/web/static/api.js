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

/** POST /v1/cases: eligibility answers, fingerprints (and nothing else), language. */
export function openCase(eligibility, fingerprints, lang) {
  return post('v1/cases', { eligibility, fingerprints, lang });
}

export function caseStatus(caseNumber, pin) {
  return post('v1/cases/status', { case_number: caseNumber, pin });
}

export function withdrawCase(caseNumber, pin) {
  return post('v1/cases/withdraw', { case_number: caseNumber, pin });
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
