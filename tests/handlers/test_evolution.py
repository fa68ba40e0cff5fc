from datetime import datetime

import pytest

from handlers import evolution
from handlers.base import (
    ConnectionEvent, ContactEvent, DeleteEvent, EditEvent, MediaDescriptor,
    MessageEvent, PayloadError, PresenceEvent, QrCodeEvent, RouteHint, StatusEvent,
)

ANY = RouteHint()


def parse(payload, hint=ANY):
    return evolution.parse(payload, hint)


def envelope(event, data, **extra):
    return {"event": event, "instance": "inst1", "data": data,
            "sender": "5531000000000@s.whatsapp.net", **extra}


def upsert(key, message=None, **data):
    return envelope("messages.upsert", {"key": key, "message": message or {"conversation": "hi"},
                                        "messageTimestamp": 1746132673, **data})


# --- samples ------------------------------------------------------------------

def test_it_reads_an_incoming_v1_text(load_sample):
    result = parse(load_sample("evolution/v1_messages.upsert_text_incoming.json"))
    assert (result.provider, result.kind, result.instance_id, result.event_name) == \
        ("evolution", "message", "tigo1", "messages.upsert")
    assert result.ignored_reason is None
    assert result.events == [MessageEvent(
        message_id="3EB03E3CA617ADA52AEA79",
        chat_id="59171146267@s.whatsapp.net",
        from_me=False,
        type="text",
        raw_type="conversation",
        text="hola - text",
        timestamp=datetime(2025, 5, 1, 20, 51, 13),
        sender_id="59171146267@s.whatsapp.net",
        sender_name="percy alvarez E1",
        chat_name="percy alvarez E1",
        event_name="messages.upsert",
    )]


def test_it_reads_our_own_v1_text_with_the_instance_as_sender(load_sample):
    result = parse(load_sample("evolution/v1_messages.upsert_text_outgoing_fromMe.json"))
    assert result.events == [MessageEvent(
        message_id="3EB0B7AA9746D9215C1340",
        chat_id="59171146267@s.whatsapp.net",
        from_me=True,
        type="text",
        raw_type="conversation",
        text="menasje saliente solo texto",
        timestamp=datetime(2025, 5, 1, 21, 10, 21),
        sender_id="59169375664@s.whatsapp.net",
        sender_name="IPTV - T1",
        event_name="messages.upsert",
    )]


def test_it_reads_a_v1_image(load_sample):
    result = parse(load_sample("evolution/v1_messages.upsert_image_no_base64.json"))
    [event] = result.events
    assert result.instance_id == "instance_3_553175564133"
    assert (event.message_id, event.chat_id, event.type, event.raw_type) == \
        ("3AE2973B208DFC7A642D", "553191819932@s.whatsapp.net", "image", "imageMessage")
    assert event.timestamp == datetime(2024, 1, 19, 17, 14, 8)
    assert event.media == MediaDescriptor(
        media_type="image",
        mimetype="image/jpeg",
        file_length=255244,
        media_key="+1GUGiQ2V3bl5x3WbwBtEWTHGqbSsDoxipWuGt7fjsU=",
        direct_path="/o1/v/t62.7118-24/f1/m238/up-oil-image-566a07a3-c699-4b60-82cd-2a2b409650af"
                    "?ccb=9-4&oh=01_AdQNH3-u5TLP0RYLWbggKf1nyC2o7kEhVP4ZbmfhVFabmw&oe=65D209AF"
                    "&_nc_sid=000000",
        url="https://mmg.whatsapp.net/o1/v/t62.7118-24/f1/m238/up-oil-image-566a07a3-c699-4b60-"
            "82cd-2a2b409650af?ccb=9-4&oh=01_AdQNH3-u5TLP0RYLWbggKf1nyC2o7kEhVP4ZbmfhVFabmw"
            "&oe=65D209AF&_nc_sid=000000&mms3=true",
        file_sha256="hBIz7qzWOK3CNq7z4ku/vEuLC0nHC/PCkdXjcy/EHYs=",
        file_enc_sha256="B/ud153aQz175OmzECcuRt6rbDZUUmUqw/ORzJaFUqM=",
        width=900,
        height=1600,
    )


