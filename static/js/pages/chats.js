// Chats: the chat list and a WhatsApp-like conversation, updated in place as webhooks arrive.
import {get, post, query} from "../api.js";
import {formatBytes, formatDateTime, h, phoneOf, replaceChildren, syncKeyed} from "../dom.js";
import {currentLanguage, t, tState, tType} from "../i18n.js";
import {formatPhone} from "../phone.js";

const CHAT_LIMIT = 500;
const MESSAGE_LIMIT = 500;
const TICKS = {pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", played: "✓✓", failed: "!"};
const RETRYABLE = ["failed", "expired"];
// Status posts (status@broadcast) and channels (@newsletter) are listed apart from conversations.
const BROADCAST_KINDS = ["status", "newsletter"];
const INSTANCE_KEY = "zaphook.chats.instance";
const FLASH_MS = 1600;

/** A person as people read them: their number formatted ("+55 11 98765-4321"), else the id's user part. */
function personLabel(jid) {
  return formatPhone(jid) || phoneOf(jid);
}

/** "Group …5888" for a group whose name zaphook has not learnt (never its JID). */
function unnamedGroup(chat) {
  const user = chat.chat_id.split("@")[0];
  return t("chats.unnamed_group", {id: user.length > 4 ? `…${user.slice(-4)}` : user});
}

export function chatName(chat) {
  if (chat.name) return chat.name;
  if (chat.kind === "status") return t("chats.status_updates");
  if (chat.kind === "newsletter") return chat.chat_id.split("@")[0];  // a channel's id is no phone number
  if (chat.kind === "group") return unnamedGroup(chat);
  return personLabel(chat.chat_id);
}

function kindBadge(chat) {
  const label = {group: t("chats.group"), status: t("chats.status"), newsletter: t("chats.channel")}[chat.kind];
  return label ? h("span", {class: "badge", dataset: {kind: chat.kind}}, label) : null;
}

// --- dates: the list's "when", the conversation's day separators -------------------------------------

function dayKey(date) {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
}

function daysAgo(date, now) {
  const day = new Date(date.getFullYear(), date.getMonth(), date.getDate());
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  return Math.round((today - day) / 86400000);  // rounded: a day of a DST change is 23 or 25 hours
}

/** The chat list's time: the hour today, "Yesterday", the date this year, the date with its year before. */
export function listDate(iso, now = new Date()) {
  if (!iso) return "";
  const date = new Date(iso);
  const locale = currentLanguage();
  const ago = daysAgo(date, now);
  if (ago === 0) return date.toLocaleTimeString(locale, {hour: "2-digit", minute: "2-digit"});
  if (ago === 1) return t("chats.yesterday");
  if (date.getFullYear() === now.getFullYear()) return date.toLocaleDateString(locale, {day: "2-digit", month: "2-digit"});
  return date.toLocaleDateString(locale, {day: "2-digit", month: "2-digit", year: "numeric"});
}

/** A day separator's words: "Today", "Yesterday", the weekday and date, with the year when not this one. */
export function dayLabel(iso, now = new Date()) {
  const date = new Date(iso);
  const locale = currentLanguage();
  const ago = daysAgo(date, now);
  if (ago === 0) return t("chats.today");
  if (ago === 1) return t("chats.yesterday");
  if (date.getFullYear() === now.getFullYear()) {
    return date.toLocaleDateString(locale, {weekday: "long", day: "numeric", month: "long"});
  }
  return date.toLocaleDateString(locale, {day: "numeric", month: "long", year: "numeric"});
}

function clockTime(iso) {
  return iso ? new Date(iso).toLocaleTimeString(currentLanguage(), {hour: "2-digit", minute: "2-digit"}) : "";
}

// --- one message ------------------------------------------------------------------------------------

function preview(message) {
  if (!message) return "";
  if (message.deleted) return t("chats.deleted");
  const body = message.text || message.caption || `[${tType(message.type)}]`;
  return message.from_me ? `${t("chats.you")}: ${body}` : body;
}

function failureReason(message) {
  return message.error || t("chats.no_reason");
}

/**
 * The delivery ticks of one of our messages, with words for screen readers. A failed message's
 * mark is a button: a click or a tap shows its reason under the bubble (a hover is no way on a phone).
 */
export function ticks(message, reasonShown = false, onToggle = null) {
  const status = message.status;
  const label = status === "failed" ? `${tState("failed")}: ${message.error || ""}`.replace(/: $/, "") : tState(status);
  if (status === "failed") {
    return h("button", {type: "button", class: "ticks ticks-failed", dataset: {status}, title: label,
      "aria-label": `${label}. ${reasonShown ? t("chats.hide_reason") : t("chats.show_reason")}`,
      "aria-expanded": String(reasonShown), "aria-controls": `reason-${message.id}`, onclick: onToggle}, TICKS.failed);
  }
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

function senderLabel(message) {
  return message.sender_name || personLabel(message.sender_id);
}

/** What a quote shows of the message it quotes: the stored message when there is one, else the payload's snippet. */
export function quoteOf(message, quoted) {
  if (quoted) {
    const text = quoted.deleted_at ? t("chats.deleted")
      : quoted.text || quoted.caption || `[${tType(quoted.type)}]`;
    return {author: quoted.from_me ? t("chats.you") : senderLabel(quoted), text, target: quoted.id};
  }
  return {author: null, text: message.quoted_text || t("chats.quote_unavailable"), target: null};
}

function quoteBlock(quote, onJump) {
  const body = [quote.author ? h("span", {class: "quote-author"}, quote.author) : null,
    h("span", {class: "quote-text"}, quote.text)];
  if (quote.target === null) return h("div", {class: "quote", dataset: {quoted: "missing"}}, body);
  return h("button", {type: "button", class: "quote", title: t("chats.go_to_quoted"),
    dataset: {quoted: "stored", target: quote.target}, onclick: () => onJump(quote.target)}, body);
}

function bubble(item, chat, actions) {
  const {message, reactions, quote, reasonShown} = item;
  const side = message.from_me ? "out" : "in";
  const failed = message.from_me && message.status === "failed";
  return h("li", {class: `message ${side}`, dataset: {messageId: message.id, side, type: message.type}},
    h("div", {class: "bubble", tabindex: "-1"},
      (chat.kind === "group" || chat.kind === "status") && !message.from_me
        ? h("div", {class: "sender"}, senderLabel(message)) : null,
      message.forwarded ? h("div", {class: "muted small-text"}, t("chats.forwarded")) : null,
      quote ? quoteBlock(quote, actions.jump) : null,
      content(message, actions.retry),
      h("div", {class: "meta"},
        message.edited_at ? h("span", {class: "muted"}, t("chats.edited")) : null,
        h("time", {datetime: message.timestamp || "", title: formatDateTime(message.timestamp)}, clockTime(message.timestamp)),
        message.from_me ? ticks(message, reasonShown, () => actions.toggleReason(message.id)) : null),
      failed && reasonShown ? h("div", {class: "failed-reason", id: `reason-${message.id}`},
        `${tState("failed")}: ${failureReason(message)}`) : null,
      reactions.length ? h("div", {class: "reactions", "aria-label": t("chats.reactions")},
        reactions.map((emoji) => h("span", {class: "reaction"}, emoji))) : null));
}

function daySeparator(item) {
  return h("li", {class: "day-separator", dataset: {day: item.day}}, h("span", {}, item.label));
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

/** The conversation's rows in order: a separator before each day's first message, then its messages. */
export function conversationItems(messages, reasonsShown, now = new Date()) {
  const reactions = reactionsOf(messages);
  const byProviderId = new Map(messages.map((message) => [message.provider_message_id, message]));
  const shown = messages.filter((message) => message.type !== "reaction" || !byProviderId.has(message.reaction_to));
  shown.sort((a, b) => (a.timestamp || "").localeCompare(b.timestamp || "") || a.id - b.id);
  const shownIds = new Set(shown.map((message) => message.id));
  const items = [];
  let day = null;
  for (const message of shown) {
    if (message.timestamp) {
      const key = dayKey(new Date(message.timestamp));
      if (key !== day) {
        day = key;
        items.push({id: `day-${key}`, day: key, label: dayLabel(message.timestamp, now)});
      }
    }
    const quoted = message.quoted_message_id ? byProviderId.get(message.quoted_message_id) : null;
    items.push({
      id: message.id, message,
      reactions: reactions.get(message.provider_message_id) || [],
      quote: message.quoted_message_id && message.type !== "reaction"
        ? quoteOf(message, quoted && shownIds.has(quoted.id) ? quoted : null) : null,
      reasonShown: reasonsShown.has(message.id),
    });
  }
  return items;
}

// --- the page ---------------------------------------------------------------------------------------

function instanceLabel(instance) {
  return `${instance.name || instance.instance_id} · ${instance.provider}`;
}

export function mount(container, params) {
  const instanceSelect = h("select", {id: "chats-instance", name: "instance"});
  const list = h("ul", {class: "chat-list", "aria-label": t("chats.list")});
  const broadcastList = h("ul", {class: "chat-list broadcast-list", "aria-labelledby": "broadcasts-title"});
  const broadcasts = h("section", {class: "broadcasts", hidden: true},
    h("h2", {id: "broadcasts-title"}, t("chats.status_and_channels")), broadcastList);
  const conversation = h("section", {class: "conversation", "aria-live": "polite"});
  const layout = h("div", {class: "chats-layout"}, h("nav", {class: "chat-list-pane", "aria-label": t("chats.list")},
    h("h1", {}, t("chats.title")),
    h("div", {class: "chat-filter"}, h("label", {for: "chats-instance"}, t("chats.instance")), instanceSelect),
    list, broadcasts), conversation);
  container.append(layout);

  // The two panes fill the screen below the header, whatever its height: on a phone its links wrap
  // to two or three lines, and a fixed guess would push the newest messages below the fold.
  function fitHeight() {
    const top = layout.getBoundingClientRect().top + window.scrollY;
    const gap = parseFloat(getComputedStyle(container).paddingBottom) || 0;
    layout.style.height = `${Math.floor(window.innerHeight - top - gap)}px`;
  }
  fitHeight();
  window.addEventListener("resize", fitHeight);

  let chats = [];
  const known = new Map();  // chat id -> chat, also those the instance filter hides now
  let instances = [];
  let instanceFilter = localStorage.getItem(INSTANCE_KEY) || "";
  let selected = params[0] || null;
  let messageList = null;
  let rendered = new Map();  // row id -> {element, signature}
  let messages = [];
  const reasonsShown = new Set();  // failed messages whose reason was asked for

  function chatItem(chat) {
    return h("li", {},
      h("a", {href: `#/chats/${chat.id}`, class: "chat-item", "aria-current": String(chat.id) === selected ? "true" : null,
        dataset: {chatId: chat.id, kind: chat.kind}},
        h("span", {class: "chat-name"}, h("span", {class: "chat-name-text"}, chatName(chat)), kindBadge(chat)),
        h("time", {class: "chat-time muted", datetime: chat.last_message_at || "", title: formatDateTime(chat.last_message_at)},
          listDate(chat.last_message_at)),
        h("span", {class: "chat-preview muted"}, preview(chat.last_message))));
  }

  function renderList() {
    const sorted = [...chats].sort((a, b) => (b.last_message_at || "").localeCompare(a.last_message_at || ""));
    const talks = sorted.filter((chat) => !BROADCAST_KINDS.includes(chat.kind));
    const posts = sorted.filter((chat) => BROADCAST_KINDS.includes(chat.kind));
    const empty = instanceFilter ? t("chats.none_for_instance") : t("empty.chats");
    replaceChildren(list, talks.length ? talks.map(chatItem) : h("li", {class: "muted empty-list"}, empty));
    replaceChildren(broadcastList, posts.map(chatItem));
    broadcasts.hidden = posts.length === 0;
  }

  function renderInstances() {
    if (instanceFilter && !instances.some((instance) => String(instance.id) === instanceFilter)) instanceFilter = "";
    const options = [["", t("chats.all_instances")], ...instances.map((instance) => [String(instance.id), instanceLabel(instance)])];
    const signature = JSON.stringify(options);
    if (instanceSelect.dataset.signature !== signature) {  // an open drop-down is not rebuilt for nothing
      replaceChildren(instanceSelect, options.map(([value, label]) => h("option", {value}, label)));
      instanceSelect.dataset.signature = signature;
    }
    instanceSelect.value = instanceFilter;
  }

  instanceSelect.addEventListener("change", async () => {
    instanceFilter = instanceSelect.value;
    if (instanceFilter) localStorage.setItem(INSTANCE_KEY, instanceFilter);
    else localStorage.removeItem(INSTANCE_KEY);
    await loadChats();
  });

  async function retry(mediaId) {
    try {
      await post(`/api/media/${mediaId}/retry`);
    } catch (error) {
      console.warn("retry refused", error);
    }
    await loadConversation();
  }

  function jump(messageId) {
    const row = messageList && messageList.querySelector(`li[data-message-id="${messageId}"]`);
    if (!row) return;
    row.scrollIntoView({block: "center", behavior: "smooth"});
    row.classList.add("flash");
    row.querySelector(".bubble").focus({preventScroll: true});
    setTimeout(() => row.classList.remove("flash"), FLASH_MS);
  }

  function toggleReason(messageId) {
    if (reasonsShown.has(messageId)) reasonsShown.delete(messageId);
    else reasonsShown.add(messageId);
    renderConversation();
    const mark = messageList.querySelector(`li[data-message-id="${messageId}"] .ticks-failed`);
    if (mark) mark.focus();  // the bubble was rebuilt: keep the keyboard where it was
  }

  const actions = {retry, jump, toggleReason};

  function conversationHead(chat) {
    const phone = chat.kind === "direct" ? formatPhone(chat.chat_id) : null;
    const details = [phone && phone !== chatName(chat) ? phone : null,
      chat.kind === "group" ? t("chats.group_chat") : null,
      t("chats.on_instance", {instance: chat.instance_id})].filter(Boolean).join(" · ");
    return h("header", {class: "conversation-head"},
      h("a", {href: "#/chats", class: "back"}, "← ", t("chats.back")),
      h("h2", {}, chatName(chat)),
      h("span", {class: "muted conversation-details", title: chat.chat_id}, details));
  }

  function openConversation() {
    rendered = new Map();
    messages = [];
    layout.classList.toggle("has-selection", Boolean(selected));
    const chat = known.get(selected);
    if (!chat) {
      messageList = null;
      replaceChildren(conversation, h("p", {class: "muted empty"}, selected ? t("chats.not_found") : t("chats.pick")));
      return;
    }
    messageList = h("ol", {class: "messages"});
    replaceChildren(conversation, conversationHead(chat), messageList);
  }

  function renderConversation() {
    const chat = known.get(selected);
    if (!chat || !messageList) return;
    const atBottom = messageList.scrollHeight - messageList.scrollTop - messageList.clientHeight < 60;
    syncKeyed(messageList, conversationItems(messages, reasonsShown), rendered,
      (item) => (item.day ? daySeparator(item) : bubble(item, chat, actions)));
    if (atBottom) messageList.scrollTop = messageList.scrollHeight;
  }

  async function loadConversation() {
    const chat = known.get(selected);
    if (!chat || !messageList) return;
    const data = await get(`/api/messages${query({chat: chat.chat_id, instance: chat.instance_id, limit: MESSAGE_LIMIT})}`);
    messages = data.items;
    renderConversation();
  }

  async function loadInstances() {
    instances = (await get("/api/instances")).items;
    renderInstances();
  }

  async function loadChats() {
    chats = (await get(`/api/chats${query({limit: CHAT_LIMIT, instance: instanceFilter})}`)).items;
    for (const chat of chats) known.set(String(chat.id), chat);
    renderList();
  }

  /** A chat opened by its link stays open when the instance filter hides it from the list. */
  async function learnHiddenChats() {
    for (const chat of (await get(`/api/chats${query({limit: CHAT_LIMIT})}`)).items) known.set(String(chat.id), chat);
  }

  async function start() {
    await loadInstances();
    await loadChats();
    if (selected && !known.has(selected) && instanceFilter) await learnHiddenChats();
    openConversation();
    await loadConversation();
  }

  return {
    ready: start(),
    unmount() {
      window.removeEventListener("resize", fitHeight);
    },
    async refresh(changed) {
      if (!["events", "pending", "media"].some((part) => changed.includes(part))) return;
      await loadInstances();
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
