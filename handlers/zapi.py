"""Z-API (api.z-api.io) webhooks.

No envelope: each webhook is a flat object whose ``type`` names the callback
(``ReceivedCallback``, ``DeliveryCallback``, ``MessageStatusCallback``,
``PresenceChatCallback``, ``ConnectedCallback``, ``DisconnectedCallback``;
``ProxyCallback`` for partner accounts), with ``instanceId`` beside it. Z-API
clones (FunnelChat, "Zé da API") send the very same bodies, so this is a wire
format rather than proof of the vendor.

The quirks, each handled below:

* ``momment`` (sic) is epoch milliseconds, except the odd seconds value (the
  DisconnectedCallback example) and doc placeholders; the old docs spell it
  ``moment``. A time before WhatsApp existed or in the future is no time.
* Chats: ``phone`` is a bare number, ``<id>-group``, ``<n>-broadcast``,
  ``<id>@newsletter`` or ``<id>@lid``; ``chatLid`` / ``senderLid`` and, in
  groups, ``participantPhone`` / ``participantLid`` show LID ↔ phone links.
* A ReceivedCallback holds its content in one object named after its kind
  (``text``, ``image``, ``ptv``, ``liveLocation``, ``pollVote``...); the kind
  is found by the keys present, with a fallback for kinds not listed here.
  Notifications (group changes, calls, revokes, profile changes) have no
  content but ``notification``: they are stored under that name, and only a
  ``REVOKE`` changes anything (it deletes the message it names). A "waiting for
  this message" placeholder has no content yet. An edit (``isEdit``) carries
  the new content and two ids, ``messageId`` and the undocumented
  ``editMessageId``; which one is the edited message is not documented, so
  the edit is applied to whichever of them is stored.
* ``MessageStatusCallback`` batches several ``ids``; ``READ_BY_ME`` says that
  we read the contact's messages (on a linked device): it is recorded as "read"
  on those incoming messages, never as a status of a message we sent.
* ``DeliveryCallback`` is one of our sends reaching WhatsApp ("sent"), or its
  failure with ``error`` (and ``errorCode``, e.g. SHADOW_BAN).
* Bodies may come gzipped (``Content-Encoding: gzip``, undone by the view),
  and real deliveries carry the instance token in a ``z-api-token`` header
  (see :attr:`Provider.instance_token_header`).

Its API puts the instance id and the instance token in the path
(``/instances/{id}/token/{token}/...``) and takes the account's security
token in a ``Client-Token`` header: it sends texts (``send-text``) and sets
the webhook URLs (``PUT update-webhook-<kind>``, HTTPS URLs only). Media
needs no API: Z-API hosts the decrypted files at direct URLs (``imageUrl``,
``audioUrl``...) that it deletes after 30 days.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Optional
from urllib.parse import quote

from codes import Text, say
from security import redact_values
from storage.fetch import MediaJob, Unavailable, raise_for_provider, stream_plain
from storage.http import open_stream
from storage.register import call, refused_in_body
from storage.send import SendError, SendTarget, no_message_id, post_json, refused

from . import proto
from .base import (
    KIND_CONNECTION, KIND_EDIT, KIND_MESSAGE, KIND_PRESENCE, KIND_STATUS, STATUS_BROADCAST_JID, STATUS_FAILED,
    ConnectionEvent, DeleteEvent, EditEvent, MediaDescriptor, MessageEvent, Normalised, PresenceEvent,
    RouteHint, StatusEvent, as_dict, as_list, build_result, chat_kind_of, first_text, is_group_jid, lid_alias,
    normalize_jid, normalize_presence, parse_timestamp, require_instance_id, text_or_none, to_bool, to_float,
    to_int,
)
from .provider import ApiAccess, MediaDownload, Provider, Setting, WebhookUrl

NAME = "zapi"
LABEL = "Z-API"

RECEIVED = "ReceivedCallback"
DELIVERY = "DeliveryCallback"
MESSAGE_STATUS = "MessageStatusCallback"
PRESENCE = "PresenceChatCallback"
CONNECTED = "ConnectedCallback"
DISCONNECTED = "DisconnectedCallback"
PROXY = "ProxyCallback"

# Z-API's status words -> zaphook's statuses. READ_BY_ME (we read their
# message; "READ-SELF" before July 2025) is handled apart, see _status_events.
STATUSES = {
    "PENDING": "pending",
    "SENT": "sent",
    "RECEIVED": "delivered",
    "READ": "read",
    "PLAYED": "played",
    "READ_BY_ME": "read",
    "READ-SELF": "read",
}
READ_BY_ME = ("READ_BY_ME", "READ-SELF")

GROUP_SUFFIX = "-group"
BROADCAST_SUFFIX = "-broadcast"
# No WhatsApp message is older than WhatsApp; a time ahead of now is a placeholder.
EARLIEST = datetime(2009, 1, 1)
FUTURE_SLACK = timedelta(days=1)


def detect(payload: dict, hint: RouteHint) -> bool:
    callback = payload.get("type")
    return isinstance(callback, str) and callback.strip().lower().endswith("callback") \
        and isinstance(payload.get("instanceId"), str)


def parse(payload: dict, hint: RouteHint) -> Normalised:
    instance_id = require_instance_id(payload.get("instanceId"))
    name = first_text(payload.get("type"))
    callback = _CALLBACK_NAMES.get((name or "").strip().lower())
    if callback is None:
        return build_result(NAME, instance_id, [], name, ignored_reason=f"callback not handled: {name}")
    return _HANDLERS[callback](payload, instance_id, callback)


# --- shared readers ----------------------------------------------------------------

def moment(payload: dict) -> Optional[datetime]:
    """The callback's time: ``momment`` in ms (or seconds), ``moment`` in old examples; None when implausible."""
    raw = payload.get("momment")
    if raw is None:
        raw = payload.get("moment")
    return plausible(parse_timestamp(raw))


