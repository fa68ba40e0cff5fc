"""W-API (api.w-api.app) webhooks.

Flat JSON: ``event`` (``webhookReceived`` for incoming, ``webhookDelivery``
for our own messages, sent through the API or typed on the phone),
``instanceId``, ``messageId``, ``fromMe``, ``isGroup``, ``chat.id`` (bare
digits), ``sender {id, pushName}``, ``moment`` (Unix seconds) and the Baileys
content in ``msgContent``.

W-API's status, presence and connection payloads are not documented anywhere
public; they are read by their fields, in the per-endpoint style of the
original system (see plain.py), and by the URL they came on.
"""

from __future__ import annotations

from typing import Optional

from .base import (
    KIND_CONNECTION, KIND_MESSAGE, KIND_PRESENCE, KIND_STATUS, Normalised,
    RouteHint, build_result, first_text, require_instance_id,
)
from .plain import (
    ROUTE_CONNECTION_STATES, flat_connection_events, flat_message_events,
    flat_presence_events, flat_status_events,
)

NAME = "wapi"

# fromMe when the payload leaves it out.
_FROM_ME_BY_EVENT = {"webhookReceived": False, "webhookDelivery": True}

_KIND_BY_ROUTE = {
    "send-message": KIND_MESSAGE,
    "receive-message": KIND_MESSAGE,
    "message-status": KIND_STATUS,
    "chat-presence": KIND_PRESENCE,
    "connect": KIND_CONNECTION,
    "disconnect": KIND_CONNECTION,
}


def detect(payload: dict, hint: RouteHint) -> bool:
    event = payload.get("event")
    if isinstance(event, str) and event.startswith("webhook"):
        return True
    return all(name in payload for name in ("msgContent", "messageId", "instanceId")) \
        and "key" not in payload


def parse(payload: dict, hint: RouteHint) -> Normalised:
    instance_id = require_instance_id(payload.get("instanceId"))
    event = first_text(payload.get("event"))
    kind = _kind(payload, event, hint)
    if kind == KIND_MESSAGE:
        default_from_me = _FROM_ME_BY_EVENT.get(event, hint.default_from_me)
        events = flat_message_events(payload, event, default_from_me)
    elif kind == KIND_STATUS:
        events = flat_status_events(payload)
    elif kind == KIND_PRESENCE:
        events = flat_presence_events(payload)
    elif kind == KIND_CONNECTION:
        events = flat_connection_events(payload, _connection_default(event, hint))
    else:
        return build_result(NAME, instance_id, [], event,
                            ignored_reason=f"event not handled: {event}")
    return build_result(NAME, instance_id, events, event, empty_kind=kind)


def _kind(payload: dict, event: Optional[str], hint: RouteHint) -> Optional[str]:
    """What the request is: by event name, else by URL, else by the fields it has."""
    name = (event or "").lower()
    if name in ("webhookreceived", "webhookdelivery"):
        return KIND_MESSAGE
    for word, kind in (("status", KIND_STATUS), ("presence", KIND_PRESENCE),
                       ("connected", KIND_CONNECTION)):
        if word in name:  # webhookMessageStatus, webhookChatPresence, webhookDisconnected, ...
            return kind
    if hint.route in _KIND_BY_ROUTE:
        return _KIND_BY_ROUTE[hint.route]
    if isinstance(payload.get("msgContent"), dict):
        return KIND_MESSAGE
    if "presence" in payload:
        return KIND_PRESENCE
    if "status" in payload and "messageId" in payload:
        return KIND_STATUS
    return None


def _connection_default(event: Optional[str], hint: RouteHint) -> str:
    name = (event or "").lower()
    if "disconnected" in name:
        return "disconnected"
    if "connected" in name:
        return "connected"
    return ROUTE_CONNECTION_STATES.get(hint.route, "connected")
