// Forwarding on the event page: each destination's deliveries of one event, every attempt, and a replay
// button per destination. The events page calls renderForwarding(container, eventId) in its detail.
import {get, post} from "./api.js";
import {formatDateTime, h, replaceChildren} from "./dom.js";
import {t} from "./i18n.js";

// Delivery states shown with the dashboard's existing badge colours.
const BADGES = {delivered: "state-done", failed: "state-failed", pending: "state-pending",
  delivering: "state-downloading", waiting: "state-pending"};
const OPEN = new Set(["waiting", "pending", "delivering"]);
const REFRESH_MS = 1500;

/** A server error's text: its code translated with its parameters when the catalogue knows it. */
function errorText(error) {
  const code = error.body && error.body.code;
  if (code) {
    const text = t(code, error.body.detail || {});
    if (text !== code) return text;
  }
  return error.message;
}

function attemptRows(attempts) {
  return attempts.map((attempt) => h("tr", {},
    h("td", {class: "num"}, String(attempt.number)),
    h("td", {}, formatDateTime(attempt.started_at)),
    h("td", {}, t(`forward.outcome.${attempt.outcome}`)),
    h("td", {class: "num"}, attempt.http_status === null ? "—" : String(attempt.http_status)),
    h("td", {class: "num"}, String(attempt.duration_ms)),
    h("td", {class: "forward-answer"}, [attempt.error, attempt.response_excerpt].filter(Boolean).join(" · "))));
}

function deliveryBlock(delivery) {
  const facts = [];
  if (delivery.replay) facts.push(t("forward.replayed_delivery"));
  if (delivery.state === "pending" && delivery.next_attempt_at) {
    facts.push(t("forward.next_attempt", {time: formatDateTime(delivery.next_attempt_at)}));
  }
  if (delivery.last_error && delivery.state === "failed") facts.push(delivery.last_error);
  return h("li", {class: "forward-delivery", dataset: {deliveryId: delivery.id, state: delivery.state}},
    h("span", {class: `badge ${BADGES[delivery.state] || ""}`}, t(`forward.state.${delivery.state}`)), " ",
    h("code", {}, delivery.type), facts.length ? ` · ${facts.join(" · ")}` : null,
    delivery.attempt_log.length ? h("table", {class: "forward-attempts"},
      h("thead", {}, h("tr", {},
        h("th", {class: "num"}, "#"), h("th", {}, t("forward.time")), h("th", {}, t("forward.result")),
        h("th", {class: "num"}, "HTTP"), h("th", {class: "num"}, t("forward.duration")),
        h("th", {}, t("forward.answer")))),
      h("tbody", {}, attemptRows(delivery.attempt_log))) : null);
}

function destinationBlock(entry, eventId, refresh) {
  const {destination, deliveries} = entry;
  const result = h("p", {class: "replay-result forward-replay-result", role: "status"});
  const button = h("button", {type: "button", class: "forward-replay", dataset: {destinationId: destination.id}},
    t("forward.replay", {name: destination.name}));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const answer = await post("/api/forward/replay", {destination: destination.id, event_id: eventId});
      result.className = "replay-result forward-replay-result ok";
      result.textContent = answer.queued ? t("forward.queued", {count: answer.queued}) : t("forward.nothing_to_replay");
      await refresh();
    } catch (error) {
      result.className = "replay-result forward-replay-result error";
      result.textContent = errorText(error);
    }
    button.disabled = false;
  });
  return h("section", {class: "forward-destination", dataset: {destinationId: destination.id}},
    h("h4", {}, destination.name, " ",
      h("span", {class: "badge"}, t(`forward.format.${destination.format}`)),
      destination.enabled ? null : [" ", h("span", {class: "badge state-failed"}, t("forward.disabled"))]),
    h("p", {class: "muted"}, h("code", {}, destination.url)),
    deliveries.length ? h("ul", {class: "forward-deliveries"}, deliveries.map(deliveryBlock))
      : h("p", {class: "muted"}, t("forward.not_sent")),
    h("div", {class: "row"}, button), result);
}

/**
 * Render into ``container`` what became of event ``eventId`` at every destination, and keep it
 * current while a delivery is still open (and the container is on the page).
 */
export async function renderForwarding(container, eventId) {
  container.classList.add("forward-panel");
  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    let data;
    try {
      data = await get(`/api/forward/events/${encodeURIComponent(eventId)}`);
    } catch (error) {
      replaceChildren(container, h("h3", {}, t("forward.title")), h("p", {class: "error"}, errorText(error)));
      return;
    }
    const results = new Map([...container.querySelectorAll(".forward-destination")].map((section) =>
      [section.dataset.destinationId, section.querySelector(".forward-replay-result")]));
    replaceChildren(container, h("h3", {}, t("forward.title")),
      data.destinations.length ? data.destinations.map((entry) => destinationBlock(entry, eventId, refresh))
        : h("p", {class: "muted"}, t("forward.none")));
    for (const section of container.querySelectorAll(".forward-destination")) {
      const kept = results.get(section.dataset.destinationId);
      if (kept && kept.textContent) section.querySelector(".forward-replay-result").replaceWith(kept);
    }
    const open = data.destinations.some((entry) => entry.deliveries.some((d) => OPEN.has(d.state)));
    if (open) timer = setTimeout(() => { if (container.isConnected) refresh(); }, REFRESH_MS);
  }
  await refresh();
}
