/**
 * Checking a receipt in the browser, on the device: the file is never sent anywhere.
 *
 * A receipt is a C2SP tlog-proof (one entry) or an ncii-node/tlog-proofs@v1 bundle
 * (spec/parts/proofs.md §2): entries with their inclusion proofs, then the signed
 * checkpoint note with its cosignatures. It is checked, as `ncii-node audit
 * verify-proof` does (protocol/tlogproof.py), against the helpline's receipt policy
 * (GET v1/cases/receipt-policy, a C2SP tlog-policy): the log's Ed25519 signature, every
 * cosignature line of a key the policy names (C2SP tlog-cosignature/v1), and each
 * entry's RFC 6962 inclusion proof (RFC 9162 §2.1.3.2) from SHA-256(0x00 || entry).
 * Keys are named in the policy by role (node/cases/receipt.py): `published-by:<origin>`
 * (the helpline's publication time), `applied-by:<platform>` (a platform's
 * acknowledgement), `witness:<name>`.
 *
 * Web Crypto does the hashing and Ed25519 (no third-party code). Parsing is strict
 * and bounded like the node's: anything unexpected is a ReceiptError.
 */

const PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
const BUNDLE_HEADER = 'ncii-node/tlog-proofs@v1';
const MAX_BYTES = 8 * 1024 * 1024;
const MAX_ENTRIES = 1000;
const MAX_HASHES = 63;
const SIG_ED25519 = 0x01;
const SIG_COSIGNATURE = 0x04;
const EM_DASH = '\u2014 ';
export const PUBLISHED_BY = 'published-by:';
export const APPLIED_BY = 'applied-by:';
export const WITNESS = 'witness:';

/** A receipt that proves nothing; `kind` says why in one word (format, signature, cosignature, inclusion, unsupported). */
export class ReceiptError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const encoder = new TextEncoder();

function base64(text) {
  // Canonical padded base64 only (what C2SP formats use).
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) return null;
  let binary;
  try {
    binary = atob(text);
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return btoa(binary) === text ? bytes : null;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}

async function ed25519Verify(publicKey, signature, message) {
  let key;
  try {
    key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  } catch {
    throw new ReceiptError('unsupported', 'this browser cannot check Ed25519 signatures');
  }
  return crypto.subtle.verify({ name: 'Ed25519' }, key, signature, message);
}

/** A C2SP vkey "name+hhhhhhhh+base64(type || key)", its key ID checked. */
async function parseVkey(vkey, type) {
  // The name holds no "+"; the base64 after the key ID may.
  const parts = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(String(vkey))?.slice(1);
  if (!parts) throw new ReceiptError('format', `not a key: ${vkey}`);
  const data = base64(parts[2]);
  if (!data || data.length !== 33 || data[0] !== type) throw new ReceiptError('format', `not a key of type ${type}: ${vkey}`);
  const publicKey = data.slice(1);
  const keyId = (await sha256(encoder.encode(`${parts[0]}\n`), Uint8Array.of(type), publicKey)).slice(0, 4);
  if ([...keyId].map((b) => b.toString(16).padStart(2, '0')).join('') !== parts[1]) {
    throw new ReceiptError('format', `the key ID of ${parts[0]} does not match its key`);
  }
  return { name: parts[0], keyId, publicKey };
}

/** The receipt policy (C2SP tlog-policy): its log keys and cosigners, by policy name. */
export async function parsePolicy(text) {
  const logs = [];
  const cosigners = [];
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [word, ...items] = line.split(/[ \t]+/);
    if (word === 'log') logs.push(await parseVkey(items[0], SIG_ED25519));
    else if (word === 'witness') cosigners.push({ label: items[0], ...(await parseVkey(items[1], SIG_COSIGNATURE)) });
    else if (word !== 'quorum' && word !== 'group') throw new ReceiptError('format', `unknown policy line: ${word}`);
  }
  if (!logs.length) throw new ReceiptError('format', 'the policy names no log');
  return { logs, cosigners };
}

function parseNote(text) {
  const split = text.lastIndexOf('\n\n');
  if (split < 0 || !text.endsWith('\n')) throw new ReceiptError('format', 'the checkpoint is not a signed note');
  const body = text.slice(0, split + 1);
  const signatures = text.slice(split + 2, -1).split('\n').map((line) => {
    if (!line.startsWith(EM_DASH)) throw new ReceiptError('format', 'a signature line must start with an em dash');
    const [name, payload, extra] = line.slice(EM_DASH.length).split(' ');
    const bytes = base64(payload);
    if (!name || extra !== undefined || !bytes || bytes.length < 5) throw new ReceiptError('format', 'malformed signature line');
    return { name, keyId: bytes.slice(0, 4), payload: bytes.slice(4) };
  });
  if (signatures.length > 16) throw new ReceiptError('format', 'too many signatures');
  return { body, signatures };
}

function parseCheckpoint(body) {
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3 || !/^(0|[1-9][0-9]{0,18})$/.test(lines[1])) throw new ReceiptError('format', 'not a checkpoint');
  const root = base64(lines[2]);
  if (!root || root.length !== 32) throw new ReceiptError('format', 'the checkpoint root is not a 32-byte hash');
  return { origin: lines[0], size: BigInt(lines[1]), root };
}

