// Forwarding on the event page: what each destination made of one event (every attempt, its answer),
// sending it again, and the destinations themselves (add, switch off or on, remove).
// The events page calls renderForwarding(container, eventId) in its detail.
import {del, get, patch, post} from "./api.js";
import {formatDateTime, formatNumber, h, replaceChildren} from "./dom.js";
import {currentLanguage, t, tText} from "./i18n.js";

// Delivery states shown with the dashboard's existing badge colours.
const BADGES = {delivered: "state-done", failed: "state-failed", pending: "state-pending",
  delivering: "state-downloading", waiting: "state-pending"};
const OPEN = new Set(["waiting", "pending", "delivering"]);
const REFRESH_MS = 1500;

const STATES = {
  waiting: () => t("forward.state.waiting"),
  pending: () => t("forward.state.pending"),
  delivering: () => t("forward.state.delivering"),
  delivered: () => t("forward.state.delivered"),
  failed: () => t("forward.state.failed"),
};
const OUTCOMES = {
  delivered: () => t("forward.outcome.delivered"),
  retry: () => t("forward.outcome.retry"),
  failed: () => t("forward.outcome.failed"),
};
const FORMATS = {raw: () => t("forward.format.raw"), normalised: () => t("forward.format.normalised")};

/** A catalogue text chosen by Intl.PluralRules: key.one or key.other. */
function tn(key, count, params = {}) {
  const rule = new Intl.PluralRules(currentLanguage()).select(Number(count));
  return t(rule === "one" ? `${key}.one` : `${key}.other`, {...params, count: formatNumber(count)});
}

function text(table, value) {
  return table[value] ? table[value]() : value;
}

/** An API error in the page's language: its {code, params} (codes.py), else the server's English. */
function errorText(error) {
  return error.body && error.body.code ? tText(error.body, error.message) : error.message;
}

function attemptRows(attempts) {
  return attempts.map((attempt) => h("tr", {},
    h("td", {class: "num"}, String(attempt.number)),
    h("td", {}, formatDateTime(attempt.started_at)),
    h("td", {}, text(OUTCOMES, attempt.outcome)),
    h("td", {class: "num"}, attempt.http_status === null ? "—" : String(attempt.http_status)),
    h("td", {class: "num"}, String(attempt.duration_ms)),
    h("td", {class: "forward-answer"},
      [tText(attempt.error_text, attempt.error), attempt.response_excerpt].filter(Boolean).join(" · "))));
}

function deliveryBlock(delivery) {
  const facts = [];
  if (delivery.replay) facts.push(t("forward.replayed_delivery"));
  if (delivery.state === "pending" && delivery.next_attempt_at) {
    facts.push(t("forward.next_attempt", {time: formatDateTime(delivery.next_attempt_at)}));
  }
  if (delivery.last_error && delivery.state === "failed") facts.push(tText(delivery.last_error_text, delivery.last_error));
  return h("li", {class: "forward-delivery", dataset: {deliveryId: delivery.id, state: delivery.state}},
    h("span", {class: `badge ${BADGES[delivery.state] || ""}`}, text(STATES, delivery.state)), " ",
    h("code", {}, delivery.type), facts.length ? ` · ${facts.join(" · ")}` : null,
    delivery.attempt_log.length ? h("table", {class: "forward-attempts"},
      h("thead", {}, h("tr", {},
        h("th", {class: "num"}, "#"), h("th", {}, t("forward.time")), h("th", {}, t("forward.result")),
        h("th", {class: "num"}, "HTTP"), h("th", {class: "num"}, t("forward.duration")),
        h("th", {}, t("forward.answer")))),
      h("tbody", {}, attemptRows(delivery.attempt_log))) : null);
}

/** A button that runs ``action``, says how it went in ``result``, then redraws the panel (which keeps it). */
function actionButton(label, result, action, refresh, attrs = {}) {
  const button = h("button", {type: "button", ...attrs}, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    let changed = false;
    try {
      const message = await action(button);
      changed = message !== undefined;
      if (message) {
        result.className = "forward-result ok";
        result.textContent = message;
      }
    } catch (error) {
      result.className = "forward-result error";
      result.textContent = errorText(error);
    }
    button.disabled = false;
    if (changed) await refresh();
  });
  return button;
}

