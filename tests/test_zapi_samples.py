"""Every Z-API sample, posted over HTTP to its URL, read back through the JSON API field by field.

The samples (tests/samples/zapi, with SOURCES.md) are real captures and
Z-API's documented examples. The quirks the conventions sheet warns about
(ids, timestamps, gzip, missing keys) each have a test below.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import pytest

from models import JidAlias, MediaFile, MessageStatusChange, Presence, WebhookEvent, utcnow
from tests.helpers import all_samples, load_sample

ROUTE = "/webhook/zapi/"
INSTANCE = "3E000000000000000000000000000001"  # the real captures' instance
DOC_INSTANCE = "A20DA9C0183A2D35A260F53F5D2B9244"  # most documented examples'
B2 = f"https://f004.backblazeb2.com/file/temp-file-download/instances/{INSTANCE}"


def only(items: list):
    assert len(items) == 1, items
    return items[0]


def post(client, payload, path: str = ROUTE, **kwargs):
    response = client.post(path, data=json.dumps(payload), content_type="application/json", **kwargs)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def post_sample(client, name: str, path: str = ROUTE):
    return post(client, load_sample(f"zapi/{name}"), path)


def messages(client) -> list:
    return client.get("/api/messages?limit=500").get_json()["items"]


def message(client, provider_message_id: str) -> dict:
    return only([m for m in messages(client) if m["provider_message_id"] == provider_message_id])


def event(client, event_id: int) -> dict:
    return client.get(f"/api/events/{event_id}").get_json()


def instance(client, external_id: str) -> dict:
    return only([i for i in client.get("/api/instances").get_json()["items"] if i["instance_id"] == external_id])


def aliases() -> set:
    return {(row.alias_jid, row.phone_jid) for row in JidAlias.select()}


# --- every message sample ------------------------------------------------------------------

MESSAGES = {
    "received_audio_group_real.json": {
        "instance_id": INSTANCE, "provider_message_id": "A5B21C9232649A9DC58F98C55829E95F",
        "chat_id": "120363000000000027@g.us", "sender_id": "5544999000028@s.whatsapp.net",
        "sender_name": "Participant Name", "from_me": False, "direction": "in", "type": "audio", "raw_type": "audio",
        "text": None, "caption": None, "is_voice": True, "timestamp": "2025-09-08T22:23:44.000Z",
        "status": "delivered", "quoted_message_id": None, "forwarded": False,
        "media": {"state": "pending", "media_type": "audio", "mimetype": "audio/ogg; codecs=opus"},
    },
    "received_broadcast_list_fromme.json": {
        "instance_id": "3C67AB641C8AA0412F6A2242B4E23AC7", "provider_message_id": "702CC5F7E0A6BF4421",
        "chat_id": "1774895799@broadcast", "sender_id": "554499999999@s.whatsapp.net", "from_me": True,
        "direction": "out", "type": "text", "text": "Broadcast list message test",
        "timestamp": "2026-03-30T18:35:25.000Z", "status": "sent", "media": None,
    },
    "received_buttons_message_real.json": {
        "instance_id": INSTANCE, "provider_message_id": "155FF553193F4ABBBA", "chat_id": "5544999000009@s.whatsapp.net",
        "sender_id": "5544999000009@s.whatsapp.net", "sender_name": None,  # Z-API put the number there
        "from_me": False, "type": "interactive", "raw_type": "buttonsMessage", "text": "ESCOLHA O MENU!",
        "interactive_id": None, "timestamp": "2025-09-09T02:09:06.000Z", "media": None,
    },
    "received_contact.json": {
        "instance_id": DOC_INSTANCE, "provider_message_id": DOC_INSTANCE, "chat_id": "5544999999999@s.whatsapp.net",
        "sender_id": "5544999999999@s.whatsapp.net", "sender_name": "name", "type": "contact", "raw_type": "contact",
        "contacts": [{"name": "Cesar Baleco", "vcard": "BEGIN:VCARD\\nVERSION:3.0\\nN:;name;;;\\nFN:name\\n"
                      "TEL;type=CELL;type=VOICE;waid=5544999999999:+55 44 9999-9999\\nEND:VCARD"}],
        "timestamp": "2021-09-21T12:55:25.000Z",
    },
    "received_document.json": {
        "instance_id": DOC_INSTANCE, "chat_id": "5544999999999@s.whatsapp.net", "type": "document",
        "timestamp": "2021-09-21T12:55:55.000Z",
        "media": {"state": "pending", "media_type": "document", "mimetype": "application/pdf", "file_name": "name.pdf"},
    },
    "received_document_group_real.json": {
        "provider_message_id": "5E761DA2E79982E74371", "chat_id": "120363000000000017@g.us",
        "sender_id": "554499000018@s.whatsapp.net", "sender_name": "Participant Name", "type": "document",
        "caption": "https://cdn.openai.com/pdf/d04913be-3f6f-4d2b-b283-ff432ef4aaa5/why-language-models-"
                   "hallucinate.pdf?utm_source=www.therundown.ai&utm_medium=newsletter&utm_campaign=openai-cracks-"
                   "ai-s-hallucination-code&_bhlid=83ebc9ad0c336ad6c0ff9d2d614a8e64e9c3215f",
        "timestamp": "2025-09-08T11:34:40.000Z",
        "media": {"state": "pending", "media_type": "document", "mimetype": "application/pdf",
                  "file_name": "why-language-models-hallucinate.pdf"},
    },
    "received_fromme_text_real.json": {
        "provider_message_id": "A5E27BB3F40720F2C4ACAC815C1D0C4F", "chat_id": "554499000016@s.whatsapp.net",
        "sender_id": "5544999000001@s.whatsapp.net", "sender_name": "Connected Account Name", "from_me": True,
        "direction": "out", "type": "text", "text": "Boa", "quoted_message_id": "ACCA2933054CBACC7E44D6D5611D2F46",
        "timestamp": "2025-09-09T04:01:15.000Z", "status": "sent",  # its "RECEIVED" is not believed
    },
    "received_group_text_real.json": {
        "provider_message_id": "3EB03F23C9C8956E000D23", "chat_id": "120363000000000012@g.us",
        "sender_id": "554499000013@s.whatsapp.net", "sender_name": "Participant Name", "from_me": False,
        "type": "text", "text": "[text replaced by anonymiser] reply in a group thread",
        "quoted_message_id": "3A34FFF65AA345D7BE31", "timestamp": "2025-09-09T03:59:43.000Z", "status": "delivered",
    },
    "received_list_response.json": {
        "chat_id": "5544999999999@s.whatsapp.net", "type": "interactive", "raw_type": "listResponseMessage",
        "text": "Z-API", "interactive_id": "1", "quoted_message_id": DOC_INSTANCE,
        "timestamp": "2021-10-19T12:14:43.000Z",
    },
    "received_live_location_fromme_real.json": {
        "provider_message_id": "A5B796C1B67754F23ED3A8992295C580", "chat_id": "554499000011@s.whatsapp.net",
        "from_me": True, "type": "location", "raw_type": "liveLocation",
        "location": {"latitude": -23.5505, "longitude": -46.6333, "name": None}, "caption": None,
        "timestamp": "2025-09-08T18:22:00.000Z",
    },
    "received_location.json": {
        # The documented placeholders (-99.999999999999999) are beyond a double's precision.
        "type": "location", "raw_type": "location", "location": {"latitude": -100.0, "longitude": -100.0, "name": None},
        "timestamp": "2021-09-21T12:56:10.000Z",
    },
    "received_poll_group_real.json": {
        "provider_message_id": "3EB0CB0EF5820487C863", "chat_id": "120363000000000047@g.us",
        "sender_id": "554499000048@s.whatsapp.net", "type": "poll", "raw_type": "poll",
        "text": "[poll question replaced by anonymiser]", "timestamp": "2025-09-08T15:06:30.000Z",
    },
    "received_poll_vote.json": {
        "chat_id": "5544999999999@s.whatsapp.net", "sender_id": "5544999999999@s.whatsapp.net",
        "type": "interactive", "raw_type": "pollVote", "text": "Z-API",
        "quoted_message_id": "ID of the poll message that was answered", "timestamp": "2021-09-21T12:50:38.000Z",
    },
    "received_ptv_fromme_real.json": {
        "provider_message_id": "3EB0E5DE6C0BE379837C4B", "chat_id": "5544999000009@s.whatsapp.net",
        "sender_id": "5544999000001@s.whatsapp.net", "from_me": True, "direction": "out", "type": "video",
        "raw_type": "ptv", "caption": None, "timestamp": "2025-09-08T16:58:13.000Z",
        "media": {"state": "pending", "media_type": "video", "mimetype": "video/mp4"},
    },
    "received_reaction_group_lid_real.json": {
        "provider_message_id": "3F2C4BB331C7F09FD663", "chat_id": "120363000000000030@g.us",
        "sender_id": "554499000031@s.whatsapp.net", "type": "reaction", "reaction_to": "3AD060DED65EAF5BD14D",
        "reaction_emoji": "🚀", "timestamp": "2025-09-09T02:36:40.000Z",
    },
    "received_status_reply_text.json": {
        "chat_id": "5544999999999@s.whatsapp.net", "sender_id": "5544999999999@s.whatsapp.net", "type": "text",
        "text": "test", "quoted_message_id": "3EB054C12BAAC70228AAB6", "timestamp": "2026-05-18T20:01:47.000Z",
    },
    "received_sticker_group_real.json": {
        "provider_message_id": "3A1DDCB858CF0C2CA29F", "chat_id": "120363000000000005@g.us",
        "sender_id": "554499000020@s.whatsapp.net", "type": "sticker", "quoted_message_id": "3A49BEE267C8F95B4267",
        "timestamp": "2025-09-08T18:48:14.000Z",
        "media": {"state": "pending", "media_type": "sticker", "mimetype": "image/webp"},
    },
    "received_template_text.json": {
        "instance_id": "3C67AB641C8AA0412F6A2242B4E23AC7", "chat_id": "5544999999999@s.whatsapp.net",
        "sender_name": None, "type": "interactive", "raw_type": "hydratedTemplate", "text": "message text",
        "timestamp": "2024-02-20T19:26:33.000Z",
    },
    "received_video.json": {
        "type": "video", "caption": None, "timestamp": "2021-09-21T12:54:49.000Z",
        "media": {"state": "pending", "media_type": "video", "mimetype": "video/mp4"},
    },
    "received_video_group_real.json": {
        "provider_message_id": "3AD5751ECC67A827BE96", "chat_id": "120363000000000021@g.us",
        "sender_id": "554499000022@s.whatsapp.net", "type": "video", "caption": "[caption replaced by anonymiser]",
        "timestamp": "2025-09-08T18:35:47.000Z",
        "media": {"state": "pending", "media_type": "video", "mimetype": "video/mp4"},
    },
}

# The media URL each message's file will be fetched from (Z-API's direct URLs).
MEDIA_URLS = {
    "received_audio_group_real.json": f"{B2}/A5B21C9232649A9DC58F98C55829E95F/REDACTEDREDACTEDREDACT==.ogg",
    "received_document.json": "https://",
    "received_document_group_real.json": f"{B2}/5E761DA2E79982E74371/REDACTEDREDACTEDREDACT==.pdf",
    "received_ptv_fromme_real.json": f"{B2}/3EB0E5DE6C0BE379837C4B/REDACTEDREDACTEDREDACT==.mp4",
    "received_sticker_group_real.json": f"{B2}/3A1DDCB858CF0C2CA29F/REDACTEDREDACTEDREDACT==.webp",
    "received_video.json": "https://",
    "received_video_group_real.json": f"{B2}/3AD5751ECC67A827BE96/REDACTEDREDACTEDREDACT==.mp4",
}

# The LID ↔ phone links each message teaches (chatLid / senderLid of a 1:1 chat, participantLid of a group author).
ALIASES = {
    "received_audio_group_real.json": {("90000000000029@lid", "5544999000028@s.whatsapp.net")},
    "received_broadcast_list_fromme.json": set(),
    "received_buttons_message_real.json": {("900000000000034@lid", "5544999000009@s.whatsapp.net")},
    "received_contact.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_document.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_document_group_real.json": {("90000000000019@lid", "554499000018@s.whatsapp.net")},
    "received_fromme_text_real.json": {("900000000000015@lid", "554499000016@s.whatsapp.net")},
    "received_group_text_real.json": {("90000000000014@lid", "554499000013@s.whatsapp.net")},
    "received_list_response.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_live_location_fromme_real.json": {("900000000000035@lid", "554499000011@s.whatsapp.net")},
    "received_location.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_poll_group_real.json": {("9000000000049@lid", "554499000048@s.whatsapp.net")},
    "received_poll_vote.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_ptv_fromme_real.json": {("900000000000034@lid", "5544999000009@s.whatsapp.net")},
    "received_reaction_group_lid_real.json": set(),  # participantLid null; reactionBy is a bare LID
    "received_status_reply_text.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_sticker_group_real.json": set(),
    "received_template_text.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_video.json": {("81896604192873@lid", "5544999999999@s.whatsapp.net")},
    "received_video_group_real.json": {("90000000000023@lid", "554499000022@s.whatsapp.net")},
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_each_message_sample_becomes_its_message(client, name):
    answer = post_sample(client, name)
    assert (answer["provider"], answer["kind"], answer["outcome"]) == ("zapi", "message", "processed")
    stored = only(messages(client))
    assert stored["provider"] == "zapi"
    for field, value in MESSAGES[name].items():
        if field == "media" and value is not None:
            for media_field, media_value in value.items():
                assert stored["media"][media_field] == media_value, media_field
        else:
            assert stored[field] == value, field
    assert (MediaFile.get().url if stored["media"] else None) == MEDIA_URLS.get(name)
    assert aliases() == ALIASES[name]
    row = event(client, answer["event_id"])
    assert (row["event_name"], row["route"], row["message_id"]) == (
        "ReceivedCallback", ROUTE, stored["provider_message_id"])
    detail = client.get(f"/api/messages/{stored['id']}").get_json()
    assert [change["status"] for change in detail["status_history"]] == [stored["status"]]


def test_a_chat_is_named_after_the_group_or_the_contact_never_after_us(client):
    for name in ("received_group_text_real.json", "received_fromme_text_real.json",
                 "received_broadcast_list_fromme.json"):
        post_sample(client, name)
    channel = load_sample("zapi/received_fromme_text_real.json")
    channel.update(messageId="NEWS1", fromMe=False, phone="120363166555745933@newsletter", chatName="Canal",
                   chatLid=None, isNewsletter=True)
    post(client, channel)
    chats = {chat["chat_id"]: (chat["name"], chat["kind"], chat["is_group"])
             for chat in client.get("/api/chats").get_json()["items"]}
    assert chats == {
        "120363000000000012@g.us": ("Group Name", "group", True),
        "554499000016@s.whatsapp.net": ("Contact Name", "direct", False),
        "1774895799@broadcast": (None, "direct", False),
        "120363166555745933@newsletter": ("Canal", "newsletter", False),
    }
    assert message(client, "NEWS1")["sender_id"] == "120363166555745933@newsletter"


# --- statuses -------------------------------------------------------------------------------------

def our_message(message_id: str, phone: str, instance_id: str = INSTANCE) -> dict:
    """One of our messages (the real fromMe capture) to ``phone`` with id ``message_id``."""
    payload = load_sample("zapi/received_fromme_text_real.json")
    payload.update(messageId=message_id, phone=phone, chatLid=None, referenceMessageId=None, instanceId=instance_id)
    return payload


def their_message(message_id: str, phone: str, instance_id: str = INSTANCE) -> dict:
    payload = our_message(message_id, phone, instance_id)
    payload.update(fromMe=False, senderName="Contact Name")
    return payload


@pytest.mark.parametrize("name, status, at", [
    ("status_received_real.json", "delivered", "2025-09-06T13:33:34.000Z"),
    ("status_read_group_real.json", "read", "2025-09-08T02:20:17.000Z"),
    ("status_read_lid_phone_real.json", "read", "2025-09-09T00:20:22.000Z"),
    ("status_played_real.json", "played", "2025-09-06T09:55:23.000Z"),
])
def test_each_status_sample_moves_every_message_it_names(client, name, status, at):
    sample = load_sample(f"zapi/{name}")
    assert len(sample["ids"]) >= 1
    for message_id in sample["ids"]:
        post(client, our_message(message_id, sample["phone"]))
    answer = post_sample(client, name)
    assert (answer["provider"], answer["kind"], answer["outcome"]) == ("zapi", "status", "processed")
    assert event(client, answer["event_id"])["event_name"] == "MessageStatusCallback"
    for message_id in sample["ids"]:
        stored = message(client, message_id)
        assert stored["status"] == status, message_id
        assert stored[f"{status}_at"] == at
    again = post_sample(client, name)
    assert (again["outcome"], again["duplicate_of"]) == ("duplicate", answer["event_id"])


def test_a_batch_of_ids_is_kept_whole_even_before_the_messages_arrive(client):
    answer = post_sample(client, "status_played_real.json")
    assert answer["outcome"] == "processed"
    waiting = {(row.provider_message_id, row.status, row.message_id) for row in MessageStatusChange.select()}
    assert waiting == {("148EE2843EA2E21E827D47821EFA2463", "played", None),
                       ("CE7EFA57A0769DD11F85BEC2CB828E74", "played", None),
                       ("C7014722DBB93277C38DDD8FAD928ACD", "played", None)}
    post(client, our_message("CE7EFA57A0769DD11F85BEC2CB828E74", "5544999000003"))
    assert message(client, "CE7EFA57A0769DD11F85BEC2CB828E74")["status"] == "played"


@pytest.mark.parametrize("name", ["status_read_by_me_real.json", "status_read_by_me_group_real.json"])
def test_read_by_me_marks_the_contacts_messages_read_and_is_no_status_of_ours(client, name):
    sample = load_sample(f"zapi/{name}")
    for message_id in sample["ids"]:
        post(client, their_message(message_id, "554499000016"))
    answer = post_sample(client, name)
    assert (answer["kind"], answer["outcome"]) == ("status", "processed")
    for message_id in sample["ids"]:
        stored = message(client, message_id)
        assert (stored["direction"], stored["status"]) == ("in", "read")
        assert stored["read_at"] is not None


def test_a_delivery_is_sent_and_a_failed_delivery_keeps_zapis_error(client):
    # Z-API's success example is its error example without "error".
    delivered = {"phone": "554499999999", "messageId": "A800FB3697F1DE58C48D", "instanceId": "instance.id",
                 "zaapId": "A20DA9C0183A2D35A260F53F5D2B9244", "momment": 1777494009341, "type": "DeliveryCallback"}
    answer = post(client, delivered)
    assert (answer["kind"], answer["outcome"]) == ("status", "processed")
    assert event(client, answer["event_id"])["event_name"] == "DeliveryCallback"
    change = MessageStatusChange.get()
    assert (change.provider_message_id, change.status, change.error, change.message_id) == (
        "A800FB3697F1DE58C48D", "sent", None, None)  # kept until its message is known
    assert change.timestamp.isoformat() == "2026-04-29T20:20:09"

    post(client, our_message("A20DA9C0183A2D35A260F53F5D2B9244", "554499999999", "instance.id"))
    answer = post_sample(client, "delivery_error.json")
    assert (answer["kind"], answer["outcome"]) == ("status", "processed")
    failed = message(client, "A20DA9C0183A2D35A260F53F5D2B9244")
    assert (failed["status"], failed["error"], failed["failed_at"]) == (
        "failed", "Phone number does not exist", "2026-04-29T20:21:31.000Z")


def test_a_shadow_ban_names_its_code(client):
    payload = dict(load_sample("zapi/delivery_error.json"), error="The message was not sent due to a likely "
                   "shadow ban", errorCode="SHADOW_BAN")
    post(client, payload)
    change = MessageStatusChange.get()
    assert (change.status, change.error) == ("failed", "The message was not sent due to a likely shadow ban "
                                                       "(SHADOW_BAN)")


# --- presence and connection ------------------------------------------------------------------------

@pytest.mark.parametrize("name, chat, state", [
    ("presence_available_real.json", "5544999000009@s.whatsapp.net", "online"),
    ("presence_unavailable_real.json", "554499000010@s.whatsapp.net", "offline"),
    ("presence_paused_real.json", "554499000010@s.whatsapp.net", "paused"),
    ("presence_recording_real.json", "554499000011@s.whatsapp.net", "recording"),
])
def test_each_presence_sample_is_recorded_though_it_has_no_time_nor_id(client, name, chat, state):
    answer = post_sample(client, name)
    assert (answer["provider"], answer["kind"], answer["outcome"]) == ("zapi", "presence", "processed")
    presence = Presence.get()
    assert (presence.chat_jid, presence.participant_jid, presence.state) == (chat, chat, state)
    # No time in the payload: the time it arrived.
    assert abs((utcnow() - presence.updated_at).total_seconds()) < 60
    assert post_sample(client, name)["outcome"] == "processed"  # presence repeats: no dedupe


def test_connected_then_disconnected_set_the_instance_state(client):
    answer = post_sample(client, "connected_callback_real.json")
    assert (answer["kind"], answer["outcome"]) == ("connection", "processed")
    state = instance(client, INSTANCE)
    assert (state["connection_state"], state["own_jid"], state["connected_at"]) == (
        "connected", "5544999000001@s.whatsapp.net", "2025-09-08T12:17:04.000Z")
    disconnected = {"momment": 1757391000, "error": "Device has been disconnected", "disconnected": True,
                    "type": "DisconnectedCallback", "instanceId": INSTANCE}  # seconds, as Z-API's example
    answer = post(client, disconnected)
    assert (answer["kind"], answer["outcome"]) == ("connection", "processed")
    assert event(client, answer["event_id"])["event_name"] == "DisconnectedCallback"
    state = instance(client, INSTANCE)
    assert (state["connection_state"], state["state_reason"], state["disconnected_at"]) == (
        "disconnected", "Device has been disconnected", "2025-09-09T04:10:00.000Z")


def test_the_documented_placeholder_time_is_no_time_and_blocks_no_later_state(client):
    before = utcnow()
    answer = post_sample(client, "connected_callback_doc.json")  # momment 26151515154: the year 2798 in seconds
    assert answer["outcome"] == "processed"
    state = instance(client, "instance.id")
    assert state["connection_state"] == "connected"
    connected_at = datetime.fromisoformat(state["connected_at"].rstrip("Z"))
    assert before.replace(microsecond=0) <= connected_at <= utcnow()  # when it arrived
    # Read as the year 2798, it would have outranked this later, real disconnection.
    now_ms = int((utcnow() - datetime(1970, 1, 1)).total_seconds() * 1000) + 5000
    post(client, {"momment": now_ms, "error": "Device has been disconnected", "disconnected": True,
                  "type": "DisconnectedCallback", "instanceId": "instance.id"})
    assert instance(client, "instance.id")["connection_state"] == "disconnected"


# --- notifications ------------------------------------------------------------------------------------

NOTIFICATIONS = {
    "notification_call_received_contracted.json": ("CALL_RECEIVED", "calls are not kept"),
    "notification_call_voice_real.json": ("CALL_VOICE", "calls are not kept"),
    "notification_chat_label_association.json": ("CHAT_LABEL_ASSOCIATION", "labels are not kept"),
    "notification_group_link_admin_only.json": ("GROUP_MEMBER_LINK_PROPERTY_UPDATE", "group membership and settings"),
    "notification_group_participant_add_lid_real.json": ("GROUP_PARTICIPANT_ADD", "group membership and settings"),
    "notification_group_participant_invite_real.json": ("GROUP_PARTICIPANT_INVITE", "group membership and settings"),
    "notification_group_participant_leave_real.json": ("GROUP_PARTICIPANT_LEAVE", "group membership and settings"),
    "notification_membership_approval_request.json": ("MEMBERSHIP_APPROVAL_REQUEST", "membership requests"),
    "notification_newsletter_admin_promote.json": ("NEWSLETTER_ADMIN_PROMOTE", "channel roles are not kept"),
    "notification_profile_name_updated.json": ("PROFILE_NAME_UPDATED", "own profile is not kept"),
}


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_each_notification_is_kept_under_its_name_and_ignored_with_the_reason(client, name):
    notification, why = NOTIFICATIONS[name]
    answer = post_sample(client, name)
    assert (answer["provider"], answer["kind"], answer["outcome"]) == ("zapi", "unknown", "ignored")
    assert answer["detail"].startswith(f"notification {notification}: ") and why in answer["detail"]
    stored = event(client, answer["event_id"])
    assert (stored["event_name"], stored["outcome"], stored["error"]) == (notification, "ignored", answer["detail"])
    assert stored["instance_id"] == load_sample(f"zapi/{name}")["instanceId"]
    assert stored["payload"]["notification"] == notification
    assert messages(client) == [] and client.get("/api/chats").get_json()["items"] == []
    assert post_sample(client, name)["outcome"] == "duplicate"


def test_a_revoke_deletes_the_message_it_names(client):
    post(client, their_message("ABCDABCD1234", "554499000039"))
    answer = post_sample(client, "notification_revoke_real.json")
    assert (answer["kind"], answer["outcome"]) == ("message_delete", "processed")
    assert event(client, answer["event_id"])["event_name"] == "REVOKE"
    assert message(client, "ABCDABCD1234")["deleted_at"] == "2025-09-09T02:37:07.000Z"


def test_the_edit_sample_changes_the_stored_caption_text(client):
    original = load_sample("zapi/received_video_group_real.json")
    original["messageId"] = "3A4F884128961EAA48FD"
    post(client, original)
    answer = post_sample(client, "received_edited_video_caption_real.json")
    assert (answer["kind"], answer["outcome"]) == ("message_edit", "processed")
    edited = message(client, "3A4F884128961EAA48FD")
    assert (edited["text"], edited["edited_at"]) == ("[edited caption replaced by anonymiser]",
                                                     "2025-09-08T18:21:21.000Z")
    assert len(messages(client)) == 1  # the edit is not a message of its own, and brings no media
    assert MediaFile.select().count() == 1


def test_an_edit_naming_the_message_by_message_id_applies_too(client):
    post(client, their_message("EDITED1", "554499000016"))
    edit = their_message("EDITED1", "554499000016")
    edit.update(isEdit=True, editMessageId="PROTOCOL1", text={"message": "Boa tarde"})
    assert post(client, edit)["outcome"] == "processed"
    assert message(client, "EDITED1")["text"] == "Boa tarde"


def test_a_waiting_message_is_ignored_until_its_content_comes(client):
    answer = post_sample(client, "received_waiting_message_group_real.json")
    assert (answer["kind"], answer["outcome"]) == ("message", "ignored")
    assert "waiting for this message" in answer["detail"]
    assert messages(client) == []
    arrived = load_sample("zapi/received_waiting_message_group_real.json")
    arrived.update(waitingMessage=False, text={"message": "chegou"})
    assert post(client, arrived)["outcome"] == "processed"
    assert message(client, "3EB09845F4BDDAFE763C09")["text"] == "chegou"


def test_a_proxy_callback_is_ignored_and_its_proxy_password_copied_nowhere(client):
    answer = post_sample(client, "proxy_callback.json")
    assert (answer["provider"], answer["outcome"]) == ("zapi", "ignored")
    assert "senha123" not in answer["detail"]
    assert event(client, answer["event_id"])["event_name"] == "ProxyCallback"


# --- every sample is covered ------------------------------------------------------------------------------

def test_every_zapi_sample_is_covered_here():
    covered = (set(MESSAGES) | set(NOTIFICATIONS) | {
        "status_received_real.json", "status_read_group_real.json", "status_read_lid_phone_real.json",
        "status_played_real.json", "status_read_by_me_real.json", "status_read_by_me_group_real.json",
        "delivery_error.json", "presence_available_real.json", "presence_unavailable_real.json",
        "presence_paused_real.json", "presence_recording_real.json", "connected_callback_real.json",
        "connected_callback_doc.json", "notification_revoke_real.json", "received_edited_video_caption_real.json",
        "received_waiting_message_group_real.json", "proxy_callback.json"})
    on_disk = {name.split("/", 1)[1] for name in all_samples() if name.startswith("zapi/")}
    assert on_disk == covered and len(on_disk) == 47


@pytest.mark.parametrize("name", [name for name in all_samples() if name.startswith("zapi/")])
def test_every_zapi_sample_is_recognised_on_the_catch_all_url_too(client, name):
    answer = post(client, load_sample(name), "/webhook/")
    assert answer["provider"] == "zapi"
    assert event(client, answer["event_id"])["route"] == "/webhook/"


# --- the quirks ------------------------------------------------------------------------------------------

def test_a_gzipped_body_is_inflated_and_stored_as_json(client):
    payload = load_sample("zapi/received_group_text_real.json")
    body = gzip.compress(json.dumps(payload).encode())
    response = client.post(ROUTE, data=body, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    assert response.status_code == 200 and response.get_json()["outcome"] == "processed"
    stored = WebhookEvent.get()
    assert json.loads(stored.body) == payload and stored.body_encoding == "utf-8"
    assert message(client, "3EB03F23C9C8956E000D23")["chat_id"] == "120363000000000012@g.us"
    broken = client.post(ROUTE, data=body[:-8], headers={"Content-Encoding": "gzip"}, content_type="application/json")
    assert broken.status_code == 400


@pytest.mark.parametrize("phone, chat", [
    ("120363019502650977-group", "120363019502650977@g.us"),
    ("5544999999999-group", "5544999999999@g.us"),  # the docs' placeholder group
    ("1774895799-broadcast", "1774895799@broadcast"),
    ("120363166555745933@newsletter", "120363166555745933@newsletter"),
    ("999999999999@lid", "999999999999@lid"),
    ("+55 44 99999-9999", "5544999999999@s.whatsapp.net"),
])
def test_every_form_of_the_chat_id_is_understood(client, phone, chat):
    payload = their_message("FORM1", phone)
    payload["isGroup"] = phone.endswith("-group")
    post(client, payload)
    stored = message(client, "FORM1")
    assert stored["chat_id"] == chat


def test_a_chat_named_by_its_lid_joins_the_phones_chat_once_the_link_is_known(client):
    lid_only = their_message("LID1", "900000000000015@lid")
    post(client, lid_only)
    assert message(client, "LID1")["chat_id"] == "900000000000015@lid"
    post_sample(client, "received_fromme_text_real.json")  # phone 554499000016 with chatLid 900000000000015@lid
    assert {m["chat_id"] for m in messages(client)} == {"554499000016@s.whatsapp.net"}
    post(client, their_message("LID2", "900000000000015@lid"))
    assert message(client, "LID2")["chat_id"] == "554499000016@s.whatsapp.net"


def test_a_status_named_by_the_chats_lid_reaches_the_campaign_chat_of_the_phone(client):
    post(client, our_message("A5A23E8005F228C7F9523744BDB8DFD1", "554499000008"))
    learn = their_message("TEACH", "554499000008")
    learn["chatLid"] = "900000000000008@lid"
    post(client, learn)
    post_sample(client, "status_read_lid_phone_real.json")
    assert message(client, "A5A23E8005F228C7F9523744BDB8DFD1")["status"] == "read"
    assert ("900000000000008@lid", "554499000008@s.whatsapp.net") in aliases()


def test_our_own_lid_is_never_linked_to_a_contact(client):
    ours = our_message("OWN1", "554499000016")
    ours.update(chatLid=None, senderLid="900000000000001@lid")  # senderLid of our message names us
    post(client, ours)
    assert aliases() == set()
    group = load_sample("zapi/received_group_text_real.json")
    group.update(messageId="OWN2", fromMe=True, participantPhone="5544999000001", participantLid="900000000000001@lid")
    post(client, group)
    assert aliases() == set()
    assert message(client, "OWN2")["sender_id"] == "5544999000001@s.whatsapp.net"


@pytest.mark.parametrize("message_id", ["3EB0796DC6B777C0C7CD", "A5B21C9232649A9DC58F98C55829E95F",
                                        "702CC5F7E0A6BF4421", "1307654548", "1779374011-59"])
def test_every_form_of_message_id_is_kept_as_it_is(client, message_id):
    post(client, their_message(message_id, "554499000016"))
    assert message(client, message_id)["provider_message_id"] == message_id


@pytest.mark.parametrize("field, value, expected", [
    ("momment", 1757390383001, "2025-09-09T03:59:43.000Z"),  # ms with Z-API's small counter
    ("momment", 1757390383, "2025-09-09T03:59:43.000Z"),  # the odd seconds value
    ("momment", "1757390383000", "2025-09-09T03:59:43.000Z"),
    ("moment", 1757390383000, "2025-09-09T03:59:43.000Z"),  # the old docs' spelling
])
def test_the_time_is_read_in_every_form_z_api_writes_it(client, field, value, expected):
    payload = their_message("TIME1", "554499000016")
    del payload["momment"]
    payload[field] = value
    post(client, payload)
    assert message(client, "TIME1")["timestamp"] == expected


@pytest.mark.parametrize("value", [26151515154, 0, -5, "soon", None])
def test_an_implausible_time_is_no_time(client, value):
    payload = their_message("TIME2", "554499000016")
    payload["momment"] = value
    post(client, payload)
    assert message(client, "TIME2")["timestamp"] is None


def test_the_docs_spelling_of_the_type_and_of_the_ids_key_are_accepted(client):
    payload = their_message("SPELL1", "554499000016")
    payload["type"] = "ReceivedCallBack"  # the attribute tables' spelling
    assert post(client, payload)["outcome"] == "processed"
    status = {"instanceId": INSTANCE, "status": "READ", "id": "SPELL1", "momment": 1757390400000,
              "phone": "554499000016", "type": "MessageStatusCallback"}  # "id", as the docs' table says
    assert post(client, status)["outcome"] == "processed"
    assert message(client, "SPELL1")["status"] == "read"


@pytest.mark.parametrize("payload, reason", [
    ({"instanceId": INSTANCE, "status": "REVOKED", "ids": ["X"], "type": "MessageStatusCallback"}, "unknown status"),
    ({"instanceId": INSTANCE, "status": "READ", "type": "MessageStatusCallback"}, "without message ids"),
    ({"instanceId": INSTANCE, "phone": "5511", "status": "SLEEPING", "type": "PresenceChatCallback"},
     "unknown presence"),
    ({"instanceId": INSTANCE, "type": "InitialDataCallback"}, "callback not handled: InitialDataCallback"),
    ({"instanceId": INSTANCE, "type": "DeliveryCallback", "phone": "5511"}, "delivery without a message id"),
])
def test_a_callback_missing_what_it_needs_is_stored_and_ignored_with_the_reason(client, payload, reason):
    answer = post(client, payload)
    assert (answer["provider"], answer["outcome"]) == ("zapi", "ignored")
    assert reason in answer["detail"]


def test_a_received_callback_without_a_message_id_fails_and_is_kept_for_replay(client):
    payload = their_message("X", "554499000016")
    del payload["messageId"]
    answer = post(client, payload)
    assert (answer["outcome"], answer["detail"]) == ("failed", "missing message id")


def test_a_body_without_type_on_the_zapi_url_is_kept_as_unknown(client):
    payload = their_message("NOTYPE", "554499000016")
    del payload["type"]
    answer = post(client, payload)
    assert (answer["provider"], answer["outcome"]) == ("unknown", "ignored")


def test_the_dry_run_shows_what_a_zapi_payload_becomes(client):
    response = client.post("/test?route=/webhook/zapi/", data=json.dumps(load_sample("zapi/status_played_real.json")),
                           content_type="application/json")
    answer = response.get_json()
    assert (answer["provider"], answer["kind"], answer["event_name"]) == ("zapi", "status", "MessageStatusCallback")
    assert [item["status"] for item in answer["events"]] == ["played"] * 3
