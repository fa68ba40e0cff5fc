"""Replies and group names, provider by provider, on the real samples.

A reply names the message it quotes (``quoted_message_id``) and, when the
payload carries it, what that message said (``quoted_text``): the dashboard
shows the quote from the stored message, else from this snippet. Z-API's real
captures carry replies as they are. No public capture of an Evolution, W-API,
WAHA or Meta reply was found: their rows take a real sample and fill in the
reply fields in the shape each provider documents (Baileys' ``contextInfo``,
WAHA's ``replyTo`` as its own ``message.edited`` sample shows it, Meta's
``context``), saying so in the row.

A group's name reaches zaphook apart from its messages on Evolution
(``groups.upsert`` / ``groups.update``) and WAHA (``group.v2.join`` /
``group.v2.update``), and in each message on Z-API (``chatName``) and
W-API/plain (``chat.name``).
"""

from __future__ import annotations

import copy

import pytest

from handlers import normalise
from handlers.base import QUOTE_SNIPPET_CHARS, ContactEvent, MessageEvent, RouteHint
from tests.helpers import load_sample

QUOTED_ID = "3EB0C0FFEE0000000001"
# Baileys' ContextInfo of a reply, as Evolution and W-API forward it.
BAILEYS_REPLY = {"stanzaId": QUOTED_ID, "participant": "5511987654321@s.whatsapp.net",
                 "quotedMessage": {"conversation": "Posso passar às 15h?"}}


def evolution_reply(context: dict) -> dict:
    """The real Evolution v1 text, turned into a reply: extendedTextMessage with its contextInfo."""
    payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
    payload["data"]["message"] = {"extendedTextMessage": {"text": "Pode sim", "contextInfo": context}}
    payload["data"]["messageType"] = "extendedTextMessage"
    return payload


def evolution_data_context_reply() -> dict:
    """The real Evolution 2.x sample, whose ``data.contextInfo`` (its copy of the context) names the quote."""
    payload = load_sample("evolution/v2_messages.upsert_text_DELIVERY_ACK_ephemeral_contextInfo.json")
    payload["data"]["contextInfo"].update(BAILEYS_REPLY)
    return payload


def wapi_reply() -> dict:
    payload = load_sample("wapi/webhookReceived_text_extendedTextMessage_docsummary.json")
    payload["msgContent"]["extendedTextMessage"]["contextInfo"] = copy.deepcopy(BAILEYS_REPLY)
    return payload


def waha_reply() -> dict:
    """The real NOWEB text with the ``replyTo`` of WAHA's own message.edited sample."""
    payload = load_sample("waha/message_text_noweb_lid.json")
    payload["payload"]["replyTo"] = load_sample("waha/message_edited.json")["payload"]["replyTo"]
    return payload


def waha_proto_reply() -> dict:
    """NOWEB's proto content says the quote itself; WAHA's ``replyTo`` then only repeats it."""
    payload = load_sample("waha/message_text_noweb_lid.json")
    payload["payload"]["_data"]["message"] = {"extendedTextMessage": {"text": "Pode sim", "contextInfo": BAILEYS_REPLY}}
    payload["payload"]["replyTo"] = {"id": f"false_5511987654321@c.us_{QUOTED_ID}", "body": "Posso passar às 15h?"}
    return payload


def meta_reply() -> dict:
    """The real Meta document fixture, whose ``context`` gets the quoted message's ``from`` and ``id``."""
    payload = load_sample("meta/fixture_document.json")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["context"] = {"from": "972987654321", "id": "wamid.QUOTED"}
    return payload


def sample(name: str):
    return lambda: load_sample(name)