function destinationBlock(entry, eventId, refresh) {
  const {destination, deliveries} = entry;
  const result = h("p", {class: "forward-result", role: "status"});
  const replay = actionButton(t("forward.replay", {name: destination.name}), result, async () => {
    const answer = await post("/api/forward/replay", {destination: destination.id, event_id: eventId});
    return answer.queued ? tn("forward.queued", answer.queued) : t("forward.nothing_to_replay");
  }, refresh, {class: "forward-replay"});
  const path = `/api/forward/destinations/${destination.id}`;
  const toggle = actionButton(destination.enabled ? t("forward.switch_off") : t("forward.switch_on"), result,
    async () => {
      await patch(path, {enabled: !destination.enabled});
      return "";
    }, refresh);
  const remove = destination.origin === "env" ? null : actionButton(t("forward.remove"), result, async (button) => {
    if (!button.dataset.armed) {  // a second click confirms: no dialog to get in the way
      button.dataset.armed = "1";
      button.textContent = t("forward.remove_confirm");
      return undefined;
    }
    await del(path);
    return "";
  }, refresh);
  return h("section", {class: "forward-destination", dataset: {destinationId: destination.id}},
    h("h4", {}, destination.name, " ", h("span", {class: "badge"}, text(FORMATS, destination.format)),
      destination.enabled ? null : [" ", h("span", {class: "badge state-failed"}, t("forward.disabled"))]),
    h("p", {class: "muted"}, h("code", {}, destination.url),
      destination.origin === "env" ? ` · ${t("forward.from_env")}` : null),
    deliveries.length ? h("ul", {class: "forward-deliveries"}, deliveries.map(deliveryBlock))
      : h("p", {class: "muted"}, t("forward.not_sent")),
    h("div", {class: "row"}, replay, toggle, remove), result);
}

function addForm(refresh) {
  const url = h("input", {id: "forward-url", type: "url", required: true, placeholder: t("forward.url_placeholder")});
  const name = h("input", {id: "forward-name", type: "text", maxlength: 100});
  const format = h("select", {id: "forward-format"},
    h("option", {value: "raw"}, t("forward.format.raw")), h("option", {value: "normalised"}, t("forward.format.normalised")));
  const result = h("p", {class: "forward-result", role: "status"});
  const form = h("form", {class: "forward-add"},
    h("label", {for: "forward-url"}, t("forward.url")), url,
    h("label", {for: "forward-name"}, t("forward.name")), name,
    h("label", {for: "forward-format"}, t("forward.format")), format,
    h("div", {class: "row"}, h("button", {type: "submit"}, t("forward.add"))), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const made = await post("/api/forward/destinations",
        {url: url.value.trim(), name: name.value.trim() || undefined, format: format.value});
      await refresh();
      result.className = "forward-result ok";
      result.textContent = t("forward.added", {name: made.name, secret: made.secret});
    } catch (error) {
      result.className = "forward-result error";
      result.textContent = errorText(error);
    }
  });
  return h("details", {class: "forward-add-details"}, h("summary", {}, t("forward.add_title")), form);
}

/**
 * Render into ``container`` what became of event ``eventId`` at every destination, and keep it
 * current while a delivery is still open (and the container is on the page).
 */
export async function renderForwarding(container, eventId) {
  container.classList.add("forward-panel");
  const list = h("div", {class: "forward-destinations"});
  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    let data;
    try {
      data = await get(`/api/forward/events/${encodeURIComponent(eventId)}`);
    } catch (error) {
      replaceChildren(list, h("p", {class: "error"}, errorText(error)));
      return;
    }
    const results = new Map([...list.querySelectorAll(".forward-destination")].map((section) =>
      [section.dataset.destinationId, section.querySelector(".forward-result")]));
    replaceChildren(list, data.destinations.length
      ? data.destinations.map((entry) => destinationBlock(entry, eventId, refresh))
      : h("p", {class: "muted"}, t("forward.none")));
    for (const section of list.querySelectorAll(".forward-destination")) {
      const kept = results.get(section.dataset.destinationId);
      if (kept && kept.textContent) section.querySelector(".forward-result").replaceWith(kept);
    }
    const open = data.destinations.some((entry) => entry.deliveries.some((d) => OPEN.has(d.state)));
    if (open) timer = setTimeout(() => { if (container.isConnected) refresh(); }, REFRESH_MS);
  }
  replaceChildren(container, h("h3", {}, t("forward.title")), list, addForm(refresh));
  await refresh();
}
