"""The JSON API people and tools read: /status, /test and /api/*."""

import json
import logging

import pytest

from tests.helpers import load_sample
from models import Message, WebhookEvent

EVOLUTION_TEXT = "evolution/v1_messages.upsert_text_incoming.json"
EVOLUTION_IMAGE = "evolution/v1_messages.upsert_image_no_base64.json"


@pytest.fixture
def traffic(post_webhook):
    """A little of everything: two providers, a status, a rejected and an ignored request."""
    post_webhook("/webhook/", load_sample(EVOLUTION_TEXT))
    post_webhook("/webhook/", load_sample(EVOLUTION_IMAGE))
    post_webhook("/webhook/", load_sample("evolution/v1_messages.upsert_text_outgoing_fromMe.json"))
    post_webhook("/webhook/", load_sample("meta/dashboard_test_webhook_text.json"))
    post_webhook("/webhook/", load_sample("meta/fixture_status_read.json"))
    post_webhook("/webhook/", raw=b"oops")
    post_webhook("/webhook/", {"unknown": True})


def test_status_counts_events_messages_and_instances(client, traffic):
    status = client.get("/status").get_json()
    assert status["name"] == "zaphook"
    assert status["version"]
    assert status["uptime_seconds"] >= 0
    assert status["database"].startswith(("sqlite:///", "postgresql://"))
    assert status["events"]["total"] == 7
    assert status["events"]["by_provider"] == {"evolution": 3, "meta": 2, "none": 1, "unknown": 1}
    assert status["events"]["by_outcome"] == {"processed": 5, "rejected": 1, "ignored": 1}
    assert status["events"]["by_kind"]["message"] == 4
    assert status["messages"] == {"in": 3, "out": 1}
    assert status["outgoing_statuses"] == {"sent": 1}
    assert {(i["provider"], i["instance_id"]) for i in status["instances"]} == {
        ("evolution", "tigo1"), ("evolution", "instance_3_553175564133"), ("meta", "123456123"),
        ("meta", "1122334455667")}
    assert status["events"]["last_received_at"].endswith("Z")


def test_status_lists_the_webhook_urls_without_the_token(make_app):
    client = make_app(WEBHOOK_TOKEN="super-secret-token-123", PUBLIC_URL="https://demo.ngrok.app").test_client()
    status = client.get("/status")
    urls = status.get_json()["webhook_urls"]
    assert urls["evolution"] == "https://demo.ngrok.app/api/webhooks/evolution/?token=<WEBHOOK_TOKEN>"
    assert urls["wapi"]["received"] == "https://demo.ngrok.app/webhook/receive-message/?token=<WEBHOOK_TOKEN>"
    assert "super-secret-token-123" not in status.get_data(as_text=True)


def test_status_uses_the_request_host_without_public_url(client):
    urls = client.get("/status", base_url="http://127.0.0.1:5000").get_json()["webhook_urls"]
    assert urls["any"] == "http://127.0.0.1:5000/webhook/"


