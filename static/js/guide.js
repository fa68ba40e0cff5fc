// What an empty overview says to do next: how to point a provider at zaphook, or try it without one.
import {h} from "./dom.js";
import {t} from "./i18n.js";

const SIMULATE = "python server.py demo";

/** The empty overview: how to point a provider at zaphook (at its public URL: the tunnel's, or PUBLIC_URL). */
export function overviewGuide(publicUrl) {
  const steps = publicUrl
    ? [h("p", {}, t("empty.overview_public", {url: publicUrl}))]
    : [h("p", {}, t("empty.overview_local")),
      h("p", {}, t("empty.overview_simulate"), " ", h("code", {class: "command"}, SIMULATE))];
  return h("div", {class: "empty-guide", dataset: {guide: publicUrl ? "public" : "local"}},
    h("p", {}, h("strong", {}, t("empty.overview_title"))), steps);
}

