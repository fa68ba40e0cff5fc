// Campaigns: the list, the create form (problems and a preview shown before creating), one campaign's page.
// The server speaks in codes (problems, warnings, refusals, log actions) and this page says them in its language.
import {get, post, query} from "../api.js";
import {debounce, formatDateTime, formatNumber, h, replaceChildren, syncKeyed} from "../dom.js";
import {currentLanguage, t, tState} from "../i18n.js";
import {providers} from "../providers.js";

const CONTACT_STATES = ["pending", "sending", "sent", "delivered", "read", "failed", "skipped"];
const ACTIONS = {start: ["draft"], pause: ["running"], resume: ["paused"], cancel: ["draft", "running", "paused"]};
const FUNNEL = ["total_contacts", "sent_count", "delivered_count", "read_count"];
const BESIDE = ["failed_count", "replied_count", "skipped_count"];

function percent(value) {
  return `${formatNumber(Math.round(value * 10) / 10)} %`;
}

function known(key) {
  return t(key) !== key;
}

/** A catalogue text chosen by Intl.PluralRules: key.one, key.other... (key.other when the rule has none). */
function tn(key, count, params = {}) {
  const rule = new Intl.PluralRules(currentLanguage()).select(Number(count));
  const chosen = known(`${key}.${rule}`) ? `${key}.${rule}` : `${key}.other`;
  return t(chosen, {...params, count: formatNumber(count)});
}

// A code from the server becomes a sentence of the catalogue; a code this page does not know yet (a newer
// server) shows the server's own words. Each key is written out whole (t(`refusal.${code}`)), so
// tests/views/test_dashboard.py can check every value the server sends against both catalogues.

/** "+55 11 98765-4321" for a Brazilian number, "+<digits>" for the others. */
export function formatPhone(digits) {
  const text = String(digits || "");
  const brazil = /^55(\d{2})(\d{4,5})(\d{4})$/.exec(text);
  if (brazil) return `+55 ${brazil[1]} ${brazil[2]}-${brazil[3]}`;
  return /^\d+$/.test(text) ? `+${text}` : text;
}

function contactLabel(contact) {
  return contact.name ? `${contact.name} (${formatPhone(contact.phone)})` : formatPhone(contact.phone);
}

/** Why a message did not go (or not arrive), in the page's language: storage/send.py REFUSALS. */
export function refusalText(code, params, fallback) {
  if (!code) return fallback || "";
  const values = {...(params || {})};
  for (const name of ["seconds", "hours", "status"]) {
    if (typeof values[name] === "number") values[name] = formatNumber(values[name]);
  }
  let text;
  if (code === "provider" && !values.text) {
    text = values.status ? t("refusal.provider_status", values) : t("refusal.provider_unknown");
  } else {
    text = known(`refusal.${code}`) ? t(`refusal.${code}`, values) : (fallback || code);
  }
  if (values.maybe_sent) text += ` ${t("refusal.maybe_sent")}`;
  return text;
}

function problemText({code, params, message}) {
  return known(`campaigns.problem.${code}`) ? t(`campaigns.problem.${code}`, params) : message;
}

function phoneText({code, params, reason}) {
  return known(`campaigns.phone.${code}`) ? t(`campaigns.phone.${code}`, params) : reason;
}

function warningText(item) {
  const params = item.params || {};
  if (item.code === "field_missing") return tn("campaigns.warning.field_missing", params.count, {...params, total: formatNumber(params.total)});
  if (item.code === "field_unknown") {
    return params.columns ? t("campaigns.warning.field_unknown", params) : t("campaigns.warning.field_unknown_no_columns", params);
  }
  return item.message;
}

function stateReason(campaign) {
  const detail = campaign.state_detail;
  if (detail && detail.code === "paused_for_errors") {
    return tn("campaigns.state_reason.paused_for_errors", detail.limit, {limit: formatNumber(detail.limit)});
  }
  return campaign.state_reason;
}

function apiErrorText(error) {
  const body = error.body || {};
  if (body.code === "state_conflict") {
    const {action, state} = body.params || {};
    return t("campaigns.api.state_conflict", {action: t(`campaigns.${action}`), state: tState(state)});
  }
  return error.message;
}

