"""WAHA's API against a fake WAHA server on 127.0.0.1: sending (a campaign end to end), media files, registration.

The fake answers like WAHA: ``X-Api-Key`` on every call, ``check-exists`` with
the chat id of a number, ``sendText`` with each engine's own message object,
``/api/files/...`` for the files its webhooks link to, and the session's config
at ``/api/sessions/{session}``.
"""

from __future__ import annotations

import copy
import json
import time
from urllib.parse import urlsplit

import pytest
import requests

import cli
import server
from handlers import waha
from storage.http import Limits, entries_for_urls
from storage.send import SendError, SendTarget
from tests.fakes import FakeServer, Recorded, Reply, file_reply, json_reply
from tests.helpers import ServedApp, load_sample, wait_applied, wait_until
from tests.media_support import media_of, post, wait_for_media

pytestmark = pytest.mark.slow

API_KEY = "waha-api-key-0123456789"
HMAC_KEY = "waha-hmac-key-9876543210"
SESSION = "default"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@pytest.fixture
def waha_server():
    server_ = FakeServer()
    yield server_
    server_.close()


@pytest.fixture
def elsewhere():
    """Another server on 127.0.0.1 (another port): where nothing of WAHA's may go."""
    server_ = FakeServer()
    yield server_
    server_.close()


def target_for(fake: FakeServer, token: str | None = API_KEY) -> SendTarget:
    return SendTarget(base_url=fake.url, token=token, instance=SESSION, allowed_hosts=entries_for_urls([fake.url]),
                      limits=Limits(2.0, 2.0, 256 * 1024))


def check_exists(chat_id_of=lambda phone: f"{phone}@c.us", exists=True):
    def answer(request: Recorded) -> Reply:
        if request.headers.get("x-api-key") != API_KEY:
            return json_reply({"message": "Unauthorized", "statusCode": 401}, 401)
        phone = request.query["phone"][0]
        return json_reply({"numberExists": exists, "chatId": chat_id_of(phone) if exists else None})
    return answer


# --- sending -------------------------------------------------------------------------------------------

# What each engine answers to sendText, and the id zaphook keeps (the bare WhatsApp id).
@pytest.mark.parametrize("answer, expected", [
    ({"key": {"remoteJid": "5511999990001@s.whatsapp.net", "fromMe": True, "id": "3EB0N0WEB"},
      "message": {"extendedTextMessage": {"text": "oi"}}, "messageTimestamp": "1738070128", "status": "PENDING"},
     "3EB0N0WEB"),  # NOWEB: Baileys' own object (#760)
    ({"id": "true_5511999990001@c.us_3EB0WEBJS", "body": "oi", "fromMe": True}, "3EB0WEBJS"),
    ({"id": {"fromMe": True, "remote": "5511999990001@c.us", "id": "3EB0OBJ",
             "_serialized": "true_5511999990001@c.us_3EB0OBJ"}}, "3EB0OBJ"),
])
def test_send_text_answers_the_bare_id_of_every_engines_answer(waha_server, answer, expected):
    waha_server.route("GET", "/api/contacts/check-exists", check_exists())
    waha_server.serve("POST", "/api/sendText", json_reply(answer, 201))
    assert waha.send_text(target_for(waha_server), "5511999990001", "oi") == expected
    [sent] = waha_server.hits("POST", "/api/sendText")
    assert sent.json() == {"session": SESSION, "chatId": "5511999990001@c.us", "text": "oi"}
    assert sent.headers["x-api-key"] == API_KEY


def test_send_text_sends_to_the_chat_whatsapp_knows_the_number_by(waha_server):
    # a Brazilian number registered before the ninth digit: WhatsApp knows it without it
    waha_server.route("GET", "/api/contacts/check-exists", check_exists(lambda phone: "551199990001@c.us"))
    waha_server.serve("POST", "/api/sendText", json_reply({"id": "true_551199990001@c.us_3EB0N1NE"}, 201))
    assert waha.send_text(target_for(waha_server), "5511999990001", "oi") == "3EB0N1NE"
    [checked] = waha_server.hits("GET", "/api/contacts/check-exists")
    assert checked.query == {"phone": ["5511999990001"], "session": [SESSION]}
    assert waha_server.hits("POST", "/api/sendText")[0].json()["chatId"] == "551199990001@c.us"


