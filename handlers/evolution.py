"""Evolution API (v1 and v2) webhooks.

Every request is an envelope ``{event, instance, data, date_time, sender,
server_url, apikey}``; ``instance`` is the instance name and ``sender`` the
instance's own JID. ``date_time`` is the server's local wall time written with a
"Z", so it is not used: events without a time of their own get none.
"""

from __future__ import annotations

from typing import Any

from . import proto
from .base import (
    KIND_CONNECTION, KIND_CONTACT, KIND_EDIT, KIND_PRESENCE, KIND_QRCODE, KIND_STATUS,
    ConnectionEvent, ContactEvent, DeleteEvent, Normalised, PayloadError,
    PresenceEvent, QrCodeEvent, RouteHint, StatusEvent, as_dict, as_records,
    build_result, dotted_event_name, first_text, normalize_baileys_status,
    normalize_connection_state, normalize_jid, normalize_presence, normalize_status,
    parse_timestamp, require_instance_id, text_or_none,
)

NAME = "evolution"

# Evolution's event names (enum Events in src/api/types/wa.types.ts, v1.8 to
# 2.3.x), in their webhook form; "MESSAGES_UPSERT" and "messages-upsert" are
# compared after dotted_event_name. Another gateway's {"event": "x.y", "data"}
# is not taken for Evolution.
KNOWN_EVENTS = frozenset({
    "application.startup", "instance.create", "instance.delete", "qrcode.updated",
    "connection.update", "status.instance", "messages.set", "messages.upsert",
    "messages.edited", "messages.update", "messages.delete", "send.message",
    "send.message.update", "contacts.set", "contacts.upsert", "contacts.update",
    "presence.update", "chats.set", "chats.update", "chats.upsert", "chats.delete",
    "groups.upsert", "groups.update", "group.participants.update", "call",
    "typebot.start", "typebot.change.status", "labels.edit", "labels.association",
    "creds.update", "messaging.history.set", "remove.instance", "logout.instance",
    "new.jwt.token", "new.jwt",
})
# Fields of Evolution's envelope besides event/instance/data: an unlisted
# (newer) event name is still Evolution's when the envelope has them.
_ENVELOPE_FIELDS = ("server_url", "date_time", "destination", "apikey")

# A QR code event's detail is a short text: the code itself is a secret.
_MAX_DETAIL = 200


def detect(payload: dict, hint: RouteHint) -> bool:
    if hint.route == "evolution":
        return True
    event = payload.get("event")
    if not isinstance(event, str) or "data" not in payload:
        return False
    if dotted_event_name(event) in KNOWN_EVENTS:
        return True
    return isinstance(payload.get("instance"), str) \
        and any(name in payload for name in _ENVELOPE_FIELDS)


def parse(payload: dict, hint: RouteHint) -> Normalised:
    data = payload.get("data")
    first = as_dict(data) or next(iter(as_records(data)), {})
    instance_id = require_instance_id(
        payload.get("instance"), first.get("instance"), first.get("owner"),
        first.get("instanceId"))
    event = dotted_event_name(payload.get("event")) or hint.evolution_event
    if event is None:
        return build_result(NAME, instance_id, [], ignored_reason="missing event name")
    handler = _HANDLERS.get(event)
    if handler is None:
        return build_result(NAME, instance_id, [], event,
                            ignored_reason=f"event not handled: {event}")
    return handler(payload, data, instance_id, event)


