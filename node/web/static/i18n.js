/**
 * Translations. Every string a person sees lives in i18n/<lang>.json; the HTML
 * only names keys: data-i18n="key" sets an element's text and
 * data-i18n-attr="attribute:key;attribute:key" sets attributes.
 * French is first-class: it is chosen whenever the browser prefers French
 * to English. The choice is kept in the address (?lang=xx), never in a cookie or storage.
 */

export const LANGUAGES = ['fr', 'en'];
let strings = {};
let current = 'fr';

/** The language to start with: ?lang= if valid, else the first of fr/en in the browser's list, else English. */
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
 * ({"one": ..., "other": ...}) chosen by values.count with the language's rules
 * (French says "0 empreinte", English "0 fingerprints").
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
  applyTranslations(document);
  document.title = t('app.title');
  const url = new URL(location.href);
  url.searchParams.set('lang', lang);
  history.replaceState(history.state, '', url);
}
