/**
 * The victim web page: a few views in one document, switched by the address's
 * #fragment (welcome, eligibility, not-eligible, files, codes, status, withdraw).
 *
 * Privacy invariant: the files a person picks are read only by the hashing
 * worker; the only things that leave the device are the eligibility answers,
 * the fingerprints (signal, hex, quality) and the language. Nothing is stored:
 * no cookie, no localStorage; the case number and PIN live in memory until the
 * person says they have saved them.
 */
import { applyTranslations, currentLanguage, preferredLanguage, setLanguage, t } from './i18n.js';
import { Hasher, fingerprintsOf, kindOf } from './hashing.js';
import { caseStatus, normaliseCaseNumber, normalisePin, openCase, withdrawCase } from './api.js';
import { proveWork } from './pow.js';

const QUESTIONS = ['in_image', 'adult', 'has_image', 'intimate'];
const VIEWS = ['welcome', 'eligibility', 'not-eligible', 'files', 'codes', 'status', 'withdraw'];

const state = {
  answers: {}, // question -> true/false, once answered
  notEligible: { reasons: [], server: null },
  entries: [], // files picked: { id, file, kind, status, result, error, progress, element }
  nextEntryId: 1,
  hasher: null,
  sending: false,
  submitError: null,
  codes: null, // the 201 answer of POST /v1/cases, until the person confirms they saved it
  justFinished: false,
};

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'className') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(target, message) {
  target.textContent = message || '';
  target.hidden = !message;
}

function apiErrorMessage(status, data) {
  if (status === 401) return t('errors.wrong_codes');
  if (status === 429) {
    if (data && data.locked) return t('errors.locked');
    const seconds = Math.max(1, Math.ceil(Number(data && data.retry_after) || 60));
    if (seconds < 90) return t('errors.wait_seconds', { count: seconds });
    return t('errors.too_many', { count: Math.ceil(seconds / 60) });
  }
  if (status === 400) return t('errors.bad_request');
  return t('errors.server');
}

/** A creation the helpline's limits refused (429 with a reason): nothing was sent to the log. */
function creationRefusedMessage(data) {
  const minutes = Math.max(1, Math.ceil((Number(data.retry_after) || 3600) / 60));
  const kind = data.reason === 'address' || data.reason === 'network' ? 'connection' : 'busy';
  return minutes < 120 ? t(`errors.create_${kind}`, { count: minutes })
    : t(`errors.create_${kind}_hours`, { count: Math.ceil(minutes / 60) });
}

/** Open the case; when the helpline asks for a proof of work (428), do it in a worker and send again. */
async function openCaseWithProof(body) {
  let answer = await openCase(body.eligibility, body.fingerprints, body.lang);
  if (answer.status === 428 && answer.data && answer.data.proof_of_work) {
    $('#progress').textContent = t('pow.working');
    const { proof } = await proveWork(answer.data.proof_of_work);
    $('#progress').textContent = t('pow.done');
    answer = await openCase(body.eligibility, body.fingerprints, body.lang, proof);
  }
  return answer;
}

// ---------------------------------------------------------------- views

function allYes() {
  return QUESTIONS.every((question) => state.answers[question] === true);
}

