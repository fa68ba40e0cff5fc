"""The events API the events page reads: paging both ways, what each request was, the answer
zaphook gave, and replays with changes as new events."""

from __future__ import annotations

import copy
import json

import pytest

from models import Message, WebhookEvent
from security import REDACTED
from tests.helpers import load_sample

EVOLUTION_TEXT = "evolution/v1_messages.upsert_text_incoming.json"
EVOLUTION_IMAGE = "evolution/v1_messages.upsert_image_no_base64.json"


def evolution_text(message_id: str, text: str = "hola", instance: str = "tigo1") -> dict:
    payload = copy.deepcopy(load_sample(EVOLUTION_TEXT))
    payload["instance"] = instance
    payload["data"]["key"]["id"] = message_id
    payload["data"]["message"] = {"conversation": text}
    return payload


def stored(post_webhook, payload: dict) -> int:
    """Post without waiting for the applier (the answer given at acknowledgement): the event's id."""
    return post_webhook("/webhook/", payload, query={"wait": "0"}).get_json()["event_id"]


def ids(page: dict) -> list[int]:
    return [item["id"] for item in page["items"]]


# --- paging ----------------------------------------------------------------------------------------

@pytest.fixture
def twelve(post_webhook) -> list[int]:
    """Twelve messages, the even ones on instance "even": their ids, oldest first."""
    return [stored(post_webhook, evolution_text(f"PAGE-{n}", instance="even" if n % 2 == 0 else "odd"))
            for n in range(12)]


def test_pages_go_to_older_events_and_back_to_newer_ones_by_cursor(client, twelve):
    newest = client.get("/api/events?limit=5").get_json()
    assert ids(newest) == twelve[::-1][:5]
    assert newest["next_after_id"] is None  # nothing newer than the newest page
    middle = client.get(f"/api/events?limit=5&before_id={newest['next_before_id']}").get_json()
    assert ids(middle) == twelve[::-1][5:10]
    oldest = client.get(f"/api/events?limit=5&before_id={middle['next_before_id']}").get_json()
    assert ids(oldest) == twelve[::-1][10:]
    assert oldest["next_before_id"] is None

    back = client.get(f"/api/events?limit=5&after_id={oldest['next_after_id']}").get_json()
    assert ids(back) == ids(middle)  # the same page, newest first, whichever way it was reached
    assert (back["next_before_id"], back["next_after_id"]) == (middle["next_before_id"], middle["next_after_id"])
    top = client.get(f"/api/events?limit=5&after_id={back['next_after_id']}").get_json()
    assert ids(top) == ids(newest) and top["next_after_id"] is None


def test_a_page_stays_the_same_while_new_events_arrive(client, post_webhook, twelve):
    first = client.get("/api/events?limit=5").get_json()
    second = client.get(f"/api/events?limit=5&before_id={first['next_before_id']}").get_json()
    stored(post_webhook, evolution_text("PAGE-NEW"))
    again = client.get(f"/api/events?limit=5&before_id={first['next_before_id']}").get_json()
    assert ids(again) == ids(second)
    newer = client.get(f"/api/events?limit=5&after_id={again['next_after_id']}").get_json()
    assert ids(newer) == ids(first)
    assert newer["next_after_id"] == ids(first)[0]  # and the new one is one page further


def test_paging_keeps_the_filter_and_the_search(client, twelve):
    even = client.get("/api/events?limit=4&instance=even").get_json()
    assert ids(even) == twelve[-2::-2][:4]
    rest = client.get(f"/api/events?limit=4&instance=even&before_id={even['next_before_id']}").get_json()
    assert ids(rest) == twelve[-2::-2][4:] and rest["next_before_id"] is None
    found = client.get("/api/events?limit=2&q=PAGE-1").get_json()  # PAGE-1, PAGE-10, PAGE-11
    assert ids(found) == [twelve[11], twelve[10]]
    more = client.get(f"/api/events?limit=2&q=PAGE-1&before_id={found['next_before_id']}").get_json()
    assert ids(more) == [twelve[1]] and more["next_before_id"] is None
    assert ids(client.get(f"/api/events?limit=2&q=PAGE-1&after_id={more['next_after_id']}").get_json()) == ids(found)


