from datetime import datetime

import pytest

from handlers import wapi
from handlers.base import (
    UNKNOWN_CHAT_ID, ConnectionEvent, MediaDescriptor, MessageEvent, PayloadError,
    PresenceEvent, RouteHint, StatusEvent,
)

ANY = RouteHint()


def parse(payload, hint=ANY):
    return wapi.parse(payload, hint)


def received(**fields):
    payload = {"event": "webhookReceived", "instanceId": "INST", "messageId": "M1",
               "chat": {"id": "5511999999999"}, "sender": {"id": "5511999999999", "pushName": "Ana"},
               "moment": 1748896286, "msgContent": {"conversation": "oi"}}
    payload.update(fields)
    return payload


def test_it_reads_a_real_received_image(load_sample):
    result = parse(load_sample("wapi/webhookReceived_image_real.json"))
    assert (result.provider, result.kind, result.instance_id, result.event_name) == \
        ("wapi", "message", "3B6XIW-ZTS923-GEAY6V", "webhookReceived")
    assert result.events == [MessageEvent(
        message_id="876A6DD9A41B758E8173C5636C810B17",
        chat_id="556999267344@s.whatsapp.net",
        from_me=False,
        type="image",
        raw_type="imageMessage",
        timestamp=datetime(2025, 6, 2, 20, 31, 26),
        sender_id="556999267344@s.whatsapp.net",
        event_name="webhookReceived",
        media=MediaDescriptor(
            media_type="image",
            mimetype="image/jpeg",
            file_length=76970,
            media_key="ZWyfNNPQQ5+oiCTLq+utoIOxyzv3GQvLe5nV+VwRZZA=",
            direct_path="/v/t62.7118-24/33415119_1109872547667460_6328002190673579716_n.enc"
                        "?ccb=11-4&oh=01_Q5Aa1gH1SjkcBVnQeKJL71Je4KdTcAGvXwKt5BFRnmjky7hW0g"
                        "&oe=68659116&_nc_sid=5e03e0",
            url="https://mmg.whatsapp.net/v/t62.7118-24/33415119_1109872547667460_"
                "6328002190673579716_n.enc?ccb=11-4&oh=01_Q5Aa1gH1SjkcBVnQeKJL71Je4KdTcAGvXwKt5BFRnmjky7hW0g"
                "&oe=68659116&_nc_sid=5e03e0&mms3=true",
            file_sha256="Pjic70EpZOCollw6/AdUWDfchPg1W5NOBcwyCSHEsi8=",
            file_enc_sha256="pQtHT6TXqO91WlgiFtP+lSqLMsfjSn/sd6yds8LUHdw=",
            width=720,
            height=1280,
        ),
    )]


def test_it_reads_an_extended_text(load_sample):
    result = parse(load_sample("wapi/webhookReceived_text_extendedTextMessage_docsummary.json"))
    assert result.instance_id == "CYAJQL-HIIWWG-S6RU9I"
    assert result.events == [MessageEvent(
        message_id="3EB00CD0857BA22EAEDCD9",
        chat_id="559999999999@s.whatsapp.net",
        from_me=False,
        type="text",
        raw_type="extendedTextMessage",
        text="teste",
        timestamp=datetime(2025, 6, 5, 14, 5, 37),
        sender_id="559999999999@s.whatsapp.net",
        sender_name="name",
        chat_name="name",
        event_name="webhookReceived",
    )]


def test_it_files_a_minimal_media_payload_without_chat_under_the_unknown_chat(load_sample):
    result = parse(load_sample("seeds/wapi_audio_minimal.json"))
    assert (result.kind, result.instance_id, result.event_name) == \
        ("message", "3B6XIW-ZTS923-GEAY6V", None)
    [event] = result.events
    assert (event.message_id, event.chat_id, event.from_me, event.type) == \
        ("B80D865264B9CA985108F695BEF5B564", UNKNOWN_CHAT_ID, False, "audio")
    assert (event.sender_id, event.timestamp) == (None, None)
    assert event.media == MediaDescriptor(
        media_type="audio",
        mimetype="audio/ogg; codecs=opus",
        file_length=5067,
        media_key="rwyoaVpbrjfFQ3X1YKt7Y1+pnun0a2536qDKOnT2HuQ=",
        direct_path="/v/t62.7117-24/19083661_1303226854859439_3997981883652895124_n.enc"
                    "?ccb=11-4&oh=01_Q5Aa2AHv1g25E-1H3jqetiO5I0A7GCCp1SbCxNT7hCJBPKZhJw"
                    "&oe=68BB4268&_nc_sid=5e03e0",
    )


def test_it_files_an_incoming_message_without_chat_under_its_sender():
    payload = received()
    del payload["chat"]
    [event] = parse(payload).events
    assert event.chat_id == "5511999999999@s.whatsapp.net"