def test_a_number_not_on_whatsapp_is_refused_before_anything_is_sent(waha_server):
    waha_server.route("GET", "/api/contacts/check-exists", check_exists(exists=False))
    with pytest.raises(SendError) as refused:
        waha.send_text(target_for(waha_server), "5511999990009", "oi")
    assert str(refused.value) == "5511999990009 is not on WhatsApp (WAHA's check-exists)"
    assert refused.value.maybe_sent is False and waha_server.hits("POST", "/api/sendText") == []


def test_a_waha_without_check_exists_gets_the_number_at_c_us(waha_server):
    waha_server.serve("POST", "/api/sendText", json_reply({"id": "true_5511999990001@c.us_3EB0OLD"}, 201))
    assert waha.send_text(target_for(waha_server), "5511999990001", "oi") == "3EB0OLD"
    assert waha_server.hits("POST", "/api/sendText")[0].json()["chatId"] == "5511999990001@c.us"


@pytest.mark.parametrize("reply, message, maybe_sent", [
    (json_reply({"message": "Unauthorized", "statusCode": 401}, 401),
     "WAHA refused the message (HTTP 401): Unauthorized", False),
    (json_reply({"statusCode": 422, "message": "Session status is not as expected. Status: STOPPED"}, 422),
     "WAHA refused the message (HTTP 422): Session status is not as expected. Status: STOPPED", False),
    (Reply(201, b""), "WAHA answered without a message id: None", True),  # WEBJS 2025.6.5 (#1083)
])
def test_send_text_failures_say_what_waha_said_and_whether_it_may_have_gone_out(waha_server, reply, message,
                                                                                 maybe_sent):
    waha_server.route("GET", "/api/contacts/check-exists", check_exists())
    waha_server.serve("POST", "/api/sendText", reply)
    with pytest.raises(SendError) as failed:
        waha.send_text(target_for(waha_server), "5511999990001", "oi")
    assert (str(failed.value), failed.value.maybe_sent) == (message, maybe_sent)
    assert API_KEY not in str(failed.value)


def test_a_wrong_api_key_is_refused_at_the_number_check(waha_server):
    waha_server.route("GET", "/api/contacts/check-exists", check_exists())
    with pytest.raises(SendError) as failed:
        waha.send_text(target_for(waha_server, token="wrong"), "5511999990001", "oi")
    assert str(failed.value) == "WAHA refused the message (HTTP 401): Unauthorized"
    assert waha_server.hits("POST", "/api/sendText") == []


class FakeWaha:
    """check-exists and sendText answering like WAHA's NOWEB engine, with fresh ids."""

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self.count = 0
        fake.route("GET", "/api/contacts/check-exists", check_exists(
            chat_id_of=lambda phone: "551199990001@c.us" if phone == "5511999990001" else f"{phone}@c.us",
            exists=True))
        fake.route("POST", "/api/sendText", self.send)

    def send(self, request: Recorded) -> Reply:
        self.count += 1
        chat = request.json()["chatId"]
        return json_reply({"key": {"remoteJid": chat.replace("@c.us", "@s.whatsapp.net"), "fromMe": True,
                                   "id": f"3EB0CAMP{self.count:04d}"},
                           "message": {"extendedTextMessage": {"text": request.json()["text"]}},
                           "messageTimestamp": str(int(time.time())), "status": "PENDING"}, 201)


