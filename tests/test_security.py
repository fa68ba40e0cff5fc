import base64
import hashlib
import hmac
import logging
import sys

import pytest

from handlers.meta import verify_signature
from security import (
    REDACTED,
    RedactingFilter,
    check_hmac_signature,
    check_webhook_token,
    is_secret_key,
    redact,
    redact_base64,
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
    failure = verify_signature("app-secret", header, b'{"a":1}')
    assert (failure.status if failure else None) == expected


@pytest.mark.parametrize("header, expected", [
    (hmac.new(b"k", b"body", hashlib.sha512).hexdigest(), None),
    (hmac.new(b"k", b"body", hashlib.sha512).hexdigest().upper(), None),
    (hmac.new(b"k", b"other", hashlib.sha512).hexdigest(), 403),
    ("sha512=" + hmac.new(b"k", b"body", hashlib.sha512).hexdigest(), 403),
    (None, 401),
])
def test_an_unprefixed_sha512_signature_is_checked_too(header, expected):
    failure = check_hmac_signature("k", header, b"body", header_name="X-Webhook-Hmac", algorithm="sha512",
                                   prefixed=False)
    assert (failure.status if failure else None) == expected
    if failure:
        assert "X-Webhook-Hmac" in failure.error


def test_no_signature_secret_lets_requests_in():
    assert check_hmac_signature(None, None, b"x", header_name="X-Hub-Signature-256") is None


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


# --- secrets by name: payload keys, header names, query parameters, free text ----------------

@pytest.mark.parametrize("name", [
    "x-api-key", "X-Api-Key", "X-Auth-Token", "client_secret", "Password", "passwd", "privateKey", "private-key",
    "private_key", "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Hub-Signature-256",
    "webhook_signature", "refresh_token", "access_token", "sessionToken", "session_id", "apiKey", "API_KEY",
    "api key", "apikey", "jwt", "jwtKey", "hmac", "credentials", "mediaKey", "pairingCode", "hub.verify_token",
    "verifyToken", "Client-Token", "messageSecret", "appSecret", "auth", "tokenExpiry",
])
def test_secret_names_are_recognised_whatever_their_case_and_separators(name):
    assert is_secret_key(name)
    assert redact({name: "value-1"}) == {name: REDACTED}


@pytest.mark.parametrize("name", [
    "messageId", "pushName", "status", "text", "fromMe", "instanceId", "remoteJid", "timestamp", "caption",
    "fileSha256", "fileEncSha256", "key", "keyId", "id", "url", "directPath", "jpegThumbnail", "senderKeyHash",
    "conversation", "participant", "author", "mimetype", "instance", "event", "session", "code", "base64",
])
def test_names_of_useful_data_are_not_secrets(name):
    assert not is_secret_key(name)
    assert redact({name: "value-1"}) == {name: "value-1"}


def test_flags_counts_and_nulls_under_secret_names_are_kept_objects_and_lists_are_replaced_whole():
    payload = {"hasApiToken": True, "has_api_token": False, "tokenCount": 3, "apikey": None, "secret": "",
               "mediaKeyTimestamp": 1705684448, "credentials": {"user": "u", "password": "p"},
               "tokens": ["a", "b"], "session": {"name": "default", "jwt": "eyJ.x.y"}}
    assert redact(payload) == {
        "hasApiToken": True, "has_api_token": False, "tokenCount": 3, "apikey": None, "secret": "",
        "mediaKeyTimestamp": 1705684448, "credentials": REDACTED, "tokens": REDACTED,
        "session": {"name": "default", "jwt": REDACTED}}


@pytest.mark.parametrize("text, expected", [
    ("https://x/y?access_token=abc&page=2", "https://x/y?access_token=[redacted]&page=2"),
    ("https://x/y?apiKey=abc", "https://x/y?apiKey=[redacted]"),
    ("https://cdn/x.enc?sig=abc&oe=1", "https://cdn/x.enc?sig=[redacted]&oe=1"),
    ("https://maps/api?key=AIza1&q=x", "https://maps/api?key=[redacted]&q=x"),
    ("https://s3/x?X-Amz-Signature=ab12&X-Amz-Date=2024", "https://s3/x?X-Amz-Signature=[redacted]&X-Amz-Date=2024"),
    ("https://x/y?id=1&page=2", "https://x/y?id=1&page=2"),
    ("postgresql://user:pw-123@db/zaphook", "postgresql://user:[redacted]@db/zaphook"),
    ("apikey=ABC provider=evolution", "apikey=[redacted] provider=evolution"),
    ('{"apiKey": "ABC", "id": "1"}', '{"apiKey": "[redacted]", "id": "1"}'),
    ("{'X-Api-Key': 'ABC', 'ua': 'curl'}", "{'X-Api-Key': '[redacted]', 'ua': 'curl'}"),
    ('{"password": "a\\"b", "x": 1}', '{"password": "[redacted]", "x": 1}'),
    ("Authorization: Bearer abc.def.ghi next", "Authorization: [redacted] next"),
    ("X-Hub-Signature-256: sha256=0a1b", "X-Hub-Signature-256: [redacted]"),
    ('"hasApiToken": true', '"hasApiToken": true'),
    ("token=[redacted] stays", "token=[redacted] stays"),
    ("at 2024-01-19T17:14:08Z, status: read", "at 2024-01-19T17:14:08Z, status: read"),
    ("no pairs here", "no pairs here"),
])
def test_redact_text_masks_values_named_as_secrets(text, expected):
    assert redact_text(text) == expected


def test_redacting_twice_changes_nothing_more():
    text = 'GET /x?token=abc {"apikey": "k"} password=p'
    assert redact_text(redact_text(text)) == redact_text(text)


def test_a_base64_body_is_masked_byte_for_byte_around_its_secrets():
    raw = b'\xff{"apikey": "K1", "t": "configured-1"}\x00'
    masked = base64.b64decode(redact_base64(base64.b64encode(raw).decode(), ["configured-1"]))
    assert masked == b'\xff{"apikey": "[redacted]", "t": "[redacted]"}\x00'
    assert redact_base64("/wA=") == "/wA="
    assert redact_base64("not base64!") == "not base64!"


def test_the_log_filter_masks_pairs_values_and_tracebacks():
    log_filter = RedactingFilter(["configured-secret-1"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "headers %s and %s", (
        {"X-Api-Key": "HEADERKEY"}, "configured-secret-1"), None)
    try:
        raise ValueError('bad payload {"apikey": "PAYLOADKEY"} at https://x/?access_token=URLTOKEN')
    except ValueError:
        record.exc_info = sys.exc_info()
    assert log_filter.filter(record) is True
    text = logging.Formatter().format(record)
    for secret in ("HEADERKEY", "configured-secret-1", "PAYLOADKEY", "URLTOKEN"):
        assert secret not in text
    assert "ValueError: bad payload" in text


@pytest.mark.parametrize("url, label", [
    ("sqlite:////data/zaphook.db", "sqlite:////data/zaphook.db"),
    ("postgresql://zap:pw-1@db:5432/zaphook", "postgresql://zap:[redacted]@db:5432/zaphook"),
    ("postgresql://zap@db/zaphook?sslmode=require&password=pw-2", "postgresql://zap@db/zaphook?sslmode=require&password=[redacted]"),
    ("postgresql://db/zaphook?sslpassword=pw-3", "postgresql://db/zaphook?sslpassword=[redacted]"),
])
def test_status_shows_the_database_url_without_any_password(url, label):
    import status

    assert status.database_label(url) == label