def plausible(at: Optional[datetime]) -> Optional[datetime]:
    """The time, unless it is before WhatsApp existed or ahead of now (a doc placeholder such as 26151515154).

    Such a time must not be stored: a connection state dated in the year 2798
    would outrank every later one.
    """
    if at is None or at < EARLIEST or at > datetime.now(timezone.utc).replace(tzinfo=None) + FUTURE_SLACK:
        return None
    return at


def chat_jid(raw: Any, is_group: bool = False) -> Optional[str]:
    """The JID of a chat as Z-API's ``phone`` names it.

    "5544999999999" → phone JID; "120363…-group" → "120363…@g.us";
    "1774895799-broadcast" → "1774895799@broadcast" (a broadcast list);
    "…@newsletter" and "…@lid" as they are; "status" → status@broadcast.
    """
    text = first_text(raw)
    if text is None:
        return None
    text = text.strip()
    lower = text.lower()
    if lower.endswith(GROUP_SUFFIX):
        return normalize_jid(text[: -len(GROUP_SUFFIX)], is_group=True)
    if lower.endswith(BROADCAST_SUFFIX):
        return normalize_jid(f"{text[: -len(BROADCAST_SUFFIX)]}@broadcast")
    if lower == "status":
        return STATUS_BROADCAST_JID
    return normalize_jid(text, is_group=is_group and "@" not in text)


def _person(raw: Any) -> Optional[str]:
    """A person's JID from a phone or LID field; a group id or a placeholder text is no person."""
    jid = normalize_jid(first_text(raw))
    return None if jid is None or is_group_jid(jid) else jid


def _positive(value: Any) -> Optional[int]:
    """Z-API writes 0 for a size or duration it does not know."""
    number = to_int(value)
    return number if number else None


# --- ReceivedCallback ----------------------------------------------------------------

