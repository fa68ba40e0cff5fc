"""Z-API's side of things: the z-api-token check, sending, media, registration, simulate and import.

The Z-API on the other side is a real HTTP server on 127.0.0.1 (tests/fakes.py)
answering as Z-API's docs say it does.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import requests

import server
from handlers import zapi
from models import WebhookEvent
from storage.fetch import FetchConfig
from storage.http import Limits, url_allowed
from storage.send import SendError, SendTarget, allowed_hosts
from tests.fakes import FakeServer, Reply, file_reply, json_reply
from tests.helpers import load_sample
from tests.media_support import media_of, wait_for_media

ROUTE = "/webhook/zapi/"
INSTANCE = "3E000000000000000000000000000001"
TOKEN = "F5DA3871D271E4965BD44484"  # an instance token: 24 upper-hex characters, as z-api-token carries it
CLIENT_TOKEN = "Fe4f1c2a9b8d7e6f5a4b3c2d1e0f9a8bS"
SEND_PATH = f"/instances/{INSTANCE}/token/{TOKEN}/send-text"
VECTORS = Path(__file__).parent / "media_vectors"


@pytest.fixture
def fake():
    server_ = FakeServer()
    yield server_
    server_.close()


def post(client, payload, headers=None, path=ROUTE):
    return client.post(path, data=json.dumps(payload), content_type="application/json", headers=headers or {})


# --- the z-api-token header ---------------------------------------------------------------------

def with_token(client, token=TOKEN) -> int:
    response = client.post("/api/instances", json={"provider": "zapi", "instance_id": INSTANCE, "api_token": token})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_a_zapi_webhook_must_carry_the_instances_token_once_one_is_stored(client):
    with_token(client)
    sample = load_sample("zapi/received_group_text_real.json")

    missing = post(client, sample)
    assert missing.status_code == 401
    assert missing.get_json()["error"] == "missing z-api-token header (the instance has an api token)"
    wrong = post(client, sample, {"z-api-token": "0B039DE5C908EDAF88346CED"})
    assert wrong.status_code == 403
    assert wrong.get_json()["error"] == "z-api-token does not match the instance's api token"
    for answer in (missing, wrong):
        stored = client.get(f"/api/events/{answer.get_json()['detail']['event_id']}").get_json()
        assert (stored["outcome"], stored["body"], stored["body_hidden"]) == ("rejected", None, "untrusted")
        assert TOKEN not in json.dumps(stored) and "0B039DE5C908EDAF88346CED" not in json.dumps(stored)
    assert client.get("/api/messages").get_json()["items"] == []

    right = post(client, sample, {"z-api-token": TOKEN})
    assert right.status_code == 200 and right.get_json()["outcome"] == "processed"
    headers = client.get(f"/api/events/{right.get_json()['event_id']}").get_json()["headers"]
    assert headers["z-api-token"] == "[redacted]"
    assert TOKEN not in WebhookEvent.get_by_id(right.get_json()["event_id"]).headers


def test_an_instance_without_a_stored_token_is_not_checked_and_the_header_still_not_stored(client):
    answer = post(client, load_sample("zapi/status_received_real.json"), {"z-api-token": "0B039DE5C908EDAF88346CED"})
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "processed"
    row = WebhookEvent.get_by_id(answer.get_json()["event_id"])
    assert json.loads(row.headers)["z-api-token"] == "[redacted]"
    assert "0B039DE5C908EDAF88346CED" not in row.headers
    assert post(client, load_sample("zapi/presence_paused_real.json")).status_code == 200


def test_a_token_stored_or_changed_after_the_instance_was_seen_applies_at_once(client):
    assert post(client, load_sample("zapi/presence_paused_real.json")).status_code == 200  # instance created, cached
    instance_id = next(i["id"] for i in client.get("/api/instances").get_json()["items"])
    assert client.patch(f"/api/instances/{instance_id}", json={"api_token": TOKEN}).status_code == 200
    assert post(client, load_sample("zapi/presence_paused_real.json")).status_code == 401
    assert client.patch(f"/api/instances/{instance_id}", json={"api_token": "NEWTOKEN0123456789ABCDEF"}).status_code == 200
    assert post(client, load_sample("zapi/presence_paused_real.json"), {"z-api-token": TOKEN}).status_code == 403
    assert post(client, load_sample("zapi/presence_paused_real.json"),
                {"Z-API-Token": "NEWTOKEN0123456789ABCDEF"}).status_code == 200
    assert client.patch(f"/api/instances/{instance_id}", json={"api_token": None}).status_code == 200
    assert post(client, load_sample("zapi/presence_paused_real.json")).status_code == 200


def test_the_header_is_checked_on_every_url_a_zapi_payload_comes_on(client):
    with_token(client)
    assert post(client, load_sample("zapi/presence_paused_real.json"), path="/webhook/").status_code == 401
    assert post(client, load_sample("zapi/presence_paused_real.json"), {"z-api-token": TOKEN},
                path="/webhook/").status_code == 200


def test_through_the_served_app_a_gzipped_webhook_is_checked_by_its_header(app, live_server):
    client = app.test_client()
    with_token(client)
    body = gzip.compress(json.dumps(load_sample("zapi/received_group_text_real.json")).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "z-api-token": TOKEN,
               "User-Agent": "Mozilla/5.0 (X11; Ubuntu; Linux i686; rv:111.0) Gecko/20100101 Firefox/111.0"}
    answer = requests.post(live_server + ROUTE + "?wait=1", data=body, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["outcome"] == "processed", answer.text
    headers["z-api-token"] = "0B039DE5C908EDAF88346CED"
    assert requests.post(live_server + ROUTE, data=body, headers=headers, timeout=10).status_code == 403
    del headers["z-api-token"]
    assert requests.post(live_server + ROUTE, data=body, headers=headers, timeout=10).status_code == 401
    [message] = client.get("/api/messages").get_json()["items"]
    assert message["provider_message_id"] == "3EB03F23C9C8956E000D23"


def test_failed_checks_are_counted_as_failed_authentication(client):
    with_token(client)
    post(client, load_sample("zapi/presence_paused_real.json"))
    assert client.get("/status").get_json()["security"]["auth_failures"]["failed"] == 1


# --- sending --------------------------------------------------------------------------------------

def target(fake: FakeServer, token=TOKEN, settings=None, read_timeout: float = 5.0) -> SendTarget:
    return SendTarget(base_url=fake.url, token=token, instance=INSTANCE, allowed_hosts=allowed_hosts([fake.url]),
                      limits=Limits(2.0, read_timeout, 256 * 1024),
                      settings={"ZAPI_CLIENT_TOKEN": CLIENT_TOKEN} if settings is None else settings)


def test_send_text_posts_to_the_instance_url_with_the_client_token_and_returns_whatsapps_id(fake):
    fake.serve("POST", SEND_PATH, json_reply({"zaapId": "3999984263738042930CD6ECDE9VDWSA",
                                              "messageId": "D241XXXX732339502B68", "id": "D241XXXX732339502B68"}))
    assert zapi.send_text(target(fake), "5511999990001", "Promoção!") == "D241XXXX732339502B68"
    [hit] = fake.hits("POST", SEND_PATH)
    assert hit.json() == {"phone": "5511999990001", "message": "Promoção!"}
    assert hit.headers["client-token"] == CLIENT_TOKEN
    assert hit.headers["content-type"] == "application/json"


def test_send_text_without_an_account_token_sends_no_client_token_header(fake):
    fake.serve("POST", SEND_PATH, json_reply({"zaapId": "Z", "messageId": "M1", "id": "M1"}))
    assert zapi.send_text(target(fake, settings={}), "5511999990001", "oi") == "M1"
    assert "client-token" not in fake.hits("POST", SEND_PATH)[0].headers


@pytest.mark.parametrize("reply, expected", [
    (json_reply({"error": "Instance not found"}, 404), "Z-API refused the message (HTTP 404): Instance not found"),
    (json_reply({"error": "null not allowed"}), "Z-API refused the message (HTTP 200): null not allowed"),
    (json_reply({"value": False, "message": "phone invalid"}, 400),
     "Z-API refused the message (HTTP 400): phone invalid"),
])
def test_a_refused_send_says_what_zapi_said_and_never_shows_the_token(fake, reply, expected):
    fake.serve("POST", SEND_PATH, reply)
    with pytest.raises(SendError) as raised:
        zapi.send_text(target(fake), "5511999990001", "oi")
    assert str(raised.value) == expected and not raised.value.maybe_sent
    assert TOKEN not in str(raised.value) and CLIENT_TOKEN not in str(raised.value)


def test_an_answer_without_a_message_id_may_have_been_sent(fake):
    fake.serve("POST", SEND_PATH, json_reply({"zaapId": "3999984263738042930CD6ECDE9VDWSA"}))
    with pytest.raises(SendError) as raised:
        zapi.send_text(target(fake), "5511999990001", "oi")
    assert raised.value.maybe_sent and "without a message id" in str(raised.value)


def test_a_send_that_times_out_may_have_gone_out_and_its_error_shows_no_token(fake):
    fake.serve("POST", SEND_PATH, Reply(200, fake.stalled(), {"Content-Type": "application/json"}))
    with pytest.raises(SendError) as raised:
        zapi.send_text(target(fake, read_timeout=0.3), "5511999990001", "oi")
    assert raised.value.maybe_sent and "did not answer in time" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_every_error_text_is_stripped_of_the_token_its_url_carries(fake, monkeypatch):
    def failing(target_, url, headers, body):
        raise SendError(f"refused: {url!r} reads differently to different parsers (Client-Token {CLIENT_TOKEN})")

    monkeypatch.setattr(zapi, "post_json", failing)
    with pytest.raises(SendError) as raised:
        zapi.send_text(target(fake, token="tok/en+1"), "5511999990001", "oi")
    text = str(raised.value)
    assert "tok/en+1" not in text and "tok%2Fen%2B1" not in text and CLIENT_TOKEN not in text
    assert f"/instances/{INSTANCE}/token/[redacted]/send-text" in text


def test_sending_without_an_instance_token_is_refused_before_any_request(fake):
    with pytest.raises(SendError, match="no Z-API instance token"):
        zapi.send_text(target(fake, token=None), "5511999990001", "oi")
    assert fake.requests == []


# --- media ---------------------------------------------------------------------------------------

@pytest.fixture
def media_app(make_app, fake):
    def build(**overrides):
        settings = {"MEDIA_WORKERS": 1, "ZAPI_BASE_URL": fake.url, "MEDIA_RETRY_SECONDS": 0.05,
                    "MEDIA_CONNECT_TIMEOUT": 2.0, "MEDIA_READ_TIMEOUT": 2.0, "MEDIA_LEASE_SECONDS": 5.0}
        settings.update(overrides)
        return make_app(**settings)
    return build


def audio_payload(fake: FakeServer, path: str) -> dict:
    payload = load_sample("zapi/received_audio_group_real.json")
    payload["audio"]["audioUrl"] = fake.url + path
    return payload


def test_a_media_file_is_fetched_from_zapis_direct_url_at_once_without_credentials(media_app, fake):
    audio = (VECTORS / "audio.ogg").read_bytes()
    path = f"/file/temp-file-download/instances/{INSTANCE}/A5B21C9232649A9DC58F98C55829E95F/Gz4PI1==.ogg"
    fake.serve("GET", path, file_reply(audio, "audio/ogg"))
    app = media_app(ZAPI_TOKEN=None, ZAPI_CLIENT_TOKEN=None)  # no Z-API credentials at all: none are needed
    client = app.test_client()
    assert post(client, audio_payload(fake, path)).status_code == 200
    media = wait_for_media(client, media_of(client, "A5B21C9232649A9DC58F98C55829E95F")["id"])
    assert media["state"] == "done", media
    assert media["way"] == "zapi" and media["stored_size"] == len(audio) and media["is_voice"] is True
    assert media["path"].startswith(f"cliente_1/instance_{INSTANCE}/audio/zapi_A5B21C9232649A9DC58F98C55829E95F_"
                                    "20250908_222344")
    assert (Path(app.config["MEDIA_DIR"]) / media["path"]).read_bytes() == audio
    [hit] = fake.hits("GET", path)
    assert "client-token" not in hit.headers and "authorization" not in hit.headers


def test_a_file_zapi_already_deleted_is_expired_with_the_reason(media_app, fake):
    path = "/file/temp-file-download/gone.ogg"
    fake.serve("GET", path, json_reply({"code": "not_found", "message": "File not present"}, 404))
    client = media_app().test_client()
    post(client, audio_payload(fake, path))
    media = wait_for_media(client, media_of(client, "A5B21C9232649A9DC58F98C55829E95F")["id"])
    assert media["state"] == "expired"
    assert "Z-API's file URL answered 404" in media["error"] and "30 days" in media["error"]


def test_a_passing_server_error_is_retried_then_the_file_comes(media_app, fake):
    audio = (VECTORS / "audio.ogg").read_bytes()
    path = "/file/temp-file-download/busy.ogg"
    fake.serve_sequence("GET", path, [lambda: Reply(503, b"busy"), lambda: file_reply(audio, "audio/ogg")])
    client = media_app().test_client()
    post(client, audio_payload(fake, path))
    media = wait_for_media(client, media_of(client, "A5B21C9232649A9DC58F98C55829E95F")["id"])
    assert media["state"] == "done" and media["attempts"] == 2


def test_a_media_without_a_url_says_so(media_app, fake):
    client = media_app().test_client()
    payload = load_sample("zapi/received_audio_group_real.json")
    payload["audio"].update(audioUrl=None, downloadError="could not download")
    post(client, payload)
    media = wait_for_media(client, media_of(client, "A5B21C9232649A9DC58F98C55829E95F")["id"])
    assert media["state"] == "failed" and "the payload has no Z-API file URL" in media["error"]


def test_a_url_on_a_host_nobody_allowed_is_refused(media_app, fake):
    other = FakeServer()  # another port of 127.0.0.1: not ZAPI_BASE_URL's
    try:
        other.serve("GET", "/x.ogg", file_reply(b"OggS", "audio/ogg"))
        client = media_app().test_client()
        payload = load_sample("zapi/received_audio_group_real.json")
        payload["audio"]["audioUrl"] = other.url + "/x.ogg"
        post(client, payload)
        media = wait_for_media(client, media_of(client, "A5B21C9232649A9DC58F98C55829E95F")["id"])
        assert media["state"] == "failed" and "not on port" in media["error"]
        assert other.requests == []
    finally:
        other.close()


def test_zapis_storage_hosts_are_allowed_public_hosts_and_others_are_not(app):
    config = FetchConfig.from_settings(app.config, public_hosts=zapi.PROVIDER.media_hosts)
    allowed = config.allowed_hosts()
    for sample in ("received_audio_group_real.json", "received_video_group_real.json",
                   "received_sticker_group_real.json", "received_document_group_real.json",
                   "received_ptv_fromme_real.json"):
        payload = load_sample(f"zapi/{sample}")
        url = next(value for node in payload.values() if isinstance(node, dict)
                   for key, value in node.items() if key.endswith("Url") and value)
        assert url_allowed(url, allowed), url
    assert not url_allowed("https://f004.backblazeb2.com.evil.example/file/x.ogg", allowed)
    assert not url_allowed("http://f004.backblazeb2.com:8080/file/x.ogg", allowed)


# --- registration ---------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    from config import SECRET_SETTINGS

    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_SETTINGS, "DATABASE_URL", "PUBLIC_URL", "ZAPI_BASE_URL", "PORT", "REGISTER_WEBHOOKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNNEL", "off")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def run(capsys, *argv):
    code = server.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def update_path(kind: str) -> str:
    return f"/instances/{INSTANCE}/token/{TOKEN}/update-webhook-{kind}"


def test_register_sets_every_callback_to_the_one_zapi_url(env, fake, capsys):
    env.setenv("WEBHOOK_TOKEN", "hooktoken-0123456789")
    env.setenv("ZAPI_CLIENT_TOKEN", CLIENT_TOKEN)
    for kind in zapi.WEBHOOK_KINDS:
        fake.serve("PUT", update_path(kind), json_reply({"value": True}))
    assert run(capsys, "instances", "add", "--provider", "zapi", "--instance", INSTANCE, "--token", TOKEN,
               "--base-url", fake.url)[0] == 0
    code, out, err = run(capsys, "register", "--provider", "zapi", "--instance", INSTANCE,
                         "--base-url", "https://hub.example.com/")
    assert code == 0, err
    url = "https://hub.example.com/webhook/zapi/?token=hooktoken-0123456789"
    assert zapi.WEBHOOK_KINDS == ("received-delivery", "delivery", "message-status", "chat-presence", "connected",
                                  "disconnected")
    for kind in zapi.WEBHOOK_KINDS:
        [hit] = fake.hits("PUT", update_path(kind))
        assert hit.json() == {"value": url}
        assert hit.headers["client-token"] == CLIENT_TOKEN
        assert f"zapi {INSTANCE} {kind}: {url}" in out
    assert out.count("-> ok HTTP 200") == 6
    assert TOKEN not in out + err and CLIENT_TOKEN not in out + err


def test_register_refuses_to_give_zapi_an_http_url(env, fake, capsys):
    env.setenv("ZAPI_BASE_URL", fake.url)
    env.setenv("ZAPI_TOKEN", TOKEN)
    code, out, err = run(capsys, "register", "--provider", "zapi", "--instance", INSTANCE,
                         "--base-url", "http://127.0.0.1:5000")
    assert code == 1
    assert out.count("REFUSED HTTP None: not sent: Z-API only calls HTTPS webhook URLs") == 6
    assert fake.requests == []
    assert err.strip() == "zaphook: zapi refused 6 of 6 webhook settings"


@pytest.mark.parametrize("reply", [json_reply({"value": False}), json_reply({"error": "null not allowed"}),
                                   json_reply({"error": "Instance not found"}, 404)])
def test_register_reports_a_refusal_with_zapis_answer(env, fake, capsys, reply):
    env.setenv("ZAPI_BASE_URL", fake.url)
    env.setenv("ZAPI_TOKEN", TOKEN)
    for kind in zapi.WEBHOOK_KINDS:
        fake.serve("PUT", update_path(kind), reply)
    code, out, _ = run(capsys, "register", "--provider", "zapi", "--instance", INSTANCE,
                       "--base-url", "https://hub.example.com")
    assert code == 1 and out.count("REFUSED") == 6
    assert "client-token" not in fake.requests[0].headers  # no ZAPI_CLIENT_TOKEN: none sent


def test_an_unreachable_zapi_gives_one_failed_result_per_kind_without_the_token():
    closed = FakeServer()
    url = closed.url
    closed.close()
    results = zapi.register(url, TOKEN, INSTANCE, {"all": "https://h.example/webhook/zapi/"},
                            settings={"ZAPI_CLIENT_TOKEN": CLIENT_TOKEN})
    assert [result["event"] for result in results] == list(zapi.WEBHOOK_KINDS)
    for result in results:
        assert not result["ok"] and result["status"] is None and "could not connect" in result["answer"]
        assert TOKEN not in json.dumps(result)


# --- simulate and import ---------------------------------------------------------------------------

def test_simulate_posts_zapis_samples(env, capsys, live_server, app):
    code, out, err = run(capsys, "simulate", "--provider", "zapi", "--url", live_server)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 8 and all(line.startswith("zapi ") and "-> processed" in line for line in lines[:7])
    items = {m["provider_message_id"]: m for m in app.test_client().get("/api/messages").get_json()["items"]}
    assert set(items) == {"SIMZAPI0001", "SIMZAPI0002"}
    assert (items["SIMZAPI0002"]["direction"], items["SIMZAPI0002"]["status"]) == ("out", "delivered")
    assert items["SIMZAPI0001"]["chat_id"] == "120363000000000012@g.us"
    state = app.test_client().get("/api/instances").get_json()["items"][0]
    assert (state["provider"], state["connection_state"]) == ("zapi", "disconnected")


def test_an_export_of_a_checked_zapi_webhook_imports_again(env, capsys, tmp_path):
    first = tmp_path / "first"
    env.setenv("DATA_DIR", str(first))
    assert run(capsys, "instances", "add", "--provider", "zapi", "--instance", INSTANCE, "--token", TOKEN)[0] == 0
    app = server.create_app({"DATA_DIR": str(first), "TESTING": True, "MEDIA_WORKERS": 0, "TUNNEL": "off",
                             "CAMPAIGN_SENDER": False, "DATABASE_URL": "sqlite:///" + str(first / "zaphook.db")})
    try:
        answer = post(app.test_client(), load_sample("zapi/received_group_text_real.json"), {"z-api-token": TOKEN})
        assert answer.status_code == 200
    finally:
        app.extensions["zaphook.media"].shutdown()
        app.extensions["zaphook.campaigns"].shutdown()
        app.extensions["zaphook.database"].close_all()
    export = tmp_path / "events.jsonl"
    assert run(capsys, "export", "-o", str(export))[0] == 0
    assert TOKEN not in export.read_text()

    env.setenv("DATA_DIR", str(tmp_path / "second"))
    assert run(capsys, "instances", "add", "--provider", "zapi", "--instance", INSTANCE, "--token", TOKEN)[0] == 0
    code, out, _ = run(capsys, "import", str(export))
    # The header was not stored: import gives the request its instance's stored token again.
    assert code == 0 and out.strip() == "imported 1 requests: 1 processed"
