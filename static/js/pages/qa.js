// QA: the /test self-check as a checklist, failures and warnings first, in the page's language.
import {get} from "../api.js";
import {h, replaceChildren} from "../dom.js";
import {t, tText} from "../i18n.js";

const MARKS = {ok: "✓", warning: "!", failure: "✗"};
const ORDER = {failure: 0, warning: 1, ok: 2};

function summaryText(report) {
  if (report.failures) return t("qa.summary_failures", {count: report.failures});
  if (report.warnings) return t("qa.summary_warnings", {count: report.warnings});
  return t("qa.all_ok");
}

function checkItem(check) {
  const level = check.level;
  const name = tText({code: check.name_code, params: check.name_params}, check.name);
  return h("li", {class: `check-${level} ${level === "failure" ? "bad" : level}`, dataset: {level, code: check.code || ""}},
    h("span", {class: "check-mark", role: "img", "aria-label": t(`qa.level.${level}`)}, MARKS[level]),
    h("div", {}, h("strong", {}, name), h("div", {class: "muted", title: check.detail}, tText(check, check.detail))));
}

export function mount(container) {
  const summary = h("p", {class: "qa-summary", role: "status"});
  const list = h("ul", {class: "checklist"});
  const again = h("button", {type: "button"}, t("qa.run_again"));
  container.append(h("h1", {}, t("qa.title")), h("p", {class: "muted"}, t("qa.intro")), summary, again, list);

  async function load() {
    const report = await get("/test");
    const level = report.level || (report.ok ? "ok" : "failure");
    summary.className = `qa-summary ${level === "failure" ? "bad" : level}`;
    summary.dataset.level = level;
    summary.textContent = summaryText(report);
    const checks = [...report.checks].sort((a, b) => ORDER[a.level] - ORDER[b.level]);
    replaceChildren(list, checks.map(checkItem));
  }

  again.addEventListener("click", load);
  // The self-check writes a test row: run it on demand and on opening, not on every change.
  return {ready: load()};
}
