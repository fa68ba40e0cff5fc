// Events: the stored requests, one beside its detail (request, the answer zaphook gave, replays), and the dry run.
//
// The list pages by id (older/newer cursors from the API) and follows new events on its newest page.
// The detail sticks beside the list on wide screens; on a phone the list and the detail take turns.
// Every piece of a payload goes into the page as text (jsonTree builds nodes, never HTML).
import {get, post, query} from "../api.js";
import {debounce, formatBytes, formatDateTime, formatTime, h, replaceChildren, syncKeyed} from "../dom.js";
import {currentLanguage, t, tState, tType} from "../i18n.js";
import {providers} from "../providers.js";
import {renderForwarding} from "../forwarding.js";
import {formatPhone} from "../phone.js";

// Stored on events no provider recognised.
const UNKNOWN_PROVIDER = "unknown";
const CATCH_ALL_ROUTE = "/webhook/";

// Request kinds (WebhookEvent.kind), for the filter; the rows show the finer kind of their summary.
const KINDS = ["message", "status", "connection", "presence", "contact", "qrcode", "message_edit",
  "message_delete", "mixed", "unknown"];
const OUTCOMES = ["stored", "processed", "duplicate", "ignored", "failed", "rejected"];
const LIMIT = 100;
const NARROW = "(max-width: 720px)";
const OPEN_DEPTH = 3;  // JSON deeper than this starts folded
const NEXT_KEYS = ["ArrowDown", "j"];
const PREVIOUS_KEYS = ["ArrowUp", "k"];

// Headers a copied command leaves out: the transport's own (host, content-length, connection,
// transfer-encoding, accept-encoding, expect), content-encoding (the stored body is already decoded),
// what proxies and the tunnel add (x-forwarded-*, x-real-ip, forwarded, via, ngrok-*), cookies, and every
// header the API shows as [redacted]: a secret (a token, a signature) is never revealed to make cURL work,
// so a command whose original needed one fails authentication, as it should.
const TRANSPORT_HEADERS = new Set(["host", "content-length", "connection", "transfer-encoding", "accept-encoding",
  "content-encoding", "expect", "keep-alive", "te", "upgrade", "forwarded", "via", "x-real-ip", "cookie",
  "x-request-id"]);
const REDACTED = "[redacted]";

/** The text for ``count`` in the page's language: ``one`` where its plural rules say so, else ``other``. */
function plural(count, one, other) {
  return new Intl.PluralRules(currentLanguage()).select(count) === "one" ? one : other;
}

/** A chat as people know it: its name, a formatted number (as the chats page writes it), or what kind of id it is. */
function chatLabel(summary) {
  if (!summary || !summary.chat) return "";
  if (summary.chat_name) return summary.chat_name;
  if (summary.chat.endsWith("@g.us")) return t("events.group");
  return formatPhone(summary.chat) || summary.chat;
}

function kindOf(event) {
  return (event.summary && event.summary.kind) || event.kind || "unknown";
}

function tKind(code) {
  const text = t(`event_kind.${code}`);
  return text.startsWith("event_kind.") ? code : text;
}

/** The few words that say what the request carried: a text, a status, a state. */
function whatText(summary) {
  if (!summary) return "";
  if (summary.text) return summary.text;
  if (summary.kind === "presence") return t(`events.presence.${summary.state}`);
  if (summary.state) return tState(summary.state);
  if (summary.type && summary.type !== "text") return `[${tType(summary.type)}]`;
  return "";
}

function providerLabel(labels, name) {
  if (!name) return "—";
  if (name === UNKNOWN_PROVIDER) return t("events.provider_unknown");
  return labels.get(name) || name;
}

