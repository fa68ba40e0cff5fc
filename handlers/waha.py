"""WAHA (devlikeapro/waha), the self-hosted WhatsApp HTTP API.

Every webhook is an envelope ``{id, timestamp (ms), event, session, metadata,
me, payload, environment, engine}``. ``session`` is the instance; ``me`` is the
session's own account (``null`` until it is authenticated). The envelope grew
over the versions, so only ``event``, ``session`` and ``payload`` are relied
on: 2024 releases send no ``id`` or ``timestamp``, and GOWS 2026.1 sends no
top-level ``engine``.

Ids. WAHA names a message ``{fromMe}_{chat}_{id}[_{participant}]``. An ack
of the same message may come without the ``true_``/``false_`` prefix (NOWEB,
"read on another device"), with a participant suffix that names the
*sender* (group acks), or under the ``@lid`` form of the chat as well as the
``@c.us`` one; edits and revokes name it by the bare id. zaphook keeps one
id per message, the bare WhatsApp id (the ``_data`` key's, Evolution's and
Baileys' own), so a message, its acks, reactions, edits, revokes and the id
``sendText`` answered all meet (see :func:`split_id`).

``payload._data`` is the engine's raw message: a Baileys WebMessageInfo on
NOWEB (``key``, ``message``, ``pushName``), whatsmeow's ``{Info, Message}``
on GOWS, whatsapp-web.js' message on WEBJS. The proto content and the LID ↔
phone links are read from it when it is there; WAHA's own fields (``body``,
``hasMedia``, ``media``, ``location``, ``vCards``, ``replyTo``) otherwise.

Its API (header ``X-Api-Key``) sends texts (``POST /api/sendText``, after
``GET /api/contacts/check-exists`` for the chat id of the number), serves the
media files its webhooks link to (``/api/files/...``, deleted after
``WHATSAPP_FILES_LIFETIME``, 180 s by default) and keeps the webhooks in the
session's config (``GET`` / ``PUT /api/sessions/{session}``). With an HMAC key
it signs each webhook: ``X-Webhook-Hmac``, the hex HMAC-SHA512 of the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Optional
from urllib.parse import quote, unquote, urlsplit

from codes import Text, say
from security import check_hmac_signature
from storage.decrypt import decode_digest
from storage.fetch import MediaJob, provider_message, raise_for_provider, stream_plain
from storage.http import (
    DownloadError, Limits, check_url, entries_for_urls, entry_for_url, open_stream, read_chunks, shown_url,
)
from storage.register import LIMITS as REGISTER_LIMITS
from storage.send import MAX_ANSWER, SendError, SendTarget, network_error, no_message_id, post_json, refused

from . import proto
from .base import (
    KIND_CONNECTION, KIND_PRESENCE, KIND_STATUS, MEDIA_TYPES, STATUS_FAILED, ConnectionEvent,
    ContactEvent, DeleteEvent, EditEvent, MediaDescriptor, MessageEvent, Normalised, PayloadError, PresenceEvent,
    QrCodeEvent, RouteHint, StatusEvent, as_dict, as_list, build_result, chat_kind_of, first_text,
    is_group_jid, normalize_jid, normalize_presence, normalize_status, parse_timestamp, quote_snippet,
    require_instance_id, status_rank, text_or_none, to_bool, to_float,
)
from .provider import ApiAccess, MediaDownload, Provider, Setting, Signature, WebhookUrl

NAME = "waha"
LABEL = "WAHA"

# WAHA's event names are lower-case words joined by dots ("message.ack.group").
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9]*(?:\.[a-z0-9]+)*$")

# ack -1..4 (enum WAMessageAck) and its ackName words.
ACK_CODES = {-1: STATUS_FAILED, 0: "pending", 1: "sent", 2: "delivered", 3: "read", 4: "played"}
ACK_NAMES = {"ERROR": STATUS_FAILED, "PENDING": "pending", "SERVER": "sent", "DEVICE": "delivered",
             "READ": "read", "PLAYED": "played"}

# The dedupe name of every message-like event: WAHA posts one message as
# "message" and again as "message.any" (and a reaction as "message.reaction"
# too on older NOWEB), and a copy must be a duplicate, not a second apply.
MESSAGE_EVENT_NAME = "message"


def detect(payload: dict, hint: RouteHint) -> bool:
    """``{event: "a.b", session: "...", payload: {...}}``; Evolution has ``data`` instead of ``payload``."""
    if hint.route == NAME:
        return True
    event = payload.get("event")
    return isinstance(event, str) and bool(_EVENT_NAME.match(event)) \
        and isinstance(payload.get("session"), str) and isinstance(payload.get("payload"), dict)


@dataclass(frozen=True)
class Envelope:
    """What the envelope says besides the event: the session's own ids and when WAHA sent it."""

    own_id: Optional[str]  # me.id, as a phone JID
    sent_at: Optional[datetime]  # the envelope's timestamp (ms), absent before 2025.3.1


