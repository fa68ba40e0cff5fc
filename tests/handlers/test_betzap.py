from datetime import datetime

import pytest

from handlers import betzap, normalise
from handlers.base import MessageEvent, PayloadError, RouteHint

ANY = RouteHint()


def test_it_reads_the_betzap_seed_with_its_odd_nesting(load_sample):
    result = betzap.parse(load_sample("seeds/betzap_text.json"), ANY)
    assert (result.provider, result.kind, result.instance_id, result.event_name) == \
        ("betzap", "message", "instance_123", None)
    assert result.events == [MessageEvent(
        message_id="message_id_123",
        chat_id="5511999999999@s.whatsapp.net",
        from_me=False,
        type="text",
        raw_type="conversationMessage",
        text="Texto da mensagem",
        timestamp=datetime(2022, 1, 1, 0, 0),
        sender_id="5511999999999@s.whatsapp.net",
        sender_name="Nome do Usuário",
        chat_name="Nome do Usuário",
    )]


def test_it_reads_msg_content_when_message_is_missing(load_sample):
    payload = load_sample("seeds/betzap_text.json")
    del payload["message"]
    [event] = betzap.parse(payload, ANY).events
    assert (event.type, event.raw_type, event.text) == ("text", "conversation", "Texto da mensagem")


@pytest.mark.parametrize("route, from_me", [("send-message", True), ("receive-message", False)])
def test_it_takes_from_me_from_the_url_when_the_key_does_not_say(load_sample, route, from_me):
    payload = load_sample("seeds/betzap_text.json")
    del payload["key"]["fromMe"]
    [event] = betzap.parse(payload, RouteHint(route)).events
    assert event.from_me is from_me


def test_it_reads_a_group_message_with_its_participant():
    [event] = betzap.parse({
        "instanceId": "i1",
        "key": {"remoteJid": "120363025246125888@g.us", "fromMe": False, "id": "G",
                "participant": "5511888888888@s.whatsapp.net"},
        "message": {"imageMessage": {"caption": "pic"}},
    }, ANY).events
    assert (event.is_group, event.sender_id, event.type, event.caption) == \
        (True, "5511888888888@s.whatsapp.net", "image", "pic")


def test_it_refuses_a_send_response_posted_as_a_webhook(load_sample):
    # Evolution's sendText response has a top-level key like betZap, but no instance.
    with pytest.raises(PayloadError, match="missing instance id"):
        normalise(load_sample("evolution/v2_sendText_response_openapi_example.json"))


def test_it_would_read_that_response_as_our_pending_message_with_an_instance(load_sample):
    payload = load_sample("evolution/v2_sendText_response_openapi_example.json")
    payload["instanceId"] = "i1"
    [event] = betzap.parse(payload, ANY).events
    assert (event.message_id, event.from_me, event.text, event.status) == \
        ("BAE594145F4C59B4", True, "Olá!", "pending")
    assert event.timestamp == datetime(2024, 6, 6, 15, 51, 37)


@pytest.mark.parametrize("payload, expected", [
    ({"key": {"remoteJid": "1@s.whatsapp.net"}}, True),
    ({"key": {"id": "x"}}, False),
    ({"key": "1@s.whatsapp.net"}, False),
    ({"data": {"key": {"remoteJid": "1@s.whatsapp.net"}}}, False),
])
def test_it_detects_a_top_level_key_with_a_remote_jid(payload, expected):
    assert betzap.detect(payload, ANY) is expected


# A bare Evolution message data object (the envelope's "data" posted alone) has the
# same key but Evolution's own fields: v1 "owner" (evolution/v1_messages.upsert_text_incoming.json),
# v2 "messageType"/"source" (PROVIDERS.md section 1, "message type" and "device" rows).
@pytest.mark.parametrize("name", [
    "evolution/v1_messages.upsert_text_incoming.json",
    "evolution/v2_messages.upsert_text_DELIVERY_ACK_ephemeral_contextInfo.json",
])
def test_a_bare_evolution_data_object_is_not_taken_for_betzap(load_sample, name):
    data = load_sample(name)["data"]
    assert betzap.detect(data, ANY) is False
    result = normalise(data)
    assert (result.provider, result.ignored_reason, result.events) == \
        ("unknown", "unknown provider or shape", [])


@pytest.mark.parametrize("field", ["messageType", "source", "owner"])
def test_each_evolution_data_field_rules_out_betzap(load_sample, field):
    payload = load_sample("seeds/betzap_text.json")
    assert betzap.detect(payload, ANY) is True
    payload[field] = "x"
    assert betzap.detect(payload, ANY) is False


# The campaign format's numbers (samples/seeds), not Baileys' (2 would be SERVER_ACK there).
@pytest.mark.parametrize("code, status", [(0, "failed"), (1, "pending"), (2, "delivered"),
                                          (3, "read"), ("PENDING", "pending"), ("SERVER_ACK", "sent")])
def test_a_numeric_betzap_status_is_a_campaign_code(load_sample, code, status):
    payload = load_sample("seeds/betzap_text.json")
    payload["status"] = code
    [event] = betzap.parse(payload, ANY).events
    assert event.status == status
