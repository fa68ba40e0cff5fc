"""Every real sample, posted over HTTP, read back through the JSON API field by field."""

import json

import pytest

from tests.helpers import all_samples, load_sample
from models import MediaFile, WebhookEvent


def only(items: list) -> dict:
    assert len(items) == 1, items
    return items[0]


def post_and_read(client, name, path="/webhook/"):
    response = client.post(path, json=load_sample(name))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def messages(client, **query) -> list:
    return client.get("/api/messages", query_string=query).get_json()["items"]


def instance(client, external_id) -> dict:
    return only([i for i in client.get("/api/instances").get_json()["items"] if i["instance_id"] == external_id])


def test_every_sample_is_covered_below():
    covered = set(EXPECTED_MESSAGES) | set(EXPECTED_OTHER) | set(EXPECTED_KEPT)
    # Z-API's samples are covered, field by field, in test_zapi_samples.py.
    mine = {name for name in all_samples() if not name.startswith("zapi/")}
    assert mine - {"evolution/v2_sendText_response_openapi_example.json"} == covered


EXPECTED_MESSAGES = {
    "evolution/v1_messages.upsert_text_incoming.json": {
        "provider": "evolution", "instance_id": "tigo1", "provider_message_id": "3EB03E3CA617ADA52AEA79",
        "chat_id": "59171146267@s.whatsapp.net", "sender_id": "59171146267@s.whatsapp.net",
        "sender_name": "percy alvarez E1", "from_me": False, "direction": "in", "type": "text",
        "text": "hola - text", "caption": None, "timestamp": "2025-05-01T20:51:13.000Z", "media": None,
    },
    "evolution/v1_messages.upsert_text_outgoing_fromMe.json": {
        "provider": "evolution", "instance_id": "tigo1", "provider_message_id": "3EB0B7AA9746D9215C1340",
        "chat_id": "59171146267@s.whatsapp.net", "from_me": True, "direction": "out", "type": "text",
        "text": "menasje saliente solo texto", "timestamp": "2025-05-01T21:10:21.000Z", "status": "sent",
    },
    "evolution/v2_messages.upsert_text_DELIVERY_ACK_ephemeral_contextInfo.json": {
        "provider": "evolution", "instance_id": "Luis2", "provider_message_id": "3F883A0B44FFF34D1BA3",
        "chat_id": "554198908495@s.whatsapp.net", "sender_name": "Luis", "from_me": False, "type": "text",
        "text": "Hola", "status": "delivered", "timestamp": "2025-09-15T01:52:43.000Z",
    },
    # Evolution 2.3.x, LID-addressed: one person, one chat under the phone JID (see test_aliases.py)
    "evolution/v2.3.0_messages.upsert_lid_senderPn_from_source.json": {
        "provider": "evolution", "instance_id": "evo23", "provider_message_id": "3AF1E0C2B7D94A6C5E21",
        "chat_id": "5511999999999@s.whatsapp.net", "sender_id": "5511999999999@s.whatsapp.net",
        "sender_name": "Ana", "from_me": False, "type": "text", "text": "Oi, tudo bem?", "status": "delivered",
    },
    "evolution/v2.3.1_messages.upsert_previousRemoteJid_from_source.json": {
        "provider": "evolution", "instance_id": "evo23", "provider_message_id": "3AB27C90D1E64F0A8B12",
        "chat_id": "5511999999999@s.whatsapp.net", "sender_id": "5511999999999@s.whatsapp.net",
        "text": "Chegou?",
    },
    "evolution/v2.3.1_messages.upsert_group_participantPn_from_source.json": {
        "provider": "evolution", "instance_id": "evo23", "provider_message_id": "3A5D8E21F0C94B7A6E33",
        "chat_id": "120363025246125888@g.us", "sender_id": "5511999999999@s.whatsapp.net",
        "sender_name": "Ana", "text": "Bom dia, grupo",
    },
    "evolution/v1_messages.upsert_image_no_base64.json": {
        "provider": "evolution", "instance_id": "instance_3_553175564133",
        "provider_message_id": "3AE2973B208DFC7A642D", "chat_id": "553191819932@s.whatsapp.net",
        "sender_name": "Leila Fernanda", "type": "image", "timestamp": "2024-01-19T17:14:08.000Z",
        "media": {"state": "pending", "media_type": "image", "mimetype": "image/jpeg", "file_length": 255244},
    },
    "evolution/v1_messages.upsert_sticker.json": {
        "provider": "evolution", "provider_message_id": "3A7C22C9A23CAFAD7108", "type": "sticker",
        "timestamp": "2024-01-19T17:13:29.000Z",
        "media": {"state": "pending", "media_type": "sticker", "mimetype": "image/webp", "file_length": 35216},
    },
    "evolution/v1_messages.upsert_audio_ptt_base64_converted.json": {
        "provider": "evolution", "instance_id": "entel2", "provider_message_id": "70B23FB274D480B740FCC07E6427D21B",
        "chat_id": "59178742806@s.whatsapp.net", "sender_name": "Silenia", "type": "audio", "is_voice": True,
        "timestamp": "2025-05-03T22:41:25.000Z",
        "media": {"state": "pending", "media_type": "audio", "mimetype": "audio/ogg; codecs=opus", "file_length": 41589},
    },
    "wapi/webhookReceived_image_real.json": {
        "provider": "wapi", "instance_id": "3B6XIW-ZTS923-GEAY6V", "provider_message_id": "876A6DD9A41B758E8173C5636C810B17",
        "chat_id": "556999267344@s.whatsapp.net", "sender_id": "556999267344@s.whatsapp.net", "from_me": False,
        "type": "image", "timestamp": "2025-06-02T20:31:26.000Z",
        "media": {"state": "pending", "media_type": "image", "mimetype": "image/jpeg", "file_length": 76970},
    },
    "wapi/webhookReceived_text_extendedTextMessage_docsummary.json": {
        "provider": "wapi", "instance_id": "CYAJQL-HIIWWG-S6RU9I", "provider_message_id": "3EB00CD0857BA22EAEDCD9",
        "chat_id": "559999999999@s.whatsapp.net", "sender_name": "name", "from_me": False, "type": "text",
        "text": "teste", "timestamp": "2025-06-05T14:05:37.000Z",
    },
    "seeds/wapi_audio_minimal.json": {
        "provider": "wapi", "instance_id": "3B6XIW-ZTS923-GEAY6V", "provider_message_id": "B80D865264B9CA985108F695BEF5B564",
        "from_me": False, "type": "audio",
        "media": {"state": "pending", "media_type": "audio", "mimetype": "audio/ogg; codecs=opus", "file_length": 5067},
    },
    # WAHA: one id per message, the bare WhatsApp id inside WAHA's "{fromMe}_{chat}_{id}[_{participant}]"
    "waha/message_any_fromme_group_noweb.json": {
        "provider": "waha", "instance_id": "051855", "provider_message_id": "3EB03166C14ACBB1F4A2F2",
        "chat_id": "120363000000000101@g.us", "sender_id": "5544999000101@s.whatsapp.net",
        "sender_name": "Session Account", "from_me": True, "direction": "out", "type": "text",
        "raw_type": "extendedTextMessage", "text": "[text anonymised]", "caption": None,
        "timestamp": "2025-12-02T01:53:57.000Z", "status": "sent", "media": None,
    },
    # an incoming message's SERVER ack is no status of ours: it is delivered (it reached us)
    "waha/message_group_participant_webjs.json": {
        "provider": "waha", "instance_id": "default", "provider_message_id": "3EB01C0FDFD037F51A4DEF",
        "chat_id": "120363000000000201@g.us", "sender_id": "90000000000201@lid", "sender_name": None,
        "from_me": False, "direction": "in", "type": "text", "text": "[text anonymised]",
        "timestamp": "2026-01-23T07:12:50.000Z", "status": "delivered", "media": None,
    },
    # the chat is the one _data.key and the id name (the capture's "from" was edited by its author)
    "waha/message_image_noweb_2024.json": {
        "provider": "waha", "instance_id": "chatwoot", "provider_message_id": "6738E65C1C0E65591F2739658FC18A26",
        "chat_id": "70000000002@s.whatsapp.net", "sender_id": "70000000002@s.whatsapp.net",
        "sender_name": "Contact Name", "from_me": False, "direction": "in", "type": "image", "text": None,
        "caption": "Hi there's!", "timestamp": "2024-09-25T08:13:50.000Z", "status": "delivered",
        "media": {"state": "pending", "media_type": "image", "mimetype": "image/jpeg", "file_name": None},
    },
    "waha/message_newsletter_noweb.json": {
        "provider": "waha", "instance_id": "default", "provider_message_id": "11111111111111111111111111111111",
        "chat_id": "123123@newsletter", "sender_id": "123123@newsletter", "from_me": False, "type": "text",
        "text": "How are you all?! ❤️", "timestamp": "2024-07-12T09:28:31.000Z", "media": None,
    },
    "waha/message_status_broadcast.json": {
        "provider": "waha", "instance_id": "default", "provider_message_id": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "chat_id": "status@broadcast", "sender_id": "123123@s.whatsapp.net", "from_me": False, "type": "image",
        "text": None, "caption": "Check this out!", "timestamp": "2022-11-04T11:31:25.000Z",
        "media": {"state": "pending", "media_type": "image", "mimetype": "image/jpeg"},
    },
    # LID-addressed: filed under the phone its _data names (GOWS Info.SenderAlt, NOWEB key.remoteJidAlt)
    "waha/message_text_gows_lid.json": {
        "provider": "waha", "instance_id": "default", "provider_message_id": "3AC22AE73E797638455D",
        "chat_id": "5585900000002@s.whatsapp.net", "sender_id": "5585900000002@s.whatsapp.net",
        "sender_name": "Contact Name", "from_me": False, "type": "text", "raw_type": "conversation",
        "text": "Ixi kkk", "timestamp": "2026-01-16T16:23:11.000Z", "status": "delivered",
    },
    "waha/message_text_noweb_lid.json": {
        "provider": "waha", "instance_id": "u_05bea8cb2e1745939004", "provider_message_id": "3AABBA3EEED97047EBBB",
        "chat_id": "94700000002@s.whatsapp.net", "sender_id": "94700000002@s.whatsapp.net",
        "sender_name": "Contact Name", "from_me": False, "type": "text", "text": "Hello",
        "timestamp": "2026-10-01T10:43:16.000Z", "status": "delivered",
    },
    # a poll vote is the voter's reply to the poll, naming the options chosen
    "waha/poll_vote_group.json": {
        "provider": "waha", "instance_id": "default", "provider_message_id": "1C18A7EAADD2A8D0324755D241C4238A",
        "chat_id": "3333333333333@g.us", "sender_id": "1111111111@s.whatsapp.net", "from_me": False,
        "type": "interactive", "raw_type": "poll.vote", "text": "Awesome!", "quoted_message_id": "BAE5304BA1ECF704",
        "timestamp": "2023-08-24T07:17:07.000Z",
    },
    "seeds/betzap_text.json": {
        "provider": "betzap", "instance_id": "instance_123", "provider_message_id": "message_id_123",
        "chat_id": "5511999999999@s.whatsapp.net", "sender_name": "Nome do Usuário", "from_me": False,
        "type": "text", "text": "Texto da mensagem", "timestamp": "2022-01-01T00:00:00.000Z",
    },
    "seeds/endpoint_receive_message.json": {
        "provider": "plain", "instance_id": "instance_123", "provider_message_id": "msg_789",
        "chat_id": "5511888888888@s.whatsapp.net", "sender_id": "5511888888888@s.whatsapp.net",
        "sender_name": "Contato Nome", "from_me": False, "direction": "in", "type": "text",
        "text": "Preciso de ajuda!", "timestamp": "2025-01-15T10:31:00.000Z",
    },
    "seeds/endpoint_send_message.json": {
        "provider": "plain", "instance_id": "instance_123", "provider_message_id": "msg_456",
        "chat_id": "5511888888888@s.whatsapp.net", "from_me": True, "direction": "out", "type": "text",
        "text": "Olá, como posso ajudar?", "timestamp": "2025-01-15T10:30:00.000Z", "status": "sent",
    },
    "meta/dashboard_test_webhook_text.json": {
        "provider": "meta", "instance_id": "123456123", "provider_message_id": "ABGGFlA5Fpa",
        "chat_id": "16315551181@s.whatsapp.net", "sender_id": "16315551181@s.whatsapp.net",
        "sender_name": "test user name", "from_me": False, "type": "text", "text": "this is a text message",
        "timestamp": "2017-09-08T20:36:28.000Z",
    },
    "meta/fixture_image.json": {
        "provider": "meta", "instance_id": "1122334455667", "provider_message_id": "wamid.xyzxyz",
        "chat_id": "972987654321@s.whatsapp.net", "sender_name": "Test Name", "type": "image",
        "timestamp": "2023-10-11T16:56:19.000Z",
        "media": {"state": "pending", "media_type": "image", "mimetype": "image/jpeg"},
    },
    "meta/fixture_audio_voice.json": {
        "provider": "meta", "type": "audio", "is_voice": True, "timestamp": "2023-10-11T16:57:53.000Z",
        "media": {"state": "pending", "media_type": "audio", "mimetype": "audio/ogg; codecs=opus"},
    },
    "meta/fixture_document.json": {
        "provider": "meta", "type": "document", "caption": "caption", "forwarded": True,
        "media": {"state": "pending", "media_type": "document", "mimetype": "application/pdf", "file_name": "filename.pdf"},
    },
    "meta/fixture_location_forwarded.json": {
        "provider": "meta", "type": "location", "forwarded": True,
        "location": {"latitude": 12.25089, "longitude": 43.90539, "name": None}, "media": None,
    },
    "meta/fixture_reaction.json": {
        "provider": "meta", "type": "reaction", "reaction_to": "wamid.yzxyzx=", "reaction_emoji": "😮",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED_MESSAGES))
