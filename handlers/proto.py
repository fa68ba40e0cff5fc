"""Parse Baileys proto message content, the shape Evolution, W-API and betZap share.

Evolution sends it at ``data.message``, W-API at ``msgContent`` and betZap at
``message`` or ``msgContent``: a dict with one content key (``conversation``,
``imageMessage``, ...) possibly inside wrappers (``ephemeralMessage``, ...)
and next to keys that are not content (``messageContextInfo``). This module
also turns parsed content plus the envelope's ids into events, for every
provider, so the rules for chat names and revoke/edit protocol messages live in
one place.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Callable, Optional

from .base import (
    MEDIA_TYPES, UNKNOWN_CHAT_ID, DeleteEvent, EditEvent, KnownAlias, MediaDescriptor, MessageEvent,
    PayloadError, as_dict, as_list, chat_kind_of, first_text, is_group_jid, lid_alias,
    normalize_baileys_status, normalize_jid, parse_timestamp, quote_snippet, text_or_none, to_bool, to_float,
    to_int,
)

# Each wraps {"message": {...}} around the real content (Baileys' FutureProofMessage);
# lottieStickerMessage wraps the stickerMessage of an animated (Lottie) sticker.
WRAPPERS = frozenset({
    "ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2",
    "viewOnceMessageV2Extension", "documentWithCaptionMessage", "editedMessage",
    "lottieStickerMessage",
})
# Keys found next to the content node that are not content themselves.
# senderKeyDistributionMessage rides along with the first message to a group.
NON_CONTENT = frozenset({
    "messageContextInfo", "base64", "mediaUrl", "senderKeyDistributionMessage",
})
MEDIA_KEYS = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",  # round "video note"
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
# Hostile payloads may nest wrappers without end; real ones use two or three.
MAX_WRAPPER_DEPTH = 8
# protocolMessage.type values (enum names, or numbers when sent raw).
PROTOCOL_REVOKE = ("REVOKE", 0)
PROTOCOL_EDIT = ("MESSAGE_EDIT", 14)


@dataclass
class MessageContent:
    """What the content of one message says, whatever its provider."""

    type: str = "unknown"
    raw_type: Optional[str] = None
    text: Optional[str] = None
    caption: Optional[str] = None
    media: Optional[MediaDescriptor] = None
    quoted_message_id: Optional[str] = None
    quoted_text: Optional[str] = None
    forwarded: bool = False
    reaction_to: Optional[str] = None
    reaction_emoji: Optional[str] = None
    latitude: Optional[float] = None
    longitude: Optional[float] = None
    location_name: Optional[str] = None
    contacts: Optional[list] = None
    interactive_id: Optional[str] = None
    edited: bool = False
    # The protocolMessage node, kept to turn a revoke or an edit into its event.
    protocol: Optional[dict] = None

    def event_fields(self) -> dict:
        """The fields shared with MessageEvent, as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "protocol"}


def parse_content(message: Any, context_info: Any = None) -> MessageContent:
    """Parse one proto message content dict; never raises on odd input.

    ``context_info`` is a fallback for the quote/forward context when the
    content node has none (Evolution copies it to ``data.contextInfo``, and a
    plain ``conversation`` string cannot carry one).
    """
    root = as_dict(message)
    if _is_plain_style(root):
        return _parse_plain_style(root)
    key, node, edited = _unwrap(root)
    if key is None:
        return MessageContent(edited=edited)
    content = _parse_node(key, node)
    content.raw_type = key
    content.edited = content.edited or edited
    _apply_context(content, node, context_info)
    _apply_inline_media(content, root)
    return content


def _parse_node(key: str, node: Any) -> MessageContent:
    parser = _PARSERS.get(key) or _media_parser(key) or _unknown_parser(key)
    return parser(node)