def test_it_does_not_file_our_own_message_without_chat_under_ourselves():
    payload = received(event="webhookDelivery", sender={"id": "5531000000000"})
    del payload["chat"]
    [event] = parse(payload).events
    assert (event.from_me, event.chat_id, event.sender_id) == \
        (True, UNKNOWN_CHAT_ID, "5531000000000@s.whatsapp.net")


def test_it_treats_a_delivery_as_ours_when_from_me_is_missing():
    [event] = parse(received(event="webhookDelivery", fromApi=True)).events
    assert (event.from_me, event.event_name, event.chat_name) == (True, "webhookDelivery", None)


@pytest.mark.parametrize("route, from_me", [("send-message", True), ("receive-message", False),
                                            ("any", False)])
def test_it_takes_from_me_from_the_url_when_the_event_does_not_say(route, from_me):
    payload = received()
    del payload["event"]
    [event] = parse(payload, RouteHint(route)).events
    assert event.from_me is from_me


@pytest.mark.parametrize("value, expected", [(True, True), ("true", True), (0, False)])
def test_it_reads_from_me_in_any_form_and_it_beats_the_defaults(value, expected):
    [event] = parse(received(fromMe=value), RouteHint("send-message")).events
    assert event.from_me is expected


def test_it_reads_a_group_message_with_its_sender():
    [event] = parse(received(isGroup=True, chat={"id": "120363025246125888"},
                             sender={"id": "5511888888888", "pushName": "Bia"})).events
    assert (event.chat_id, event.is_group) == ("120363025246125888@g.us", True)
    assert (event.sender_id, event.sender_name, event.chat_name) == \
        ("5511888888888@s.whatsapp.net", "Bia", None)


def test_it_reads_a_status_event_by_its_fields():
    result = parse({"event": "webhookStatus", "instanceId": "INST", "messageId": "M1",
                    "status": "READ", "chat": {"id": "5511999999999"}, "moment": 1748896286})
    assert (result.kind, result.event_name) == ("status", "webhookStatus")
    assert result.events == [StatusEvent(message_id="M1", status="read",
                                         timestamp=datetime(2025, 6, 2, 20, 31, 26),
                                         chat_id="5511999999999@s.whatsapp.net")]


def test_it_ignores_a_status_it_does_not_know():
    result = parse({"event": "webhookMessageStatus", "instanceId": "INST", "messageId": "M1",
                    "status": "READ_BY_ME"})
    assert (result.kind, result.events, result.ignored_reason) == \
        ("status", [], "no events in payload")


def test_it_reads_a_presence_event():
    result = parse({"event": "webhookChatPresence", "instanceId": "INST",
                    "chat": {"id": "5511999999999"}, "presence": "COMPOSING"})
    assert result.events == [PresenceEvent(chat_id="5511999999999@s.whatsapp.net", state="typing")]


@pytest.mark.parametrize("event, state", [("webhookConnected", "connected"),
                                          ("webhookDisconnected", "disconnected")])
def test_it_reads_connection_events_by_name(event, state):
    result = parse({"event": event, "instanceId": "INST", "connectedPhone": "556993291093"})
    assert (result.kind, result.event_name) == ("connection", event)
    assert result.events == [ConnectionEvent(state=state, own_id="556993291093@s.whatsapp.net")]


@pytest.mark.parametrize("route, kind", [
    ("message-status", "status"), ("chat-presence", "presence"), ("disconnect", "connection"),
])
def test_it_reads_unnamed_events_by_the_url_they_came_on(route, kind):
    payload = {"instanceId": "INST", "messageId": "M1", "status": "delivered",
               "chatId": "5511999999999", "presence": "available", "msgContent": {}}
    assert parse(payload, RouteHint(route)).kind == kind


def test_it_says_disconnected_on_the_disconnect_url():
    [event] = parse({"event": "webhookConnection", "instanceId": "INST"},
                    RouteHint("disconnect")).events
    assert event.state == "disconnected"


def test_it_ignores_events_it_cannot_place():
    result = parse({"event": "webhookLabels", "instanceId": "INST", "labels": []})
    assert (result.kind, result.ignored_reason) == ("unknown", "event not handled: webhookLabels")


def test_it_refuses_a_payload_without_an_instance():
    with pytest.raises(PayloadError, match="missing instance id"):
        parse(received(instanceId=None))


def test_it_refuses_a_message_without_an_id():
    with pytest.raises(PayloadError, match="missing message id"):
        parse(received(messageId=""))


@pytest.mark.parametrize("payload, expected", [
    ({"event": "webhookReceived"}, True),
    ({"msgContent": {}, "messageId": "M", "instanceId": "I"}, True),
    ({"msgContent": {}, "messageId": "M", "instanceId": "I", "key": {}}, False),
    ({"event": "messages.upsert", "data": {}}, False),
])
def test_it_detects_w_api_payloads(payload, expected):
    assert wapi.detect(payload, ANY) is expected
