"""A provider's instance token header (Provider.instance_token_header): checked by ingest for any provider.

"Tolk" is a provider written only for this test: its webhooks carry the
instance's API token in ``X-Tolk-Instance``. Nothing in ingest names it.
"""

from __future__ import annotations

import json

import pytest

from handlers import REGISTRY
from handlers.base import PresenceEvent, build_result, normalize_jid
from handlers.provider import Provider
from ingest import instance_token_failure
from models import Instance, WebhookEvent

TOKEN = "tolk-instance-token-42"


def detect(payload: dict, hint) -> bool:
    return payload.get("tolk") == 1


def parse(payload: dict, hint):
    return build_result("tolk", payload["account"], [PresenceEvent(chat_id=normalize_jid(payload["chat"]),
                                                                   state="typing")])


TOLK = Provider(name="tolk", label="Tolk", detect=detect, parse=parse, statuses={"ok": "sent"},
                instance_token_header="X-Tolk-Instance")


@pytest.fixture
def tolk():
    REGISTRY.add(TOLK)
    try:
        yield TOLK
    finally:
        REGISTRY.remove("tolk")


def post(client, headers=None, account="T-1"):
    return client.post("/webhook/", data=json.dumps({"tolk": 1, "account": account, "chat": "5511999990001"}),
                       content_type="application/json", headers=headers or {})


@pytest.mark.parametrize("stored, sent, status", [
    (None, None, 200),  # no stored token: not checked
    (None, "anything", 200),
    ("", "anything", 200),
    (TOKEN, TOKEN, 200),
    (TOKEN, f"  {TOKEN} ", 200),  # spaces around a header value are not part of it
    (TOKEN, None, 401),
    (TOKEN, "", 401),
    (TOKEN, TOKEN.upper(), 403),
    (TOKEN, TOKEN[:-1], 403),
    (TOKEN, TOKEN + "x", 403),
])
def test_the_header_must_carry_the_stored_token_when_there_is_one(tolk, client, stored, sent, status):
    Instance.register("tolk", "T-1", {"api_token": stored})
    response = post(client, {"X-Tolk-Instance": sent} if sent is not None else None)
    assert response.status_code == status, response.get_json()
    row = WebhookEvent.get()
    if status == 200:
        assert row.outcome == "processed"
    else:
        assert (row.outcome, row.body_encoding, row.http_status) == ("rejected", "untrusted", status)
        assert row.error.startswith(("missing X-Tolk-Instance header", "X-Tolk-Instance does not match"))
        assert TOKEN not in row.error
    assert TOKEN not in row.headers  # never stored, whatever the outcome


def test_another_providers_webhooks_are_not_checked(tolk, client):
    Instance.register("tolk", "T-1", {"api_token": TOKEN})
    sample = {"instanceId": "instance_123", "event": "presence", "chatId": "5511888888888", "presence": "composing"}
    Instance.register("plain", "instance_123", {"api_token": TOKEN})
    answer = client.post("/webhook/chat-presence/", data=json.dumps(sample), content_type="application/json")
    assert answer.status_code == 200


def test_the_check_reads_the_provider_unit_only():
    class Headers(dict):
        def get(self, key, default=None):
            return next((v for k, v in self.items() if k.lower() == key.lower()), default)

    assert instance_token_failure(None, Instance(id=1), Headers()) is None
    assert instance_token_failure(REGISTRY.get("wapi"), Instance(id=1), Headers()) is None


def test_the_header_is_listed_among_those_never_stored(tolk):
    assert "x-tolk-instance" in REGISTRY.instance_token_headers()
