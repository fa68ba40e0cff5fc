// The dashboard shell: the router, the language switch and the live poller.
import {get} from "./api.js";
import {clear} from "./dom.js";
import {chosenLanguage, currentLanguage, loadLanguage, t} from "./i18n.js";
import * as overview from "./pages/overview.js";
import * as chats from "./pages/chats.js";
import * as events from "./pages/events.js";
import * as media from "./pages/media.js";
import * as campaigns from "./pages/campaigns.js";
import * as qa from "./pages/qa.js";

const PAGES = {overview, chats, events, media, campaigns, qa};
// Polling, not Server-Sent Events: a stream would hold one of waitress's few threads per
// open tab, threads the webhooks need; one short request a second costs almost nothing.
const POLL_MS = 1000;
const HIDDEN_POLL_MS = 5000;

let page = null;
let cursor = "";

function route() {
  const parts = (location.hash || "#/overview").replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = PAGES[parts[0]] ? parts[0] : "overview";
  return {name, params: parts.slice(1).filter(Boolean)};
}

async function show() {
  const {name, params} = route();
  if (page && page.name === name && page.view.update) {
    page.params = params;
    await page.view.update(params);
    return;
  }
  if (page && page.view.unmount) page.view.unmount();
  const main = clear(document.getElementById("main"));
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${t(`nav.${name}`)} · zaphook`;
  page = {name, params, view: PAGES[name].mount(main, params)};
  if (page.view.ready) await page.view.ready;
}

function setLive(state) {
  const live = document.getElementById("live");
  if (live.dataset.state === state) return;
  live.dataset.state = state;
  live.dataset.i18n = `live.${state}`;
  live.textContent = t(`live.${state}`);
}

async function poll() {
  try {
    const answer = await get(`/api/changes${cursor ? `?since=${encodeURIComponent(cursor)}` : ""}`);
    const first = !cursor;
    cursor = answer.cursor;
    setLive("on");
    if (!first && answer.changed.length && page && page.view.refresh) await page.view.refresh(answer.changed);
  } catch (error) {
    console.warn("live update failed", error);
    setLive("off");
  }
  setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
}

async function start() {
  await loadLanguage(chosenLanguage());
  const select = document.getElementById("language");
  select.value = currentLanguage();
  select.addEventListener("change", async () => {
    await loadLanguage(select.value, true);
    if (page && page.view.unmount) page.view.unmount();
    page = null;
    await show();
  });
  window.addEventListener("hashchange", show);
  await show();
  poll();
}

start();
