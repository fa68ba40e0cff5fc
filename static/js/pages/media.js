// Media: every attachment as a card, by type and state, with retry for failed downloads.
import {get, post, query} from "../api.js";
import {formatBytes, formatDateTime, h, syncKeyed} from "../dom.js";
import {t, tState, tText, tType} from "../i18n.js";

const TYPES = ["image", "video", "audio", "document", "sticker"];
const STATES = ["pending", "downloading", "done", "failed", "expired"];
const RETRYABLE = ["failed", "expired"];
const LIMIT = 200;

function preview(media) {
  // Only a type the server serves inline (media.inline, its allow-list) is embedded.
  if (media.state === "done" && media.file_url && media.inline
      && (media.media_type === "image" || media.media_type === "sticker")) {
    return h("img", {src: media.file_url, alt: media.caption || tType(media.media_type), loading: "lazy"});
  }
  const icons = {image: "🖼", video: "🎬", audio: "🎵", document: "📄", sticker: "🙂"};
  return h("span", {class: "media-icon", "aria-hidden": "true"}, icons[media.media_type] || "📎");
}

function fileLink(media) {
  // Opened in a tab only when its type is served inline; any other file is a download.
  if (!media.file_url) return null;
  if (media.inline) return h("a", {href: media.file_url, target: "_blank", rel: "noopener"}, t("media.open"));
  return h("a", {href: media.file_url, download: media.file_name || ""}, t("media.download"));
}

export function mount(container) {
  const type = h("select", {id: "media-type"}, h("option", {value: ""}, t("media.all_types")),
    TYPES.map((value) => h("option", {value}, tType(value))));
  const state = h("select", {id: "media-state"}, h("option", {value: ""}, t("media.all_states")),
    STATES.map((value) => h("option", {value}, tState(value))));
  const grid = h("ul", {class: "media-grid"});
  const message = h("p", {class: "muted", role: "status"});
  container.append(h("h1", {}, t("media.title")),
    h("form", {class: "filters", onsubmit: (e) => e.preventDefault()},
      h("div", {}, h("label", {for: "media-type"}, t("media.type")), type),
      h("div", {}, h("label", {for: "media-state"}, t("media.state")), state)),
    message, grid);

  const rendered = new Map();

  async function retry(id) {
    try {
      await post(`/api/media/${id}/retry`);
    } catch (error) {
      message.textContent = error.message;
    }
    await load();
  }

  function card(media) {
    return h("li", {class: `media-card state-${media.state}`, dataset: {mediaId: media.id, mediaState: media.state}},
      h("div", {class: "media-preview"}, preview(media)),
      h("div", {class: "media-info"},
        h("strong", {}, media.file_name || `${tType(media.media_type)} #${media.id}`),
        h("span", {class: `badge state-${media.state}`}, tState(media.state)),
        h("span", {class: "muted"}, [formatBytes(media.stored_size ?? media.file_length), media.mimetype]
          .filter(Boolean).join(" · ")),
        h("span", {class: "muted"}, formatDateTime(media.created_at)),
        media.error ? h("span", {class: "error small-text", title: media.error},
          tText({code: media.error_code, params: media.error_params}, media.error)) : null,
        h("div", {class: "row"},
          fileLink(media),
          RETRYABLE.includes(media.state)
            ? h("button", {type: "button", class: "small", onclick: () => retry(media.id)}, t("media.retry")) : null)));
  }

  async function load() {
    const data = await get(`/api/media${query({type: type.value, status: state.value, limit: LIMIT})}`);
    message.textContent = data.items.length ? "" : type.value || state.value ? t("media.none") : t("empty.media");
    syncKeyed(grid, data.items, rendered, card);
  }

  type.addEventListener("change", load);
  state.addEventListener("change", load);
  return {
    ready: load(),
    async refresh(changed) {
      if (["events", "pending", "media"].some((part) => changed.includes(part))) await load();
    },
  };
}