def quoted_text(quoted_message: Any) -> Optional[str]:
    """The snippet of a quoted message (``contextInfo.quotedMessage``): its text or caption.

    Only the content is read, not its own context: a quote inside the quote
    is not followed.
    """
    root = as_dict(quoted_message)
    if _is_plain_style(root):
        content = _parse_plain_style(root)
    else:
        key, node, _ = _unwrap(root)
        if key is None:
            return None
        content = _parse_node(key, node)
    return quote_snippet(first_text(content.text, content.caption))


def _unwrap(node: dict) -> tuple:
    """The content key and value inside any wrappers, and whether one was editedMessage."""
    edited = False
    for _ in range(MAX_WRAPPER_DEPTH):
        key = _content_key(node)
        if key not in WRAPPERS:
            return key, node.get(key) if key else None, edited
        edited = edited or key == "editedMessage"
        node = as_dict(as_dict(node[key]).get("message"))
    return None, None, edited


def _content_key(node: dict) -> Optional[str]:
    """The key holding the content: a known one first, else the first non-sibling key."""
    candidates = [key for key in node if key not in NON_CONTENT]
    for key in candidates:
        if key in WRAPPERS or key in _PARSERS or key in MEDIA_KEYS:
            return key
    return candidates[0] if candidates else None


def _apply_context(content: MessageContent, node: Any, fallback: Any) -> None:
    context = as_dict(as_dict(node).get("contextInfo")) or as_dict(fallback)
    content.quoted_message_id = text_or_none(context.get("stanzaId"))
    if content.quoted_message_id is not None:
        content.quoted_text = quoted_text(context.get("quotedMessage"))
    content.forwarded = to_bool(context.get("isForwarded"))


def _apply_inline_media(content: MessageContent, root: dict) -> None:
    """Evolution's extras next to the content: the file in base64 and an S3 url."""
    media = content.media
    if media is None:
        return
    inline = root.get("base64")
    if isinstance(inline, dict) and "$blob" in inline:
        media.inline_blob = dict(inline)
    elif isinstance(inline, str) and inline:
        media.inline_size = len(inline)
    if media.url is None:
        media.url = text_or_none(root.get("mediaUrl"))


# --- one parser per content key ---------------------------------------------

def _text(value: Any) -> MessageContent:
    return MessageContent(type="text", text=text_or_none(value))


def _extended_text(node: Any) -> MessageContent:
    return MessageContent(type="text", text=text_or_none(as_dict(node).get("text")))


def _conversation_message(node: Any) -> MessageContent:
    # betZap's seed nests the text one level deeper than Baileys does:
    # {"conversationMessage": {"conversation": "..."}}.
    if isinstance(node, dict):
        return _text(node.get("conversation"))
    return _text(node)


def _media_parser(key: str) -> Optional[Callable[[Any], MessageContent]]:
    media_type = MEDIA_KEYS.get(key)
    if media_type is None:
        return None

    def parse(node: Any) -> MessageContent:
        media = media_descriptor(media_type, as_dict(node))
        return MessageContent(type=media_type, caption=media.caption, media=media)

    return parse


def media_descriptor(media_type: str, node: dict) -> MediaDescriptor:
    """The MediaDescriptor of a proto media node (imageMessage, audioMessage, ...)."""
    return MediaDescriptor(
        media_type=media_type,
        mimetype=text_or_none(node.get("mimetype")),
        file_name=text_or_none(node.get("fileName")),
        file_length=to_int(node.get("fileLength")),
        media_key=bytes_text(node.get("mediaKey")),
        direct_path=text_or_none(node.get("directPath")),
        url=text_or_none(node.get("url")),
        file_sha256=bytes_text(node.get("fileSha256")),
        file_enc_sha256=bytes_text(node.get("fileEncSha256")),
        caption=text_or_none(node.get("caption")),
        width=to_int(node.get("width")),
        height=to_int(node.get("height")),
        seconds=to_int(node.get("seconds")),
        is_voice=to_bool(node.get("ptt")),
        is_animated=to_bool(node.get("isAnimated")),
    )


