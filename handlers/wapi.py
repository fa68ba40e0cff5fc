"""W-API (api.w-api.app) webhooks.

Flat JSON: ``event`` (``webhookReceived`` for incoming, ``webhookDelivery``
for our own messages, sent through the API or typed on the phone),
``instanceId``, ``messageId``, ``fromMe``, ``isGroup``, ``chat.id`` (bare
digits), ``sender {id, pushName}``, ``moment`` (Unix seconds) and the Baileys
content in ``msgContent``.

W-API's status, presence and connection payloads are not documented anywhere
public; they are read by their fields, in the per-endpoint style of the
original system (see plain.py), and by the URL they came on: W-API is given one
URL per event kind.

Its API (``Authorization: Bearer <token>``, ``?instanceId=``) sends texts
(``/v1/message/send-text``), hands out a link to a decrypted media file
(``/v1/message/download-media``) and sets the webhook URLs
(``PUT /v1/webhook/update-webhook-<kind>``), as integrators' code uses it
(see PROVIDERS.md: no official documentation was reachable).
"""

from __future__ import annotations

from typing import Mapping, Optional
from urllib.parse import quote

from codes import Text, say
from storage.decrypt import decode_digest
from storage.fetch import MediaJob, provider_message, raise_for_provider, small_limits, stream_plain
from storage.http import DownloadError, open_stream, read_json
from storage.register import call, refused_in_body
from storage.send import SendTarget, no_message_id, post_json, refused

from .base import (
    KIND_CONNECTION, KIND_MESSAGE, KIND_PRESENCE, KIND_STATUS, PLAIN_STATUS_CODES, Normalised,
    RouteHint, build_result, first_text, require_instance_id,
)
from .provider import ApiAccess, MediaDownload, Provider, Setting, WebhookUrl
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


# --- its API (network) ---------------------------------------------------------------

def _endpoint(base_url: str, path: str, instance_id: str) -> str:
    return f"{base_url.rstrip('/')}{path}?instanceId={quote(instance_id, safe='')}"


def send_text(target: SendTarget, phone: str, text: str, delay: int = 1) -> str:
    """``POST /v1/message/send-text?instanceId=``; the answer's ``messageId`` (fallback ``insertedId``)."""
    url = _endpoint(target.base_url, "/v1/message/send-text", target.instance)
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    status, data = post_json(target, url, headers, {"phone": phone, "message": text, "delayMessage": delay})
    if status >= 400 or (isinstance(data, dict) and data.get("error") not in (None, False, "")):
        raise refused("W-API", status, data)
    message_id = None
    if isinstance(data, dict):
        message_id = data.get("messageId") or data.get("insertedId")
    if not isinstance(message_id, str) or not message_id:
        raise no_message_id("W-API", data)
    return message_id


def _media_needs(job: MediaJob) -> Optional[Text]:
    if job.media_key and job.direct_path:
        return None
    return say("media_error.no_key_and_path", provider="W-API")


def fetch_media(job: MediaJob, out, config, tick):
    """W-API decrypts the file itself and answers a ``fileLink`` to fetch it from."""
    allowed = config.allowed_hosts(job.api_base_url)
    url = _endpoint(job.api_base_url, "/v1/message/download-media", job.instance_external_id)
    response = open_stream("POST", url, allowed=allowed, limits=config.limits,
                           headers={"Authorization": f"Bearer {job.api_token}"},
                           json_body={"mediaKey": job.media_key, "directPath": job.direct_path,
                                      "type": job.media_type, "mimetype": job.mimetype})
    raise_for_provider(response, "W-API")
    answer = read_json(response, small_limits(config), "W-API")
    link = answer.get("fileLink") if isinstance(answer, dict) else None
    if not link or (isinstance(answer, dict) and answer.get("error")):
        raise DownloadError(f"W-API could not fetch it: {provider_message(answer) or 'no fileLink in its answer'}",
                            text=say("media_error.provider_could_not_fetch", provider="W-API"))
    response = open_stream("GET", link, allowed=allowed, limits=config.limits)
    raise_for_provider(response, say("media_error.who.file_link", provider="W-API"))
    return stream_plain(response, out, config, tick, file_sha256=decode_digest(job.file_sha256),
                        file_length=job.file_length)


# The URL of each event kind: (register key and label, path, route hint).
WEBHOOK_URLS = (
    WebhookUrl("received", "received", "/webhook/receive-message/", "receive-message"),
    WebhookUrl("delivery", "delivery", "/webhook/send-message/", "send-message"),
    WebhookUrl("message-status", "message-status", "/webhook/message-status/", "message-status"),
    WebhookUrl("chat-presence", "chat-presence", "/webhook/chat-presence/", "chat-presence"),
    WebhookUrl("connected", "connected", "/webhook/connect/", "connect"),
    WebhookUrl("disconnected", "disconnected", "/webhook/disconnect/", "disconnect"),
)
WEBHOOK_KINDS = tuple(url.key for url in WEBHOOK_URLS)


def register(api_base: str, token: str, instance_id: str, urls: Mapping[str, str], **_options) -> list[dict]:
    """``PUT /v1/webhook/update-webhook-<kind>`` with ``{"value": url}``, one per kind."""
    results = []
    for kind in WEBHOOK_KINDS:
        endpoint = _endpoint(api_base, f"/v1/webhook/update-webhook-{kind}", instance_id)
        status, answer = call("PUT", endpoint, {"Authorization": f"Bearer {token}"}, {"value": urls[kind]})
        ok = status is not None and status < 400 and not refused_in_body(answer)
        results.append({"provider": NAME, "instance": instance_id, "event": kind, "url": urls[kind],
                        "ok": ok, "status": status, "answer": answer})
    return results


PROVIDER = Provider(
    name=NAME,
    label="W-API",
    detect=detect,
    parse=parse,
    statuses=PLAIN_STATUS_CODES,
    settings=(Setting("WAPI_BASE_URL", "https://api.w-api.app", "url"), Setting("WAPI_TOKEN", "", "secret")),
    api=ApiAccess("WAPI_BASE_URL", "WAPI_TOKEN"),
    webhook_urls=WEBHOOK_URLS,
    send_text=send_text,
    media=MediaDownload(fetch=fetch_media, needs=_media_needs),
    register=register,
)
