"""The webhook routes through real HTTP requests: routing, auth and bad input."""

import base64
import gzip
import hashlib
import hmac
import json
import zlib

import pytest

from tests.helpers import load_sample
from models import Message, WebhookEvent

EVOLUTION_TEXT = "evolution/v1_messages.upsert_text_incoming.json"
META_TEXT = "meta/dashboard_test_webhook_text.json"


def last_event() -> WebhookEvent:
    return WebhookEvent.select().order_by(WebhookEvent.id.desc()).first()


@pytest.mark.parametrize("path", [
    "/webhook/", "/webhook", "/webhook/receive-message/", "/webhook/receive-message",
    "/api/webhooks/evolution/", "/api/webhooks/evolution", "/api/webhooks/evolution/messages-upsert",
    "/api/webhooks/evolution/messages-upsert/", "/webhook/messages-upsert",
])
def test_every_webhook_route_accepts_with_or_without_trailing_slash(post_webhook, path):
    response = post_webhook(path, load_sample(EVOLUTION_TEXT))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outcome"] in ("processed", "duplicate")
    assert Message.select().count() == 1


def test_health_is_public_and_says_nothing_else(client):
    response = client.get("/health", headers={"X-Forwarded-For": "8.8.8.8"})
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_each_answer_carries_a_request_id(post_webhook):
    response = post_webhook("/webhook/", load_sample(EVOLUTION_TEXT), headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    assert last_event().request_id == "abc-123"


# --- the front that answers webhook posts before Flask (views/webhooks.WebhookFront) ----------

def test_a_webhook_answer_from_waitress_is_json_with_its_length_and_request_id(live_server):
    import requests

    response = requests.post(f"{live_server}/webhook/", data=SAMPLE_BYTES, timeout=10,
                             headers={"Content-Type": "application/json", "X-Request-Id": "front-1"})
    assert response.status_code == 200 and response.reason == "OK"
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.headers["X-Request-Id"] == "front-1"
    assert response.json()["outcome"] == "stored" and response.json()["event_id"] == last_event().id


def test_a_webhook_post_writes_one_access_log_line_like_every_other_request(post_webhook, caplog):
    with caplog.at_level("INFO", logger="zaphook.access"):
        post_webhook("/webhook/", load_sample(EVOLUTION_TEXT), headers={"X-Request-Id": "front-2"})
    lines = [record.getMessage() for record in caplog.records if record.name == "zaphook.access"]
    assert len(lines) == 1
    assert lines[0].startswith("rid=front-2 POST /webhook/ provider=evolution kind=message outcome=processed "
                               "status=200 ms=")


def test_an_unexpected_error_while_receiving_is_a_json_500_with_the_request_id(client, monkeypatch, caplog):
    from ingest import Pipeline

    def broken(self, incoming):
        raise RuntimeError("a bug in the pipeline")

    monkeypatch.setattr(Pipeline, "receive", broken)
    with caplog.at_level("ERROR", logger="views.webhooks"):
        response = client.post("/webhook/", data=SAMPLE_BYTES, headers={"X-Request-Id": "front-3"},
                               content_type="application/json")
    assert response.status_code == 500
    assert response.get_json()["code"] == "error.internal"
    assert response.get_json()["detail"] == {"request_id": "front-3"}
    assert any("rid=front-3" in record.getMessage() and record.exc_info for record in caplog.records)


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/webhook/x/y", 404),           # no webhook route has two segments after it
    ("POST", "/webhookx", 404),
    ("POST", "/api/webhooks/nowhere/", 404),
    ("PUT", "/webhook/", 405),                # not a POST: Flask answers
    ("POST", "/api/events/1/replay", 404),   # another route's POST: Flask's (no such event)
])
def test_what_is_not_a_webhook_post_is_left_to_flask(client, method, path, status):
    response = client.open(path, method=method, data=b"{}", content_type="application/json")
    assert response.status_code == status
    assert "error" in response.get_json()
    assert WebhookEvent.select().count() == 0


