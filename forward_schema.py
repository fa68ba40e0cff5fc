"""The normalised events zaphook forwards: one provider-independent JSON shape, version 1.

An app written against it works with every provider zaphook reads. Its JSON
Schema is schemas/zaphook-event.v1.json; tests validate every provider's
samples against it, so the mapping below and the schema cannot drift apart.

Every event is an envelope (``version``, ``id``, ``type``, ``timestamp``,
``received_at``, ``provider``, ``instance``, ``webhook_event_id``) around a
``data`` object whose shape depends on ``type``. :func:`forwarded_events`
turns the items a provider handler made of one webhook (handlers/base.py)
into these events; it is pure: what it needs of the database (a media
file's state) comes through ``media_for``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from handlers.base import (
    CHAT_KIND_NEWSLETTER,
    CHAT_KIND_STATUS,
    ConnectionEvent,
    ContactEvent,
    DeleteEvent,
    EditEvent,
    MediaDescriptor,
    MessageEvent,
    Normalised,
    PresenceEvent,
    QrCodeEvent,
    StatusEvent,
)
from models import iso

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "zaphook-event.v1.json"

MESSAGE_RECEIVED = "message.received"
MESSAGE_SENT = "message.sent"
MESSAGE_STATUS = "message.status"
MESSAGE_EDITED = "message.edited"
MESSAGE_DELETED = "message.deleted"
REACTION = "reaction"
PRESENCE = "presence"
CONNECTION = "connection"
QRCODE = "qrcode"
CONTACT = "contact"
MEDIA_READY = "media.ready"

TYPES = (MESSAGE_RECEIVED, MESSAGE_SENT, MESSAGE_STATUS, MESSAGE_EDITED, MESSAGE_DELETED, REACTION, PRESENCE,
         CONNECTION, QRCODE, CONTACT, MEDIA_READY)

@dataclass(frozen=True)
class Envelope:
    """What every event made of one webhook request shares."""

    event_id: int  # zaphook's WebhookEvent id
    provider: str
    instance: Optional[str]  # the provider's instance id
    received_at: datetime
    # Starts every event id: "zh_" and the database's own id, so ids never repeat after a fresh start.
    id_prefix: str = "zh"


@dataclass(frozen=True)
class MediaState:
    """Where zaphook's copy of a media file stands (models.MediaFile), for the app."""

    id: Optional[int]
    state: str
    url: Optional[str] = None  # where the app fetches the file, once downloaded
    size: Optional[int] = None
    sha256: Optional[str] = None
    error: Optional[str] = None


@dataclass
class Forwarded:
    """One normalised event, with what the delivery queue needs to know about it."""

    payload: dict
    chat_id: Optional[str]
    media_id: Optional[int] = None  # zaphook's media row: a "media.ready" event follows once it is downloaded

    @property
    def type(self) -> str:
        return self.payload["type"]


MediaLookup = Callable[[MessageEvent], Optional[MediaState]]


def forwarded_events(normalised: Normalised, envelope: Envelope,
                     media_for: Optional[MediaLookup] = None) -> list[Forwarded]:
    """The normalised events of one webhook, one per item, in the items' order."""
    made = []
    for index, item in enumerate(normalised.events):
        kind, data, chat_id = _describe(item, media_for)
        if kind is None:
            continue
        payload = _envelope(f"{envelope.id_prefix}_{envelope.event_id}_{index}", kind, getattr(item, "timestamp", None),
                            envelope, data)
        media = data.get("media") if kind in (MESSAGE_RECEIVED, MESSAGE_SENT) else None
        made.append(Forwarded(payload, chat_id, media["id"] if media else None))
    return made


def media_ready_event(media_id: int, message_id: str, chat_id: Optional[str], envelope: Envelope,
                      descriptor: MediaDescriptor, state: MediaState, at: Optional[datetime]) -> dict:
    """The second event of a media message: its download finished (done, failed or expired)."""
    data = {"message_id": message_id, "chat_id": chat_id, "media": media_object(descriptor, state)}
    return _envelope(f"{envelope.id_prefix}_media_{media_id}", MEDIA_READY, at, envelope, data)


def _envelope(event_id: str, kind: str, at: Optional[datetime], envelope: Envelope, data: dict) -> dict:
    return {
        "version": SCHEMA_VERSION,
        "id": event_id,
        "type": kind,
        "timestamp": iso(at or envelope.received_at),
        "received_at": iso(envelope.received_at),
        "provider": envelope.provider,
        "instance": envelope.instance,
        "webhook_event_id": envelope.event_id,
        "data": data,
    }


