from datetime import datetime

import pytest

from handlers.base import DeleteEvent, EditEvent, MediaDescriptor, MessageEvent, PayloadError
from handlers.proto import (
    MAX_WRAPPER_DEPTH, MessageContent, bytes_text, message_events, parse_content,
    web_message_events,
)

IMAGE = {
    "url": "https://mmg.whatsapp.net/v/t62.7118-24/1.enc",
    "mimetype": "image/jpeg",
    "fileSha256": "Pjic70EpZOCollw6/AdUWDfchPg1W5NOBcwyCSHEsi8=",
    "fileLength": "76970",
    "height": 1280,
    "width": 720,
    "mediaKey": "ZWyfNNPQQ5+oiCTLq+utoIOxyzv3GQvLe5nV+VwRZZA=",
    "fileEncSha256": "pQtHT6TXqO91WlgiFtP+lSqLMsfjSn/sd6yds8LUHdw=",
    "directPath": "/v/t62.7118-24/1.enc",
    "caption": "look",
    "contextInfo": {"stanzaId": "QUOTED1", "isForwarded": True},
}


def test_it_reads_a_conversation_as_text():
    content = parse_content({"conversation": "hola"})
    assert content == MessageContent(type="text", raw_type="conversation", text="hola")


def test_it_reads_an_extended_text_with_its_quote_and_forward():
    content = parse_content({"extendedTextMessage": {
        "text": "reply", "contextInfo": {"stanzaId": "ABC", "isForwarded": True}}})
    assert (content.type, content.raw_type, content.text) == ("text", "extendedTextMessage", "reply")
    assert content.quoted_message_id == "ABC"
    assert content.forwarded is True


def test_it_takes_the_quote_from_the_fallback_context_when_the_node_has_none():
    content = parse_content({"conversation": "hi"}, context_info={"stanzaId": "Q9"})
    assert content.quoted_message_id == "Q9"


def test_it_reads_every_media_field_of_an_image():
    content = parse_content({"imageMessage": IMAGE})
    assert content.type == "image"
    assert content.raw_type == "imageMessage"
    assert content.caption == "look"
    assert content.text is None
    assert content.quoted_message_id == "QUOTED1"
    assert content.forwarded is True
    assert content.media == MediaDescriptor(
        media_type="image",
        mimetype="image/jpeg",
        file_length=76970,
        media_key="ZWyfNNPQQ5+oiCTLq+utoIOxyzv3GQvLe5nV+VwRZZA=",
        direct_path="/v/t62.7118-24/1.enc",
        url="https://mmg.whatsapp.net/v/t62.7118-24/1.enc",
        file_sha256="Pjic70EpZOCollw6/AdUWDfchPg1W5NOBcwyCSHEsi8=",
        file_enc_sha256="pQtHT6TXqO91WlgiFtP+lSqLMsfjSn/sd6yds8LUHdw=",
        caption="look",
        width=720,
        height=1280,
    )


def test_it_marks_a_ptt_audio_as_a_voice_note():
    media = parse_content({"audioMessage": {"ptt": True, "seconds": "19"}}).media
    assert (media.media_type, media.is_voice, media.seconds) == ("audio", True, 19)


def test_it_marks_an_animated_sticker():
    media = parse_content({"stickerMessage": {"isAnimated": True, "mimetype": "image/webp"}}).media
    assert (media.media_type, media.is_animated, media.mimetype) == ("sticker", True, "image/webp")


def test_it_reads_a_round_video_note_as_video():
    assert parse_content({"ptvMessage": {"seconds": 5}}).type == "video"


@pytest.mark.parametrize("wrapper", [
    "ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension",
])
def test_it_unwraps_wrapper_messages(wrapper):
    content = parse_content({wrapper: {"message": {"imageMessage": IMAGE}}})
    assert content.type == "image"
    assert content.raw_type == "imageMessage"
    assert content.edited is False


def test_it_unwraps_nested_wrappers():
    content = parse_content({"ephemeralMessage": {"message": {
        "viewOnceMessageV2": {"message": {"videoMessage": {"seconds": 3}}}}}})
    assert (content.type, content.media.seconds) == ("video", 3)


def test_it_unwraps_a_document_with_caption():
    content = parse_content({"documentWithCaptionMessage": {"message": {"documentMessage": {
        "fileName": "report.pdf", "mimetype": "application/pdf", "caption": "Q3 numbers",
        "fileLength": {"low": 2048, "high": 0, "unsigned": True}}}}})
    assert content.type == "document"
    assert content.raw_type == "documentMessage"
    assert content.caption == "Q3 numbers"
    assert (content.media.file_name, content.media.file_length) == ("report.pdf", 2048)


