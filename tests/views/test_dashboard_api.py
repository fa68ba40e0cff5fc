"""The API endpoints the dashboard added: /api/changes, /api/overview, chat previews, event search, campaign check."""

from __future__ import annotations

import io

import pytest

from tests.helpers import load_sample

EVOLUTION_IN = "evolution/v1_messages.upsert_text_incoming.json"
EVOLUTION_OUT = "evolution/v1_messages.upsert_text_outgoing_fromMe.json"


# --- /api/changes ---------------------------------------------------------------------------

def test_changes_without_a_cursor_reports_every_part_changed(client):
    answer = client.get("/api/changes").get_json()
    assert answer["changed"] == ["events", "pending", "media", "campaigns", "campaign_log"]
    assert answer["cursor"] == "0.0.0.0.0"


def test_changes_reports_nothing_until_a_webhook_arrives(client, post_webhook):
    cursor = client.get("/api/changes").get_json()["cursor"]
    assert client.get(f"/api/changes?since={cursor}").get_json() == {"cursor": cursor, "changed": []}
    post_webhook("/webhook/", load_sample(EVOLUTION_IN))
    answer = client.get(f"/api/changes?since={cursor}").get_json()
    assert answer["changed"] == ["events"]
    assert answer["cursor"] != cursor


def test_changes_moves_when_the_applier_applies_what_was_only_acknowledged(app, client):
    stored = client.post("/webhook/?wait=0", json=load_sample(EVOLUTION_IN)).get_json()
    assert stored["outcome"] == "stored"  # acknowledged; no applier runs here until asked
    cursor = client.get("/api/changes").get_json()["cursor"]  # what a page polling right now sees
    assert client.get(f"/api/changes?since={cursor}").get_json()["changed"] == []
    app.extensions["zaphook.applier"].apply_through(stored["event_id"])
    # No new webhook: the chat and message the applier made are news all the same.
    assert client.get(f"/api/changes?since={cursor}").get_json()["changed"] == ["pending"]


def test_changes_follows_media_rows_and_campaigns(client, post_webhook):
    post_webhook("/webhook/", load_sample("meta/fixture_image.json"))
    cursor = client.get("/api/changes").get_json()["cursor"]
    assert cursor.split(".")[2] != "0"  # the image's media row
    client.post("/api/instances", json={"provider": "evolution", "instance_id": "shop"})
    created = client.post("/api/campaigns", json={"name": "c", "instance_id": "shop", "text": "hi",
                                                  "contacts": ["5511999990001"]})
    assert created.status_code == 201
    assert set(client.get(f"/api/changes?since={cursor}").get_json()["changed"]) == {"campaigns", "campaign_log"}


@pytest.mark.parametrize("since", ["abc", "1.2.3.4", "1.2.3.4.5.6", "1.2.x.4.5"])
def test_changes_refuses_a_malformed_cursor(client, since):
    response = client.get(f"/api/changes?since={since}")
    assert response.status_code == 400
    assert "cursor" in response.get_json()["error"]


# --- /api/overview ----------------------------------------------------------------------------

def test_overview_counts_todays_messages_per_instance(client, post_webhook):
    incoming, outgoing = load_sample(EVOLUTION_IN), load_sample(EVOLUTION_OUT)
    post_webhook("/webhook/", incoming)
    post_webhook("/webhook/", outgoing)
    # The samples are from 2025: counted from a day before them, not from today.
    answer = client.get("/api/overview?since=2025-01-01T03:00:00.000Z").get_json()
    assert answer["since"] == "2025-01-01T03:00:00.000Z"
    (instance,) = answer["instances"]
    assert instance["instance_id"] == "tigo1"
    assert instance["messages_today"] == {"in": 1, "out": 1}
    assert instance["media_today"] == {"done": 0, "failed": 0}
    assert instance["health_score"] == 100
    today = client.get("/api/overview").get_json()["instances"][0]
    assert today["messages_today"] == {"in": 0, "out": 0}


