"""The normalised events every provider module produces, and the helpers they share.

A provider module turns one webhook payload (a dict) into a :class:`Normalised`
result: which provider it is, what kind of request it was, which instance it
belongs to and a list of events. Nothing here touches the database or the
network, so every rule can be tested with a dict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, NamedTuple, Optional, Union

# Request kinds, as stored on WebhookEvent.kind.
KIND_MESSAGE = "message"
KIND_STATUS = "status"
KIND_CONNECTION = "connection"
KIND_PRESENCE = "presence"
KIND_CONTACT = "contact"
KIND_QRCODE = "qrcode"
KIND_EDIT = "message_edit"
KIND_DELETE = "message_delete"
KIND_MIXED = "mixed"
KIND_UNKNOWN = "unknown"
REQUEST_KINDS = (KIND_MESSAGE, KIND_STATUS, KIND_CONNECTION, KIND_PRESENCE, KIND_CONTACT, KIND_QRCODE, KIND_EDIT,
                 KIND_DELETE, KIND_MIXED, KIND_UNKNOWN)

# Message statuses, lowest first. "failed" stands outside the order.
STATUS_ORDER = ("pending", "sent", "delivered", "read", "played")
STATUS_FAILED = "failed"
STATUSES = STATUS_ORDER + (STATUS_FAILED,)

# Message types zaphook understands; anything else keeps its raw type name.
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
MESSAGE_TYPES = (
    "text", "image", "video", "audio", "document", "sticker", "location",
    "contact", "reaction", "interactive", "poll", "unknown",
)

# Connection states kept on Instance.connection_state.
CONNECTION_STATES = ("connected", "connecting", "disconnected")

# Presence states kept on Presence.state.
PRESENCE_STATES = ("typing", "recording", "paused", "online", "offline")


class PayloadError(ValueError):
    """The payload is JSON of a known provider but its content cannot be used."""


@dataclass
class MediaDescriptor:
    """Everything a payload says about one attachment; downloading is later work."""

    media_type: str  # image | video | audio | document | sticker
    mimetype: Optional[str] = None
    file_name: Optional[str] = None
    file_length: Optional[int] = None
    media_key: Optional[str] = None  # base64, secret
    direct_path: Optional[str] = None
    url: Optional[str] = None
    file_sha256: Optional[str] = None  # base64 (WhatsApp) or as Meta sends it
    file_enc_sha256: Optional[str] = None
    caption: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    seconds: Optional[int] = None
    is_voice: bool = False
    is_animated: bool = False
    media_id: Optional[str] = None  # Meta's media id
    # Evolution's webhook_base64 mode: the ingest pipeline moves the base64 text
    # out of the payload into a blob file and leaves a placeholder
    # {"$blob": "<relative path>", "size": n, "sha256": hex}; the handler copies
    # that placeholder here. A raw base64 string (dry runs) gives inline_size only.
    inline_blob: Optional[dict] = None
    inline_size: Optional[int] = None


class KnownAlias(NamedTuple):
    """A payload showing two ids of one person: an alias and the phone JID it stands for.

    Aliases name a person without their number: WhatsApp's LIDs ("…@lid") and
    Meta's business-scoped user ids ("bsuid:…"). zaphook remembers each link
    per instance (models.JidAlias) and files that person under the phone JID.
    """

    alias_jid: str
    phone_jid: str


@dataclass
class MessageEvent:
    """A message that was sent or received on an instance."""

    message_id: str
    chat_id: str  # normalised JID, see normalize_jid
    from_me: bool
    type: str  # one of MESSAGE_TYPES or the raw type name
    timestamp: Optional[datetime] = None
    raw_type: Optional[str] = None  # the provider's own type name
    chat_name: Optional[str] = None
    is_group: bool = False
    # What sort of chat that is not one-to-one nor a group: "status" (Status
    # posts, status@broadcast) or "newsletter" (channels); None otherwise.
    chat_kind: Optional[str] = None
    sender_id: Optional[str] = None  # normalised JID of the author
    sender_name: Optional[str] = None
    text: Optional[str] = None
    caption: Optional[str] = None
    status: Optional[str] = None  # initial status when the payload has one
    media: Optional[MediaDescriptor] = None
    quoted_message_id: Optional[str] = None
    # What the payload shows of the quoted message (its text or caption, cut
    # to QUOTE_SNIPPET_CHARS), for when zaphook never stored that message.
    quoted_text: Optional[str] = None
    forwarded: bool = False
    reaction_to: Optional[str] = None  # message id the reaction points at
    reaction_emoji: Optional[str] = None  # "" removes a reaction
    latitude: Optional[float] = None
    longitude: Optional[float] = None
    location_name: Optional[str] = None
    contacts: Optional[list] = None  # shared contact cards: [{"name", "vcard"}]
    interactive_id: Optional[str] = None  # button / list reply id
    edited: bool = False
    event_name: Optional[str] = None  # provider event name, part of the dedupe key
    # Another id of the same author, recorded as a contact linked to sender_id's
    # phone number: Meta's business-scoped user id ("bsuid:<id>") when the
    # payload gives both. Kept on the message (not a ContactEvent) so the request
    # stays of kind "message" and keeps its dedupe key. Not compared: it says
    # who the author also is, not what the message is.
    sender_linked_id: Optional[str] = field(default=None, compare=False)
    # Every alias ↔ phone link the payload shows (of the chat, of the author),
    # learnt before the message is stored. Not compared, like sender_linked_id.
    aliases: tuple = field(default=(), compare=False)

    @property
    def dedupe_key(self) -> str:
        return f"msg:{self.event_name or ''}:{self.message_id}"


@dataclass
class StatusEvent:
    """A delivery status of a message (normally one we sent)."""

    message_id: str
    status: str  # one of STATUSES
    timestamp: Optional[datetime] = None
    chat_id: Optional[str] = None
    error: Optional[str] = None

    @property
    def dedupe_key(self) -> str:
        return f"status:{self.message_id}:{self.status}"


@dataclass
class EditEvent:
    """A message whose text was edited."""

    message_id: str
    text: Optional[str]
    timestamp: Optional[datetime] = None
    chat_id: Optional[str] = None

    @property
    def dedupe_key(self) -> str:
        stamp = self.timestamp.isoformat() if self.timestamp else ""
        return f"edit:{self.message_id}:{stamp}:{self.text or ''}"


@dataclass
class DeleteEvent:
    """A message that was deleted ("revoked") for everyone."""

    message_id: str
    timestamp: Optional[datetime] = None
    chat_id: Optional[str] = None

    @property
    def dedupe_key(self) -> str:
        return f"delete:{self.message_id}"


@dataclass
class ConnectionEvent:
    """The instance connected, is connecting or disconnected."""

    state: str  # one of CONNECTION_STATES
    timestamp: Optional[datetime] = None
    reason: Optional[str] = None
    own_id: Optional[str] = None  # the instance's own JID when the payload says
    dedupe_key = None


@dataclass
class QrCodeEvent:
    """A new QR code (or pairing code) to connect the instance."""

    timestamp: Optional[datetime] = None
    detail: Optional[str] = None
    dedupe_key = None


@dataclass
class PresenceEvent:
    """Someone is typing, recording, online or offline in a chat."""

    chat_id: str
    state: str  # one of PRESENCE_STATES
    participant_id: Optional[str] = None
    timestamp: Optional[datetime] = None
    dedupe_key = None


@dataclass
class ContactEvent:
    """A contact the instance knows, with the name and picture it goes by.

    A group is a contact too: its ``name`` is the group's subject, which
    names the group's chat (providers send it apart from the messages).
    """

    contact_id: str  # normalised JID
    name: Optional[str] = None
    profile_picture_url: Optional[str] = None
    timestamp: Optional[datetime] = None
    dedupe_key = None


Event = Union[
    MessageEvent, StatusEvent, EditEvent, DeleteEvent, ConnectionEvent,
    QrCodeEvent, PresenceEvent, ContactEvent,
]


@dataclass
class Normalised:
    """What zaphook made of one webhook request."""

    provider: str
    kind: str
    instance_id: Optional[str]
    events: list = field(default_factory=list)
    # The provider's own event name ("messages.upsert", "webhookReceived", ...).
    event_name: Optional[str] = None
    # Set when the shape is known but the event is of no interest or unknown.
    ignored_reason: Optional[str] = None


# --- shared normalisation helpers -------------------------------------------

_NON_DIGITS = re.compile(r"\D+")
# "5511...:12" device suffix, optionally after an agent suffix ("_1", or ".0" in
# the legacy AD-JID form "5511....0:12").
_USER_DEVICE = re.compile(r"(?:[._]\d+)?(?::\d+)?$")


def normalize_jid(raw: Any, alt: Any = None, is_group: bool = False) -> Optional[str]:
    """Return one canonical chat/person id for the many forms providers send.

    Bare digits, "+55 11 9...", "…@c.us" and "…@s.whatsapp.net" all become
    "<digits>@s.whatsapp.net"; groups stay "…@g.us"; a "…@lid" id is replaced by
    its phone-number alternative when the payload has one (so one person is one
    chat), otherwise kept as is. Device suffixes (":12") are dropped.
    """
    if raw is None or isinstance(raw, (dict, list, bool)):
        return None
    value = str(raw).strip()
    if not value:
        return None
    if "@" in value:
        user, _, server = value.partition("@")
        server = server.lower()
        user = _USER_DEVICE.sub("", user)
        if not user or not server:
            return None
        if server == "lid" and alt is not None:
            resolved = normalize_jid(alt)
            if resolved and not resolved.endswith("@lid"):
                return resolved
        if server == "c.us":
            server = "s.whatsapp.net"
        if server == "s.whatsapp.net":
            digits = _NON_DIGITS.sub("", user)
            return f"{digits}@{server}" if digits else None
        return f"{user}@{server}"
    if is_group or re.fullmatch(r"\d{5,}-\d{9,}", value):
        return f"{value}@g.us"
    digits = _NON_DIGITS.sub("", value)
    if not digits:
        return None
    return f"{digits}@s.whatsapp.net"


def is_group_jid(jid: Optional[str]) -> bool:
    return bool(jid) and jid.endswith("@g.us")


LID_SERVER = "@lid"
PHONE_SERVER = "@s.whatsapp.net"
# Chat and contact ids of people Meta knows only by their business-scoped user id.
BSUID_PREFIX = "bsuid:"


def is_alias_jid(jid: Optional[str]) -> bool:
    """Whether an id names a person without their number: a LID or a BSUID (see KnownAlias)."""
    return bool(jid) and (jid.endswith(LID_SERVER) or jid.startswith(BSUID_PREFIX))


def lid_alias(*ids: Any, own_id: Optional[str] = None) -> Optional[KnownAlias]:
    """The LID ↔ phone link among ids that all name one person, when they show both forms.

    ``ids`` are raw payload values in any order (missing ones are None); the
    first LID and the first phone JID among them make the link. ``own_id`` is
    the instance's own JID: some fields carry our own number in our own
    messages, and a contact's LID must never be linked to it.
    """
    lid = phone = None
    for raw in ids:
        jid = normalize_jid(raw)
        if jid is None:
            continue
        if jid.endswith(LID_SERVER):
            lid = lid or jid
        elif jid.endswith(PHONE_SERVER) and jid != own_id:
            phone = phone or jid
    return KnownAlias(lid, phone) if lid and phone else None


# Chats that are neither one-to-one nor groups (see MessageEvent.chat_kind).
CHAT_KIND_STATUS = "status"
CHAT_KIND_NEWSLETTER = "newsletter"
STATUS_BROADCAST_JID = "status@broadcast"


def chat_kind_of(jid: Optional[str]) -> Optional[str]:
    """"status" for Status posts, "newsletter" for channels, None for 1:1 chats and groups."""
    if jid == STATUS_BROADCAST_JID:
        return CHAT_KIND_STATUS
    if jid and jid.endswith("@newsletter"):
        return CHAT_KIND_NEWSLETTER
    return None


def to_int(value: Any) -> Optional[int]:
    """An int from an int, a float, a numeric string or a protobuf Long object."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None  # JSON allows NaN
    if isinstance(value, dict) and "low" in value:
        low = to_int(value.get("low")) or 0
        high = to_int(value.get("high")) or 0
        return (high << 32) | (low & 0xFFFFFFFF)
    if isinstance(value, str):
        text = value.strip()
        # Longer than any id or timestamp: refuse rather than build a huge number.
        if len(text) > _MAX_NUMBER_LENGTH:
            return None
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if re.fullmatch(r"[+-]?\d+\.\d*", text):
            return int(float(text))
    return None


