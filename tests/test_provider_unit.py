"""A provider is one unit: one added to the registry works end to end with no other change.

"Acme" below is a provider written only for this test, as a new provider's
module would be (detection, parsing, statuses, settings, webhook URL, its
signature, sending, media, registration). Added to the registry, it is served
on its URL by the real served app, listed in /status and /api/providers,
registered by `register`, sent through by a campaign, and its media is
downloaded through its own API from a real HTTP server on 127.0.0.1: proof
that each of those reads the registry instead of naming providers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import requests

import cli
from handlers import REGISTRY
from handlers.base import MediaDescriptor, MessageEvent, StatusEvent, build_result, normalize_jid, parse_timestamp
from handlers.provider import ApiAccess, MediaDownload, Provider, Setting, Signature, WebhookUrl
from security import check_hmac_signature
from storage.fetch import raise_for_provider, stream_plain
from storage.http import open_stream
from storage.send import no_message_id, post_json, refused
from storage.register import call
from tests.fakes import FakeServer, file_reply, json_reply
from tests.helpers import ServedApp, wait_applied, wait_until
from tests.media_support import wait_for_media

pytestmark = pytest.mark.slow

ACCOUNT = "acme-account-7"
API_KEY = "acme-api-key-0123456789"
SIGNING_SECRET = "acme-signing-secret"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ACME_STATUSES = {"handed": "sent", "arrived": "delivered", "seen": "read", "lost": "failed"}


# --- the provider's module, as a new provider would write it ----------------------------------

def detect(payload: dict, hint) -> bool:
    return payload.get("acme") == 1


def parse(payload: dict, hint):
    events = []
    for item in payload.get("messages", []):
        media = None
        if item.get("file"):
            media = MediaDescriptor(media_type="image", mimetype="image/png", media_id=item["file"],
                                    file_sha256=None)
        events.append(MessageEvent(
            message_id=item["id"], chat_id=normalize_jid(item["from"]), from_me=False,
            type="image" if media else "text", text=item.get("text"), sender_id=normalize_jid(item["from"]),
            timestamp=parse_timestamp(item.get("at")), media=media, event_name="acme.message"))
    for item in payload.get("statuses", []):
        events.append(StatusEvent(message_id=item["id"], status=ACME_STATUSES[item["state"]],
                                  chat_id=normalize_jid(item["to"])))
    return build_result("acme", payload["account"], events, "acme.batch")


def send_text(target, phone: str, text: str) -> str:
    status, data = post_json(target, f"{target.base_url}/v9/{target.instance}/send",
                             {"X-Acme-Key": target.token}, {"to": phone, "body": text})
    if status >= 400:
        raise refused("Acme", status, data)
    if not isinstance(data, dict) or not data.get("ref"):
        raise no_message_id("Acme", data)
    return data["ref"]


def fetch_media(job, out, config, tick):
    response = open_stream("GET", f"{job.api_base_url}/v9/files/{job.media_id}",
                           allowed=config.allowed_hosts(job.api_base_url), limits=config.limits,
                           headers={"X-Acme-Key": job.api_token})
    raise_for_provider(response, "Acme")
    return stream_plain(response, out, config, tick)


def register(api_base: str, token: str, instance_id: str, urls, signing_secret=None, **_options) -> list[dict]:
    status, answer = call("PUT", f"{api_base}/v9/{instance_id}/hook", {"X-Acme-Key": token},
                          {"url": urls["inbox"], "signing_secret": signing_secret})
    return [{"provider": "acme", "instance": instance_id, "event": "inbox", "url": urls["inbox"],
             "ok": status == 200, "status": status, "answer": answer}]


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


ACME = Provider(
    name="acme", label="Acme", detect=detect, parse=parse, statuses=ACME_STATUSES,
    settings=(Setting("ACME_BASE_URL", "", "url"), Setting("ACME_KEY", "", "secret"),
              Setting("ACME_SIGNING_SECRET", "", "secret")),
    api=ApiAccess("ACME_BASE_URL", "ACME_KEY"),
    webhook_urls=(WebhookUrl("inbox", "every event", "/hooks/acme/", "acme", event_suffix=True),),
    signature=Signature("X-Acme-Signature", "ACME_SIGNING_SECRET",
                        lambda secret, header, body: check_hmac_signature(
                            secret, header, body, header_name="X-Acme-Signature", prefixed=False), sign),
    send_text=send_text,
    media=MediaDownload(fetch=fetch_media, needs=lambda job: None if job.media_id else "no Acme file id"),
    register=register,
)


# --- the test ---------------------------------------------------------------------------------

@pytest.fixture
def acme():
    REGISTRY.add(ACME)
    try:
        yield ACME
    finally:
        REGISTRY.remove("acme")


@pytest.fixture
def acme_api():
    """Acme's API on 127.0.0.1: sends, files and webhook settings."""
    server = FakeServer()
    server.route("POST", f"/v9/{ACCOUNT}/send", lambda request: json_reply({"ref": "ACME-OUT-1"}))
    server.serve("GET", "/v9/files/F-1", file_reply(PNG, "image/png"))
    server.serve("PUT", f"/v9/{ACCOUNT}/hook", json_reply({"saved": True}))
    yield server
    server.close()


