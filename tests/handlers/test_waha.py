"""WAHA's webhooks through HTTP: every sample's effect, and each quirk the conventions sheet warns about.

The samples and where they come from are in tests/samples/waha/SOURCES.md.
Their messages are read back field by field in tests/test_samples_end_to_end.py;
here the statuses, connection states, presences, edits and deletes they make,
and the rules behind them (ids, timestamps, missing keys, LIDs, HMAC). Sending,
media and registration against a fake WAHA server are in tests/test_waha_api.py.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json

import pytest

from models import Contact, JidAlias, MessageStatusChange, Presence
from tests.helpers import load_sample

WAHA_URL = "/api/webhooks/waha/"
OUR_NUMBER = "5511900000001@c.us"
OUR_PHONE = "5511900000001@s.whatsapp.net"
CONTACT = "5511999990001"
CONTACT_PHONE = f"{CONTACT}@s.whatsapp.net"
CONTACT_LID = "90000000000009@lid"
GROUP = "120363000000000999@g.us"
DOC_HMAC_KEY = "my-secret-key"
DOC_HMAC_BODY = b'{"event":"message","session":"default","engine":"WEBJS"}'
DOC_HMAC = ("208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8097c462b2b17a6ce93b6b47a136cf2e78a33a"
            "63f6752c2c1631777076153fa89")


# --- building payloads from the samples ----------------------------------------------------------

def envelope(event: str, payload: dict, session: str = "default", **extra) -> dict:
    """A current envelope (the NOWEB 2026.8.1 capture's) around another event."""
    body = load_sample("waha/message_text_noweb_lid.json")
    body.update(event=event, session=session, payload=payload, me={"id": OUR_NUMBER, "pushName": "Loja"})
    body.update(extra)
    return body


def our_message(message_id: str, chat: str = f"{CONTACT}@c.us", text: str = "Promoção!", ack: int = 1,
                **fields) -> dict:
    """message.any of a text we sent (NOWEB: from is the chat, _data is Baileys' WebMessageInfo)."""
    return envelope("message.any", {
        "id": f"true_{chat}_{message_id}", "timestamp": 1767225600, "from": chat, "fromMe": True,
        "source": "api", "body": text, "to": None, "participant": None, "hasMedia": False, "media": None,
        "ack": ack, "ackName": {0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ"}.get(ack, "UNKNOWN"),
        "_data": {"key": {"remoteJid": chat.replace("@c.us", "@s.whatsapp.net"), "fromMe": True, "id": message_id},
                  "message": {"conversation": text}, "messageTimestamp": 1767225600, "status": ack + 1},
        **fields})


def their_message(message_id: str, chat: str = f"{CONTACT}@c.us", text: str = "oi", event: str = "message",
                  **fields) -> dict:
    """An incoming text, in the NOWEB LID capture's shape."""
    body = load_sample("waha/message_text_noweb_lid.json")
    payload = body["payload"]
    payload.update(id=f"false_{chat}_{message_id}", **{"from": chat}, body=text)
    payload["_data"]["key"].update(id=message_id, remoteJid=chat.replace("@c.us", "@s.whatsapp.net"))
    payload["_data"]["key"].pop("remoteJidAlt")
    payload["_data"]["message"] = {"conversation": text}
    payload.update(fields)
    return envelope(event, payload)


def ack(message_id_form: str, value=3, event="message.ack", **fields) -> dict:
    names = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
    return envelope(event, {"id": message_id_form, "from": f"{CONTACT}@c.us", "participant": None, "fromMe": True,
                            "ack": value, "ackName": names.get(value, "UNKNOWN"), **fields})


def post(client, payload: dict, path: str = WAHA_URL, headers=None) -> dict:
    response = client.post(path, data=json.dumps(payload), headers=headers or {}, content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def dry_run(client, payload: dict, path: str = WAHA_URL) -> dict:
    response = client.post(f"/test?route={path}", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def messages(client) -> list:
    return client.get("/api/messages?limit=500").get_json()["items"]


def message(client, provider_message_id: str) -> dict:
    [found] = [m for m in messages(client) if m["provider_message_id"] == provider_message_id]
    return found


def instance(client, session: str = "default") -> dict:
    [found] = [i for i in client.get("/api/instances").get_json()["items"]
               if (i["provider"], i["instance_id"]) == ("waha", session)]
    return found


# --- recognising WAHA ------------------------------------------------------------------------------

def test_a_waha_event_that_evolution_also_names_is_wahas_and_evolutions_stays_evolutions(client):
    waha = post(client, load_sample("waha/presence_update_group_typing.json"), "/webhook/")
    assert (waha["provider"], waha["kind"], waha["outcome"]) == ("waha", "presence", "processed")
    evolution = {"event": "presence.update", "instance": "evo1", "session": "not-waha",
                 "data": {"id": f"{CONTACT}@s.whatsapp.net",
                          "presences": {f"{CONTACT}@s.whatsapp.net": {"lastKnownPresence": "composing"}}}}
    answer = post(client, evolution, "/webhook/")
    assert (answer["provider"], answer["kind"]) == ("evolution", "presence")


def test_every_waha_url_and_the_catch_all_take_the_same_payload(client):
    first = post(client, load_sample("waha/message_text_gows_lid.json"), WAHA_URL)
    again = post(client, load_sample("waha/message_text_gows_lid.json"), "/webhook/")
    assert (first["provider"], first["outcome"]) == ("waha", "processed")
    assert (again["provider"], again["outcome"], again["duplicate_of"]) == ("waha", "duplicate", first["event_id"])


# The envelope grew over the versions: none of these keys is needed (GOWS 2026.1 sends no "engine",
# 2024 releases no "id" or "timestamp", and "me" is null before the QR code is scanned).
@pytest.mark.parametrize("missing", [("engine",), ("environment",), ("id", "timestamp"), ("me",), ("metadata",),
                                     ("engine", "environment", "id", "timestamp", "me", "metadata")])
def test_a_message_without_the_optional_envelope_keys_is_the_same_message(client, missing):
    payload = load_sample("waha/message_text_noweb_lid.json")
    for key in missing:
        payload.pop(key, None)
    answer = post(client, payload, "/webhook/")
    assert (answer["provider"], answer["outcome"]) == ("waha", "processed")
    shown = message(client, "3AABBA3EEED97047EBBB")
    assert (shown["instance_id"], shown["chat_id"], shown["text"], shown["timestamp"]) == \
        ("u_05bea8cb2e1745939004", "94700000002@s.whatsapp.net", "Hello", "2026-10-01T10:43:16.000Z")


# --- one id per message ---------------------------------------------------------------------------------

# Every form WAHA names a message by, and the one id zaphook keeps.
@pytest.mark.parametrize("form, bare", [
    ("true_5511999990001@c.us_3EB0C0FFEE", "3EB0C0FFEE"),  # our message in a 1:1 chat
    ("false_5511999990001@c.us_3EB0C0FFEE", "3EB0C0FFEE"),  # theirs
    ("5511999990001@c.us_3EB0C0FFEE", "3EB0C0FFEE"),  # NOWEB's "read on another device": no prefix
    ("true_90000000000009@lid_3EB0C0FFEE", "3EB0C0FFEE"),  # the same message under the chat's LID (#1627)
    ("true_120363000000000999@g.us_3EB0C0FFEE_5511900000001@c.us", "3EB0C0FFEE"),  # group: suffix is the sender
    ("false_120363000000000999@g.us_3EB0C0FFEE_90000000000009@lid", "3EB0C0FFEE"),
    ("false_status@broadcast_3EB0C0FFEE_5511999990001@c.us", "3EB0C0FFEE"),
    ("false_123123@newsletter_3EB0C0FFEE", "3EB0C0FFEE"),
    ("true_5511999-1234567890@g.us_3EB0C0FFEE_5511900000001@c.us", "3EB0C0FFEE"),  # an old-style group id
    ("3EB0C0FFEE", "3EB0C0FFEE"),  # message.edited / message.revoked name it bare
])
def test_an_ack_names_the_message_by_its_bare_id_whatever_the_form(client, form, bare):
    [event] = dry_run(client, ack(form))["events"]
    assert (event["event"], event["message_id"], event["status"]) == ("StatusEvent", bare, "read")


@pytest.mark.parametrize("form", [
    "true_5511999990001@c.us_3EB0C0FFEE",
    "5511999990001@c.us_3EB0C0FFEE",
    "true_90000000000009@lid_3EB0C0FFEE",
    "3EB0C0FFEE",
])
def test_our_message_is_read_whatever_form_its_ack_names_it_by(client, form):
    post(client, our_message("3EB0C0FFEE"))
    assert message(client, "3EB0C0FFEE")["status"] == "sent"
    post(client, ack(form, 3))
    read = message(client, "3EB0C0FFEE")
    assert (read["status"], read["read_at"]) == ("read", "2026-10-01T10:43:17.000Z")  # the envelope's ms time


@pytest.mark.parametrize("event", ["message.ack.group", "message.ack"])  # the docs' group example says message.ack
def test_a_group_ack_names_our_message_by_its_sender_suffix_not_the_reader(client, event):
    mine = our_message("3EB0GR0UP", chat=GROUP)
    mine["payload"].update(participant=OUR_NUMBER, id=f"true_{GROUP}_3EB0GR0UP_900000000000301@lid")
    post(client, mine)
    reader = "011111111111111@lid"
    post(client, ack(f"true_{GROUP}_3EB0GR0UP_{OUR_NUMBER}", 2, event, participant=reader, **{"from": GROUP}))
    assert message(client, "3EB0GR0UP")["status"] == "delivered"
    answer = post(client, ack(f"true_{GROUP}_3EB0GR0UP_{OUR_NUMBER}", 3, event, participant=reader,
                              **{"from": GROUP}))
    assert answer["outcome"] == "processed"
    assert message(client, "3EB0GR0UP")["status"] == "read"


def test_the_same_ack_under_the_phone_and_the_lid_is_one_status(client):
    post(client, our_message("3EB0TW1CE"))
    first = post(client, ack(f"true_{CONTACT}@c.us_3EB0TW1CE", 2))
    second = post(client, ack(f"true_{CONTACT_LID}_3EB0TW1CE", 2))
    assert (first["outcome"], second["outcome"], second["duplicate_of"]) == \
        ("processed", "duplicate", first["event_id"])
    history = client.get(f"/api/messages/{message(client, '3EB0TW1CE')['id']}").get_json()["status_history"]
    assert [change["status"] for change in history] == ["sent", "delivered"]


def test_a_message_posted_as_message_and_again_as_message_any_is_one_message(client):
    first = post(client, their_message("3AFEED01", event="message"))
    again = post(client, their_message("3AFEED01", event="message.any"))
    assert (first["outcome"], again["outcome"], again["duplicate_of"]) == \
        ("processed", "duplicate", first["event_id"])
    events = client.get("/api/events?limit=10").get_json()["items"]
    assert sorted(event["event_name"] for event in events) == ["message", "message.any"]
    assert len(messages(client)) == 1


def test_a_gows_receipt_moves_every_message_it_covers(client):
    for message_id in ("3EB0AAA1", "3EB0AAA2"):
        post(client, our_message(message_id))
    receipt = load_sample("waha/message_ack_device_gows.json")
    receipt["payload"].update(id=f"true_{CONTACT}@c.us_3EB0AAA1")
    receipt["payload"]["_data"]["MessageIDs"] = ["3EB0AAA1", "3EB0AAA2"]
    post(client, receipt)
    assert [message(client, m)["status"] for m in ("3EB0AAA1", "3EB0AAA2")] == ["delivered", "delivered"]


# --- statuses ------------------------------------------------------------------------------------------------

# ack -1..4 (or, when ack is null, its ackName) and what it makes of our message.
@pytest.mark.parametrize("ack_value, ack_name, status", [
    (-1, "ERROR", "failed"),
    (0, "PENDING", "pending"),
    (1, "SERVER", "sent"),
    (2, "DEVICE", "delivered"),
    (3, "READ", "read"),
    (4, "PLAYED", "played"),
    (None, "READ", "read"),
    ("3", "READ", "read"),
    (None, "played", "played"),
])
def test_each_ack_is_a_status(client, ack_value, ack_name, status):
    payload = ack(f"true_{CONTACT}@c.us_3EB0C0DE")
    payload["payload"].update(ack=ack_value, ackName=ack_name)
    [event] = dry_run(client, payload)["events"]
    assert event["status"] == status


def test_an_unknown_ack_is_kept_and_ignored_with_the_reason(client):
    payload = ack(f"true_{CONTACT}@c.us_3EB0C0DE")
    payload["payload"].update(ack=None, ackName="UNKNOWN")
    answer = post(client, payload)
    assert (answer["outcome"], answer["kind"], answer["detail"]) == \
        ("ignored", "status", "unknown ack: None ('UNKNOWN')")


def test_an_error_ack_fails_our_message_until_a_later_delivery(client):
    post(client, our_message("3EB0E770"))
    post(client, ack(f"true_{CONTACT}@c.us_3EB0E770", -1))
    assert message(client, "3EB0E770")["status"] == "failed"
    post(client, ack(f"true_{CONTACT}@c.us_3EB0E770", 2))
    assert message(client, "3EB0E770")["status"] == "delivered"


# The four ack samples, field by field: each names its message by the bare id and waits for it.
# WEBJS says fromMe=false in the ack of our group message; NOWEB's READ of a message of theirs is
# our reading it on another device.
A32 = "A" * 32


@pytest.mark.parametrize("name, bare, status, chat, ours", [
    ("waha/message_ack_device_gows.json", "3" * 22, "delivered", "11111111111@s.whatsapp.net", True),
    ("waha/message_ack_group_read_noweb.json", A32, "read", "222222222222222222@g.us", True),
    ("waha/message_ack_group_read_webjs.json", A32, "read", "222222222222222222@g.us", True),
    ("waha/message_ack_read_by_me_noweb.json", A32, "read", "11111111111@s.whatsapp.net", False),
])
def test_each_ack_sample_is_a_status_of_its_message(client, name, bare, status, chat, ours):
    answer = post(client, load_sample(name), "/webhook/")
    assert (answer["provider"], answer["kind"], answer["outcome"]) == ("waha", "status", "processed")
    change = MessageStatusChange.get()
    assert (change.provider_message_id, change.status, change.message) == (bare, status, None)
    [event] = dry_run(client, load_sample(name))["events"]
    assert (event["message_id"], event["status"], event["chat_id"]) == (bare, status, chat)
    # the message it names arrives later: the waiting status is applied then
    chat_id = chat.replace("@s.whatsapp.net", "@c.us")
    post(client, our_message(bare, chat=chat_id) if ours else their_message(bare, chat=chat_id))
    assert (message(client, bare)["status"], message(client, bare)["from_me"]) == (status, ours)


def test_a_message_of_theirs_takes_only_read_and_played_from_its_ack(client):
    read = their_message("3AFEED02")
    read["payload"].update(ack=3, ackName="READ")
    post(client, read)
    assert message(client, "3AFEED02")["status"] == "read"
    errored = their_message("3AFEED03")
    errored["payload"].update(ack=-1, ackName="ERROR")
    post(client, errored)
    assert message(client, "3AFEED03")["status"] == "delivered"


# --- timestamps -------------------------------------------------------------------------------------------------

def test_message_times_are_seconds_even_with_a_fraction_and_envelope_times_are_milliseconds(client):
    payload = their_message("3AFEED04")
    payload["payload"]["timestamp"] = 1710481111.853  # as the WEBJS reaction example writes it
    post(client, payload)
    assert message(client, "3AFEED04")["timestamp"] == "2024-03-15T05:38:31.000Z"
    post(client, our_message("3EB0T1ME"))
    stamped = ack(f"true_{CONTACT}@c.us_3EB0T1ME", 2)
    stamped["timestamp"] = 1767225660123
    post(client, stamped)
    assert message(client, "3EB0T1ME")["delivered_at"] == "2026-01-01T00:01:00.000Z"


@pytest.mark.parametrize("sample, expected", [
    ("waha/message_text_gows_lid.json", "2026-01-16T16:23:11.000Z"),  # GOWS: Info.Timestamp, RFC 3339
    ("waha/message_text_noweb_lid.json", "2026-10-01T10:43:16.000Z"),  # NOWEB: messageTimestamp, seconds
])
def test_a_message_without_its_own_timestamp_takes_the_engines(client, sample, expected):
    payload = load_sample(sample)
    del payload["payload"]["timestamp"]
    post(client, payload)
    [only] = messages(client)
    assert only["timestamp"] == expected


# --- the session's state -------------------------------------------------------------------------------------------

# session.status -> the instance's connection state, at the time of the current status (ms) or the envelope's.
# A QR code is asked for before the session has an account: it names none.
@pytest.mark.parametrize("status, state, reason, own_jid", [
    ("WORKING", "connected", None, "254700000001@s.whatsapp.net"),
    ("STARTING", "connecting", "session starting", "254700000001@s.whatsapp.net"),
    ("SCAN_QR_CODE", "connecting", "waiting for the QR code to be scanned", None),
    ("PASSKEY_REQUIRED", "connecting", "WhatsApp asks for a passkey to finish pairing", "254700000001@s.whatsapp.net"),
    ("PASSKEY_CONFIRMATION_REQUIRED", "connecting", "confirm the pairing code on the phone",
     "254700000001@s.whatsapp.net"),
    ("STOPPED", "disconnected", "session stopped", "254700000001@s.whatsapp.net"),
    ("FAILED", "disconnected", "session failed: restart it; if that does not help, log out and start it again",
     "254700000001@s.whatsapp.net"),
])
def test_each_session_status_is_a_connection_state(client, status, state, reason, own_jid):
    payload = load_sample("waha/session_status_failed_webjs.json")
    payload["payload"].update(status=status, statuses=[{"status": "STARTING", "timestamp": 1758262092512},
                                                      {"status": status, "timestamp": 1758262097611}],
                              data={"code": "1234"})
    post(client, payload)
    shown = instance(client)
    assert (shown["connection_state"], shown["state_reason"]) == (state, reason)
    assert shown["state_changed_at"] == "2025-09-19T06:08:17.000Z"
    assert "1234" not in json.dumps(shown)
    assert shown["own_jid"] == own_jid


def test_the_session_status_samples_set_the_instance_field_by_field(client):
    post(client, load_sample("waha/session_status_failed_webjs.json"), "/webhook/")
    failed = instance(client)
    assert (failed["connection_state"], failed["disconnected_at"], failed["own_jid"]) == \
        ("disconnected", "2025-09-19T06:11:00.000Z", "254700000001@s.whatsapp.net")
    assert failed["state_reason"].startswith("session failed")
    post(client, load_sample("waha/session_status_stopped.json"), "/webhook/")  # older (2021): does not win
    assert instance(client)["state_changed_at"] == "2025-09-19T06:11:00.000Z"
    for sample, session in (("waha/session_status_scan_qr_webjs.json", "default2"),
                            ("waha/session_status_scan_qr_noweb_2024.json", "07eda2a6-7a0f-475a-b4b6-6f3376a1f388")):
        answer = post(client, load_sample(sample), "/webhook/")
        assert (answer["kind"], answer["outcome"]) == ("qrcode", "processed")
        scanning = instance(client, session)
        assert (scanning["connection_state"], scanning["state_reason"], scanning["own_jid"]) == \
            ("connecting", "waiting for the QR code to be scanned", None)
    [qr] = dry_run(client, load_sample("waha/session_status_scan_qr_webjs.json"))["events"]
    assert qr == {"event": "QrCodeEvent", "timestamp": None, "detail": "scan the QR code: GET /api/default2/auth/qr"}


def test_the_stopped_sample_dates_itself_by_the_envelope_when_its_status_has_no_time(client):
    post(client, load_sample("waha/session_status_stopped.json"))
    stopped = instance(client)
    assert (stopped["connection_state"], stopped["state_reason"], stopped["state_changed_at"]) == \
        ("disconnected", "session stopped", "2021-10-18T14:38:10.000Z")


def test_an_unknown_session_status_is_kept_and_ignored(client):
    payload = load_sample("waha/session_status_stopped.json")
    payload["payload"]["status"] = "HIBERNATING"
    answer = post(client, payload)
    assert (answer["outcome"], answer["kind"], answer["detail"]) == \
        ("ignored", "connection", "unknown session status: HIBERNATING")


# --- presence, edits, deletes, reactions, votes ------------------------------------------------------------------

def test_the_presence_sample_records_who_is_typing_in_the_group(client):
    post(client, load_sample("waha/presence_update_group_typing.json"))
    presence = Presence.get()
    assert (presence.chat_jid, presence.participant_jid, presence.state) == \
        ("111111111111111111@g.us", "11111111111@s.whatsapp.net", "typing")


def test_the_edited_sample_changes_the_message_it_names_by_its_bare_id(client):
    post(client, our_message("A06CA7BB5DD8C8F705628CDB7E3A33C9", chat="11111111111@c.us", text="before"))
    answer = post(client, load_sample("waha/message_edited.json"))
    assert (answer["kind"], answer["outcome"]) == ("message_edit", "processed")
    edited = message(client, "A06CA7BB5DD8C8F705628CDB7E3A33C9")
    assert (edited["text"], edited["edited_at"]) == ("string", "2022-10-28T07:53:02.000Z")
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert (event["event_name"], event["message_id"]) == ("message.edited", "A06CA7BB5DD8C8F705628CDB7E3A33C9")


def test_the_revoked_sample_deletes_the_message_it_names_not_the_revoke_notice(client):
    post(client, our_message("A06CA7BB5DD8C8F705628CDB7E3A33C9", chat="11111111111@c.us"))
    post(client, our_message("AAAAAAAAAAAAAAAAAAAA", chat="11111111111@c.us"))
    answer = post(client, load_sample("waha/message_revoked.json"))
    assert (answer["kind"], answer["outcome"]) == ("message_delete", "processed")
    assert message(client, "A06CA7BB5DD8C8F705628CDB7E3A33C9")["deleted_at"] == "2022-10-28T07:53:02.000Z"
    assert message(client, "AAAAAAAAAAAAAAAAAAAA")["deleted_at"] is None


def test_a_revoke_without_revoked_message_id_falls_back_on_before(client):
    payload = load_sample("waha/message_revoked.json")
    del payload["payload"]["revokedMessageId"]
    [event] = dry_run(client, payload)["events"]
    assert (event["event"], event["message_id"]) == ("DeleteEvent", "AAAAAAAAAAAAAAAAAAAA")
    payload["payload"]["before"] = None
    answer = post(client, payload)
    assert (answer["outcome"], answer["detail"]) == ("failed", "missing the id of the revoked message")


def reaction(emoji: str, reaction_id: str = f"false_{CONTACT}@c.us_3AREACT01") -> dict:
    return envelope("message.reaction", {
        "id": reaction_id, "from": f"{CONTACT}@c.us", "fromMe": False, "participant": f"{CONTACT}@c.us",
        "to": OUR_NUMBER, "timestamp": 1710481111.853,
        "reaction": {"text": emoji, "messageId": f"true_{CONTACT}@c.us_3EB0L1KED"}})


def test_a_reaction_sits_on_the_message_it_names_and_an_empty_one_removes_it(client):
    post(client, our_message("3EB0L1KED"))
    post(client, reaction("🙏"))
    liked = message(client, "3AREACT01")
    assert (liked["type"], liked["reaction_to"], liked["reaction_emoji"], liked["sender_id"], liked["chat_id"]) == \
        ("reaction", "3EB0L1KED", "🙏", CONTACT_PHONE, CONTACT_PHONE)
    post(client, reaction("", f"false_{CONTACT}@c.us_3AREACT02"))
    assert message(client, "3AREACT02")["reaction_emoji"] == ""


def test_a_reaction_named_by_the_message_it_reacts_to_does_not_become_that_message(client):
    post(client, our_message("3EB0L1KED", text="original"))
    post(client, reaction("🙏", f"false_{CONTACT}@c.us_3EB0L1KED"))  # as WAHA's WEBJS example has it
    original = message(client, "3EB0L1KED")
    assert (original["type"], original["text"], original["reaction_emoji"]) == ("text", "original", None)
    [liked] = [m for m in messages(client) if m["type"] == "reaction"]
    assert (liked["reaction_to"], liked["reaction_emoji"]) == ("3EB0L1KED", "🙏")


def test_a_vote_in_a_chat_comes_from_the_voter_even_when_waha_writes_me(client):
    payload = load_sample("waha/poll_vote_group.json")
    payload["payload"]["vote"].update(id=f"false_{CONTACT}@c.us_83ACBE602A05C79B234B54415E95EE8A", to="me",
                                      **{"from": f"{CONTACT}@c.us"}, selectedOptions=["Sim", "Talvez"])
    post(client, payload)
    vote = message(client, "83ACBE602A05C79B234B54415E95EE8A")
    assert (vote["chat_id"], vote["sender_id"], vote["text"], vote["quoted_message_id"]) == \
        (CONTACT_PHONE, CONTACT_PHONE, "Sim, Talvez", "BAE5304BA1ECF704")


# --- what WAHA's own fields say when _data has no proto content (WEBJS) ----------------------------------

def webjs(payload_fields: dict, data: dict | None = None) -> dict:
    body = load_sample("waha/message_group_participant_webjs.json")
    body["payload"] = {"id": f"false_{CONTACT}@c.us_3EB0WEBJS", "timestamp": 1769152370, "from": f"{CONTACT}@c.us",
                       "fromMe": False, "to": OUR_NUMBER, "body": None, "hasMedia": False, "media": None,
                       "ack": 2, "ackName": "DEVICE", "location": None, "vCards": [], "_data": data or {},
                       **payload_fields}
    return body


@pytest.mark.parametrize("fields, data, expected", [
    ({"body": "olá"}, None, {"type": "text", "text": "olá"}),
    ({"location": {"latitude": "-23.55", "longitude": "-46.63", "description": "Praça da Sé"}}, {"type": "location"},
     {"type": "location", "location": {"latitude": -23.55, "longitude": -46.63, "name": "Praça da Sé"}}),
    ({"vCards": ["BEGIN:VCARD\nFN:Ana\nEND:VCARD"]}, {"type": "vcard"},
     {"type": "contact", "contacts": [{"name": None, "vcard": "BEGIN:VCARD\nFN:Ana\nEND:VCARD"}]}),
    ({"hasMedia": True, "media": {"url": "http://localhost:3000/api/files/x.oga", "mimetype": "audio/ogg; codecs=opus",
                                  "filename": None, "error": None}}, {"type": "ptt"},
     {"type": "audio", "raw_type": "ptt", "is_voice": True, "text": None}),
    ({"hasMedia": True, "body": "the report", "media": {"url": "http://localhost:3000/api/files/x.pdf",
                                                          "mimetype": "application/pdf", "filename": "report.pdf"}},
     {"type": "document"}, {"type": "document", "caption": "the report", "text": None}),
    ({"hasMedia": True, "media": {"url": "http://localhost:3000/api/files/x.webp", "mimetype": "image/webp"}}, None,
     {"type": "sticker"}),
    ({"hasMedia": True, "media": None}, {"type": "video"}, {"type": "video"}),
    ({"replyTo": {"id": f"true_{CONTACT}@c.us_3EB0QUOTED", "participant": OUR_NUMBER, "body": "antes"},
      "body": "resposta"}, None, {"type": "text", "quoted_message_id": "3EB0QUOTED"}),
    ({}, {"type": "e2e_notification"}, {"type": "e2e_notification", "text": None}),
])
def test_a_message_without_proto_content_is_read_from_wahas_own_fields(client, fields, data, expected):
    post(client, webjs(fields, data))
    shown = message(client, "3EB0WEBJS")
    assert {name: shown[name] for name in expected} == expected


def test_media_without_a_url_is_kept_pending_with_what_is_known(client):
    post(client, webjs({"hasMedia": True, "body": "foto", "media": {"url": None, "mimetype": "image/jpeg",
                                                                    "error": {"message": "timeout"}}}))
    shown = message(client, "3EB0WEBJS")
    assert (shown["type"], shown["caption"], shown["media"]["media_type"], shown["media"]["state"]) == \
        ("image", "foto", "image", "pending")


def test_a_message_without_an_id_fails_and_is_kept_for_a_replay(client):
    payload = their_message("3AFEED05")
    payload["payload"].pop("id")
    payload["payload"]["_data"]["key"].pop("id")
    answer = post(client, payload)
    assert (answer["outcome"], answer["detail"]) == ("failed", "missing message id")


def test_our_message_before_the_session_knows_its_own_number_has_no_sender(client):
    payload = our_message("3EB0N0ME")
    payload["me"] = None
    post(client, payload)
    shown = message(client, "3EB0N0ME")
    assert (shown["from_me"], shown["sender_id"], shown["chat_id"]) == (True, None, CONTACT_PHONE)


def test_webjs_puts_our_own_number_in_from_of_our_messages_and_the_chat_is_to(client):
    post(client, webjs({"id": f"true_{CONTACT}@c.us_3EB0WEBJS", "fromMe": True, "from": OUR_NUMBER,
                        "to": f"{CONTACT}@c.us", "body": "oi"}))
    shown = message(client, "3EB0WEBJS")
    assert (shown["chat_id"], shown["direction"]) == (CONTACT_PHONE, "out")
    post(client, webjs({"id": "3EB0BARE", "fromMe": True, "from": OUR_NUMBER, "to": f"{CONTACT}@c.us", "body": "oi"}))
    assert message(client, "3EB0BARE")["chat_id"] == CONTACT_PHONE


# --- one person, one chat ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sample, lid, phone", [
    ("waha/message_text_gows_lid.json", "90000000000002@lid", "5585900000002@s.whatsapp.net"),  # Info.SenderAlt
    ("waha/message_text_noweb_lid.json", "900000000000302@lid", "94700000002@s.whatsapp.net"),  # key.remoteJidAlt
])
def test_a_lid_message_teaches_the_link_and_a_later_lid_alone_goes_to_the_phone_chat(client, sample, lid, phone):
    payload = load_sample(sample)
    post(client, payload)
    alias = JidAlias.get()
    assert (alias.alias_jid, alias.phone_jid) == (lid, phone)
    later = copy.deepcopy(payload)
    later["payload"].update(id=f"false_{lid}_3AFEED06", body="de novo", _data={})
    post(client, later)
    assert message(client, "3AFEED06")["chat_id"] == phone
    assert [chat["chat_id"] for chat in client.get("/api/chats").get_json()["items"]] == [phone]


def test_a_group_author_known_by_lid_is_the_phone_gows_names_beside_it(client):
    payload = load_sample("waha/message_text_gows_lid.json")
    info = payload["payload"]["_data"]["Info"]
    info.update(Chat=GROUP, IsGroup=True, Sender=CONTACT_LID, SenderAlt=CONTACT_PHONE)
    payload["payload"].update(id=f"false_{GROUP}_3AGR0UP1_{CONTACT_LID}", participant=CONTACT_LID,
                              **{"from": GROUP})
    post(client, payload)
    shown = message(client, "3AGR0UP1")
    assert (shown["chat_id"], shown["sender_id"]) == (GROUP, CONTACT_PHONE)
    assert Contact.get(Contact.jid == CONTACT_PHONE).name == "Contact Name"


def test_our_message_to_a_lid_chat_teaches_the_recipients_phone_never_ours(client):
    mine = our_message("3EB0T0L1D", chat=CONTACT_LID)
    mine["payload"]["_data"]["key"].update(remoteJid=CONTACT_LID, remoteJidAlt=CONTACT_PHONE)
    post(client, mine)
    assert message(client, "3EB0T0L1D")["chat_id"] == CONTACT_PHONE
    group = our_message("3EB0GR0UP2", chat=GROUP)
    group["payload"]["participant"] = "900000000000301@lid"  # our own LID, as NOWEB names us in groups
    group["payload"]["_data"]["key"].update(participant="900000000000301@lid", participantAlt=OUR_PHONE)
    post(client, group)
    assert [(a.alias_jid, a.phone_jid) for a in JidAlias.select()] == [(CONTACT_LID, CONTACT_PHONE)]
    assert message(client, "3EB0GR0UP2")["sender_id"] == OUR_PHONE


# --- events kept as received --------------------------------------------------------------------------------

@pytest.mark.parametrize("event, why", [
    ("group.v2.join", "group membership"), ("group.v2.leave", "group membership"),
    ("group.v2.participants", "group membership"), ("group.v2.update", "group membership"),
    ("group.join", "group membership"), ("call.received", "calls"), ("call.accepted", "calls"),
    ("call.rejected", "calls"), ("label.upsert", "labels"), ("label.deleted", "labels"),
    ("label.chat.added", "labels"), ("label.chat.deleted", "labels"), ("chat.archive", "archived"),
    ("message.waiting", "Waiting for this message"), ("poll.vote.failed", "could not decrypt"),
    ("event.response", "RSVP"), ("engine.event", "debugging"), ("state.change", "deprecated"),
    ("something.new", None),
])
def test_events_zaphook_does_not_normalise_are_stored_by_name_and_ignored_with_why(client, event, why):
    answer = post(client, envelope(event, {"id": "x", "chatId": f"{CONTACT}@c.us"}))
    assert (answer["provider"], answer["outcome"], answer["kind"]) == ("waha", "ignored", "unknown")
    assert answer["detail"].startswith(f"event not handled: {event}")
    assert (why is None) == (answer["detail"] == f"event not handled: {event}")
    assert why is None or why in answer["detail"]
    stored = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert (stored["event_name"], stored["instance_id"]) == (event, "default")


# --- HMAC ----------------------------------------------------------------------------------------------------

def test_the_signature_is_wahas_documented_hmac_sha512_of_the_raw_body():
    from handlers.waha import PROVIDER

    assert PROVIDER.signature.sign(DOC_HMAC_KEY, DOC_HMAC_BODY) == DOC_HMAC
    assert PROVIDER.signature.verify(DOC_HMAC_KEY, DOC_HMAC, DOC_HMAC_BODY) is None
    assert PROVIDER.signature.verify(DOC_HMAC_KEY, DOC_HMAC.upper(), DOC_HMAC_BODY) is None


def signed(body: bytes, key: str = DOC_HMAC_KEY) -> dict:
    return {"X-Webhook-Hmac": hmac.new(key.encode(), body, hashlib.sha512).hexdigest(),
            "X-Webhook-Hmac-Algorithm": "sha512"}


@pytest.fixture
def hmac_client(make_app):
    return make_app(WAHA_HMAC_KEY=DOC_HMAC_KEY, WEBHOOK_TOKEN="hub-webhook-token-0123456789").test_client()


def test_with_the_hmac_key_set_a_signed_waha_webhook_needs_no_webhook_token(hmac_client):
    body = json.dumps(load_sample("waha/message_text_gows_lid.json")).encode()
    response = hmac_client.post(WAHA_URL, data=body, headers=signed(body), content_type="application/json")
    assert response.status_code == 200 and response.get_json()["outcome"] == "processed"
    doc = hmac_client.post(WAHA_URL, data=DOC_HMAC_BODY, headers={"X-Webhook-Hmac": DOC_HMAC},
                           content_type="application/json")
    assert doc.status_code == 200  # authenticated; the doc body has no payload, so it is stored as failed


@pytest.mark.parametrize("headers, status, error", [
    ({}, 401, "missing X-Webhook-Hmac (WAHA_HMAC_KEY is set)"),
    ({"X-Webhook-Hmac": "00" * 64}, 403, "X-Webhook-Hmac does not match the body"),
    ({"X-Webhook-Hmac": ""}, 401, "missing X-Webhook-Hmac (WAHA_HMAC_KEY is set)"),
    ("signed with another key", 403, "X-Webhook-Hmac does not match the body"),
])
def test_with_the_hmac_key_set_an_unsigned_or_badly_signed_waha_webhook_is_refused(hmac_client, headers, status,
                                                                                     error):
    body = json.dumps(load_sample("waha/message_text_gows_lid.json")).encode()
    if headers == "signed with another key":
        headers = signed(body, "another-key")
    for path in (WAHA_URL, "/webhook/"):
        response = hmac_client.post(path, data=body, headers=headers, content_type="application/json",
                                    query_string={"token": "hub-webhook-token-0123456789"})
        assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert messages(hmac_client) == []


def test_with_the_hmac_key_set_other_providers_still_use_the_webhook_token(hmac_client):
    evolution = json.dumps(load_sample("evolution/v1_messages.upsert_text_incoming.json")).encode()
    response = hmac_client.post("/webhook/", data=evolution, content_type="application/json",
                                query_string={"token": "hub-webhook-token-0123456789"})
    assert (response.status_code, response.get_json()["provider"]) == (200, "evolution")


def test_the_signature_header_is_not_shown_by_the_api(hmac_client):
    body = json.dumps(load_sample("waha/message_text_gows_lid.json")).encode()
    answer = hmac_client.post(WAHA_URL, data=body, headers=signed(body), content_type="application/json").get_json()
    stored = hmac_client.get(f"/api/events/{answer['event_id']}").get_json()
    assert stored["headers"]["x-webhook-hmac"] == "[redacted]"


# --- settings ----------------------------------------------------------------------------------------------

def test_the_self_check_says_when_the_waha_key_has_no_server_to_go_to(make_app):
    report = make_app(WAHA_API_KEY="waha-api-key-0123456789").test_client().get("/test").get_json()
    [check] = [c for c in report["checks"] if c["name"] == "waha settings"]
    assert (check["ok"], check["detail"]) == (False, "WAHA_API_KEY is set but WAHA_BASE_URL is not: zaphook cannot "
                                                     "reach WAHA to send, download media or set the webhook")
    fine = make_app(WAHA_API_KEY="waha-api-key-0123456789", WAHA_BASE_URL="http://127.0.0.1:3000")
    assert not [c for c in fine.test_client().get("/test").get_json()["checks"] if c["name"] == "waha settings"]
