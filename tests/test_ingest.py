"""The pipeline's promises: store first, idempotent, statuses never go backwards."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from models import Message, MessageStatusChange, WebhookEvent
from tests.helpers import load_sample, wait_applied

EVOLUTION_TEXT = "evolution/v1_messages.upsert_text_incoming.json"


def evolution_message(message_id: str, from_me: bool = True, text: str = "hi") -> dict:
    payload = load_sample("evolution/v1_messages.upsert_text_outgoing_fromMe.json")
    payload["data"]["key"].update(id=message_id, fromMe=from_me)
    payload["data"]["message"]["conversation"] = text
    return payload


def evolution_status(message_id: str, status: str, stamp: int = 1746133900000) -> dict:
    return {
        "event": "messages.update", "instance": "tigo1",
        "data": {"id": message_id, "remoteJid": "59171146267@s.whatsapp.net", "fromMe": True,
                 "status": status, "datetime": stamp, "owner": "tigo1"},
    }


def status_of(message_id: str) -> Message:
    return Message.get(Message.provider_message_id == message_id)


def test_the_same_event_delivered_twice_is_counted_once(post_webhook):
    first = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()
    second = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()
    assert first["outcome"] == "processed"
    assert second["outcome"] == "duplicate"
    assert second["duplicate_of"] == first["event_id"]
    assert Message.select().count() == 1
    assert WebhookEvent.select().count() == 2  # the copy is recorded, as a duplicate


def test_a_retry_with_a_new_envelope_is_still_a_duplicate(post_webhook):
    payload = load_sample(EVOLUTION_TEXT)
    post_webhook("/webhook/", payload)
    payload["date_time"] = "2025-05-01T17:52:14.031Z"  # Evolution's retry re-stamps nothing, but others may
    assert post_webhook("/webhook/", payload).get_json()["outcome"] == "duplicate"


def test_twenty_copies_at_the_same_moment_are_counted_once(live_server):
    raw = json.dumps(load_sample(EVOLUTION_TEXT)).encode()
    start = threading.Barrier(20)

    def post(_):
        with requests.Session() as session:
            start.wait()
            return session.post(wait_applied(f"{live_server}/webhook/"), data=raw,
                                headers={"Content-Type": "application/json"}, timeout=30).json()

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    outcomes = sorted(answer["outcome"] for answer in answers)
    assert outcomes == ["duplicate"] * 19 + ["processed"]
    assert Message.select().count() == 1
    assert WebhookEvent.select().where(WebhookEvent.outcome == "duplicate").count() == 19
    assert MessageStatusChange.select().count() == 1


def test_twenty_copies_of_a_status_at_once_move_the_message_once(live_server, post_webhook):
    post_webhook("/webhook/", evolution_message("M1"))
    raw = json.dumps(evolution_status("M1", "READ")).encode()
    start = threading.Barrier(20)

    def post(_):
        with requests.Session() as session:
            start.wait()
            return session.post(wait_applied(f"{live_server}/webhook/"), data=raw,
                                headers={"Content-Type": "application/json"}, timeout=30).json()["outcome"]

    with ThreadPoolExecutor(20) as pool:
        outcomes = sorted(pool.map(post, range(20)))
    assert outcomes == ["duplicate"] * 19 + ["processed"]
    assert status_of("M1").status == "read"
    assert [c.status for c in MessageStatusChange.select().order_by(MessageStatusChange.id)] == ["sent", "read"]


def test_statuses_never_go_backwards(post_webhook):
    post_webhook("/webhook/", evolution_message("M2"))
    post_webhook("/webhook/", evolution_status("M2", "READ", 1746133900000))
    post_webhook("/webhook/", evolution_status("M2", "DELIVERY_ACK", 1746133800000))
    post_webhook("/webhook/", evolution_status("M2", "SERVER_ACK", 1746133700000))
    message = status_of("M2")
    assert message.status == "read"
    assert message.read_at.isoformat() == "2025-05-01T21:11:40"
    assert message.delivered_at.isoformat() == "2025-05-01T21:10:00"  # a late delivered fills its time


def test_a_late_delivered_does_not_overwrite_its_time(post_webhook):
    post_webhook("/webhook/", evolution_message("M3"))
    post_webhook("/webhook/", evolution_status("M3", "DELIVERY_ACK", 1746133800000))
    post_webhook("/webhook/", evolution_status("M3", "READ", 1746133900000))
    post_webhook("/webhook/", evolution_status("M3", "DELIVERY_ACK", 1746133999000) | {"date_time": "x"})
    message = status_of("M3")
    assert (message.status, message.delivered_at.isoformat()) == ("read", "2025-05-01T21:10:00")


def test_failed_applies_only_before_delivery_and_delivery_wins_over_it(post_webhook):
    post_webhook("/webhook/", evolution_message("M4"))
    post_webhook("/webhook/", evolution_status("M4", "ERROR"))
    assert status_of("M4").status == "failed"
    assert status_of("M4").failed_at is not None
    post_webhook("/webhook/", evolution_status("M4", "DELIVERY_ACK"))
    assert status_of("M4").status == "delivered"

    post_webhook("/webhook/", evolution_message("M5"))
    post_webhook("/webhook/", evolution_status("M5", "READ"))
    post_webhook("/webhook/", evolution_status("M5", "ERROR"))
    assert status_of("M5").status == "read"


def test_a_status_before_its_message_is_applied_when_the_message_arrives(post_webhook):
    post_webhook("/webhook/", evolution_status("M6", "DELIVERY_ACK", 1746133800000))
    post_webhook("/webhook/", evolution_status("M6", "READ", 1746133900000))
    assert Message.select().count() == 0
    assert MessageStatusChange.select().where(MessageStatusChange.message.is_null()).count() == 2
    post_webhook("/webhook/", evolution_message("M6"))
    message = status_of("M6")
    assert message.status == "read"
    assert message.delivered_at.isoformat() == "2025-05-01T21:10:00"
    assert MessageStatusChange.select().where(MessageStatusChange.message.is_null()).count() == 0
    assert sorted(c.status for c in message.status_changes) == ["delivered", "read", "sent"]


def test_a_message_echoed_by_another_event_is_one_message(post_webhook):
    sent = evolution_message("M7", text="hello")
    sent["event"] = "send.message"
    sent["data"]["status"] = "PENDING"
    post_webhook("/webhook/", sent)
    echo = evolution_message("M7", text="hello")
    echo["data"]["status"] = "SERVER_ACK"
    assert post_webhook("/webhook/", echo).get_json()["outcome"] == "processed"
    assert Message.select().count() == 1
    assert status_of("M7").status == "sent"


def test_a_restart_on_the_same_data_dir_loses_nothing(make_app):
    first = make_app()
    client = first.test_client()
    client.post("/webhook/", json=evolution_message("R1"))
    client.post("/webhook/", json=evolution_status("R1", "DELIVERY_ACK"))
    client.post("/webhook/", json=evolution_status("R2", "READ"))
    client.post("/webhook/", data=b"not json", content_type="application/json")
    first.extensions["zaphook.database"].close_all()

    second = make_app().test_client()
    events = second.get("/api/events").get_json()["items"]
    assert [e["outcome"] for e in events] == ["rejected", "processed", "processed", "processed"]
    assert status_of("R1").status == "delivered"
    # the status kept for the unseen message still applies after the restart
    second.post("/webhook/", json=evolution_message("R2"))
    assert status_of("R2").status == "read"
    # and duplicates are still recognised across the restart
    assert second.post("/webhook/", json=evolution_message("R1")).get_json()["outcome"] == "duplicate"


def test_a_failed_event_can_be_replayed_after_a_fix(client, post_webhook, monkeypatch):
    import handlers

    real = handlers.normalise

    def broken(payload, hint=None):
        raise RuntimeError("handler bug")

    monkeypatch.setattr(handlers, "normalise", broken)
    answer = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()
    assert answer["outcome"] == "failed"
    assert "handler bug" in answer["detail"]
    assert Message.select().count() == 0

    monkeypatch.setattr(handlers, "normalise", real)
    replayed = client.post(f"/api/events/{answer['event_id']}/replay")
    assert replayed.status_code == 200
    assert replayed.get_json()["outcome"] == "processed"
    assert Message.select().count() == 1
    event = WebhookEvent.get_by_id(answer["event_id"])
    assert (event.outcome, event.replay_count, event.error) == ("processed", 1, None)
    # replaying again changes nothing in the model
    client.post(f"/api/events/{answer['event_id']}/replay")
    assert Message.select().count() == 1


def test_an_apply_failure_keeps_the_raw_event(client, post_webhook, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database rule broken")

    monkeypatch.setattr(Message, "record", broken)
    answer = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT)).get_json()
    assert answer["outcome"] == "failed"
    event = WebhookEvent.get_by_id(answer["event_id"])
    assert event.outcome == "failed"
    assert "database rule broken" in event.error
    assert json.loads(event.body) == load_sample(EVOLUTION_TEXT)
    from models import Chat

    assert Chat.select().count() == 0  # the partial work was rolled back


# --- Meta batches: one bad item never sinks the others -----------------------------
# Envelope and message shapes from Meta's webhook reference ("messages" field, see
# tests/samples/meta/); BSUID fields (`from_user_id`, `contacts[].user_id`,
# `contacts[].profile.username`) from Meta's "Business-scoped user IDs" page,
# https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/
BSUID = "US.13491208655302741918"


def meta_batch(messages: list, contacts: list = ()) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550000000", "phone_number_id": "PNID"},
                  "contacts": list(contacts), "messages": messages}}]}]}


def meta_text(message_id: str, sender: str, body: str) -> dict:
    return {"from": sender, "id": message_id, "timestamp": "1697043379", "type": "text", "text": {"body": body}}


def fail_for(monkeypatch, *message_ids: str) -> None:
    """Make applying the messages with these ids fail after part of their work is done.

    No payload the Meta handler accepts is refused by the model (the realistic
    ones, e.g. a lone surrogate in a text, already fail when the raw row is
    stored), so the failure is forced here.
    """
    import ingest

    real = ingest.record_message

    def record_message(instance, provider, item, *args, **kwargs):
        real(instance, provider, item, *args, **kwargs)
        if item.message_id in message_ids:
            raise RuntimeError(f"cannot store {item.message_id}")

    monkeypatch.setattr(ingest, "record_message", record_message)


def test_a_message_that_cannot_be_applied_does_not_sink_the_rest_of_its_batch(client, post_webhook, monkeypatch):
    from models import Chat

    fail_for(monkeypatch, "wamid.B2")
    answer = post_webhook("/webhook/", meta_batch([
        meta_text("wamid.B1", "5511900000001", "first"),
        meta_text("wamid.B2", "5511900000002", "second"),
        meta_text("wamid.B3", "5511900000003", "third"),
    ])).get_json()
    assert answer["outcome"] == "processed"
    assert sorted(m.provider_message_id for m in Message.select()) == ["wamid.B1", "wamid.B3"]
    # the failed message's own work (its chat) was undone, the others' kept
    assert sorted(c.jid for c in Chat.select()) == ["5511900000001@s.whatsapp.net", "5511900000003@s.whatsapp.net"]
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert event["outcome"] == "processed"
    assert event["error"] == "1 of 3 items failed: message wamid.B2: RuntimeError: cannot store wamid.B2"


def test_a_batch_whose_every_item_fails_is_failed_and_keeps_nothing(post_webhook, monkeypatch):
    from models import Chat

    fail_for(monkeypatch, "wamid.C1", "wamid.C2")
    answer = post_webhook("/webhook/", meta_batch([
        meta_text("wamid.C1", "5511900000001", "first"),
        meta_text("wamid.C2", "5511900000002", "second"),
    ])).get_json()
    assert answer["outcome"] == "failed"
    assert answer["detail"].startswith("every item failed: message wamid.C1: RuntimeError")
    assert "wamid.C2" in answer["detail"]
    assert (Message.select().count(), Chat.select().count()) == (0, 0)


def test_the_provider_gets_the_normal_answer_when_some_items_of_its_batch_failed(post_webhook, monkeypatch):
    fail_for(monkeypatch, "wamid.P2")
    response = post_webhook("/webhook/", meta_batch([
        meta_text("wamid.P1", "5511900000001", "first"),
        meta_text("wamid.P2", "5511900000002", "second"),
    ]))
    answer = response.get_json()
    assert response.status_code == 200
    assert answer == {"ok": True, "event_id": answer["event_id"], "outcome": "processed", "provider": "meta",
                      "kind": "message"}
    assert "wamid.P2" not in response.get_data(as_text=True)
    # the detail is on the stored event, for the dashboard and the API
    assert WebhookEvent.get_by_id(answer["event_id"]).error == \
        "1 of 2 items failed: message wamid.P2: RuntimeError: cannot store wamid.P2"


@pytest.mark.parametrize("still_failing, outcome, error, stored", [
    # fixed: every item applies and the earlier failure's text goes
    ((), "processed", None, ["wamid.R1", "wamid.R2", "wamid.R3"]),
    # one item still fails: the error names it, and only it
    (("wamid.R3",), "processed", "1 of 3 items failed: message wamid.R3: RuntimeError: cannot store wamid.R3",
     ["wamid.R1", "wamid.R2"]),
    # every item fails now: failed, as any replay that cannot apply its event
    (("wamid.R1", "wamid.R2", "wamid.R3"), "failed",
     "every item failed: message wamid.R1: RuntimeError: cannot store wamid.R1; "
     "message wamid.R2: RuntimeError: cannot store wamid.R2; message wamid.R3: RuntimeError: cannot store wamid.R3",
     ["wamid.R1"]),
], ids=["fixed", "one still fails", "every item fails"])
def test_replaying_a_batch_that_partly_failed_says_what_fails_now(client, post_webhook, monkeypatch,
                                                                   still_failing, outcome, error, stored):
    import ingest

    real = ingest.record_message
    fail_for(monkeypatch, "wamid.R2", "wamid.R3")
    answer = post_webhook("/webhook/", meta_batch([
        meta_text("wamid.R1", "5511900000001", "first"),
        meta_text("wamid.R2", "5511900000002", "second"),
        meta_text("wamid.R3", "5511900000003", "third"),
    ])).get_json()
    assert WebhookEvent.get_by_id(answer["event_id"]).error.startswith("2 of 3 items failed: message wamid.R2")

    monkeypatch.setattr(ingest, "record_message", real)
    if still_failing:
        fail_for(monkeypatch, *still_failing)
    replayed = client.post(f"/api/events/{answer['event_id']}/replay")

    assert replayed.status_code == 200
    event = WebhookEvent.get_by_id(answer["event_id"])
    assert (event.outcome, event.error, event.replay_count) == (outcome, error, 1)
    assert (replayed.get_json()["outcome"], replayed.get_json().get("detail")) == (outcome, error)
    assert sorted(m.provider_message_id for m in Message.select()) == stored


def test_a_message_with_only_a_business_scoped_user_id_is_stored(client, post_webhook):
    username_only = {"from_user_id": BSUID, "id": "wamid.U1", "timestamp": "1697043379",
                     "type": "text", "text": {"body": "hi from a username"}}
    contact = {"profile": {"username": "pablo.morales"}, "user_id": BSUID}
    answer = post_webhook("/webhook/", meta_batch([username_only], [contact])).get_json()
    assert answer["outcome"] == "processed"
    [shown] = client.get("/api/messages").get_json()["items"]
    assert (shown["provider_message_id"], shown["chat_id"], shown["sender_id"], shown["sender_name"],
            shown["text"]) == ("wamid.U1", f"bsuid:{BSUID}", f"bsuid:{BSUID}", "pablo.morales",
                               "hi from a username")
    assert [m["provider_message_id"] for m in
            client.get("/api/messages", query_string={"chat": f"bsuid:{BSUID}"}).get_json()["items"]] == ["wamid.U1"]


def test_a_user_id_next_to_a_phone_number_is_linked_to_it(post_webhook):
    from models import Contact

    contact = {"profile": {"name": "Pablo", "username": "pablo.morales"}, "wa_id": "5511999999999",
               "user_id": BSUID}
    sent = {**meta_text("wamid.L1", "5511999999999", "x"), "from_user_id": BSUID}
    assert post_webhook("/webhook/", meta_batch([sent], [contact])).get_json()["outcome"] == "processed"
    assert sorted((c.jid, c.name, c.phone) for c in Contact.select()) == [
        ("5511999999999@s.whatsapp.net", "Pablo", "5511999999999"),
        (f"bsuid:{BSUID}", "Pablo", "5511999999999"),
    ]
    assert Message.get().chat.jid == "5511999999999@s.whatsapp.net"


def test_half_an_emoji_in_a_text_is_stored_not_answered_500(client):
    """A JavaScript client that cuts an emoji in half sends a lone surrogate escape; every driver refuses it raw."""
    payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
    raw = json.dumps(payload).replace('"conversation": "', '"conversation": "\\ud83d cut ', 1)
    answer = client.post("/webhook/", data=raw, content_type="application/json")
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "processed"
    [message] = client.get("/api/messages").get_json()["items"]
    assert message["text"].startswith("\ufffd cut ")
    assert client.get("/api/events?q=cut").get_json()["items"][0]["id"] == answer.get_json()["event_id"]
