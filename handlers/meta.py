"""Meta WhatsApp Cloud API webhooks.

``{object: "whatsapp_business_account", entry: [{id, changes: [{field,
value}]}]}``; one request may batch several entries, changes, messages and
statuses, all returned as events of one result. The instance is the business
phone number (``value.metadata.phone_number_id``). Messages are always
incoming: our own sends only come back as ``statuses``.

People are known by their phone number (``from`` / ``wa_id``) and, since
2026, by a business-scoped user id (BSUID: ``from_user_id`` / ``user_id``,
``recipient_user_id`` on statuses). A user with a username may send no phone
number at all; they are then keyed by their BSUID (see bsuid_chat_id).

Meta signs each request (``X-Hub-Signature-256``, HMAC-SHA256 of the body with
the app secret), checks the callback URL with a GET handshake
(``hub.challenge``), is configured by hand in the App Dashboard, and its Graph
API (Bearer access token) sends texts and hands out media by media id.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional
from urllib.parse import quote

from codes import Text, say
from security import check_hmac_signature, same_secret
from storage.decrypt import decode_digest
from storage.fetch import MediaJob, raise_for_provider, small_limits, stream_plain
from storage.http import DownloadError, check_url, open_stream, read_json, too_large
from storage.send import SendTarget, no_message_id, post_json, refused

from . import proto
from .base import (
    STATUS_FAILED, BSUID_PREFIX, MEDIA_TYPES, KnownAlias, MediaDescriptor, MessageEvent, Normalised,
    PayloadError, RouteHint, StatusEvent, as_dict, as_list, build_result, first_text, normalize_jid,
    normalize_status, parse_timestamp, to_bool, to_float,
)
from .provider import CATCH_ALL_PATH, ApiAccess, MediaDownload, Provider, Setting, Signature, WebhookUrl

NAME = "meta"
OBJECT = "whatsapp_business_account"
FIELD_MESSAGES = "messages"


def detect(payload: dict, hint: RouteHint) -> bool:
    if payload.get("object") == OBJECT:
        return True
    return any(isinstance(entry, dict) and "changes" in entry
               for entry in as_list(payload.get("entry")))


def parse(payload: dict, hint: RouteHint) -> Normalised:
    events: list = []
    instance_id = None
    ignored_fields = []
    for change in _changes(payload):
        field = first_text(change.get("field"))
        value = as_dict(change.get("value"))
        instance_id = instance_id or first_text(
            as_dict(value.get("metadata")).get("phone_number_id"))
        if field != FIELD_MESSAGES:
            ignored_fields.append(str(field))
            continue
        people = _people(value)
        events += [_message_event(m, people) for m in as_list(value.get("messages"))
                   if isinstance(m, dict)]
        events += [s for s in map(_status_event, as_list(value.get("statuses"))) if s]
    # Fields other than "messages" (account updates, template reviews...) carry
    # no phone number id and are ignored, so only events need an instance.
    if events and instance_id is None:
        raise PayloadError("missing instance id")
    reason = None
    if not events:
        reason = f"field not handled: {', '.join(ignored_fields)}" if ignored_fields \
            else "no messages or statuses"
    event_name = FIELD_MESSAGES if events or not ignored_fields else ignored_fields[0]
    return build_result(NAME, instance_id, events, event_name, ignored_reason=reason)


def _changes(payload: dict) -> list:
    return [change for entry in as_list(payload.get("entry"))
            for change in as_list(as_dict(entry).get("changes")) if isinstance(change, dict)]


def bsuid_chat_id(user_id: Any) -> Optional[str]:
    """The chat/contact id of a person by their BSUID: "bsuid:US.13491208655302741918".

    A BSUID is a country code, a dot and up to 128 letters and digits, not a
    phone number: normalize_jid would turn its digits into a phone JID. With
    the prefix before a ":" nothing reads a phone number out of it
    (campaigns.phone_of_jid finds none, Contact.record stores no phone).
    """
    text = first_text(user_id)
    return f"{BSUID_PREFIX}{text.strip()}" if text else None


@dataclass
class _Person:
    """One ``value.contacts[]`` entry: who sent the messages next to it."""

    wa_id: Optional[str]  # phone number, absent for a user with a username
    user_id: Optional[str]  # BSUID
    name: Optional[str]  # profile name, else the username


def _people(value: dict) -> dict:
    """wa_id and user_id -> _Person, from ``value.contacts``."""
    people = {}
    for contact in as_list(value.get("contacts")):
        contact = as_dict(contact)
        profile = as_dict(contact.get("profile"))
        person = _Person(
            wa_id=first_text(contact.get("wa_id")),
            user_id=first_text(contact.get("user_id")),
            name=first_text(profile.get("name"), profile.get("username")),
        )
        for key in (person.wa_id, person.user_id):
            if key:
                people.setdefault(key, person)
    return people


def _message_event(message: dict, people: dict):
    phone = first_text(message.get("from"))
    user_id = first_text(message.get("from_user_id"), message.get("user_id"))
    person = people.get(phone) or people.get(user_id) or _Person(None, None, None)
    phone_id = normalize_jid(phone or person.wa_id)
    user_chat_id = bsuid_chat_id(user_id or person.user_id)
    # The phone number stays the person's id when there is one, so chats begun
    # before BSUIDs existed go on; the BSUID is then linked to it.
    sender_id = phone_id or user_chat_id
    group = first_text(message.get("group_id"))
    chat_id = normalize_jid(group, is_group=True) if group else sender_id
    context = as_dict(message.get("context"))
    content = _content(message)
    content.quoted_message_id = first_text(context.get("id"))
    content.forwarded = to_bool(context.get("forwarded")) \
        or to_bool(context.get("frequently_forwarded"))
    [event] = proto.message_events(
        content,
        message_id=first_text(message.get("id")),
        chat_id=chat_id,
        from_me=False,
        event_name=FIELD_MESSAGES,
        timestamp=parse_timestamp(message.get("timestamp")),
        is_group=bool(group),
        sender_id=sender_id,
        sender_name=person.name,
    )
    if isinstance(event, MessageEvent) and phone_id and user_chat_id:
        event.sender_linked_id = user_chat_id
        # A chat begun under the BSUID alone joins the phone's chat once this is learnt.
        event.aliases = (KnownAlias(user_chat_id, phone_id),)
    return event


def _content(message: dict) -> proto.MessageContent:
    raw_type = first_text(message.get("type")) or "unknown"
    node = as_dict(message.get(raw_type))
    if raw_type in MEDIA_TYPES:
        content = _media(raw_type, node)
    elif raw_type == "contacts":
        content = _contacts(as_list(message.get("contacts")))
    else:
        parser = _PARSERS.get(raw_type, _other)
        content = parser(node)
        if content.type == "unknown" and raw_type != "unknown":
            content.type = raw_type  # order, system, unsupported... keep their names
    content.raw_type = raw_type
    return content


def _media(media_type: str, node: dict) -> proto.MessageContent:
    caption = first_text(node.get("caption"))
    media = MediaDescriptor(
        media_type=media_type,
        media_id=first_text(node.get("id")),
        mimetype=first_text(node.get("mime_type")),
        file_sha256=first_text(node.get("sha256")),
        caption=caption,
        file_name=first_text(node.get("filename")),
        is_voice=to_bool(node.get("voice")),
        is_animated=to_bool(node.get("animated")),
    )
    return proto.MessageContent(type=media_type, caption=caption, media=media)


def _text(node: dict) -> proto.MessageContent:
    return proto.MessageContent(type="text", text=first_text(node.get("body")))


def _location(node: dict) -> proto.MessageContent:
    return proto.MessageContent(
        type="location",
        latitude=to_float(node.get("latitude")),
        longitude=to_float(node.get("longitude")),
        location_name=first_text(node.get("name"), node.get("address")),
    )


def _reaction(node: dict) -> proto.MessageContent:
    emoji = node.get("emoji")
    return proto.MessageContent(
        type="reaction",
        reaction_to=first_text(node.get("message_id")),
        reaction_emoji=emoji if isinstance(emoji, str) else "",  # no emoji: removed
    )


def _interactive(node: dict) -> proto.MessageContent:
    reply = as_dict(node.get("button_reply")) or as_dict(node.get("list_reply"))
    return proto.MessageContent(type="interactive", text=first_text(reply.get("title")),
                                interactive_id=first_text(reply.get("id")))


def _button(node: dict) -> proto.MessageContent:
    # A tap on a template's quick-reply button.
    return proto.MessageContent(type="interactive", text=first_text(node.get("text")),
                                interactive_id=first_text(node.get("payload")))


def _other(node: dict) -> proto.MessageContent:
    # order.text, system.body; "unsupported" has neither.
    return proto.MessageContent(text=first_text(node.get("text"), node.get("body")))


def _contacts(cards: list) -> proto.MessageContent:
    cards = [_contact_card(as_dict(card)) for card in cards]
    return proto.MessageContent(type="contact", contacts=cards)


def _contact_card(card: dict) -> dict:
    """{"name", "vcard"} as in a WhatsApp contact message, with a vCard built from Meta's fields."""
    name = first_text(as_dict(card.get("name")).get("formatted_name"))
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{name or ''}"]
    for phone in as_list(card.get("phones")):
        phone = as_dict(phone)
        number = first_text(phone.get("phone"), phone.get("wa_id"))
        if number:
            wa_id = first_text(phone.get("wa_id"))
            lines.append(f"TEL;waid={wa_id}:{number}" if wa_id else f"TEL:{number}")
    lines.append("END:VCARD")
    return {"name": name, "vcard": "\n".join(lines)}