def test_it_reads_a_v1_voice_note_and_measures_its_inline_base64(load_sample):
    payload = load_sample("evolution/v1_messages.upsert_audio_ptt_base64_converted.json")
    [event] = parse(payload).events
    assert (event.message_id, event.type, event.sender_name) == \
        ("70B23FB274D480B740FCC07E6427D21B", "audio", "Silenia")
    assert event.timestamp == datetime(2025, 5, 3, 22, 41, 25)
    media = event.media
    assert (media.media_type, media.is_voice, media.seconds, media.file_length) == \
        ("audio", True, 19, 41589)
    assert media.mimetype == "audio/ogg; codecs=opus"
    assert media.media_key == "HMyn8WkBQ4MNj5fXCyqy52dqLnXwT85mlu59ncqn9Ao="
    assert media.inline_size == len(payload["data"]["message"]["base64"])
    assert media.inline_blob is None


def test_it_copies_the_blob_placeholder_the_ingest_pipeline_leaves(load_sample):
    payload = load_sample("evolution/v1_messages.upsert_audio_ptt_base64_converted.json")
    blob = {"$blob": "inbox/abc.bin", "size": 41589, "sha256": "abc"}
    payload["data"]["message"]["base64"] = blob
    [event] = parse(payload).events
    assert (event.media.inline_blob, event.media.inline_size) == (blob, None)


def test_it_reads_a_v1_sticker(load_sample):
    [event] = parse(load_sample("evolution/v1_messages.upsert_sticker.json")).events
    assert (event.message_id, event.type, event.media.mimetype, event.media.is_animated) == \
        ("3A7C22C9A23CAFAD7108", "sticker", "image/webp", False)
    assert event.media.file_length == 35216
    assert event.timestamp == datetime(2024, 1, 19, 17, 13, 29)


def test_it_reads_a_v2_text_with_its_initial_status(load_sample):
    result = parse(load_sample(
        "evolution/v2_messages.upsert_text_DELIVERY_ACK_ephemeral_contextInfo.json"))
    assert result.instance_id == "Luis2"
    assert result.events == [MessageEvent(
        message_id="3F883A0B44FFF34D1BA3",
        chat_id="554198908495@s.whatsapp.net",
        from_me=False,
        type="text",
        raw_type="conversation",
        text="Hola",
        status="delivered",
        timestamp=datetime(2025, 9, 15, 1, 52, 43),
        sender_id="554198908495@s.whatsapp.net",
        sender_name="Luis",
        chat_name="Luis",
        event_name="messages.upsert",
    )]


def test_it_reads_a_v2_deleted_status_as_a_delete(load_sample):
    result = parse(load_sample("evolution/v2_messages.update_DELETED_converted_from_php.json"))
    assert (result.kind, result.instance_id, result.event_name) == \
        ("message_delete", "myinstance", "messages.update")
    # keyId is WhatsApp's id; messageId is Evolution's database id.
    assert result.events == [DeleteEvent(
        message_id="A5561E44C2A63682E4295B52F484C14E", chat_id="200000000000@s.whatsapp.net")]


@pytest.mark.parametrize("name, status", [
    ("seeds/campaign_messages_update_delivered.json", "delivered"),
    ("seeds/campaign_messages_update_read.json", "read"),
])
def test_it_reads_the_campaign_seeds_numeric_statuses(load_sample, name, status):
    result = parse(load_sample(name))
    assert (result.kind, result.instance_id) == ("status", "tenant_abc_inst_1")
    assert result.events == [StatusEvent(message_id="3EB0B431E4B3F7E7BE49E97F7B8E5C8B", status=status)]


def test_it_reads_v1_connection_close_with_its_reason(load_sample):
    result = parse(load_sample("evolution/v1_connection.update_close_401.json"))
    assert (result.kind, result.instance_id, result.event_name) == \
        ("connection", "tigo1", "connection.update")
    assert result.events == [ConnectionEvent(state="disconnected", reason="401")]


def test_it_reads_v1_connection_connecting(load_sample):
    result = parse(load_sample("evolution/v1_connection.update_connecting.json"))
    assert result.instance_id == "instance_sergio_socket"
    assert result.events == [ConnectionEvent(state="connecting", reason="200")]


def test_it_reads_a_list_of_contacts_and_skips_placeholder_pictures(load_sample):
    result = parse(load_sample("evolution/v2_contacts.upsert_array_anonymized.json"))
    assert (result.kind, result.instance_id) == ("contact", "nome-da-instancia")
    assert result.events == [ContactEvent(
        contact_id="558187885943@s.whatsapp.net", name="Nome do Contato")]


# --- messages -----------------------------------------------------------------

