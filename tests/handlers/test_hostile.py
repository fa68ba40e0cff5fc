"""Hostile and broken payloads: the handlers answer with a result or PayloadError, nothing else."""

import copy
import json
from pathlib import Path

import pytest

from handlers import normalise
from handlers.base import PayloadError, RouteHint

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*/*.json"))

JUNK = [
    None, [], {}, "", "x", 7, -1, 1.5, True, float("nan"), float("inf"), 10**30,
    ["a", {"b": None}], {"0": 300}, {"low": "x", "high": []}, "9" * 5000,
]
HINTS = [RouteHint(), RouteHint("evolution", "messages-upsert"), RouteHint("send-message"),
         RouteHint("disconnect"), RouteHint("chat-presence")]


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, path + (index,))


def _replaced(payload, path, value):
    if not path:
        return value
    payload = copy.deepcopy(payload)
    target = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return payload


def _outcome(payload, hint):
    try:
        return normalise(payload, hint)
    except PayloadError as error:
        return error


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_value_anywhere_in_a_sample_makes_a_handler_crash(sample):
    payload = json.loads(sample.read_text(encoding="utf-8"))
    for path in _paths(payload):
        for junk in JUNK:
            mutated = _replaced(payload, path, junk)
            for hint in HINTS:
                _outcome(mutated, hint)  # anything but PayloadError fails the test


@pytest.mark.parametrize("data", [None, [], "text", 42, [None, "x", 3], {"key": None, "message": []}])
@pytest.mark.parametrize("event", [
    "messages.upsert", "send.message", "messages.update", "messages.delete", "messages.edited",
    "connection.update", "qrcode.updated", "presence.update", "contacts.upsert", "send.message.update",
])
def test_evolution_events_with_odd_data_give_a_result_or_payload_error(event, data):
    _outcome({"event": event, "instance": "i", "data": data}, RouteHint())


def test_deeply_nested_wrappers_do_not_exhaust_the_stack():
    message = {"conversation": "bottom"}
    for _ in range(50_000):
        message = {"ephemeralMessage": {"message": message}}
    result = normalise({"event": "messages.upsert", "instance": "i",
                        "data": {"key": {"id": "D", "remoteJid": "5511@s.whatsapp.net"},
                                 "message": message}})
    assert result.events[0].type == "unknown"


def test_numbers_sent_as_strings_and_strings_sent_as_numbers_are_read():
    result = normalise({"event": "webhookReceived", "instanceId": 12345, "messageId": 987,
                        "fromMe": "false", "isGroup": "0", "chat": {"id": 5511999999999},
                        "moment": "1748896286", "msgContent": {"conversation": 42}})
    [event] = result.events
    assert (result.instance_id, event.message_id, event.chat_id, event.text) == \
        ("12345", "987", "5511999999999@s.whatsapp.net", "42")
    assert event.from_me is False and event.is_group is False
    assert event.timestamp is not None


def test_lists_where_objects_belong_are_treated_as_missing():
    result = normalise({"object": "whatsapp_business_account",
                        "entry": [{"changes": [{"field": "messages", "value": []}]}, [], None]})
    assert (result.provider, result.events) == ("meta", [])