def _messages(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    records = as_records(data)
    if not records:
        raise PayloadError("missing message data")
    events = []
    for record in records:
        events += proto.web_message_events(
            record, event_name=event,
            default_from_me=event == "send.message",
            own_jid=payload.get("sender"))
    return build_result(NAME, instance_id, events, event)


def _updates(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    """Status updates in their three shapes.

    v1 ``{id, remoteJid, status, datetime (ms)}``; v2 ``{keyId, remoteJid,
    status}`` (its ``messageId`` is Evolution's database id, not WhatsApp's);
    campaign seeds ``{key: {id}, update: {status: <number>}}``.
    v2 reports a deleted message as status "DELETED".

    Evolution sends status words; a number at ``status`` is Baileys' code (2
    SERVER_ACK is sent), while ``update.status`` is the original campaign
    specification's format, whose numbers differ (2 delivered, 3 read).
    ``send.message.update`` also reports our own edits and revokes: a record
    holding such a protocolMessage gives its EditEvent or DeleteEvent.
    """
    events = []
    for record in as_records(data):
        change = proto.protocol_event(
            proto.find_protocol(record), timestamp=parse_timestamp(record.get("messageTimestamp")))
        if change is not None:
            events.append(change)
            continue
        key = as_dict(record.get("key"))
        update = as_dict(record.get("update"))
        message_id = first_text(record.get("keyId"), key.get("id"), record.get("id"))
        if message_id is None:
            raise PayloadError("missing message id")
        chat_id = normalize_jid(first_text(record.get("remoteJid"), key.get("remoteJid")),
                                first_text(record.get("remoteJidAlt"), key.get("remoteJidAlt")))
        raw_status = record.get("status")
        read_status = normalize_baileys_status
        if raw_status is None:
            raw_status = update.get("status")  # 0 is a status (error), so no "or"
            read_status = normalize_status
        timestamp = parse_timestamp(record.get("datetime"))
        if isinstance(raw_status, str) and raw_status.strip().upper() == "DELETED":
            events.append(DeleteEvent(message_id=message_id, timestamp=timestamp, chat_id=chat_id))
            continue
        status = read_status(raw_status)
        if status is not None:
            events.append(StatusEvent(message_id=message_id, status=status,
                                      timestamp=timestamp, chat_id=chat_id))
    return build_result(NAME, instance_id, events, event, empty_kind=KIND_STATUS,
                        ignored_reason=None if events else "no known status")


def _deletes(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    """``data`` is the deleted message's raw key (or holds it at ``key``)."""
    events = []
    for record in as_records(data):
        key = as_dict(record.get("key")) or record
        message_id = text_or_none(key.get("id"))
        if message_id is None:
            raise PayloadError("missing message id")
        chat_id = normalize_jid(key.get("remoteJid"), key.get("remoteJidAlt"))
        events.append(DeleteEvent(message_id=message_id, chat_id=chat_id))
    if not events:
        raise PayloadError("missing message id")
    return build_result(NAME, instance_id, events, event)


def _edits(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    """v2 sends the protocolMessage itself; accept it inside a WebMessageInfo too.

    Other protocol messages arrive here too (a chat's disappearing-message
    setting, a history sync notification): they edit nothing and are ignored.
    """
    record = as_dict(data)
    protocol = proto.find_protocol(record)
    if not protocol:
        raise PayloadError("missing edited message")
    if not proto.is_edit_or_revoke(protocol):
        return build_result(NAME, instance_id, [], event, empty_kind=KIND_EDIT,
                            ignored_reason=f"protocol message is not an edit: {protocol.get('type')}")
    change = proto.protocol_event(
        protocol, timestamp=parse_timestamp(record.get("messageTimestamp")))
    if change is None:
        raise PayloadError("missing edited message")
    return build_result(NAME, instance_id, [change], event)


def _connection(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    record = as_dict(data)
    state = normalize_connection_state(record.get("state"))
    if state is None:
        return build_result(NAME, instance_id, [], event, empty_kind=KIND_CONNECTION,
                            ignored_reason="unknown connection state")
    return build_result(NAME, instance_id, [ConnectionEvent(
        state=state,
        reason=text_or_none(record.get("statusReason")),
        own_id=normalize_jid(record.get("wuid")),
    )], event)


def _qrcode(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    record = as_dict(data)
    qrcode = as_dict(record.get("qrcode"))
    if qrcode:
        detail = "QR code updated"
        if text_or_none(qrcode.get("pairingCode")):
            detail += " (pairing code available)"
    else:
        # e.g. {"message": "QR code limit reached, please login again", "statusCode": 500}
        detail = (text_or_none(record.get("message")) or "QR code event")[:_MAX_DETAIL]
    return build_result(NAME, instance_id, [QrCodeEvent(detail=detail)], event,
                        empty_kind=KIND_QRCODE)


def _presence(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    """Baileys' ``{id: <chat>, presences: {<jid>: {lastKnownPresence}}}``."""
    record = as_dict(data)
    chat_id = normalize_jid(record.get("id"))
    events = []
    for jid, presence in as_dict(record.get("presences")).items():
        state = normalize_presence(as_dict(presence).get("lastKnownPresence"))
        participant_id = normalize_jid(jid)
        if state is None or (chat_id or participant_id) is None:
            continue
        events.append(PresenceEvent(chat_id=chat_id or participant_id, state=state,
                                    participant_id=participant_id))
    return build_result(NAME, instance_id, events, event, empty_kind=KIND_PRESENCE,
                        ignored_reason=None if events else "no known presence")


def _contacts(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    events = []
    for record in as_records(data):
        contact_id = normalize_jid(first_text(record.get("remoteJid"), record.get("id")))
        if contact_id is None:
            continue
        picture = text_or_none(record.get("profilePicUrl"))
        # Placeholders ("changed", null-ish words) are not pictures.
        if picture and not picture.lower().startswith(("http://", "https://")):
            picture = None
        events.append(ContactEvent(
            contact_id=contact_id,
            name=first_text(record.get("pushName"), record.get("name")),
            profile_picture_url=picture,
        ))
    return build_result(NAME, instance_id, events, event, empty_kind=KIND_CONTACT,
                        ignored_reason=None if events else "no contacts")


_HANDLERS = {
    "messages.upsert": _messages,
    "send.message": _messages,
    "messages.update": _updates,
    "send.message.update": _updates,
    "messages.delete": _deletes,
    "messages.edited": _edits,
    "connection.update": _connection,
    "qrcode.updated": _qrcode,
    "presence.update": _presence,
    "contacts.upsert": _contacts,
    "contacts.update": _contacts,
    "contacts.set": _contacts,
}