def test_it_resolves_a_lid_chat_with_its_phone_alternative():
    [event] = parse(upsert({"id": "L1", "remoteJid": "208218911133803@lid",
                            "remoteJidAlt": "5511999999999@s.whatsapp.net", "fromMe": False},
                           pushName="Ana")).events
    assert event.chat_id == "5511999999999@s.whatsapp.net"
    assert event.sender_id == "5511999999999@s.whatsapp.net"


def test_it_keeps_a_lid_chat_without_an_alternative():
    [event] = parse(upsert({"id": "L2", "remoteJid": "208218911133803@lid"})).events
    assert event.chat_id == "208218911133803@lid"


LID, PHONE, OURS = "208218911133803@lid", "5511999999999@s.whatsapp.net", "5531000000000@s.whatsapp.net"


@pytest.mark.parametrize("key, chat, sender, aliases", [
    # 2.3.0: the sender's phone beside a LID chat
    ({"remoteJid": LID, "senderPn": PHONE}, PHONE, PHONE, [(LID, PHONE)]),
    # 2.3.1-2.3.2: Evolution put senderPn in remoteJid and kept the LID
    ({"remoteJid": PHONE, "senderPn": PHONE, "previousRemoteJid": LID}, PHONE, PHONE, [(LID, PHONE)]),
    # 2.3.3+ (Baileys 7): the other form of the sender, either way round
    ({"remoteJid": PHONE, "remoteJidAlt": LID}, PHONE, PHONE, [(LID, PHONE)]),
    ({"remoteJid": "120363025246125888@g.us", "participant": LID, "participantPn": PHONE},
     "120363025246125888@g.us", PHONE, [(LID, PHONE)]),
    ({"remoteJid": "120363025246125888@g.us", "participant": PHONE, "participantLid": LID},
     "120363025246125888@g.us", PHONE, [(LID, PHONE)]),
    # our own message: senderPn and remoteJidAlt name us, not the chat
    ({"remoteJid": LID, "fromMe": True, "senderPn": OURS, "remoteJidAlt": OURS}, LID, OURS, []),
    # nothing to learn from a LID alone
    ({"remoteJid": LID}, LID, LID, []),
])
def test_it_reads_the_lid_and_phone_links_of_the_key(key, chat, sender, aliases):
    [event] = parse(upsert({"id": "A1", "fromMe": False, **key})).events
    assert (event.chat_id, event.sender_id, list(event.aliases)) == (chat, sender, aliases)


def test_our_own_message_teaches_nothing_when_the_payload_does_not_say_who_we_are():
    payload = upsert({"id": "A2", "remoteJid": LID, "remoteJidAlt": PHONE, "fromMe": True})
    del payload["sender"]
    [event] = parse(payload).events
    assert (event.chat_id, event.aliases) == (PHONE, ())  # as before, but not learnt: it may be our number


def test_it_takes_the_participant_as_the_sender_in_groups():
    [event] = parse(upsert(
        {"id": "G1", "remoteJid": "120363025246125888@g.us", "fromMe": False,
         "participant": "208218911133803@lid", "participantAlt": "5511888888888@s.whatsapp.net"},
        pushName="Bia")).events
    assert (event.chat_id, event.is_group) == ("120363025246125888@g.us", True)
    assert (event.sender_id, event.sender_name, event.chat_name) == \
        ("5511888888888@s.whatsapp.net", "Bia", None)


def test_it_treats_send_message_as_ours_when_from_me_is_missing():
    payload = upsert({"id": "S1", "remoteJid": "5511@s.whatsapp.net"}, status="PENDING")
    payload["event"] = "send.message"
    result = parse(payload)
    [event] = result.events
    assert (event.from_me, event.status, event.event_name) == (True, "pending", "send.message")
    assert event.sender_id == "5531000000000@s.whatsapp.net"


@pytest.mark.parametrize("timestamp", [1746132673, "1746132673", {"low": 1746132673, "high": 0}])
def test_it_reads_message_timestamps_in_every_form(timestamp):
    [event] = parse(upsert({"id": "T", "remoteJid": "5511@s.whatsapp.net"},
                           messageTimestamp=timestamp)).events
    assert event.timestamp == datetime(2025, 5, 1, 20, 51, 13)


def test_it_takes_the_quote_from_data_context_info():
    [event] = parse(upsert({"id": "Q", "remoteJid": "5511@s.whatsapp.net"},
                           contextInfo={"stanzaId": "ORIGINAL"})).events
    assert event.quoted_message_id == "ORIGINAL"