function campaignRow(campaign) {
  return h("tr", {dataset: {campaignId: campaign.id}},
    h("td", {}, h("a", {href: `#/campaigns/${campaign.id}`}, campaign.name)),
    h("td", {}, h("span", {class: `badge campaign-${campaign.state}`}, tState(campaign.state))),
    h("td", {}, h("progress", {max: 100, value: campaign.progress}), ` ${percent(campaign.progress)}`),
    h("td", {class: "num"}, formatNumber(campaign.total_contacts)),
    h("td", {class: "num"}, formatNumber(campaign.sent_count)),
    h("td", {class: "num"}, formatNumber(campaign.delivered_count)),
    h("td", {class: "num"}, formatNumber(campaign.read_count)),
    h("td", {class: "num"}, formatNumber(campaign.failed_count)),
    h("td", {class: "hide-narrow"}, formatDateTime(campaign.created_at)));
}

function listView(source) {
  if (!source || !source.encoding) return null;
  const delimiter = {";": t("campaigns.delimiter.semicolon"), ",": t("campaigns.delimiter.comma"),
    "\t": t("campaigns.delimiter.tab")}[source.delimiter] || t("campaigns.delimiter.none");
  const {encoding} = source;
  const encodingText = known(`campaigns.encoding.${encoding}`) ? t(`campaigns.encoding.${encoding}`) : encoding;
  return h("p", {class: "list-read muted"}, t("campaigns.list_read", {encoding: encodingText, delimiter}),
    source.columns && source.columns.length
      ? [" ", t("campaigns.list_columns", {columns: source.columns.join(", "), phone: source.phone_column})]
      : null);
}

function problemsView(report) {
  const parts = [];
  if (report.problems && report.problems.length) {
    parts.push(h("ul", {class: "problems"}, report.problems.map((item) =>
      h("li", {class: "error", dataset: {code: item.code}}, problemText(item)))));
  }
  parts.push(listView(report.list));
  const valid = report.contacts_valid ?? report.contacts_added;
  if (valid !== undefined) parts.push(h("p", {class: "valid-count"}, tn("campaigns.valid_count", valid)));
  if (report.warnings && report.warnings.length) {
    parts.push(h("ul", {class: "warnings"}, report.warnings.map((item) =>
      h("li", {class: "warning", dataset: {code: item.code}}, warningText(item)))));
  }
  if (report.invalid && report.invalid.length) {
    parts.push(h("h3", {}, tn("campaigns.invalid_rows", report.invalid.length)),
      h("ul", {class: "invalid-rows"}, report.invalid.map((row) =>
        h("li", {dataset: {code: row.code}}, t("campaigns.row", {row: row.row}), " ", h("code", {}, String(row.phone ?? "")),
          " — ", phoneText(row)))));
  }
  if (report.duplicates && report.duplicates.length) {
    parts.push(h("h3", {}, tn("campaigns.duplicate_rows", report.duplicates.length)),
      h("ul", {class: "duplicate-rows"}, report.duplicates.map((row) =>
        h("li", {}, t("campaigns.row", {row: row.row}), " ", h("code", {}, String(row.phone ?? "")), " ",
          t("campaigns.same_as", {row: row.same_as_row})))));
  }
  if (report.problems && !report.problems.length && !(report.invalid || []).length
      && !(report.duplicates || []).length && !(report.warnings || []).length) {
    parts.push(h("p", {class: "ok"}, t("campaigns.no_problems")));
  }
  return parts;
}

function previewView(items) {
  if (!items || !items.length) return [];
  return [h("h3", {}, t("campaigns.preview")),
    h("ol", {class: "preview-list"}, items.map((item) => h("li", {class: "preview-item"},
      h("div", {class: "preview-to muted"}, item.name
        ? t("campaigns.preview_to", {name: item.name, phone: formatPhone(item.phone)})
        : t("campaigns.preview_to_phone", {phone: formatPhone(item.phone)})),
      h("div", {class: "preview-text"}, item.text))))];
}