def test_a_repeated_query_parameter_counts_by_its_first_value(token_client):
    accepted = token_client.post("/webhook/?token=the-webhook-token-0123&token=wrong", data=SAMPLE_BYTES,
                                 content_type="application/json")
    refused = token_client.post("/webhook/?token=wrong&token=the-webhook-token-0123", data=SAMPLE_BYTES,
                                content_type="application/json")
    assert (accepted.status_code, refused.status_code) == (200, 403)


# --- bad input -------------------------------------------------------------------

@pytest.mark.parametrize("raw, error", [
    (b"", "empty body"),
    (b"   \n", "empty body"),
    (b"not json at all", "body is not JSON"),
    (b'{"a": 1', "body is not JSON"),
    (b"\xff\xfe\x00garbage", "not valid UTF-8"),
    (b"[1, 2, 3]", "expected a JSON object, got a JSON array"),
    (b'"text"', "expected a JSON object, got a JSON string"),
    (b"42", "expected a JSON object, got a JSON number"),
    (b"null", "expected a JSON object, got a JSON null"),
    (b'{"a":' * 150 + b"1" + b"}" * 150, "nested deeper than 100 levels"),
    (b'{"a":' * 101 + b"1" + b"}" * 101, "nested deeper than 100 levels"),
    (b'{"x": "' + b"{[" * 200 + b'", "a":' + b'{"a":' * 100 + b"1" + b"}" * 101, "nested deeper than 100 levels"),
    (b"[" * 50000 + b"]" * 50000, "nested deeper than"),
])
def test_a_body_that_is_not_a_json_object_gets_400_and_is_still_recorded(post_webhook, raw, error):
    response = post_webhook("/webhook/", raw=raw)
    assert response.status_code == 400
    body = response.get_json()
    assert error in body["error"]
    event = WebhookEvent.get_by_id(body["detail"]["event_id"])
    assert event.outcome == "rejected"
    assert event.http_status == 400
    assert event.body_bytes() == raw
    assert event.body_size == len(raw)


@pytest.mark.parametrize("raw", [
    b'{"a":' * 100 + b"1" + b"}" * 100,  # 100 levels: the deepest allowed
    b'{"text": "' + b"{[" * 500 + b'", "a": [[{"b": 1}]]}',  # brackets in text are no levels
])
def test_a_json_object_up_to_the_depth_limit_is_taken(post_webhook, raw):
    response = post_webhook("/webhook/", raw=raw)
    assert response.status_code == 200, response.get_json()


# --- compressed bodies (Z-API gzips its webhooks) ---------------------------------------

def _deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(data) + compressor.flush()


SAMPLE_BYTES = json.dumps(load_sample(EVOLUTION_TEXT)).encode()


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress),
    ("GZip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("gzip", lambda data: gzip.compress(data[:40]) + gzip.compress(data[40:])),  # two members
    ("deflate", lambda data: _deflate(data, zlib.MAX_WBITS)),  # zlib-wrapped, as the RFC says
    ("deflate", lambda data: _deflate(data, -zlib.MAX_WBITS)),  # raw, as some clients send it
    ("identity", lambda data: data),
    ("gzip, identity", gzip.compress),
])
def test_a_compressed_body_is_undone_before_it_is_read(post_webhook, encoding, compress):
    response = post_webhook("/webhook/", raw=compress(SAMPLE_BYTES), headers={"Content-Encoding": encoding})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outcome"] == "processed"
    assert last_event().body_bytes() == SAMPLE_BYTES  # stored as JSON text, searchable and replayable
    assert Message.select().count() == 1