def _received(payload: dict, instance_id: str, callback: str) -> Normalised:
    notification = first_text(payload.get("notification"))
    if notification is not None:
        return _notification(payload, instance_id, notification.strip())
    key, node = content_node(payload)
    if key is None and to_bool(payload.get("waitingMessage")):
        return build_result(NAME, instance_id, [], callback, empty_kind=KIND_MESSAGE, ignored_reason=(
            "waiting for this message: WhatsApp has not delivered its content yet "
            "(it comes in a later callback)"))
    content = parse_content(key, node)
    context = _MessageContext(payload)
    if to_bool(payload.get("isEdit")):
        return _edit(payload, instance_id, callback, content, context)
    content.quoted_message_id = first_text(payload.get("referenceMessageId"), content.quoted_message_id)
    content.forwarded = to_bool(payload.get("forwarded"))
    events = proto.message_events(
        content,
        message_id=first_text(payload.get("messageId")),
        chat_id=context.chat_id,
        from_me=context.from_me,
        event_name=callback,
        timestamp=moment(payload),
        is_group=context.is_group,
        sender_id=context.sender_id,
        sender_name=_name(payload.get("senderName"), context.sender_id),
        chat_name=_name(payload.get("chatName"), context.chat_id),
        status=_initial_status(payload, context.from_me),
    )
    for event in events:
        if isinstance(event, MessageEvent):
            event.aliases = context.aliases
    return build_result(NAME, instance_id, events, callback)


class _MessageContext:
    """Who and where a ReceivedCallback is: its chat, author and the LID links it shows."""

    def __init__(self, payload: dict) -> None:
        self.from_me = bool(to_bool(payload.get("fromMe")))
        raw_chat = payload.get("phone")
        self.is_group = bool(to_bool(payload.get("isGroup"))) or (
            isinstance(raw_chat, str) and raw_chat.strip().lower().endswith(GROUP_SUFFIX))
        chat_id = chat_jid(raw_chat, self.is_group)
        self.is_group = self.is_group or is_group_jid(chat_id)
        own_id = _person(payload.get("connectedPhone"))
        one_to_one = not self.is_group and chat_id is not None and chat_kind_of(chat_id) is None \
            and not chat_id.endswith("@broadcast")
        chat_alias = author_alias = None
        if one_to_one:
            # chatLid is the chat's LID whoever wrote; senderLid is the author's, so ours in our messages.
            chat_ids = [raw_chat, payload.get("chatLid")]
            if not self.from_me:
                chat_ids.append(payload.get("senderLid"))
            chat_alias = lid_alias(*chat_ids, own_id=own_id)
        if self.is_group:
            author_alias = lid_alias(payload.get("participantPhone"), payload.get("participantLid"), own_id=own_id)
        self.aliases = tuple(dict.fromkeys(alias for alias in (chat_alias, author_alias) if alias))
        if chat_alias and chat_id == chat_alias.alias_jid:
            chat_id = chat_alias.phone_jid
        self.chat_id = chat_id
        participant = _person(first_text(payload.get("participantPhone"), payload.get("participantLid")))
        if author_alias and participant == author_alias.alias_jid:
            participant = author_alias.phone_jid
        if self.from_me:
            self.sender_id = own_id or (participant if self.is_group else None)
        elif self.is_group:
            self.sender_id = participant
        elif chat_id is not None and chat_id.endswith("@newsletter"):
            self.sender_id = chat_id  # a channel is its own author
        elif chat_id is not None and chat_kind_of(chat_id) is None and not chat_id.endswith("@broadcast"):
            self.sender_id = chat_id
        else:
            self.sender_id = participant


def _name(value: Any, jid: Optional[str]) -> Optional[str]:
    """A name, unless it is only the number again (Z-API's senderName when the person set none)."""
    name = first_text(value)
    if name is None or (jid and name.strip().lstrip("+") == jid.split("@", 1)[0]):
        return None
    return name


def _initial_status(payload: dict, from_me: bool) -> Optional[str]:
    """The message's status when it came: only PENDING or SENT are believed, and only for ours.

    Z-API says RECEIVED in every callback of a message received, and in our
    own messages too the moment they are sent: statuses come by MessageStatusCallback.
    """
    word = first_text(payload.get("status"))
    status = STATUSES.get(word.strip().upper()) if word else None
    return status if from_me and status in ("pending", "sent") else None


def _edit(payload: dict, instance_id: str, callback: str, content: proto.MessageContent,
          context: _MessageContext) -> Normalised:
    text = content.text if content.text is not None else content.caption
    if text is None:
        return build_result(NAME, instance_id, [], callback, empty_kind=KIND_EDIT,
                            ignored_reason="edit without a new text or caption")
    targets = dict.fromkeys(filter(None, (first_text(payload.get("editMessageId")),
                                          first_text(payload.get("messageId")))))
    events = [EditEvent(message_id=target, text=text, timestamp=moment(payload), chat_id=context.chat_id)
              for target in targets]
    return build_result(NAME, instance_id, events, callback, empty_kind=KIND_EDIT,
                        ignored_reason=None if events else "edit without a message id")


