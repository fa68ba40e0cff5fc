from datetime import datetime

import pytest

from handlers import meta
from handlers.base import MediaDescriptor, MessageEvent, PayloadError, RouteHint, StatusEvent

ANY = RouteHint()
SENDER = "972987654321@s.whatsapp.net"


def parse(payload):
    return meta.parse(payload, ANY)


def webhook(*values, field="messages"):
    return {"object": "whatsapp_business_account", "entry": [
        {"id": "WABA", "changes": [{"field": field, "value": value} for value in values]}]}


def value(messages=(), statuses=(), phone_number_id="PNID", contacts=()):
    return {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "contacts": list(contacts), "messages": list(messages), "statuses": list(statuses)}


def message(**fields):
    return {"from": "5511999999999", "id": "wamid.1", "timestamp": "1697043379", **fields}


def only_event(payload):
    [event] = parse(payload).events
    return event


def test_it_reads_the_dashboard_test_text(load_sample):
    result = parse(load_sample("meta/dashboard_test_webhook_text.json"))
    assert (result.provider, result.kind, result.instance_id, result.event_name) == \
        ("meta", "message", "123456123", "messages")
    assert result.events == [MessageEvent(
        message_id="ABGGFlA5Fpa",
        chat_id="16315551181@s.whatsapp.net",
        from_me=False,
        type="text",
        raw_type="text",
        text="this is a text message",
        timestamp=datetime(2017, 9, 8, 20, 36, 28),
        sender_id="16315551181@s.whatsapp.net",
        sender_name="test user name",
        chat_name="test user name",
        event_name="messages",
    )]


def test_it_reads_an_image_by_its_media_id(load_sample):
    result = parse(load_sample("meta/fixture_image.json"))
    assert result.instance_id == "1122334455667"
    assert result.events == [MessageEvent(
        message_id="wamid.xyzxyz",
        chat_id=SENDER,
        from_me=False,
        type="image",
        raw_type="image",
        timestamp=datetime(2023, 10, 11, 16, 56, 19),
        sender_id=SENDER,
        sender_name="Test Name",
        chat_name="Test Name",
        event_name="messages",
        media=MediaDescriptor(media_type="image", media_id="65463453", mimetype="image/jpeg",
                              file_sha256="4654+8g="),
    )]


def test_it_reads_a_voice_note(load_sample):
    event = only_event(load_sample("meta/fixture_audio_voice.json"))
    assert (event.type, event.timestamp) == ("audio", datetime(2023, 10, 11, 16, 57, 53))
    assert event.media == MediaDescriptor(
        media_type="audio", media_id="1234567890987654321", mimetype="audio/ogg; codecs=opus",
        file_sha256="m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=", is_voice=True)


def test_it_reads_a_forwarded_document_with_caption_and_file_name(load_sample):
    event = only_event(load_sample("meta/fixture_document.json"))
    assert (event.type, event.caption, event.forwarded, event.quoted_message_id) == \
        ("document", "caption", True, None)
    assert event.timestamp == datetime(2023, 10, 11, 17, 1, 6)
    assert event.media == MediaDescriptor(
        media_type="document", media_id="1234567890987654321", mimetype="application/pdf",
        file_sha256="grwfwe/ZPx0wAbdfbdeFUNItPZ0RylL8gGUvdt3YFqc18SY=", caption="caption",
        file_name="filename.pdf")


def test_it_reads_a_forwarded_location(load_sample):
    event = only_event(load_sample("meta/fixture_location_forwarded.json"))
    assert (event.type, event.latitude, event.longitude, event.forwarded) == \
        ("location", 12.25089, 43.90539, True)
    assert event.timestamp == datetime(2023, 10, 11, 17, 15, 57)


def test_it_reads_a_reaction(load_sample):
    event = only_event(load_sample("meta/fixture_reaction.json"))
    assert (event.type, event.reaction_to, event.reaction_emoji) == ("reaction", "wamid.yzxyzx=", "😮")
    assert event.timestamp == datetime(2023, 10, 11, 17, 14, 16)


def test_it_reads_a_read_status(load_sample):
    result = parse(load_sample("meta/fixture_status_read.json"))
    assert (result.kind, result.instance_id) == ("status", "1122334455667")
    assert result.events == [StatusEvent(message_id="wamid.xyzxyz", status="read",
                                         timestamp=datetime(2023, 7, 15, 0, 20, 58), chat_id=SENDER)]


def test_it_reads_a_failed_status_with_its_error(load_sample):
    [event] = parse(load_sample("meta/fixture_status_failed_errors.json")).events
    assert (event.status, event.chat_id) == ("failed", SENDER)
    assert event.error == ("130472: User's number is part of an experiment – Failed to send "
                           "message because this user's phone number is part of an experiment")