function eventRow(event, labels) {
  const summary = event.summary;
  const code = kindOf(event);
  const extra = summary && summary.items > 1 ? summary.items - 1 : 0;
  const more = extra ? plural(extra, t("events.more_items_one", {count: extra}), t("events.more_items_other", {count: extra}))
    : null;
  const text = whatText(summary) || event.event_name || event.route;
  const sub = [providerLabel(labels, event.provider), chatLabel(summary), event.instance_id,
    event.replay_of ? t("events.replay_of_short", {id: event.replay_of}) : null].filter(Boolean).join(" · ");
  return h("tr", {dataset: {eventId: event.id, kind: code}, tabindex: "-1"},
    h("td", {class: "num"}, h("a", {href: `#/events/${event.id}`, tabindex: "-1"}, String(event.id))),
    h("td", {class: "event-time"}, formatTime(event.received_at)),
    h("td", {class: "event-what"},
      h("div", {class: "what-line"}, h("span", {class: "kind", dataset: {kind: code}}, tKind(code)),
        h("span", {class: "what-text"}, text), more ? h("span", {class: "muted"}, ` ${more}`) : null),
      h("div", {class: "what-sub"}, sub)),
    h("td", {class: "event-outcome"}, h("span", {class: `badge outcome-${event.outcome}`}, tState(event.outcome)),
      event.http_status !== 200 ? h("span", {class: "muted http-status"}, ` ${event.http_status}`) : null));
}

// --- JSON, folded and coloured -------------------------------------------------------------------

function jsonLeaf(value) {
  if (value === null) return h("span", {class: "j-null"}, "null");
  if (typeof value === "string") return h("span", {class: "j-str"}, JSON.stringify(value));
  if (typeof value === "number") return h("span", {class: "j-num"}, String(value));
  return h("span", {class: "j-bool"}, String(value));
}

function jsonNode(value, depth) {
  if (value === null || typeof value !== "object") return jsonLeaf(value);
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((item, index) => [index, item]) : Object.entries(value);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  if (!entries.length) return h("span", {class: "j-punct"}, open + close);
  const size = entries.length;
  const count = isArray
    ? plural(size, t("events.json_items_one", {count: size}), t("events.json_items_other", {count: size}))
    : plural(size, t("events.json_keys_one", {count: size}), t("events.json_keys_other", {count: size}));
  const toggle = h("button", {type: "button", class: "j-toggle", "aria-expanded": "false", "aria-label": count});
  const children = h("div", {class: "j-children", hidden: true});
  const node = h("span", {class: "j-node"}, toggle, h("span", {class: "j-punct"}, open),
    h("span", {class: "j-count"}, ` ${count} `), children, h("span", {class: "j-punct"}, close));
  let filled = false;
  function show(expanded) {
    // Folded children are built when first opened: a large payload costs nothing until it is looked at.
    if (expanded && !filled) {
      filled = true;
      entries.forEach(([key, item], index) => {
        children.append(h("div", {class: "j-entry"},
          isArray ? null : [h("span", {class: "j-key"}, JSON.stringify(key)), h("span", {class: "j-punct"}, ": ")],
          jsonNode(item, depth + 1), index < entries.length - 1 ? h("span", {class: "j-punct"}, ",") : null));
      });
    }
    children.hidden = !expanded;
    toggle.setAttribute("aria-expanded", String(expanded));
    node.classList.toggle("folded", !expanded);
  }
  toggle.addEventListener("click", () => show(children.hidden));
  show(depth < OPEN_DEPTH);
  return node;
}

function jsonTree(value, label) {
  return h("div", {class: "json-tree", role: "group", "aria-label": label}, jsonNode(value, 0));
}

// --- the request as a command ------------------------------------------------------------------------

function copiedHeaders(headers) {
  const kept = [];
  const left = [];
  for (const [name, value] of Object.entries(headers || {})) {
    const lower = name.toLowerCase();
    if (value === REDACTED) left.push(`${lower} (${t("events.curl_secret")})`);
    else if (TRANSPORT_HEADERS.has(lower) || lower.startsWith("x-forwarded-") || lower.startsWith("ngrok-")) {
      left.push(lower);
    } else kept.push([lower, String(value)]);
  }
  return {kept, left};
}

