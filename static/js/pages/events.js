// Events: the stored requests with filters, one event's redacted JSON, replay, and the dry run.
import {get, post, query} from "../api.js";
import {debounce, formatDateTime, formatTime, h, replaceChildren, syncKeyed} from "../dom.js";
import {t, tState} from "../i18n.js";
import {providers} from "../providers.js";
import {renderForwarding} from "../forwarding.js";

// Stored on events no provider recognised.
const UNKNOWN_PROVIDER = "unknown";
const CATCH_ALL_ROUTE = "/webhook/";

const KINDS = ["message", "status", "connection", "presence", "contact", "qrcode", "message_edit",
  "message_delete", "mixed", "unknown"];
const OUTCOMES = ["processed", "duplicate", "ignored", "failed", "rejected"];
const LIMIT = 100;

function select(id, label, values, format) {
  const element = h("select", {id, name: id},
    h("option", {value: ""}, t("events.any")), values.map((value) => h("option", {value}, format(value))));
  return [h("label", {for: id}, label), element];
}

function eventRow(event) {
  return h("tr", {dataset: {eventId: event.id}},
    h("td", {class: "num"}, h("a", {href: `#/events/${event.id}`}, String(event.id))),
    h("td", {}, formatTime(event.received_at)),
    h("td", {}, event.provider || "—"),
    h("td", {}, event.kind || "—"),
    h("td", {class: "hide-narrow"}, event.event_name || ""),
    h("td", {}, h("span", {class: `badge outcome-${event.outcome}`}, tState(event.outcome))),
    h("td", {class: "hide-narrow"}, event.instance_id || ""),
    h("td", {class: "hide-narrow"}, event.replay_count ? String(event.replay_count) : ""));
}

function jsonBlock(value) {
  return h("pre", {class: "json"}, JSON.stringify(value, null, 2));
}