def test_it_unwraps_an_edited_message_and_marks_it_edited():
    content = parse_content({"editedMessage": {"message": {"conversation": "fixed"}}})
    assert (content.type, content.text, content.edited) == ("text", "fixed", True)


def test_it_stops_unwrapping_at_a_safe_depth():
    message = {"conversation": "deep"}
    for _ in range(MAX_WRAPPER_DEPTH + 5):
        message = {"ephemeralMessage": {"message": message}}
    assert parse_content(message).type == "unknown"


def test_it_ignores_sibling_keys_that_are_not_content():
    content = parse_content({
        "messageContextInfo": {"deviceListMetadataVersion": 2},
        "senderKeyDistributionMessage": {"groupId": "1@g.us"},
        "mediaUrl": "https://s3.example/file.ogg",
        "conversation": "hi",
    })
    assert (content.type, content.raw_type, content.text) == ("text", "conversation", "hi")


def test_it_reads_betzaps_nested_conversation_message():
    content = parse_content({"conversationMessage": {"conversation": "Texto"}})
    assert (content.type, content.text) == ("text", "Texto")


def test_it_reads_a_location():
    content = parse_content({"locationMessage": {
        "degreesLatitude": -23.55, "degreesLongitude": "-46.63", "name": "Paulista"}})
    assert (content.type, content.latitude, content.longitude, content.location_name) == \
        ("location", -23.55, -46.63, "Paulista")


def test_it_reads_a_live_location():
    content = parse_content({"liveLocationMessage": {
        "degreesLatitude": 1.5, "degreesLongitude": 2.5, "caption": "on my way"}})
    assert (content.type, content.latitude, content.caption) == ("location", 1.5, "on my way")


def test_it_reads_a_contact_card():
    content = parse_content({"contactMessage": {"displayName": "Ana", "vcard": "BEGIN:VCARD"}})
    assert content.type == "contact"
    assert content.contacts == [{"name": "Ana", "vcard": "BEGIN:VCARD"}]


def test_it_reads_several_contact_cards():
    content = parse_content({"contactsArrayMessage": {"displayName": "2 contacts", "contacts": [
        {"displayName": "Ana", "vcard": "A"}, {"displayName": "Bia", "vcard": "B"}, "junk"]}})
    assert content.contacts == [
        {"name": "Ana", "vcard": "A"}, {"name": "Bia", "vcard": "B"}, {"name": None, "vcard": None}]


def test_it_reads_a_reaction():
    content = parse_content({"reactionMessage": {"key": {"id": "TARGET"}, "text": "👍"}})
    assert (content.type, content.reaction_to, content.reaction_emoji) == ("reaction", "TARGET", "👍")


def test_it_keeps_an_empty_reaction_which_removes_one():
    content = parse_content({"reactionMessage": {"key": {"id": "TARGET"}, "text": ""}})
    assert content.reaction_emoji == ""


@pytest.mark.parametrize("message, text, selected", [
    ({"buttonsResponseMessage": {"selectedButtonId": "b1", "selectedDisplayText": "Yes"}},
     "Yes", "b1"),
    ({"listResponseMessage": {"title": "Pizza", "singleSelectReply": {"selectedRowId": "r2"}}},
     "Pizza", "r2"),
    ({"templateButtonReplyMessage": {"selectedId": "t3", "selectedDisplayText": "Stop"}},
     "Stop", "t3"),
    ({"interactiveResponseMessage": {"body": {"text": "Menu"}, "nativeFlowResponseMessage": {
        "name": "single_select", "paramsJson": "{\"id\": \"n4\"}"}}}, "Menu", "n4"),
    ({"interactiveResponseMessage": {"body": {"text": "Menu"}, "nativeFlowResponseMessage": {
        "paramsJson": "{not json"}}}, "Menu", None),
])
def test_it_reads_button_and_list_replies_as_interactive(message, text, selected):
    content = parse_content(message)
    assert (content.type, content.text, content.interactive_id) == ("interactive", text, selected)


@pytest.mark.parametrize("key", ["pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3"])
def test_it_reads_a_poll_with_its_question(key):
    content = parse_content({key: {"name": "Lunch?", "options": [{"optionName": "Yes"}]}})
    assert (content.type, content.text, content.raw_type) == ("poll", "Lunch?", key)


@pytest.mark.parametrize("key, expected", [
    ("pollUpdateMessage", "pollUpdate"), ("protocolMessage", "protocol"), ("callLog", "callLog"),
])
def test_it_names_unknown_content_after_its_key(key, expected):
    content = parse_content({key: {"anything": 1}})
    assert (content.type, content.raw_type) == (expected, key)


