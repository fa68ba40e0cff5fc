// What an empty overview says to do next: how to point a provider at zaphook, or try it without one.
import {h} from "./dom.js";
import {t} from "./i18n.js";

const SIMULATE = "python server.py simulate";

/** The empty overview: how to point a provider at zaphook (through the tunnel when there is one). */
export function overviewGuide(tunnelUrl) {
  const steps = tunnelUrl
    ? [h("p", {}, t("empty.overview_tunnel", {url: tunnelUrl}))]
    : [h("p", {}, t("empty.overview_local")),
      h("p", {}, t("empty.overview_simulate"), " ", h("code", {class: "command"}, SIMULATE))];
  return h("div", {class: "empty-guide", dataset: {guide: tunnelUrl ? "tunnel" : "local"}},
    h("p", {}, h("strong", {}, t("empty.overview_title"))), steps);
}