def test_a_gzipped_webhook_is_read_when_served_by_waitress(live_server):
    import requests

    response = requests.post(f"{live_server}/webhook/?wait=1", data=gzip.compress(SAMPLE_BYTES), timeout=10,
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "processed"
    assert last_event().body_bytes() == SAMPLE_BYTES


@pytest.mark.parametrize("raw, encoding, status, error", [
    (b"not gzip at all", "gzip", 400, "body is not valid gzip"),
    (gzip.compress(SAMPLE_BYTES)[:-12], "gzip", 400, "body is not valid gzip"),
    (b"\x00\x01\x02", "deflate", 400, "body is not valid deflate"),
    (SAMPLE_BYTES, "br", 415, "unsupported Content-Encoding 'br'"),
    (gzip.compress(b"{" + b" " * (3 * 1024 * 1024) + b"}"), "gzip", 413, "larger than MAX_BODY_MB once its gzip"),
])
def test_a_body_that_cannot_be_undone_gets_a_json_error_and_is_recorded_as_it_came(
        make_app, raw, encoding, status, error):
    client = make_app(MAX_BODY_MB=1).test_client()
    response = client.post("/webhook/", data=raw, content_type="application/json",
                           headers={"Content-Encoding": encoding})
    assert response.status_code == status
    assert error in response.get_json()["error"]
    event = WebhookEvent.get_by_id(response.get_json()["detail"]["event_id"])
    assert (event.outcome, event.http_status) == ("rejected", status)
    assert event.body_bytes() == raw  # what was received, compressed


def test_invalid_utf8_is_kept_byte_for_byte(post_webhook):
    raw = b'{"text": "\xc3\x28"}'
    response = post_webhook("/webhook/", raw=raw)
    assert response.status_code == 400
    event = last_event()
    assert event.body_encoding == "base64"
    assert base64.b64decode(event.body) == raw


def test_an_oversized_body_gets_413_and_its_size_is_recorded(make_app):
    client = make_app(MAX_BODY_MB=0.01).test_client()
    raw = json.dumps({"event": "messages.upsert", "data": {"x": "y" * 20000}}).encode()
    response = client.post("/webhook/", data=raw, content_type="application/json")
    assert response.status_code == 413
    assert "MAX_BODY_MB" in response.get_json()["error"]
    event = last_event()
    assert (event.outcome, event.http_status, event.body_size) == ("rejected", 413, len(raw))


def test_a_five_megabyte_text_is_stored_whole(post_webhook):
    payload = load_sample(EVOLUTION_TEXT)
    payload["data"]["message"]["conversation"] = "x" * (5 * 1024 * 1024)
    response = post_webhook("/webhook/", payload)
    assert response.get_json()["outcome"] == "processed"
    assert len(Message.get().text) == 5 * 1024 * 1024


def test_numbers_sent_as_strings_are_understood(post_webhook):
    payload = load_sample(EVOLUTION_TEXT)
    payload["data"]["messageTimestamp"] = "1746132673"
    response = post_webhook("/webhook/", payload)
    assert response.get_json()["outcome"] == "processed"
    assert Message.get().timestamp.isoformat() == "2025-05-01T20:51:13"


@pytest.mark.parametrize("payload", [
    {"event": "messages.upsert", "instance": "x", "data": None},
    {"event": "messages.upsert", "instance": "x", "data": {"key": None, "message": None}},
    {"event": "messages.upsert", "instance": "x", "data": "text"},
    {"event": "messages.update", "instance": "x", "data": [None, 1, "a"]},
    {"object": "whatsapp_business_account", "entry": None},
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": None}]}]},
    {"event": "webhookReceived", "instanceId": "A", "messageId": None, "chat": None, "msgContent": None},
    {"event": None, "instance": None, "data": {"key": {"id": 5}}},
])
def test_nulls_and_wrong_types_where_objects_belong_never_give_500(post_webhook, payload):
    response = post_webhook("/webhook/", payload)
    assert response.status_code == 200
    assert response.get_json()["outcome"] in ("ignored", "failed", "processed")
    assert last_event().outcome == response.get_json()["outcome"]


def test_a_payload_missing_its_instance_id_is_stored_as_failed(post_webhook):
    payload = load_sample(EVOLUTION_TEXT)
    del payload["instance"]
    del payload["data"]["owner"]
    response = post_webhook("/webhook/", payload)
    assert response.status_code == 200
    body = response.get_json()
    assert body["outcome"] == "failed"
    assert "instance" in body["detail"]
    assert Message.select().count() == 0
    assert json.loads(last_event().body) == payload


def test_an_unknown_shape_is_stored_and_ignored(post_webhook):
    payload = {"hello": "world", "nested": {"a": [1, 2]}}
    response = post_webhook("/webhook/", payload)
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "ignored"
    event = last_event()
    assert (event.outcome, event.provider, event.kind) == ("ignored", "unknown", "unknown")
    assert json.loads(event.body) == payload


def test_an_unknown_event_of_a_known_provider_is_ignored(post_webhook):
    payload = {"event": "labels.edit", "instance": "inst", "data": {"id": "1"}}
    response = post_webhook("/api/webhooks/evolution/", payload)
    assert response.get_json()["outcome"] == "ignored"
    assert last_event().provider == "evolution"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_a_wrong_method_gets_405_as_json(client, method):
    response = client.open("/webhook/", method=method, data=b"{}")
    assert response.status_code == 405
    assert "error" in response.get_json()


def test_a_plain_get_on_a_webhook_route_gets_405(client):
    response = client.get("/webhook/")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_an_unknown_route_gets_404_as_json(client):
    response = client.post("/nowhere", data=b"{}")
    assert response.status_code == 404
    assert response.get_json()["error"]


# --- webhook token -------------------------------------------------------------------

@pytest.fixture
def token_client(make_app):
    return make_app(WEBHOOK_TOKEN="the-webhook-token-0123").test_client()


def test_a_missing_webhook_token_gets_401_and_is_recorded(token_client):
    raw = json.dumps(load_sample(EVOLUTION_TEXT)).encode()
    response = token_client.post("/webhook/", data=raw, content_type="application/json")
    assert response.status_code == 401
    assert "missing webhook token" in response.get_json()["error"]
    event = last_event()
    assert (event.outcome, event.http_status) == ("rejected", 401)
    assert event.body_encoding == "untrusted"
    assert event.body_bytes() == raw[:4096]
    assert Message.select().count() == 0
    replay = token_client.post(f"/api/events/{event.id}/replay")
    assert replay.status_code == 409
    assert Message.select().count() == 0


def test_a_wrong_webhook_token_gets_403(token_client):
    response = token_client.post("/webhook/?token=nope", json=load_sample(EVOLUTION_TEXT))
    assert response.status_code == 403
    assert "the-webhook-token" not in response.get_data(as_text=True)
    assert Message.select().count() == 0


@pytest.mark.parametrize("where", ["query", "header", "bearer"])
def test_the_right_webhook_token_is_accepted_from_query_header_or_bearer(token_client, where):
    kwargs = {
        "query": {"query_string": {"token": "the-webhook-token-0123"}},
        "header": {"headers": {"X-Webhook-Token": "the-webhook-token-0123"}},
        "bearer": {"headers": {"Authorization": "Bearer the-webhook-token-0123"}},
    }[where]
    response = token_client.post("/webhook/", json=load_sample(EVOLUTION_TEXT), **kwargs)
    assert response.status_code == 200
    assert Message.select().count() == 1
    stored = json.loads(last_event().headers)
    assert "the-webhook-token-0123" not in json.dumps(stored)


# --- Meta: signature and verification ------------------------------------------------

@pytest.fixture
def meta_client(make_app):
    return make_app(META_APP_SECRET="meta-app-secret", META_VERIFY_TOKEN="verify-me-please").test_client()


def sign(raw: bytes, secret: str = "meta-app-secret") -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def test_a_correctly_signed_meta_webhook_is_accepted(meta_client):
    raw = json.dumps(load_sample(META_TEXT), ensure_ascii=True).encode()
    response = meta_client.post("/webhook/", data=raw, content_type="application/json",
                                headers={"X-Hub-Signature-256": sign(raw)})
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "processed"


def test_a_meta_webhook_without_signature_gets_401(meta_client):
    response = meta_client.post("/webhook/", json=load_sample(META_TEXT))
    assert response.status_code == 401
    assert last_event().outcome == "rejected"
    assert Message.select().count() == 0


def test_a_meta_webhook_with_a_bad_signature_gets_403(meta_client):
    raw = json.dumps(load_sample(META_TEXT)).encode()
    response = meta_client.post("/webhook/", data=raw, content_type="application/json",
                                headers={"X-Hub-Signature-256": sign(raw + b" ")})
    assert response.status_code == 403
    assert Message.select().count() == 0


def test_other_providers_are_not_asked_for_a_meta_signature(meta_client):
    response = meta_client.post("/webhook/", json=load_sample(EVOLUTION_TEXT))
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/webhook/", "/webhook/receive-message", "/api/webhooks/evolution/"])
def test_meta_verification_echoes_the_challenge_when_the_token_matches(meta_client, path):
    response = meta_client.get(path, query_string={
        "hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "verify-me-please"})
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "1158201444"
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize("token", ["wrong", "", "verify-me-pleas"])
def test_meta_verification_is_refused_with_a_wrong_token(meta_client, token):
    response = meta_client.get("/webhook/", query_string={
        "hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": token})
    assert response.status_code == 403


def test_meta_verification_is_refused_when_no_verify_token_is_configured(client):
    response = client.get("/webhook/", query_string={
        "hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""})
    assert response.status_code == 403


# --- unknown instances ----------------------------------------------------------------

def test_unknown_instances_are_refused_when_not_allowed(make_app):
    client = make_app(ALLOW_UNKNOWN_INSTANCES=False).test_client()
    response = client.post("/webhook/", json=load_sample(EVOLUTION_TEXT))
    assert response.status_code == 403
    assert "unknown instance 'tigo1'" in response.get_json()["error"]
    event = last_event()
    assert (event.outcome, event.provider) == ("rejected", "evolution")
    assert json.loads(event.body)["instance"] == "tigo1"
    assert Message.select().count() == 0


# --- the tunnel rule -------------------------------------------------------------------

TUNNELLED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("path", ["/status", "/test", "/api/events", "/api/messages", "/api/instances"])
def test_through_the_tunnel_only_webhooks_exist(client, path):
    assert client.get(path).status_code == 200
    response = client.get(path, headers=TUNNELLED)
    assert response.status_code == 404
    assert response.get_json() == {"error": "not found", "detail": None, "code": "error.not_found", "params": {}}


def test_a_remote_address_is_treated_like_the_tunnel(client):
    response = client.get("/status", environ_base={"REMOTE_ADDR": "192.168.0.10"})
    assert response.status_code == 404


def test_webhooks_work_through_the_tunnel(client):
    response = client.post("/webhook/", json=load_sample(EVOLUTION_TEXT), headers=TUNNELLED)
    assert response.status_code == 200


def test_the_admin_token_opens_the_api_through_the_tunnel(make_app):
    client = make_app(ADMIN_TOKEN="admin-token-0123456789").test_client()
    assert client.get("/status", headers=TUNNELLED).status_code == 404
    wrong = dict(TUNNELLED, Authorization="Bearer admin-token-wrong")
    assert client.get("/status", headers=wrong).status_code == 404
    right = dict(TUNNELLED, Authorization="Bearer admin-token-0123456789")
    assert client.get("/status", headers=right).status_code == 200


# --- Evolution's "webhook by events" quirks ----------------------------------------------

def test_an_event_suffix_appended_after_the_token_is_understood(token_client):
    payload = load_sample(EVOLUTION_TEXT)
    del payload["event"]  # the event name comes from the URL only
    response = token_client.post("/api/webhooks/evolution/?token=the-webhook-token-0123/messages-upsert",
                                 json=payload)
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "processed"
    assert Message.select().count() == 1


def test_a_double_slash_before_the_event_suffix_is_not_redirected(post_webhook):
    response = post_webhook("/api/webhooks/evolution//messages-upsert", load_sample(EVOLUTION_TEXT))
    assert response.status_code == 200
    assert last_event().route == "/api/webhooks/evolution/messages-upsert"


def test_head_on_a_webhook_route_records_nothing(client):
    response = client.head("/webhook/")
    assert response.status_code == 405
    assert WebhookEvent.select().count() == 0


# --- payloads from real traffic that used to fail ----------------------------------------------------

def evolution_envelope(event: str, data) -> dict:
    """Evolution's envelope (PROVIDERS.md section 1, "Envelope")."""
    return {"event": event, "instance": "shop", "data": data, "sender": "5531000000000@s.whatsapp.net",
            "server_url": "http://evolution:8080", "date_time": "2025-09-14T22:52:43.731Z", "apikey": None}


def read_event(client, answer: dict) -> dict:
    return client.get(f"/api/events/{answer['event_id']}").get_json()


def api_messages(client) -> list:
    return client.get("/api/messages").get_json()["items"]


def test_an_edited_event_that_is_a_disappearing_message_setting_is_ignored(client, post_webhook):
    # messages.edited carries the protocolMessage itself (EVO2 BS:1094-1106); type from Baileys' proto.
    payload = evolution_envelope("messages.edited", {
        "key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "3EB0EPH"},
        "type": "EPHEMERAL_SETTING", "ephemeralExpiration": 604800})
    answer = post_webhook("/webhook/", payload).get_json()
    assert (answer["outcome"], answer["provider"]) == ("ignored", "evolution")
    event = read_event(client, answer)
    assert (event["outcome"], event["provider"], event["event_name"]) == ("ignored", "evolution", "messages.edited")
    assert "protocol message is not an edit: EPHEMERAL_SETTING" in event["error"]
    assert api_messages(client) == []


def test_an_edit_of_our_message_in_send_message_update_changes_its_text(client, post_webhook):
    key = {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": True, "id": "3EB0OURS"}
    post_webhook("/webhook/", evolution_envelope("send.message", {
        "key": key, "message": {"conversation": "preço: 10"}, "messageType": "conversation",
        "messageTimestamp": 1746132673, "status": "PENDING"}))
    edit = {"key": {**key, "id": "3EB0EDIT"}, "messageTimestamp": 1746132700, "message": {"protocolMessage": {
        "key": key, "type": "MESSAGE_EDIT", "editedMessage": {"conversation": "preço: 12"},
        "timestampMs": "1746132700000"}}}
    answer = post_webhook("/webhook/", evolution_envelope("send.message.update", edit)).get_json()
    assert (answer["outcome"], answer["kind"]) == ("processed", "message_edit")
    [message] = api_messages(client)
    assert (message["provider_message_id"], message["text"]) == ("3EB0OURS", "preço: 12")


def test_another_gateways_dotted_event_is_ignored_not_failed(client, post_webhook):
    payload = {"event": "order.created", "data": {"id": 7, "total": "12.50"}}
    answer = post_webhook("/webhook/", payload).get_json()
    assert (answer["outcome"], answer["provider"]) == ("ignored", "unknown")
    event = read_event(client, answer)
    assert (event["outcome"], event["provider"], event["kind"]) == ("ignored", "unknown", "unknown")


def test_a_message_whose_chat_id_was_blanked_is_stored_under_the_unknown_chat(client, post_webhook):
    payload = load_sample(EVOLUTION_TEXT)
    payload["data"]["key"]["remoteJid"] = "@s.whatsapp.net"
    answer = post_webhook("/webhook/", payload).get_json()
    assert (answer["outcome"], answer["kind"]) == ("processed", "message")
    assert read_event(client, answer)["outcome"] == "processed"
    [message] = api_messages(client)
    assert (message["provider_message_id"], message["chat_id"], message["text"]) == \
        ("3EB03E3CA617ADA52AEA79", "unknown@s.whatsapp.net", "hola - text")


def test_a_status_post_is_stored_with_its_author(client, post_webhook):
    answer = post_webhook("/webhook/", evolution_envelope("messages.upsert", {
        "key": {"remoteJid": "status@broadcast", "fromMe": False, "id": "3A0STATUS",
                "participant": "5511888888888@s.whatsapp.net"},
        "pushName": "Bia", "message": {"conversation": "bom dia"}, "messageType": "conversation",
        "messageTimestamp": 1746132673})).get_json()
    assert answer["outcome"] == "processed"
    [message] = api_messages(client)
    assert (message["chat_id"], message["sender_id"], message["sender_name"]) == \
        ("status@broadcast", "5511888888888@s.whatsapp.net", "Bia")