@pytest.mark.parametrize("message", [None, {}, [], "text", {"messageContextInfo": {}}])
def test_it_gives_unknown_for_empty_content(message):
    assert parse_content(message) == MessageContent()


def test_it_copies_a_blob_placeholder_of_evolutions_base64():
    blob = {"$blob": "inbox/ab.bin", "size": 41589, "sha256": "ab"}
    media = parse_content({"audioMessage": {"ptt": True}, "base64": blob}).media
    assert media.inline_blob == blob
    assert media.inline_size is None


def test_it_measures_a_raw_base64_string():
    media = parse_content({"audioMessage": {}, "base64": "T2dnUw=="}).media
    assert (media.inline_size, media.inline_blob) == (8, None)


def test_it_uses_evolutions_s3_media_url_only_when_there_is_no_url():
    without = parse_content({"imageMessage": {}, "mediaUrl": "https://s3.example/a.jpg"})
    with_url = parse_content({"imageMessage": {"url": "https://mmg/a.enc"},
                              "mediaUrl": "https://s3.example/a.jpg"})
    assert without.media.url == "https://s3.example/a.jpg"
    assert with_url.media.url == "https://mmg/a.enc"


def test_it_reads_buffers_serialised_as_objects_to_base64():
    assert bytes_text({"0": 1, "1": 2, "10": 11, "2": 3, "3": 4, "4": 5, "5": 6, "6": 7,
                       "7": 8, "8": 9, "9": 10}) == "AQIDBAUGBwgJCgs="
    assert bytes_text({"type": "Buffer", "data": [1, 2, 3]}) == "AQID"
    assert bytes_text({"0": 300}) is None
    assert bytes_text({"a": 1}) is None
    assert parse_content({"imageMessage": {"mediaKey": {"0": 255}}}).media.media_key == "/w=="


def test_it_reads_the_original_systems_plain_text_content():
    content = parse_content({"type": "text", "text": "Preciso de ajuda!"})
    assert content == MessageContent(type="text", raw_type="text", text="Preciso de ajuda!")


def test_it_reads_plain_media_content():
    content = parse_content({"type": "image", "url": "https://x/a.jpg", "caption": "c"})
    assert content.type == "image"
    assert content.media == MediaDescriptor(media_type="image", url="https://x/a.jpg", caption="c")


def _events(content, **overrides):
    fields = dict(message_id="M1", chat_id="5511@s.whatsapp.net", from_me=False,
                  event_name="messages.upsert", timestamp=datetime(2025, 1, 1))
    fields.update(overrides)
    return message_events(content, **fields)


def test_message_events_names_a_one_to_one_chat_after_the_sender():
    [event] = _events(parse_content({"conversation": "hi"}), sender_name="Ana")
    assert event == MessageEvent(
        message_id="M1", chat_id="5511@s.whatsapp.net", from_me=False, type="text",
        raw_type="conversation", text="hi", timestamp=datetime(2025, 1, 1),
        chat_name="Ana", sender_name="Ana", event_name="messages.upsert")


def test_message_events_does_not_name_a_chat_after_our_own_name_or_a_group_member():
    [own] = _events(parse_content({"conversation": "x"}), from_me=True, sender_name="Me")
    [group] = _events(parse_content({"conversation": "x"}), is_group=True, sender_name="Ana")
    assert own.chat_name is None
    assert group.chat_name is None


def test_message_events_turns_a_revoke_into_a_delete_event():
    content = parse_content({"protocolMessage": {
        "key": {"remoteJid": "5511@s.whatsapp.net", "fromMe": True, "id": "GONE"}, "type": "REVOKE"}})
    assert _events(content) == [DeleteEvent(
        message_id="GONE", timestamp=datetime(2025, 1, 1), chat_id="5511@s.whatsapp.net")]


def test_message_events_turns_an_edit_inside_edited_message_into_an_edit_event():
    content = parse_content({"editedMessage": {"message": {"protocolMessage": {
        "key": {"id": "ORIGINAL"}, "type": 14,
        "editedMessage": {"extendedTextMessage": {"text": "new text"}},
        "timestampMs": "1746132673123"}}}})
    assert _events(content) == [EditEvent(
        message_id="ORIGINAL", text="new text", timestamp=datetime(2025, 5, 1, 20, 51, 13),
        chat_id="5511@s.whatsapp.net")]


def test_message_events_keeps_other_protocol_messages_as_messages():
    content = parse_content({"protocolMessage": {"type": "EPHEMERAL_SETTING", "key": {"id": "X"}}})
    [event] = _events(content)
    assert (event.type, event.raw_type) == ("protocol", "protocolMessage")


@pytest.mark.parametrize("missing, error", [("message_id", "missing message id"),
                                            ("chat_id", "missing chat id")])