def test_more_than_a_hundred_events_are_reachable_page_by_page(client, post_webhook):
    made = [stored(post_webhook, evolution_text(f"MANY-{n}")) for n in range(130)]
    seen, before = [], None
    while True:
        page = client.get("/api/events", query_string={"limit": 100, **({"before_id": before} if before else {})})
        seen += ids(page.get_json())
        before = page.get_json()["next_before_id"]
        if before is None:
            break
    assert seen == made[::-1]


@pytest.mark.parametrize("query", ["after_id=x", "after_id=0", "before_id=3&after_id=1"])
def test_bad_cursors_get_400(client, query):
    response = client.get(f"/api/events?{query}")
    assert response.status_code == 400 and response.get_json()["error"]


# --- what each request was -------------------------------------------------------------------------

def test_each_row_says_what_the_request_was(client, post_webhook):
    post_webhook("/webhook/", load_sample(EVOLUTION_TEXT))
    post_webhook("/webhook/", load_sample("evolution/v1_messages.upsert_text_outgoing_fromMe.json"))
    post_webhook("/webhook/", load_sample("meta/fixture_reaction.json"))
    post_webhook("/webhook/", load_sample("meta/fixture_status_read.json"))
    post_webhook("/webhook/chat-presence/", load_sample("seeds/endpoint_chat_presence.json"))
    post_webhook("/webhook/", load_sample("evolution/v1_connection.update_connecting.json"))
    post_webhook("/webhook/", raw=b"oops")
    summaries = [item["summary"] for item in client.get("/api/events").get_json()["items"]][::-1]
    assert summaries[0] == {"kind": "message_in", "text": "hola - text", "type": "text",
                            "chat": "59171146267@s.whatsapp.net", "chat_name": "percy alvarez E1"}
    assert summaries[1]["kind"] == "message_out" and summaries[1]["text"] == "menasje saliente solo texto"
    assert summaries[2] == {"kind": "reaction", "text": "\U0001f62e", "chat": "972987654321@s.whatsapp.net",
                            "chat_name": "Test Name"}
    assert summaries[3] == {"kind": "status", "state": "read", "chat": "972987654321@s.whatsapp.net",
                            "chat_name": "Test Name"}  # the chat's name as it is known now
    assert summaries[4] == {"kind": "presence", "state": "typing", "chat": "5511888888888@s.whatsapp.net"}
    assert summaries[5] == {"kind": "connection", "state": "connecting"}
    assert summaries[6] is None  # not JSON: nothing was read from it


def test_a_secret_in_a_message_text_is_not_shown_in_the_list(make_app):
    client = make_app(WEBHOOK_TOKEN="the-webhook-token-0123").test_client()
    client.post("/webhook/?token=the-webhook-token-0123", json=evolution_text("S-1", "use the-webhook-token-0123"))
    item = client.get("/api/events").get_json()["items"][0]
    assert item["summary"]["text"] == f"use {REDACTED}"


# --- the answer zaphook gave -----------------------------------------------------------------------

def test_the_answer_given_at_acknowledgement_is_kept_beside_the_outcome_since(client, post_webhook):
    event_id = stored(post_webhook, load_sample(EVOLUTION_TEXT))
    client.post("/webhook/", json=evolution_text("LATER"))  # applies the first one too
    event = client.get(f"/api/events/{event_id}").get_json()
    assert event["outcome"] == "processed"
    assert event["response"] == {"status": 200, "body": {"ok": True, "event_id": event_id, "outcome": "stored",
                                                         "provider": "evolution", "kind": "message"}}


def test_a_caller_who_waited_is_told_the_applied_outcome_and_that_is_kept(client, post_webhook):
    answer = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()  # ?wait=1
    copy_answer = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()
    assert client.get(f"/api/events/{answer['event_id']}").get_json()["response"]["body"] == answer
    duplicate = client.get(f"/api/events/{copy_answer['event_id']}").get_json()
    assert duplicate["response"]["body"] == copy_answer
    assert copy_answer["outcome"] == "duplicate" and copy_answer["duplicate_of"] == answer["event_id"]


def test_a_refused_request_keeps_its_status_and_error_answer(client, post_webhook):
    answer = post_webhook("/webhook/", raw=b"oops")
    event = client.get(f"/api/events/{answer.get_json()['detail']['event_id']}").get_json()
    assert event["response"] == {"status": 400, "body": answer.get_json()}
    assert event["response"]["body"]["error"].startswith("body is not JSON")