# (what, payload, quoted_message_id, quoted_text)
REPLIES = [
    ("zapi: our reply (real)", sample("zapi/received_fromme_text_real.json"),
     "ACCA2933054CBACC7E44D6D5611D2F46", None),
    ("zapi: a reply in a group (real)", sample("zapi/received_group_text_real.json"), "3A34FFF65AA345D7BE31", None),
    ("zapi: a sticker as a reply (real)", sample("zapi/received_sticker_group_real.json"),
     "3A49BEE267C8F95B4267", None),
    ("zapi: a reply to a Status post (real)", sample("zapi/received_status_reply_text.json"),
     "3EB054C12BAAC70228AAB6", None),
    ("evolution: contextInfo in the content (real sample, reply fields filled in)",
     lambda: evolution_reply(BAILEYS_REPLY), QUOTED_ID, "Posso passar às 15h?"),
    ("evolution: contextInfo copied to data (real sample, reply fields filled in)",
     evolution_data_context_reply, QUOTED_ID, "Posso passar às 15h?"),
    ("evolution: a quoted photo gives its caption",
     lambda: evolution_reply({**BAILEYS_REPLY, "quotedMessage": {"imageMessage": {"caption": "o orçamento"}}}),
     QUOTED_ID, "o orçamento"),
    ("evolution: a quoted extended text inside an ephemeral wrapper",
     lambda: evolution_reply({**BAILEYS_REPLY, "quotedMessage": {
         "ephemeralMessage": {"message": {"extendedTextMessage": {"text": "sumindo"}}}}}), QUOTED_ID, "sumindo"),
    ("evolution: a quoted photo without a caption has no snippet",
     lambda: evolution_reply({**BAILEYS_REPLY, "quotedMessage": {"imageMessage": {"mimetype": "image/jpeg"}}}),
     QUOTED_ID, None),
    ("evolution: an id without the quoted content",
     lambda: evolution_reply({"stanzaId": QUOTED_ID}), QUOTED_ID, None),
    ("w-api: msgContent's contextInfo (real sample, reply fields filled in)", wapi_reply,
     QUOTED_ID, "Posso passar às 15h?"),
    ("waha: replyTo (real sample, WAHA's own replyTo)", waha_reply, "AAAAAAAAAAAAAAAAAAAA", "Hello!"),
    ("waha: NOWEB's proto context and replyTo agree", waha_proto_reply, QUOTED_ID, "Posso passar às 15h?"),
    ("meta: context.id (real fixture, reply fields filled in)", meta_reply, "wamid.QUOTED", None),
    ("evolution: not a reply (real)", sample("evolution/v1_messages.upsert_text_incoming.json"), None, None),
    ("w-api: not a reply (real)", sample("wapi/webhookReceived_text_extendedTextMessage_docsummary.json"), None, None),
    ("waha: not a reply (real)", sample("waha/message_text_noweb_lid.json"), None, None),
    ("meta: forwarded, not a reply (real)", sample("meta/fixture_document.json"), None, None),
]


def only_message(payload: dict) -> MessageEvent:
    result = normalise(payload, RouteHint())
    assert result.ignored_reason is None, result
    [event] = result.events
    assert isinstance(event, MessageEvent)
    return event


@pytest.mark.parametrize("what, payload, quoted_id, quoted_text", REPLIES, ids=[row[0] for row in REPLIES])
def test_a_reply_names_the_quoted_message_and_keeps_the_payloads_snippet(what, payload, quoted_id, quoted_text):
    event = only_message(payload())
    assert (event.quoted_message_id, event.quoted_text) == (quoted_id, quoted_text)


def test_a_long_quoted_text_is_cut():
    event = only_message(evolution_reply({**BAILEYS_REPLY, "quotedMessage": {"conversation": "a" * 5000}}))
    assert len(event.quoted_text) == QUOTE_SNIPPET_CHARS and event.quoted_text.endswith("…")


@pytest.mark.parametrize("quoted", [None, "text", 12, [], {"quotedMessage": {"conversation": "nested"}},
                                    {"extendedTextMessage": {"text": "",
                                                             "contextInfo": {"quotedMessage": {"conversation": "x"}}}}])
def test_odd_quoted_content_gives_no_snippet_and_no_error(quoted):
    event = only_message(evolution_reply({**BAILEYS_REPLY, "quotedMessage": quoted}))
    assert (event.quoted_message_id, event.quoted_text) == (QUOTED_ID, None)


def test_a_reply_is_stored_and_shown_with_its_quote(client):
    client.post("/webhook/", json=evolution_reply(BAILEYS_REPLY))
    [shown] = client.get("/api/messages").get_json()["items"]
    assert (shown["quoted_message_id"], shown["quoted_text"]) == (QUOTED_ID, "Posso passar às 15h?")


# --- group names ---------------------------------------------------------------------------------------

GROUP = "120363025246125888@g.us"


def evolution_event(event: str, data) -> dict:
    """The envelope of the real Evolution sample around other data."""
    payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
    payload["event"], payload["data"] = event, data
    return payload


def group_metadata(**fields) -> dict:
    """Baileys' GroupMetadata, as Evolution sends it in groups.upsert."""
    return {"id": GROUP, "subject": "Loja Centro", "subjectOwner": "5511987654321@s.whatsapp.net",
            "subjectTime": 1746132000, "size": 3, "creation": 1746131000, "desc": "pedidos", "restrict": False,
            "announce": False, "participants": [{"id": "5511987654321@s.whatsapp.net", "admin": "superadmin"}],
            **fields}