# Notifications that change nothing zaphook keeps, by prefix: why they are only stored.
_NOTIFICATION_REASONS = (
    ("GROUP_", "group membership and settings are not kept"),
    ("MEMBERSHIP_APPROVAL", "group membership requests are not kept"),
    ("REVOKED_MEMBERSHIP", "group membership requests are not kept"),
    ("CALL_", "calls are not kept"),
    ("NEWSLETTER_", "channel roles are not kept"),
    ("PROFILE_", "the instance's own profile is not kept"),
    ("CHAT_LABEL", "labels are not kept"),
)


def _notification(payload: dict, instance_id: str, notification: str) -> Normalised:
    """A notification, stored under its own name; REVOKE deletes the message it names."""
    if notification.upper() == "REVOKE":
        message_id = first_text(payload.get("messageId"))
        if message_id is None:
            return build_result(NAME, instance_id, [], notification, ignored_reason="REVOKE names no message")
        chat_id = _MessageContext(payload).chat_id
        return build_result(NAME, instance_id, [
            DeleteEvent(message_id=message_id, timestamp=moment(payload), chat_id=chat_id)], notification)
    why = next((reason for prefix, reason in _NOTIFICATION_REASONS if notification.upper().startswith(prefix)),
               "zaphook makes nothing of it")
    return build_result(NAME, instance_id, [], notification, ignored_reason=f"notification {notification}: {why}")


# --- ReceivedCallback content -------------------------------------------------------------

def content_node(payload: dict) -> tuple[Optional[str], dict]:
    """The key and object holding the message's content: a known kind first, else any other object.

    A status reply carries its ``text`` and the status it answers
    (``statusImage``...): the text is the message.
    """
    for key in _CONTENT:
        if isinstance(payload.get(key), dict):
            return key, payload[key]
    for key, value in payload.items():
        if isinstance(value, dict) and key not in _NOT_CONTENT:
            return key, value
    return None, {}


def parse_content(key: Optional[str], node: dict) -> proto.MessageContent:
    if key is None:
        return proto.MessageContent()
    parser = _CONTENT.get(key)
    if parser is None:
        content = proto.MessageContent(type=key, text=_visible_text(node))
    else:
        content = parser(node)
    content.raw_type = key
    return content


def _text(node: dict) -> proto.MessageContent:
    return proto.MessageContent(type="text", text=text_or_none(node.get("message")))


def _media(media_type: str, url_key: str) -> Callable[[dict], proto.MessageContent]:
    def parse(node: dict) -> proto.MessageContent:
        media = MediaDescriptor(
            media_type=media_type,
            mimetype=first_text(node.get("mimeType")),
            file_name=first_text(node.get("fileName")),
            url=first_text(node.get(url_key)),
            caption=first_text(node.get("caption")),
            width=_positive(node.get("width")),
            height=_positive(node.get("height")),
            seconds=_positive(node.get("seconds")),
            is_voice=bool(to_bool(node.get("ptt"))),
        )
        return proto.MessageContent(type=media_type, caption=media.caption, media=media)
    return parse


def _location(node: dict) -> proto.MessageContent:
    return proto.MessageContent(
        type="location",
        latitude=to_float(node.get("latitude")),
        longitude=to_float(node.get("longitude")),
        location_name=first_text(node.get("name"), node.get("address")),
        caption=first_text(node.get("caption")),
    )


def _contact(node: dict) -> proto.MessageContent:
    card = {"name": first_text(node.get("displayName")), "vcard": first_text(node.get("vCard"), node.get("vcard"))}
    return proto.MessageContent(type="contact", contacts=[card])


def _reaction(node: dict) -> proto.MessageContent:
    emoji = node.get("value")
    return proto.MessageContent(
        type="reaction",
        reaction_to=first_text(as_dict(node.get("referencedMessage")).get("messageId")),
        reaction_emoji=emoji if isinstance(emoji, str) else None,  # "" removes the reaction
    )


