"""One person, one chat: a LID (or a Meta BSUID) and the phone it stands for are filed together.

Evolution 2.3.x names a person by their LID ("…@lid") as often as by their
number, and shows both only now and then: ``senderPn`` (2.3.0), ``remoteJid`` +
``previousRemoteJid`` (2.3.1-2.3.2), ``remoteJidAlt``/``participantAlt``
(2.3.3+, Baileys 7), ``participantPn``/``participantLid`` in groups. zaphook
learns each link per instance from the payloads that show it (see the samples'
SOURCES.md for where each shape comes from).
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from models import Contact, JidAlias, Presence
from tests.helpers import load_sample, wait_applied

LID = "208218911133803@lid"
PHONE = "5511999999999@s.whatsapp.net"
GROUP = "120363025246125888@g.us"
OUR_NUMBER = "5531000000000@s.whatsapp.net"  # the samples' envelope "sender"

SENDER_PN = "evolution/v2.3.0_messages.upsert_lid_senderPn_from_source.json"
PREVIOUS_REMOTE_JID = "evolution/v2.3.1_messages.upsert_previousRemoteJid_from_source.json"
GROUP_PARTICIPANT_PN = "evolution/v2.3.1_messages.upsert_group_participantPn_from_source.json"


def evolution_message(message_id: str, key: dict, *, stamp: int = 1750251600, name="Ana",
                      text: str = "olá", instance: str = "evo23") -> dict:
    """A 2.3.x messages.upsert (the 2.3.0 sample) with another key, time, author name and text."""
    payload = load_sample(SENDER_PN)
    payload["instance"] = instance
    payload["data"].update(key={"fromMe": False, "id": message_id, **key}, messageTimestamp=stamp,
                           pushName=name, message={"conversation": text})
    return payload


def lid_only(message_id: str, **options) -> dict:
    """What Evolution sends when Baileys knows no phone for the sender: the LID alone."""
    return evolution_message(message_id, {"remoteJid": LID}, **options)


def chats(client) -> list:
    return sorted((chat["chat_id"], chat["name"]) for chat in client.get("/api/chats").get_json()["items"])


def messages_by_chat(client, instance: str = "evo23") -> dict:
    by_chat: dict = {}
    for message in client.get("/api/messages", query_string={"instance": instance}).get_json()["items"]:
        by_chat.setdefault(message["chat_id"], []).append(message["provider_message_id"])
    return {chat: sorted(ids) for chat, ids in by_chat.items()}


def senders(client) -> dict:
    return {m["provider_message_id"]: m["sender_id"] for m in client.get("/api/messages").get_json()["items"]}


def post_ok(post_webhook, payload) -> dict:
    answer = post_webhook("/webhook/", payload).get_json()
    assert answer["outcome"] == "processed", answer
    return answer


# --- learning the link ----------------------------------------------------------------

def test_a_lid_message_with_the_senders_phone_is_filed_under_the_phone(client, post_webhook):
    post_ok(post_webhook, load_sample(SENDER_PN))
    assert chats(client) == [(PHONE, "Ana")]
    assert senders(client) == {"3AF1E0C2B7D94A6C5E21": PHONE}


def test_a_chat_opened_under_a_lid_joins_the_phone_chat_when_the_phone_is_learnt(client, post_webhook):
    post_ok(post_webhook, lid_only("LID-1"))
    assert chats(client) == [(LID, "Ana")]
    post_ok(post_webhook, load_sample(SENDER_PN))
    assert chats(client) == [(PHONE, "Ana")]
    assert messages_by_chat(client) == {PHONE: ["3AF1E0C2B7D94A6C5E21", "LID-1"]}
    assert set(senders(client).values()) == {PHONE}


def test_once_the_link_is_known_a_lid_alone_goes_to_the_phone_chat(client, post_webhook):
    post_ok(post_webhook, load_sample(SENDER_PN))
    post_ok(post_webhook, lid_only("LID-2", stamp=1750258800))
    assert chats(client) == [(PHONE, "Ana")]
    assert messages_by_chat(client) == {PHONE: ["3AF1E0C2B7D94A6C5E21", "LID-2"]}
    assert senders(client)["LID-2"] == PHONE


# Every key shape that shows a person's LID next to their number, by Evolution version.
TEACHING_KEYS = {
    "2.3.0 senderPn": {"remoteJid": LID, "senderPn": PHONE},
    "2.3.0 senderLid of a phone-addressed chat": {"remoteJid": PHONE, "senderLid": LID},
    "2.3.1 previousRemoteJid": {"remoteJid": PHONE, "senderPn": PHONE, "previousRemoteJid": LID},
    # Baileys 7 keys, as WAHA NOWEB's _data.key shows them too (shared samples, message_text_noweb_lid.json)
    "2.3.3+ remoteJidAlt": {"remoteJid": LID, "remoteJidAlt": PHONE, "participant": "", "addressingMode": "lid"},
    "2.3.3+ remoteJidAlt of a phone-addressed chat": {"remoteJid": PHONE, "remoteJidAlt": LID, "addressingMode": "pn"},
    "2.3.0 group participantLid": {"remoteJid": GROUP, "participant": PHONE, "participantLid": LID},
    "2.3.1 group participantPn": {"remoteJid": GROUP, "participant": LID, "participantPn": PHONE},
    "2.3.3+ group participantAlt": {"remoteJid": GROUP, "participant": LID, "participantAlt": PHONE},
}


@pytest.mark.parametrize("key", TEACHING_KEYS.values(), ids=TEACHING_KEYS.keys())
def test_every_key_that_shows_both_ids_teaches_the_link(client, post_webhook, key):
    post_ok(post_webhook, lid_only("BEFORE", stamp=1750251600))
    post_ok(post_webhook, evolution_message("TEACHER", key, stamp=1750255200))
    post_ok(post_webhook, lid_only("AFTER", stamp=1750258800))
    post_ok(post_webhook, evolution_message("IN-GROUP", {"remoteJid": GROUP, "participant": LID}, stamp=1750262400))
    by_chat = messages_by_chat(client)
    assert LID not in by_chat
    assert {"BEFORE", "AFTER"} <= set(by_chat[PHONE])
    assert set(senders(client).values()) == {PHONE}


def test_a_group_member_known_by_lid_is_the_phone_author_and_the_link_is_learnt(client, post_webhook):
    post_ok(post_webhook, load_sample(GROUP_PARTICIPANT_PN))
    assert chats(client) == [(GROUP, None)]
    assert senders(client) == {"3A5D8E21F0C94B7A6E33": PHONE}
    post_ok(post_webhook, lid_only("DIRECT"))
    assert messages_by_chat(client) == {GROUP: ["3A5D8E21F0C94B7A6E33"], PHONE: ["DIRECT"]}


def test_links_are_kept_per_instance(client, post_webhook):
    post_ok(post_webhook, load_sample(SENDER_PN))
    post_ok(post_webhook, lid_only("ELSEWHERE", instance="another-number"))
    assert messages_by_chat(client, "evo23") == {PHONE: ["3AF1E0C2B7D94A6C5E21"]}
    assert messages_by_chat(client, "another-number") == {LID: ["ELSEWHERE"]}


def test_our_own_number_is_never_taken_for_a_contacts_phone(client, post_webhook):
    # Baileys 7 puts the sender's other id in remoteJidAlt: in our own message, that is us.
    ours = evolution_message("OURS", {"remoteJid": LID, "remoteJidAlt": OUR_NUMBER, "fromMe": True}, name=None)
    post_ok(post_webhook, ours)
    assert messages_by_chat(client) == {LID: ["OURS"]}
    assert JidAlias.select().count() == 0


# --- merging what was kept apart --------------------------------------------------------

def test_a_lid_chat_and_a_phone_chat_of_one_person_become_one(client, post_webhook):
    post_ok(post_webhook, evolution_message("BY-PHONE", {"remoteJid": PHONE}, stamp=1750000000, name="Ana Paula"))
    post_ok(post_webhook, lid_only("BY-LID", stamp=1750100000, name="Ana P."))
    assert [jid for jid, _ in chats(client)] == [LID, PHONE]
    # a late copy of an older message, with no name, shows both ids
    late = load_sample(PREVIOUS_REMOTE_JID)
    late["data"].update(messageTimestamp=1749000000, pushName=None)
    post_ok(post_webhook, late)
    [chat] = client.get("/api/chats").get_json()["items"]
    # the chat that spoke last (the LID's) gives the name; the later time stays
    assert (chat["chat_id"], chat["name"], chat["last_message_at"]) == (PHONE, "Ana P.", "2025-06-16T18:53:20.000Z")
    assert messages_by_chat(client) == {PHONE: ["3AB27C90D1E64F0A8B12", "BY-LID", "BY-PHONE"]}
    assert set(senders(client).values()) == {PHONE}
    assert [(c.jid, c.name, c.phone) for c in Contact.select()] == [(PHONE, "Ana P.", "5511999999999")]


def test_presences_and_contact_updates_under_a_lid_become_the_phones(post_webhook):
    def typing():
        return {"event": "presence.update", "instance": "evo23", "sender": OUR_NUMBER,
                "data": {"id": LID, "presences": {LID: {"lastKnownPresence": "composing"}}}}

    def renamed(name):
        return {"event": "contacts.update", "instance": "evo23", "sender": OUR_NUMBER,
                "data": [{"remoteJid": LID, "pushName": name, "profilePicUrl": None}]}

    post_ok(post_webhook, typing())
    post_ok(post_webhook, renamed("Ana (LID)"))
    post_ok(post_webhook, load_sample(SENDER_PN))
    assert [(p.chat_jid, p.participant_jid, p.state) for p in Presence.select()] == [(PHONE, PHONE, "typing")]
    post_ok(post_webhook, typing())
    post_ok(post_webhook, renamed("Ana Souza"))
    assert [(p.chat_jid, p.participant_jid) for p in Presence.select()] == [(PHONE, PHONE)]
    assert [(c.jid, c.name) for c in Contact.select()] == [(PHONE, "Ana Souza")]


def test_a_status_of_a_message_sent_to_a_lid_finds_it_after_the_merge(client, post_webhook):
    sent = evolution_message("OUT-1", {"remoteJid": LID, "fromMe": True}, name=None)
    sent["event"] = "send.message"
    post_ok(post_webhook, sent)
    post_ok(post_webhook, load_sample(SENDER_PN))
    read = {"event": "messages.update", "instance": "evo23", "sender": OUR_NUMBER,
            "data": {"keyId": "OUT-1", "remoteJid": LID, "fromMe": True, "status": "READ"}}
    post_ok(post_webhook, read)
    [message] = [m for m in client.get("/api/messages").get_json()["items"] if m["provider_message_id"] == "OUT-1"]
    assert (message["chat_id"], message["status"]) == (PHONE, "read")


def test_a_failure_undoes_the_learnt_link_and_the_merge_with_it(client, post_webhook, monkeypatch):
    import campaigns

    post_ok(post_webhook, lid_only("LID-1"))

    def fail(*args, **kwargs):
        raise RuntimeError("campaign tracking broke")

    monkeypatch.setattr(campaigns, "track_message", fail)
    answer = post_webhook("/webhook/", load_sample(SENDER_PN)).get_json()
    assert answer["outcome"] == "failed"
    assert chats(client) == [(LID, "Ana")]
    assert JidAlias.select().count() == 0


def test_many_lid_messages_and_the_one_that_teaches_the_link_at_once_make_one_chat(live_server):
    payloads = [lid_only(f"LID-{n}", stamp=1750251600 + n) for n in range(10)] + [load_sample(SENDER_PN)]
    start = threading.Barrier(len(payloads))

    def post(payload):
        with requests.Session() as session:
            start.wait()
            return session.post(wait_applied(f"{live_server}/webhook/"), data=json.dumps(payload),
                                headers={"Content-Type": "application/json"}, timeout=30).json()["outcome"]

    with ThreadPoolExecutor(len(payloads)) as pool:
        assert set(pool.map(post, payloads)) == {"processed"}
    chats_now = requests.get(f"{live_server}/api/chats", timeout=10).json()["items"]
    assert [chat["chat_id"] for chat in chats_now] == [PHONE]
    shown = requests.get(f"{live_server}/api/messages", params={"limit": 50}, timeout=10).json()["items"]
    assert len(shown) == 11 and {m["chat_id"] for m in shown} == {PHONE}


# --- Meta's business-scoped user ids ----------------------------------------------------

BSUID = "US.13491208655302741918"  # the example of Meta's "Business-scoped user IDs" page


def meta_message(message_id: str, **sender) -> dict:
    message = {**sender, "id": message_id, "timestamp": "1697043379", "type": "text", "text": {"body": "oi"}}
    contact = {"profile": {"name": "Pablo", "username": "pablo.morales"}, "user_id": BSUID}
    if "from" in sender:
        contact["wa_id"] = sender["from"]
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550000000", "phone_number_id": "PNID"},
                  "contacts": [contact], "messages": [message]}}]}]}


def test_a_chat_begun_under_a_user_id_joins_the_phone_chat_once_they_are_linked(client, post_webhook):
    post_ok(post_webhook, meta_message("wamid.U1", from_user_id=BSUID))
    assert [jid for jid, _ in chats(client)] == [f"bsuid:{BSUID}"]
    post_ok(post_webhook, meta_message("wamid.U2", from_user_id=BSUID, **{"from": "5511999999999"}))
    post_ok(post_webhook, meta_message("wamid.U3", from_user_id=BSUID))
    assert messages_by_chat(client, "PNID") == {PHONE: ["wamid.U1", "wamid.U2", "wamid.U3"]}