_PARSERS: dict[str, Callable[[dict], proto.MessageContent]] = {
    "text": _text,
    "location": _location,
    "reaction": _reaction,
    "interactive": _interactive,
    "button": _button,
}


def _status_event(status: Any) -> Optional[StatusEvent]:
    status = as_dict(status)
    message_id = first_text(status.get("id"))
    value = normalize_status(status.get("status"))
    if message_id is None or value is None:
        return None
    return StatusEvent(
        message_id=message_id,
        status=value,
        timestamp=parse_timestamp(status.get("timestamp")),
        chat_id=normalize_jid(status.get("recipient_id"),
                              is_group=status.get("recipient_type") == "group")
        or bsuid_chat_id(status.get("recipient_user_id")),
        error=_error_text(as_list(status.get("errors"))),
    )


def _error_text(errors: list) -> Optional[str]:
    """"code: title – details" from the first error."""
    error = as_dict(errors[0]) if errors else {}
    if not error:
        return None
    code = first_text(error.get("code"))
    title = first_text(error.get("title"), error.get("message"))
    details = first_text(as_dict(error.get("error_data")).get("details"))
    text = ": ".join(part for part in (code, title) if part)
    if details and details != title:
        text = f"{text} – {details}" if text else details
    return text or None


# --- authentication ------------------------------------------------------------------

