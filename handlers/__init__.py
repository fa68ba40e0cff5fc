"""Turn a webhook payload of any supported provider into normalised events.

Each provider module exposes ``NAME``, ``detect(payload, hint) -> bool`` and
``parse(payload, hint) -> Normalised``; adding a provider is adding a module
to PROVIDERS. Everything here is pure: a dict in, a Normalised out, or
PayloadError for a known shape whose content cannot be used.
"""

from __future__ import annotations

from typing import Any, Optional

from . import betzap, evolution, meta, plain, wapi
from .base import KIND_UNKNOWN, Normalised, PayloadError, RouteHint, first_text

# Detection order. plain goes before wapi: a plain "message" also has the
# msgContent/messageId/instanceId trio W-API is recognised by.
PROVIDERS = (meta, evolution, plain, wapi, betzap)

UNKNOWN_PROVIDER = "unknown"


def normalise(payload: Any, hint: Optional[RouteHint] = None) -> Normalised:
    """The Normalised result of the first provider that recognises the payload.

    A dict no provider recognises is returned as kind "unknown" with an
    ignored_reason (so it is stored, not refused); a non-dict raises PayloadError.
    """
    if not isinstance(payload, dict):
        raise PayloadError("payload is not a JSON object")
    hint = hint or RouteHint()
    for provider in _in_order(hint):
        if provider.detect(payload, hint):
            return provider.parse(payload, hint)
    return Normalised(
        provider=UNKNOWN_PROVIDER,
        kind=KIND_UNKNOWN,
        instance_id=first_text(payload.get("instanceId"), payload.get("instance")),
        ignored_reason="unknown provider or shape",
    )


def _in_order(hint: RouteHint) -> tuple:
    if hint.route == "evolution":
        return (evolution,) + tuple(p for p in PROVIDERS if p is not evolution)
    return PROVIDERS


__all__ = ["PROVIDERS", "PayloadError", "RouteHint", "normalise"]
