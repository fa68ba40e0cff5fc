// Campaigns: the list, the create form (problems shown before creating), one campaign's page.
import {get, post, query} from "../api.js";
import {debounce, formatDateTime, formatNumber, h, replaceChildren, syncKeyed} from "../dom.js";
import {t, tState} from "../i18n.js";
import {providers} from "../providers.js";

const CONTACT_STATES = ["pending", "sending", "sent", "delivered", "read", "failed", "skipped"];
const ACTIONS = {start: ["draft"], pause: ["running"], resume: ["paused"], cancel: ["draft", "running", "paused"]};
const FUNNEL = ["total_contacts", "sent_count", "delivered_count", "read_count"];
const BESIDE = ["failed_count", "replied_count", "skipped_count"];

function percent(value) {
  return `${formatNumber(Math.round(value * 10) / 10)} %`;
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

function problemsView(report) {
  const parts = [];
  if (report.problems && report.problems.length) {
    parts.push(h("ul", {class: "problems"}, report.problems.map((problem) => h("li", {class: "error"}, problem))));
  }
  if (report.contacts_valid !== undefined) {
    parts.push(h("p", {}, t("campaigns.valid_count", {count: formatNumber(report.contacts_valid)})));
  }
  if (report.invalid && report.invalid.length) {
    parts.push(h("h3", {}, t("campaigns.invalid_rows", {count: report.invalid.length})),
      h("ul", {class: "invalid-rows"}, report.invalid.map((row) =>
        h("li", {}, t("campaigns.row", {row: row.row}), " ", h("code", {}, String(row.phone ?? "")), " — ", row.reason))));
  }
  if (report.duplicates && report.duplicates.length) {
    parts.push(h("h3", {}, t("campaigns.duplicate_rows", {count: report.duplicates.length})),
      h("ul", {class: "duplicate-rows"}, report.duplicates.map((row) =>
        h("li", {}, t("campaigns.row", {row: row.row}), " ", h("code", {}, String(row.phone ?? "")), " ",
          t("campaigns.same_as", {row: row.same_as_row})))));
  }
  if (report.problems && !report.problems.length && !(report.invalid || []).length
      && !(report.duplicates || []).length) {
    parts.push(h("p", {class: "ok"}, t("campaigns.no_problems")));
  }
  return parts;
}

function listPage(container) {
  const rows = h("tbody");
  const name = h("input", {id: "campaign-name", name: "name", required: true, maxlength: 255});
  const instance = h("select", {id: "campaign-instance", name: "instance_id", required: true});
  const text = h("textarea", {id: "campaign-text", name: "text", rows: 4, required: true, maxlength: 4096});
  const contacts = h("textarea", {id: "campaign-contacts", name: "contacts", rows: 5,
    placeholder: t("campaigns.contacts_placeholder")});
  const file = h("input", {id: "campaign-file", name: "file", type: "file", accept: ".csv,text/csv,text/plain"});
  const report = h("div", {class: "campaign-report", role: "status", "aria-live": "polite"});
  const checkButton = h("button", {type: "button", id: "campaign-check"}, t("campaigns.check"));
  const createButton = h("button", {type: "submit", id: "campaign-create"}, t("campaigns.create"));
  const form = h("form", {class: "card campaign-form"},
    h("h2", {}, t("campaigns.new")),
    h("label", {for: "campaign-name"}, t("campaigns.name")), name,
    h("label", {for: "campaign-instance"}, t("campaigns.instance")), instance,
    h("label", {for: "campaign-text"}, t("campaigns.text")), text,
    h("label", {for: "campaign-contacts"}, t("campaigns.contacts")), contacts,
    h("label", {for: "campaign-file"}, t("campaigns.csv_file")), file,
    h("p", {class: "muted small-text"}, t("campaigns.csv_hint")),
    report,
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

  async function check() {
    try {
      replaceChildren(report, problemsView(await post("/api/campaigns/check", body())));
    } catch (error) {
      replaceChildren(report, h("p", {class: "error"}, error.message));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    createButton.disabled = true;
    try {
      const created = await post("/api/campaigns", body());
      location.hash = `#/campaigns/${created.id}`;
    } catch (error) {
      replaceChildren(report, h("p", {class: "error"}, error.message), error.body && error.body.detail
        ? problemsView(error.body.detail) : null);
    }
    createButton.disabled = false;
  });
  checkButton.addEventListener("click", check);
  const autoCheck = debounce(check, 400);
  contacts.addEventListener("input", autoCheck);
  file.addEventListener("change", check);

  async function loadInstances() {
    const [data, known] = await Promise.all([get("/api/instances"), providers()]);
    const senders = known.items.filter((item) => item.can_send);
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
  container.append(
    h("p", {}, h("a", {href: "#/campaigns"}, "← ", t("campaigns.back"))),
    head, actions, actionResult,
    h("section", {class: "card"},
      h("h2", {}, t("campaigns.funnel")),
      h("div", {class: "progress-row"}, h("label", {for: "campaign-progress"}, t("campaigns.progress")), progress,
        progressText),
      funnel, beside, rates),
    h("div", {class: "columns"},
      h("section", {class: "card table-wrap"},
        h("h2", {}, t("campaigns.contacts_table")),
        h("div", {class: "filters"}, h("label", {for: "contact-state"}, t("campaigns.state")), stateFilter),
        h("table", {}, h("thead", {}, h("tr", {},
          h("th", {}, t("campaigns.phone")), h("th", {}, t("campaigns.contact_name")), h("th", {}, t("campaigns.state")),
          h("th", {class: "hide-narrow"}, t("campaigns.sent_at")), h("th", {class: "hide-narrow"}, t("campaigns.error")),
          h("th", {class: "hide-narrow"}, t("campaigns.reply")))), contacts)),
      h("section", {class: "card"}, h("h2", {}, t("campaigns.log")), log)));

  const renderedContacts = new Map();
  const renderedLog = new Map();

  async function act(action) {
    try {
      await post(`/api/campaigns/${campaignId}/${action}`);
      actionResult.textContent = "";
    } catch (error) {
      actionResult.textContent = error.message;
    }
    await load();
  }

  function renderCampaign(campaign) {
    replaceChildren(head,
      h("h1", {}, campaign.name, " ", h("span", {class: `badge campaign-${campaign.state}`, id: "campaign-state"},
        tState(campaign.state))),
      campaign.state_reason ? h("p", {class: "muted"}, campaign.state_reason) : null,
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
    return h("tr", {dataset: {contactState: contact.state}},
      h("td", {}, contact.phone), h("td", {}, contact.name || ""),
      h("td", {}, h("span", {class: `badge contact-${contact.state}`}, tState(contact.state))),
      h("td", {class: "hide-narrow"}, formatDateTime(contact.sent_at)),
      h("td", {class: "hide-narrow error"}, contact.error || ""),
      h("td", {class: "hide-narrow"}, contact.reply || ""));
  }

  function logLine(line) {
    return h("li", {}, h("span", {class: "muted"}, formatDateTime(line.at)), " ", h("strong", {}, line.action),
      line.detail ? ` — ${line.detail}` : "");
  }

  async function load() {
    const [campaign, contactPage, logPage] = await Promise.all([
      get(`/api/campaigns/${campaignId}`),
      get(`/api/campaigns/${campaignId}/contacts${query({state: stateFilter.value, limit: 500})}`),
      get(`/api/campaigns/${campaignId}/log?limit=100`),
    ]);
    renderCampaign(campaign);
    syncKeyed(contacts, contactPage.items, renderedContacts, contactRow);
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