SIGNATURE_HEADER = "X-Hub-Signature-256"


def verify_signature(app_secret: str, header: Optional[str], body: bytes):
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``."""
    return check_hmac_signature(app_secret, header, body, header_name=SIGNATURE_HEADER)


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def subscription(query: Mapping[str, str], settings: Mapping[str, Any]) -> Optional[tuple[int, str]]:
    """The callback check: ``GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``.

    Answers the challenge when the verify token is META_VERIFY_TOKEN; None for
    a GET that is not Meta's check.
    """
    if query.get("hub.mode") != "subscribe":
        return None
    expected = settings.get("META_VERIFY_TOKEN")
    if not expected:
        return 403, "META_VERIFY_TOKEN is not set"
    if not same_secret(query.get("hub.verify_token", ""), expected):
        return 403, "verify token does not match META_VERIFY_TOKEN"
    return 200, query.get("hub.challenge", "")


def check_settings(settings: Mapping[str, Any]) -> list[Text]:
    if settings.get("META_APP_SECRET") and not settings.get("META_VERIFY_TOKEN"):
        return [say("qa.settings.meta_verify_token_missing")]
    return []


# --- its API (network) ---------------------------------------------------------------

def send_text(target: SendTarget, phone: str, text: str) -> str:
    """Cloud API ``POST /{phone_number_id}/messages``; ``messages[0].id``."""
    url = f"{target.base_url.rstrip('/')}/{quote(target.instance, safe='')}/messages"
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": phone,
            "type": "text", "text": {"preview_url": False, "body": text}}
    status, data = post_json(target, url, headers, body)
    if status >= 400:
        raise refused("Meta", status, data)
    messages = data.get("messages") if isinstance(data, dict) else None
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
    message_id = first.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise no_message_id("Meta", data)
    return message_id


def _media_needs(job: MediaJob) -> Optional[Text]:
    return None if job.media_id else say("media_error.no_media_id", provider="Meta")


def fetch_media(job: MediaJob, out, config, tick):
    """``GET /{media id}`` gives a short-lived URL on Meta's media host, fetched with the same token."""
    allowed = config.allowed_hosts(job.api_base_url)
    auth = {"Authorization": f"Bearer {job.api_token}"}
    response = open_stream("GET", f"{job.api_base_url.rstrip('/')}/{quote(job.media_id, safe='')}",
                           allowed=allowed, limits=config.limits, headers=auth)
    raise_for_provider(response, "Meta", gone_hint=say("media_error.hint.meta_expiry"))
    info = read_json(response, small_limits(config), "Meta")
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        raise DownloadError(say("media_error.answer_without_url", provider="Meta"))
    size = info.get("file_size")
    if isinstance(size, int) and size > config.limits.max_bytes:
        raise too_large(size, config.limits.max_bytes)
    check_url(info["url"], allowed)
    response = open_stream("GET", info["url"], allowed=allowed, limits=config.limits, headers=auth)
    raise_for_provider(response, say("media_error.who.media_url", provider="Meta"))
    return stream_plain(response, out, config, tick, file_sha256=decode_digest(info.get("sha256") or job.file_sha256),
                        file_length=size if isinstance(size, int) else None)


