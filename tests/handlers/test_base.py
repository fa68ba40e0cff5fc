from datetime import datetime

import pytest

from handlers.base import (
    KIND_MESSAGE, KIND_MIXED, KIND_STATUS, ConnectionEvent, KnownAlias, MessageEvent,
    PayloadError, RouteHint, StatusEvent, as_records, build_result, is_alias_jid, lid_alias,
    dotted_event_name, first_text, kind_of, normalize_connection_state,
    normalize_jid, normalize_presence, normalize_status, parse_timestamp,
    require_instance_id, to_bool, to_float, to_int,
)


@pytest.mark.parametrize("raw, expected", [
    ("5511999999999", "5511999999999@s.whatsapp.net"),
    (5511999999999, "5511999999999@s.whatsapp.net"),
    ("+55 (11) 99999-9999", "5511999999999@s.whatsapp.net"),
    ("5511999999999@c.us", "5511999999999@s.whatsapp.net"),
    ("5511999999999@s.whatsapp.net", "5511999999999@s.whatsapp.net"),
    ("5511999999999@S.WHATSAPP.NET", "5511999999999@s.whatsapp.net"),
    ("5511999999999:12@s.whatsapp.net", "5511999999999@s.whatsapp.net"),
    ("5511999999999_1:12@s.whatsapp.net", "5511999999999@s.whatsapp.net"),
    ("5511999999999.0:12@s.whatsapp.net", "5511999999999@s.whatsapp.net"),
    ("120363025246125888@g.us", "120363025246125888@g.us"),
    ("5511999999999-1612345678", "5511999999999-1612345678@g.us"),
    ("208218911133803:3@lid", "208218911133803@lid"),
    ("status@broadcast", "status@broadcast"),
])
def test_normalize_jid_gives_one_form_per_person_or_group(raw, expected):
    assert normalize_jid(raw) == expected


def test_normalize_jid_makes_a_group_of_bare_digits_when_told():
    assert normalize_jid("120363025246125888", is_group=True) == "120363025246125888@g.us"


def test_normalize_jid_replaces_a_lid_by_its_phone_alternative():
    assert normalize_jid("208218911133803@lid", "5511999999999@s.whatsapp.net") == \
        "5511999999999@s.whatsapp.net"


def test_normalize_jid_keeps_a_lid_without_a_phone_alternative():
    assert normalize_jid("208218911133803@lid") == "208218911133803@lid"
    assert normalize_jid("208218911133803@lid", "999@lid") == "208218911133803@lid"


LID, PHONE, OURS = "208218911133803@lid", "5511999999999@s.whatsapp.net", "5531000000000@s.whatsapp.net"


@pytest.mark.parametrize("ids, expected", [
    ((LID, PHONE), KnownAlias(LID, PHONE)),
    ((PHONE, "208218911133803:3@lid"), KnownAlias(LID, PHONE)),
    ((LID, None, "5511999999999@c.us"), KnownAlias(LID, PHONE)),
    ((LID, OURS), None),  # our own number is nobody's alias
    ((LID,), None),
    ((PHONE, "120363025246125888@g.us"), None),
    ((LID, "999@lid"), None),
])
def test_a_lid_alias_needs_a_lid_and_a_phone_that_is_not_ours(ids, expected):
    assert lid_alias(*ids, own_id=OURS) == expected


@pytest.mark.parametrize("jid, expected", [
    (LID, True), ("bsuid:US.13491208655302741918", True),
    (PHONE, False), ("120363025246125888@g.us", False), ("status@broadcast", False), (None, False),
])
def test_an_alias_names_a_person_without_their_number(jid, expected):
    assert is_alias_jid(jid) is expected


@pytest.mark.parametrize("raw", [None, "", "   ", {}, [], True, "@", "x@", "@g.us", "abc@c.us", "--"])
def test_normalize_jid_gives_none_for_what_is_not_an_id(raw):
    assert normalize_jid(raw) is None