def _poll(node: dict) -> proto.MessageContent:
    return proto.MessageContent(type="poll", text=first_text(node.get("question"), node.get("name")))


def _poll_vote(node: dict) -> proto.MessageContent:
    """A vote: the options chosen, as a reply to the poll (a selection, like a list reply)."""
    chosen = [first_text(as_dict(option).get("name")) for option in as_list(node.get("options"))]
    return proto.MessageContent(type="interactive", text=", ".join(filter(None, chosen)) or None,
                                quoted_message_id=first_text(node.get("pollMessageId")))


def _interactive(text_keys: tuple[str, ...], id_key: Optional[str] = None) -> Callable[[dict], proto.MessageContent]:
    def parse(node: dict) -> proto.MessageContent:
        return proto.MessageContent(type="interactive", text=first_text(*(node.get(key) for key in text_keys)),
                                    interactive_id=first_text(node.get(id_key)) if id_key else None)
    return parse


def _visible_text(node: dict) -> Optional[str]:
    """What a person sees of a kind zaphook has no parser for (products, orders, events...)."""
    return first_text(*(node.get(key) for key in ("message", "text", "title", "name", "orderTitle", "response")))


# The content kinds, in the order they are looked for (a status reply's text before its status).
_CONTENT: dict[str, Callable[[dict], proto.MessageContent]] = {
    "text": _text,
    "image": _media("image", "imageUrl"),
    "audio": _media("audio", "audioUrl"),
    "video": _media("video", "videoUrl"),
    "ptv": _media("video", "ptvUrl"),  # a round video note; the docs show it under "video"
    "document": _media("document", "documentUrl"),
    "sticker": _media("sticker", "stickerUrl"),
    "location": _location,
    "liveLocation": _location,
    "contact": _contact,
    "reaction": _reaction,
    "poll": _poll,
    "pollVote": _poll_vote,
    "buttonsResponseMessage": _interactive(("message",), "buttonId"),
    "listResponseMessage": _interactive(("title", "message"), "selectedRowId"),
    "buttonsMessage": _interactive(("message",)),
    "hydratedTemplate": _interactive(("message", "title")),
    "carouselMessage": _interactive(("text",)),
    "statusImage": _media("image", "imageUrl"),
    "statusVideo": _media("video", "videoUrl"),
    "statusAudio": _media("audio", "audioUrl"),
}
# Objects beside the content that are not content.
_NOT_CONTENT = frozenset({"externalAdReply", "referencedMessage", "paymentInfo"})


# --- the other callbacks ------------------------------------------------------------------

def _delivery(payload: dict, instance_id: str, callback: str) -> Normalised:
    """One of our sends reached WhatsApp ("sent"), or failed with ``error``."""
    message_id = first_text(payload.get("messageId"), payload.get("zaapId"))
    if message_id is None:
        return build_result(NAME, instance_id, [], callback, empty_kind=KIND_STATUS,
                            ignored_reason="delivery without a message id")
    error = first_text(payload.get("error"))
    code = first_text(payload.get("errorCode"))
    if error is not None and code is not None:
        error = f"{error} ({code})"
    elif error is None and code is not None:
        error = code
    return build_result(NAME, instance_id, [StatusEvent(
        message_id=message_id,
        status=STATUS_FAILED if error is not None else "sent",
        timestamp=moment(payload),
        chat_id=chat_jid(payload.get("phone")),
        error=error,
    )], callback)


def _status_events(payload: dict, instance_id: str, callback: str) -> Normalised:
    """One status for every id of the batch.

    READ_BY_ME names the contact's messages, which we read: "read" on them,
    given without their chat so that it can never be taken for the echo of a
    campaign message still waiting for its id.
    """
    word = (first_text(payload.get("status")) or "").strip().upper()
    status = STATUSES.get(word)
    if status is None:
        return build_result(NAME, instance_id, [], callback, empty_kind=KIND_STATUS,
                            ignored_reason=f"unknown status {word or None}")
    ids = payload.get("ids")
    if ids is None:  # the docs' table calls it "id"
        ids = payload.get("id", payload.get("messageId"))
    ids = ids if isinstance(ids, list) else [ids]
    message_ids = list(dict.fromkeys(filter(None, (first_text(item) for item in ids))))
    chat_id = None if word in READ_BY_ME else chat_jid(payload.get("phone"), bool(to_bool(payload.get("isGroup"))))
    at = moment(payload)
    events = [StatusEvent(message_id=message_id, status=status, timestamp=at, chat_id=chat_id)
              for message_id in message_ids]
    return build_result(NAME, instance_id, events, callback, empty_kind=KIND_STATUS,
                        ignored_reason=None if events else "status without message ids")


