// Chats: the chat list and a WhatsApp-like conversation, updated in place as webhooks arrive.
import {get, post, query} from "../api.js";
import {formatBytes, formatTime, h, phoneOf, replaceChildren, syncKeyed} from "../dom.js";
import {t, tState, tType} from "../i18n.js";

const CHAT_LIMIT = 500;
const MESSAGE_LIMIT = 500;
const TICKS = {pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", played: "✓✓", failed: "!"};
const RETRYABLE = ["failed", "expired"];
// Status posts (status@broadcast) and channels (@newsletter) are listed apart from conversations.
const BROADCAST_KINDS = ["status", "newsletter"];

function chatName(chat) {
  if (chat.name) return chat.name;
  if (chat.kind === "status") return t("chats.status_updates");
  if (chat.kind === "newsletter") return chat.chat_id.split("@")[0];  // a channel's id is no phone number
  return phoneOf(chat.chat_id);
}

function kindBadge(chat) {
  const label = {group: t("chats.group"), status: t("chats.status"), newsletter: t("chats.channel")}[chat.kind];
  return label ? h("span", {class: "badge", dataset: {kind: chat.kind}}, label) : null;
}

function preview(message) {
  if (!message) return "";
  if (message.deleted) return t("chats.deleted");
  const body = message.text || message.caption || `[${tType(message.type)}]`;
  return message.from_me ? `${t("chats.you")}: ${body}` : body;
}

export function ticks(message) {
  const status = message.status;
  const label = status === "failed" ? `${tState("failed")}: ${message.error || ""}`.replace(/: $/, "") : tState(status);
  return h("span", {class: `ticks ticks-${status}`, dataset: {status}, role: "img", "aria-label": label, title: label},
    TICKS[status] || "");
}

function mapLink(location) {
  const {latitude, longitude} = location;
  return `https://www.openstreetmap.org/?mlat=${latitude}&mlon=${longitude}#map=17/${latitude}/${longitude}`;
}

const FILE_ICONS = {image: "🖼", video: "🎬", audio: "🎵", document: "📄", sticker: "🙂"};

export function mediaBlock(media, onRetry, caption) {
  const slot = `media-slot slot-${media.media_type}`;
  if (media.state === "done" && media.file_url) {
    const url = media.file_url;
    // Only a type the server serves inline (media.inline, its allow-list) is shown or opened
    // in the page; anything else the sender declared is offered as a download.
    if (media.inline && media.media_type === "image") {
      return h("a", {class: slot, href: url, target: "_blank", rel: "noopener"},
        h("img", {src: url, alt: caption || tType("image"), loading: "lazy"}));
    }
    if (media.inline && media.media_type === "sticker") return h("img", {class: slot, src: url, alt: tType("sticker")});
    if (media.inline && media.media_type === "audio") {
      return h("audio", {class: slot, controls: true, preload: "metadata", src: url});
    }
    if (media.inline && media.media_type === "video") {
      return h("video", {class: slot, controls: true, preload: "metadata", src: url});
    }
    return h("a", {class: "document", href: url, download: media.file_name || ""},
      `${FILE_ICONS[media.media_type] || "📎"} `, media.file_name || tType(media.media_type),
      media.file_length ? ` (${formatBytes(media.file_length)})` : "");
  }
  return h("div", {class: `${slot} media-state`, dataset: {mediaState: media.state}},
    h("span", {}, `${tType(media.media_type)} · ${tState(media.state)}`),
    media.error ? h("span", {class: "error small-text"}, media.error) : null,
    RETRYABLE.includes(media.state)
      ? h("button", {type: "button", class: "small", onclick: () => onRetry(media.id)}, t("media.retry")) : null);
}

function content(message, onRetry) {
  if (message.deleted_at) return [h("em", {class: "muted"}, t("chats.deleted"))];
  const parts = [];
  if (message.media) parts.push(mediaBlock(message.media, onRetry, message.caption));
  if (message.location) {
    const {latitude, longitude, name} = message.location;
    parts.push(h("div", {class: "location"}, "📍 ", name ? h("strong", {}, name) : null, name ? " " : null,
      `${latitude}, ${longitude} `, h("a", {href: mapLink(message.location), target: "_blank", rel: "noopener"},
        t("chats.open_map"))));
  }
  if (message.contacts) {
    for (const card of message.contacts) parts.push(h("div", {class: "contact-card"}, "👤 ", card.name || ""));
  }
  const text = message.text || message.caption;
  if (text) parts.push(h("div", {class: "text"}, text));
  if (!parts.length) parts.push(h("em", {class: "muted"}, `[${tType(message.type)}]`));
  return parts;
}

function reactionsOf(messages) {
  // The newest reaction of each person on each message; an empty emoji takes one back.
  const byTarget = new Map();
  for (const message of [...messages].sort((a, b) => a.id - b.id)) {
    if (message.type !== "reaction" || !message.reaction_to) continue;
    const who = message.from_me ? "me" : message.sender_id || "";
    if (!byTarget.has(message.reaction_to)) byTarget.set(message.reaction_to, new Map());
    byTarget.get(message.reaction_to).set(who, message.reaction_emoji || "");
  }
  const result = new Map();
  for (const [target, people] of byTarget) result.set(target, [...people.values()].filter(Boolean));
  return result;
}

function bubble(message, chat, reactions, onRetry) {
  const side = message.from_me ? "out" : "in";
  return h("li", {class: `message ${side}`, dataset: {messageId: message.id, side, type: message.type}},
    h("div", {class: "bubble"},
      (chat.is_group || chat.kind === "status") && !message.from_me
        ? h("div", {class: "sender"}, message.sender_name || phoneOf(message.sender_id)) : null,
      message.forwarded ? h("div", {class: "muted small-text"}, t("chats.forwarded")) : null,
      content(message, onRetry),
      h("div", {class: "meta"},
        message.edited_at ? h("span", {class: "muted"}, t("chats.edited")) : null,
        h("time", {datetime: message.timestamp || ""}, formatTime(message.timestamp)),
        message.from_me ? ticks(message) : null),
      reactions.length ? h("div", {class: "reactions", "aria-label": t("chats.reactions")},
        reactions.map((emoji) => h("span", {class: "reaction"}, emoji))) : null));
}

export function mount(container, params) {
  const list = h("ul", {class: "chat-list", "aria-label": t("chats.list")});
  const broadcastList = h("ul", {class: "chat-list broadcast-list", "aria-labelledby": "broadcasts-title"});
  const broadcasts = h("section", {class: "broadcasts", hidden: true},
    h("h2", {id: "broadcasts-title"}, t("chats.status_and_channels")), broadcastList);
  const conversation = h("section", {class: "conversation", "aria-live": "polite"});
  const layout = h("div", {class: "chats-layout"}, h("nav", {class: "chat-list-pane", "aria-label": t("chats.list")},
    h("h1", {}, t("chats.title")), list, broadcasts), conversation);
  container.append(layout);

  let chats = [];
  let selected = params[0] || null;
  let messageList = null;
  let rendered = new Map();  // message id -> {element, signature}

  function chatItem(chat) {
    return h("li", {},
      h("a", {href: `#/chats/${chat.id}`, class: "chat-item", "aria-current": String(chat.id) === selected ? "true" : null,
        dataset: {chatId: chat.id, kind: chat.kind}},
        h("span", {class: "chat-name"}, h("span", {class: "chat-name-text"}, chatName(chat)), kindBadge(chat)),
        h("span", {class: "chat-time muted"}, formatTime(chat.last_message_at)),
        h("span", {class: "chat-preview muted"}, preview(chat.last_message))));
  }

  function renderList() {
    const sorted = [...chats].sort((a, b) => (b.last_message_at || "").localeCompare(a.last_message_at || ""));
    const talks = sorted.filter((chat) => !BROADCAST_KINDS.includes(chat.kind));
    const posts = sorted.filter((chat) => BROADCAST_KINDS.includes(chat.kind));
    replaceChildren(list, talks.length ? talks.map(chatItem) : h("li", {class: "muted"}, t("chats.none")));
    replaceChildren(broadcastList, posts.map(chatItem));
    broadcasts.hidden = posts.length === 0;
  }

  async function retry(mediaId) {
    try {
      await post(`/api/media/${mediaId}/retry`);
    } catch (error) {
      console.warn("retry refused", error);
    }
    await loadConversation();
  }

  function openConversation() {
    rendered = new Map();
    layout.classList.toggle("has-selection", Boolean(selected));
    const chat = chats.find((item) => String(item.id) === selected);
    if (!chat) {
      messageList = null;
      replaceChildren(conversation, h("p", {class: "muted empty"}, selected ? t("chats.not_found") : t("chats.pick")));
      return;
    }
    messageList = h("ol", {class: "messages"});
    replaceChildren(conversation,
      h("header", {class: "conversation-head"},
        h("a", {href: "#/chats", class: "back"}, "← ", t("chats.back")),
        h("h2", {}, chatName(chat)), h("span", {class: "muted"}, `${chat.chat_id} · ${chat.instance_id}`)),
      messageList);
  }

  async function loadConversation() {
    const chat = chats.find((item) => String(item.id) === selected);
    if (!chat || !messageList) return;
    const data = await get(`/api/messages${query({chat: chat.chat_id, instance: chat.instance_id, limit: MESSAGE_LIMIT})}`);
    const messages = data.items;
    const reactions = reactionsOf(messages);
    const shown = messages.filter((message) => message.type !== "reaction" || !messages.some(
      (other) => other.provider_message_id === message.reaction_to));
    shown.sort((a, b) => (a.timestamp || "").localeCompare(b.timestamp || "") || a.id - b.id);
    const atBottom = messageList.scrollHeight - messageList.scrollTop - messageList.clientHeight < 60;
    const items = shown.map((message) => ({id: message.id, message,
      reactions: reactions.get(message.provider_message_id) || []}));
    syncKeyed(messageList, items, rendered, (item) => bubble(item.message, chat, item.reactions, retry));
    if (atBottom) messageList.scrollTop = messageList.scrollHeight;
  }

  async function loadChats() {
    chats = (await get(`/api/chats?limit=${CHAT_LIMIT}`)).items;
    renderList();
  }

  async function start() {
    await loadChats();
    openConversation();
    await loadConversation();
  }

  return {
    ready: start(),
    async refresh(changed) {
      if (!changed.includes("events") && !changed.includes("media")) return;
      await loadChats();
      if (messageList === null && selected) openConversation();
      await loadConversation();
    },
    async update(newParams) {
      selected = newParams[0] || null;
      renderList();
      openConversation();
      await loadConversation();
    },
  };
}
