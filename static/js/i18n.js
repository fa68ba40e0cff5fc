// The two catalogues (static/i18n/<language>.json) and the chosen language.
import {setLocale} from "./dom.js";

export const LANGUAGES = ["en", "pt-BR"];
const STORAGE_KEY = "zaphook.language";
let strings = {};
let current = "en";

export function chosenLanguage() {
  const stored = localStorage.getItem(STORAGE_KEY);
  if (LANGUAGES.includes(stored)) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("pt") ? "pt-BR" : "en";
}

export function currentLanguage() {
  return current;
}

export async function loadLanguage(language, remember = false) {
  const response = await fetch(`/static/i18n/${language}.json`, {credentials: "same-origin"});
  strings = await response.json();
  current = language;
  setLocale(language);
  document.documentElement.lang = language;
  if (remember) localStorage.setItem(STORAGE_KEY, language);
  translateStatic(document);
}

function has(key) {
  return Object.prototype.hasOwnProperty.call(strings, key);
}

/** A plural's key for ``count``: "qa.minutes" -> "qa.minutes.one" / ".other" (pt-BR may add ".many"). */
function pluralKey(key, count) {
  if (has(key) || typeof count !== "number") return key;
  const form = `${key}.${new Intl.PluralRules(current).select(count)}`;
  return has(form) ? form : `${key}.other`;
}

/**
 * t("chats.title"), or with values: t("campaigns.valid_count", {count: 3}).
 * A key the catalogue holds only as a plural (key.one, key.other) is chosen by {count}.
 */
export function t(key, params) {
  const chosen = pluralKey(key, params && params.count);
  let text = has(chosen) ? strings[chosen] : key;
  for (const [name, value] of Object.entries(params || {})) text = text.split(`{${name}}`).join(String(value));
  return text;
}

const AGO_UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600],
  ["minute", 60], ["second", 1]];

/** Seconds in the past, as people say it: "12 minutes ago", "há 3 dias" (Intl.RelativeTimeFormat). */
export function ago(seconds) {
  const value = Math.max(0, Math.round(Number(seconds) || 0));
  if (value < 10) return new Intl.RelativeTimeFormat(current, {numeric: "auto"}).format(0, "second");  // "now"
  const [unit, size] = AGO_UNITS.find(([, length]) => value >= length);
  // Always a number ("1 day ago", not "yesterday"): the count is what the server measured.
  return new Intl.RelativeTimeFormat(current, {numeric: "always"}).format(-Math.floor(value / size), unit);
}

function paramText(name, value) {
  if (Array.isArray(value)) return value.map((item) => paramText(name, item)).join("; ");
  if (value && typeof value === "object" && value.code) return tText(value);
  if (name.endsWith("_ago") && typeof value === "number") return ago(value);
  return value ?? "";
}

/**
 * A text the server sent as {code, params} (codes.py), in the page's language. A parameter that is
 * itself a text (or a list of them) is translated too; one named *_ago is seconds in the past.
 * When the catalogue has no entry for the code, ``english`` (the server's own sentence) is shown.
 */
export function tText(text, english) {
  if (!text || !text.code) return english || "";
  if (!has(text.code) && !has(`${text.code}.other`)) return english || text.code;
  const values = {};
  for (const [name, value] of Object.entries(text.params || {})) values[name] = paramText(name, value);
  return t(text.code, values);
}

/** A state or outcome name from the API, translated when the catalogue knows it. */
export function tState(value) {
  if (value === null || value === undefined) return "";
  const key = `state.${value}`;
  return Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : value;
}

/** Fill elements marked data-i18n (text), data-i18n-placeholder and data-i18n-label (aria-label). */
export function translateStatic(root) {
  for (const element of root.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute("placeholder", t(element.dataset.i18nPlaceholder));
  }
  for (const element of root.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
}

/** A message or media type from the API ("image", "sticker", ...), translated when known. */
export function tType(value) {
  if (!value) return "";
  const key = `type.${value}`;
  return Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : value;
}
