"""betZap-style payloads: a Baileys WebMessageInfo with the instance id beside it.

``{instanceId, key {remoteJid, fromMe, id}, message, msgContent,
messageTimestamp, pushName}``. The content is in ``message`` and often again
in ``msgContent``; ``message`` wins when it has any. A numeric ``status`` is
the original campaign specification's code (2 delivered, 3 read), as in the
plain format.

Evolution's own message ``data`` has the same ``key`` but fields betZap's
payload lacks (``messageType``, ``source``, v1's ``owner``): such an object
posted without its envelope is not betZap's, and is left unrecognised.
"""

from __future__ import annotations

from . import proto
from .base import (
    PLAIN_STATUS_CODES, Normalised, RouteHint, as_dict, build_result, normalize_status, require_instance_id,
)
from .provider import Provider

NAME = "betzap"

# Fields of Evolution's message data (its WebMessageInfo) that betZap's lacks.
EVOLUTION_DATA_FIELDS = ("messageType", "source", "owner")


def detect(payload: dict, hint: RouteHint) -> bool:
    return "remoteJid" in as_dict(payload.get("key")) \
        and not any(name in payload for name in EVOLUTION_DATA_FIELDS)


def parse(payload: dict, hint: RouteHint) -> Normalised:
    instance_id = require_instance_id(payload.get("instanceId"))
    message = as_dict(payload.get("message")) or payload.get("msgContent")
    events = proto.web_message_events(
        payload, event_name=None, default_from_me=hint.default_from_me, message=message,
        read_status=normalize_status)
    return build_result(NAME, instance_id, events)


# Posted to the catch-all URL; no API of its own.
PROVIDER = Provider(name=NAME, label="betZap", detect=detect, parse=parse, statuses=PLAIN_STATUS_CODES)