def test_message_events_refuses_a_message_without_ids(missing, error):
    with pytest.raises(PayloadError, match=error):
        _events(parse_content({"conversation": "x"}), **{missing: None})


def test_web_message_events_falls_back_on_the_message_type_for_empty_content():
    [event] = web_message_events(
        {"key": {"id": "S1", "remoteJid": "5511@s.whatsapp.net"}, "message": None,
         "messageType": "ciphertext"},
        event_name="messages.upsert", default_from_me=False)
    assert (event.type, event.raw_type) == ("unknown", "ciphertext")


# --- messages with buttons or lists, and their replies ------------------------------
# Field names from Baileys' WAProto/WAProto.proto (ButtonsMessage, ListMessage,
# TemplateMessage, InteractiveMessage and their *Response / *Reply messages).

@pytest.mark.parametrize("message, raw_type, text, selected_id", [
    ({"buttonsMessage": {"contentText": "Escolha uma opção", "footerText": "loja",
                         "buttons": [{"buttonId": "b1", "buttonText": {"displayText": "Sim"}}],
                         "headerType": 1}},
     "buttonsMessage", "Escolha uma opção", None),
    ({"listMessage": {"title": "Menu", "description": "Veja o cardápio", "buttonText": "Abrir",
                      "listType": 1, "sections": [{"title": "S", "rows": [{"rowId": "r1"}]}]}},
     "listMessage", "Veja o cardápio", None),
    ({"listMessage": {"title": "Menu", "buttonText": "Abrir"}}, "listMessage", "Menu", None),
    ({"templateMessage": {"hydratedTemplate": {"hydratedContentText": "Seu pedido saiu",
                                               "hydratedButtons": [{"index": 0}]}}},
     "templateMessage", "Seu pedido saiu", None),
    ({"templateMessage": {"fourRowTemplate": {"content": {"text": "Quatro linhas"}}}},
     "templateMessage", "Quatro linhas", None),
    ({"interactiveMessage": {"header": {"title": "Oferta"}, "body": {"text": "20% off hoje"},
                             "nativeFlowMessage": {"buttons": []}}},
     "interactiveMessage", "20% off hoje", None),
    ({"viewOnceMessage": {"message": {"interactiveMessage": {"body": {"text": "embrulhado"}}}}},
     "interactiveMessage", "embrulhado", None),
    ({"buttonsResponseMessage": {"selectedButtonId": "b1", "selectedDisplayText": "Sim", "type": 1}},
     "buttonsResponseMessage", "Sim", "b1"),
    ({"listResponseMessage": {"title": "Pizza", "listType": 1,
                              "singleSelectReply": {"selectedRowId": "r1"}}},
     "listResponseMessage", "Pizza", "r1"),
    ({"listResponseMessage": {"description": "Pizza grande",
                              "singleSelectReply": {"selectedRowId": "r2"}}},
     "listResponseMessage", "Pizza grande", "r2"),
    ({"templateButtonReplyMessage": {"selectedId": "t1", "selectedDisplayText": "Rastrear",
                                     "selectedIndex": 0}},
     "templateButtonReplyMessage", "Rastrear", "t1"),
    ({"interactiveResponseMessage": {"body": {"text": "Confirmar"}, "nativeFlowResponseMessage": {
        "name": "quick_reply", "paramsJson": "{\"id\": \"ok\"}"}}},
     "interactiveResponseMessage", "Confirmar", "ok"),
])
def test_interactive_messages_and_replies_keep_their_visible_text(message, raw_type, text, selected_id):
    content = parse_content(message)
    assert (content.type, content.raw_type, content.text, content.interactive_id) == \
        ("interactive", raw_type, text, selected_id)


def test_a_lottie_sticker_is_unwrapped_to_its_sticker():
    # Baileys: lottieStickerMessage is a FutureProofMessage around a stickerMessage.
    content = parse_content({"lottieStickerMessage": {"message": {"stickerMessage": {
        "mimetype": "application/was", "isAnimated": True, "isLottie": True, "fileLength": "1234",
        "directPath": "/v/t62.15575-24/1.enc"}}}})
    assert (content.type, content.raw_type) == ("sticker", "stickerMessage")
    assert (content.media.media_type, content.media.is_animated, content.media.file_length) == \
        ("sticker", True, 1234)


def test_message_events_marks_status_posts_and_channels_and_does_not_name_them_after_the_author():
    for chat_id, kind in (("status@broadcast", "status"), ("1203@newsletter", "newsletter")):
        [event] = _events(parse_content({"conversation": "x"}), chat_id=chat_id, sender_name="Ana")
        assert (event.chat_kind, event.chat_name) == (kind, None)
