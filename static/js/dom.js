// Building DOM safely: every piece of data goes in as textContent, never as HTML.

const SAFE_URL = /^(\/|#|https:\/\/www\.openstreetmap\.org\/)/;

/**
 * h("a", {href: "#/chats", class: "item", onclick: fn}, "text", child, ...)
 * Strings become text nodes; null, undefined and false are skipped; arrays are flattened.
 */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if ((name === "href" || name === "src") && !SAFE_URL.test(String(value))) {
      throw new Error(`refusing unexpected URL ${value}`);
    } else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.appendChild(child);
    else element.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(element) {
  while (element.firstChild) element.removeChild(element.firstChild);
  return element;
}

export function replaceChildren(element, ...children) {
  clear(element);
  append(element, children);
  return element;
}

let locale = "en";

export function setLocale(value) {
  locale = value;
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString(locale, {hour: "2-digit", minute: "2-digit"})
    : date.toLocaleString(locale, {day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit"});
}

export function formatDateTime(iso) {
  return iso ? new Date(iso).toLocaleString(locale) : "";
}

export function formatNumber(value) {
  return new Intl.NumberFormat(locale).format(value ?? 0);
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${new Intl.NumberFormat(locale, {maximumFractionDigits: 1}).format(value)} ${units[unit]}`;
}

/** The phone part of a WhatsApp id ("5511...@s.whatsapp.net" -> "+5511..."). */
export function phoneOf(jid) {
  if (!jid) return "";
  const user = jid.split("@")[0].split(":")[0];
  return /^\d+$/.test(user) && !jid.endsWith("@g.us") ? `+${user}` : user;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/**
 * Make ``parent`` show ``items`` in order, keyed by item.id: unchanged items keep their
 * element (no reflow, no lost focus), changed ones are rebuilt in place, new ones inserted.
 * ``rendered`` is the Map the caller keeps between calls.
 */
export function syncKeyed(parent, items, rendered, render) {
  const keep = new Set();
  let previous = null;
  for (const item of items) {
    const signature = JSON.stringify(item);
    let entry = rendered.get(item.id);
    if (!entry || entry.signature !== signature) {
      const element = render(item);
      if (entry) entry.element.replaceWith(element);
      entry = {element, signature};
      rendered.set(item.id, entry);
    }
    const expected = previous ? previous.nextSibling : parent.firstChild;
    if (entry.element !== expected) parent.insertBefore(entry.element, expected);
    previous = entry.element;
    keep.add(item.id);
  }
  for (const [id, entry] of rendered) {
    if (!keep.has(id)) {
      entry.element.remove();
      rendered.delete(id);
    }
  }
}