def test_it_reads_a_list_of_messages():
    payload = envelope("messages.upsert", [
        {"key": {"id": "A", "remoteJid": "5511@s.whatsapp.net"}, "message": {"conversation": "a"}},
        {"key": {"id": "B", "remoteJid": "5511@s.whatsapp.net"}, "message": {"conversation": "b"}},
    ])
    assert [e.message_id for e in parse(payload).events] == ["A", "B"]


def test_it_turns_an_upserted_revoke_into_a_delete():
    result = parse(upsert({"id": "P", "remoteJid": "5511@s.whatsapp.net"},
                          message={"protocolMessage": {"key": {"id": "GONE"}, "type": 0}}))
    assert result.kind == "message_delete"
    assert result.events == [DeleteEvent(message_id="GONE", chat_id="5511@s.whatsapp.net",
                                         timestamp=datetime(2025, 5, 1, 20, 51, 13))]


@pytest.mark.parametrize("key, error", [
    ({"remoteJid": "5511@s.whatsapp.net"}, "missing message id"),
    ({"id": "X"}, "missing chat id"),
])
def test_it_refuses_a_message_without_ids(key, error):
    with pytest.raises(PayloadError, match=error):
        parse(upsert(key))


def test_it_refuses_a_message_event_without_data():
    with pytest.raises(PayloadError, match="missing message data"):
        parse(envelope("messages.upsert", None))


# --- event names and instances ----------------------------------------------

@pytest.mark.parametrize("name", ["MESSAGES_UPSERT", "messages-upsert", "Messages.Upsert"])
def test_it_normalises_event_name_spellings(name):
    payload = upsert({"id": "N", "remoteJid": "5511@s.whatsapp.net"})
    payload["event"] = name
    result = parse(payload)
    assert (result.event_name, result.events[0].event_name) == ("messages.upsert", "messages.upsert")


def test_it_takes_the_event_from_the_url_when_the_envelope_has_none():
    payload = upsert({"id": "U", "remoteJid": "5511@s.whatsapp.net"})
    del payload["event"]
    result = parse(payload, RouteHint("evolution", "messages-upsert"))
    assert (result.kind, result.event_name) == ("message", "messages.upsert")


def test_it_ignores_a_request_without_any_event_name():
    result = parse({"instance": "inst1", "data": {}}, RouteHint("evolution"))
    assert (result.kind, result.ignored_reason, result.events) == ("unknown", "missing event name", [])


def test_it_ignores_unknown_events():
    result = parse(envelope("chats.upsert", [{"id": "5511@s.whatsapp.net"}]))
    assert (result.provider, result.kind, result.instance_id, result.event_name) == \
        ("evolution", "unknown", "inst1", "chats.upsert")
    assert result.ignored_reason == "event not handled: chats.upsert"
    assert result.events == []


@pytest.mark.parametrize("data, instance", [
    ({"instance": "from-data", "state": "open"}, "from-data"),
    ({"owner": "owner-name", "state": "open"}, "owner-name"),
    ({"instanceId": "f2236efe-uuid", "state": "open"}, "f2236efe-uuid"),
])
def test_it_falls_back_on_the_data_for_the_instance(data, instance):
    assert parse({"event": "connection.update", "data": data}).instance_id == instance


def test_it_refuses_an_envelope_without_an_instance():
    with pytest.raises(PayloadError, match="missing instance id"):
        parse({"event": "connection.update", "data": {"state": "open"}})


# --- status updates ------------------------------------------------------------

def test_it_reads_a_v1_status_update():
    result = parse(envelope("messages.update", {
        "remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "V1",
        "status": "DELIVERY_ACK", "datetime": 1746132673123, "owner": "inst1"}))
    assert result.events == [StatusEvent(
        message_id="V1", status="delivered", timestamp=datetime(2025, 5, 1, 20, 51, 13),
        chat_id="5511999999999@s.whatsapp.net")]


def test_it_reads_a_v2_status_update_by_its_key_id():
    result = parse(envelope("messages.update", {
        "keyId": "WA-ID", "remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True,
        "participant": None, "status": "READ", "messageId": "db-id", "instanceId": "uuid"}))
    assert result.events == [StatusEvent(
        message_id="WA-ID", status="read", chat_id="5511999999999@s.whatsapp.net")]


@pytest.mark.parametrize("code, status", [(0, "failed"), (1, "pending"), (2, "delivered"),
                                          (3, "read"), (4, "played"), ("3", "read")])
