/**
 * The victim web page: a few views in one document, switched by the address's
 * #fragment (welcome, eligibility, not-eligible, files, codes, status, withdraw,
 * receipt, help, faq).
 *
 * Privacy invariants:
 * - the files a person picks are read only by the hashing worker; the only things
 *   that leave the device are the eligibility answers, the fingerprints (signal, hex,
 *   quality) and the language;
 * - nothing is stored: no cookie, no localStorage; the case number and PIN live in
 *   memory until the person says they have saved them;
 * - moving between steps never adds a history entry (history.replaceState), so that
 *   after "Quick exit" (or Esc pressed twice) Back cannot return to the page;
 * - a receipt (an offline proof, without the case number or PIN) is given as a file
 *   made here from the helpline's answer; one the person picks to check is read and
 *   checked on the device (receipt.js), never sent.
 *
 * What makes the page a helpline's own (its name, contact, help per country,
 * emergency numbers, questions and answers, participating platforms) comes from
 * GET /helpline.json, built by the node from its configuration.
 */
import { LANGUAGES, NATIVE_NAMES, countryName, currentLanguage, formatDateTime, formatDay, localText, preferredLanguage, setLanguage, t } from './i18n.js';
import { Hasher, fingerprintsOf, kindOf } from './hashing.js';
import { caseReceipt, caseStatus, loadHelpline, loadReceiptPolicy, normaliseCaseNumber, normalisePin, openCase, withdrawCase } from './api.js';
import { proveWork } from './pow.js';
import { ReceiptError, verifyReceipt } from './receipt.js';

const QUESTIONS = ['in_image', 'adult', 'adult_in_image', 'has_image', 'intimate'];
/** A "no" to either means an image of a minor: Take It Down and child protection, never this service. */
const AGE_QUESTIONS = ['adult', 'adult_in_image'];
const MINOR_KINDS = ['minor_images', 'child_helpline', 'child_abuse_report'];
const ADULT_KINDS = ['ncii_support', 'report_online', 'victim_support', 'violence_helpline'];
const VIEWS = ['welcome', 'eligibility', 'not-eligible', 'files', 'codes', 'status', 'withdraw', 'receipt', 'help', 'faq'];
/** Two presses of Escape within this many milliseconds leave the page, as "Quick exit" does. */
const DOUBLE_ESCAPE_MS = 1500;