def _presence(payload: dict, instance_id: str, callback: str) -> Normalised:
    """``{phone, status: AVAILABLE|UNAVAILABLE|COMPOSING|PAUSED|RECORDING, lastSeen}``: no time, no id."""
    chat_id = chat_jid(payload.get("phone"))
    state = normalize_presence(payload.get("status"))
    if chat_id is None or state is None:
        return build_result(NAME, instance_id, [], callback, empty_kind=KIND_PRESENCE,
                            ignored_reason="presence without a chat" if chat_id is None
                            else f"unknown presence {payload.get('status')!r}")
    participant = _person(payload.get("participantPhone")) or (None if is_group_jid(chat_id) else chat_id)
    return build_result(NAME, instance_id, [PresenceEvent(
        chat_id=chat_id, state=state, participant_id=participant, timestamp=moment(payload))], callback)


def _connected(payload: dict, instance_id: str, callback: str) -> Normalised:
    connected = to_bool(payload.get("connected"), default=True)
    return build_result(NAME, instance_id, [ConnectionEvent(
        state="connected" if connected else "disconnected",
        timestamp=moment(payload),
        own_id=_person(payload.get("phone")),
    )], callback)


def _disconnected(payload: dict, instance_id: str, callback: str) -> Normalised:
    return build_result(NAME, instance_id, [ConnectionEvent(
        state="disconnected", timestamp=moment(payload), reason=first_text(payload.get("error")),
    )], callback, empty_kind=KIND_CONNECTION)


def _proxy(payload: dict, instance_id: str, callback: str) -> Normalised:
    # Its error text quotes the proxy URL with its password: it is not copied anywhere.
    return build_result(NAME, instance_id, [], callback, ignored_reason=(
        "ProxyCallback: the instance's proxy failed and it connected without it (partner accounts)"))


_HANDLERS = {
    RECEIVED: _received,
    DELIVERY: _delivery,
    MESSAGE_STATUS: _status_events,
    PRESENCE: _presence,
    CONNECTED: _connected,
    DISCONNECTED: _disconnected,
    PROXY: _proxy,
}
# The docs' tables spell it "ReceivedCallBack": names are compared in lower case.
_CALLBACK_NAMES = {name.lower(): name for name in _HANDLERS}


# --- its API (network) ----------------------------------------------------------------------

CLIENT_TOKEN_SETTING = "ZAPI_CLIENT_TOKEN"


def endpoint(base_url: str, instance_id: str, token: str, path: str) -> str:
    """``{base}/instances/{id}/token/{token}/{path}``: the token is in the path, so never show this URL."""
    return (f"{base_url.rstrip('/')}/instances/{quote(instance_id, safe='')}"
            f"/token/{quote(token, safe='')}/{path}")


def _client_token(settings: Optional[Mapping[str, Any]]) -> Optional[str]:
    return (settings or {}).get(CLIENT_TOKEN_SETTING) or None


def _headers(client_token: Optional[str]) -> dict:
    return {"Client-Token": client_token} if client_token else {}


def send_text(target: SendTarget, phone: str, text: str) -> str:
    """``POST .../send-text`` with ``{phone, message}``; the answer's ``messageId``.

    That id is WhatsApp's: DeliveryCallback and MessageStatusCallback name the
    message by it (``zaapId`` is Z-API's own). Error texts never show the URL's token.
    """
    if not target.token:
        raise SendError("no Z-API instance token for this instance (set its api_token, or ZAPI_TOKEN)",
                        code="no_token", params={"setting": "ZAPI_TOKEN"})
    client_token = _client_token(target.settings)
    secrets = [target.token, client_token, quote(target.token, safe="")]
    url = endpoint(target.base_url, target.instance, target.token, "send-text")
    try:
        status, data = post_json(target, url, _headers(client_token), {"phone": phone, "message": text})
        if status >= 400 or (isinstance(data, dict) and data.get("error") not in (None, False, "")):
            raise refused(LABEL, status, data)
        message_id = None
        if isinstance(data, dict):
            message_id = first_text(data.get("messageId"), data.get("id"))
        if message_id is None:
            raise no_message_id(LABEL, data)
    except SendError as exc:
        raise exc.redacted(lambda text: redact_values(text, secrets)) from None
    return message_id