def test_it_reads_numeric_seed_statuses(code, status):
    result = parse(envelope("messages.update", {"key": {"id": "N"}, "update": {"status": code}}))
    assert result.events == [StatusEvent(message_id="N", status=status)]


def test_it_reads_a_list_of_status_updates():
    result = parse(envelope("messages.update", [
        {"key": {"id": "A"}, "update": {"status": 2}},
        {"keyId": "B", "status": "DELETED"},
    ]))
    assert result.kind == "mixed"
    assert result.events == [StatusEvent(message_id="A", status="delivered"), DeleteEvent(message_id="B")]


def test_it_reads_send_message_update_like_messages_update():
    result = parse(envelope("send.message.update", {"keyId": "S", "status": "SERVER_ACK"}))
    assert (result.event_name, result.events) == \
        ("send.message.update", [StatusEvent(message_id="S", status="sent")])


def test_it_ignores_an_update_without_a_known_status():
    result = parse(envelope("messages.update", {"keyId": "P", "pollUpdates": [{}]}))
    assert (result.kind, result.ignored_reason, result.events) == ("status", "no known status", [])


def test_it_refuses_an_update_without_a_message_id():
    with pytest.raises(PayloadError, match="missing message id"):
        parse(envelope("messages.update", {"status": "READ", "messageId": "db-id"}))


# --- deletes and edits ----------------------------------------------------------

def test_it_reads_a_delete_of_a_raw_key():
    result = parse(envelope("messages.delete", {
        "remoteJid": "5511999999999@s.whatsapp.net", "fromMe": False, "id": "DEL"}))
    assert (result.kind, result.events) == \
        ("message_delete", [DeleteEvent(message_id="DEL", chat_id="5511999999999@s.whatsapp.net")])


def test_it_refuses_a_delete_without_an_id():
    with pytest.raises(PayloadError, match="missing message id"):
        parse(envelope("messages.delete", {"remoteJid": "5511@s.whatsapp.net"}))


PROTOCOL_EDIT = {
    "key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "ORIG"},
    "type": "MESSAGE_EDIT",
    "editedMessage": {"conversation": "corrected"},
    "timestampMs": "1746132673123",
}
EXPECTED_EDIT = EditEvent(message_id="ORIG", text="corrected",
                          timestamp=datetime(2025, 5, 1, 20, 51, 13),
                          chat_id="5511999999999@s.whatsapp.net")


@pytest.mark.parametrize("data", [
    PROTOCOL_EDIT,
    {"message": {"protocolMessage": PROTOCOL_EDIT}},
    {"key": {"id": "WRAPPER"}, "message": {"editedMessage": {"message": {"protocolMessage": PROTOCOL_EDIT}}}},
])
def test_it_reads_an_edit_wherever_the_protocol_message_sits(data):
    result = parse(envelope("messages.edited", data))
    assert (result.kind, result.event_name) == ("message_edit", "messages.edited")
    assert result.events == [EXPECTED_EDIT]


def test_it_refuses_an_edit_without_a_protocol_message():
    with pytest.raises(PayloadError, match="missing edited message"):
        parse(envelope("messages.edited", {"message": {"conversation": "x"}}))


# --- connection, QR code, presence, contacts ---------------------------------------

@pytest.mark.parametrize("state, expected", [
    ("open", "connected"), ("connecting", "connecting"), ("close", "disconnected"),
    ("refused", "disconnected"),
])
def test_it_maps_connection_states(state, expected):
    [event] = parse(envelope("connection.update", {"state": state})).events
    assert event.state == expected


def test_it_takes_the_own_id_from_an_open_connection():
    [event] = parse(envelope("connection.update", {
        "instance": "inst1", "wuid": "5531000000000@s.whatsapp.net", "profileName": "Shop",
        "state": "open", "statusReason": 200})).events
    assert event == ConnectionEvent(state="connected", reason="200",
                                    own_id="5531000000000@s.whatsapp.net")


def test_it_ignores_an_unknown_connection_state():
    result = parse(envelope("CONNECTION_UPDATE", {"state": "sleeping"}))
    assert (result.kind, result.ignored_reason) == ("connection", "unknown connection state")


def test_it_never_puts_the_qr_code_in_the_detail():
    secret = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"
    result = parse(envelope("qrcode.updated", {"qrcode": {
        "instance": "inst1", "pairingCode": "WZYEH1YY", "code": "2@abc,def", "base64": secret}}))
    assert result.kind == "qrcode"
    assert result.events == [QrCodeEvent(detail="QR code updated (pairing code available)")]