const state = {
  answers: {}, // question -> true/false, once answered
  notEligible: { reasons: [], server: null },
  entries: [], // files picked: { id, file, kind, status, result, error, progress, element }
  nextEntryId: 1,
  hasher: null,
  sending: false,
  submitError: null,
  codes: null, // the 201 answer of POST /v1/cases, until the person confirms they saved it
  caseOpened: false, // a case was opened from this page since it was loaded: say so, so nobody sends twice
  justFinished: false,
  helpline: { resources: [], emergency: [], faq: [], default_faq: true, platforms: [], countries: [] },
  country: null, // whose help is shown; chosen by the person, never sent
  withdrawalReceipt: null, // { receipt, receipt_file } of the withdrawal just made
  receiptPolicy: null, // GET v1/cases/receipt-policy, once fetched
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
  const when = new Intl.RelativeTimeFormat(currentLanguage(), { numeric: 'always' })
    .format(minutes < 120 ? minutes : Math.ceil(minutes / 60), minutes < 120 ? 'minute' : 'hour');
  return data.reason === 'address' || data.reason === 'network'
    ? t('errors.create_connection', { when }) : t('errors.create_busy', { when });
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

/** Go to a step without adding a history entry (Back must never lead back into the page). */
function go(name) {
  history.replaceState(null, '', `#${name}`);
  showView(name);
}

function showView(name, { focus = true } = {}) {
  // Steps that only make sense in order send the person back to the start.
  if (name === 'files' && !allYes()) name = 'eligibility';
  if (name === 'codes' && !state.codes) name = 'welcome';
  if (name === 'not-eligible' && !state.notEligible.reasons.length && !state.notEligible.server) name = 'eligibility';
  if (`#${name}` !== location.hash && !(name === 'welcome' && !location.hash)) {
    history.replaceState(null, '', `#${name}`);
  }
  if (name !== 'welcome') state.justFinished = false;
  if (name !== 'withdraw') resetWithdrawView();
  for (const section of document.querySelectorAll('.view')) {
    section.hidden = section.dataset.view !== name;
  }
  // A neutral title: the step's short name and "Online help", nothing about images.
  document.title = `${t(`title.${name}`)} – ${t('app.title')}`;
  renderView(name);
  if (focus) document.querySelector(`#view-${name} h1`).focus();
  window.scrollTo(0, 0);
}

function renderView(name) {
  for (const notice of document.querySelectorAll('.case-exists')) notice.hidden = !state.caseOpened;
  if (name === 'welcome') {
    $('#finished-message').hidden = !state.justFinished;
    renderPlatforms();
  } else if (name === 'not-eligible') {
    renderNotEligible();
  } else if (name === 'files') {
    ensureHasher();
    renderFiles();
  } else if (name === 'codes') {
    renderCodes();
  } else if (name === 'status') {
    renderStatus();
  } else if (name === 'receipt') {
    resetReceiptView();
  } else if (name === 'help') {
    renderHelp();
  } else if (name === 'faq') {
    renderFaq();
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
    go('files');
  } else {
    state.notEligible = { reasons: QUESTIONS.filter((q) => state.answers[q] === false), server: null };
    go('not-eligible');
  }
}

function renderNotEligible() {
  const { reasons, server } = state.notEligible;
  // Under 18 today or in the image: only the reason for that (the rest does not matter).
  const age = reasons.find((q) => AGE_QUESTIONS.includes(q));
  const shown = age ? [age] : reasons;
  $('#not-eligible-reasons').replaceChildren(...shown.map((q) => element('li', { text: t(`not_eligible.reason.${q}`) })));
  const serverReason = $('#not-eligible-server-reason');
  serverReason.hidden = !(server && server.reason);
  serverReason.textContent = server && server.reason ? server.reason : '';
  const minor = Boolean(age) || Boolean(server && Array.isArray(server.not_met) && server.not_met.some((q) => AGE_QUESTIONS.includes(q)));
  const resources = servicesFor(state.country, minor ? MINOR_KINDS : ADULT_KINDS);
  // What the helpline answered, where our own list lacks it.
  for (const item of server && Array.isArray(server.help) ? server.help : []) {
    if (item && item.name && !resources.some((r) => r.name === item.name)) resources.push({ name: item.name, url: item.url, phone: item.phone });
  }
  $('#not-eligible-help').replaceChildren(...resources.map(resourceItem));
  renderCountryChoices();
  renderEmergency();
}

// ---------------------------------------------------------------- the helpline's own: help, FAQ, platforms

function servicesFor(country, kinds) {
  const all = state.helpline.resources.filter((r) => kinds.includes(r.kind));
  const found = [...all.filter((r) => r.country === country), ...all.filter((r) => r.country === '*')];
  // Take It Down first: it removes images taken before 18, wherever the person lives.
  return found.sort((a, b) => (b.kind === 'minor_images' && b.country === '*') - (a.kind === 'minor_images' && a.country === '*'));
}

/** Only web addresses, phone numbers and e-mail addresses become links. */
function safeHref(url) {
  return /^(https?:|tel:|mailto:)/i.test(url) ? url : null;
}

function phoneHref(number) {
  return `tel:${String(number).replace(/[^0-9+]/g, '')}`;
}

function externalLink(url, text) {
  const href = safeHref(url);
  return href ? element('a', { href, rel: 'noopener noreferrer', target: '_blank', text }) : element('span', { text });
}

function resourceItem(resource) {
  const item = element('li', {}, resource.url ? externalLink(resource.url, resource.name) : element('strong', { text: resource.name }));
  const description = localText(resource.text) || (resource.kind ? t(`kind.${resource.kind}`) : '');
  if (description) item.append(element('span', { className: 'description', text: description }));
  if (resource.phone) {
    item.append(element('span', { className: 'phone' }, `${t('help.phone')} `, element('a', { href: phoneHref(resource.phone), dir: 'ltr', text: resource.phone })));
  }
  return item;
}

function renderEmergency() {
  const numbers = state.helpline.emergency.filter((n) => n.country === state.country);
  const items = numbers.length
    ? numbers.map((n) => element('li', {}, element('a', { href: phoneHref(n.number), className: 'emergency-number', dir: 'ltr', text: n.number }), ` ${t(`emergency.${n.kind}`)}`))
    : [element('li', { text: t('emergency.fallback') })];
  for (const list of document.querySelectorAll('.emergency-list')) list.replaceChildren(...items.map((item) => item.cloneNode(true)));
}

function renderCountryChoices() {
  for (const select of document.querySelectorAll('.country-select')) {
    select.replaceChildren(...state.helpline.countries.map((code) => element('option', { value: code, text: countryName(code) })));
    select.value = state.country;
  }
}

function renderHelp() {
  renderCountryChoices();
  renderEmergency();
  $('#help-adults').replaceChildren(...servicesFor(state.country, ADULT_KINDS).map(resourceItem));
  $('#help-minors').replaceChildren(...servicesFor(state.country, MINOR_KINDS).map(resourceItem));
}

function paragraphs(text) {
  return String(text).split(/\n\s*\n/).map((part) => element('p', { text: part.trim() }));
}

function renderFaq() {
  const own = state.helpline.faq.map((item) => ({ question: localText(item.question), answer: localText(item.answer) }));
  const shipped = state.helpline.default_faq === false ? [] : t('faq.items');
  $('#faq-list').replaceChildren(
    ...[...own, ...(Array.isArray(shipped) ? shipped : [])].map((item) =>
      element('details', { className: 'faq-item' }, element('summary', { text: item.question }), ...paragraphs(item.answer)),
    ),
  );
}

function renderPlatforms() {
  const platforms = state.helpline.platforms;
  $('#platforms').hidden = !platforms.length;
  $('#platform-list').replaceChildren(...platforms.map((p) => element('li', {}, p.url ? externalLink(p.url, p.name) : p.name)));
}

/** The helpline's name in the header, its contact in the footer. */
function renderHelpline() {
  $('#site-name').textContent = state.helpline.name || t('app.name');
  const contact = state.helpline.contact || '';
  $('#helpline-contact').hidden = !contact;
  const link = $('#helpline-contact-link');
  link.textContent = contact;
  if (contact.toLowerCase().startsWith('https:')) link.href = contact;
  else if (/^[^\s@]+@[^\s@]+$/.test(contact)) link.href = `mailto:${contact}`;
  else if (/^\+?[0-9][0-9 ().-]*$/.test(contact)) link.href = phoneHref(contact);
  else link.removeAttribute('href');
}

/** The country whose help to show first: the browser's region if the helpline offers it, else its default. */
function initialCountry(browserLanguages = navigator.languages || [navigator.language]) {
  const offered = state.helpline.countries;
  for (const tag of browserLanguages) {
    const region = String(tag).split('-')[1];
    if (region && offered.includes(region.toUpperCase())) return region.toUpperCase();
  }
  return state.helpline.default_country || offered[0] || null;
}

function onCountryChange(event) {
  state.country = event.target.value;
  const id = event.target.id;
  renderView(currentView());
  document.getElementById(id).focus();
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
  if (!result.vpdqComplete) text += ` ${t('files.video.partial', { count: Math.floor(result.vpdq[frames - 1].timestamp) + 1 })}`;
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
      state.caseOpened = true;
      forgetFiles();
      go('codes');
    } else if (status === 422) {
      state.notEligible = { reasons: [], server: data || {} };
      go('not-eligible');
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
  $('#codes-receipt').hidden = !codes.receipt;
}

function codesAsText() {
  const codes = state.codes;
  const where = new URL('#status', location.href);
  where.search = '';
  return [
    t('codes.file.title'),
    '',
    t('codes.file.line', { label: t('codes.case_number'), value: codes.case_number }),
    t('codes.file.line', { label: t('codes.pin'), value: codes.pin }),
    '',
    t('codes.file.where', { url: where.href }),
    t('codes.file.keep_safe'),
    '',
  ].join('\r\n');
}

/** Save a text made here as a file on the device (it never goes to the server). */
function downloadText(text, name) {
  const blob = new Blob([text], { type: 'text/plain;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const link = element('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function downloadCodes() {
  downloadText(codesAsText(), `${t('codes.file.name')}-${state.codes.case_number}.txt`);
}

/** A receipt as the helpline gave it ({receipt, receipt_file}): no case number or PIN in it. */
function downloadReceipt(answer) {
  downloadText(answer.receipt, answer.receipt_file || 'receipt.tlog-proof');
}

function finishCodes() {
  state.codes = null;
  state.answers = {};
  $('#eligibility-form').reset();
  $('#codes-saved').checked = false;
  state.justFinished = true;
  go('welcome');
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

let lastStatus = null; // { data, codes }: the answer shown, and the codes that asked for it

/** Per platform (the name the helpline gave it) and verdict: how many fingerprints, and the latest day. */
// Per platform (by its log's origin), the name the helpline gave it -- never what the
// platform says about itself: the node sends null then, "a partner platform" -- and its verdicts.
function verdictsByPlatform(feedback) {
  const byPlatform = new Map();
  for (const item of Array.isArray(feedback) ? feedback : []) {
    if (!byPlatform.has(item.platform)) byPlatform.set(item.platform, { name: item.name || t('status.unnamed_platform'), verdicts: new Map() });
    const verdicts = byPlatform.get(item.platform).verdicts;
    const seen = verdicts.get(item.verdict) || { count: 0, day: null };
    seen.count += 1;
    if (item.day && (!seen.day || item.day > seen.day)) seen.day = item.day;
    verdicts.set(item.verdict, seen);
  }
  return byPlatform;
}

function verdictLine(verdict, { count, day }) {
  const key = `verdict.${verdict}`;
  const name = t(key) === key ? verdict : t(key);
  return day ? t('status.verdict_on', { verdict: name, count, date: formatDay(day) }) : t('status.verdict', { verdict: name, count });
}

function renderStatus() {
  const box = $('#status-result');
  box.hidden = !lastStatus;
  if (!lastStatus) return;
  const { data } = lastStatus;
  const withdrawn = data.state === 'withdrawn';
  const published = Array.isArray(data.published) ? data.published.length : 0;
  const since = withdrawn && data.withdrawn_at && data.withdrawn_at.requested;
  $('#status-state').textContent = withdrawn
    ? (since ? t('status.state.withdrawn_on', { date: formatDay(since) }) : t('status.state.withdrawn'))
    : t('status.state.active');
  $('#status-counts').textContent = `${t('status.counts', { count: data.fingerprints ?? 0 })} ${t('status.published', { count: published })}`;
  const lines = [...verdictsByPlatform(data.feedback).values()].map(({ name: platform, verdicts }) =>
    element('li', {}, element('strong', { text: platform }),
      element('ul', {}, ...[...verdicts].map(([verdict, seen]) => element('li', { text: verdictLine(verdict, seen) })))),
  );
  $('#status-feedback').replaceChildren(...(lines.length ? lines : [element('li', { text: t('status.no_feedback') })]));
  const platforms = (Array.isArray(data.platforms) ? data.platforms : []).map(platformItem);
  $('#status-platforms').replaceChildren(...(platforms.length ? platforms : [element('li', { text: t('status.no_platforms') })]));
  showError($('#status-receipt-error'), '');
  // A withdrawn case cannot be withdrawn again: no such offer.
  $('#status-withdraw').hidden = withdrawn;
}

/** One platform: when it applied the fingerprints, and the withdrawal (from its signed acknowledgements). */
function platformItem(platform) {
  const fingerprints = (a) => (a.applied ? t('status.platform.fingerprints_applied', { date: formatDateTime(a.at) })
    : a.pending_since ? t('status.platform.fingerprints_pending', { date: formatDateTime(a.pending_since) })
      : t('status.platform.fingerprints_unpublished'));
  const withdrawal = (a) => (a.applied ? t('status.platform.withdrawal_applied', { date: formatDateTime(a.at) })
    : a.pending_since ? t('status.platform.withdrawal_pending', { date: formatDateTime(a.pending_since) })
      : t('status.platform.withdrawal_unpublished'));
  const items = [];
  if (platform.fingerprints) items.push(element('li', { text: fingerprints(platform.fingerprints) }));
  if (platform.withdrawal) items.push(element('li', { text: withdrawal(platform.withdrawal) }));
  if (platform.log_disputed) items.push(element('li', { text: t('status.platform.disputed') }));
  return element('li', {}, element('strong', { text: platform.name }), element('ul', {}, ...items));
}

async function onStatusReceipt() {
  if (!lastStatus) return;
  const error = $('#status-receipt-error');
  try {
    const { status, data } = await caseReceipt(lastStatus.codes.caseNumber, lastStatus.codes.pin);
    if (status === 200 && data && data.receipt) {
      showError(error, '');
      downloadReceipt(data);
    } else {
      showError(error, status === 200 ? t('receipt.unavailable') : apiErrorMessage(status, data));
    }
  } catch {
    showError(error, t('errors.network'));
  }
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
      lastStatus = { data, codes };
      renderStatus();
      $('#status-result-title').focus();
    } else {
      showError($('#status-error'), apiErrorMessage(status, data));
    }
  } catch {
    showError($('#status-error'), t('errors.network'));
  }
}

/** "Withdraw this case" from the status: the codes just checked go with it, in memory only. */
function carryCodesToWithdrawal() {
  if (!lastStatus) return;
  $('#withdraw-case').value = lastStatus.codes.caseNumber;
  $('#withdraw-pin').value = lastStatus.codes.pin;
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

function resetWithdrawView() {
  state.withdrawalReceipt = null;
  $('#withdraw-form').hidden = false;
  $('#withdraw-result').hidden = true;
  $('#withdraw-confirm').hidden = true;
  pendingWithdrawal = null;
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
      lastStatus = null; // the status shown before is no longer true
      $('#withdraw-confirm').hidden = true;
      $('#withdraw-form').hidden = true;
      $('#withdraw-result').hidden = false;
      $('#withdraw-pending').hidden = !recorded;
      state.withdrawalReceipt = status === 200 && data && data.receipt ? data : null;
      $('#withdraw-receipt').hidden = !state.withdrawalReceipt;
      $('#download-withdrawal-receipt').hidden = !state.withdrawalReceipt;
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

// ---------------------------------------------------------------- checking a receipt, on this device

function resetReceiptView() {
  $('#receipt-result').hidden = true;
  showError($('#receipt-error'), '');
}

async function onReceiptChosen(event) {
  const file = event.target.files[0];
  event.target.value = '';
  resetReceiptView();
  if (!file) return;
  try {
    state.receiptPolicy = state.receiptPolicy || (await loadReceiptPolicy());
  } catch {
    showError($('#receipt-error'), t('errors.network'));
    return;
  }
  try {
    const text = await file.text(); // read here; the file is never sent
    renderReceipt(await verifyReceipt(text, state.receiptPolicy));
  } catch (error) {
    const unsupported = error instanceof ReceiptError && error.kind === 'unsupported';
    showError($('#receipt-error'), unsupported ? t('receipt.unsupported') : t('receipt.invalid'));
  }
}

function renderReceipt(proven) {
  const submissions = proven.entries.filter((entry) => entry.kind === 'submission').length;
  const withdrawals = proven.entries.filter((entry) => entry.kind === 'withdrawal');
  const withdrawn = new Set(withdrawals.flatMap((entry) => entry.targets.map(String))).size;
  const lines = [t('receipt.in_log', { count: submissions, origin: proven.origin })];
  if (withdrawals.length) lines.push(t('receipt.withdrawal_in_log', { count: withdrawn }));
  if (proven.published) lines.push(t('receipt.published_at', { date: formatDateTime(proven.published) }));
  for (const { name, at } of proven.applied) {
    const values = { name, date: formatDateTime(at) };
    lines.push(withdrawals.length ? t('receipt.applied_withdrawal', values) : t('receipt.applied', values));
  }
  for (const { name, at } of proven.witnesses) lines.push(t('receipt.witnessed', { name, date: formatDateTime(at) }));
  if (!proven.published && !proven.witnesses.length) lines.push(t('receipt.no_time'));
  $('#receipt-result-title').textContent = t('receipt.valid');
  $('#receipt-proves').replaceChildren(...lines.map((text) => element('li', { text })));
  $('#receipt-result').hidden = false;
  $('#receipt-result-title').focus();
}

// ---------------------------------------------------------------- page-wide

function renderLanguageMenu() {
  $('#language-current').textContent = NATIVE_NAMES[currentLanguage()];
  $('#language-list').replaceChildren(
    ...LANGUAGES.map((lang) => {
      const button = element('button', { type: 'button', className: 'link-button', lang, 'data-lang': lang, text: NATIVE_NAMES[lang] });
      if (lang === currentLanguage()) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => switchLanguage(lang));
      return button;
    }).map((button) => element('li', {}, button)),
  );
}

async function switchLanguage(lang) {
  $('#language-menu').open = false;
  await setLanguage(lang);
  renderPage();
  // Re-render what was built from strings, keeping where the person is.
  showView(currentView(), { focus: false });
  $('#language-menu summary').focus();
}

/** What does not belong to one view: header, footer, language menu. */
function renderPage() {
  renderLanguageMenu();
  renderHelpline();
}

function quickExit() {
  forgetFiles();
  state.codes = null;
  state.withdrawalReceipt = null;
  lastStatus = null;
  resetReceiptView();
  for (const input of document.querySelectorAll('input')) input.value = '';
  document.body.hidden = true; // nothing left to see, even for a moment
  document.title = '';
  location.replace(state.helpline.quick_exit_url || t('app.quick_exit_url'));
}

let lastEscape = -Infinity;

function onKeyDown(event) {
  if (event.key !== 'Escape' || event.repeat) return;
  const now = performance.now();
  if (now - lastEscape < DOUBLE_ESCAPE_MS) quickExit();
  else lastEscape = now;
}

/** In-page links change the step in place: no history entry (see the top of this file). */
function onLinkClick(event) {
  const link = event.target.closest('a[href^="#"]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  const target = link.getAttribute('href').slice(1);
  if (VIEWS.includes(target)) go(target);
  else document.getElementById(target)?.focus(); // the skip link
}

async function start() {
  const [, helpline] = await Promise.all([setLanguage(preferredLanguage()), loadHelpline().catch(() => null)]);
  if (helpline) state.helpline = { ...state.helpline, ...helpline };
  state.country = initialCountry();
  renderPage();
  document.addEventListener('click', onLinkClick);
  document.addEventListener('keydown', onKeyDown);
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
  $('#download-receipt').addEventListener('click', () => downloadReceipt(state.codes));
  $('#download-withdrawal-receipt').addEventListener('click', () => state.withdrawalReceipt && downloadReceipt(state.withdrawalReceipt));
  $('#status-receipt').addEventListener('click', onStatusReceipt);
  $('#receipt-input').addEventListener('change', onReceiptChosen);
  $('#status-form').addEventListener('submit', onStatusSubmit);
  $('#status-withdraw-link').addEventListener('click', carryCodesToWithdrawal);
  $('#withdraw-form').addEventListener('submit', onWithdrawSubmit);
  $('#withdraw-yes').addEventListener('click', confirmWithdrawal);
  $('#withdraw-no').addEventListener('click', cancelWithdrawal);
  for (const select of document.querySelectorAll('.country-select')) select.addEventListener('change', onCountryChange);
  $('#quick-exit').addEventListener('click', quickExit);
  // An address typed or pasted by hand (the page itself never adds a history entry).
  window.addEventListener('hashchange', () => showView(currentView()));
  window.addEventListener('beforeunload', (event) => {
    // The codes cannot be recovered: warn before they vanish unsaved.
    if (state.codes) event.preventDefault();
  });
  showView(currentView(), { focus: false });
  document.body.dataset.ready = 'true';
}

start();