def _post(served: ServedApp, path: str, payload: dict, signed: bool = True) -> requests.Response:
    import json

    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Acme-Signature"] = sign(SIGNING_SECRET, body)
    return requests.post(wait_applied(served.url + path), data=body, headers=headers, timeout=10)



def test_a_provider_added_to_the_registry_is_served_listed_registered_sent_through_and_downloaded(
        acme, acme_api, make_app, tmp_path):
    app = make_app(ACME_BASE_URL=acme_api.url, ACME_KEY=API_KEY, ACME_SIGNING_SECRET=SIGNING_SECRET,
                   MEDIA_WORKERS=1, CAMPAIGN_SENDER=True, CAMPAIGN_RATE_PER_MIN=600.0, CAMPAIGN_SEND_TIMEOUT=5.0)
    served = ServedApp(app)
    try:
        # The route table: its URL, and its URL with an event appended, are webhooks.
        incoming = {"acme": 1, "account": ACCOUNT, "messages": [
            {"id": "ACME-IN-1", "from": "5511999990001", "text": "oi", "at": int(time.time())},
            {"id": "ACME-IN-2", "from": "5511999990001", "file": "F-1", "at": int(time.time())}]}
        answer = _post(served, "/hooks/acme/", incoming)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["provider"], answer.json()["outcome"]) == ("acme", "processed")
        again = _post(served, "/hooks/acme/message.new", incoming).json()
        assert (again["provider"], again["outcome"]) == ("acme", "duplicate")

        # Its signature is checked: an unsigned Acme payload is refused once its secret is set.
        unsigned = _post(served, "/hooks/acme/", incoming, signed=False)
        assert unsigned.status_code == 401 and "X-Acme-Signature" in unsigned.json()["error"]

        # /status, /api/providers and the tunnel's table list its URL.
        status = requests.get(served.url + "/status", timeout=10).json()
        assert status["webhook_urls"]["acme"] == f"{served.url}/hooks/acme/"
        described = requests.get(served.url + "/api/providers", timeout=10).json()
        assert {"name": "acme", "label": "Acme", "can_send": True, "can_register": True,
                "registered_by_hand": False, "downloads_media": True,
                "webhook_paths": ["/hooks/acme/"]} in described["items"]
        assert "/hooks/acme/" in described["routes"]

        # Media: downloaded through Acme's own API, filed like any other.
        messages = requests.get(served.url + "/api/messages?limit=10", timeout=10).json()["items"]
        media_id = next(m for m in messages if m["provider_message_id"] == "ACME-IN-2")["media"]["id"]
        with app.test_client() as client:
            media = wait_for_media(client, media_id, states=("done", "failed", "expired"))
        assert media["state"] == "done", media
        assert acme_api.hits("GET", "/v9/files/F-1")[0].headers["x-acme-key"] == API_KEY

        # Campaigns: its instance can send, through its send_text.
        instance_id = next(i["id"] for i in status["instances"] if i["provider"] == "acme")
        created = requests.post(served.url + "/api/campaigns", timeout=10, json={
            "name": "Acme promo", "instance_id": instance_id, "text": "Promoção!",
            "contacts": [{"phone": "5511999990002", "name": "Bia"}]})
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        assert requests.post(f"{served.url}/api/campaigns/{campaign_id}/start", timeout=10).status_code == 200
        wait_until(lambda: acme_api.hits("POST", f"/v9/{ACCOUNT}/send"), "sent through Acme")
        assert acme_api.hits("POST", f"/v9/{ACCOUNT}/send")[0].json() == {"to": "5511999990002", "body": "Promoção!"}
        # ...and its statuses move the campaign along, read with its own vocabulary.
        _post(served, "/hooks/acme/", {"acme": 1, "account": ACCOUNT,
                                        "statuses": [{"id": "ACME-OUT-1", "state": "seen", "to": "5511999990002"}]})
        done = wait_until(lambda: (lambda c: c if c["read_count"] == 1 else None)(
            requests.get(f"{served.url}/api/campaigns/{campaign_id}", timeout=10).json()), "read")
        assert done["sent_count"] == 1
    finally:
        served.close()

    # register: the command line sets Acme's webhook through its API.
    settings = dict(app.config)
    with app.app_context():
        import models

        with models.db.connection_context():
            results = cli.register_instance("acme", ACCOUNT, settings, "https://hub.example.com")
    assert [(r["event"], r["ok"]) for r in results] == [("inbox", True)]
    [hook] = acme_api.hits("PUT", f"/v9/{ACCOUNT}/hook")
    # ...and hands it the secret its Signature checks, to sign the webhooks with.
    assert hook.json() == {"url": "https://hub.example.com/hooks/acme/", "signing_secret": SIGNING_SECRET}
    assert hook.headers["x-acme-key"] == API_KEY


def test_a_removed_provider_leaves_no_route_behind(acme):
    assert "/hooks/acme/" in REGISTRY.routes()
    REGISTRY.remove("acme")
    assert "/hooks/acme/" not in REGISTRY.routes()
    REGISTRY.add(ACME)  # the fixture removes it again
