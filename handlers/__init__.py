"""Every supported provider, as one unit each, and turning a webhook payload into normalised events.

Each provider module declares ``PROVIDER`` (see :mod:`handlers.provider`):
detection and parsing (pure: a dict in, a Normalised out, or PayloadError for
a known shape whose content cannot be used), its status vocabulary, settings,
webhook URLs and authentication, and what its API can do. ``REGISTRY`` lists
them; the rest of zaphook reads it instead of naming providers. Adding a
provider is writing its module and adding it here.
"""

from __future__ import annotations

from typing import Any, Optional

from . import betzap, evolution, meta, plain, waha, wapi, zapi
from .base import KIND_UNKNOWN, Normalised, PayloadError, RouteHint, first_text
from .provider import Provider, Registry

# Detection order: the first provider whose detect() says yes parses the payload.
# plain goes before wapi: a plain "message" also has the msgContent/messageId/instanceId
# trio W-API is recognised by; betzap last, as its Baileys key is inside others' payloads.
# WAHA's {event, session, payload} and Evolution's {event, instance, data} exclude each other;
# Z-API's "type": "...Callback" with "instanceId" is its own.
REGISTRY = Registry((meta.PROVIDER, evolution.PROVIDER, waha.PROVIDER, zapi.PROVIDER, plain.PROVIDER, wapi.PROVIDER,
                     betzap.PROVIDER))

UNKNOWN_PROVIDER = "unknown"


def normalise(payload: Any, hint: Optional[RouteHint] = None) -> Normalised:
    """The Normalised result of the first provider that recognises the payload.

    The provider whose own URL the request came on is asked first. A dict no
    provider recognises is returned as kind "unknown" with an ignored_reason
    (so it is stored, not refused); a non-dict raises PayloadError.
    """
    if not isinstance(payload, dict):
        raise PayloadError("payload is not a JSON object")
    hint = hint or RouteHint()
    for provider in REGISTRY.detection_order(hint):
        if provider.detect(payload, hint):
            return provider.parse(payload, hint)
    return Normalised(
        provider=UNKNOWN_PROVIDER,
        kind=KIND_UNKNOWN,
        instance_id=first_text(payload.get("instanceId"), payload.get("instance")),
        ignored_reason="unknown provider or shape",
    )


__all__ = ["REGISTRY", "PayloadError", "Provider", "RouteHint", "normalise"]