_MAX_NUMBER_LENGTH = 40


def to_float(value: Any) -> Optional[float]:
    """A finite float from a number or a numeric string, else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str) and len(value) <= _MAX_NUMBER_LENGTH:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_timestamp(value: Any) -> Optional[datetime]:
    """Return a naive UTC datetime from the many ways providers write time.

    Accepts Unix seconds, milliseconds or microseconds (numbers or numeric
    strings), protobuf ``{low, high}`` objects and ISO 8601 strings (a string
    without an offset is taken as UTC). Anything else gives None.
    """
    number = to_int(value)
    if number is not None:
        if number <= 0:
            return None
        if number > 10**14:
            number //= 1_000_000
        elif number > 10**11:
            number //= 1000
        try:
            return datetime.fromtimestamp(number, tz=timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed
    return None


STATUS_WORDS = {
    # Evolution (Baileys names) and WAHA ack names
    "error": STATUS_FAILED,
    "pending": "pending",
    "server_ack": "sent",
    "server": "sent",
    "delivery_ack": "delivered",
    "device": "delivered",
    "read": "read",
    "played": "played",
    # Meta, W-API, Z-API and plain words
    "sent": "sent",
    "delivered": "delivered",
    "received": "delivered",
    "failed": STATUS_FAILED,
    "fail": STATUS_FAILED,
    "viewed": "read",
    "seen": "read",
}

# The numeric codes of the original campaign specification (not Baileys').
PLAIN_STATUS_CODES = {0: STATUS_FAILED, 1: "pending", 2: "delivered", 3: "read", 4: "played"}


def normalize_status(value: Any, codes: Optional[Mapping[int, str]] = None) -> Optional[str]:
    """Map a provider's status word or numeric code to one of STATUSES, else None.

    Numbers mean different things per provider: ``codes`` is the provider's
    table (default: the campaign specification's).
    """
    if value is None or isinstance(value, bool):
        return None
    number = to_int(value)
    if number is not None:
        return (PLAIN_STATUS_CODES if codes is None else codes).get(number)
    if isinstance(value, str):
        return STATUS_WORDS.get(value.strip().lower())
    return None


# Baileys' proto.WebMessageInfo.Status numbers, which Evolution maps to words
# (ERROR, PENDING, SERVER_ACK, DELIVERY_ACK, READ, PLAYED) before sending.
BAILEYS_STATUS_CODES = {0: STATUS_FAILED, 1: "pending", 2: "sent", 3: "delivered", 4: "read",
                         5: "played"}


def normalize_baileys_status(value: Any) -> Optional[str]:
    """Like normalize_status, but numbers are Baileys' codes (2 is sent, 3 delivered, 4 read)."""
    return normalize_status(value, BAILEYS_STATUS_CODES)


def status_rank(status: Optional[str]) -> int:
    """Position of a status in STATUS_ORDER; -1 for failed or unknown."""
    try:
        return STATUS_ORDER.index(status)
    except ValueError:
        return -1


def text_or_none(value: Any) -> Optional[str]:
    """A stripped-of-nothing string, or None for non-strings and empty strings."""
    if isinstance(value, str) and value != "":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def as_dict(value: Any) -> dict:
    """The value if it is a dict, else an empty dict (nulls where objects belong)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_records(value: Any) -> list:
    """The dicts of a payload part that may be one object or a list of them."""
    if isinstance(value, dict):
        return [value]
    return [item for item in as_list(value) if isinstance(item, dict)]


_PRESENCE_WORDS = {
    "composing": "typing", "typing": "typing",
    "recording": "recording",
    "paused": "paused",
    "available": "online", "online": "online",
    "unavailable": "offline", "offline": "offline",
}


def normalize_presence(value: Any) -> Optional[str]:
    """Map a presence word (Baileys' lastKnownPresence and plain words) to PRESENCE_STATES."""
    if isinstance(value, str):
        return _PRESENCE_WORDS.get(value.strip().lower())
    return None


_CONNECTION_WORDS = {
    "open": "connected", "connected": "connected", "connect": "connected",
    "connecting": "connecting",
    "close": "disconnected", "closed": "disconnected", "refused": "disconnected",
    "disconnected": "disconnected", "disconnect": "disconnected",
}


def normalize_connection_state(value: Any) -> Optional[str]:
    """Map a connection word (Evolution's open/connecting/close/refused) to CONNECTION_STATES."""
    if isinstance(value, str):
        return _CONNECTION_WORDS.get(value.strip().lower())
    return None


def dotted_event_name(value: Any) -> Optional[str]:
    """An Evolution event name in its webhook form: "MESSAGES_UPSERT" -> "messages.upsert"."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower().replace("-", ".").replace("_", ".")


# The chat of a message whose payload names none (W-API's minimal media
# payloads): the message and its media are kept, filed under this chat.
UNKNOWN_CHAT_ID = "unknown@s.whatsapp.net"

_KIND_OF_EVENT = {
    MessageEvent: KIND_MESSAGE,
    StatusEvent: KIND_STATUS,
    EditEvent: KIND_EDIT,
    DeleteEvent: KIND_DELETE,
    ConnectionEvent: KIND_CONNECTION,
    QrCodeEvent: KIND_QRCODE,
    PresenceEvent: KIND_PRESENCE,
    ContactEvent: KIND_CONTACT,
}


def kind_of(events: list) -> Optional[str]:
    """The request kind the events make: their one kind, "mixed", or None when there are none."""
    kinds = {_KIND_OF_EVENT[type(event)] for event in events}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else KIND_MIXED


def build_result(
    provider: str,
    instance_id: Optional[str],
    events: list,
    event_name: Optional[str] = None,
    *,
    empty_kind: str = KIND_UNKNOWN,
    ignored_reason: Optional[str] = None,
) -> Normalised:
    """A Normalised whose kind comes from its events.

    A request that gave no events keeps ``empty_kind`` (what it would have
    been, e.g. "status" for a status update with an unknown status) and an
    ignored_reason, so it is stored as ignored rather than lost.
    """
    if not events and ignored_reason is None:
        ignored_reason = "no events in payload"
    return Normalised(
        provider=provider,
        kind=kind_of(events) or empty_kind,
        instance_id=instance_id,
        events=events,
        event_name=event_name,
        ignored_reason=ignored_reason,
    )


def first_text(*candidates: Any) -> Optional[str]:
    """The first candidate that is a usable string (see text_or_none), else None."""
    for candidate in candidates:
        text = text_or_none(candidate)
        if text and text.strip():
            return text
    return None


# A quote shows a line or two of the message it quotes: a longer text is cut.
QUOTE_SNIPPET_CHARS = 300


def quote_snippet(value: Any) -> Optional[str]:
    """What a reply shows of the message it quotes: its text, cut to QUOTE_SNIPPET_CHARS, else None."""
    text = first_text(value)
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= QUOTE_SNIPPET_CHARS else text[:QUOTE_SNIPPET_CHARS - 1].rstrip() + "…"


def require_instance_id(*candidates: Any) -> str:
    """The first usable instance id among the candidates, else PayloadError."""
    instance_id = first_text(*candidates)
    if instance_id is None:
        raise PayloadError("missing instance id")
    return instance_id


@dataclass(frozen=True)
class RouteHint:
    """What the URL a request came in on says about it.

    ``route`` is one of: "any" (/webhook/), "connect", "disconnect",
    "send-message", "receive-message", "chat-presence", "message-status",
    "evolution" (/api/webhooks/evolution/...). ``event`` is the suffix of
    Evolution's "webhook by events" mode, e.g. "messages-upsert".
    """

    route: str = "any"
    event: Optional[str] = None

    @property
    def evolution_event(self) -> Optional[str]:
        """The suffix as an Evolution event name: "messages-upsert" -> "messages.upsert"."""
        return dotted_event_name(self.event)

    @property
    def default_from_me(self) -> bool:
        """Whether a message that does not say who sent it was ours, by the URL it came on."""
        return self.route == "send-message"


def to_bool(value: Any, default: Optional[bool] = False) -> Optional[bool]:
    """A bool from true/false, 1/0 or their string forms ("false" is False).

    Anything else gives ``default``; pass ``default=None`` to tell a missing
    flag from a false one (e.g. to fall back on the route's fromMe default).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "sim"):
            return True
        if text in ("false", "0", "no", "nao", "não", ""):
            return False
    return default