def webhook(served: ServedApp, event: str, payload: dict) -> dict:
    body = load_sample("waha/message_text_noweb_lid.json")
    body.update(event=event, session=SESSION, payload=payload, timestamp=int(time.time() * 1000),
                me={"id": "5511900000001@c.us", "pushName": "Loja"})
    response = requests.post(wait_applied(f"{served.url}/api/webhooks/waha/"), json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()



def test_a_campaign_through_waha_is_tracked_sent_delivered_read_by_its_acks(make_app, waha_server):
    fake = FakeWaha(waha_server)
    app = make_app(WAHA_BASE_URL=waha_server.url, WAHA_API_KEY=API_KEY, CAMPAIGN_SENDER=True,
                   CAMPAIGN_RATE_PER_MIN=600.0, CAMPAIGN_SEND_TIMEOUT=5.0)
    served = ServedApp(app)
    try:
        created = requests.post(f"{served.url}/api/instances", json={"provider": "waha", "instance_id": SESSION},
                                timeout=10)
        assert created.status_code == 201, created.text
        campaign = requests.post(f"{served.url}/api/campaigns", timeout=10, json={
            "name": "Promo", "instance_id": created.json()["id"], "text": "Promoção de hoje!",
            "contacts": [{"phone": "5511999990001", "name": "Ana"}, {"phone": "5511999990002", "name": "Bia"}]})
        assert campaign.status_code == 201, campaign.text
        campaign_id = campaign.json()["id"]
        assert requests.post(f"{served.url}/api/campaigns/{campaign_id}/start", timeout=10).status_code == 200

        def campaign_state():
            return requests.get(f"{served.url}/api/campaigns/{campaign_id}", timeout=10).json()

        wait_until(lambda: campaign_state()["sent_count"] == 2, "sent both")
        sends = {hit.json()["chatId"]: hit for hit in waha_server.hits("POST", "/api/sendText")}
        assert set(sends) == {"551199990001@c.us", "5511999990002@c.us"}  # Ana's number has no ninth digit
        assert all(hit.headers["x-api-key"] == API_KEY and hit.json()["session"] == SESSION
                   and hit.json()["text"] == "Promoção de hoje!" for hit in sends.values())
        ana = next(f"3EB0CAMP{n:04d}" for n, chat in enumerate(sends, 1) if chat == "551199990001@c.us")
        bia = next(f"3EB0CAMP{n:04d}" for n, chat in enumerate(sends, 1) if chat == "5511999990002@c.us")

        # WAHA's echo of our own message (message.any, source api), then acks in the forms WAHA uses.
        webhook(served, "message.any", {
            "id": f"true_551199990001@c.us_{ana}", "timestamp": int(time.time()), "from": "551199990001@c.us",
            "fromMe": True, "source": "api", "body": "Promoção de hoje!", "hasMedia": False, "ack": 1,
            "ackName": "SERVER", "_data": {"key": {"remoteJid": "551199990001@s.whatsapp.net", "fromMe": True,
                                                   "id": ana}}})
        webhook(served, "message.ack", {"id": f"true_551199990001@c.us_{ana}", "from": "551199990001@c.us",
                                        "fromMe": True, "ack": 2, "ackName": "DEVICE"})
        webhook(served, "message.ack", {"id": f"true_90000000000001@lid_{ana}", "from": "90000000000001@lid",
                                        "fromMe": True, "ack": 3, "ackName": "READ"})
        webhook(served, "message.ack", {"id": f"5511999990002@c.us_{bia}", "from": "5511999990002@c.us",
                                        "fromMe": True, "ack": 2, "ackName": "DEVICE"})
        done = wait_until(lambda: (lambda c: c if c["read_count"] == 1 and c["delivered_count"] == 2 else None)(
            campaign_state()), "delivered and read")
        assert (done["sent_count"], done["delivered_count"], done["read_count"], done["failed_count"]) == (2, 2, 1, 0)
        contacts = requests.get(f"{served.url}/api/campaigns/{campaign_id}/contacts", timeout=10).json()["items"]
        assert {c["phone"]: (c["state"], c["whatsapp_message_id"]) for c in contacts} == {
            "5511999990001": ("read", ana), "5511999990002": ("delivered", bia)}
        assert fake.count == 2
    finally:
        served.close()


# --- media -----------------------------------------------------------------------------------------------

@pytest.fixture
def media_app(make_app, waha_server):
    def build(**overrides):
        settings = {"MEDIA_WORKERS": 1, "WAHA_BASE_URL": waha_server.url, "WAHA_API_KEY": API_KEY,
                    "MEDIA_RETRY_SECONDS": 0.05, "MEDIA_CONNECT_TIMEOUT": 2.0, "MEDIA_READ_TIMEOUT": 2.0,
                    "MEDIA_MAX_ATTEMPTS": 2}
        settings.update(overrides)
        return make_app(**settings)
    return build


STATUS_POST = "waha/message_status_broadcast.json"
STATUS_FILE = "/api/files/false_status@broadcast_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_123123@c.us.jpg"


def with_media_url(url, sample: str = STATUS_POST) -> dict:
    payload = load_sample(sample)
    payload["payload"]["media"]["url"] = url
    return payload


def fetched(app, payload: dict, message_id: str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") -> dict:
    client = app.test_client()
    post(client, "/api/webhooks/waha/", payload)
    media = wait_for_media(client, media_of(client, message_id)["id"])
    return client.get(f"/api/media/{media['id']}").get_json()


def key_sent(request: Recorded):
    return request.headers.get("x-api-key")


def test_the_status_samples_file_is_fetched_from_waha_base_url_with_the_api_key(media_app, waha_server):
    # The sample's media.url names http://localhost:3000 (WAHA's default idea of itself): the file is
    # taken from the configured WAHA_BASE_URL, the same path.
    waha_server.serve("GET", STATUS_FILE, file_reply(PNG, "image/jpeg"))
    media = fetched(media_app(), load_sample(STATUS_POST))
    assert (media["state"], media["way"], media["stored_size"]) == ("done", "waha", len(PNG))
    assert (media["media_type"], media["mimetype"], media["caption"]) == ("image", "image/jpeg", "Check this out!")
    assert [key_sent(hit) for hit in waha_server.hits("GET", STATUS_FILE)] == [API_KEY]


def test_a_media_url_on_the_configured_server_behind_a_path_keeps_that_path(make_app, waha_server):
    waha_server.serve("GET", "/waha/api/files/default/x.jpg", file_reply(PNG, "image/jpeg"))
    app = make_app(MEDIA_WORKERS=1, WAHA_BASE_URL=waha_server.url + "/waha/", WAHA_API_KEY=API_KEY)
    media = fetched(app, with_media_url("https://waha.internal/waha/api/files/default/x.jpg"))
    assert media["state"] == "done"
    assert key_sent(waha_server.hits("GET", "/waha/api/files/default/x.jpg")[0]) == API_KEY


@pytest.mark.parametrize("url, reason", [
    # the capture's own URL: another host, not one of WAHA's files
    ("https://github.com/devlikeapro/waha/raw/core/examples/dev.likeapro.jpg",
     "media.url is neither a WAHA file (/api/files/...) nor on an allowed media host: refused: github.com is not "
     "an allowed media host"),
    ("{waha}/api/sessions/default", "is on the WAHA server but not one of its files (/api/files/...): not fetched"),
    ("{waha}/api/files/../sessions", "does not name a file"),
    ("{waha}/api/files/%2e%2e/sessions", "does not name a file"),
    ("{elsewhere}/x.jpg", "nor on an allowed media host: refused: 127.0.0.1 is allowed, but not on port"),
    ("ftp://{host}/api/sessions", "is not an http(s) URL"),
])
def test_a_media_url_that_is_not_a_waha_file_nor_allowed_fails_with_the_reason_and_is_never_fetched(
        media_app, waha_server, elsewhere, url, reason):
    url = url.format(waha=waha_server.url, elsewhere=elsewhere.url, host=urlsplit(waha_server.url).netloc)
    media = fetched(media_app(), with_media_url(url))
    assert media["state"] == "failed"
    assert reason in media["error"]
    assert waha_server.requests == [] and elsewhere.requests == []


def test_the_api_key_never_follows_a_redirect_off_the_waha_server(media_app, waha_server, elsewhere):
    elsewhere.serve("GET", "/loot", file_reply(PNG))
    waha_server.serve("GET", "/api/files/x.jpg", Reply(302, b"", {"Location": f"{elsewhere.url}/loot"}))
    media = fetched(media_app(MEDIA_ALLOWED_HOSTS=[urlsplit(elsewhere.url).netloc]),
                    with_media_url("http://localhost:3000/api/files/x.jpg"))
    # the other server is an allowed media host, yet a WAHA file may only come from WAHA_BASE_URL
    assert media["state"] == "failed"
    assert media["error"].startswith("WAHA sent its file elsewhere, and WAHA files are taken from WAHA_BASE_URL only "
                                     f"(where the key goes): refused: 127.0.0.1 is allowed, but not on port "
                                     f"{urlsplit(elsewhere.url).port}")
    assert elsewhere.requests == []


def test_a_file_on_another_allowed_store_is_fetched_without_the_api_key(media_app, waha_server, elsewhere):
    # WAHA's S3 storage hands out pre-signed links to the bucket: a host the operator allows.
    elsewhere.serve("GET", "/bucket/default/x.jpg", file_reply(PNG, "image/jpeg"))
    media = fetched(media_app(MEDIA_ALLOWED_HOSTS=[urlsplit(elsewhere.url).netloc]),
                    with_media_url(f"{elsewhere.url}/bucket/default/x.jpg?X-Amz-Signature=abc"))
    assert media["state"] == "done"
    assert key_sent(elsewhere.hits("GET", "/bucket/default/x.jpg")[0]) is None
    assert waha_server.requests == []


@pytest.mark.parametrize("reply, state, reason", [
    (json_reply({"statusCode": 404, "message": "Not Found"}, 404), "expired",
     "WAHA answered 404: it does not have this media (Not Found); WAHA deletes its files "
     "WHATSAPP_FILES_LIFETIME seconds after the message (180 by default)"),
    (json_reply({"message": "Unauthorized", "statusCode": 401}, 401), "failed",
     "WAHA refused the credentials (401): check the instance's api token"),
    (Reply(503, b"busy"), "failed", "gave up after 2 attempts: WAHA answered 503: trying again later"),
])
def test_a_file_waha_no_longer_has_or_will_not_give_fails_with_the_reason(media_app, waha_server, reply, state,
                                                                          reason):
    waha_server.serve("GET", STATUS_FILE, reply)
    media = fetched(media_app(), load_sample(STATUS_POST))
    assert media["state"] == state
    assert media["error"].startswith(reason)
    assert API_KEY not in json.dumps(media)


@pytest.mark.parametrize("media_field", [None, {"url": None, "mimetype": "image/jpeg", "filename": None,
                                                 "error": {"message": "download failed"}}])
def test_media_waha_did_not_download_fails_at_once_saying_so(media_app, waha_server, media_field):
    payload = load_sample(STATUS_POST)
    payload["payload"]["media"] = media_field
    media = fetched(media_app(), payload)
    assert media["state"] == "failed"
    assert "WAHA sent no media.url: it did not download this file" in media["error"]
    assert "WHATSAPP_DOWNLOAD_MEDIA" in media["error"] and waha_server.requests == []


def test_without_waha_credentials_the_reason_names_the_settings(make_app, waha_server):
    app = make_app(MEDIA_WORKERS=1, WAHA_BASE_URL=waha_server.url)
    media = fetched(app, load_sample(STATUS_POST))
    assert media["state"] == "failed"
    assert "no waha API credentials (set WAHA_BASE_URL and WAHA_API_KEY" in media["error"]


# --- registration ----------------------------------------------------------------------------------------

OTHER_WEBHOOK = {"url": "https://crm.example/hooks/whatsapp", "events": ["message"], "hmac": {"key": "crm-key"},
                 "retries": None, "customHeaders": [{"name": "X-Crm", "value": "crm-secret"}]}
OLD_ZAPHOOK = {"url": "https://old-tunnel.ngrok-free.app/api/webhooks/waha/?token=old", "events": ["message"],
               "hmac": None, "retries": None, "customHeaders": None}
SESSION_INFO = {
    "name": SESSION, "status": "WORKING", "me": {"id": "5511900000001@c.us", "pushName": "Loja"},
    "config": {"metadata": {"shop": "7"}, "proxy": {"server": "proxy:3128", "username": "u", "password": "p"},
               "debug": False, "noweb": {"store": {"enabled": True, "fullSync": False}, "markOnline": True},
               "webhooks": [OTHER_WEBHOOK, OLD_ZAPHOOK]},
    "engine": {"engine": "NOWEB"},
}
HUB = "https://hub.example.com"
OUR_URL = f"{HUB}/api/webhooks/waha/?token=hooktoken"


class SessionsApi:
    """GET and PUT /api/sessions/default: PUT stores the config it is given (and would restart the session)."""

    def __init__(self, fake: FakeServer, info: dict = SESSION_INFO, refuse_newer_events: bool = False) -> None:
        self.info = copy.deepcopy(info)
        self.refuse_newer_events = refuse_newer_events
        fake.route("GET", f"/api/sessions/{SESSION}", self.get)
        fake.route("PUT", f"/api/sessions/{SESSION}", self.put)

    def get(self, request: Recorded) -> Reply:
        if request.headers.get("x-api-key") != API_KEY:
            return json_reply({"message": "Unauthorized", "statusCode": 401}, 401)
        return json_reply(self.info)

    def put(self, request: Recorded) -> Reply:
        config = request.json()["config"]
        events = {event for webhook in config["webhooks"] for event in webhook["events"]}
        if self.refuse_newer_events and events & set(waha.NEWER_EVENTS):
            return json_reply({"message": ["config.webhooks.1.events.each value in events must be one of the "
                                           "following values: session.status, message, ..."],
                               "error": "Bad Request", "statusCode": 400}, 400)
        self.info["config"] = config
        return json_reply({"name": SESSION, "status": "STARTING", "config": config}, 200)


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """The command line on a temporary data dir, run from tmp_path (no stray .env), no other secrets."""
    from config import SECRET_SETTINGS

    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_SETTINGS, "DATABASE_URL", "PUBLIC_URL", "WAHA_BASE_URL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNNEL", "off")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WEBHOOK_TOKEN", "hooktoken")


def run(capsys, *argv):
    code = server.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def register(capsys, waha_server):
    assert run(capsys, "instances", "add", "--provider", "waha", "--instance", SESSION, "--token", API_KEY,
               "--base-url", waha_server.url)[0] == 0
    return run(capsys, "register", "--provider", "waha", "--instance", SESSION, "--base-url", HUB + "/")


def test_register_puts_zaphooks_webhook_in_the_session_config_and_keeps_the_rest(cli_env, capsys, monkeypatch,
                                                                                   waha_server):
    monkeypatch.setenv("WAHA_HMAC_KEY", HMAC_KEY)
    SessionsApi(waha_server)
    code, out, err = register(capsys, waha_server)
    assert code == 0, err
    [read] = waha_server.hits("GET", f"/api/sessions/{SESSION}")
    [put] = waha_server.hits("PUT", f"/api/sessions/{SESSION}")
    assert read.headers["x-api-key"] == put.headers["x-api-key"] == API_KEY
    sent = put.json()
    assert sent["name"] == SESSION
    expected_config = copy.deepcopy(SESSION_INFO["config"])
    expected_config["webhooks"] = [OTHER_WEBHOOK, {
        "url": OUR_URL, "events": list(waha.WEBHOOK_EVENTS), "hmac": {"key": HMAC_KEY},
        "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 8}}]
    assert sent["config"] == expected_config
    assert {"message.any", "message.ack", "message.ack.group", "session.status"} <= set(waha.WEBHOOK_EVENTS)
    assert f"waha default all events: {OUR_URL}" in out
    assert "-> ok HTTP 200 [all events]: 11 events, signed (HMAC); session STARTING" in out
    for secret in (API_KEY, HMAC_KEY, "crm-key", "crm-secret"):
        assert secret not in out + err


def test_register_again_changes_nothing_and_does_not_restart_the_session(cli_env, capsys, waha_server):
    sessions = SessionsApi(waha_server)
    assert register(capsys, waha_server)[0] == 0
    assert sessions.info["config"]["webhooks"][-1].get("hmac") is None  # no WAHA_HMAC_KEY: unsigned
    code, out, _ = run(capsys, "register", "--provider", "waha", "--instance", SESSION, "--base-url", HUB)
    assert code == 0
    assert len(waha_server.hits("PUT", f"/api/sessions/{SESSION}")) == 1
    assert "-> ok HTTP 200 [unchanged]: already set: the session was not restarted" in out


def test_register_on_an_older_waha_sends_the_events_it_knows(cli_env, capsys, waha_server):
    sessions = SessionsApi(waha_server, refuse_newer_events=True)
    code, out, err = register(capsys, waha_server)
    assert code == 0, err
    first, second = waha_server.hits("PUT", f"/api/sessions/{SESSION}")
    assert set(waha.NEWER_EVENTS) <= set(first.json()["config"]["webhooks"][-1]["events"])
    assert sessions.info["config"]["webhooks"][-1]["events"] == [
        event for event in waha.WEBHOOK_EVENTS if event not in waha.NEWER_EVENTS]
    assert "[older WAHA]" in out and "tried: all events: 400, older WAHA: 200" in out


@pytest.mark.parametrize("setup, said", [
    (lambda fake: None, "reading the session failed: WAHA has no session 'default'"),
    (lambda fake: fake.serve("GET", f"/api/sessions/{SESSION}",
                             json_reply({"message": "Unauthorized", "statusCode": 401}, 401)),
     "reading the session failed: Unauthorized"),
])
def test_register_refused_says_why_and_fails(cli_env, capsys, waha_server, setup, said):
    setup(waha_server)
    code, out, err = register(capsys, waha_server)
    assert code == 1
    assert said in out and err.strip() == "zaphook: waha refused 1 of 1 webhook settings"
    assert waha_server.hits("PUT", f"/api/sessions/{SESSION}") == []


def test_register_webhooks_at_start_up_includes_waha_instances(cli_env, capsys, waha_server):
    SessionsApi(waha_server)
    run(capsys, "instances", "add", "--provider", "waha", "--instance", SESSION, "--token", API_KEY,
        "--base-url", waha_server.url)
    results = cli.register_all(server.load_settings(), HUB)
    assert [(r["provider"], r["instance"], r["ok"]) for r in results] == [("waha", SESSION, True)]