export function mount(container, params) {
  const [providerLabel, provider] = select("filter-provider", t("events.provider"), [], (v) => v);
  const [kindLabel, kind] = select("filter-kind", t("events.kind"), KINDS, (v) => v);
  const [outcomeLabel, outcome] = select("filter-outcome", t("events.outcome"), OUTCOMES, tState);
  const [instanceLabel, instance] = select("filter-instance", t("events.instance"), [], (v) => v);
  const text = h("input", {id: "filter-text", type: "search", placeholder: t("events.text_placeholder")});
  const rows = h("tbody");
  const detail = h("section", {class: "card event-detail", "aria-live": "polite"});
  const payload = h("textarea", {id: "dry-run-payload", rows: 8, spellcheck: "false",
    placeholder: t("events.dry_run_placeholder")});
  const [routeLabel, route] = select("dry-run-route", t("events.route"), [], (v) => v);
  route.firstChild.textContent = CATCH_ALL_ROUTE;
  route.firstChild.value = CATCH_ALL_ROUTE;
  const dryRunResult = h("div", {class: "dry-run-result", "aria-live": "polite"});
  const dryRunButton = h("button", {type: "submit"}, t("events.dry_run_button"));

  container.append(
    h("h1", {}, t("events.title")),
    h("form", {class: "filters", role: "search", onsubmit: (e) => e.preventDefault()},
      h("div", {}, providerLabel, provider), h("div", {}, kindLabel, kind), h("div", {}, outcomeLabel, outcome),
      h("div", {}, instanceLabel, instance),
      h("div", {class: "grow"}, h("label", {for: "filter-text"}, t("events.text")), text)),
    h("div", {class: "columns events-columns"},
      h("div", {class: "card table-wrap"},
        h("table", {class: "events-table"},
          h("thead", {}, h("tr", {},
            h("th", {class: "num"}, "#"), h("th", {}, t("events.time")), h("th", {}, t("events.provider")),
            h("th", {}, t("events.kind")), h("th", {class: "hide-narrow"}, t("events.name")),
            h("th", {}, t("events.outcome")), h("th", {class: "hide-narrow"}, t("events.instance")),
            h("th", {class: "hide-narrow"}, t("events.replays")))),
          rows)),
      detail),
    h("section", {class: "card"},
      h("h2", {}, t("events.dry_run_title")), h("p", {class: "muted"}, t("events.dry_run_intro")),
      h("form", {class: "dry-run", onsubmit: (e) => { e.preventDefault(); dryRun(); }},
        h("label", {for: "dry-run-payload"}, t("events.payload")), payload,
        h("div", {class: "row"}, routeLabel, route, dryRunButton)),
      dryRunResult));

  let selected = params[0] || null;
  const rendered = new Map();  // event id -> {element, signature}

  function filters() {
    return {provider: provider.value, kind: kind.value, outcome: outcome.value, instance: instance.value,
      q: text.value.trim(), limit: LIMIT};
  }

  async function loadList() {
    const data = await get(`/api/events${query(filters())}`);
    syncKeyed(rows, data.items, rendered, eventRow);
    for (const [id, entry] of rendered) entry.element.classList.toggle("selected", String(id) === selected);
    if (!data.items.length && !rows.querySelector(".empty")) rows.append(h("tr", {class: "empty"},
      h("td", {colspan: 8, class: "muted"}, t("events.none"))));
    if (data.items.length) rows.querySelector(".empty")?.remove();
  }

  async function loadDetail() {
    if (!selected) {
      replaceChildren(detail, h("p", {class: "muted"}, t("events.pick")));
      return;
    }
    let event;
    try {
      event = await get(`/api/events/${encodeURIComponent(selected)}`);
    } catch (error) {
      replaceChildren(detail, h("p", {class: "error"}, error.message));
      return;
    }
    const result = h("div", {class: "replay-result", role: "status"});
    const replay = h("button", {type: "button", id: "replay"}, t("events.replay"));
    replay.addEventListener("click", async () => {
      replay.disabled = true;
      try {
        const answer = await post(`/api/events/${event.id}/replay`);
        result.className = "replay-result ok";
        result.textContent = t("events.replayed", {outcome: tState(answer.outcome)});
      } catch (error) {
        result.className = "replay-result error";
        result.textContent = error.message;
      }
      replay.disabled = false;
      await Promise.all([loadList(), loadMeta(event.id)]);
    });
    const meta = h("dl", {class: "event-meta"});
    async function loadMeta(id) {
      const current = id === event.id ? await get(`/api/events/${id}`) : event;
      replaceChildren(meta,
        h("dt", {}, t("events.time")), h("dd", {}, formatDateTime(current.received_at)),
        h("dt", {}, t("events.route")), h("dd", {}, h("code", {}, current.route)),
        h("dt", {}, t("events.outcome")), h("dd", {}, h("span", {class: `badge outcome-${current.outcome}`},
          tState(current.outcome)), ` HTTP ${current.http_status}`),
        h("dt", {}, t("events.replays")), h("dd", {class: "replay-count"}, String(current.replay_count)),
        current.error ? [h("dt", {}, t("events.error")), h("dd", {class: "error"}, current.error)] : null);
    }
    await loadMeta(null);
    const body = event.body_hidden ? t("events.body_hidden") : event.payload ?? event.body ?? event.body_base64 ?? null;
    const forwarded = h("section", {class: "event-forwarding"});
    replaceChildren(detail,
      h("h2", {}, t("events.event", {id: event.id})), meta,
      h("div", {class: "row"}, replay), result,
      h("h3", {}, t("events.payload")), typeof body === "string" ? h("pre", {class: "json"}, body) : jsonBlock(body),
      h("details", {}, h("summary", {}, t("events.headers")), jsonBlock(event.headers)), forwarded);
    renderForwarding(forwarded, event.id);  // forwarding.js: each destination's attempts, and replay
  }

  async function dryRun() {
    dryRunButton.disabled = true;
    try {
      const answer = await post(`/test${query({route: route.value})}`, payload.value);
      replaceChildren(dryRunResult, answer ? jsonBlock(answer) : h("p", {class: "error"}, t("events.dry_run_bad")));
    } catch (error) {
      replaceChildren(dryRunResult, h("p", {class: "error"}, error.message));
    }
    dryRunButton.disabled = false;
  }

  async function loadInstances() {
    const data = await get("/api/instances");
    for (const item of data.items) {
      instance.append(h("option", {value: item.instance_id}, `${item.provider} · ${item.name || item.instance_id}`));
    }
  }

  async function loadProviders() {
    const known = await providers();
    for (const item of known.items) provider.append(h("option", {value: item.name}, item.label));
    provider.append(h("option", {value: UNKNOWN_PROVIDER}, UNKNOWN_PROVIDER));
    for (const path of known.routes) if (path !== CATCH_ALL_ROUTE) route.append(h("option", {value: path}, path));
  }

  const reload = debounce(() => loadList(), 250);
  for (const control of [provider, kind, outcome, instance]) control.addEventListener("change", () => loadList());
  text.addEventListener("input", reload);

  return {
    ready: Promise.all([loadProviders(), loadInstances(), loadList(), loadDetail()]),
    async refresh(changed) {
      if (changed.includes("events")) await loadList();
    },
    async update(newParams) {
      selected = newParams[0] || null;
      for (const [id, entry] of rendered) entry.element.classList.toggle("selected", String(id) === selected);
      await loadDetail();
    },
  };
}
