"""betZap-style payloads: a Baileys WebMessageInfo with the instance id beside it.

``{instanceId, key {remoteJid, fromMe, id}, message, msgContent,
messageTimestamp, pushName}``. The content is in ``message`` and often again
in ``msgContent``; ``message`` wins when it has any.
"""

from __future__ import annotations

from . import proto
from .base import Normalised, RouteHint, as_dict, build_result, require_instance_id

NAME = "betzap"


def detect(payload: dict, hint: RouteHint) -> bool:
    return "remoteJid" in as_dict(payload.get("key"))


def parse(payload: dict, hint: RouteHint) -> Normalised:
    instance_id = require_instance_id(payload.get("instanceId"))
    message = as_dict(payload.get("message")) or payload.get("msgContent")
    events = proto.web_message_events(
        payload, event_name=None, default_from_me=hint.default_from_me, message=message)
    return build_result(NAME, instance_id, events)
