"""Pointing a provider's webhooks at zaphook: pure network, no database.

One function per provider sets the URLs through the provider's API and returns
one result per URL set (``ok``, the HTTP status, the provider's answer), so the
caller can print exactly what happened; nothing here raises on a network error.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional
from urllib.parse import quote

from storage.http import DownloadError, Limits, entries_for_urls, open_stream, read_chunks

# W-API: one URL per event kind, set with PUT /v1/webhook/update-webhook-<kind>.
WAPI_KINDS = ("received", "delivery", "message-status", "chat-presence", "connected", "disconnected")
EVOLUTION_EVENTS = (
    "MESSAGES_UPSERT", "MESSAGES_UPDATE", "MESSAGES_DELETE", "SEND_MESSAGE", "CONNECTION_UPDATE",
    "CONTACTS_UPSERT", "CONTACTS_UPDATE", "PRESENCE_UPDATE", "QRCODE_UPDATED",
)
LIMITS = Limits(connect_timeout=10, read_timeout=30, max_bytes=256 * 1024)  # an answer, not a download


def _call(method: str, url: str, headers: dict, body: dict) -> tuple[Optional[int], str]:
    """(HTTP status, the answer's text, shortened) or (None, what went wrong).

    ``url`` is built on the instance's configured API base URL: its host and
    port are the only ones allowed (a redirect elsewhere is refused).
    """
    try:
        response = open_stream(method, url, allowed=entries_for_urls([url]), limits=LIMITS, headers=headers,
                               json_body=body)
        status = response.status_code
        text = b"".join(read_chunks(response, LIMITS)).decode("utf-8", "replace")
    except DownloadError as exc:
        return None, str(exc)
    text = text.strip().replace("\n", " ")
    return status, text[:300] + ("…" if len(text) > 300 else "")


def _refused_in_body(text: str) -> bool:
    """W-API may answer 200 with {"error": true}."""
    try:
        answer = json.loads(text)
    except ValueError:
        return False
    return isinstance(answer, dict) and bool(answer.get("error"))


def register_wapi(api_base: str, token: str, instance_id: str, urls: Mapping[str, str]) -> list[dict]:
    """PUT each W-API webhook URL; one result per kind."""
    results = []
    for kind in WAPI_KINDS:
        endpoint = f"{api_base.rstrip('/')}/v1/webhook/update-webhook-{kind}?instanceId={quote(instance_id, safe='')}"
        status, answer = _call("PUT", endpoint, {"Authorization": f"Bearer {token}"}, {"value": urls[kind]})
        ok = status is not None and status < 400 and not _refused_in_body(answer)
        results.append({"provider": "wapi", "instance": instance_id, "event": kind, "url": urls[kind],
                        "ok": ok, "status": status, "answer": answer})
    return results


def evolution_bodies(url: str, with_base64: bool) -> list[tuple[str, dict]]:
    """The forms /webhook/set accepts, newest first: 2.2+ nested, ≤2.1 flat, v1 snake_case."""
    events = list(EVOLUTION_EVENTS)
    return [
        ("nested (2.2+)", {"webhook": {"enabled": True, "url": url, "byEvents": False, "base64": with_base64,
                                       "events": events}}),
        ("flat (≤2.1)", {"enabled": True, "url": url, "webhookByEvents": False, "webhookBase64": with_base64,
                         "events": events}),
        ("flat (v1)", {"enabled": True, "url": url, "webhook_by_events": False, "webhook_base64": with_base64,
                       "events": events}),
    ]


def register_evolution(api_base: str, api_key: str, instance: str, url: str, with_base64: bool = False) -> list[dict]:
    """POST /webhook/set/<instance>, falling back to the older forms when one is refused as invalid."""
    endpoint = f"{api_base.rstrip('/')}/webhook/set/{quote(instance, safe='')}"
    result = {"provider": "evolution", "instance": instance, "event": "all events", "url": url}
    tried = []
    for form, body in evolution_bodies(url, with_base64):
        status, answer = _call("POST", endpoint, {"apikey": api_key}, body)
        result.update(ok=status is not None and status < 400, status=status, form=form, answer=answer)
        if status is None:
            break
        tried.append(f"{form}: {status}")
        if status < 400 or status not in (400, 422):
            break
    result["tried"] = tried
    return [result]