def test_it_reports_the_qr_code_limit_message():
    result = parse(envelope("qrcode.updated", {
        "message": "QR code limit reached, please login again", "statusCode": 500}))
    assert result.events == [QrCodeEvent(detail="QR code limit reached, please login again")]


@pytest.mark.parametrize("presence, state", [
    ("composing", "typing"), ("recording", "recording"), ("paused", "paused"),
    ("available", "online"), ("unavailable", "offline"),
])
def test_it_maps_presences(presence, state):
    result = parse(envelope("presence.update", {
        "id": "5511999999999@s.whatsapp.net",
        "presences": {"5511999999999@s.whatsapp.net": {"lastKnownPresence": presence}}}))
    assert result.events == [PresenceEvent(chat_id="5511999999999@s.whatsapp.net", state=state,
                                           participant_id="5511999999999@s.whatsapp.net")]


def test_it_gives_one_presence_per_group_member():
    result = parse(envelope("presence.update", {
        "id": "120363025246125888@g.us",
        "presences": {
            "5511111111111@s.whatsapp.net": {"lastKnownPresence": "composing"},
            "5522222222222@s.whatsapp.net": {"lastKnownPresence": "recording", "lastSeen": None},
            "5533333333333@s.whatsapp.net": {"lastKnownPresence": "juggling"},
        }}))
    assert [(e.chat_id, e.participant_id, e.state) for e in result.events] == [
        ("120363025246125888@g.us", "5511111111111@s.whatsapp.net", "typing"),
        ("120363025246125888@g.us", "5522222222222@s.whatsapp.net", "recording"),
    ]


def test_it_reads_one_contact_with_a_picture():
    result = parse(envelope("contacts.update", {
        "id": "5511999999999@s.whatsapp.net", "name": "Ana",
        "profilePicUrl": "https://pps.whatsapp.net/v/1.jpg"}))
    assert result.events == [ContactEvent(contact_id="5511999999999@s.whatsapp.net", name="Ana",
                                          profile_picture_url="https://pps.whatsapp.net/v/1.jpg")]


def test_it_ignores_contacts_without_ids():
    result = parse(envelope("contacts.set", [{"pushName": "nobody"}]))
    assert (result.kind, result.ignored_reason) == ("contact", "no contacts")


# --- detection -------------------------------------------------------------------

@pytest.mark.parametrize("payload, hint, expected", [
    ({"event": "messages.upsert", "data": {}}, ANY, True),
    ({"event": "MESSAGES_UPSERT", "data": {}}, ANY, True),
    ({"event": "call", "instance": "i", "data": {}}, ANY, True),
    ({"whatever": 1}, RouteHint("evolution"), True),
    ({"event": "messages.upsert"}, ANY, False),
    ({"event": "message", "instanceId": "i"}, ANY, False),
    ({"event": "webhookReceived", "instanceId": "i"}, ANY, False),
])
def test_it_detects_evolution_envelopes(payload, hint, expected):
    assert evolution.detect(payload, hint) is expected


# --- protocol messages that edit nothing; edits of our own messages -----------------
# Shape of the protocolMessage: PROVIDERS.md section 1 ("wrappers" row, EVO2 BS:1094-1106)
# and Baileys' proto.Message.ProtocolMessage (type names EPHEMERAL_SETTING,
# HISTORY_SYNC_NOTIFICATION, ...).

@pytest.mark.parametrize("data, protocol_type", [
    ({"key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "EPH"},
      "type": "EPHEMERAL_SETTING", "ephemeralExpiration": 604800}, "EPHEMERAL_SETTING"),
    ({"key": {"remoteJid": "5511999999999@s.whatsapp.net", "id": "W"},
      "message": {"protocolMessage": {"type": "EPHEMERAL_SETTING", "ephemeralExpiration": 0}}},
     "EPHEMERAL_SETTING"),
    ({"type": "HISTORY_SYNC_NOTIFICATION",
      "historySyncNotification": {"syncType": "RECENT", "chunkOrder": 1}}, "HISTORY_SYNC_NOTIFICATION"),
    ({"key": {"id": "N"}, "type": 3}, "3"),
])
def test_it_ignores_an_edited_event_whose_protocol_message_is_not_an_edit(data, protocol_type):
    result = parse(envelope("messages.edited", data))
    assert (result.provider, result.kind, result.event_name, result.events) == \
        ("evolution", "message_edit", "messages.edited", [])
    assert result.ignored_reason == f"protocol message is not an edit: {protocol_type}"