def bytes_text(value: Any) -> Optional[str]:
    """A base64 string for key and hash fields, however the bytes were serialised.

    Evolution 2.3.x can send Buffers as {"0": 12, "1": 200, ...} (a Uint8Array
    through JSON.stringify) or {"type": "Buffer", "data": [...]} instead of base64.
    """
    if isinstance(value, str):
        return value or None
    if not isinstance(value, dict):
        return None
    if value.get("type") == "Buffer":
        numbers = as_list(value.get("data"))
    elif value and all(isinstance(key, str) and key.isdigit() for key in value):
        numbers = [value[key] for key in sorted(value, key=int)]
    else:
        return None
    if not numbers or not all(isinstance(n, int) and 0 <= n <= 255 for n in numbers):
        return None
    return base64.b64encode(bytes(numbers)).decode("ascii")


def _location(node: Any) -> MessageContent:
    node = as_dict(node)
    return MessageContent(
        type="location",
        latitude=to_float(node.get("degreesLatitude")),
        longitude=to_float(node.get("degreesLongitude")),
        location_name=text_or_none(node.get("name")),
        caption=text_or_none(node.get("caption")),  # liveLocationMessage
    )


def _contact_card(node: Any) -> dict:
    node = as_dict(node)
    return {"name": text_or_none(node.get("displayName")), "vcard": text_or_none(node.get("vcard"))}


def _contact(node: Any) -> MessageContent:
    return MessageContent(type="contact", contacts=[_contact_card(node)])


def _contacts_array(node: Any) -> MessageContent:
    cards = [_contact_card(card) for card in as_list(as_dict(node).get("contacts"))]
    return MessageContent(type="contact", contacts=cards)


def _reaction(node: Any) -> MessageContent:
    node = as_dict(node)
    emoji = node.get("text")
    return MessageContent(
        type="reaction",
        reaction_to=text_or_none(as_dict(node.get("key")).get("id")),
        # An empty text removes the reaction, so "" is kept apart from missing.
        reaction_emoji=emoji if isinstance(emoji, str) else None,
    )


def _interactive(text: Any, selected_id: Any) -> MessageContent:
    return MessageContent(
        type="interactive", text=text_or_none(text), interactive_id=text_or_none(selected_id))


def _buttons_response(node: Any) -> MessageContent:
    node = as_dict(node)
    return _interactive(node.get("selectedDisplayText"), node.get("selectedButtonId"))


def _list_response(node: Any) -> MessageContent:
    node = as_dict(node)
    return _interactive(
        first_text(node.get("title"), node.get("description")),
        as_dict(node.get("singleSelectReply")).get("selectedRowId"))


def _template_button_reply(node: Any) -> MessageContent:
    node = as_dict(node)
    return _interactive(node.get("selectedDisplayText"), node.get("selectedId"))


def _interactive_response(node: Any) -> MessageContent:
    # Native flow replies carry the selected id inside a JSON string.
    node = as_dict(node)
    flow = as_dict(node.get("nativeFlowResponseMessage"))
    params = flow.get("paramsJson")
    selected = None
    if isinstance(params, str):
        try:
            selected = as_dict(json.loads(params)).get("id")
        except (ValueError, RecursionError):
            selected = None
    return _interactive(as_dict(node.get("body")).get("text"), selected)


# Messages with buttons or a list, as businesses send them: the type is
# "interactive" and the text is what the recipient sees above the buttons.

def _buttons_message(node: Any) -> MessageContent:
    node = as_dict(node)
    return _interactive(first_text(node.get("contentText"), node.get("text")), None)


def _list_message(node: Any) -> MessageContent:
    node = as_dict(node)
    return _interactive(first_text(node.get("description"), node.get("title")), None)


