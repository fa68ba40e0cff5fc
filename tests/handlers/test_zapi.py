"""Z-API's handler, payload in, events out: what the samples do not show, from Z-API's documented examples."""

from datetime import datetime

import pytest

from handlers import REGISTRY, normalise, zapi
from handlers.base import (
    ConnectionEvent, DeleteEvent, EditEvent, MessageEvent, PresenceEvent, RouteHint, StatusEvent,
)
from tests.helpers import all_samples

HINT = RouteHint("zapi")


def received(**content) -> dict:
    """Z-API's documented text example with other content."""
    payload = {
        "isStatusReply": False, "senderLid": "81896604192873@lid", "connectedPhone": "554499999999",
        "waitingMessage": False, "isEdit": False, "isGroup": False, "isNewsletter": False,
        "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244", "messageId": "A20DA9C0183A2D35A260F53F5D2B9244",
        "phone": "5544999999999", "fromMe": False, "momment": 1632228638000, "status": "RECEIVED",
        "chatName": "name", "senderPhoto": "https://", "senderName": "name", "participantPhone": None,
        "participantLid": None, "photo": "https://", "broadcast": False, "type": "ReceivedCallback",
    }
    payload.update(content)
    return payload


def only_message(payload: dict) -> MessageEvent:
    result = normalise(payload, HINT)
    assert result.provider == "zapi" and result.ignored_reason is None, result
    [event] = result.events
    assert isinstance(event, MessageEvent)
    return event


@pytest.mark.parametrize("name", all_samples())
def test_only_zapis_samples_are_taken_for_zapis(load_sample, name):
    assert zapi.detect(load_sample(name), RouteHint()) is name.startswith("zapi/")


@pytest.mark.parametrize("payload, expected", [
    ({"type": "ReceivedCallBack", "instanceId": "I"}, True),  # the attribute tables' spelling
    ({"type": "receivedcallback", "instanceId": "I"}, True),
    ({"type": "SomeFutureCallback", "instanceId": "I"}, True),
    ({"type": "ReceivedCallback"}, False),
    ({"type": "ReceivedCallback", "instanceId": 7}, False),
    ({"type": "order.created", "instanceId": "I"}, False),
    ({"type": ["ReceivedCallback"], "instanceId": "I"}, False),
])
def test_detection_needs_a_callback_type_and_an_instance_id(payload, expected):
    assert zapi.detect(payload, RouteHint()) is expected


def test_a_callback_of_a_kind_not_handled_is_ignored_by_name():
    result = normalise({"type": "SomeFutureCallback", "instanceId": "I"})
    assert (result.provider, result.event_name, result.ignored_reason) == (
        "zapi", "SomeFutureCallback", "callback not handled: SomeFutureCallback")


@pytest.mark.parametrize("raw, is_group, expected", [
    ("5544999999999", False, "5544999999999@s.whatsapp.net"),
    ("120363019502650977-group", False, "120363019502650977@g.us"),
    ("120363019502650977-GROUP", False, "120363019502650977@g.us"),
    ("120363019502650977", True, "120363019502650977@g.us"),
    ("1774895799-broadcast", False, "1774895799@broadcast"),
    ("120363166555745933@newsletter", False, "120363166555745933@newsletter"),
    ("999999999999@lid", False, "999999999999@lid"),
    ("999999999999@lid", True, "999999999999@lid"),
    ("status", False, "status@broadcast"),
    ("", False, None),
    (None, False, None),
])
def test_every_form_of_phone_names_its_chat(raw, is_group, expected):
    assert zapi.chat_jid(raw, is_group) == expected


@pytest.mark.parametrize("payload, expected", [
    ({"momment": 1632228638000}, datetime(2021, 9, 21, 12, 50, 38)),
    ({"momment": 1580163342}, datetime(2020, 1, 27, 22, 15, 42)),  # DisconnectedCallback's seconds
    ({"moment": 1632228638000}, datetime(2021, 9, 21, 12, 50, 38)),
    ({"momment": 26151515154}, None),  # ConnectedCallback's placeholder
    ({"momment": 1230000000}, None),  # 2008: before WhatsApp
    ({}, None),
])
def test_the_time_of_a_callback(payload, expected):
    assert zapi.moment(payload) == expected


# --- content kinds the samples do not show ------------------------------------------------------------

def test_an_image_keeps_its_direct_url_and_size():
    event = only_message(received(image={
        "mimeType": "image/jpeg", "imageUrl": "https://f004.backblazeb2.com/file/x.jpeg", "thumbnailUrl": "https://",
        "downloadError": None, "caption": "olha", "width": 600, "height": 315, "viewOnce": True}))
    assert (event.type, event.raw_type, event.caption) == ("image", "image", "olha")
    media = event.media
    assert (media.media_type, media.url, media.mimetype, media.width, media.height) == (
        "image", "https://f004.backblazeb2.com/file/x.jpeg", "image/jpeg", 600, 315)
    assert media.media_key is None and media.direct_path is None


