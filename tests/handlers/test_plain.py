from datetime import datetime

import pytest

from handlers import plain
from handlers.base import (
    ConnectionEvent, MessageEvent, PayloadError, PresenceEvent, RouteHint, StatusEvent,
)

ANY = RouteHint()


def parse(payload, hint=ANY):
    return plain.parse(payload, hint)


def test_it_reads_the_receive_message_seed(load_sample):
    result = parse(load_sample("seeds/endpoint_receive_message.json"), RouteHint("receive-message"))
    assert (result.provider, result.kind, result.instance_id, result.event_name) == \
        ("plain", "message", "instance_123", "message")
    assert result.events == [MessageEvent(
        message_id="msg_789",
        chat_id="5511888888888@s.whatsapp.net",
        from_me=False,
        type="text",
        raw_type="text",
        text="Preciso de ajuda!",
        timestamp=datetime(2025, 1, 15, 10, 31),
        sender_id="5511888888888@s.whatsapp.net",
        sender_name="Contato Nome",
        chat_name="Contato Nome",
        event_name="message",
    )]


def test_it_reads_the_send_message_seed(load_sample):
    result = parse(load_sample("seeds/endpoint_send_message.json"), RouteHint("send-message"))
    assert result.events == [MessageEvent(
        message_id="msg_456",
        chat_id="5511888888888@s.whatsapp.net",
        from_me=True,
        type="text",
        raw_type="text",
        text="Olá, como posso ajudar?",
        timestamp=datetime(2025, 1, 15, 10, 30),
        sender_id="5511999999999@s.whatsapp.net",
        sender_name="Cliente Nome",
        chat_name="Contato Destino",
        event_name="message",
    )]


@pytest.mark.parametrize("route, from_me", [("send-message", True), ("receive-message", False),
                                            ("any", False)])
def test_it_takes_from_me_from_the_url_when_the_payload_omits_it(load_sample, route, from_me):
    payload = load_sample("seeds/endpoint_send_message.json")
    del payload["fromMe"]
    [event] = parse(payload, RouteHint(route)).events
    assert event.from_me is from_me


def test_it_reads_the_message_status_seed(load_sample):
    result = parse(load_sample("seeds/endpoint_message_status.json"))
    assert (result.kind, result.event_name) == ("status", "message_status")
    assert result.events == [StatusEvent(message_id="msg_456", status="delivered",
                                         timestamp=datetime(2025, 1, 15, 10, 33))]


def test_it_reads_the_chat_presence_seed(load_sample):
    result = parse(load_sample("seeds/endpoint_chat_presence.json"))
    assert (result.kind, result.instance_id) == ("presence", "instance_123")
    assert result.events == [PresenceEvent(chat_id="5511888888888@s.whatsapp.net", state="typing",
                                           timestamp=datetime(2025, 1, 15, 10, 32))]


def test_it_reads_the_connect_seed(load_sample):
    result = parse(load_sample("seeds/endpoint_connect.json"))
    assert (result.kind, result.event_name) == ("connection", "connection")
    assert result.events == [ConnectionEvent(state="connected", timestamp=datetime(2025, 1, 15, 10, 30))]


def test_it_reads_the_disconnect_seed(load_sample):
    result = parse(load_sample("seeds/endpoint_disconnect.json"))
    assert result.events == [ConnectionEvent(state="disconnected",
                                             timestamp=datetime(2025, 1, 15, 10, 35))]


@pytest.mark.parametrize("event, route, state", [
    ("connection", "any", "connected"),
    ("connection", "connect", "connected"),
    ("connection", "disconnect", "disconnected"),
    ("disconnection", "any", "disconnected"),
])
def test_it_takes_a_vague_connection_state_from_the_event_and_url(event, route, state):
    [result] = parse({"instanceId": "i", "event": event}, RouteHint(route)).events
    assert result.state == state


def test_a_clear_connection_word_beats_the_url():
    [event] = parse({"instanceId": "i", "event": "connection", "status": "connecting"},
                    RouteHint("disconnect")).events
    assert event.state == "connecting"


def test_it_ignores_a_presence_word_it_does_not_know():
    result = parse({"instanceId": "i", "event": "presence", "chatId": "5511", "presence": "??"})
    assert (result.kind, result.events, result.ignored_reason) == \
        ("presence", [], "no events in payload")


def test_it_refuses_a_presence_without_a_chat():
    with pytest.raises(PayloadError, match="missing chat id"):
        parse({"instanceId": "i", "event": "presence", "presence": "composing"})


def test_it_refuses_a_status_without_a_message_id():
    with pytest.raises(PayloadError, match="missing message id"):
        parse({"instanceId": "i", "event": "message_status", "status": "read"})


def test_it_refuses_a_payload_without_an_instance():
    with pytest.raises(PayloadError, match="missing instance id"):
        parse({"event": "connection", "instanceId": ""})


def test_it_ignores_an_event_it_does_not_know_when_called_directly():
    result = parse({"instanceId": "i", "event": "typing"})
    assert (result.kind, result.ignored_reason) == ("unknown", "event not handled: typing")


@pytest.mark.parametrize("payload, expected", [
    ({"event": "message", "instanceId": "i"}, True),
    ({"event": "disconnection", "instanceId": "i"}, True),
    ({"event": "message"}, False),
    ({"event": "webhookReceived", "instanceId": "i"}, False),
    ({"event": ["message"], "instanceId": "i"}, False),
])
def test_it_detects_the_per_endpoint_events(payload, expected):
    assert plain.detect(payload, ANY) is expected


# The original campaign specification's numbers (samples/seeds/endpoint_message_status.json
# with its status as a number), not Baileys' (where 2 is SERVER_ACK, 3 DELIVERY_ACK).
@pytest.mark.parametrize("code, status", [(0, "failed"), (1, "pending"), (2, "delivered"), (3, "read"),
                                          ("2", "delivered")])
def test_a_numeric_plain_status_is_a_campaign_code(load_sample, code, status):
    payload = load_sample("seeds/endpoint_message_status.json")
    payload["status"] = code
    [event] = parse(payload).events
    assert (event.message_id, event.status) == ("msg_456", status)


def test_a_plain_message_in_a_status_post_is_marked():
    payload = {"instanceId": "i", "event": "message", "fromMe": False, "messageId": "P1",
               "chat": {"id": "status@broadcast"}, "sender": {"id": "5511888888888@c.us", "name": "Bia"},
               "msgContent": {"type": "text", "text": "oi"}}
    [event] = parse(payload).events
    assert (event.chat_id, event.chat_kind, event.sender_id, event.chat_name) == \
        ("status@broadcast", "status", "5511888888888@s.whatsapp.net", None)