function currentView() {
  const name = location.hash.replace(/^#/, '');
  return VIEWS.includes(name) ? name : 'welcome';
}

function showView(name, { focus = true } = {}) {
  // Steps that only make sense in order send the person back to the start.
  if (name === 'files' && !allYes()) name = 'eligibility';
  if (name === 'codes' && !state.codes) name = 'welcome';
  if (name === 'not-eligible' && !state.notEligible.reasons.length && !state.notEligible.server) name = 'eligibility';
  if (`#${name}` !== location.hash && !(name === 'welcome' && !location.hash)) {
    history.replaceState(history.state, '', `#${name}`);
  }
  for (const section of document.querySelectorAll('.view')) {
    section.hidden = section.dataset.view !== name;
  }
  const heading = document.querySelector(`#view-${name} h1`);
  document.title = `${heading.textContent} – ${t('app.title')}`;
  renderView(name);
  if (focus) heading.focus();
  window.scrollTo(0, 0);
}

function renderView(name) {
  if (name === 'welcome') {
    $('#finished-message').hidden = !state.justFinished;
  } else if (name === 'not-eligible') {
    renderNotEligible();
  } else if (name === 'files') {
    ensureHasher();
    renderFiles();
  } else if (name === 'codes') {
    renderCodes();
  }
}

// ---------------------------------------------------------------- eligibility

function readAnswers() {
  const form = $('#eligibility-form');
  const unanswered = [];
  for (const question of QUESTIONS) {
    const checked = form.querySelector(`input[name="${question}"]:checked`);
    $(`#q-${question}`).classList.toggle('unanswered', !checked);
    if (checked) state.answers[question] = checked.value === 'yes';
    else {
      delete state.answers[question];
      unanswered.push(question);
    }
  }
  return unanswered;
}

function onEligibilitySubmit(event) {
  event.preventDefault();
  const unanswered = readAnswers();
  const error = $('#eligibility-error');
  if (unanswered.length) {
    error.hidden = false;
    $(`input[name="${unanswered[0]}"]`).focus();
    return;
  }
  error.hidden = true;
  if (allYes()) {
    state.notEligible = { reasons: [], server: null };
    location.hash = '#files';
  } else {
    state.notEligible = { reasons: QUESTIONS.filter((q) => state.answers[q] === false), server: null };
    location.hash = '#not-eligible';
  }
}

function renderNotEligible() {
  const reasons = $('#not-eligible-reasons');
  reasons.replaceChildren(...state.notEligible.reasons.map((q) => element('li', { text: t(`not_eligible.reason.${q}`) })));
  const serverReason = $('#not-eligible-server-reason');
  const server = state.notEligible.server;
  serverReason.hidden = !(server && server.reason);
  serverReason.textContent = server && server.reason ? server.reason : '';
  // Our own list first, then what the helpline suggests, without duplicates.
  const links = [...t('help.links')];
  for (const item of (server && Array.isArray(server.help) ? server.help : [])) {
    if (item && item.url && !links.some((link) => link.url === item.url)) links.push({ name: item.name || item.url, url: item.url, text: '' });
  }
  $('#help-list').replaceChildren(
    ...links.map((link) => {
      const safeUrl = /^(https?:|tel:|mailto:)/i.test(link.url) ? link.url : '#';
      return element(
        'li',
        {},
        element('a', { href: safeUrl, rel: 'noopener noreferrer', target: '_blank', text: link.name }),
        link.text ? element('span', { text: ` — ${link.text}` }) : '',
      );
    }),
  );
}

// ---------------------------------------------------------------- files and hashing

function ensureHasher() {
  if (!state.hasher) state.hasher = new Hasher();
}

function readyEntries() {
  return state.entries.filter((entry) => entry.status === 'done' && !entry.duplicate);
}

function payload() {
  const eligibility = Object.fromEntries(QUESTIONS.map((q) => [q, state.answers[q] === true]));
  return { eligibility, fingerprints: readyEntries().flatMap((entry) => fingerprintsOf(entry.result)), lang: currentLanguage() };
}

/**
 * The payload as the person reads it: indented JSON, except that each vPDQ frame
 * takes one line (a minute of video is 60 frames). Still exactly the JSON sent.
 */
function previewText(body) {
  const frames = [];
  const marked = JSON.stringify(
    body,
    (key, value) => {
      if (value && typeof value === 'object' && 'pdq' in value && 'timestamp' in value) {
        frames.push(JSON.stringify(value));
        return `\u0000frame${frames.length - 1}`;
      }
      return value;
    },
    2,
  );
  return marked.replace(/"\\u0000frame(\d+)"/g, (whole, index) => frames[Number(index)]);
}

function addFiles(fileList) {
  ensureHasher();
  for (const file of fileList) {
    const entry = { id: state.nextEntryId++, file, kind: kindOf(file), status: 'waiting', result: null, error: null, progress: 0 };
    state.entries.push(entry);
    if (!entry.kind) {
      entry.status = 'error';
      entry.error = 'unsupported';
    } else {
      hashEntry(entry);
    }
  }
  renderFiles();
}

async function hashEntry(entry) {
  try {
    const result = await state.hasher.hash(entry.file, {
      kind: entry.kind,
      isCancelled: () => Boolean(entry.removed),
      onProgress: (progress) => {
        entry.status = 'hashing';
        entry.progress = progress;
        updateEntry(entry);
      },
    });
    if (entry.removed) return;
    entry.result = result;
    entry.status = 'done';
    entry.duplicate = state.entries.some((other) => other !== entry && !other.removed && other.status === 'done' && !other.duplicate && other.result.fingerprint === result.fingerprint);
  } catch (error) {
    if (entry.removed || error.code === 'cancelled') return; // the list was emptied meanwhile
    entry.status = 'error';
    entry.error = error.code || 'failed';
  }
  entry.file = null; // the worker is done with it; keep nothing we do not need
  renderFiles();
}

function videoStateText(result) {
  const frames = result.vpdq ? result.vpdq.length : 0;
  if (!frames) {
    const reason = result.vpdqError || 'video_failed';
    const help = ['video_unreadable', 'video_failed', 'video_timeout'].includes(reason) ? ` ${t('files.video.help')}` : '';
    return `${t(`files.video.${reason}`)} ${t('files.video.md5_only')}${help}`;
  }
  let text = t('files.state.done_video', { count: frames });
  if (!result.vpdqComplete) text += ` ${t('files.video.partial', { seconds: Math.floor(result.vpdq[frames - 1].timestamp) + 1 })}`;
  if (result.vpdq.every((frame) => frame.quality < 50)) text += ` ${t('files.video.low_quality')}`;
  return text;
}

function videoNeedsAttention(result) {
  return !result.vpdq || !result.vpdq.length || !result.vpdqComplete || result.vpdq.every((frame) => frame.quality < 50);
}

function entryStateText(entry) {
  if (entry.status === 'waiting') return t('files.state.waiting');
  if (entry.status === 'hashing' && entry.kind === 'video') {
    // In steps of 10 %: the line is a live region, and screen readers read every change.
    return t('files.state.hashing_video', { percent: Math.floor(entry.progress * 10) * 10 });
  }
  if (entry.status === 'hashing') return t('files.state.hashing', { percent: Math.round(entry.progress * 100) });
  if (entry.status === 'error') return t(`files.error.${entry.error}`);
  if (entry.duplicate) return t('files.state.duplicate');
  if (entry.result.signal === 'md5') return videoStateText(entry.result);
  if (entry.result.quality < 50) return t('files.state.done_low', { quality: entry.result.quality });
  return t('files.state.done_photo', { quality: entry.result.quality });
}

function updateEntry(entry) {
  if (!entry.element) return;
  const stateLine = entry.element.querySelector('.file-state');
  const text = entryStateText(entry);
  if (stateLine.textContent !== text) stateLine.textContent = text;
  stateLine.classList.toggle('is-error', entry.status === 'error');
  const done = entry.status === 'done' && !entry.duplicate;
  stateLine.classList.toggle('is-low', done && (entry.result.signal === 'pdq' ? entry.result.quality < 50 : videoNeedsAttention(entry.result)));
  const bar = entry.element.querySelector('progress');
  if (bar) {
    bar.hidden = entry.status !== 'hashing';
    bar.value = Math.round(entry.progress * 100);
  }
}

function thumbnailOf(entry) {
  const result = entry.result;
  if (result && result.thumbnail) {
    // Drawn from the ImageBitmap the worker made: no URL, no request.
    const canvas = element('canvas', { className: 'thumb', role: 'img', 'aria-label': t('files.thumb_alt', { name: entry.name }) });
    canvas.width = result.thumbnail.width;
    canvas.height = result.thumbnail.height;
    canvas.getContext('2d').drawImage(result.thumbnail, 0, 0);
    return canvas;
  }
  return element('div', { className: 'thumb', 'aria-hidden': 'true', text: entry.kind === 'video' ? t('files.video_badge') : '…' });
}

function renderFiles() {
  const list = $('#file-list');
  const live = state.entries.filter((entry) => !entry.removed);
  list.replaceChildren(
    ...live.map((entry) => {
      entry.name = entry.name || (entry.file && entry.file.name) || '';
      const remove = element('button', { type: 'button', className: 'link-button', text: t('files.remove'), 'aria-label': t('files.remove_named', { name: entry.name }) });
      remove.addEventListener('click', () => removeEntry(entry));
      const details = element('div', { className: 'file-details' }, element('div', { className: 'file-name', text: entry.name }));
      if (entry.kind === 'video') {
        // Decoding a video takes a while: a bar, and a state line read out as it changes.
        details.append(element('progress', { max: '100', value: '0', 'aria-label': t('files.video.progress_label', { name: entry.name }) }));
        details.append(element('div', { className: 'file-state', role: 'status', 'aria-live': 'polite' }));
      } else {
        details.append(element('div', { className: 'file-state' }));
      }
      const item = element('li', { className: 'file-item', 'data-status': entry.status, 'data-kind': entry.kind || 'other' }, thumbnailOf(entry), details, remove);
      entry.element = item;
      updateEntry(entry);
      return item;
    }),
  );
  const pending = live.filter((entry) => entry.status === 'waiting' || entry.status === 'hashing').length;
  const ready = readyEntries().length;
  const failed = live.filter((entry) => entry.status === 'error').length;
  let progress = '';
  if (state.sending) progress = t('files.sending');
  else if (pending) progress = t('files.progress', { done: live.length - pending, total: live.length });
  else if (ready) progress = t('files.ready', { count: payload().fingerprints.length });
  if (!state.sending && !pending && failed) progress += (progress ? ' ' : '') + t('files.some_failed', { count: failed });
  const progressLine = $('#progress');
  if (progressLine.textContent !== progress) progressLine.textContent = progress;
  $('#submit-fingerprints').disabled = state.sending || pending > 0 || ready === 0;
  $('#payload-preview').textContent = previewText(payload());
  showError($('#submit-error'), state.submitError);
}

function removeEntry(entry) {
  entry.removed = true;
  entry.file = null;
  if (entry.duplicate === false || entry.duplicate === undefined) {
    // If this one was the original of a duplicate, let the duplicate take its place.
    const twin = state.entries.find((other) => other.duplicate && !other.removed && other.result.fingerprint === (entry.result && entry.result.fingerprint));
    if (twin) twin.duplicate = false;
  }
  renderFiles();
  $('#progress').textContent = t('files.removed', { name: entry.name });
  $('#file-input').focus();
}

async function onSubmitFingerprints() {
  const body = payload();
  if (!body.fingerprints.length) return;
  state.sending = true;
  state.submitError = null;
  renderFiles();
  try {
    const { status, data } = await openCaseWithProof(body);
    if (status === 201 && data && data.case_number && data.pin) {
      state.codes = data;
      forgetFiles();
      location.hash = '#codes';
    } else if (status === 422) {
      state.notEligible = { reasons: [], server: data || {} };
      location.hash = '#not-eligible';
    } else if (status === 429 && data && data.reason) {
      state.submitError = creationRefusedMessage(data);
    } else {
      state.submitError = apiErrorMessage(status, data);
    }
  } catch {
    state.submitError = t('errors.network');
  } finally {
    state.sending = false;
    if (currentView() === 'files') renderFiles();
  }
}

function forgetFiles() {
  for (const entry of state.entries) {
    entry.file = null;
    if (entry.result && entry.result.thumbnail) entry.result.thumbnail.close();
  }
  state.entries = [];
  if (state.hasher) state.hasher.terminate();
  state.hasher = null;
}

// ---------------------------------------------------------------- case number and PIN

function renderCodes() {
  const codes = state.codes;
  $('#case-number').textContent = codes.case_number;
  $('#case-pin').textContent = codes.pin;
  $('#codes-summary').textContent =
    t('codes.summary', { count: codes.fingerprints }) + (codes.low_quality ? ` ${t('codes.summary_low', { count: codes.low_quality })}` : '');
  $('#codes-done').disabled = !$('#codes-saved').checked;
}

function codesAsText() {
  const codes = state.codes;
  const where = new URL('#status', location.href);
  where.search = '';
  return [
    t('codes.file.title'),
    '',
    `${t('codes.case_number')}: ${codes.case_number}`,
    `${t('codes.pin')}: ${codes.pin}`,
    '',
    t('codes.file.where', { url: where.href }),
    t('codes.file.keep_safe'),
    '',
  ].join('\r\n');
}

function downloadCodes() {
  // Generated here; the text never goes to the server.
  const blob = new Blob([codesAsText()], { type: 'text/plain;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const link = element('a', { href: url, download: `${t('codes.file.name')}-${state.codes.case_number}.txt` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function finishCodes() {
  state.codes = null;
  state.answers = {};
  $('#eligibility-form').reset();
  $('#codes-saved').checked = false;
  state.justFinished = true;
  location.hash = '#welcome';
}

// ---------------------------------------------------------------- status and withdrawal

function readCaseForm(prefix) {
  const caseNumber = normaliseCaseNumber($(`#${prefix}-case`).value);
  const pin = normalisePin($(`#${prefix}-pin`).value);
  const error = $(`#${prefix}-error`);
  if (!caseNumber || !pin) {
    showError(error, t('errors.missing_codes'));
    $(`#${prefix}-${caseNumber ? 'pin' : 'case'}`).focus();
    return null;
  }
  showError(error, '');
  return { caseNumber, pin };
}

let lastStatus = null;

function renderStatus() {
  const box = $('#status-result');
  box.hidden = !lastStatus;
  if (!lastStatus) return;
  const data = lastStatus;
  const published = Array.isArray(data.published) ? data.published.length : 0;
  $('#status-state').textContent = t(`status.state.${data.state === 'withdrawn' ? 'withdrawn' : 'active'}`);
  $('#status-counts').textContent = `${t('status.counts', { count: data.fingerprints ?? 0 })} ${t('status.published', { count: published })}`;
  // One line per platform: its verdicts, counted (the node reports one per fingerprint).
  // Its name is the one the helpline gave it, never what the platform says about itself
  // (the node sends null then: "a partner platform").
  const byPlatform = new Map();
  for (const item of Array.isArray(data.feedback) ? data.feedback : []) {
    if (!byPlatform.has(item.platform)) byPlatform.set(item.platform, { name: item.name || t('status.unnamed_platform'), verdicts: new Map() });
    const verdicts = byPlatform.get(item.platform).verdicts;
    verdicts.set(item.verdict, (verdicts.get(item.verdict) || 0) + 1);
  }
  const lines = [...byPlatform.values()].map(({ name: platform, verdicts }) => {
    const described = [...verdicts].map(([verdict, count]) => {
      const key = `verdict.${verdict}`;
      const text = t(key) === key ? verdict : t(key);
      return count > 1 ? `${count} × ${text}` : text;
    });
    return element('li', { text: t('status.feedback_line', { platform, verdict: described.join(' ; ') }) });
  });
  $('#status-feedback').replaceChildren(...(lines.length ? lines : [element('li', { text: t('status.no_feedback') })]));
}

async function onStatusSubmit(event) {
  event.preventDefault();
  const codes = readCaseForm('status');
  if (!codes) return;
  lastStatus = null;
  renderStatus();
  try {
    const { status, data } = await caseStatus(codes.caseNumber, codes.pin);
    if (status === 200 && data) {
      lastStatus = data;
      renderStatus();
      $('#status-result h2').setAttribute('tabindex', '-1');
      $('#status-result h2').focus();
    } else {
      showError($('#status-error'), apiErrorMessage(status, data));
    }
  } catch {
    showError($('#status-error'), t('errors.network'));
  }
}

let pendingWithdrawal = null;

function onWithdrawSubmit(event) {
  event.preventDefault();
  const codes = readCaseForm('withdraw');
  if (!codes) return;
  pendingWithdrawal = codes;
  $('#withdraw-confirm').hidden = false;
  $('#withdraw-confirm-title').focus();
}

function cancelWithdrawal() {
  pendingWithdrawal = null;
  $('#withdraw-confirm').hidden = true;
  $('#withdraw-ask').focus();
}

async function confirmWithdrawal() {
  if (!pendingWithdrawal) return;
  const { caseNumber, pin } = pendingWithdrawal;
  $('#withdraw-yes').disabled = true;
  try {
    const { status, data } = await withdrawCase(caseNumber, pin);
    // 503 with state "withdrawn": recorded, to be published when the log can be written.
    const recorded = status === 503 && data && data.state === 'withdrawn';
    if (status === 200 || recorded) {
      pendingWithdrawal = null;
      $('#withdraw-confirm').hidden = true;
      $('#withdraw-form').hidden = true;
      $('#withdraw-result').hidden = false;
      $('#withdraw-pending').hidden = !recorded;
      $('#withdraw-done-title').focus();
    } else {
      $('#withdraw-confirm').hidden = true;
      showError($('#withdraw-error'), apiErrorMessage(status, data));
      $('#withdraw-case').focus();
    }
  } catch {
    $('#withdraw-confirm').hidden = true;
    showError($('#withdraw-error'), t('errors.network'));
  } finally {
    $('#withdraw-yes').disabled = false;
  }
}

// ---------------------------------------------------------------- page-wide

async function switchLanguage() {
  await setLanguage(currentLanguage() === 'fr' ? 'en' : 'fr');
  // Re-render what was built from strings, keeping where the person is.
  showView(currentView(), { focus: false });
  renderStatus();
  $('#language-switch').focus();
}

function quickExit() {
  forgetFiles();
  state.codes = null;
  location.replace(t('app.quick_exit_url'));
}

async function start() {
  await setLanguage(preferredLanguage());
  $('#eligibility-form').addEventListener('submit', onEligibilitySubmit);
  $('#eligibility-form').addEventListener('change', (event) => {
    // An answer given clears that question's red border, and the message once all are answered.
    event.target.closest('.question')?.classList.remove('unanswered');
    if (!document.querySelector('.question.unanswered')) $('#eligibility-error').hidden = true;
  });
  $('#file-input').addEventListener('change', (event) => {
    addFiles([...event.target.files]);
    event.target.value = ''; // so the same file can be picked again after removing it
  });
  $('#submit-fingerprints').addEventListener('click', onSubmitFingerprints);
  $('#print-codes').addEventListener('click', () => window.print());
  $('#download-codes').addEventListener('click', downloadCodes);
  $('#codes-saved').addEventListener('change', (event) => {
    $('#codes-done').disabled = !event.target.checked;
  });
  $('#codes-done').addEventListener('click', finishCodes);
  $('#status-form').addEventListener('submit', onStatusSubmit);
  $('#withdraw-form').addEventListener('submit', onWithdrawSubmit);
  $('#withdraw-yes').addEventListener('click', confirmWithdrawal);
  $('#withdraw-no').addEventListener('click', cancelWithdrawal);
  $('#language-switch').addEventListener('click', switchLanguage);
  $('#quick-exit').addEventListener('click', quickExit);
  window.addEventListener('hashchange', () => {
    if (currentView() !== 'welcome') state.justFinished = false;
    if (currentView() !== 'withdraw') {
      $('#withdraw-form').hidden = false;
      $('#withdraw-result').hidden = true;
      $('#withdraw-confirm').hidden = true;
    }
    showView(currentView());
  });
  window.addEventListener('beforeunload', (event) => {
    // The codes cannot be recovered: warn before they vanish unsaved.
    if (state.codes) event.preventDefault();
  });
  showView(currentView(), { focus: false });
  document.body.dataset.ready = 'true';
}

start();
