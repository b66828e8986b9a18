/**
 * Translations. Every string a person sees lives in i18n/<lang>.json; the HTML
 * only names keys: data-i18n="key" sets an element's text and
 * data-i18n-attr="attribute:key;attribute:key" sets attributes.
 * The language is the first of the browser's preferred languages that the page
 * has (French first among equals), else English; a menu in the header changes it.
 * The choice is kept in the address (?lang=xx), never in a cookie or storage.
 * Arabic is written right to left: <html dir="rtl">, and the style sheet uses
 * logical properties (inline-start/end) so that the layout mirrors.
 */

export const LANGUAGES = ['fr', 'en', 'es', 'de', 'it', 'pt', 'ar'];
/** Each language named in itself, for the language menu. */
export const NATIVE_NAMES = {
  fr: 'Français',
  en: 'English',
  es: 'Español',
  de: 'Deutsch',
  it: 'Italiano',
  pt: 'Português',
  ar: 'العربية',
};
const RIGHT_TO_LEFT = new Set(['ar']);

let strings = {};
let current = 'fr';

/** The language to start with: ?lang= if valid, else the first of ours in the browser's list, else English. */
export function preferredLanguage(browserLanguages = navigator.languages || [navigator.language], search = location.search) {
  const asked = new URLSearchParams(search).get('lang');
  if (LANGUAGES.includes(asked)) return asked;
  for (const tag of browserLanguages) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return 'en';
}

export function currentLanguage() {
  return current;
}

/**
 * The string for `key`, with {name} placeholders filled from `values`.
 * A string that depends on a number is an object of plural forms
 * ({"one": ..., "other": ...}; Arabic has zero, one, two, few, many, other)
 * chosen by values.count with the language's rules.
 */
export function t(key, values = {}) {
  let text = strings[key];
  if (text === undefined) {
    console.warn('missing translation', current, key);
    return key;
  }
  if (text && typeof text === 'object' && !Array.isArray(text) && 'other' in text) {
    const form = new Intl.PluralRules(current).select(Number(values.count));
    text = text[form] ?? text.other;
  }
  if (typeof text !== 'string') return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** A text the helpline configured per language ({fr: ..., en: ...}): ours, else English, else French, else any. */
export function localText(texts) {
  if (!texts || typeof texts !== 'object') return '';
  return texts[current] ?? texts.en ?? texts.fr ?? Object.values(texts)[0] ?? '';
}

/** A UTC day ("2026-03-04") written the language's way. */
export function formatDay(day) {
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return String(day);
  return new Intl.DateTimeFormat(current, { dateStyle: 'long', timeZone: 'UTC' }).format(date);
}

/** A moment (a Date, or RFC 3339 text) written the language's way, in the device's time zone. */
export function formatDateTime(moment) {
  const date = moment instanceof Date ? moment : new Date(moment);
  if (Number.isNaN(date.getTime())) return String(moment);
  return new Intl.DateTimeFormat(current, { dateStyle: 'long', timeStyle: 'short' }).format(date);
}

/** A country's name in the current language ("BE" -> "Belgique", "Belgium", "بلجيكا"…). */
export function countryName(code) {
  try {
    return new Intl.DisplayNames([current], { type: 'region' }).of(code) || code;
  } catch {
    return code;
  }
}

/** Translate every marked element under `root`. */
export function applyTranslations(root = document) {
  for (const element of root.querySelectorAll('[data-i18n]')) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of element.dataset.i18nAttr.split(';')) {
      const [attribute, key] = pair.split(':');
      element.setAttribute(attribute.trim(), t(key.trim()));
    }
  }
}

/** Load a language's strings and apply them to the page. */
export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = 'en';
  const response = await fetch(new URL(`i18n/${lang}.json`, import.meta.url), { cache: 'no-cache' });
  strings = await response.json();
  current = lang;
  document.documentElement.lang = lang;
  document.documentElement.dir = RIGHT_TO_LEFT.has(lang) ? 'rtl' : 'ltr';
  applyTranslations(document);
  const url = new URL(location.href);
  url.searchParams.set('lang', lang);
  history.replaceState(null, '', url);
}