def test_it_reads_a_captured_delivered_status(load_sample):
    result = parse(load_sample("meta/status_delivered_captured.json"))
    assert result.instance_id == "590968830767958"
    assert result.events == [StatusEvent(
        message_id="wamid.HBgNNTUxNjk5MjMxODIyMhUCABEYEjgxQkVFRDVBQTVDODFDOTg3MQA=",
        status="delivered", timestamp=datetime(2025, 6, 25, 13, 16, 24),
        chat_id="5516992318222@s.whatsapp.net")]


def test_it_returns_a_whole_batch_as_one_mixed_result():
    payload = webhook(
        value(messages=[message(id="wamid.A", type="text", text={"body": "one"}),
                        message(id="wamid.B", type="text", text={"body": "two"})],
              contacts=[{"wa_id": "5511999999999", "profile": {"name": "Ana"}}]),
        value(statuses=[{"id": "wamid.C", "status": "sent", "timestamp": "1697043379",
                         "recipient_id": "5522222222222"}], phone_number_id="OTHER"),
    )
    result = parse(payload)
    assert (result.kind, result.instance_id, result.event_name) == ("mixed", "PNID", "messages")
    assert [(type(e).__name__, e.message_id) for e in result.events] == [
        ("MessageEvent", "wamid.A"), ("MessageEvent", "wamid.B"), ("StatusEvent", "wamid.C")]
    assert [e.sender_name for e in result.events[:2]] == ["Ana", "Ana"]


def test_it_reads_replies_and_frequently_forwarded_messages():
    event = only_event(webhook(value(messages=[message(
        type="text", text={"body": "re"},
        context={"from": "15550000000", "id": "wamid.ORIG", "frequently_forwarded": True})])))
    assert (event.quoted_message_id, event.forwarded) == ("wamid.ORIG", True)


def test_it_reads_a_group_message():
    event = only_event(webhook(value(messages=[message(
        type="text", text={"body": "hi all"}, group_id="120363025246125888")])))
    assert (event.chat_id, event.is_group, event.sender_id, event.chat_name) == \
        ("120363025246125888@g.us", True, "5511999999999@s.whatsapp.net", None)


