// Overview: instances with their numbers today, the tunnel and webhook URLs, the last events.
import {del, get, query} from "../api.js";
import {formatDateTime, formatNumber, formatTime, h, replaceChildren} from "../dom.js";
import {t, tState, tText} from "../i18n.js";
import {overviewGuide} from "../guide.js";

const LAST_EVENTS = 10;
const STATUS_EVERY_MS = 10000;

function localMidnight() {
  const now = new Date();
  return new Date(now.getFullYear(), now.getMonth(), now.getDate()).toISOString();
}

function instanceRow(instance) {
  const since = instance.state_changed_at
    ? t("overview.since", {time: formatDateTime(instance.state_changed_at)}) : "";
  return h("tr", {dataset: {instance: instance.id}},
    h("td", {}, h("strong", {}, instance.name || instance.instance_id),
      instance.demo ? h("span", {class: "badge demo-badge"}, t("demo.badge")) : null,
      instance.name ? h("div", {class: "muted"}, instance.instance_id) : null),
    h("td", {}, instance.provider),
    h("td", {}, h("span", {class: `badge state-${instance.connection_state}`}, tState(instance.connection_state)),
      h("div", {class: "muted", title: instance.state_reason || null}, since)),
    h("td", {class: "num"}, formatNumber(instance.health_score)),
    h("td", {class: "num"}, `${formatNumber(instance.messages_today.in)} / ${formatNumber(instance.messages_today.out)}`),
    h("td", {class: "num"}, `${formatNumber(instance.media_today.done)} / ${formatNumber(instance.media_today.failed)}`));
}

// The demo's instances (server.py demo) and one button that removes them all, once confirmed in the page.
function demoControls(reload) {
  const notice = h("div", {class: "demo-notice", role: "region", "aria-label": t("demo.region"), hidden: true});
  const result = h("p", {class: "demo-result", role: "status"});

  function offer() {
    replaceChildren(notice, h("p", {}, t("demo.notice")),
      h("button", {type: "button", class: "small", id: "demo-clear", onclick: ask}, t("demo.clear")));
  }

  function ask() {
    const yes = h("button", {type: "button", class: "small danger", id: "demo-clear-yes", onclick: () => remove(yes)},
      t("demo.confirm_yes"));
    replaceChildren(notice, h("p", {}, t("demo.confirm")),
      h("div", {class: "row"}, yes, h("button", {type: "button", class: "small", id: "demo-clear-keep", onclick: offer},
        t("demo.keep"))));
    yes.focus();
  }

  async function remove(button) {
    button.disabled = true;
    try {
      await del("/api/demo");
      result.textContent = t("demo.removed");
      result.className = "demo-result ok";
    } catch (error) {
      result.textContent = t("demo.failed", {error: error.message});
      result.className = "demo-result error";
    }
    offer();
    await reload();
  }

  offer();
  return {
    elements: [notice, result],
    show(hasDemo) { notice.hidden = !hasDemo; },
  };
}

function copyButton(text) {
  const button = h("button", {type: "button", class: "small"}, t("overview.copy"));
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = t("overview.copied");
    } catch {
      button.textContent = t("overview.copy_failed");
    }
    setTimeout(() => { button.textContent = t("overview.copy"); }, 1500);
  });
  return button;
}

/** /status's URL rows: the provider and what the URL is for, in the page's language, and the URL to copy. */
function urlRows(rows) {
  return rows.map((row) => {
    const label = [row.provider_label, tText({code: row.label_code, params: {}}, row.label)].filter(Boolean).join(" · ");
    return h("li", {class: "url-row"}, h("span", {class: "url-label"}, label), h("code", {}, row.url), copyButton(row.url));
  });
}

export function eventLine(event) {
  return h("li", {class: "event-line", dataset: {eventId: event.id}},
    h("a", {href: `#/events/${event.id}`},
      h("span", {class: "muted"}, formatTime(event.received_at)), " ",
      h("span", {}, `${event.provider || "—"} · ${event.kind || "—"}`), " ",
      h("span", {class: `badge outcome-${event.outcome}`}, tState(event.outcome))));
}

export function mount(container) {
  const instancesBody = h("tbody");
  const tunnel = h("div", {class: "tunnel"});
  const urls = h("ul", {class: "urls"});
  const lastEvents = h("ol", {class: "last-events", "aria-live": "polite"});
  const demo = demoControls(() => load());
  container.append(
    h("h1", {}, t("overview.title")),
    h("section", {class: "card"},
      h("h2", {}, t("overview.instances")), demo.elements,
      h("div", {class: "table-wrap"},
        h("table", {},
          h("thead", {}, h("tr", {},
            h("th", {}, t("overview.instance")), h("th", {}, t("overview.provider")),
            h("th", {}, t("overview.connection")), h("th", {class: "num"}, t("overview.health")),
            h("th", {class: "num"}, t("overview.messages_today")), h("th", {class: "num"}, t("overview.media_today")))),
          instancesBody))),
    h("div", {class: "columns"},
      h("section", {class: "card"}, h("h2", {}, t("overview.tunnel")), tunnel,
        h("h3", {}, t("overview.webhook_urls")), urls),
      h("section", {class: "card"}, h("h2", {}, t("overview.last_events")), lastEvents)));

  let statusFetchedAt = 0;
  let publicUrl = null;

  async function loadStatus() {
    const status = await get("/status");
    statusFetchedAt = Date.now();
    const info = status.tunnel || {};
    publicUrl = status.public_url || null;
    replaceChildren(tunnel,
      h("p", {}, h("span", {class: `badge tunnel-${info.state}`}, tState(info.state)), " ",
        info.public_url ? h("code", {}, info.public_url) : h("span", {class: "muted"}, t("overview.no_tunnel"))),
      info.reason ? h("p", {class: info.state === "failed" ? "error" : "muted"}, tText(info.message, info.reason)) : null);
    replaceChildren(urls, urlRows(status.webhook_url_rows));
  }

  async function load() {
    const [data, events] = await Promise.all([
      get(`/api/overview${query({since: localMidnight()})}`),
      get(`/api/events?limit=${LAST_EVENTS}`),
    ]);
    if (Date.now() - statusFetchedAt > STATUS_EVERY_MS) await loadStatus();
    replaceChildren(instancesBody, data.instances.length ? data.instances.map(instanceRow)
      : h("tr", {class: "empty"}, h("td", {colspan: 6}, overviewGuide(publicUrl))));
    replaceChildren(lastEvents, events.items.map(eventLine));
    demo.show(data.instances.some((instance) => instance.demo));
  }

  return {ready: load(), refresh: load};
}