function bodyText(event) {
  if (event.payload !== null && event.payload !== undefined) return JSON.stringify(event.payload);
  return typeof event.body === "string" ? event.body : null;
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function powershellQuote(text) {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The request as a curl command for bash/zsh: the body through a here-document, byte for byte as shown. */
export function curlCommand(event, origin) {
  const {kept, left} = copiedHeaders(event.headers);
  const lines = [`# ${t("events.curl_comment", {id: event.id})}`];
  if (left.length) lines.push(`# ${t("events.curl_left_out", {names: left.join(", ")})}`);
  const parts = [`curl -X ${event.method || "POST"} ${shellQuote(origin + event.route)}`,
    ...kept.map(([name, value]) => `  -H ${shellQuote(`${name}: ${value}`)}`)];
  const body = bodyText(event);
  if (body === null) return [...lines, parts.join(" \\\n")].join("\n");
  parts.push("  --data-binary @- <<'ZAPHOOK_BODY'");
  return [...lines, parts.join(" \\\n"), body, "ZAPHOOK_BODY"].join("\n");
}

/** The same for Windows PowerShell (5.1 and 7): the body into a UTF-8 file, then curl.exe sends the file. */
export function powershellCommand(event, origin) {
  const {kept, left} = copiedHeaders(event.headers);
  const file = `zaphook-event-${event.id}.json`;
  const lines = [`# ${t("events.curl_comment", {id: event.id})}`];
  if (left.length) lines.push(`# ${t("events.curl_left_out", {names: left.join(", ")})}`);
  const body = bodyText(event);
  if (body !== null) lines.push("@'", body, `'@ | Set-Content -Encoding utf8 -NoNewline ${file}`);
  const parts = [`curl.exe -X ${event.method || "POST"} ${powershellQuote(origin + event.route)}`,
    ...kept.map(([name, value]) => `-H ${powershellQuote(`${name}: ${value}`)}`)];
  if (body !== null) parts.push(`--data-binary ${powershellQuote(`@${file}`)}`);
  lines.push(parts.join(" "));
  return lines.join("\n");
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/** Why a text is no JSON object (the parser's words), or null when it is one. */
function notAJsonObject(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return error.message;
  }
  return value !== null && typeof value === "object" && !Array.isArray(value) ? null : t("events.edit_not_object");
}

// Why a replay cannot work, as the API names it (ingest.REPLAY_REFUSALS).
const REFUSALS = ["untrusted", "pending", "body_not_stored", "not_text", "not_json"];

function refusalText(code) {
  return t(`events.replay_refusal.${code}`);
}

/** An API error in the page's language when it carries a code this page knows. */
function errorText(error) {
  const body = error && error.body;
  if (body && body.code === "edited_not_json") return t("events.edit_not_json", {reason: body.params.reason});
  if (body && REFUSALS.includes(body.code)) return refusalText(body.code);
  return error.message;
}

// --- the page ------------------------------------------------------------------------------------------

export function mount(container, params) {
  const select = (id, label, values, format) => {
    const element = h("select", {id, name: id},
      h("option", {value: ""}, t("events.any")), values.map((value) => h("option", {value}, format(value))));
    return [h("label", {for: id}, label), element];
  };
  const [providerFilterLabel, provider] = select("filter-provider", t("events.provider"), [], (v) => v);
  const [kindLabel, kind] = select("filter-kind", t("events.kind"), KINDS, tKind);
  const [outcomeLabel, outcome] = select("filter-outcome", t("events.outcome"), OUTCOMES, tState);
  const [instanceLabel, instance] = select("filter-instance", t("events.instance"), [], (v) => v);
  const text = h("input", {id: "filter-text", type: "search", placeholder: t("events.text_placeholder")});
  const rows = h("tbody");
  const newest = h("button", {type: "button", class: "small", dataset: {page: "newest"}}, t("events.newest"));
  const newer = h("button", {type: "button", class: "small", dataset: {page: "newer"}}, t("events.newer"));
  const older = h("button", {type: "button", class: "small", dataset: {page: "older"}}, t("events.older"));
  const listPane = h("section", {class: "card events-list-pane", "aria-label": t("events.list_label")},
    h("table", {class: "events-table"},
      h("colgroup", {}, h("col", {class: "c-id"}), h("col", {class: "c-time"}), h("col", {}), h("col", {class: "c-outcome"})),
      h("thead", {}, h("tr", {},
        h("th", {class: "num"}, "#"), h("th", {class: "c-time"}, t("events.time")), h("th", {}, t("events.what")),
        h("th", {}, t("events.outcome")))),
      rows),
    h("nav", {class: "events-pager", "aria-label": t("events.pager_label")},
      h("span", {class: "muted small-text keys-hint"}, t("events.keyboard_hint")), newest, newer, older));
  const detail = h("section", {class: "card event-detail", "aria-label": t("events.detail_label"), tabindex: "-1"});
  const layout = h("div", {class: "events-layout"}, listPane, detail);
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
      h("div", {}, providerFilterLabel, provider), h("div", {}, kindLabel, kind), h("div", {}, outcomeLabel, outcome),
      h("div", {}, instanceLabel, instance),
      h("div", {class: "grow"}, h("label", {for: "filter-text"}, t("events.text")), text)),
    layout,
    h("section", {class: "card"},
      h("h2", {}, t("events.dry_run_title")), h("p", {class: "muted"}, t("events.dry_run_intro")),
      h("form", {class: "dry-run", onsubmit: (e) => { e.preventDefault(); dryRun(); }},
        h("label", {for: "dry-run-payload"}, t("events.payload")), payload,
        h("div", {class: "row"}, routeLabel, route, dryRunButton)),
      dryRunResult));

  const labels = new Map();  // provider name -> label
  const rendered = new Map();  // event id -> {element, signature}
  let selected = params[0] || null;
  let cursor = {};  // {} = the newest page, followed live; {before_id} or {after_id} = a page of older events
  let pageCursors = {older: null, newer: null};
  let listScroll = 0;  // where the list was on a phone when an event was opened
  let restore = null;  // the row to go back to when the detail is closed
  let detailToken = 0;

  const narrow = window.matchMedia(NARROW);
  const topbar = document.querySelector(".topbar");
  // The detail sticks just below the header, whose height changes when it wraps.
  const measure = () => layout.style.setProperty("--events-top", `${topbar ? topbar.offsetHeight : 0}px`);
  const resize = typeof ResizeObserver === "function" ? new ResizeObserver(measure) : null;
  if (resize && topbar) resize.observe(topbar);
  measure();

  function filters() {
    return {provider: provider.value, kind: kind.value, outcome: outcome.value, instance: instance.value,
      q: text.value.trim(), limit: LIMIT, ...cursor};
  }

  function rowOf(id) {
    const entry = rendered.get(Number(id));
    return entry ? entry.element : null;
  }

  function markSelected() {
    let focusable = null;
    for (const [id, entry] of rendered) {
      const isSelected = String(id) === selected;
      if (isSelected) {
        entry.element.setAttribute("aria-current", "true");
        focusable = entry.element;
      } else entry.element.removeAttribute("aria-current");
      entry.element.tabIndex = -1;
    }
    // One tab stop for the whole list (the selected row, else the first); arrows move within it.
    (focusable || rows.querySelector("tr[data-event-id]") || {}).tabIndex = 0;
    layout.classList.toggle("has-selection", Boolean(selected));
  }

  async function loadList() {
    let data = await get(`/api/events${query(filters())}`);
    if (cursor.after_id && data.next_after_id === null) {
      cursor = {};  // back at the newest page: follow it live, full
      data = await get(`/api/events${query(filters())}`);
    }
    pageCursors = {older: data.next_before_id, newer: data.next_after_id};
    syncKeyed(rows, data.items, rendered, (event) => eventRow(event, labels));
    markSelected();
    if (!data.items.length && !rows.querySelector(".empty")) {
      const filtered = [provider.value, kind.value, outcome.value, instance.value, text.value.trim()].some(Boolean);
      rows.append(h("tr", {class: "empty"}, h("td", {colspan: 4, class: "muted"}, filtered ? t("events.none") : t("empty.events"))));
    }
    if (data.items.length) rows.querySelector(".empty")?.remove();
    newest.disabled = !cursor.before_id && !cursor.after_id;
    newer.disabled = pageCursors.newer === null;
    older.disabled = pageCursors.older === null;
    return data;
  }

  function detailIsStored() {
    return Boolean(detail.querySelector("#event-outcome.outcome-stored"));
  }

  async function goTo(next) {
    cursor = next;
    return loadList();
  }

  function open(id, {replace = false} = {}) {
    const hash = `#/events/${id}`;
    if (location.hash === hash) return;
    if (replace) location.replace(hash);
    else location.hash = hash;
  }

  function orderedRows() {
    return [...rows.querySelectorAll("tr[data-event-id]")];
  }

  async function move(step) {
    const list = orderedRows();
    if (!list.length) return;
    const index = list.findIndex((row) => row.dataset.eventId === selected);
    let target = index === -1 ? list[0] : list[index + step];
    if (!target && step > 0 && pageCursors.older !== null) {
      await goTo({before_id: pageCursors.older});
      target = orderedRows()[0];
    } else if (!target && step < 0 && pageCursors.newer !== null) {
      await goTo({after_id: pageCursors.newer});
      target = orderedRows().at(-1);
    }
    if (!target) return;
    target.focus();
    open(target.dataset.eventId, {replace: true});
  }

  rows.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (NEXT_KEYS.includes(event.key)) {
      event.preventDefault();
      move(1);
    } else if (PREVIOUS_KEYS.includes(event.key)) {
      event.preventDefault();
      move(-1);
    } else if (event.key === "Enter" && event.target.dataset.eventId) {
      event.preventDefault();
      open(event.target.dataset.eventId);
    }
  });
  rows.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-event-id]");
    if (!row || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    row.focus({preventScroll: true});
    open(row.dataset.eventId);
  });

  newest.addEventListener("click", () => goTo({}));
  newer.addEventListener("click", () => pageCursors.newer !== null && goTo({after_id: pageCursors.newer}));
  older.addEventListener("click", () => pageCursors.older !== null && goTo({before_id: pageCursors.older}));

  /** Bring the detail into view: on a phone, to the top of the screen; beside the list, only if it is off screen. */
  function showDetail() {
    const top = topbar ? topbar.getBoundingClientRect().bottom : 0;
    const box = detail.getBoundingClientRect();
    if (narrow.matches) window.scrollTo({top: window.scrollY + box.top - top});
    else if (box.top < top || box.top > window.innerHeight - 80) window.scrollBy({top: box.top - top - 8});
  }

  function back() {
    restore = selected;
    location.hash = "#/events";
  }

  /** Back from the detail: the list where it was, its row focused (the page's update() calls this). */
  function restoreList() {
    const row = restore && rowOf(restore);
    restore = null;
    if (narrow.matches) window.scrollTo({top: listScroll});
    if (row) row.focus({preventScroll: narrow.matches});
  }

  async function loadDetail({reveal = true} = {}) {
    const token = ++detailToken;
    if (!selected) {
      replaceChildren(detail, h("p", {class: "muted"}, t("events.pick")));
      return;
    }
    let event;
    try {
      event = await get(`/api/events/${encodeURIComponent(selected)}`);
    } catch (error) {
      if (token === detailToken) replaceChildren(detail, h("p", {class: "error"}, error.message));
      return;
    }
    if (token !== detailToken) return;  // another event was chosen meanwhile
    const editing = detail.querySelector(".event-editor:not([hidden])");
    if (!reveal && editing) return;  // a live refresh never throws away an edit in progress
    const another = detail.dataset.eventId !== String(event.id);
    renderDetail(event);
    detail.dataset.eventId = event.id;
    if (another) detail.scrollTop = 0;  // a new event is read from its top
    if (reveal) showDetail();
  }

  function renderDetail(event) {
    const summary = event.summary;
    const code = kindOf(event);
    const result = h("div", {class: "replay-result", role: "status"});
    const actions = h("div", {class: "row event-actions"});
    const meta = h("dl", {class: "event-meta"});
    const editor = h("div", {class: "event-editor", hidden: true});

    function fillMeta(current) {
      replaceChildren(meta,
        h("dt", {}, t("events.time")), h("dd", {}, formatDateTime(current.received_at)),
        h("dt", {}, t("events.provider")), h("dd", {}, providerLabel(labels, current.provider)),
        current.event_name ? [h("dt", {}, t("events.name")), h("dd", {}, h("code", {}, current.event_name))] : null,
        current.instance_id ? [h("dt", {}, t("events.instance")), h("dd", {}, current.instance_id)] : null,
        summary && summary.chat ? [h("dt", {}, t("events.chat")),
          h("dd", {}, chatLabel(summary), " ", h("code", {}, summary.chat))] : null,
        h("dt", {}, t("events.outcome_now")), h("dd", {},
          h("span", {class: `badge outcome-${current.outcome}`, id: "event-outcome"}, tState(current.outcome))),
        h("dt", {}, t("events.replays")), h("dd", {class: "replay-count"}, String(current.replay_count)),
        current.error ? [h("dt", {}, t("events.error")), h("dd", {class: "error"}, current.error)] : null);
    }
    fillMeta(event);

    const replay = h("button", {type: "button", id: "replay", disabled: !event.replay.allowed,
      title: event.replay.allowed ? null : refusalText(event.replay.refusal)}, t("events.replay"));
    replay.addEventListener("click", async () => {
      replay.disabled = true;
      try {
        const answer = await post(`/api/events/${event.id}/replay`);
        result.className = "replay-result ok";
        result.textContent = t("events.replayed", {outcome: tState(answer.outcome)});
      } catch (error) {
        result.className = "replay-result error";
        result.textContent = errorText(error);
      }
      replay.disabled = false;
      const current = await get(`/api/events/${event.id}`);
      fillMeta(current);
      await loadList();
    });
    const edit = h("button", {type: "button", id: "replay-edit", disabled: !event.replay_edited.allowed},
      t("events.edit"));
    const commandable = bodyText(event) !== null || event.body_size === 0;
    const copyCurl = h("button", {type: "button", class: "secondary", id: "copy-curl", disabled: !commandable},
      t("events.copy_curl"));
    const copyPowershell = h("button", {type: "button", class: "secondary", id: "copy-powershell",
      disabled: !commandable}, t("events.copy_powershell"));
    const copyStatus = h("span", {class: "muted copy-status", role: "status"});
    const reasons = [];
    if (!event.replay.allowed) reasons.push(refusalText(event.replay.refusal));
    if (!event.replay_edited.allowed && event.replay_edited.refusal !== event.replay.refusal) {
      reasons.push(refusalText(event.replay_edited.refusal));
    }
    replaceChildren(actions, replay, edit, copyCurl, copyPowershell, copyStatus);

    const origin = location.origin;
    const commands = commandable ? h("details", {class: "event-commands"},
      h("summary", {}, t("events.commands")),
      h("h4", {}, "bash / zsh"), h("pre", {class: "command", id: "curl-command"}, curlCommand(event, origin)),
      h("h4", {}, "PowerShell"), h("pre", {class: "command", id: "powershell-command"},
        powershellCommand(event, origin))) : null;
    for (const [button, make] of [[copyCurl, curlCommand], [copyPowershell, powershellCommand]]) {
      button.addEventListener("click", async () => {
        const done = await copyText(make(event, origin));
        copyStatus.textContent = done ? t("events.copied") : t("events.copy_failed");
        if (!done && commands) commands.open = true;
      });
    }

    const editText = h("textarea", {id: "event-edit", rows: 14, spellcheck: "false",
      "aria-describedby": "event-edit-hint"});
    const editError = h("p", {class: "error edit-error", role: "alert"});
    const send = h("button", {type: "submit"}, t("events.edit_submit"));
    const cancel = h("button", {type: "button", class: "secondary"}, t("events.edit_cancel"));
    replaceChildren(editor,
      h("form", {class: "edit-form", onsubmit: async (e) => {
        e.preventDefault();
        editError.textContent = "";
        const problem = notAJsonObject(editText.value);
        if (problem) {  // the API says the same; saying it here spares a request bound to fail
          editError.textContent = t("events.edit_not_json", {reason: problem});
          editText.focus();
          return;
        }
        send.disabled = true;
        try {
          const answer = await post(`/api/events/${event.id}/replays`, {body: editText.value});
          editor.hidden = true;
          await loadList();
          open(answer.event_id);
        } catch (error) {
          editError.textContent = errorText(error);
        }
        send.disabled = false;
      }},
      h("label", {for: "event-edit"}, t("events.edit_title")),
      h("p", {class: "muted small-text", id: "event-edit-hint"}, t("events.edit_hint")),
      editText, editError, h("div", {class: "row"}, send, cancel)));
    edit.addEventListener("click", () => {
      if (!editor.hidden) return;
      editText.value = event.payload !== null && event.payload !== undefined
        ? JSON.stringify(event.payload, null, 2) : (event.body || "");
      editor.hidden = false;
      editText.focus();
    });
    cancel.addEventListener("click", () => {
      editor.hidden = true;
      edit.focus();
    });

    let body;
    if (event.body_hidden) body = h("p", {class: "muted body-hidden"}, t("events.body_hidden"));
    else if (event.payload !== null && event.payload !== undefined) body = jsonTree(event.payload, t("events.payload"));
    else if (typeof event.body === "string") body = h("pre", {class: "json"}, event.body || t("events.body_empty"));
    else if (event.body_base64) body = h("pre", {class: "json"}, event.body_base64);
    else body = h("p", {class: "muted"}, t("events.body_not_stored"));

    const response = event.response || {status: event.http_status, body: null};
    const headers = Object.entries(event.headers || {});
    const forwarded = h("section", {class: "event-forwarding"});

    replaceChildren(detail,
      h("div", {class: "detail-head"},
        h("button", {type: "button", class: "secondary small back", onclick: back}, t("events.back")),
        h("h2", {}, t("events.event", {id: event.id})),
        h("span", {class: "kind", dataset: {kind: code}}, tKind(code))),
      summary && whatText(summary) ? h("p", {class: "what-detail"}, whatText(summary)) : null,
      event.replay_of ? h("p", {class: "replay-of"},
        h("a", {href: `#/events/${event.replay_of}`}, t("events.replay_of", {id: event.replay_of}))) : null,
      meta, actions,
      reasons.length ? h("p", {class: "muted small-text replay-refusal"}, reasons.join(" ")) : null,
      result, editor,
      h("h3", {}, t("events.request")),
      h("p", {class: "request-line"}, h("code", {}, `${event.method || "POST"} ${event.route}`), " ",
        h("span", {class: "muted"}, [event.content_type, formatBytes(event.body_size), event.remote_addr]
          .filter(Boolean).join(" · "))),
      h("details", {class: "event-headers"}, h("summary", {}, t("events.headers"), ` (${headers.length})`),
        h("table", {class: "headers-table"}, h("tbody", {},
          headers.map(([name, value]) => h("tr", {}, h("th", {}, name), h("td", {}, h("code", {}, String(value)))))))),
      body,
      h("h3", {}, t("events.response")),
      h("p", {class: "response-line"}, h("span", {class: `badge http-${Math.floor(response.status / 100)}xx`},
        `HTTP ${response.status}`), " ", h("span", {class: "muted"}, t("events.response_then"))),
      response.body ? jsonTree(response.body, t("events.response"))
        : h("p", {class: "muted"}, t("events.response_not_kept")),
      commands, forwarded);
    renderForwarding(forwarded, event.id);  // forwarding.js: each destination's attempts, and sending again
  }

  async function dryRun() {
    dryRunButton.disabled = true;
    try {
      const answer = await post(`/test${query({route: route.value})}`, payload.value);
      replaceChildren(dryRunResult, answer ? jsonTree(answer, t("events.dry_run_title"))
        : h("p", {class: "error"}, t("events.dry_run_bad")));
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
    for (const item of known.items) {
      labels.set(item.name, item.label);
      provider.append(h("option", {value: item.name}, item.label));
    }
    provider.append(h("option", {value: UNKNOWN_PROVIDER}, t("events.provider_unknown")));
    for (const path of known.routes) if (path !== CATCH_ALL_ROUTE) route.append(h("option", {value: path}, path));
  }

  const reload = debounce(() => goTo({}), 250);
  for (const control of [provider, kind, outcome, instance]) control.addEventListener("change", () => goTo({}));
  text.addEventListener("input", reload);

  return {
    // Providers first: the rows name them by their labels.
    ready: loadProviders().then(() => Promise.all([loadInstances(), loadList(), loadDetail()])),
    async refresh(changed) {
      if (!changed.includes("events") && !changed.includes("pending")) return;
      await loadList();
      // The applier settled what it had not applied yet ("pending" moved): the detail shows the outcome now.
      if (detailIsStored()) await loadDetail({reveal: false});
    },
    async update(newParams) {
      if (!selected && narrow.matches) listScroll = window.scrollY;
      selected = newParams[0] || null;
      markSelected();
      if (!selected) restoreList();
      await loadDetail();
    },
    unmount() {
      if (resize) resize.disconnect();
      detailToken += 1;
    },
  };
}