def test_it_refuses_an_edit_whose_protocol_message_names_no_message():
    with pytest.raises(PayloadError, match="missing edited message"):
        parse(envelope("messages.edited", {"type": "MESSAGE_EDIT", "editedMessage": {"conversation": "x"}}))


@pytest.mark.parametrize("data", [
    {"key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "EDIT-MSG"},
     "message": {"protocolMessage": PROTOCOL_EDIT}, "messageTimestamp": 1746132673},
    {"key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "EDIT-MSG"},
     "message": {"editedMessage": {"message": {"protocolMessage": PROTOCOL_EDIT}}}},
    PROTOCOL_EDIT,
])
def test_it_reads_an_edit_sent_as_send_message_update(data):
    result = parse(envelope("send.message.update", data))
    assert (result.kind, result.event_name, result.ignored_reason) == \
        ("message_edit", "send.message.update", None)
    assert result.events == [EXPECTED_EDIT]


def test_it_still_reads_statuses_next_to_an_edit_in_send_message_update():
    result = parse(envelope("send.message.update", [
        {"keyId": "S", "status": "READ"}, {"message": {"protocolMessage": PROTOCOL_EDIT}}]))
    assert result.events == [StatusEvent(message_id="S", status="read"), EXPECTED_EDIT]


# --- Status posts and channels ------------------------------------------------------
# status@broadcast and @newsletter chat ids: PROVIDERS.md section 1, "chat id" row.

def test_it_marks_a_status_post_and_takes_its_author_from_the_participant():
    [event] = parse(upsert(
        {"id": "ST1", "remoteJid": "status@broadcast", "fromMe": False,
         "participant": "5511888888888@s.whatsapp.net"},
        message={"imageMessage": {"mimetype": "image/jpeg", "caption": "bom dia"}},
        pushName="Bia")).events
    assert (event.chat_id, event.chat_kind, event.is_group) == ("status@broadcast", "status", False)
    assert (event.sender_id, event.sender_name, event.chat_name) == \
        ("5511888888888@s.whatsapp.net", "Bia", None)


def test_it_resolves_a_status_authors_lid_with_the_participant_alternative():
    [event] = parse(upsert(
        {"id": "ST2", "remoteJid": "status@broadcast", "fromMe": False,
         "participant": "208218911133803@lid", "participantAlt": "5511888888888@s.whatsapp.net"})).events
    assert event.sender_id == "5511888888888@s.whatsapp.net"


def test_our_own_status_post_is_by_the_instance():
    [event] = parse(upsert({"id": "ST3", "remoteJid": "status@broadcast", "fromMe": True})).events
    assert (event.chat_kind, event.from_me, event.sender_id) == \
        ("status", True, "5531000000000@s.whatsapp.net")


@pytest.mark.parametrize("key, sender", [
    ({"id": "NL1", "remoteJid": "120363144038483540@newsletter", "fromMe": False},
     "120363144038483540@newsletter"),
    ({"id": "NL2", "remoteJid": "120363144038483540@newsletter", "fromMe": False,
      "participant": "5511777777777@s.whatsapp.net"}, "5511777777777@s.whatsapp.net"),
])
def test_it_marks_a_channel_post(key, sender):
    [event] = parse(upsert(key, pushName="Canal")).events
    assert (event.chat_id, event.chat_kind, event.is_group) == \
        ("120363144038483540@newsletter", "newsletter", False)
    assert (event.sender_id, event.chat_name) == (sender, None)


@pytest.mark.parametrize("remote_jid", ["5511999999999@s.whatsapp.net", "120363025246125888@g.us"])
def test_one_to_one_chats_and_groups_have_no_chat_kind(remote_jid):
    [event] = parse(upsert({"id": "K", "remoteJid": remote_jid, "participant": "5511@s.whatsapp.net"})).events
    assert event.chat_kind is None


# --- our own group messages ------------------------------------------------------------

@pytest.mark.parametrize("key", [
    {"id": "OWN1", "remoteJid": "120363025246125888@g.us", "fromMe": True},
    # v2.3.x can put our own @lid as the participant; the envelope's sender is our number
    {"id": "OWN2", "remoteJid": "120363025246125888@g.us", "fromMe": True,
     "participant": "208218911133803@lid"},
])
def test_our_own_group_message_is_by_the_instance(key):
    [event] = parse(upsert(key, pushName="Você")).events
    assert (event.is_group, event.from_me, event.sender_id) == \
        (True, True, "5531000000000@s.whatsapp.net")