def _template_message(node: Any) -> MessageContent:
    node = as_dict(node)
    template = as_dict(node.get("hydratedTemplate")) or as_dict(node.get("hydratedFourRowTemplate"))
    four_row = as_dict(node.get("fourRowTemplate"))
    return _interactive(first_text(
        template.get("hydratedContentText"),
        as_dict(four_row.get("content")).get("text"),
        as_dict(as_dict(node.get("interactiveMessageTemplate")).get("body")).get("text"),
    ), None)


def _interactive_message(node: Any) -> MessageContent:
    node = as_dict(node)
    return _interactive(first_text(
        as_dict(node.get("body")).get("text"), as_dict(node.get("header")).get("title")), None)


def _poll(node: Any) -> MessageContent:
    return MessageContent(type="poll", text=text_or_none(as_dict(node).get("name")))


def _protocol(node: Any) -> MessageContent:
    return MessageContent(type="protocol", protocol=as_dict(node))


def _unknown_parser(key: str) -> Callable[[Any], MessageContent]:
    name = key[: -len("Message")] if key.endswith("Message") and key != "Message" else key
    return lambda node: MessageContent(type=name)


_PARSERS: dict = {
    "conversation": _text,
    "conversationMessage": _conversation_message,
    "extendedTextMessage": _extended_text,
    "locationMessage": _location,
    "liveLocationMessage": _location,
    "contactMessage": _contact,
    "contactsArrayMessage": _contacts_array,
    "reactionMessage": _reaction,
    "buttonsResponseMessage": _buttons_response,
    "listResponseMessage": _list_response,
    "templateButtonReplyMessage": _template_button_reply,
    "interactiveResponseMessage": _interactive_response,
    "buttonsMessage": _buttons_message,
    "listMessage": _list_message,
    "templateMessage": _template_message,
    "interactiveMessage": _interactive_message,
    "pollCreationMessage": _poll,
    "pollCreationMessageV2": _poll,
    "pollCreationMessageV3": _poll,
    "protocolMessage": _protocol,
}


# --- the original system's plain content: {"type": "text", "text": "..."} -----

def _is_plain_style(node: dict) -> bool:
    return isinstance(node.get("type"), str) and not any(
        key in _PARSERS or key.endswith("Message") for key in node)


def _parse_plain_style(node: dict) -> MessageContent:
    kind = node["type"].strip().lower() or "unknown"
    caption = text_or_none(node.get("caption"))
    if kind in MEDIA_TYPES:
        media = MediaDescriptor(
            media_type=kind,
            url=text_or_none(node.get("url")) or text_or_none(node.get("mediaUrl")),
            mimetype=text_or_none(node.get("mimetype")),
            file_name=text_or_none(node.get("fileName")),
            caption=caption,
        )
        return MessageContent(type=kind, raw_type=kind, caption=caption, media=media)
    return MessageContent(type=kind, raw_type=kind, text=text_or_none(node.get("text")))


# --- from content to events ---------------------------------------------------

def message_events(
    content: MessageContent,
    *,
    message_id: Optional[str],
    chat_id: Optional[str],
    from_me: bool,
    event_name: Optional[str],
    timestamp: Optional[datetime] = None,
    is_group: bool = False,
    sender_id: Optional[str] = None,
    sender_name: Optional[str] = None,
    chat_name: Optional[str] = None,
    status: Optional[str] = None,
) -> list:
    """The events one message stands for.

    Normally one MessageEvent. A protocolMessage that revokes or edits another
    message gives a DeleteEvent or EditEvent for that message instead, so a
    "deleted" notice is not stored as a message of its own. A 1:1 chat without
    a name of its own is named after the other person (their push name); Status
    posts and channels (see chat_kind_of) are not named after whoever posted.
    """
    if not message_id:
        raise PayloadError("missing message id")
    if not chat_id:
        raise PayloadError("missing chat id")
    change = protocol_event(content.protocol, chat_id=chat_id, timestamp=timestamp)
    if change is not None:
        return [change]
    chat_kind = chat_kind_of(chat_id)
    if chat_name is None and not is_group and not from_me and chat_kind is None \
            and chat_id != UNKNOWN_CHAT_ID:
        chat_name = sender_name
    return [MessageEvent(
        message_id=message_id,
        chat_id=chat_id,
        from_me=from_me,
        timestamp=timestamp,
        chat_name=chat_name,
        is_group=is_group,
        chat_kind=chat_kind,
        sender_id=sender_id,
        sender_name=sender_name,
        status=status,
        event_name=event_name,
        **content.event_fields(),
    )]