def test_message_samples_become_messages(client, name):
    answer = post_and_read(client, name)
    assert answer["outcome"] == "processed"
    assert answer["kind"] == "message"
    message = only(messages(client))
    expected = EXPECTED_MESSAGES[name]
    for field, value in expected.items():
        if field == "media" and value is not None:
            assert message["media"] is not None
            for media_field, media_value in value.items():
                assert message["media"][media_field] == media_value, media_field
        else:
            assert message[field] == value, field
    # the full record with its history is reachable too
    detail = client.get(f"/api/messages/{message['id']}").get_json()
    assert detail["provider_message_id"] == message["provider_message_id"]
    assert [change["status"] for change in detail["status_history"]] == [message["status"]]


def test_media_descriptors_are_all_kept_for_the_download(client):
    post_and_read(client, "evolution/v1_messages.upsert_image_no_base64.json")
    media = MediaFile.get()
    assert media.media_key == "+1GUGiQ2V3bl5x3WbwBtEWTHGqbSsDoxipWuGt7fjsU="
    assert media.direct_path.startswith("/o1/v/t62.7118-24/f1/m238/up-oil-image-566a07a3")
    assert media.url.startswith("https://mmg.whatsapp.net/o1/v/t62.7118-24/")
    assert media.file_sha256 == "hBIz7qzWOK3CNq7z4ku/vEuLC0nHC/PCkdXjcy/EHYs="
    assert media.file_enc_sha256 == "B/ud153aQz175OmzECcuRt6rbDZUUmUqw/ORzJaFUqM="
    assert (media.width, media.height) == (900, 1600)


