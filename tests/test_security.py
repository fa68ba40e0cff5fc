import hashlib
import hmac

import pytest

from security import (
    REDACTED,
    check_meta_signature,
    check_webhook_token,
    is_direct_local,
    redact,
    redact_text,
)

TOKEN = "a-long-webhook-token-123"


@pytest.mark.parametrize("headers, query, expected", [
    ({}, {"token": TOKEN}, None),
    ({"X-Webhook-Token": TOKEN}, {}, None),
    ({"Authorization": f"Bearer {TOKEN}"}, {}, None),
    ({"Authorization": f"bearer   {TOKEN}  "}, {}, None),
    ({}, {}, 401),
    ({"Authorization": "Bearer "}, {}, 401),
    ({"Authorization": "Basic abc"}, {}, 401),
    ({}, {"token": "wrong"}, 403),
    ({"X-Webhook-Token": TOKEN[:-1]}, {}, 403),
    ({}, {"token": TOKEN + "x"}, 403),
])
def test_webhook_token_is_accepted_from_each_place_and_refused_otherwise(headers, query, expected):
    failure = check_webhook_token(TOKEN, headers, query)
    assert (failure.status if failure else None) == expected
    if failure:
        assert TOKEN not in failure.error


def test_no_configured_token_lets_requests_in():
    assert check_webhook_token(None, {}, {}) is None


def _signature(body: bytes, secret: str = "app-secret") -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("header, expected", [
    (_signature(b'{"a":1}'), None),
    (_signature(b'{"a":1}').upper().replace("SHA256=", "sha256="), None),
    (" " + _signature(b'{"a":1}') + " ", None),
    (None, 401),
    ("", 401),
    ("sha256=", 403),
    ("sha1=abc", 403),
    ("garbage", 403),
    (_signature(b'{"a":2}'), 403),
    (_signature(b'{"a":1}', "other-secret"), 403),
    ("sha256=" + "é" * 64, 403),
])
def test_meta_signature_is_checked_on_the_raw_bytes(header, expected):
    failure = check_meta_signature("app-secret", header, b'{"a":1}')
    assert (failure.status if failure else None) == expected


def test_redact_hides_secrets_by_key_by_query_and_by_value():
    payload = {
        "apikey": "0FD36D5D-D230",
        "data": {"message": {"imageMessage": {"mediaKey": "ZWyf", "url": "https://x/y?token=abc&z=1"}}},
        "destination": "https://hook.example/webhook?token=my-secret-value",
        "note": "contains my-configured-secret inside",
        "list": [{"Authorization": "Bearer x"}],
        "qrcode": {"code": "2@abc", "base64": "data:image/png;base64,AAA", "instance": "x"},
        "empty": {"apikey": None},
    }
    cleaned = redact(payload, ["my-configured-secret"])
    assert cleaned["apikey"] == REDACTED
    assert cleaned["data"]["message"]["imageMessage"]["mediaKey"] == REDACTED
    assert cleaned["data"]["message"]["imageMessage"]["url"] == f"https://x/y?token={REDACTED}&z=1"
    assert cleaned["destination"].endswith(f"?token={REDACTED}")
    assert cleaned["note"] == f"contains {REDACTED} inside"
    assert cleaned["list"][0]["Authorization"] == REDACTED
    assert cleaned["qrcode"] == {"code": REDACTED, "base64": REDACTED, "instance": "x"}
    assert cleaned["empty"]["apikey"] is None
    assert payload["apikey"] == "0FD36D5D-D230"  # the original is untouched


def test_redact_text_masks_every_secret_query_parameter():
    assert redact_text("GET /webhook/?hub.verify_token=abc&hub.challenge=1") == \
        f"GET /webhook/?hub.verify_token={REDACTED}&hub.challenge=1"


@pytest.mark.parametrize("addr, headers, local", [
    ("127.0.0.1", {}, True),
    ("::1", {}, True),
    ("127.0.0.5", {}, True),
    ("127.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, False),
    ("127.0.0.1", {"Forwarded": "for=1.2.3.4"}, False),
    ("192.168.1.20", {}, False),
    ("10.0.0.1", {}, False),
    (None, {}, False),
    ("not-an-ip", {}, False),
])
def test_only_direct_loopback_requests_count_as_local(addr, headers, local):
    assert is_direct_local(addr, headers) is local