def is_edit_or_revoke(protocol: Any) -> bool:
    """Whether a protocolMessage edits or revokes a message (other types are settings, syncs...)."""
    action = as_dict(protocol).get("type")
    return not isinstance(action, bool) and action in PROTOCOL_EDIT + PROTOCOL_REVOKE


def protocol_event(protocol: Any, *, chat_id: Optional[str] = None,
                   timestamp: Optional[datetime] = None):
    """The EditEvent or DeleteEvent a protocolMessage stands for, else None.

    ``protocol`` is ``{key, type, editedMessage, timestampMs}``; ``key`` names
    the message revoked or edited, not the protocol message itself.
    """
    protocol = as_dict(protocol)
    target = as_dict(protocol.get("key"))
    message_id = text_or_none(target.get("id"))
    action = protocol.get("type")
    if message_id is None or isinstance(action, bool):
        return None
    chat_id = normalize_jid(target.get("remoteJid"), target.get("remoteJidAlt")) or chat_id
    timestamp = parse_timestamp(protocol.get("timestampMs")) or timestamp
    if action in PROTOCOL_REVOKE:
        return DeleteEvent(message_id=message_id, timestamp=timestamp, chat_id=chat_id)
    if action in PROTOCOL_EDIT:
        edited = parse_content(protocol.get("editedMessage"))
        return EditEvent(message_id=message_id, text=edited.text or edited.caption,
                         timestamp=timestamp, chat_id=chat_id)
    return None


def find_protocol(node: Any) -> dict:
    """The protocolMessage in a node: the node itself, or inside its message and wrappers.

    The node itself is one when it has a ``type`` and a ``key``, or a ``type``
    and no ``message`` (protocol messages about no message, such as
    HISTORY_SYNC_NOTIFICATION, have no key).
    """
    node = as_dict(node)
    if "type" in node and ("key" in node or "message" not in node):
        return node
    for message in (node.get("message"), node):
        key, value, _ = _unwrap(as_dict(message))
        if key == "protocolMessage":
            return as_dict(value)
    return {}