def test_meta_media_keeps_its_media_id_and_sha256(client):
    post_and_read(client, "meta/fixture_audio_voice.json")
    media = MediaFile.get()
    assert media.media_id == "1234567890987654321"
    assert media.file_sha256 == "m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI="
    assert media.is_voice is True


def test_a_base64_body_goes_to_a_file_and_the_event_keeps_a_placeholder(client, app):
    import base64
    import hashlib
    from pathlib import Path

    payload = load_sample("evolution/v1_messages.upsert_audio_ptt_base64_converted.json")
    audio = base64.b64decode(payload["data"]["message"]["base64"])
    post_and_read(client, "evolution/v1_messages.upsert_audio_ptt_base64_converted.json")
    media = MediaFile.get()
    stored = Path(app.config["DATA_DIR"]) / media.inline_path
    assert stored.read_bytes() == audio
    assert media.inline_size == len(audio)
    assert media.inline_sha256 == hashlib.sha256(audio).hexdigest()
    event = WebhookEvent.get()
    assert len(event.body) < 10_000
    placeholder = json.loads(event.body)["data"]["message"]["base64"]
    assert placeholder == {"$blob": media.inline_path, "size": len(audio), "sha256": media.inline_sha256}
    assert event.body_size == len(json.dumps(payload).encode())