def _describe(item: Any, media_for: Optional[MediaLookup]) -> tuple[Optional[str], dict, Optional[str]]:
    """(type, data, chat id) of one item."""
    if isinstance(item, MessageEvent):
        if item.type == "reaction" or item.reaction_to:
            return REACTION, _reaction(item), item.chat_id
        media = None
        if item.media is not None:
            state = media_for(item) if media_for is not None else None
            media = media_object(item.media, state or MediaState(None, "unknown"))
        return (MESSAGE_SENT if item.from_me else MESSAGE_RECEIVED), _message(item, media), item.chat_id
    if isinstance(item, StatusEvent):
        return MESSAGE_STATUS, {"message_id": item.message_id, "chat_id": item.chat_id, "status": item.status,
                                "error": item.error}, item.chat_id
    if isinstance(item, EditEvent):
        return MESSAGE_EDITED, {"message_id": item.message_id, "chat_id": item.chat_id,
                                "text": item.text}, item.chat_id
    if isinstance(item, DeleteEvent):
        return MESSAGE_DELETED, {"message_id": item.message_id, "chat_id": item.chat_id}, item.chat_id
    if isinstance(item, PresenceEvent):
        return PRESENCE, {"chat_id": item.chat_id, "participant_id": item.participant_id,
                          "state": item.state}, item.chat_id
    if isinstance(item, ConnectionEvent):
        return CONNECTION, {"state": item.state, "reason": item.reason, "own_id": item.own_id}, None
    if isinstance(item, QrCodeEvent):
        return QRCODE, {"detail": item.detail}, None
    if isinstance(item, ContactEvent):
        return CONTACT, {"contact_id": item.contact_id, "name": item.name,
                         "profile_picture_url": item.profile_picture_url}, item.contact_id
    return None, {}, None


def _chat(item: MessageEvent) -> dict:
    if item.chat_kind in (CHAT_KIND_STATUS, CHAT_KIND_NEWSLETTER):
        kind = item.chat_kind
    else:
        kind = "group" if item.is_group else "direct"
    return {"id": item.chat_id, "name": item.chat_name, "type": kind}


def _sender(item: MessageEvent) -> dict:
    return {"id": item.sender_id, "name": item.sender_name}


def _message(item: MessageEvent, media: Optional[dict]) -> dict:
    location = None
    if item.latitude is not None or item.longitude is not None:
        location = {"latitude": item.latitude, "longitude": item.longitude, "name": item.location_name}
    contacts = None
    if item.contacts:
        contacts = [{"name": _text(card.get("name")), "vcard": _text(card.get("vcard"))}
                    for card in item.contacts if isinstance(card, dict)]
    return {
        "id": item.message_id,
        "chat": _chat(item),
        "sender": _sender(item),
        "from_me": item.from_me,
        "type": item.type,
        "raw_type": item.raw_type,
        "text": item.text,
        "caption": item.caption,
        "status": item.status,
        "quoted_message_id": item.quoted_message_id,
        "quoted_text": item.quoted_text,
        "forwarded": item.forwarded,
        "edited": item.edited,
        "location": location,
        "contacts": contacts,
        "interactive_id": item.interactive_id,
        "media": media,
    }


def _reaction(item: MessageEvent) -> dict:
    return {
        "message_id": item.message_id,
        "chat": _chat(item),
        "sender": _sender(item),
        "from_me": item.from_me,
        "target_message_id": item.reaction_to,
        "emoji": item.reaction_emoji,
        "removed": item.reaction_emoji == "",
    }


def media_object(descriptor: MediaDescriptor, state: MediaState) -> dict:
    """A media file as the app sees it: what the payload said, and zaphook's copy (never its mediaKey)."""
    return {
        "id": state.id,
        "state": state.state,
        "type": descriptor.media_type,
        "mimetype": descriptor.mimetype,
        "file_name": descriptor.file_name,
        "file_length": descriptor.file_length,
        "width": descriptor.width,
        "height": descriptor.height,
        "seconds": descriptor.seconds,
        "is_voice": bool(descriptor.is_voice),
        "is_animated": bool(descriptor.is_animated),
        "url": state.url,
        "size": state.size,
        "sha256": state.sha256,
        "error": state.error,
    }


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None