def test_overview_counts_settled_media(make_app):
    import base64

    from tests.media_support import evolution_payload, media_of, post, vector, wait_for_media

    meta, _encrypted, plaintext = vector("image")
    client = make_app(MEDIA_WORKERS=1).test_client()
    payload = evolution_payload(meta, "OVERVIEWIMG", "/v/x.enc")
    payload["data"]["message"]["base64"] = base64.b64encode(plaintext).decode()
    post(client, "/api/webhooks/evolution/", payload)
    wait_for_media(client, media_of(client, "OVERVIEWIMG")["id"])
    (instance,) = client.get("/api/overview").get_json()["instances"]
    assert instance["media_today"] == {"done": 1, "failed": 0}


def test_overview_refuses_a_bad_since(client):
    assert client.get("/api/overview?since=yesterday").status_code == 400


# --- the chat list's last message ----------------------------------------------------------------

def test_chats_carry_their_newest_message(client, post_webhook):
    post_webhook("/webhook/", load_sample(EVOLUTION_IN))
    post_webhook("/webhook/", load_sample(EVOLUTION_OUT))
    items = client.get("/api/chats").get_json()["items"]
    assert len(items) == 1
    last = items[0]["last_message"]
    assert last["from_me"] is True
    assert last["text"] == load_sample(EVOLUTION_OUT)["data"]["message"]["conversation"]
    assert set(last) == {"id", "type", "text", "caption", "from_me", "status", "sender_name", "timestamp", "deleted"}


# --- event text search --------------------------------------------------------------------------

def test_events_text_filter_searches_ids_errors_and_bodies(client, post_webhook):
    post_webhook("/webhook/", load_sample(EVOLUTION_IN))
    post_webhook("/webhook/", load_sample("meta/fixture_image.json"))
    message_id = load_sample(EVOLUTION_IN)["data"]["key"]["id"]
    found = client.get(f"/api/events?q={message_id.lower()}").get_json()["items"]
    assert [item["provider"] for item in found] == ["evolution"]
    assert len(client.get("/api/events?q=messages.upsert").get_json()["items"]) == 1
    assert client.get("/api/events?q=nothing-like-this").get_json()["items"] == []
    assert len(client.get("/api/events?q=").get_json()["items"]) == 2


# --- campaign check --------------------------------------------------------------------------------

@pytest.fixture
def shop(client):
    assert client.post("/api/instances", json={"provider": "evolution", "instance_id": "shop"}).status_code == 201
    return client


def test_campaign_check_reports_problems_without_creating(shop):
    answer = shop.post("/api/campaigns/check", json={
        "name": "", "instance_id": "shop", "text": "hello",
        "csv": "phone,name\n5511999990001,Ana\n5511999990001,Ana again\nnot-a-phone,Bob\n"}).get_json()
    assert answer["ok"] is False
    assert answer["problems"] == [{"code": "name_required", "params": {}, "message": "name is required"}]
    assert answer["contacts_valid"] == 1
    # rows are the list's lines, its header being line 1
    assert answer["duplicates"][0]["row"] == 3 and answer["duplicates"][0]["same_as_row"] == 2
    assert answer["invalid"][0]["row"] == 4 and answer["invalid"][0]["code"] == "letters"
    assert answer["preview"] == [{"row": 2, "phone": "5511999990001", "name": "Ana", "text": "hello"}]
    assert shop.get("/api/campaigns").get_json()["items"] == []


def test_campaign_check_accepts_a_csv_upload(shop):
    data = {"name": "Promo", "instance_id": "shop", "text": "hi",
            "file": (io.BytesIO(b"5511999990001;Ana\n5521988880002;Bia\n"), "list.csv")}
    answer = shop.post("/api/campaigns/check", data=data, content_type="multipart/form-data").get_json()
    assert answer["ok"] is True and answer["problems"] == []
    assert answer["contacts_valid"] == 2


def test_campaign_check_names_an_unknown_instance_and_an_empty_list(shop):
    answer = shop.post("/api/campaigns/check", json={"name": "x", "instance_id": "nobody", "text": "hi",
                                                     "contacts": []}).get_json()
    assert [item["message"] for item in answer["problems"]] == ["no instance 'nobody'",
                                                                 "no valid phone number in contacts"]
    assert [item["code"] for item in answer["problems"]] == ["instance_unknown", "no_valid_contact"]


def test_campaign_check_refuses_a_body_that_is_not_a_campaign(shop):
    assert shop.post("/api/campaigns/check", data="nope", content_type="text/plain").status_code == 400
