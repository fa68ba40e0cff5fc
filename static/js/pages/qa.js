// QA: the /test self-check as a checklist.
import {get} from "../api.js";
import {h, replaceChildren} from "../dom.js";
import {t} from "../i18n.js";

export function mount(container) {
  const summary = h("p", {class: "qa-summary", role: "status"});
  const list = h("ul", {class: "checklist"});
  const again = h("button", {type: "button"}, t("qa.run_again"));
  container.append(h("h1", {}, t("qa.title")), h("p", {class: "muted"}, t("qa.intro")), summary, again, list);

  async function load() {
    const report = await get("/test");
    summary.className = `qa-summary ${report.ok ? "ok" : "bad"}`;
    summary.textContent = report.ok ? t("qa.all_ok") : t("qa.some_failed");
    replaceChildren(list, report.checks.map((check) => h("li", {class: check.ok ? "ok" : "bad"},
      h("span", {class: "check-mark", "aria-label": check.ok ? t("qa.passed") : t("qa.failed")}, check.ok ? "✓" : "✗"),
      h("div", {}, h("strong", {}, check.name), h("div", {class: "muted"}, check.detail)))));
  }

  again.addEventListener("click", load);
  // The self-check writes a test row: run it on demand and on opening, not on every change.
  return {ready: load()};
}