function listPage(container) {
  const rows = h("tbody");
  const name = h("input", {id: "campaign-name", name: "name", required: true, maxlength: 255});
  const instance = h("select", {id: "campaign-instance", name: "instance_id", required: true});
  const text = h("textarea", {id: "campaign-text", name: "text", rows: 4, required: true, maxlength: 4096,
    "aria-describedby": "campaign-fields-hint"});
  const fields = h("div", {class: "field-chips", "aria-live": "polite"});
  const contacts = h("textarea", {id: "campaign-contacts", name: "contacts", rows: 5,
    placeholder: t("campaigns.contacts_placeholder")});
  const file = h("input", {id: "campaign-file", name: "file", type: "file", accept: ".csv,.txt,text/csv,text/plain"});
  const report = h("div", {class: "campaign-report", role: "status", "aria-live": "polite"});
  const preview = h("section", {class: "campaign-preview", "aria-live": "polite"});
  const checkButton = h("button", {type: "button", id: "campaign-check"}, t("campaigns.check"));
  const createButton = h("button", {type: "submit", id: "campaign-create"}, t("campaigns.create"));
  const form = h("form", {class: "card campaign-form"},
    h("h2", {}, t("campaigns.new")),
    h("label", {for: "campaign-name"}, t("campaigns.name")), name,
    h("label", {for: "campaign-instance"}, t("campaigns.instance")), instance,
    h("label", {for: "campaign-text"}, t("campaigns.text")), text,
    h("p", {class: "muted small-text", id: "campaign-fields-hint"}, t("campaigns.fields_hint")),
    fields,
    h("label", {for: "campaign-contacts"}, t("campaigns.contacts")), contacts,
    h("label", {for: "campaign-file"}, t("campaigns.csv_file")), file,
    h("p", {class: "muted small-text"}, t("campaigns.csv_hint")),
    report,
    preview,
    h("div", {class: "row"}, checkButton, createButton));
  container.append(h("h1", {}, t("campaigns.title")),
    h("div", {class: "columns"},
      h("section", {class: "card table-wrap"},
        h("table", {},
          h("thead", {}, h("tr", {},
            h("th", {}, t("campaigns.name")), h("th", {}, t("campaigns.state")), h("th", {}, t("campaigns.progress")),
            h("th", {class: "num"}, t("campaigns.total")), h("th", {class: "num"}, t("campaigns.sent")),
            h("th", {class: "num"}, t("campaigns.delivered")), h("th", {class: "num"}, t("campaigns.read")),
            h("th", {class: "num"}, t("campaigns.failed")), h("th", {class: "hide-narrow"}, t("campaigns.created")))),
          rows)),
      form));

  const rendered = new Map();
  let checking = 0;

  function body() {
    if (file.files && file.files.length) {
      const data = new FormData();
      data.set("name", name.value);
      data.set("instance_id", instance.value);
      data.set("text", text.value);
      data.set("file", file.files[0]);
      return data;
    }
    return {name: name.value, instance_id: instance.value, text: text.value, csv: contacts.value};
  }

  function insertField(field) {
    const token = `{${field}}`;
    const start = text.selectionStart ?? text.value.length;
    const end = text.selectionEnd ?? start;
    text.value = text.value.slice(0, start) + token + text.value.slice(end);
    text.focus();
    text.selectionStart = text.selectionEnd = start + token.length;
    check();
  }

  function showFields(answer) {
    const columns = (answer.list && answer.list.columns) || [];
    const names = columns.length ? columns : ((answer.preview || []).some((item) => item.name) ? ["nome"] : []);
    replaceChildren(fields, names.length ? [h("span", {class: "muted small-text"}, t("campaigns.fields_available")), " ",
      names.map((field) => h("button", {type: "button", class: "small chip", dataset: {field},
        "aria-label": t("campaigns.insert_field", {field: `{${field}}`}), onclick: () => insertField(field)},
      `{${field}}`))] : []);
  }

  async function check() {
    const mine = ++checking;
    try {
      const answer = await post("/api/campaigns/check", body());
      if (mine !== checking) return;  // an older answer arriving after a newer one
      replaceChildren(report, problemsView(answer));
      replaceChildren(preview, previewView(answer.preview));
      showFields(answer);
    } catch (error) {
      if (mine === checking) replaceChildren(report, h("p", {class: "error"}, apiErrorText(error)));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    createButton.disabled = true;
    try {
      const created = await post("/api/campaigns", body());
      location.hash = `#/campaigns/${created.id}`;
    } catch (error) {
      const detail = error.body && error.body.detail;
      replaceChildren(report, detail ? problemsView(detail) : h("p", {class: "error"}, apiErrorText(error)));
    }
    createButton.disabled = false;
  });
  checkButton.addEventListener("click", check);
  const autoCheck = debounce(check, 400);
  contacts.addEventListener("input", autoCheck);
  text.addEventListener("input", autoCheck);
  file.addEventListener("change", check);

  async function loadInstances() {
    const [data, known_] = await Promise.all([get("/api/instances"), providers()]);
    const senders = known_.items.filter((item) => item.can_send);
    const usable = data.items.filter((item) => !item.demo && senders.some((sender) => sender.name === item.provider));
    replaceChildren(instance, usable.length
      ? usable.map((item) => h("option", {value: item.id}, `${item.provider} · ${item.name || item.instance_id}`))
      : h("option", {value: ""}, t("campaigns.no_instance", {providers: senders.map((item) => item.label).join(", ")})));
  }

  async function load() {
    const data = await get("/api/campaigns?limit=100");
    syncKeyed(rows, data.items, rendered, campaignRow);
    rows.querySelector(".empty")?.remove();
    if (!data.items.length) rows.append(h("tr", {class: "empty"}, h("td", {colspan: 9, class: "muted"}, t("campaigns.none"))));
  }

  return {
    ready: Promise.all([loadInstances(), load()]),
    async refresh(changed) {
      if (changed.includes("campaigns") || changed.includes("campaign_log")) await load();
    },
  };
}

