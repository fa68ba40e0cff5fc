"""Evolution API (v1 and v2) webhooks.

Every request is an envelope ``{event, instance, data, date_time, sender,
server_url, apikey}``; ``instance`` is the instance name and ``sender`` the
instance's own JID. ``date_time`` is the server's local wall time written with a
"Z", so it is not used: events without a time of their own get none.

Its API (header ``apikey``) sends texts (``/message/sendText/{instance}``),
answers a media file as base64 (``/chat/getBase64FromMediaMessage``) and sets
the webhook (``/webhook/set/{instance}``), each in the forms of v1 to 2.3.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping
from urllib.parse import quote

from codes import say
from storage.decrypt import PlainVerifier, decode_digest
from storage.fetch import CHUNK_SIZE, SMALL_ANSWER, MediaJob, provider_message, raise_for_provider
from storage.http import DownloadError, open_stream, read_json
from storage.register import call
from storage.send import SendTarget, no_message_id, post_json, refused

from . import proto
from .base import (
    BAILEYS_STATUS_CODES, KIND_CONNECTION, KIND_CONTACT, KIND_EDIT, KIND_PRESENCE, KIND_QRCODE, KIND_STATUS,
    ConnectionEvent, ContactEvent, DeleteEvent, Normalised, PayloadError,
    PresenceEvent, QrCodeEvent, RouteHint, StatusEvent, as_dict, as_records,
    build_result, dotted_event_name, first_text, is_group_jid, normalize_baileys_status,
    normalize_connection_state, normalize_jid, normalize_presence, normalize_status,
    parse_timestamp, require_instance_id, text_or_none,
)
from .provider import ApiAccess, MediaDownload, Provider, Setting, WebhookUrl

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


def _groups(payload: dict, data: Any, instance_id: str, event: str) -> Normalised:
    """``groups.upsert`` and ``groups.update``: Baileys' GroupMetadata ``[{id, subject, ...}]``.

    The subject names the group's chat. An update of something else (the
    description, a setting) has no subject and gives nothing.
    """
    events = []
    for record in as_records(data):
        group_id = normalize_jid(record.get("id"))
        name = first_text(record.get("subject"))
        if is_group_jid(group_id) and name:
            events.append(ContactEvent(contact_id=group_id, name=name))
    return build_result(NAME, instance_id, events, event, empty_kind=KIND_CONTACT,
                        ignored_reason=None if events else "no group name in this event")


_HANDLERS = {
    "groups.upsert": _groups,
    "groups.update": _groups,
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


# --- its API (network) ---------------------------------------------------------------

def send_text(target: SendTarget, phone: str, text: str, version: str = "v2") -> str:
    """``POST /message/sendText/{instance}``; the answer's ``key.id``.

    v2 takes ``{number, text}``, v1 ``{number, textMessage: {text}}``; when the
    v2 body is refused by validation naming ``textMessage`` (a v1 server), the
    v1 body is tried: a validation refusal sent nothing.
    """
    url = f"{target.base_url.rstrip('/')}/message/sendText/{quote(target.instance, safe='')}"
    headers = {"apikey": target.token} if target.token else {}
    body = {"number": phone, "text": text} if version == "v2" else {"number": phone, "textMessage": {"text": text}}
    status, data = post_json(target, url, headers, body)
    if status == 400 and version == "v2" and "textmessage" in json.dumps(data).lower():
        return send_text(target, phone, text, version="v1")
    if status >= 400:
        raise refused("Evolution", status, data)
    key = data.get("key") if isinstance(data, dict) else None
    message_id = key.get("id") if isinstance(key, dict) else None
    if not isinstance(message_id, str) or not message_id:
        raise no_message_id("Evolution", data)
    return message_id


def fetch_media(job: MediaJob, out, config, tick):
    """Evolution answers the whole file as base64 in JSON: bounded, but not constant memory."""
    url = f"{job.api_base_url.rstrip('/')}/chat/getBase64FromMediaMessage/{quote(job.instance_external_id, safe='')}"
    key = {"id": job.provider_message_id, "fromMe": job.from_me}
    if job.chat_jid:
        key["remoteJid"] = job.chat_jid
    response = open_stream("POST", url, allowed=config.allowed_hosts(job.api_base_url), limits=config.limits,
                           headers={"apikey": job.api_token},
                           json_body={"message": {"key": key}, "convertToMp4": False})
    raise_for_provider(response, "Evolution")
    limit = config.limits.max_bytes
    answer = read_json(response, config.limits, "Evolution", allowance=limit // 3 + SMALL_ANSWER, tick=tick)
    text = answer.get("base64") if isinstance(answer, dict) else None
    if not isinstance(text, str) or not text:
        raise DownloadError(f"Evolution's answer has no base64: {provider_message(answer) or 'empty answer'}",
                            text=say("media_error.no_base64", who="Evolution"))
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    verifier = PlainVerifier(out, file_sha256=decode_digest(job.file_sha256), file_length=job.file_length)
    step = CHUNK_SIZE // 3 * 4  # whole base64 quanta
    try:
        for start in range(0, len(text), step):
            verifier.feed(base64.b64decode(text[start:start + step]))
    except (binascii.Error, ValueError):
        raise DownloadError(say("media_error.corrupt_base64", who="Evolution")) from None
    return verifier.finish()


# The events zaphook asks for when it sets the webhook.
# GROUPS_UPSERT names each group the instance joins. Its "groups.update" (a renamed group) is left
# out: Evolution 2.3.x validates the name as GROUP_UPDATE and older releases as GROUPS_UPDATE, so
# either spelling would make one of them refuse the whole registration.
WEBHOOK_EVENTS = (
    "MESSAGES_UPSERT", "MESSAGES_UPDATE", "MESSAGES_DELETE", "SEND_MESSAGE", "CONNECTION_UPDATE",
    "CONTACTS_UPSERT", "CONTACTS_UPDATE", "PRESENCE_UPDATE", "QRCODE_UPDATED", "GROUPS_UPSERT",
)
WEBHOOK_URL = WebhookUrl("all", 'all events ("webhook by events" works too)', "/api/webhooks/evolution/", NAME,
                         event_suffix=True)


def webhook_bodies(url: str, with_base64: bool) -> list[tuple[str, dict]]:
    """The forms /webhook/set accepts, newest first: 2.2+ nested, ≤2.1 flat, v1 snake_case."""
    events = list(WEBHOOK_EVENTS)
    return [
        ("nested (2.2+)", {"webhook": {"enabled": True, "url": url, "byEvents": False, "base64": with_base64,
                                       "events": events}}),
        ("flat (≤2.1)", {"enabled": True, "url": url, "webhookByEvents": False, "webhookBase64": with_base64,
                         "events": events}),
        ("flat (v1)", {"enabled": True, "url": url, "webhook_by_events": False, "webhook_base64": with_base64,
                       "events": events}),
    ]


def register(api_base: str, api_key: str, instance: str, urls: Mapping[str, str],
             with_base64: bool = False, **_options) -> list[dict]:
    """POST /webhook/set/<instance>, falling back to the older forms when one is refused as invalid."""
    url = urls[WEBHOOK_URL.key]
    endpoint = f"{api_base.rstrip('/')}/webhook/set/{quote(instance, safe='')}"
    result = {"provider": NAME, "instance": instance, "event": "all events", "url": url}
    tried = []
    for form, body in webhook_bodies(url, with_base64):
        status, answer = call("POST", endpoint, {"apikey": api_key}, body)
        result.update(ok=status is not None and status < 400, status=status, form=form, answer=answer)
        if status is None:
            break
        tried.append(f"{form}: {status}")
        if status < 400 or status not in (400, 422):
            break
    result["tried"] = tried
    return [result]


PROVIDER = Provider(
    name=NAME,
    label="Evolution",
    detect=detect,
    parse=parse,
    statuses=BAILEYS_STATUS_CODES,
    settings=(Setting("EVOLUTION_BASE_URL", "", "url"), Setting("EVOLUTION_API_KEY", "", "secret")),
    api=ApiAccess("EVOLUTION_BASE_URL", "EVOLUTION_API_KEY"),
    webhook_urls=(WEBHOOK_URL,),
    send_text=send_text,
    media=MediaDownload(fetch=fetch_media),
    register=register,
)