def test_our_own_group_message_keeps_the_participant_when_the_envelope_has_no_sender():
    payload = upsert({"id": "OWN3", "remoteJid": "120363025246125888@g.us", "fromMe": True,
                      "participant": "5531000000000@s.whatsapp.net"})
    del payload["sender"]
    [event] = parse(payload).events
    assert event.sender_id == "5531000000000@s.whatsapp.net"


# --- a chat id the sender blanked -----------------------------------------------------

@pytest.mark.parametrize("from_me, sender", [(False, None), (True, "5531000000000@s.whatsapp.net")])
def test_it_files_a_message_with_a_blanked_chat_id_under_the_unknown_chat(from_me, sender):
    [event] = parse(upsert({"id": "BLANK", "remoteJid": "@s.whatsapp.net", "fromMe": from_me},
                           pushName="Ana")).events
    assert (event.chat_id, event.is_group, event.chat_name) == ("unknown@s.whatsapp.net", False, None)
    assert (event.text, event.sender_id, event.sender_name) == ("hi", sender, "Ana")


# --- numeric statuses: Baileys' codes, except the campaign format's update.status --------
# Baileys' proto.WebMessageInfo.Status (PROVIDERS.md "Status encodings"); the campaign
# seeds (samples/seeds/campaign_messages_update_*.json) use 2 delivered, 3 read.

BAILEYS_STATUS_CODES = [(0, "failed"), (1, "pending"), (2, "sent"), (3, "delivered"),
                        (4, "read"), (5, "played"), ("3", "delivered"), (6, None)]


@pytest.mark.parametrize("code, status", BAILEYS_STATUS_CODES)
def test_a_numeric_status_of_an_update_is_a_baileys_code(code, status):
    result = parse(envelope("messages.update", {"keyId": "N", "status": code}))
    assert result.events == ([StatusEvent(message_id="N", status=status)] if status else [])


@pytest.mark.parametrize("code, status", BAILEYS_STATUS_CODES)
def test_a_numeric_initial_status_of_a_message_is_a_baileys_code(code, status):
    [event] = parse(upsert({"id": "M", "remoteJid": "5511@s.whatsapp.net"}, status=code)).events
    assert event.status == status


@pytest.mark.parametrize("code, status", [(0, "failed"), (1, "pending"), (2, "delivered"), (3, "read")])
def test_a_numeric_status_in_the_campaign_update_format_is_a_campaign_code(code, status):
    result = parse(envelope("messages.update", {
        "key": {"id": "C", "remoteJid": "5511@s.whatsapp.net", "fromMe": True}, "update": {"status": code}}))
    assert result.events == [StatusEvent(message_id="C", status=status, chat_id="5511@s.whatsapp.net")]


@pytest.mark.parametrize("word, status", [("ERROR", "failed"), ("PENDING", "pending"),
                                          ("SERVER_ACK", "sent"), ("DELIVERY_ACK", "delivered"),
                                          ("READ", "read"), ("PLAYED", "played")])
def test_status_words_mean_the_same_wherever_they_are(word, status):
    update = parse(envelope("messages.update", {"keyId": "W", "status": word})).events
    [message] = parse(upsert({"id": "W", "remoteJid": "5511@s.whatsapp.net"}, status=word)).events
    assert (update, message.status) == ([StatusEvent(message_id="W", status=status)], status)


# --- strict detection -------------------------------------------------------------------

@pytest.mark.parametrize("payload, expected", [
    ({"event": "x.y", "data": {}}, False),
    ({"event": "order.created", "data": {"id": 1}, "instance": "shop"}, False),
    ({"event": "message.received", "data": {"key": {"id": "1"}}}, False),
    ({"event": "ORDER_CREATED", "data": {}}, False),
    ({"event": "messages.edited", "data": {}}, True),
    ({"event": "SEND_MESSAGE_UPDATE", "data": {}}, True),
    ({"event": "group-participants.update", "instance": "i", "data": {}}, True),
    # an event newer than KNOWN_EVENTS, in a full Evolution envelope
    ({"event": "newsletter.update", "instance": "i", "data": {}, "server_url": "http://evo",
      "date_time": "2025-09-14T22:52:43.731Z"}, True),
])
def test_it_takes_only_evolution_event_names_or_envelopes(payload, expected):
    assert evolution.detect(payload, ANY) is expected