def test_events_are_listed_newest_first_with_filters_and_paging(client, traffic):
    items = client.get("/api/events").get_json()["items"]
    assert len(items) == 7
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    assert set(items[0]) >= {"id", "received_at", "route", "provider", "kind", "outcome", "instance_id",
                             "message_id", "error"}
    evolution = client.get("/api/events?provider=evolution").get_json()["items"]
    assert {item["provider"] for item in evolution} == {"evolution"}
    assert len(client.get("/api/events?outcome=rejected").get_json()["items"]) == 1
    assert len(client.get("/api/events?kind=status").get_json()["items"]) == 1
    assert len(client.get("/api/events?instance=tigo1").get_json()["items"]) == 2
    page = client.get("/api/events?limit=3").get_json()
    assert len(page["items"]) == 3
    rest = client.get(f"/api/events?limit=10&before_id={page['next_before_id']}").get_json()
    assert len(rest["items"]) == 4
    assert rest["next_before_id"] is None
    assert not {i["id"] for i in page["items"]} & {i["id"] for i in rest["items"]}


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "before_id=x", "outcome=great"])
def test_bad_paging_gets_400(client, query):
    response = client.get(f"/api/events?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_one_event_shows_its_payload_and_headers_redacted(client, post_webhook):
    answer = post_webhook("/webhook/", load_sample(EVOLUTION_IMAGE), headers={"User-Agent": "axios/1.6"}).get_json()
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert event["payload"]["apikey"] == "[redacted]"
    assert event["payload"]["data"]["message"]["imageMessage"]["mediaKey"] == "[redacted]"
    assert event["payload"]["data"]["key"]["id"] == "3AE2973B208DFC7A642D"
    assert event["headers"]["user-agent"] == "axios/1.6"
    text = json.dumps(event)
    assert "BA6D7E42-ED6C-4182-BF8C-D70F964C2BCB" not in text
    assert "+1GUGiQ2V3bl5x3WbwBtEWTHGqbSsDoxipWuGt7fjsU=" not in text
    # stored whole, because replay needs it
    assert "BA6D7E42-ED6C-4182-BF8C-D70F964C2BCB" in WebhookEvent.get_by_id(answer["event_id"]).body


def test_a_rejected_body_is_shown_as_base64_when_it_is_not_text(client, post_webhook):
    answer = post_webhook("/webhook/", raw=b"\xff\x00").get_json()
    event = client.get(f"/api/events/{answer['detail']['event_id']}").get_json()
    assert event["payload"] is None
    assert event["body_base64"] == "/wA="


def test_unknown_ids_get_404(client):
    assert client.get("/api/events/999").status_code == 404
    assert client.post("/api/events/999/replay").status_code == 404
    assert client.get("/api/messages/999").status_code == 404


def test_instances_chats_and_messages_are_listed(client, traffic):
    instances = client.get("/api/instances").get_json()["items"]
    tigo = next(i for i in instances if i["instance_id"] == "tigo1")
    assert tigo["provider"] == "evolution"
    assert tigo["client"] == "default"
    assert tigo["last_event_at"] == "2025-05-01T21:10:21.000Z"

    chats = client.get("/api/chats?instance=tigo1").get_json()["items"]
    assert [(c["chat_id"], c["name"]) for c in chats] == [("59171146267@s.whatsapp.net", "percy alvarez E1")]

    all_messages = client.get("/api/messages").get_json()["items"]
    assert len(all_messages) == 4
    outgoing = client.get("/api/messages?direction=out").get_json()["items"]
    assert [m["text"] for m in outgoing] == ["menasje saliente solo texto"]
    images = client.get("/api/messages?type=image").get_json()["items"]
    assert images[0]["media"]["state"] == "pending"
    by_chat = client.get("/api/messages?instance=tigo1&chat=59171146267").get_json()["items"]
    assert len(by_chat) == 2
    assert client.get("/api/messages?status=sent").get_json()["items"][0]["from_me"] is True
    assert client.get("/api/messages?direction=sideways").status_code == 400


def test_a_message_shows_its_status_history(client, post_webhook):
    payload = load_sample("evolution/v1_messages.upsert_text_outgoing_fromMe.json")
    post_webhook("/webhook/", payload)
    for status, stamp in (("DELIVERY_ACK", 1746133830000), ("READ", 1746133840000)):
        post_webhook("/webhook/", {"event": "messages.update", "instance": "tigo1", "data": {
            "id": "3EB0B7AA9746D9215C1340", "remoteJid": "59171146267@s.whatsapp.net", "fromMe": True,
            "status": status, "datetime": stamp}})
    message = Message.get()
    detail = client.get(f"/api/messages/{message.id}").get_json()
    assert detail["status"] == "read"
    assert [(c["status"], c["timestamp"]) for c in detail["status_history"]] == [
        ("sent", "2025-05-01T21:10:21.000Z"),
        ("delivered", "2025-05-01T21:10:30.000Z"),
        ("read", "2025-05-01T21:10:40.000Z"),
    ]
    assert all(c["event_id"] for c in detail["status_history"])


def test_the_self_check_reports_each_check(client, post_webhook):
    post_webhook("/webhook/", load_sample(EVOLUTION_TEXT))
    report = client.get("/test").get_json()
    names = {check["name"]: check for check in report["checks"]}
    assert names["database writable"]["ok"] is True
    assert names["data dir writable"]["ok"] is True
    assert "MB free" in names["data dir writable"]["detail"]
    assert names["webhook token"]["ok"] is True  # not set, but only this machine listens
    assert "WEBHOOK_TOKEN is not set" in names["webhook token"]["detail"]
    tigo = names["instance evolution/tigo1"]
    assert tigo["ok"] is False  # the sample's last event is from 2025
    assert "last event 2025-05-01T20:51:13.000Z" in tigo["detail"]
    assert report["ok"] is False


def test_the_self_check_passes_on_a_sane_setup(make_app):
    client = make_app(WEBHOOK_TOKEN="a-good-long-webhook-token").test_client()
    report = client.get("/test").get_json()
    assert report["ok"] is True, report


@pytest.mark.parametrize("settings, failing", [
    ({"WEBHOOK_TOKEN": "short"}, "shorter than 16"),
    ({"HOST": "0.0.0.0"}, "listens beyond this machine"),
    ({"WEBHOOK_TOKEN": "same-token-for-both-1", "ADMIN_TOKEN": "same-token-for-both-1"}, "equals WEBHOOK_TOKEN"),
    ({"META_APP_SECRET": "secret"}, "META_VERIFY_TOKEN is not"),
])
def test_the_self_check_flags_unsafe_token_settings(make_app, settings, failing):
    report = make_app(**settings).test_client().get("/test").get_json()
    assert report["ok"] is False
    assert any(failing in check["detail"] for check in report["checks"] if not check["ok"])


def test_the_dry_run_says_what_would_happen_and_writes_nothing(client):
    payload = load_sample(EVOLUTION_IMAGE)
    response = client.post("/test", json=payload)
    body = response.get_json()
    assert response.status_code == 200
    assert (body["provider"], body["kind"], body["instance_id"], body["outcome"]) == (
        "evolution", "message", "instance_3_553175564133", "processed")
    assert body["instance_known"] is False
    event = body["events"][0]
    assert (event["event"], event["type"]) == ("MessageEvent", "image")
    assert event["message_id"] == "3AE2973B208DFC7A642D"
    assert event["timestamp"] == "2024-01-19T17:14:08Z"
    assert body["media_to_fetch"][0]["media_type"] == "image"
    assert body["media_to_fetch"][0]["media_key"] == "[redacted]"
    assert WebhookEvent.select().count() == 0
    assert Message.select().count() == 0


def test_the_dry_run_recognises_a_duplicate_and_bad_json(client, post_webhook):
    post_webhook("/webhook/", load_sample(EVOLUTION_TEXT))
    assert client.post("/test", json=load_sample(EVOLUTION_TEXT)).get_json()["outcome"] == "duplicate"
    bad = client.post("/test", data=b"[]", content_type="application/json")
    assert bad.status_code == 400
    assert WebhookEvent.select().count() == 1


def test_the_dry_run_uses_the_route_as_a_hint(client):
    body = client.post("/test?route=/webhook/send-message/", json=load_sample("seeds/endpoint_send_message.json")
                       | {"fromMe": None}).get_json()
    assert body["events"][0]["from_me"] is True


def test_each_request_is_logged_in_one_line_without_secrets(make_app, caplog):
    client = make_app(WEBHOOK_TOKEN="log-secret-token-0123").test_client()
    with caplog.at_level(logging.INFO, logger="zaphook.access"):
        client.post("/webhook/?token=log-secret-token-0123", json=load_sample(EVOLUTION_TEXT),
                    headers={"X-Request-Id": "req-1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "zaphook.access"]
    assert len(lines) == 1
    assert lines[0].startswith("rid=req-1 POST /webhook/ provider=evolution kind=message outcome=processed status=200 ms=")
    assert "log-secret-token" not in caplog.text
    assert "0CE98F9E" not in caplog.text  # the payload's apikey never reaches the log