def web_message_events(
    info: dict,
    *,
    event_name: Optional[str],
    default_from_me: bool,
    own_jid: Any = None,
    message: Any = None,
    read_status: Callable[[Any], Optional[str]] = normalize_baileys_status,
) -> list:
    """Events from a Baileys WebMessageInfo (Evolution's ``data``, betZap's payload).

    ``key`` gives the ids, ``pushName`` the author's name, ``messageTimestamp``
    the time and ``status`` an initial status, read by ``read_status``
    (numbers are Baileys' codes unless the format says otherwise). ``message``
    overrides ``info["message"]``.

    A LID (``…@lid``) is replaced by the phone JID the key shows next to it
    (see key_aliases), and that link rides along in the event's ``aliases``.

    Our own messages (fromMe) are by ``own_jid`` when the payload names it. Else
    in 1:1 chats the author is the chat; in groups, Status posts
    (status@broadcast) and channels (@newsletter) it is ``key.participant`` (a
    channel without one is its own author). A chat id the sender blanked
    (``"@s.whatsapp.net"``) files the message under UNKNOWN_CHAT_ID.
    """
    key = as_dict(info.get("key"))
    chat_id = normalize_jid(key.get("remoteJid"))
    if chat_id is None and _is_blanked_jid(key.get("remoteJid")):
        chat_id = UNKNOWN_CHAT_ID
    from_me = to_bool(key.get("fromMe"), default=None)
    if from_me is None:
        from_me = default_from_me
    is_group = is_group_jid(chat_id)
    instance_jid = normalize_jid(own_jid)
    participant = first_text(key.get("participant"), info.get("participant"))
    chat_alias, author_alias, aliases = key_aliases(
        key, participant,
        one_to_one=not is_group and chat_kind_of(chat_id) is None and chat_id != UNKNOWN_CHAT_ID,
        from_me=from_me, own_id=instance_jid)
    chat_id = _phone_for(chat_id, chat_alias)
    participant_id = _phone_for(normalize_jid(participant), author_alias)
    own_id = instance_jid if from_me else None
    if is_group or chat_id == UNKNOWN_CHAT_ID:
        sender_id = own_id or participant_id
    elif chat_kind_of(chat_id) is not None:
        sender_id = own_id or participant_id or (chat_id if chat_id.endswith("@newsletter") else None)
    else:
        sender_id = own_id if from_me else chat_id
    content = parse_content(info.get("message") if message is None else message,
                            info.get("contextInfo"))
    if content.raw_type is None:
        content.raw_type = text_or_none(info.get("messageType"))
    events = message_events(
        content,
        message_id=text_or_none(key.get("id")),
        chat_id=chat_id,
        from_me=from_me,
        event_name=event_name,
        timestamp=parse_timestamp(info.get("messageTimestamp")),
        is_group=is_group,
        sender_id=sender_id,
        sender_name=text_or_none(info.get("pushName")),
        status=read_status(info.get("status")),
    )
    for event in events:
        if isinstance(event, MessageEvent):
            event.aliases = aliases
    return events


def key_aliases(key: dict, participant: Any, *, one_to_one: bool, from_me: bool,
                own_id: Optional[str]) -> tuple:
    """The LID ↔ phone links a Baileys message key shows: (of the chat, of the author, all to learn).

    The fields changed with every Baileys that Evolution shipped:

    * 2.3.0 (Baileys 6.7.18 fork): ``senderPn``/``senderLid`` of the sender,
      ``participantLid`` of a group author;
    * 2.3.1-2.3.2 (Baileys 6.7.19+): also ``participantPn``; when the chat is a
      LID and ``senderPn`` is known Evolution itself puts ``senderPn`` in
      ``remoteJid`` and keeps the LID in ``previousRemoteJid``;
    * 2.3.3+ (Baileys 7): ``remoteJidAlt`` and ``participantAlt``, the other
      form of the sender, whichever form ``remoteJid``/``participant`` is.

    The sender's fields are the chat's in a 1:1 chat only for their messages:
    in ours they name us. For the same reason a link to ``own_id`` is never
    made. Our own 1:1 messages teach nothing when the payload does not say
    who we are: their "alternative" may be our own number.
    """
    chat_alias = None
    if one_to_one:
        chat_ids = [key.get("remoteJid"), key.get("remoteJidAlt"), key.get("previousRemoteJid")]
        if not from_me:
            chat_ids += [key.get("senderPn"), key.get("senderLid")]
        chat_alias = lid_alias(*chat_ids, own_id=own_id)
    author_alias = lid_alias(participant, key.get("participantAlt"), key.get("participantPn"),
                             key.get("participantLid"), own_id=own_id)
    learnt = chat_alias if chat_alias and (own_id or not from_me) else None
    aliases = tuple(dict.fromkeys(alias for alias in (learnt, author_alias) if alias))
    return chat_alias, author_alias, aliases


def _phone_for(jid: Optional[str], alias: Optional[KnownAlias]) -> Optional[str]:
    """The alias's phone JID when ``jid`` is that alias, else ``jid``."""
    return alias.phone_jid if alias and jid == alias.alias_jid else jid


def _is_blanked_jid(raw: Any) -> bool:
    """A JID whose user part was left out on purpose, e.g. "@s.whatsapp.net"."""
    return isinstance(raw, str) and raw.strip().startswith("@")
