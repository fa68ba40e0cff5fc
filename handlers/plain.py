"""The original system's per-endpoint payloads ("plain"), and the flat fields W-API shares.

The original system got one URL per kind (/send-message, /receive-message,
/message-status, /chat-presence, /connect, /disconnect) and flat payloads:
``{instanceId, event, fromMe, messageId, sender {id, name}, chat {id, name},
msgContent, status, chatId, presence, timestamp (ISO 8601)}``. W-API's
payloads are the same flat style (``moment`` for the time, ``sender.pushName``
for the name), so the ``flat_*`` functions here serve both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from . import proto
from .base import (
    KIND_CONNECTION, KIND_MESSAGE, KIND_PRESENCE, KIND_STATUS, PLAIN_STATUS_CODES, UNKNOWN_CHAT_ID,
    ConnectionEvent, Normalised, PayloadError, PresenceEvent, RouteHint,
    StatusEvent, as_dict, build_result, first_text, is_group_jid,
    normalize_connection_state, normalize_jid, normalize_presence,
    normalize_status, parse_timestamp, require_instance_id, to_bool,
)
from .provider import Provider

NAME = "plain"

_EVENT_KINDS = {
    "message": KIND_MESSAGE,
    "message_status": KIND_STATUS,
    "presence": KIND_PRESENCE,
    "connection": KIND_CONNECTION,
    "disconnection": KIND_CONNECTION,
}

# What the /connect and /disconnect URLs say when the payload does not.
ROUTE_CONNECTION_STATES = {"connect": "connected", "disconnect": "disconnected"}


def detect(payload: dict, hint: RouteHint) -> bool:
    event = payload.get("event")
    return isinstance(event, str) and event in _EVENT_KINDS and "instanceId" in payload


def parse(payload: dict, hint: RouteHint) -> Normalised:
    instance_id = require_instance_id(payload.get("instanceId"))
    event = first_text(payload.get("event"))
    kind = _EVENT_KINDS.get(event)
    if kind is None:
        return build_result(NAME, instance_id, [], event,
                            ignored_reason=f"event not handled: {event}")
    if kind == KIND_MESSAGE:
        events = flat_message_events(payload, event, hint.default_from_me)
    elif kind == KIND_STATUS:
        events = flat_status_events(payload)
    elif kind == KIND_PRESENCE:
        events = flat_presence_events(payload)
    elif event == "disconnection":
        events = flat_connection_events(payload, "disconnected")
    else:
        events = flat_connection_events(
            payload, ROUTE_CONNECTION_STATES.get(hint.route, "connected"))
    return build_result(NAME, instance_id, events, event, empty_kind=kind)


def flat_message_events(payload: dict, event_name: Optional[str],
                        default_from_me: bool) -> list:
    """A message from flat fields; ``default_from_me`` applies when ``fromMe`` is missing.

    A message that names no chat is filed under the sender for an incoming 1:1
    message, else under UNKNOWN_CHAT_ID: the message and its media are kept
    rather than refused (W-API's minimal media payloads have no chat at all).
    """
    from_me = to_bool(payload.get("fromMe"), default=None)
    if from_me is None:
        from_me = default_from_me
    is_group = to_bool(payload.get("isGroup"))
    chat = as_dict(payload.get("chat"))
    sender = as_dict(payload.get("sender"))
    sender_id = normalize_jid(sender.get("id"))
    chat_id = _chat_id(payload, is_group)
    if chat_id is None and not from_me and not is_group:
        chat_id = sender_id
    chat_id = chat_id or UNKNOWN_CHAT_ID
    return proto.message_events(
        proto.parse_content(payload.get("msgContent")),
        message_id=first_text(payload.get("messageId")),
        chat_id=chat_id,
        from_me=from_me,
        event_name=event_name,
        timestamp=_timestamp(payload),
        is_group=is_group or is_group_jid(chat_id),
        sender_id=sender_id,
        sender_name=first_text(sender.get("name"), sender.get("pushName")),
        chat_name=first_text(chat.get("name")),
    )


def flat_status_events(payload: dict) -> list:
    """A status of one message; an unknown status word gives no event.

    Numbers are the original campaign specification's codes (0 error, 1
    pending, 2 delivered, 3 read), not Baileys' (see normalize_status).
    """
    message_id = first_text(payload.get("messageId"))
    if message_id is None:
        raise PayloadError("missing message id")
    status = normalize_status(payload.get("status"))
    if status is None:
        return []
    return [StatusEvent(
        message_id=message_id,
        status=status,
        timestamp=_timestamp(payload),
        chat_id=_chat_id(payload, to_bool(payload.get("isGroup"))),
    )]


def flat_presence_events(payload: dict) -> list:
    """A presence in a chat (``presence``, or ``status`` when that holds a presence word)."""
    chat_id = _chat_id(payload, to_bool(payload.get("isGroup")))
    if chat_id is None:
        raise PayloadError("missing chat id")
    state = normalize_presence(payload.get("presence")) or normalize_presence(payload.get("status"))
    if state is None:
        return []
    return [PresenceEvent(
        chat_id=chat_id,
        state=state,
        participant_id=normalize_jid(as_dict(payload.get("sender")).get("id")),
        timestamp=_timestamp(payload),
    )]


def flat_connection_events(payload: dict, default_state: str) -> list:
    """The state the payload says (``status``, ``state``, ``connected``), else the default."""
    state = normalize_connection_state(payload.get("status")) \
        or normalize_connection_state(payload.get("state"))
    if state is None:
        connected = to_bool(payload.get("connected"), default=None)
        state = default_state if connected is None else (
            "connected" if connected else "disconnected")
    return [ConnectionEvent(
        state=state,
        timestamp=_timestamp(payload),
        reason=first_text(payload.get("reason")),
        own_id=normalize_jid(payload.get("connectedPhone")),
    )]


def _chat_id(payload: dict, is_group: bool) -> Optional[str]:
    raw = first_text(as_dict(payload.get("chat")).get("id"), payload.get("chatId"))
    return normalize_jid(raw, is_group=is_group)


def _timestamp(payload: dict) -> Optional[datetime]:
    # W-API: "moment" in Unix seconds; the original system: "timestamp" in ISO 8601.
    return parse_timestamp(payload.get("moment")) or parse_timestamp(payload.get("timestamp"))


# Posted to W-API's per-kind URLs (see wapi.WEBHOOK_URLS) or the catch-all; no API of its own.
PROVIDER = Provider(name=NAME, label="plain JSON", detect=detect, parse=parse, statuses=PLAIN_STATUS_CODES)