def test_an_empty_mimetype_and_zero_sizes_are_unknown_not_values():
    event = only_message(received(video={"videoUrl": "https://x", "caption": "", "mimeType": "", "width": 0,
                                         "height": 0, "seconds": 0}))
    assert (event.media.mimetype, event.media.width, event.media.seconds, event.caption) == (None, None, None, None)


@pytest.mark.parametrize("content, expected", [
    ({"buttonsResponseMessage": {"buttonId": "1", "message": "Great"}}, ("interactive", "Great", "1")),
    ({"listResponseMessage": {"message": "Z-API Wings", "title": "Z-API", "selectedRowId": "1"}},
     ("interactive", "Z-API", "1")),
    ({"buttonsMessage": {"imageUrl": None, "message": "Message text", "buttons": []}},
     ("interactive", "Message text", None)),
    ({"hydratedTemplate": {"header": {"image": {"imageUrl": "https://example.jpeg"}}, "message": "message text",
                           "footer": "f", "title": "t", "templateId": "1", "hydratedButtons": []}},
     ("interactive", "message text", None)),
    ({"carouselMessage": {"text": "Message text", "cards": []}}, ("interactive", "Message text", None)),
    ({"pollVote": {"pollMessageId": "POLL1", "options": [{"name": "Z-API"}, {"name": "Outras"}]}},
     ("interactive", "Z-API, Outras", None)),
    ({"poll": {"question": "Qual a melhor API?", "pollMaxOptions": 0, "options": [{"name": "Z-API"}]}},
     ("poll", "Qual a melhor API?", None)),
    ({"product": {"title": "name", "price": 1, "currencyCode": "BRL"}}, ("product", "name", None)),
    ({"order": {"orderId": "4225", "message": "", "orderTitle": "name"}}, ("order", "name", None)),
    ({"event": {"name": "Event name", "scheduleTime": 1716915653}}, ("event", "Event name", None)),
    ({"eventResponse": {"response": "GOING", "time": 1714423417000}}, ("eventResponse", "GOING", None)),
    ({"pixKeyMessage": {"currency": "BRL", "key": "pixkey", "merchantName": "Pix"}}, ("pixKeyMessage", None, None)),
    ({"newsletterAdminInvite": {"newsletterId": "1@newsletter", "text": "Seja admin"}},
     ("newsletterAdminInvite", "Seja admin", None)),
])
def test_each_kind_keeps_its_visible_text(content, expected):
    event = only_message(received(**content))
    assert (event.type, event.text, event.interactive_id) == expected
    assert event.raw_type == next(iter(content))


def test_a_poll_vote_replies_to_its_poll():
    event = only_message(received(pollVote={"pollMessageId": "POLL1", "options": [{"name": "Z-API"}]}))
    assert event.quoted_message_id == "POLL1"


def test_a_status_reply_is_its_text_and_the_status_it_answers_is_not_its_media():
    event = only_message(received(isStatusReply=True, text={"message": "test"}, statusImage={
        "imageUrl": "https://", "caption": "teste", "mimeType": "image/jpeg"}))
    assert (event.type, event.text, event.media) == ("text", "test", None)


def test_an_ad_reply_is_its_text():
    event = only_message(received(externalAdReply={"title": "Title", "body": "ad text"},
                                  text={"message": "received message", "description": "ad text"}))
    assert (event.type, event.text) == ("text", "received message")


def test_a_kind_never_seen_keeps_its_name_and_a_message_without_content_is_kept_as_unknown():
    assert only_message(received(brandNewThing={"message": "hi"})).type == "brandNewThing"
    event = only_message(received())
    assert (event.type, event.text, event.media) == ("unknown", None, None)


def test_a_reaction_removed_is_an_empty_emoji():
    event = only_message(received(reaction={"value": "", "time": 1651878681150, "reactionBy": "554499999999",
                                            "referencedMessage": {"messageId": "3EB0796DC6B777C0C7CD"}}))
    assert (event.type, event.reaction_to, event.reaction_emoji) == ("reaction", "3EB0796DC6B777C0C7CD", "")


def test_a_senders_name_that_is_only_the_number_is_no_name():
    assert only_message(received(senderName="5544999999999", text={"message": "x"})).sender_name is None
    assert only_message(received(senderName="+5544999999999", text={"message": "x"})).sender_name is None
    assert only_message(received(senderName="Ana", text={"message": "x"})).sender_name == "Ana"


@pytest.mark.parametrize("from_me, status, expected", [
    (False, "RECEIVED", None), (False, "READ", None),
    (True, "RECEIVED", None), (True, "PENDING", "pending"), (True, "SENT", "sent"), (True, "PLAYED", None),
    (True, "MESSAGE_RECEIVED", None),  # a documented oddity
])
def test_the_status_a_message_comes_with_is_believed_only_when_it_can_be_true(from_me, status, expected):
    assert only_message(received(fromMe=from_me, status=status, text={"message": "x"})).status == expected


# --- notifications, edits, statuses ---------------------------------------------------------------------