@pytest.mark.parametrize("raw, expected", [
    (1746132673, datetime(2025, 5, 1, 20, 51, 13)),
    ("1746132673", datetime(2025, 5, 1, 20, 51, 13)),
    (1746132673.9, datetime(2025, 5, 1, 20, 51, 13)),
    (1746132673123, datetime(2025, 5, 1, 20, 51, 13)),
    ("1746132673123", datetime(2025, 5, 1, 20, 51, 13)),
    (1746132673123456, datetime(2025, 5, 1, 20, 51, 13)),
    ({"low": 1746132673, "high": 0, "unsigned": False}, datetime(2025, 5, 1, 20, 51, 13)),
    ("2025-01-15T10:30:00Z", datetime(2025, 1, 15, 10, 30)),
    ("2025-01-15T10:30:00.250Z", datetime(2025, 1, 15, 10, 30, 0, 250000)),
    ("2025-01-15T07:30:00-03:00", datetime(2025, 1, 15, 10, 30)),
    ("2025-01-15T10:30:00", datetime(2025, 1, 15, 10, 30)),
])
def test_parse_timestamp_reads_every_form_as_naive_utc(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize("raw", [
    None, 0, -5, "", "soon", True, {}, [], {"high": 1}, float("nan"), float("inf"),
    10**400, "9" * 5000, "2025-13-45",
])
def test_parse_timestamp_gives_none_for_anything_else(raw):
    assert parse_timestamp(raw) is None


@pytest.mark.parametrize("raw, expected", [
    ("ERROR", "failed"), ("PENDING", "pending"), ("SERVER_ACK", "sent"),
    ("DELIVERY_ACK", "delivered"), ("READ", "read"), ("PLAYED", "played"),
    ("sent", "sent"), ("delivered", "delivered"), ("failed", "failed"), (" Read ", "read"),
    # the original campaign specification's numeric codes
    (0, "failed"), (1, "pending"), (2, "delivered"), (3, "read"), (4, "played"),
    ("3", "read"), (2.0, "delivered"),
])
def test_normalize_status_maps_words_and_numeric_codes(raw, expected):
    assert normalize_status(raw) == expected


@pytest.mark.parametrize("raw", [None, True, False, 5, -1, "DELETED", "READ_BY_ME", "", {}, []])
def test_normalize_status_gives_none_for_unknown_statuses(raw):
    assert normalize_status(raw) is None


@pytest.mark.parametrize("raw, expected", [
    (7, 7), ("41589", 41589), (" 12 ", 12), ("12.9", 12), (3.7, 3),
    ({"low": 5, "high": 1}, (1 << 32) | 5), (None, None), (True, None), ("x", None),
    (float("nan"), None), (float("inf"), None), ("9" * 5000, None), ("9" * 400 + ".5", None),
])
def test_to_int_reads_numbers_and_refuses_the_rest(raw, expected):
    assert to_int(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    (12.25089, 12.25089), ("-23.5", -23.5), (3, 3.0), ("x", None), (None, None),
    (True, None), (float("nan"), None), ("inf", None), (10**400, None),
])
def test_to_float_reads_finite_numbers_only(raw, expected):
    assert to_float(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    (True, True), (False, False), (1, True), (0, False), ("true", True), ("FALSE", False),
    ("1", True), ("", False), (" sim ", True), ("não", False),
])
def test_to_bool_reads_bools_numbers_and_words(raw, expected):
    assert to_bool(raw) is expected


@pytest.mark.parametrize("raw", [None, "yes please", {}, []])
def test_to_bool_gives_the_default_for_anything_else(raw):
    assert to_bool(raw) is False
    assert to_bool(raw, default=None) is None


@pytest.mark.parametrize("raw, expected", [
    ("composing", "typing"), ("recording", "recording"), ("paused", "paused"),
    ("available", "online"), ("UNAVAILABLE", "offline"), ("dancing", None), (None, None),
])
def test_normalize_presence_maps_baileys_words(raw, expected):
    assert normalize_presence(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("open", "connected"), ("connecting", "connecting"), ("close", "disconnected"),
    ("refused", "disconnected"), ("CONNECTED", "connected"), ("maybe", None), (1, None),
])
def test_normalize_connection_state_maps_evolution_and_plain_words(raw, expected):
    assert normalize_connection_state(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("messages.upsert", "messages.upsert"), ("MESSAGES_UPSERT", "messages.upsert"),
    ("messages-upsert", "messages.upsert"), ("SEND_MESSAGE_UPDATE", "send.message.update"),
    ("", None), (None, None), (3, None),
])
def test_dotted_event_name_normalises_evolution_event_spellings(raw, expected):
    assert dotted_event_name(raw) == expected


def test_route_hint_gives_the_evolution_event_of_its_suffix():
    assert RouteHint("evolution", "messages-upsert").evolution_event == "messages.upsert"
    assert RouteHint("evolution").evolution_event is None


def test_route_hint_says_only_send_message_defaults_to_from_me():
    assert RouteHint("send-message").default_from_me is True
    assert RouteHint("receive-message").default_from_me is False
    assert RouteHint().default_from_me is False


def _message(message_id="m1"):
    return MessageEvent(message_id=message_id, chat_id="1@s.whatsapp.net", from_me=False, type="text")


def test_kind_of_gives_the_single_kind_or_mixed():
    assert kind_of([_message(), _message("m2")]) == KIND_MESSAGE
    assert kind_of([_message(), StatusEvent(message_id="m1", status="read")]) == KIND_MIXED
    assert kind_of([]) is None


def test_build_result_keeps_the_expected_kind_and_a_reason_when_there_are_no_events():
    result = build_result("evolution", "inst", [], "messages.update", empty_kind=KIND_STATUS)
    assert result.kind == KIND_STATUS
    assert result.ignored_reason == "no events in payload"
    assert result.event_name == "messages.update"


def test_build_result_takes_its_kind_from_the_events():
    result = build_result("evolution", "inst", [ConnectionEvent(state="connected")])
    assert result.kind == "connection"
    assert result.ignored_reason is None


def test_require_instance_id_takes_the_first_usable_candidate():
    assert require_instance_id(None, "", "  ", {}, 42, "later") == "42"


def test_require_instance_id_refuses_when_there_is_none():
    with pytest.raises(PayloadError, match="missing instance id"):
        require_instance_id(None, [], "")


def test_first_text_skips_blanks_and_non_strings():
    assert first_text(None, " ", ["x"], "name") == "name"
    assert first_text() is None


def test_as_records_accepts_one_object_or_a_list_of_them():
    assert as_records({"a": 1}) == [{"a": 1}]
    assert as_records([{"a": 1}, "junk", None, {"b": 2}]) == [{"a": 1}, {"b": 2}]
    assert as_records("junk") == []