/** The entries and proofs of a receipt, and its checkpoint note. */
export function parseReceipt(text) {
  if (typeof text !== 'string' || text.length > MAX_BYTES) throw new ReceiptError('format', 'not a receipt file');
  const blank = text.indexOf('\n\n');
  if (blank < 0) throw new ReceiptError('format', 'not a receipt file');
  const lines = text.slice(0, blank).split('\n');
  const header = lines.shift();
  if (header !== PROOF_HEADER && header !== BUNDLE_HEADER) throw new ReceiptError('format', 'not a receipt file');
  const proofs = [];
  while (lines.length) {
    let extra = null;
    if (lines[0].startsWith('extra ')) {
      extra = base64(lines.shift().slice(6));
      if (!extra || !extra.length || extra.length > 65535) throw new ReceiptError('format', 'malformed entry');
    }
    const match = /^index (0|[1-9][0-9]{0,18})$/.exec(lines.shift() || '');
    if (!match || !extra) throw new ReceiptError('format', 'each entry needs its bytes and its index');
    const index = BigInt(match[1]);
    const hashes = [];
    while (lines.length && !lines[0].startsWith('extra ') && !lines[0].startsWith('index ')) {
      const hash = base64(lines.shift());
      if (!hash || hash.length !== 32) throw new ReceiptError('format', 'malformed proof line');
      hashes.push(hash);
    }
    if (hashes.length > MAX_HASHES || proofs.length >= MAX_ENTRIES) throw new ReceiptError('format', 'too large');
    if (proofs.length && index <= proofs[proofs.length - 1].index) throw new ReceiptError('format', 'indices must increase');
    proofs.push({ index, hashes, entry: extra });
  }
  if (!proofs.length || (header === PROOF_HEADER) !== (proofs.length === 1)) throw new ReceiptError('format', 'wrong number of entries');
  return { proofs, note: text.slice(blank + 2) };
}

/** RFC 9162 §2.1.3.2: does the leaf, with this audit path, give the root? */
async function inclusionHolds(leaf, index, size, path, root) {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}

function readU64(bytes, at) {
  let value = 0n;
  for (let i = 0; i < 8; i += 1) value = (value << 8n) | BigInt(bytes[at + i]);
  return value;
}

/** What an entry is, for people: a fingerprint (its type) or a withdrawal (what it names). */
function describe(entry) {
  if (entry.length >= 12 && entry[0] === 1 && entry[1] === 1) {
    return { kind: 'submission', signal: { 1: 'pdq', 2: 'md5', 3: 'vpdq' }[entry[2]] || 'unknown' };
  }
  if (entry.length >= 13 && entry[0] === 1 && entry[1] === 2) {
    const count = (entry[3] << 8) | entry[4];
    const targets = [];
    for (let i = 0; i < count && 5 + 8 * i + 8 <= entry.length; i += 1) targets.push(readU64(entry, 5 + 8 * i));
    return { kind: 'withdrawal', targets };
  }
  return { kind: 'other' };
}

/**
 * Check a receipt against a policy text. Resolves to what it proves:
 * { origin, size, entries: [{index, kind, signal?, targets?}], published: Date|null,
 *   applied: [{name, at: Date}], witnesses: [{name, at: Date}] }; rejects with ReceiptError.
 */
export async function verifyReceipt(text, policyText) {
  const policy = await parsePolicy(policyText);
  const receipt = parseReceipt(text);
  const note = parseNote(receipt.note);
  const checkpoint = parseCheckpoint(note.body);
  const body = encoder.encode(note.body);
  // 1. The log's signature, by a log key of the policy named like the origin.
  let signed = false;
  for (const log of policy.logs.filter((l) => l.name === checkpoint.origin)) {
    for (const sig of note.signatures.filter((s) => s.name === log.name && equal(s.keyId, log.keyId))) {
      if (sig.payload.length !== 64 || !(await ed25519Verify(log.publicKey, sig.payload, body))) {
        throw new ReceiptError('signature', 'the helpline\u2019s signature does not verify: the file was altered');
      }
      signed = true;
    }
  }
  if (!signed) throw new ReceiptError('signature', `not signed by the log ${checkpoint.origin} of this helpline`);
  // 2. Every cosignature of a key the policy names must verify.
  const published = [];
  const applied = [];
  const witnesses = [];
  for (const cosigner of policy.cosigners) {
    for (const sig of note.signatures.filter((s) => s.name === cosigner.name && equal(s.keyId, cosigner.keyId))) {
      if (sig.payload.length !== 72) throw new ReceiptError('cosignature', `${cosigner.label}: not a cosignature`);
      const timestamp = readU64(sig.payload, 0);
      const message = concat(encoder.encode(`cosignature/v1\ntime ${timestamp}\n`), body);
      if (!(await ed25519Verify(cosigner.publicKey, sig.payload.slice(8), message))) {
        throw new ReceiptError('cosignature', `${cosigner.label}: the cosignature does not verify: the file was altered`);
      }
      const at = new Date(Number(timestamp) * 1000);
      if (cosigner.label.startsWith(PUBLISHED_BY)) published.push(at);
      else if (cosigner.label.startsWith(APPLIED_BY)) applied.push({ name: cosigner.label.slice(APPLIED_BY.length), at });
      else witnesses.push({ name: cosigner.label.replace(WITNESS, ''), at });
    }
  }
  // 3. Each entry under the signed root.
  const entries = [];
  for (const proof of receipt.proofs) {
    const leaf = await sha256(Uint8Array.of(0), proof.entry);
    if (!(await inclusionHolds(leaf, proof.index, checkpoint.size, proof.hashes, checkpoint.root))) {
      throw new ReceiptError('inclusion', `entry ${proof.index} is not in the signed tree: the file was altered`);
    }
    entries.push({ index: proof.index, ...describe(proof.entry) });
  }
  return { origin: checkpoint.origin, size: checkpoint.size, entries, published: published[0] || null, applied, witnesses };
}