EXPECTED_OTHER = {
    "evolution/v1_connection.update_close_401.json": ("connection", "evolution", "tigo1"),
    "evolution/v1_connection.update_connecting.json": ("connection", "evolution", "instance_sergio_socket"),
    "evolution/v2_contacts.upsert_array_anonymized.json": ("contact", "evolution", "nome-da-instancia"),
    "evolution/v2_messages.update_DELETED_converted_from_php.json": ("message_delete", "evolution", "myinstance"),
    "seeds/campaign_messages_update_delivered.json": ("status", "evolution", "tenant_abc_inst_1"),
    "seeds/campaign_messages_update_read.json": ("status", "evolution", "tenant_abc_inst_1"),
    "seeds/endpoint_chat_presence.json": ("presence", "plain", "instance_123"),
    "seeds/endpoint_connect.json": ("connection", "plain", "instance_123"),
    "seeds/endpoint_disconnect.json": ("connection", "plain", "instance_123"),
    "seeds/endpoint_message_status.json": ("status", "plain", "instance_123"),
    "waha/message_ack_device_gows.json": ("status", "waha", "default"),
    "waha/message_ack_group_read_noweb.json": ("status", "waha", "default"),
    "waha/message_ack_group_read_webjs.json": ("status", "waha", "default"),
    "waha/message_ack_read_by_me_noweb.json": ("status", "waha", "default"),
    "waha/message_edited.json": ("message_edit", "waha", "default"),
    "waha/message_revoked.json": ("message_delete", "waha", "default"),
    "waha/presence_update_group_typing.json": ("presence", "waha", "default"),
    "waha/group_v2_join.json": ("contact", "waha", "default"),  # names the group (test_quoted_and_group_names)
    "waha/group_v2_update.json": ("contact", "waha", "default"),
    "waha/session_status_failed_webjs.json": ("connection", "waha", "default"),
    "waha/session_status_scan_qr_noweb_2024.json": ("qrcode", "waha", "07eda2a6-7a0f-475a-b4b6-6f3376a1f388"),
    "waha/session_status_scan_qr_webjs.json": ("qrcode", "waha", "default2"),
    "waha/session_status_stopped.json": ("connection", "waha", "default"),
    "meta/fixture_status_failed_errors.json": ("status", "meta", "1122334455667"),
    "meta/fixture_status_read.json": ("status", "meta", "1122334455667"),
    "meta/status_delivered_captured.json": ("status", "meta", "590968830767958"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_OTHER))