def parse(payload: dict, hint: RouteHint) -> Normalised:
    session = require_instance_id(payload.get("session"))
    event = first_text(payload.get("event"))
    if event is None:
        return build_result(NAME, session, [], ignored_reason="missing event name")
    envelope = Envelope(own_id=normalize_jid(as_dict(payload.get("me")).get("id")),
                        sent_at=parse_timestamp(payload.get("timestamp")))
    handler = _HANDLERS.get(event)
    if handler is None:
        return build_result(NAME, session, [], event, ignored_reason=ignored_reason(event))
    return handler(as_dict(payload.get("payload")), envelope, session, event)


# Events zaphook keeps as received without normalising them, and why (by name, then by prefix).
_IGNORED = {
    "message.waiting": "WhatsApp has not delivered this message's content yet (\"Waiting for this "
                       "message\"); the message itself arrives later",
    "poll.vote.failed": "WAHA could not decrypt this poll vote",
    "chat.archive": "zaphook does not keep the archived state of chats",
    "engine.event": "a low-level engine event, for debugging",
    "state.change": "deprecated: session.status says the same",
}
_IGNORED_PREFIXES = (
    ("group.", "zaphook does not keep group membership or settings"),
    ("call.", "zaphook does not keep calls"),
    ("label.", "zaphook does not keep labels"),
    ("event.response", "zaphook does not keep event RSVPs"),
)


def ignored_reason(event: str) -> str:
    why = _IGNORED.get(event) or next((text for prefix, text in _IGNORED_PREFIXES if event.startswith(prefix)),
                                      None)
    return f"event not handled: {event}" + (f" ({why})" if why else "")


# --- ids ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SerializedId:
    """The parts of a WAHA message id; ``message_id`` is the bare WhatsApp id zaphook keeps."""

    message_id: Optional[str]
    chat: Optional[str] = None
    from_me: Optional[bool] = None
    participant: Optional[str] = None


def split_id(value: Any) -> SerializedId:
    """Read ``[true_|false_]{chat}_{id}[_{participant}]``, or a bare ``{id}``.

    The chat is the part with an "@"; the id follows it; a last part with an
    "@" is the participant (in group acks: the message's sender, not the
    reader). ``_serialized`` objects (WEBJS) are read too.
    """
    if isinstance(value, dict):
        value = value.get("_serialized") or value.get("id")
    text = text_or_none(value)
    if text is None or not text.strip():
        return SerializedId(None)
    parts = text.strip().split("_")
    from_me = None
    if len(parts) > 1 and parts[0] in ("true", "false"):
        from_me, parts = parts[0] == "true", parts[1:]
    if "@" not in parts[0]:
        return SerializedId("_".join(parts), from_me=from_me)
    chat, rest = parts[0], parts[1:]
    participant = None
    if len(rest) > 1 and "@" in rest[-1]:
        participant, rest = rest[-1], rest[:-1]
    return SerializedId("_".join(rest) or None, chat, from_me, participant)


def message_id_of(value: Any) -> Optional[str]:
    """The bare id of any form of a WAHA message id (None when there is none)."""
    return split_id(value).message_id


# --- messages -------------------------------------------------------------------------------