CALLBACK_URL = WebhookUrl("callback", "callback URL (its verify token is META_VERIFY_TOKEN)", CATCH_ALL_PATH)


def register_by_hand(urls: Mapping[str, str], settings: Mapping[str, Any]) -> list[str]:
    """What to paste into the App Dashboard; raises ValueError when the verify token is missing."""
    verify = settings.get("META_VERIFY_TOKEN")
    if not verify:
        raise ValueError("META_VERIFY_TOKEN is not set: choose one, set it, restart zaphook, then paste it in Meta")
    return [
        "Meta registers webhooks in the App Dashboard (WhatsApp > Configuration > Webhook):",
        f"  Callback URL:  {urls[CALLBACK_URL.key]}",
        f"  Verify token:  {verify}",
        "Then subscribe to the `messages` field.",
    ]


PROVIDER = Provider(
    name=NAME,
    label="Meta",
    detect=detect,
    parse=parse,
    statuses={"sent": "sent", "delivered": "delivered", "read": "read", "failed": STATUS_FAILED},
    settings=(
        Setting("META_APP_SECRET", "", "secret"),
        Setting("META_VERIFY_TOKEN", "", "secret"),
        Setting("META_GRAPH_URL", "https://graph.facebook.com/v21.0", "url"),
        Setting("META_ACCESS_TOKEN", "", "secret"),
    ),
    api=ApiAccess("META_GRAPH_URL", "META_ACCESS_TOKEN"),
    webhook_urls=(CALLBACK_URL,),
    signature=Signature(SIGNATURE_HEADER, "META_APP_SECRET", verify_signature, sign),
    subscription=subscription,
    send_text=send_text,
    media=MediaDownload(fetch=fetch_media, needs=_media_needs),
    # Meta's media hosts (lookaside.fbsbx.com): allowed at public addresses on the default ports.
    media_hosts=(".fbsbx.com", ".facebook.com"),
    register_by_hand=register_by_hand,
    check_settings=check_settings,
)