def _media_needs(job: MediaJob) -> Optional[Text]:
    return None if job.url else say("media_error.no_file_url", provider="Z-API")


def fetch_media(job: MediaJob, out, config, tick):
    """GET the direct URL Z-API put in the payload: a plain file, no credentials."""
    response = open_stream("GET", job.url, allowed=config.allowed_hosts(job.api_base_url), limits=config.limits)
    if response.status_code in (401, 403, 404, 410):
        response.close()
        raise Unavailable(say("media_error.zapi_file_gone", status=response.status_code), response.status_code)
    raise_for_provider(response, say("media_error.who.file_url", provider="Z-API"))
    return stream_plain(response, out, config, tick, file_length=job.file_length)


# One URL for every callback: the body's "type" names it.
WEBHOOK_URL = WebhookUrl("all", "every callback (in each webhook field)", "/webhook/zapi/", NAME)
# What register sets, each to that URL. "received-delivery" is "received" with
# notify-sent-by-me on: our own messages (typed on the phone, sent by
# campaigns) come back as ReceivedCallback with fromMe.
WEBHOOK_KINDS = ("received-delivery", "delivery", "message-status", "chat-presence", "connected", "disconnected")


def register(api_base: str, token: str, instance_id: str, urls: Mapping[str, str],
             settings: Optional[Mapping[str, Any]] = None, **_options) -> list[dict]:
    """``PUT .../update-webhook-<kind>`` with ``{"value": url}``, one per kind.

    Z-API calls HTTPS URLs only: an http:// URL is not sent (each result says why).
    """
    url = urls[WEBHOOK_URL.key]
    client_token = _client_token(settings)
    secrets = [token, client_token, quote(token, safe="")]
    results = []
    for kind in WEBHOOK_KINDS:
        result = {"provider": NAME, "instance": instance_id, "event": kind, "url": url}
        if not url.lower().startswith("https://"):
            result.update(ok=False, status=None, answer="not sent: Z-API only calls HTTPS webhook URLs "
                                                        "(use the tunnel's https URL, --base-url or PUBLIC_URL)")
            results.append(result)
            continue
        status, answer = call("PUT", endpoint(api_base, instance_id, token, f"update-webhook-{kind}"),
                              _headers(client_token), {"value": url})
        result.update(ok=_accepted(status, answer), status=status, answer=redact_values(answer, secrets))
        results.append(result)
    return results


def _accepted(status: Optional[int], answer: str) -> bool:
    """Z-API answers ``{"value": true}``; a 200 with ``{"value": false}`` or an ``error`` is a refusal."""
    if status is None or status >= 400 or refused_in_body(answer):
        return False
    try:
        data = json.loads(answer)
    except ValueError:
        return True
    return not (isinstance(data, dict) and data.get("value") is False)


PROVIDER = Provider(
    name=NAME,
    label=LABEL,
    detect=detect,
    parse=parse,
    statuses=STATUSES,
    settings=(
        Setting("ZAPI_BASE_URL", "https://api.z-api.io", "url"),
        Setting("ZAPI_TOKEN", "", "secret"),
        Setting(CLIENT_TOKEN_SETTING, "", "secret"),
    ),
    api=ApiAccess("ZAPI_BASE_URL", "ZAPI_TOKEN"),
    webhook_urls=(WEBHOOK_URL,),
    instance_token_header="z-api-token",
    send_text=send_text,
    media=MediaDownload(fetch=fetch_media, needs=_media_needs, credentials=False),
    # Z-API's files are on Backblaze B2 (f004.backblazeb2.com/file/temp-file-download/...).
    media_hosts=(".backblazeb2.com",),
    register=register,
)