def test_the_answer_to_a_request_that_failed_authentication_is_shown_but_not_its_body(make_app):
    client = make_app(WEBHOOK_TOKEN="the-webhook-token-0123").test_client()
    answer = client.post("/webhook/?token=wrong-token", json=load_sample(EVOLUTION_TEXT))
    event = client.get(f"/api/events/{answer.get_json()['detail']['event_id']}").get_json()
    assert event["response"] == {"status": 403, "body": answer.get_json()}
    assert event["payload"] is None and event["body_hidden"] == "untrusted"
    assert event["replay"] == {"allowed": False, "refusal": "untrusted"}
    assert event["replay_edited"] == {"allowed": False, "refusal": "untrusted"}


def test_events_stored_before_answers_were_kept_show_the_status_alone(client, post_webhook):
    event_id = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()["event_id"]
    WebhookEvent.update(response=None, summary=None).where(WebhookEvent.id == event_id).execute()
    event = client.get(f"/api/events/{event_id}").get_json()
    assert event["response"] == {"status": 200, "body": None}
    assert event["summary"] is None


# --- what replays can do ---------------------------------------------------------------------------

def test_the_detail_says_which_replays_can_work_and_why_not(client, post_webhook):
    pending = stored(post_webhook, evolution_text("P-1"))
    event = client.get(f"/api/events/{pending}").get_json()
    assert event["replay"] == {"allowed": False, "refusal": "pending"}
    assert event["replay_edited"] == {"allowed": True, "refusal": None}
    refused = client.post(f"/api/events/{pending}/replay")
    assert refused.status_code == 409 and refused.get_json()["code"] == "pending"

    not_json = post_webhook("/webhook/", raw=b"oops").get_json()["detail"]["event_id"]
    event = client.get(f"/api/events/{not_json}").get_json()
    assert (event["replay"]["refusal"], event["replay_edited"]["allowed"]) == ("not_json", True)
    binary = post_webhook("/webhook/", raw=b"\xff\x00").get_json()["detail"]["event_id"]
    assert client.get(f"/api/events/{binary}").get_json()["replay_edited"]["refusal"] == "not_text"

    applied = post_webhook("/webhook/", evolution_text("P-2")).get_json()["event_id"]
    assert client.get(f"/api/events/{applied}").get_json()["replay"] == {"allowed": True, "refusal": None}


def test_a_body_too_large_to_store_cannot_be_replayed_at_all(make_app):
    client = make_app(MAX_BODY_MB=0.001).test_client()
    answer = client.post("/webhook/", data=b"{" + b" " * 4000 + b"}", content_type="application/json")
    assert answer.status_code == 413
    event = client.get(f"/api/events/{answer.get_json()['detail']['event_id']}").get_json()
    assert event["replay"]["refusal"] == event["replay_edited"]["refusal"] == "body_not_stored"


# --- replay with changes -----------------------------------------------------------------------------

def test_a_replay_with_changes_is_a_new_event_and_the_original_stays_as_it_was(client, post_webhook):
    original = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT), headers={"User-Agent": "axios/1.6"}).get_json()
    before = WebhookEvent.get_by_id(original["event_id"])
    shown = client.get(f"/api/events/{original['event_id']}").get_json()["payload"]
    edited = copy.deepcopy(shown)
    edited["data"]["key"]["id"] = "EDITED-1"
    edited["data"]["message"]["conversation"] = "hola, edited"

    answer = client.post(f"/api/events/{original['event_id']}/replays", json={"body": json.dumps(edited)})
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["outcome"] == "processed" and body["event_id"] != original["event_id"]

    new = client.get(f"/api/events/{body['event_id']}").get_json()
    assert new["replay_of"] == original["event_id"]
    assert (new["route"], new["headers"]["user-agent"]) == ("/webhook/", "axios/1.6")
    assert "content-length" in before.headers_dict and "content-length" not in new["headers"]  # the original's
    assert new["summary"]["text"] == "hola, edited"
    assert new["response"] == {"status": 200, "body": body}
    assert Message.get(Message.provider_message_id == "EDITED-1").text == "hola, edited"
    after = WebhookEvent.get_by_id(original["event_id"])
    assert (after.body, after.outcome, after.replay_count, after.processed_at) == (
        before.body, before.outcome, 0, before.processed_at)