@pytest.mark.parametrize("payload, names", [
    (lambda: evolution_event("groups.upsert", [group_metadata()]), [(GROUP, "Loja Centro")]),
    (lambda: evolution_event("groups.update", [{"id": GROUP, "subject": "Loja Centro 2"}]), [(GROUP, "Loja Centro 2")]),
    (lambda: evolution_event("GROUPS_UPSERT", [group_metadata(), group_metadata(id="120363000000000001@g.us",
                                                                                 subject="Entregas")]),
     [(GROUP, "Loja Centro"), ("120363000000000001@g.us", "Entregas")]),
    (sample("waha/group_v2_join.json"), [("1231231232@g.us", "Work Group")]),
    (sample("waha/group_v2_update.json"), [("1231231232@g.us", "New Work Group Name")]),
], ids=["evolution groups.upsert", "evolution groups.update", "evolution several groups",
        "waha group.v2.join (real)", "waha group.v2.update (real)"])
def test_group_events_give_the_groups_name(payload, names):
    result = normalise(payload(), RouteHint())
    assert result.ignored_reason is None
    assert all(isinstance(event, ContactEvent) for event in result.events)
    assert [(event.contact_id, event.name) for event in result.events] == names


@pytest.mark.parametrize("payload", [
    lambda: evolution_event("groups.update", [{"id": GROUP, "announce": True}]),
    lambda: evolution_event("groups.upsert", [{"id": "5511987654321@s.whatsapp.net", "subject": "not a group"}]),
    lambda: {**load_sample("waha/group_v2_update.json"), "payload": {"group": {"id": "1231231232@g.us",
                                                                               "description": "new"}}},
], ids=["evolution: a setting changed", "evolution: not a group id", "waha: the description changed"])
def test_a_group_event_without_a_name_is_ignored(payload):
    result = normalise(payload(), RouteHint())
    assert result.events == [] and result.ignored_reason


@pytest.mark.parametrize("name, chat_id, chat_name", [
    ("zapi/received_group_text_real.json", "120363000000000012@g.us", "Group Name"),
    ("zapi/received_sticker_group_real.json", "120363000000000005@g.us", "Group Name"),
])
def test_zapi_group_messages_carry_the_groups_name(name, chat_id, chat_name):
    event = only_message(load_sample(name))
    assert (event.chat_id, event.is_group, event.chat_name) == (chat_id, True, chat_name)


def chats(client) -> dict:
    return {chat["chat_id"]: chat for chat in client.get("/api/chats").get_json()["items"]}


def evolution_group_message(message_id: str) -> dict:
    payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
    payload["data"]["key"] = {"remoteJid": GROUP, "fromMe": False, "id": message_id,
                              "participant": "5511987654321@s.whatsapp.net"}
    return payload


def test_a_groups_name_names_its_chat_before_and_after_its_messages(client):
    client.post("/webhook/", json=evolution_event("groups.upsert", [group_metadata()]))
    assert (chats(client)[GROUP]["name"], chats(client)[GROUP]["kind"]) == ("Loja Centro", "group")
    client.post("/webhook/", json=evolution_group_message("3EB0GROUP0001"))
    assert chats(client)[GROUP]["name"] == "Loja Centro"  # a member's push name does not rename the group
    client.post("/webhook/", json=evolution_event("groups.update", [{"id": GROUP, "subject": "Loja Centro 2"}]))
    assert chats(client)[GROUP]["name"] == "Loja Centro 2"
    assert len(client.get("/api/messages").get_json()["items"]) == 1


def test_a_group_contact_named_by_its_bare_id_gives_no_name(client):
    """Evolution's contacts.upsert falls back on the id's digits for a group it has no name for."""
    client.post("/webhook/", json=evolution_group_message("3EB0GROUP0002"))
    contacts = load_sample("evolution/v2_contacts.upsert_array_anonymized.json")
    contacts["instance"] = "tigo1"  # the group message's instance
    contacts["data"] = [{"remoteJid": GROUP, "pushName": GROUP.split("@")[0], "profilePicUrl": None}]
    client.post("/webhook/", json=contacts)
    assert chats(client)[GROUP]["name"] is None
    contacts["data"] = [{"remoteJid": GROUP, "pushName": "Loja Centro", "profilePicUrl": None}]
    client.post("/webhook/", json=contacts)
    assert chats(client)[GROUP]["name"] == "Loja Centro"