def _message(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``message`` (theirs) and ``message.any`` (theirs and ours: our own messages only come here)."""
    return build_result(NAME, session, message_events(body, envelope), event)


def message_events(body: dict, envelope: Envelope) -> list:
    """The events of one WAHA message (a MessageEvent, or the edit/revoke an old NOWEB protocol message is).

    The chat is the engine's own (``_data``), else the id's; ``from``/``to``
    only last (WEBJS puts our number in ``from`` of our messages, NOWEB the
    chat). The author of a group message is ``participant``; ours are by
    ``me.id``. A LID is replaced by the phone ``_data`` shows beside it, and
    the link rides along in ``aliases``.
    """
    ids = split_id(body.get("id"))
    data = as_dict(body.get("_data"))
    key = as_dict(data.get("key"))  # NOWEB: Baileys' WebMessageInfo
    info = as_dict(data.get("Info"))  # GOWS: whatsmeow's MessageInfo
    webjs_id = as_dict(data.get("id"))  # WEBJS: {fromMe, remote, id, participant, _serialized}
    message_id = ids.message_id or first_text(key.get("id"), info.get("ID"), webjs_id.get("id"))
    from_me = _first_bool(body.get("fromMe"), ids.from_me, key.get("fromMe"), info.get("IsFromMe"),
                          webjs_id.get("fromMe"))
    raw_chat = first_text(key.get("remoteJid"), info.get("Chat"), _text_id(webjs_id.get("remote")), ids.chat,
                          _chat_from_ends(body, from_me, envelope))
    chat_id = normalize_jid(raw_chat)
    is_group = is_group_jid(chat_id)
    one_to_one = not is_group and chat_kind_of(chat_id) is None
    raw_participant = first_text(_jid_or_none(body.get("participant")), key.get("participant"),
                                 None if one_to_one else info.get("Sender"), _text_id(webjs_id.get("participant")),
                                 ids.participant)
    chat_alias, author_alias, aliases = proto.key_aliases(
        _alias_key(key, info, raw_chat, one_to_one, from_me), raw_participant,
        one_to_one=one_to_one, from_me=from_me, own_id=envelope.own_id)
    chat_id = _phone_for(chat_id, chat_alias)
    participant_id = _phone_for(normalize_jid(raw_participant), author_alias)
    own = envelope.own_id if from_me else None
    if is_group:
        sender_id = own or participant_id
    elif chat_kind_of(chat_id) is not None:
        sender_id = own or participant_id or (chat_id if chat_id and chat_id.endswith("@newsletter") else None)
    else:
        sender_id = own if from_me else chat_id
    events = proto.message_events(
        message_content(body, data),
        message_id=message_id,
        chat_id=chat_id,
        from_me=from_me,
        event_name=MESSAGE_EVENT_NAME,
        timestamp=parse_timestamp(body.get("timestamp")) or parse_timestamp(data.get("messageTimestamp"))
        or parse_timestamp(info.get("Timestamp")) or parse_timestamp(data.get("t")),
        is_group=is_group,
        sender_id=sender_id,
        sender_name=first_text(data.get("pushName"), info.get("PushName"), data.get("notifyName")),
        status=ack_status(body.get("ack"), body.get("ackName"), from_me),
    )
    for item in events:
        if isinstance(item, MessageEvent):
            item.aliases = aliases
    return events


def message_content(body: dict, data: dict) -> proto.MessageContent:
    """What the message says: the engine's proto content when it has one, completed by WAHA's own fields."""
    message = data.get("message") if isinstance(data.get("message"), dict) else data.get("Message")
    parsed = proto.parse_content(message) if isinstance(message, dict) else proto.MessageContent()
    text = text_or_none(body.get("body"))
    webjs_type = text_or_none(data.get("type"))
    media = as_dict(body.get("media"))
    if to_bool(body.get("hasMedia")) or text_or_none(media.get("url")):
        descriptor = parsed.media or MediaDescriptor(media_type=_media_type(media.get("mimetype"), webjs_type))
        # WAHA's decrypted copy on its own server; directPath (when the proto has it) still points at the CDN.
        descriptor.url = text_or_none(media.get("url"))
        descriptor.mimetype = text_or_none(media.get("mimetype")) or descriptor.mimetype
        descriptor.file_name = text_or_none(media.get("filename")) or descriptor.file_name
        descriptor.is_voice = descriptor.is_voice or webjs_type == "ptt"
        if parsed.media is None:
            parsed.type, parsed.text, parsed.raw_type = descriptor.media_type, None, webjs_type
        parsed.media = descriptor
        parsed.caption = parsed.caption or descriptor.caption or text
        descriptor.caption = parsed.caption
    elif parsed.type == "unknown":
        _from_waha_fields(parsed, body, text, webjs_type)
    elif parsed.type == "text" and parsed.text is None:
        parsed.text = text
    _apply_reply_to(parsed, as_dict(body.get("replyTo")))
    return parsed


def _apply_reply_to(parsed: proto.MessageContent, reply_to: dict) -> None:
    """WAHA's ``replyTo {id, participant, body}``: the quoted message, when the proto content did not say."""
    replied_id = message_id_of(reply_to.get("id"))
    if parsed.quoted_message_id is None:
        parsed.quoted_message_id = replied_id
    if parsed.quoted_text is None and replied_id is not None and parsed.quoted_message_id == replied_id:
        parsed.quoted_text = quote_snippet(reply_to.get("body"))


def _from_waha_fields(parsed: proto.MessageContent, body: dict, text: Optional[str],
                      webjs_type: Optional[str]) -> None:
    """The content of a message without proto content (WEBJS, or an engine's unknown shape)."""
    location = as_dict(body.get("location"))
    cards = [card for card in as_list(body.get("vCards")) if isinstance(card, str) and card]
    parsed.raw_type = parsed.raw_type or webjs_type
    if to_float(location.get("latitude")) is not None and to_float(location.get("longitude")) is not None:
        parsed.type = "location"
        parsed.latitude, parsed.longitude = to_float(location.get("latitude")), to_float(location.get("longitude"))
        parsed.location_name = text_or_none(location.get("description")) or text_or_none(location.get("name"))
    elif cards:
        parsed.type, parsed.contacts = "contact", [{"name": None, "vcard": card} for card in cards]
    elif text is not None or webjs_type in (None, "chat"):
        parsed.type, parsed.text = "text", text
    else:
        parsed.type = webjs_type


_WEBJS_MEDIA_TYPES = {"image": "image", "video": "video", "audio": "audio", "ptt": "audio",
                      "document": "document", "sticker": "sticker"}


def _media_type(mimetype: Any, webjs_type: Optional[str]) -> str:
    """The media type WEBJS names, else the mimetype's (a WebP image is a sticker: photos are JPEG)."""
    if webjs_type in _WEBJS_MEDIA_TYPES:
        return _WEBJS_MEDIA_TYPES[webjs_type]
    kind = (text_or_none(mimetype) or "").split(";", 1)[0].strip().lower()
    if kind == "image/webp":
        return "sticker"
    family = kind.split("/", 1)[0]
    return family if family in MEDIA_TYPES else "document"


def _alias_key(key: dict, info: dict, raw_chat: Optional[str], one_to_one: bool, from_me: bool) -> dict:
    """A Baileys-style key for proto.key_aliases: NOWEB's own, or GOWS' Info in those terms.

    GOWS names the other form of the sender in ``SenderAlt`` and of the
    recipient in ``RecipientAlt``: in a 1:1 chat the chat's other form is the
    sender's in their messages and the recipient's in ours.
    """
    alias_key = dict(key)
    alias_key.setdefault("remoteJid", raw_chat)
    if info:
        if one_to_one:
            alias_key.setdefault("remoteJidAlt", info.get("RecipientAlt") if from_me else info.get("SenderAlt"))
        elif not from_me:
            alias_key.setdefault("participantAlt", info.get("SenderAlt"))
    return alias_key


def _phone_for(jid: Optional[str], alias) -> Optional[str]:
    return alias.phone_jid if alias and jid == alias.alias_jid else jid


def _chat_from_ends(body: dict, from_me: bool, envelope: Envelope) -> Optional[str]:
    """The chat from ``from``/``to``: WEBJS puts our own number in ``from`` of our messages, NOWEB the chat."""
    sender, recipient = _jid_or_none(body.get("from")), _jid_or_none(body.get("to"))
    if sender and sender.endswith(("@g.us", "@newsletter", "@broadcast")):
        return sender
    if from_me:
        for end in (recipient, sender):
            if end and normalize_jid(end) != envelope.own_id:
                return end
    return sender or recipient


def _jid_or_none(value: Any) -> Optional[str]:
    """A JID-looking text ("me" and schema placeholders such as "string" are not ids)."""
    text = text_or_none(value)
    return text if text and "@" in text else None


def _text_id(value: Any) -> Optional[str]:
    """WEBJS writes some ids as ``{server, user, _serialized}`` objects."""
    if isinstance(value, dict):
        return text_or_none(value.get("_serialized"))
    return text_or_none(value)


def _first_bool(*values: Any) -> bool:
    for value in values:
        flag = to_bool(value, default=None)
        if flag is not None:
            return flag
    return False


def ack_status(ack: Any, ack_name: Any, from_me: bool = True) -> Optional[str]:
    """The status an ack (-1..4, or its name) stands for.

    On a message of theirs only read and played mean something: that it
    reached us is why we have it, and WAHA's SERVER/ERROR on it are not
    statuses of ours.
    """
    status = normalize_status(ack, ACK_CODES) if ack is not None else None
    if status is None and isinstance(ack_name, str):
        status = ACK_NAMES.get(ack_name.strip().upper())
    if not from_me and status_rank(status) < status_rank("read"):
        return None
    return status


# --- acks, reactions, edits, revokes, votes ------------------------------------------------------

def _ack(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``message.ack`` and ``message.ack.group``: the id is the acknowledged message's.

    ``fromMe`` is not trusted here: WEBJS says false in the ack of our own
    group message. A READ of a message of theirs (NOWEB: we read it on another
    device) marks it read. GOWS receipts may cover several messages
    (``_data.MessageIDs``): each gets the status.
    """
    ids = split_id(body.get("id"))
    if ids.message_id is None:
        raise PayloadError("missing message id")
    status = ack_status(body.get("ack"), body.get("ackName"))
    if status is None:
        return build_result(NAME, session, [], event, empty_kind=KIND_STATUS,
                            ignored_reason=f"unknown ack: {body.get('ack')!r} ({body.get('ackName')!r})")
    chat_id = normalize_jid(first_text(ids.chat, _jid_or_none(body.get("from"))))
    timestamp = parse_timestamp(body.get("timestamp")) or envelope.sent_at
    message_ids = [ids.message_id] + [text for text in as_list(as_dict(body.get("_data")).get("MessageIDs"))
                                      if isinstance(text, str) and text]
    events = [StatusEvent(message_id=message_id, status=status, timestamp=timestamp, chat_id=chat_id)
              for message_id in dict.fromkeys(message_ids)]
    return build_result(NAME, session, events, event)


def _reaction(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``{id, from, to, participant, fromMe, timestamp, reaction: {text, messageId}}``; "" removes it."""
    ids = split_id(body.get("id"))
    reaction = as_dict(body.get("reaction"))
    target = message_id_of(reaction.get("messageId"))
    if target is None:
        raise PayloadError("missing the id of the message reacted to")
    from_me = _first_bool(body.get("fromMe"), ids.from_me)
    chat_id = normalize_jid(first_text(ids.chat, _chat_from_ends(body, from_me, envelope)))
    if chat_id is None:
        raise PayloadError("missing chat id")
    is_group = is_group_jid(chat_id)
    if from_me:
        sender_id = envelope.own_id
    elif is_group or chat_kind_of(chat_id):
        sender_id = normalize_jid(first_text(_jid_or_none(body.get("participant")), ids.participant))
    else:
        sender_id = chat_id
    timestamp = parse_timestamp(body.get("timestamp"))
    message_id = ids.message_id
    if message_id is None or message_id == target:
        # Some engines name a reaction by the message it reacts to: a reaction must not
        # become that message, so it gets an id of its own.
        message_id = f"reaction:{target}:{sender_id or 'unknown'}:{body.get('timestamp') or ''}"
    emoji = reaction.get("text")
    return build_result(NAME, session, [MessageEvent(
        message_id=message_id, chat_id=chat_id, from_me=from_me, type="reaction", raw_type=event,
        timestamp=timestamp, is_group=is_group, chat_kind=chat_kind_of(chat_id), sender_id=sender_id,
        reaction_to=target, reaction_emoji=emoji if isinstance(emoji, str) else None,
        event_name=MESSAGE_EVENT_NAME,
    )], event)


def _edited(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``payload.id`` is the edit action's; ``editedMessageId`` the bare id of the message edited."""
    ids = split_id(body.get("id"))
    target = message_id_of(body.get("editedMessageId")) or ids.message_id
    if target is None:
        raise PayloadError("missing the id of the edited message")
    chat_id = normalize_jid(first_text(ids.chat, _jid_or_none(body.get("from"))))
    return build_result(NAME, session, [EditEvent(
        message_id=target, text=text_or_none(body.get("body")),
        timestamp=parse_timestamp(body.get("timestamp")) or envelope.sent_at, chat_id=chat_id)], event)


def _revoked(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``revokedMessageId`` is the bare id of the message deleted; ``after`` is the revoke notice (its id is not).

    ``before`` (the message as it was) is usually null; its id is the fallback.
    """
    after, before = as_dict(body.get("after")), as_dict(body.get("before"))
    target = message_id_of(body.get("revokedMessageId")) or message_id_of(before.get("id"))
    if target is None:
        raise PayloadError("missing the id of the revoked message")
    notice = split_id(after.get("id") or before.get("id"))
    chat_id = normalize_jid(first_text(notice.chat, _jid_or_none(after.get("from")), _jid_or_none(before.get("from"))))
    timestamp = parse_timestamp(after.get("timestamp")) or envelope.sent_at
    return build_result(NAME, session, [DeleteEvent(message_id=target, timestamp=timestamp, chat_id=chat_id)],
                        event)


def _poll_vote(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """A vote: a reply to the poll naming the options chosen (each vote sends them all again).

    ``vote.to`` / ``poll.from`` may be the word "me"; the chat comes from the vote's id.
    """
    vote, poll = as_dict(body.get("vote")), as_dict(body.get("poll"))
    ids = split_id(vote.get("id"))
    from_me = _first_bool(vote.get("fromMe"), ids.from_me)
    chat_id = normalize_jid(first_text(ids.chat, _chat_from_ends(vote, from_me, envelope)))
    if ids.message_id is None or chat_id is None:
        raise PayloadError("missing vote id")
    is_group = is_group_jid(chat_id)
    voter = normalize_jid(_jid_or_none(vote.get("from")))
    sender_id = envelope.own_id if from_me else (voter if is_group or chat_kind_of(chat_id) else chat_id)
    options = [option for option in as_list(vote.get("selectedOptions")) if isinstance(option, str)]
    return build_result(NAME, session, [MessageEvent(
        message_id=ids.message_id, chat_id=chat_id, from_me=from_me, type="interactive", raw_type=event,
        timestamp=parse_timestamp(vote.get("timestamp")), is_group=is_group, chat_kind=chat_kind_of(chat_id),
        sender_id=sender_id, text=", ".join(options) or None, quoted_message_id=message_id_of(poll.get("id")),
        event_name=MESSAGE_EVENT_NAME,
    )], event)


# --- session and presence --------------------------------------------------------------------------

_STATES = {
    "WORKING": ("connected", None),
    "STARTING": ("connecting", "session starting"),
    "PASSKEY_REQUIRED": ("connecting", "WhatsApp asks for a passkey to finish pairing"),
    "PASSKEY_CONFIRMATION_REQUIRED": ("connecting", "confirm the pairing code on the phone"),
    "STOPPED": ("disconnected", "session stopped"),
    "FAILED": ("disconnected", "session failed: restart it; if that does not help, log out and start it again"),
}
SCAN_QR_CODE = "SCAN_QR_CODE"


def _session_status(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """STOPPED / STARTING / SCAN_QR_CODE / WORKING / FAILED (and the passkey steps) → the connection state.

    The time is the current status' own (``statuses``, ms), else the envelope's.
    SCAN_QR_CODE comes again each time the QR code changes; the code itself is
    not in the webhook (``GET /api/{session}/auth/qr``).
    """
    status = (first_text(body.get("status")) or "").strip().upper()
    at = _status_time(body, status) or envelope.sent_at
    if status == SCAN_QR_CODE:
        return build_result(NAME, session, [QrCodeEvent(
            timestamp=at, detail=f"scan the QR code: GET /api/{session}/auth/qr")], event)
    if status not in _STATES:
        return build_result(NAME, session, [], event, empty_kind=KIND_CONNECTION,
                            ignored_reason=f"unknown session status: {status or 'none'}")
    state, reason = _STATES[status]
    return build_result(NAME, session, [ConnectionEvent(state=state, timestamp=at, reason=reason,
                                                        own_id=envelope.own_id)], event)


def _status_time(body: dict, status: str) -> Optional[datetime]:
    for entry in reversed(as_list(body.get("statuses"))):
        entry = as_dict(entry)
        if str(entry.get("status") or "").upper() == status:
            return parse_timestamp(entry.get("timestamp"))
    return None


def _presence(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``{id: <chat>, presences: [{participant, lastKnownPresence, lastSeen}]}``."""
    chat_id = normalize_jid(body.get("id"))
    presences = body.get("presences")
    if isinstance(presences, dict):  # Baileys' own shape: {<jid>: {lastKnownPresence}}
        presences = [{"participant": jid, **as_dict(value)} for jid, value in presences.items()]
    events = []
    for entry in as_list(presences):
        entry = as_dict(entry)
        state = normalize_presence(entry.get("lastKnownPresence"))
        participant_id = normalize_jid(entry.get("participant"))
        if state is None or (chat_id or participant_id) is None:
            continue
        events.append(PresenceEvent(chat_id=chat_id or participant_id, state=state, participant_id=participant_id,
                                    timestamp=envelope.sent_at))
    return build_result(NAME, session, events, event, empty_kind=KIND_PRESENCE,
                        ignored_reason=None if events else "no known presence")


def _group(body: dict, envelope: Envelope, session: str, event: str) -> Normalised:
    """``group.v2.join`` and ``group.v2.update``: ``group {id, subject, ...}`` names the group's chat.

    Membership and settings are not kept: an event without a subject is
    ignored as the other group events are.
    """
    group = as_dict(body.get("group"))
    group_id = normalize_jid(group.get("id"))
    name = first_text(group.get("subject"))
    if not is_group_jid(group_id) or name is None:
        return build_result(NAME, session, [], event, ignored_reason=ignored_reason(event))
    return build_result(NAME, session, [ContactEvent(contact_id=group_id, name=name)], event)


_HANDLERS = {
    "group.v2.join": _group,
    "group.v2.update": _group,
    "message": _message,
    "message.any": _message,
    "message.ack": _ack,
    "message.ack.group": _ack,
    "message.reaction": _reaction,
    "message.edited": _edited,
    "message.revoked": _revoked,
    "poll.vote": _poll_vote,
    "session.status": _session_status,
    "presence.update": _presence,
}


# --- authentication ------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Webhook-Hmac"
HMAC_SETTING = "WAHA_HMAC_KEY"


def verify_signature(key: str, header: Optional[str], body: bytes):
    """``X-Webhook-Hmac: <hex HMAC-SHA512 of the raw body>`` (WAHA also sends ``X-Webhook-Hmac-Algorithm: sha512``)."""
    return check_hmac_signature(key, header, body, header_name=SIGNATURE_HEADER, algorithm="sha512", prefixed=False)


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode("utf-8"), body, hashlib.sha512).hexdigest()


def check_settings(settings: Mapping[str, Any]) -> list[Text]:
    if settings.get("WAHA_API_KEY") and not settings.get("WAHA_BASE_URL"):
        return [say("qa.settings.waha_base_url_missing")]
    return []


# --- its API (network) ---------------------------------------------------------------

API_KEY_HEADER = "X-Api-Key"


def _api_headers(token: Optional[str]) -> dict:
    return {API_KEY_HEADER: token} if token else {}


def send_text(target: SendTarget, phone: str, text: str) -> str:
    """``POST /api/sendText`` to the chat WhatsApp knows the number by; the bare id of the message sent.

    The answer is each engine's own message object (NOWEB: Baileys' ``{key: {id}}``;
    WEBJS: ``{id: "true_..."}`` or ``{id: {_serialized}}``), and WEBJS has
    answered an empty body: no id then, and the message may have gone out.
    """
    base = target.base_url.rstrip("/")
    headers = _api_headers(target.token)
    chat_id = chat_id_for(target, phone)
    status, data = post_json(target, f"{base}/api/sendText", headers,
                             {"session": target.instance, "chatId": chat_id, "text": text})
    if status >= 400:
        raise refused(LABEL, status, data)
    message_id = sent_message_id(data)
    if message_id is None:
        raise no_message_id(LABEL, data)
    return message_id


def sent_message_id(data: Any) -> Optional[str]:
    if not isinstance(data, dict):
        return None
    return message_id_of(data.get("id")) or text_or_none(as_dict(data.get("key")).get("id"))


def chat_id_for(target: SendTarget, phone: str) -> str:
    """The chat id WhatsApp has for a number (``GET /api/contacts/check-exists``).

    A Brazilian number may be registered with or without its ninth digit, and
    only WhatsApp knows which: WAHA answers the chat id to send to. A number
    WhatsApp does not know is refused before anything is sent. A WAHA without
    the endpoint (or failing it) gets ``<number>@c.us``.
    """
    query = f"phone={quote(phone, safe='')}&session={quote(target.instance, safe='')}"
    url = f"{target.base_url.rstrip('/')}/api/contacts/check-exists?{query}"
    limits = Limits(target.limits.connect_timeout, target.limits.read_timeout, MAX_ANSWER)
    try:
        response = open_stream("GET", url, allowed=target.allowed_hosts, limits=limits,
                               headers=_api_headers(target.token))
        raw = b"".join(read_chunks(response, limits))
    except DownloadError as exc:
        why = network_error(exc, url, limits.read_timeout)  # nothing was sent yet: never "maybe sent"
        raise SendError(f"WAHA could not check {phone} on WhatsApp: {exc}", status=exc.status, code=why.code,
                        params=why.params) from None
    try:
        answer = json.loads(raw) if raw.strip() else None
    except ValueError:
        answer = None
    if response.status_code in (401, 403):
        raise refused(LABEL, response.status_code, answer)
    if response.status_code < 300 and isinstance(answer, dict):
        if answer.get("numberExists") is False:
            raise SendError(f"{phone} is not on WhatsApp (WAHA's check-exists)", status=response.status_code,
                            code="not_on_whatsapp", params={"phone": phone})
        chat_id = text_or_none(answer.get("chatId"))
        if chat_id:
            return chat_id
    return f"{phone}@c.us"


# Where WAHA serves the media files its webhooks link to.
FILES_PATH = "/api/files/"
_GONE_HINT = say("media_error.hint.waha_lifetime")
_NO_FILE = say("media_error.waha_no_media_url")


def file_url(media_url: str, api_base: str) -> Optional[str]:
    """``media.url`` moved onto WAHA_BASE_URL when it is one of WAHA's files, else None.

    WAHA writes the URL from its own idea of its address (WAHA_BASE_URL on
    its side, ``http://localhost:3000`` by default), which is often not the
    address zaphook reaches it on (Docker). Only the part from ``/api/files/``
    on is taken: the key is sent to the configured server and nowhere else,
    and only for a file (never another API path).
    """
    try:
        path = urlsplit(media_url).path
    except ValueError:
        return None
    start = path.find(FILES_PATH)
    if start < 0:
        return None
    name = path[start + len(FILES_PATH):]
    segments = unquote(name).split("/")
    if not name or "\\" in unquote(name) or any(segment in ("", ".", "..") for segment in segments):
        raise DownloadError(f"media.url {shown_url(media_url)!r} does not name a file", kind="refused",
                            text=say("media_error.waha_not_a_file", url=shown_url(media_url)))
    return f"{api_base.rstrip('/')}{FILES_PATH}{name}"


def _media_needs(job: MediaJob) -> Optional[Text]:
    return None if job.url else _NO_FILE


def fetch_media(job: MediaJob, out, config, tick):
    """GET the file WAHA kept: from WAHA_BASE_URL with X-Api-Key, or (S3) from an allowed host without it."""
    location = file_url(job.url, job.api_base_url)
    if location is not None:
        allowed = entries_for_urls([job.api_base_url])  # WAHA's own server only, redirects included
        headers = _api_headers(job.api_token)
    else:
        allowed = config.allowed_hosts()
        location, headers = job.url, {}
        _refuse_foreign(location, allowed, job.api_base_url)
    try:
        response = open_stream("GET", location, allowed=allowed, limits=config.limits, headers=headers)
    except DownloadError as exc:
        if exc.kind != "refused":
            raise
        # Only a redirect can be refused here: WAHA_BASE_URL is the operator's own.
        raise DownloadError(f"WAHA sent its file elsewhere, and WAHA files are taken from WAHA_BASE_URL only "
                            f"(where the key goes): {exc}", kind="refused",
                            text=say("media_error.waha_redirected")) from None
    raise_for_provider(response, LABEL, gone_hint=_GONE_HINT)
    return stream_plain(response, out, config, tick, file_sha256=decode_digest(job.file_sha256),
                        file_length=job.file_length)


def _refuse_foreign(url: str, allowed, api_base: str) -> None:
    """A media.url that is not a WAHA file: fetched only from an allowed media host, never from WAHA's API."""
    place, base = entry_for_url(url), entry_for_url(api_base)
    if place is not None and base is not None and (place.host, place.port) == (base.host, base.port):
        raise DownloadError(f"media.url {shown_url(url)!r} is on the WAHA server but not one of its files "
                            f"({FILES_PATH}...): not fetched", kind="refused",
                            text=say("media_error.waha_not_a_file", url=shown_url(url)))
    try:
        check_url(url, allowed)
    except DownloadError as exc:
        raise DownloadError(f"media.url is neither a WAHA file ({FILES_PATH}...) nor on an allowed media host: "
                            f"{exc}", kind="refused", text=say("media_error.waha_foreign", reason=exc.text)) from None


# --- webhook registration -------------------------------------------------------------

# The events zaphook asks for. message.any carries every message, ours included
# ("message" would repeat the incoming ones).
WEBHOOK_EVENTS = ("session.status", "message.any", "message.reaction", "message.ack", "message.ack.group",
                  "message.edited", "message.revoked", "presence.update", "poll.vote",
                  "group.v2.join", "group.v2.update")
# WAHA validates the names against its own list: older servers refuse the newer ones
# (group.v2.* came in 2025.2.4, message.edited in 2025.6.3, message.ack.group in 2025.12.2).
NEWER_EVENTS = ("message.ack.group", "message.edited", "group.v2.join", "group.v2.update")
RETRIES = {"policy": "exponential", "delaySeconds": 2, "attempts": 8}
WEBHOOK_URL = WebhookUrl("all", "all events", "/api/webhooks/waha/", NAME)


def webhook_entry(url: str, events: tuple, signing_secret: Optional[str]) -> dict:
    entry = {"url": url, "events": list(events), "retries": dict(RETRIES)}
    if signing_secret:
        entry["hmac"] = {"key": signing_secret}
    return entry


def is_zaphooks(webhook: Any) -> bool:
    """Whether a webhook of the session is zaphook's: it posts to zaphook's WAHA path, on whatever host.

    So a webhook set through an earlier tunnel address is replaced, not kept
    beside the new one; webhooks to anything else are the session's own.
    """
    try:
        path = urlsplit(str(as_dict(webhook).get("url") or "")).path
    except ValueError:
        return False
    return path.rstrip("/") == WEBHOOK_URL.path.rstrip("/")


def _same_entry(current: Any, wanted: dict) -> bool:
    current = as_dict(current)
    return (current.get("url") == wanted["url"]
            and sorted(map(str, as_list(current.get("events")))) == sorted(wanted["events"])
            and (as_dict(current.get("hmac")).get("key") or None) == wanted.get("hmac", {}).get("key")
            and as_dict(current.get("retries")) == wanted["retries"])


def _exchange(method: str, url: str, api_key: str, body: Optional[dict] = None) -> tuple[Optional[int], Any]:
    """(status, parsed answer) of one call to WAHA's API, or (None, what went wrong)."""
    try:
        response = open_stream(method, url, allowed=entries_for_urls([url]), limits=REGISTER_LIMITS,
                               headers=_api_headers(api_key), json_body=body)
        raw = b"".join(read_chunks(response, REGISTER_LIMITS))
    except DownloadError as exc:
        return None, str(exc)
    try:
        return response.status_code, json.loads(raw) if raw.strip() else None
    except ValueError:
        return response.status_code, raw.decode("utf-8", "replace").strip()[:300]


def _said(answer: Any) -> str:
    """What WAHA said, shortened; never the session's config (it holds other webhooks' keys)."""
    if isinstance(answer, str):
        return answer[:300]
    message = provider_message(answer)
    if message is None and isinstance(answer, dict) and isinstance(answer.get("message"), list):
        message = "; ".join(map(str, answer["message"]))[:300]
    return message or "no message"


def register(api_base: str, api_key: str, session: str, urls: Mapping[str, str],
             signing_secret: Optional[str] = None, **_options) -> list[dict]:
    """Set zaphook's webhook in the session's config, keeping the rest of it.

    ``GET /api/sessions/{session}`` first: ``PUT`` replaces the whole config
    and restarts a running session, so the config is sent back as it was,
    with zaphook's webhook (``hmac.key`` = WAHA_HMAC_KEY when set) in place of
    any earlier one of zaphook's, and nothing is sent when it is already
    there. A server that refuses the newer event names gets the older list.
    """
    url = urls[WEBHOOK_URL.key]
    endpoint = f"{api_base.rstrip('/')}/api/sessions/{quote(session, safe='')}"
    result = {"provider": NAME, "instance": session, "event": "all events", "url": url, "ok": False}
    status, current = _exchange("GET", endpoint, api_key)
    if status is None or status >= 400 or not isinstance(current, dict):
        hint = f"WAHA has no session {session!r}" if status == 404 else _said(current)
        return [{**result, "status": status, "answer": f"reading the session failed: {hint}"}]
    config = as_dict(current.get("config"))
    kept = [webhook for webhook in as_list(config.get("webhooks")) if not is_zaphooks(webhook)]
    ours = [webhook for webhook in as_list(config.get("webhooks")) if is_zaphooks(webhook)]
    tried = []
    for form, events in (("all events", WEBHOOK_EVENTS),
                         ("older WAHA", tuple(e for e in WEBHOOK_EVENTS if e not in NEWER_EVENTS))):
        wanted = webhook_entry(url, events, signing_secret)
        if len(ours) == 1 and _same_entry(ours[0], wanted):
            return [{**result, "ok": True, "status": status, "form": "unchanged",
                     "answer": "already set: the session was not restarted"}]
        body = {"name": session, "config": {**config, "webhooks": kept + [wanted]}}
        status, answer = _exchange("PUT", endpoint, api_key, body)
        tried.append(f"{form}: {status}")
        if status is not None and status < 400:
            state = first_text(as_dict(answer).get("status")) or "?"
            return [{**result, "ok": True, "status": status, "form": form, "tried": tried,
                     "answer": f"{len(events)} events{', signed (HMAC)' if signing_secret else ''}; "
                               f"session {state} (WAHA restarts a running session)"}]
        if status not in (400, 422) or "event" not in _said(answer).lower():
            break
    return [{**result, "status": status, "form": form, "tried": tried, "answer": _said(answer)}]


PROVIDER = Provider(
    name=NAME,
    label=LABEL,
    detect=detect,
    parse=parse,
    statuses={**ACK_CODES, **ACK_NAMES},
    settings=(Setting("WAHA_BASE_URL", "", "url"), Setting("WAHA_API_KEY", "", "secret"),
              Setting(HMAC_SETTING, "", "secret")),
    api=ApiAccess("WAHA_BASE_URL", "WAHA_API_KEY"),
    webhook_urls=(WEBHOOK_URL,),
    signature=Signature(SIGNATURE_HEADER, HMAC_SETTING, verify_signature, sign),
    send_text=send_text,
    media=MediaDownload(fetch=fetch_media, needs=_media_needs),
    register=register,
    check_settings=check_settings,
)