function logText(line) {
  const params = line.params || {};
  if (line.action === "created" && line.params) return tn("campaigns.log.created", params.contacts);
  if (line.action === "paused" && params.code === "paused_for_errors") {
    return tn("campaigns.state_reason.paused_for_errors", params.limit, {limit: formatNumber(params.limit)});
  }
  const {action} = line;
  return known(`campaigns.log.${action}`) ? t(`campaigns.log.${action}`) : action;
}

function logDetail(line) {
  const params = line.params || {};
  if (params.refusal) return refusalText(params.refusal, params.refusal_params, line.detail);
  if (line.action === "created" && (params.duplicates || params.invalid)) {
    return t("campaigns.log.left_out", {duplicates: formatNumber(params.duplicates), invalid: formatNumber(params.invalid)});
  }
  if (line.action === "replied") return params.text ? `“${params.text}”` : line.detail;
  if (line.action === "opted_out") return params.word ? `“${params.word}”` : line.detail;
  if (["created", "paused"].includes(line.action) && line.params) return null;
  return line.detail;
}

function campaignPage(container, campaignId) {
  const head = h("div", {class: "campaign-head"});
  const actions = h("div", {class: "row campaign-actions"});
  const actionResult = h("p", {role: "status", class: "action-result"});
  const progress = h("progress", {id: "campaign-progress", max: 100, value: 0});
  const progressText = h("span", {class: "progress-text"});
  const funnel = h("ol", {class: "funnel"});
  const beside = h("ul", {class: "funnel-beside"});
  const rates = h("dl", {class: "rates"});
  const stateFilter = h("select", {id: "contact-state"}, h("option", {value: ""}, t("campaigns.all_states")),
    CONTACT_STATES.map((value) => h("option", {value}, tState(value))));
  const contacts = h("tbody");
  const log = h("ol", {class: "campaign-log"});
  const buttons = {};
  for (const action of Object.keys(ACTIONS)) {
    buttons[action] = h("button", {type: "button", dataset: {action}, class: action === "cancel" ? "danger" : null},
      t(`campaigns.${action}`));
    buttons[action].addEventListener("click", () => act(action));
    actions.append(buttons[action]);
  }
  const labels = {phone: t("campaigns.phone"), name: t("campaigns.contact_name"), state: t("campaigns.state"),
    sent: t("campaigns.sent_at"), error: t("campaigns.error"), reply: t("campaigns.reply")};
  container.append(
    h("p", {}, h("a", {href: "#/campaigns"}, "← ", t("campaigns.back"))),
    head, actions, actionResult,
    h("section", {class: "card"},
      h("h2", {}, t("campaigns.funnel")),
      h("div", {class: "progress-row"}, h("label", {for: "campaign-progress"}, t("campaigns.progress")), progress,
        progressText),
      funnel, beside, rates),
    // The whole width for the six columns; where even that is too narrow (a phone), each row is a card.
    h("section", {class: "card contacts-card"},
      h("h2", {}, t("campaigns.contacts_table")),
      h("div", {class: "filters"}, h("label", {for: "contact-state"}, t("campaigns.state")), stateFilter),
      h("div", {class: "table-wrap"}, h("table", {class: "contacts-table"}, h("thead", {}, h("tr", {},
        h("th", {}, labels.phone), h("th", {}, labels.name), h("th", {}, labels.state),
        h("th", {}, labels.sent), h("th", {}, labels.error), h("th", {}, labels.reply))), contacts))),
    h("section", {class: "card"}, h("h2", {}, t("campaigns.log")), log));

  const renderedContacts = new Map();
  const renderedLog = new Map();

  async function act(action) {
    try {
      await post(`/api/campaigns/${campaignId}/${action}`);
      actionResult.textContent = "";
    } catch (error) {
      actionResult.textContent = apiErrorText(error);
    }
    await load();
  }

  function renderCampaign(campaign) {
    const reason = stateReason(campaign);
    replaceChildren(head,
      h("h1", {}, campaign.name, " ", h("span", {class: `badge campaign-${campaign.state}`, id: "campaign-state"},
        tState(campaign.state))),
      reason ? h("p", {class: "muted state-reason"}, reason) : null,
      h("blockquote", {class: "campaign-text"}, campaign.text));
    for (const [action, sources] of Object.entries(ACTIONS)) buttons[action].disabled = !sources.includes(campaign.state);
    progress.value = campaign.progress;
    progressText.textContent = percent(campaign.progress);
    const total = campaign.total_contacts || 1;
    replaceChildren(funnel, FUNNEL.map((field) => h("li", {class: "funnel-step"},
      h("span", {class: "funnel-label"}, t(`campaigns.funnel_${field}`)),
      h("span", {class: "funnel-bar", dataset: {width: Math.round(100 * campaign[field] / total)}}),
      h("strong", {class: "funnel-count", dataset: {count: field}}, formatNumber(campaign[field])))));
    for (const bar of funnel.querySelectorAll(".funnel-bar")) bar.style.width = `${bar.dataset.width}%`;
    replaceChildren(beside, BESIDE.map((field) => h("li", {},
      h("span", {}, t(`campaigns.funnel_${field}`)), " ",
      h("strong", {dataset: {count: field}}, formatNumber(campaign[field])))));
    replaceChildren(rates,
      h("dt", {}, t("campaigns.delivery_rate")), h("dd", {dataset: {rate: "delivery"}}, percent(campaign.delivery_rate)),
      h("dt", {}, t("campaigns.read_rate")), h("dd", {dataset: {rate: "read"}}, percent(campaign.read_rate)));
  }

  function contactRow(contact) {
    const error = refusalText(contact.error_code, contact.error_params, contact.error);
    return h("tr", {dataset: {contactState: contact.state}},
      h("td", {class: "contact-phone", dataset: {label: labels.phone}}, formatPhone(contact.phone)),
      h("td", {class: "contact-name", dataset: {label: labels.name}}, contact.name || null),
      h("td", {dataset: {label: labels.state}}, h("span", {class: `badge contact-${contact.state}`}, tState(contact.state))),
      h("td", {class: "contact-sent", dataset: {label: labels.sent}}, contact.sent_at ? formatDateTime(contact.sent_at) : null),
      h("td", {class: "contact-error error",
        dataset: contact.error_code ? {label: labels.error, code: contact.error_code} : {label: labels.error},
        title: error && contact.error !== error ? contact.error : null}, error || null),
      h("td", {class: "contact-reply", dataset: {label: labels.reply}}, contact.reply || null));
  }

  function logLine(line) {
    const detail = logDetail(line);
    return h("li", {dataset: {action: line.action}},
      h("span", {class: "muted"}, formatDateTime(line.at)), " ", h("strong", {}, logText(line)),
      line.contact ? [" · ", h("span", {class: "log-contact"}, contactLabel(line.contact))] : null,
      detail ? [" — ", h("span", {class: "log-detail"}, detail)] : null);
  }

  async function load() {
    const [campaign, contactPage, logPage] = await Promise.all([
      get(`/api/campaigns/${campaignId}`),
      get(`/api/campaigns/${campaignId}/contacts${query({state: stateFilter.value, limit: 500})}`),
      get(`/api/campaigns/${campaignId}/log?limit=100`),
    ]);
    renderCampaign(campaign);
    syncKeyed(contacts, contactPage.items, renderedContacts, contactRow);
    contacts.querySelector(".empty")?.remove();
    if (!contactPage.items.length) {
      contacts.append(h("tr", {class: "empty"}, h("td", {colspan: 6, class: "muted"}, t("campaigns.contacts_none"))));
    }
    syncKeyed(log, logPage.items, renderedLog, logLine);
  }

  stateFilter.addEventListener("change", load);
  const ready = load().catch((error) => replaceChildren(head, h("p", {class: "error"}, error.message)));
  return {ready, refresh: load};
}

// No update(): moving between the list and a campaign mounts the page afresh.
export function mount(container, params) {
  return params[0] ? campaignPage(container, params[0]) : listPage(container);
}