def test_other_samples_are_recognised(client, name):
    kind, provider, instance_id = EXPECTED_OTHER[name]
    answer = post_and_read(client, name)
    assert (answer["outcome"], answer["kind"], answer["provider"]) == ("processed", kind, provider)
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert event["instance_id"] == instance_id
    assert event["payload"] is not None


# Recognised, stored with their event name, and ignored with the reason: nothing in them is normalised.
EXPECTED_KEPT = {
    "waha/call_received.json": ("waha", "default", "call.received", "zaphook does not keep calls"),
    "waha/message_waiting_webjs.json": ("waha", "default", "message.waiting", "Waiting for this message"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_KEPT))
def test_samples_kept_as_received_are_stored_with_their_event_name_and_why(client, name):
    provider, instance_id, event_name, why = EXPECTED_KEPT[name]
    answer = post_and_read(client, name)
    assert (answer["outcome"], answer["provider"]) == ("ignored", provider)
    assert answer["detail"].startswith(f"event not handled: {event_name} (") and why in answer["detail"]
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert (event["event_name"], event["instance_id"], event["error"]) == (event_name, instance_id, answer["detail"])
    assert messages(client) == []


def test_connection_samples_set_the_instance_state(client):
    post_and_read(client, "evolution/v1_connection.update_close_401.json")
    tigo = instance(client, "tigo1")
    assert tigo["connection_state"] == "disconnected"
    assert "401" in tigo["state_reason"]
    assert tigo["disconnected_at"] is not None
    post_and_read(client, "evolution/v1_connection.update_connecting.json")
    assert instance(client, "instance_sergio_socket")["connection_state"] == "connecting"