@pytest.mark.parametrize("interactive, text, selected", [
    ({"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}, "Yes", "yes"),
    ({"type": "list_reply", "list_reply": {"id": "r1", "title": "Pizza", "description": "d"}},
     "Pizza", "r1"),
])
def test_it_reads_button_and_list_replies(interactive, text, selected):
    event = only_event(webhook(value(messages=[message(type="interactive", interactive=interactive)])))
    assert (event.type, event.raw_type, event.text, event.interactive_id) == \
        ("interactive", "interactive", text, selected)


def test_it_reads_a_template_button_tap():
    event = only_event(webhook(value(messages=[message(
        type="button", button={"payload": "STOP", "text": "Stop promotions"})])))
    assert (event.type, event.text, event.interactive_id) == ("interactive", "Stop promotions", "STOP")


def test_it_reads_shared_contacts_as_vcards():
    event = only_event(webhook(value(messages=[message(type="contacts", contacts=[{
        "name": {"formatted_name": "Ana Lima", "first_name": "Ana"},
        "phones": [{"phone": "+55 11 99999-9999", "wa_id": "5511999999999", "type": "CELL"}]}])])))
    assert event.type == "contact"
    assert event.contacts == [{"name": "Ana Lima", "vcard": (
        "BEGIN:VCARD\nVERSION:3.0\nFN:Ana Lima\nTEL;waid=5511999999999:+55 11 99999-9999\nEND:VCARD")}]


def test_it_reads_an_animated_sticker_and_a_removed_reaction():
    payload = webhook(value(messages=[
        message(id="wamid.S", type="sticker", sticker={"id": "9", "mime_type": "image/webp",
                                                       "animated": True}),
        message(id="wamid.R", type="reaction", reaction={"message_id": "wamid.X"}),
    ]))
    sticker, reaction = parse(payload).events
    assert (sticker.type, sticker.media.is_animated, sticker.media.media_id) == ("sticker", True, "9")
    assert (reaction.reaction_to, reaction.reaction_emoji) == ("wamid.X", "")


@pytest.mark.parametrize("kind, body, text", [
    ("order", {"catalog_id": "c", "text": "please", "product_items": []}, "please"),
    ("system", {"body": "User changed number", "type": "user_changed_number"}, "User changed number"),
    ("unsupported", None, None),
])
def test_it_keeps_other_types_under_their_own_name(kind, body, text):
    event = only_event(webhook(value(messages=[message(type=kind, **{kind: body})])))
    assert (event.type, event.raw_type, event.text) == (kind, kind, text)


def test_it_ignores_changes_of_other_fields():
    result = parse(webhook({"event": "APPROVED", "message_template_id": 1},
                           field="message_template_status_update"))
    assert (result.kind, result.instance_id, result.events) == ("unknown", None, [])
    assert result.ignored_reason == "field not handled: message_template_status_update"
    assert result.event_name == "message_template_status_update"


def test_it_ignores_a_messages_change_with_nothing_in_it():
    result = parse(webhook(value()))
    assert (result.kind, result.instance_id, result.ignored_reason) == \
        ("unknown", "PNID", "no messages or statuses")


def test_it_skips_statuses_it_cannot_read():
    result = parse(webhook(value(statuses=[{"id": "wamid.1", "status": "warning"}, {"status": "read"},
                                           "junk"])))
    assert (result.events, result.ignored_reason) == ([], "no messages or statuses")


def test_it_refuses_events_without_a_phone_number_id():
    payload = webhook(value(messages=[message(type="text", text={"body": "x"})], phone_number_id=None))
    with pytest.raises(PayloadError, match="missing instance id"):
        parse(payload)


def test_it_refuses_a_message_without_an_id():
    with pytest.raises(PayloadError, match="missing message id"):
        parse(webhook(value(messages=[message(id=None, type="text")])))


@pytest.mark.parametrize("payload, expected", [
    ({"object": "whatsapp_business_account"}, True),
    ({"entry": [{"id": "1", "changes": []}]}, True),
    ({"entry": "x"}, False),
    ({"object": "page", "entry": [{"messaging": []}]}, False),
])
def test_it_detects_meta_payloads(payload, expected):
    assert meta.detect(payload, ANY) is expected


# --- business-scoped user ids (BSUID) and usernames --------------------------------
# Shapes from Meta's "Business-scoped user IDs" page
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/):
# messages carry `from_user_id` (and `from` only while the phone number is shared),
# `contacts[]` carry `user_id` and `profile.username`, statuses carry
# `recipient_user_id`. A BSUID is a country code, a dot and up to 128 letters and
# digits ("US.13491208655302741918", the doc's example, also in pywa's fixtures).
BSUID = "US.13491208655302741918"


def test_a_message_with_only_a_business_scoped_user_id_is_keyed_by_it():
    username_only = {"from_user_id": BSUID, "id": "wamid.U1", "timestamp": "1697043379",
                     "type": "text", "text": {"body": "hi from a username"}}
    contact = {"profile": {"username": "pablo.morales"}, "user_id": BSUID}
    event = only_event(webhook(value(messages=[username_only], contacts=[contact])))
    assert (event.chat_id, event.sender_id) == (f"bsuid:{BSUID}", f"bsuid:{BSUID}")
    assert (event.sender_name, event.chat_name, event.text) == ("pablo.morales", "pablo.morales",
                                                                "hi from a username")
    assert event.sender_linked_id is None  # nothing to link: no phone number


def test_the_profile_name_wins_over_the_username():
    username_only = {"from_user_id": BSUID, "id": "wamid.U2", "timestamp": "1697043379",
                     "type": "text", "text": {"body": "x"}}
    contact = {"profile": {"name": "Pablo", "username": "pablo.morales"}, "user_id": BSUID}
    assert only_event(webhook(value(messages=[username_only], contacts=[contact]))).sender_name == "Pablo"


def test_a_message_with_phone_and_user_id_keeps_the_phone_chat_and_links_the_user_id():
    both = message(from_user_id=BSUID, type="text", text={"body": "x"})
    contact = {"profile": {"name": "Pablo", "username": "pablo.morales"}, "wa_id": "5511999999999",
               "user_id": BSUID}
    event = only_event(webhook(value(messages=[both], contacts=[contact])))
    assert (event.chat_id, event.sender_id, event.sender_name) == \
        ("5511999999999@s.whatsapp.net", "5511999999999@s.whatsapp.net", "Pablo")
    assert event.sender_linked_id == f"bsuid:{BSUID}"
    assert event.aliases == ((f"bsuid:{BSUID}", "5511999999999@s.whatsapp.net"),)


def test_the_user_id_of_the_contacts_entry_is_linked_too(load_sample):
    # pywa's fixture: the message has `from`, its contacts entry `wa_id` and `user_id`.
    event = only_event(load_sample("meta/fixture_image.json"))
    assert (event.sender_id, event.sender_linked_id) == (SENDER, f"bsuid:{BSUID}")


def test_a_status_with_only_a_recipient_user_id_is_read():
    status = {"id": "wamid.S1", "status": "delivered", "timestamp": "1697043379",
              "recipient_user_id": BSUID}
    assert only_event(webhook(value(statuses=[status]))) == StatusEvent(
        message_id="wamid.S1", status="delivered", timestamp=datetime(2023, 10, 11, 16, 56, 19),
        chat_id=f"bsuid:{BSUID}")


def test_a_status_with_both_recipient_ids_keeps_the_phone_number():
    status = {"id": "wamid.S2", "status": "read", "timestamp": "1697043379",
              "recipient_id": "5511999999999", "recipient_user_id": BSUID}
    assert only_event(webhook(value(statuses=[status]))).chat_id == "5511999999999@s.whatsapp.net"
