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

/** t("chats.title"), or with values: t("campaigns.row", {row: 3}). */
export function t(key, params) {
  let text = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
  for (const [name, value] of Object.entries(params || {})) text = text.split(`{${name}}`).join(String(value));
  return text;
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