@pytest.mark.parametrize("notification, reason", [
    ("PROFILE_PICTURE_UPDATED", "the instance's own profile is not kept"),
    ("CALL_MISSED_VOICE", "calls are not kept"),
    ("GROUP_CREATE", "group membership and settings are not kept"),
    ("REVOKED_MEMBERSHIP_REQUESTS", "group membership requests are not kept"),
    ("NEWSLETTER_ADMIN_DEMOTE", "channel roles are not kept"),
    ("E2E_ENCRYPTED", "zaphook makes nothing of it"),
    ("BIZ_MOVE_TO_CONSUMER_APP", "zaphook makes nothing of it"),
])
def test_a_notification_is_named_and_ignored_with_why(notification, reason):
    result = normalise(received(notification=notification, notificationParameters=[]), HINT)
    assert (result.kind, result.event_name, result.events) == ("unknown", notification, [])
    assert result.ignored_reason == f"notification {notification}: {reason}"


def test_a_revoke_deletes_the_message_it_names_or_nothing():
    result = normalise(received(notification="REVOKE", phone="120363000000000040-group", isGroup=True), HINT)
    assert result.events == [DeleteEvent(message_id="A20DA9C0183A2D35A260F53F5D2B9244",
                                         timestamp=datetime(2021, 9, 21, 12, 50, 38),
                                         chat_id="120363000000000040@g.us")]
    result = normalise(received(notification="REVOKE", messageId=None), HINT)
    assert (result.events, result.ignored_reason) == ([], "REVOKE names no message")


def test_an_edit_without_new_text_changes_nothing():
    result = normalise(received(isEdit=True, editMessageId="E1", video={"videoUrl": None, "caption": ""}), HINT)
    assert (result.kind, result.events, result.ignored_reason) == (
        "message_edit", [], "edit without a new text or caption")


def test_an_edit_without_its_own_id_applies_to_the_message_id():
    result = normalise(received(isEdit=True, text={"message": "novo"}), HINT)
    assert [(e.message_id, e.text) for e in result.events if isinstance(e, EditEvent)] == [
        ("A20DA9C0183A2D35A260F53F5D2B9244", "novo")]


@pytest.mark.parametrize("word, expected", [
    ("SENT", "sent"), ("RECEIVED", "delivered"), ("READ", "read"), ("PLAYED", "played"), ("PENDING", "pending"),
    ("READ_BY_ME", "read"), ("READ-SELF", "read"), ("read", "read"),
])
def test_every_status_word(word, expected):
    result = normalise({"instanceId": "I", "status": word, "ids": ["M1"], "phone": "5511999990001",
                        "type": "MessageStatusCallback", "momment": 1757152523000}, HINT)
    [event] = result.events
    assert (event.message_id, event.status) == ("M1", expected)
    # Our reading of their message names no chat: it can never stand for a campaign message's echo.
    assert event.chat_id == (None if word.upper().replace("-", "_") in ("READ_BY_ME", "READ_SELF")
                             else "5511999990001@s.whatsapp.net")


def test_repeated_ids_in_a_batch_are_one_status_each():
    result = normalise({"instanceId": "I", "status": "READ", "ids": ["M1", "M1", "", None, "M2"],
                        "type": "MessageStatusCallback"}, HINT)
    assert [e.message_id for e in result.events] == ["M1", "M2"]


def test_a_delivery_failure_with_only_a_code_keeps_the_code():
    result = normalise({"instanceId": "I", "messageId": "M1", "phone": "5511999990001", "errorCode": "SHADOW_BAN",
                        "type": "DeliveryCallback"}, HINT)
    assert result.events == [StatusEvent(message_id="M1", status="failed", chat_id="5511999990001@s.whatsapp.net",
                                         error="SHADOW_BAN")]


def test_composing_is_typing_and_a_group_presence_names_its_participant():
    result = normalise({"type": "PresenceChatCallback", "phone": "120363000000000005-group", "status": "COMPOSING",
                        "participantPhone": "554499000020", "lastSeen": None, "instanceId": "I"}, HINT)
    assert result.events == [PresenceEvent(chat_id="120363000000000005@g.us", state="typing",
                                           participant_id="554499000020@s.whatsapp.net")]


def test_a_connected_callback_saying_not_connected_is_a_disconnection():
    result = normalise({"type": "ConnectedCallback", "connected": False, "instanceId": "I",
                        "momment": 1757333824580}, HINT)
    assert result.events == [ConnectionEvent(state="disconnected", timestamp=datetime(2025, 9, 8, 12, 17, 4))]


def test_the_unit_declares_what_zapi_can_do():
    unit = REGISTRY.get("zapi")
    assert (unit.label, unit.instance_token_header, unit.api.base_url_setting, unit.api.token_setting) == (
        "Z-API", "z-api-token", "ZAPI_BASE_URL", "ZAPI_TOKEN")
    assert unit.send_text and unit.register and unit.media and not unit.media.credentials
    assert [url.path for url in unit.webhook_urls] == ["/webhook/zapi/"]
    assert "z-api-token" in REGISTRY.instance_token_headers()
    assert REGISTRY.hint_for_path("/webhook/zapi/") == RouteHint("zapi")
    assert unit.statuses["RECEIVED"] == "delivered" and unit.statuses["PLAYED"] == "played"