def test_an_unchanged_replay_is_a_duplicate_as_the_same_webhook_would_be(client, post_webhook):
    original = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()["event_id"]
    shown = client.get(f"/api/events/{original}").get_json()["payload"]
    answer = client.post(f"/api/events/{original}/replays", json={"payload": shown})
    assert answer.status_code == 201
    assert (answer.get_json()["outcome"], answer.get_json()["duplicate_of"]) == ("duplicate", original)


def test_values_left_redacted_get_the_stored_secret_back_where_it_was(client, post_webhook):
    original = post_webhook("/webhook/", load_sample(EVOLUTION_IMAGE)).get_json()["event_id"]
    shown = client.get(f"/api/events/{original}").get_json()["payload"]
    media = shown["data"]["message"]["imageMessage"]
    assert media["mediaKey"] == REDACTED
    shown["data"]["key"]["id"] = "EDITED-IMAGE"
    shown["data"]["message"]["imageMessage"]["caption"] = REDACTED  # a new place: stays as written
    answer = client.post(f"/api/events/{original}/replays", json={"payload": shown})
    assert answer.status_code == 201
    stored = json.loads(WebhookEvent.get_by_id(answer.get_json()["event_id"]).body)
    sample = load_sample(EVOLUTION_IMAGE)
    image = stored["data"]["message"]["imageMessage"]
    assert image["mediaKey"] == sample["data"]["message"]["imageMessage"]["mediaKey"]
    assert stored["apikey"] == sample["apikey"]
    assert image["caption"] == REDACTED
    assert sample["apikey"] not in answer.get_data(as_text=True)
    new = client.get(f"/api/events/{answer.get_json()['event_id']}").get_json()
    assert new["payload"]["data"]["message"]["imageMessage"]["mediaKey"] == REDACTED  # shown as before


@pytest.mark.parametrize("sent, reason", [
    ({"body": "{not json"}, "body is not JSON"),
    ({"body": "[1, 2]"}, "expected a JSON object, got a JSON array"),
    ({"body": ""}, "empty body"),
])
def test_an_edit_that_is_not_a_json_object_is_refused_and_nothing_is_stored(client, post_webhook, sent, reason):
    original = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()["event_id"]
    count = WebhookEvent.select().count()
    answer = client.post(f"/api/events/{original}/replays", json=sent)
    assert answer.status_code == 400
    assert answer.get_json()["code"] == "edited_not_json"
    assert answer.get_json()["params"]["reason"].startswith(reason)
    assert WebhookEvent.select().count() == count


@pytest.mark.parametrize("sent", [None, {}, {"body": "{}", "payload": {}}, {"body": 3}, {"payload": [1]}])
def test_a_replay_request_of_the_wrong_shape_gets_400(client, post_webhook, sent):
    original = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()["event_id"]
    answer = client.post(f"/api/events/{original}/replays", data=json.dumps(sent), content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["error"]


def test_a_request_that_failed_authentication_is_not_replayed_with_changes(make_app):
    client = make_app(WEBHOOK_TOKEN="the-webhook-token-0123").test_client()
    answer = client.post("/webhook/", json=load_sample(EVOLUTION_TEXT))
    event_id = answer.get_json()["detail"]["event_id"]
    count = WebhookEvent.select().count()
    refused = client.post(f"/api/events/{event_id}/replays", json={"payload": {"event": "messages.upsert"}})
    assert refused.status_code == 409 and refused.get_json()["code"] == "untrusted"
    assert WebhookEvent.select().count() == count
    assert client.post("/api/events/999/replays", json={"payload": {}}).status_code == 404


def test_a_request_that_was_not_json_can_be_fixed_and_replayed(client, post_webhook):
    broken = post_webhook("/webhook/", raw=b'{"event": "messages.upsert",').get_json()["detail"]["event_id"]
    answer = client.post(f"/api/events/{broken}/replays", json={"body": json.dumps(evolution_text("FIXED-1"))})
    assert answer.status_code == 201 and answer.get_json()["outcome"] == "processed"
    assert Message.get(Message.provider_message_id == "FIXED-1").text == "hola"