def test_plain_connect_then_disconnect_keeps_both_times(client):
    post_and_read(client, "seeds/endpoint_connect.json", "/webhook/connect/")
    post_and_read(client, "seeds/endpoint_disconnect.json", "/webhook/disconnect/")
    state = instance(client, "instance_123")
    assert state["connection_state"] == "disconnected"
    assert state["connected_at"] == "2025-01-15T10:30:00.000Z"
    assert state["disconnected_at"] == "2025-01-15T10:35:00.000Z"
    # a late "connected" from before the disconnect does not win
    post_and_read(client, "seeds/endpoint_connect.json", "/webhook/connect/")
    assert instance(client, "instance_123")["connection_state"] == "disconnected"


def test_presence_sample_records_typing(client):
    from models import Presence

    post_and_read(client, "seeds/endpoint_chat_presence.json", "/webhook/chat-presence/")
    presence = Presence.get()
    assert (presence.chat_jid, presence.state) == ("5511888888888@s.whatsapp.net", "typing")
    assert presence.updated_at.isoformat() == "2025-01-15T10:32:00"


def test_contacts_sample_records_the_contact(client):
    from models import Contact

    post_and_read(client, "evolution/v2_contacts.upsert_array_anonymized.json")
    contact = Contact.get()
    assert (contact.jid, contact.name, contact.phone) == (
        "558187885943@s.whatsapp.net", "Nome do Contato", "558187885943")
    assert contact.profile_picture_url is None  # "url-da-foto-ou-null" is not a URL


def test_plain_send_then_status_sample_moves_the_message_to_delivered(client):
    post_and_read(client, "seeds/endpoint_send_message.json", "/webhook/send-message/")
    post_and_read(client, "seeds/endpoint_message_status.json", "/webhook/message-status/")
    message = only(messages(client))
    assert message["status"] == "delivered"
    assert message["delivered_at"] == "2025-01-15T10:33:00.000Z"


def test_meta_failed_status_sample_keeps_the_error(client):
    from models import MessageStatusChange

    post_and_read(client, "meta/fixture_status_failed_errors.json")
    change = MessageStatusChange.get()
    assert (change.provider_message_id, change.status) == ("wamid.xyzxyz", "failed")
    assert "130472" in change.error
    assert change.message is None  # kept until the message itself is known


def test_the_send_text_response_is_not_mistaken_for_a_message(client):
    answer = post_and_read(client, "evolution/v2_sendText_response_openapi_example.json")
    assert answer["outcome"] in ("ignored", "failed")
    assert messages(client) == []
