"""Forwarding to the developer's app: a real HTTP server on 127.0.0.1 plays the app, zaphook is served by waitress."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

import handlers
from forward_schema import SCHEMA_FILE, TYPES, Envelope, MediaState, forwarded_events
from forwarding import retry_after_seconds, retry_delay, secret_key, signature
from handlers.base import RouteHint
from models import utcnow
from tests.fakes import FakeServer, Reply, file_reply
from tests.helpers import ServedApp, all_samples, load_sample, wait_applied, wait_until
from tests.media_support import vector, wapi_payload
from tests.schema_check import errors

SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
FAST = {"FORWARD_RETRY_SECONDS": 0.05, "FORWARD_RETRY_MAX_SECONDS": 0.2, "FORWARD_TIMEOUT": 3.0}


@pytest.fixture(scope="module")
def developer_app():
    server = FakeServer()  # one for the module: stopping one takes half a second
    yield server
    server.close()


@pytest.fixture
def app_server(developer_app):
    """The developer's app: answers 200 unless a test says otherwise."""
    developer_app.routes.clear()
    developer_app.requests.clear()
    developer_app.route("POST", "/hook", answering([200]))
    return developer_app


@pytest.fixture
def served(make_app):
    """zaphook served by waitress, as `python server.py` serves it (the forwarder started with it)."""
    made = []

    def start(**settings) -> ServedApp:
        served_app = ServedApp(make_app(**{**FAST, **settings}))
        made.append(served_app)
        return served_app

    yield start
    for served_app in made:
        served_app.close()


def add_destination(zaphook: ServedApp, url: str, **values) -> dict:
    response = requests.post(f"{zaphook.url}/api/forward/destinations", json={"url": url, **values}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def plain_message(message_id: str, text: str, chat: str = "5511888888888") -> dict:
    payload = load_sample("seeds/endpoint_receive_message.json")
    payload.update(messageId=message_id, msgContent={"type": "text", "text": text})
    payload["chat"]["id"] = payload["sender"]["id"] = f"{chat}@c.us"
    return payload


def post_webhook(zaphook: ServedApp, payload: dict, path: str = "/webhook/", wait: bool = True) -> dict:
    url = zaphook.url + path
    response = requests.post(wait_applied(url) if wait else url, json=payload, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def delivered(app_server: FakeServer, count: int, path: str = "/hook") -> list:
    """The requests the app answered 2xx (routes note their answer, see answering), once there are ``count``."""
    def answered():
        hits = [hit for hit in app_server.hits("POST", path) if getattr(hit, "answered", 999) < 300]
        return hits if len(hits) >= count else None
    return wait_until(answered, f"{count} deliveries to {path}", timeout=15)


def answering(statuses: list, headers: dict | None = None):
    """An app route: the n-th request gets statuses[n] (the last one repeats); the status is noted on the request."""
    count = {"n": 0}
    lock = threading.Lock()

    def route(recorded):
        with lock:
            status = statuses[min(count["n"], len(statuses) - 1)]
            count["n"] += 1
        recorded.answered = status
        return Reply(status, b"busy" if status >= 300 else b"ok", dict(headers or {}) if status >= 300 else {})
    return route


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """The Standard Webhooks check as an app writes it, independent of zaphook's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, value) for value in given)


# --- raw: the provider's request as it came --------------------------------------------------------

def test_raw_forwarding_is_byte_exact_with_the_providers_headers_and_none_of_zaphooks_secrets(served, app_server):
    token = "zaphook-webhook-token-1234"
    zaphook = served(WEBHOOK_TOKEN=token)
    destination = add_destination(zaphook, app_server.url + "/hook", format="raw")
    body = ('{ "instanceId":"instance_123", "event":"message","fromMe":false,  "messageId":"RAW1",\n'
            '"chat":{"id":"5511888888888@c.us","name":"Zé Ninguém"},"sender":{"id":"5511888888888@c.us"},'
            '"msgContent":{"type":"text","text":"olá 👋"}}').encode("utf-8")
    response = requests.post(f"{zaphook.url}/webhook/receive-message/?token={token}", data=body, timeout=10, headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "Provider-Webhooks/2.1",
        "X-Provider-Event": "message", "X-Webhook-Token": token, "X-Echo": f"token={token}"})
    assert response.status_code == 200, response.text

    [request] = delivered(app_server, 1)
    assert request.body == body
    assert request.path == "/hook" and request.query == {}  # the webhook token in the URL stays behind
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["user-agent"] == "Provider-Webhooks/2.1"
    assert request.headers["x-provider-event"] == "message"
    assert "x-webhook-token" not in request.headers and "x-echo" not in request.headers
    assert token.encode() not in b"".join(f"{k}: {v}".encode() for k, v in request.headers.items())
    assert request.headers["webhook-id"].startswith("zh_") and request.headers["webhook-id"].endswith(
        f"_{response.json()['event_id']}")
    assert verify(destination["secret"], request.headers, request.body)


def test_the_signature_verifies_with_the_standard_webhooks_algorithm(served, app_server):
    zaphook = served()
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    add_destination(zaphook, app_server.url + "/hook", format="normalised", secret=secret)
    post_webhook(zaphook, plain_message("SIG1", "signed"), "/webhook/receive-message/")

    [request] = delivered(app_server, 1)
    assert verify(secret, request.headers, request.body)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert not verify(secret, request.headers, request.body + b" ")  # a changed body fails the check
    assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), request.headers, request.body)
    assert json.loads(request.body)["id"] == request.headers["webhook-id"]
    assert docs_python_verify()(secret, request.headers, request.body)
    assert not docs_python_verify()(secret, request.headers, request.body[:-1])
    if shutil.which("node"):
        assert docs_node_verify(secret, request.headers, request.body) == ["true", "false"]
    # The published example of the scheme (standard-webhooks spec), computed by zaphook's signer.
    assert signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


DOCS = Path(__file__).resolve().parent.parent / "docs" / "forwarding.md"


def docs_block(language: str) -> str:
    """The docs' verification snippet in ``language`` (the fenced block that defines verify)."""
    text = DOCS.read_text(encoding="utf-8")
    for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL):
        if "verify(" in block:
            return block
    raise AssertionError(f"docs/forwarding.md has no {language} verify snippet")


def docs_python_verify():
    namespace: dict = {}
    exec(compile(docs_block("python"), str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def docs_node_verify(secret: str, headers: dict, body: bytes) -> list[str]:
    """Run the docs' Node snippet on a delivery, and on the same delivery with its body cut short."""
    script = docs_block("js") + (
        "\nconst [secret, headers, body] = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        "const raw = Buffer.from(body, 'base64');\n"
        "console.log(String(verify(secret, headers, raw)));\n"
        "console.log(String(verify(secret, headers, raw.subarray(0, raw.length - 1))));\n")
    wanted = {name: headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    done = subprocess.run(["node", "-e", script], input=json.dumps([secret, wanted, base64.b64encode(body).decode()]),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


# --- normalised: one schema for every provider ---------------------------------------------------

def sample_route(name: str) -> RouteHint:
    """The URL each sample is posted to (the seeds' endpoint_* samples name theirs)."""
    stem = Path(name).stem
    if stem.startswith("endpoint_"):
        return handlers.REGISTRY.hint_for_path("/webhook/" + stem.removeprefix("endpoint_").replace("_", "-") + "/")
    return RouteHint()


def test_every_providers_samples_become_normalised_events_the_schema_accepts():
    seen_types, providers = set(), set()
    for name in all_samples():
        try:
            normalised = handlers.normalise(load_sample(name), sample_route(name))
        except handlers.PayloadError:
            continue
        envelope = Envelope(7, normalised.provider, normalised.instance_id, utcnow(), "zh_0123abcd")
        for media in (None, MediaState(12, "done", "http://127.0.0.1:5000/api/media/12/file", 10, "ab" * 32)):
            for event in forwarded_events(normalised, envelope, (lambda _item, media=media: media)):
                assert errors(event.payload, SCHEMA) == [], (name, event.payload)
                seen_types.add(event.type)
                providers.add(event.payload["provider"])
    assert providers >= {"wapi", "zapi", "evolution", "waha", "meta", "plain", "betzap"}
    assert seen_types >= set(TYPES) - {"media.ready", "contact"}


def test_the_schema_refuses_what_an_app_must_not_receive():
    normalised = handlers.normalise(load_sample("seeds/endpoint_receive_message.json"), sample_route("endpoint_receive_message"))
    [event] = forwarded_events(normalised, Envelope(1, "plain", "instance_123", utcnow()))
    assert errors(event.payload, SCHEMA) == []
    for broken in ({**event.payload, "type": "message.status"}, {**event.payload, "extra": 1},
                   {**event.payload, "data": {**event.payload["data"], "from_me": "no"}}):
        assert errors(broken, SCHEMA), broken


def test_a_reply_reaches_the_app_with_the_quoted_message_id_and_text():
    from tests.handlers.test_quoted_and_group_names import BAILEYS_REPLY, QUOTED_ID, evolution_reply

    normalised = handlers.normalise(evolution_reply(BAILEYS_REPLY), handlers.REGISTRY.hint_for_path("/api/webhooks/evolution/"))
    [event] = forwarded_events(normalised, Envelope(1, "evolution", "tigo1", utcnow()))
    assert errors(event.payload, SCHEMA) == []
    assert event.payload["data"]["quoted_message_id"] == QUOTED_ID
    assert event.payload["data"]["quoted_text"] == "Posso passar às 15h?"


def test_normalised_events_of_every_provider_reach_the_app_valid_against_the_schema(served, app_server):
    zaphook = served()
    add_destination(zaphook, app_server.url + "/hook", format="normalised")
    names = ["evolution/v1_messages.upsert_text_incoming.json", "meta/fixture_image.json",
             "waha/message.json", "zapi/received_text.json", "wapi/webhookReceived_text_extendedTextMessage_docsummary.json",
             "seeds/endpoint_chat_presence.json", "seeds/endpoint_connect.json", "seeds/endpoint_message_status.json"]
    names = [name for name in names if name in all_samples()]
    assert len(names) >= 6, names
    expected = 0
    for name in names:
        route = "/webhook/" if not Path(name).stem.startswith("endpoint_") else (
            "/webhook/" + Path(name).stem.removeprefix("endpoint_").replace("_", "-") + "/")
        answer = post_webhook(zaphook, load_sample(name), route)
        assert answer["outcome"] == "processed", (name, answer)
        expected += len(forwarded_events(handlers.normalise(load_sample(name), sample_route(name)),
                                         Envelope(0, "", None, utcnow())))
    requests_seen = delivered(app_server, expected)
    bodies = [request.json() for request in requests_seen]
    for body in bodies:
        assert errors(body, SCHEMA) == [], body
    assert {body["provider"] for body in bodies} >= {"evolution", "meta", "plain"}
    images = [body for body in bodies if body["type"] == "message.received" and body["data"]["media"]]
    assert images and all(image["data"]["media"]["state"] == "pending" and image["data"]["media"]["id"]
                          for image in images)


def test_a_media_message_is_followed_by_media_ready_with_a_url_the_app_can_fetch(make_app, app_server):
    cdn = FakeServer()
    meta, encrypted, plaintext = vector("image")
    cdn.serve("GET", "/v/fwd.enc", file_reply(encrypted))
    zaphook = ServedApp(make_app(**FAST, MEDIA_WORKERS=1, WA_MEDIA_BASE_URL=cdn.url, MEDIA_RETRY_SECONDS=0.05))
    try:
        add_destination(zaphook, app_server.url + "/hook", format="normalised",
                        types=["message.received", "media.ready"])
        post_webhook(zaphook, wapi_payload(meta, "FWDIMAGE", "/v/fwd.enc"), "/webhook/receive-message/")

        message, ready = [request.json() for request in delivered(app_server, 2)]
        assert message["type"] == "message.received" and message["data"]["id"] == "FWDIMAGE"
        assert message["data"]["media"]["type"] == "image" and message["data"]["media"]["url"] is None
        assert ready["type"] == "media.ready"
        assert ready["data"]["message_id"] == "FWDIMAGE"
        media = ready["data"]["media"]
        assert media["state"] == "done" and media["id"] == message["data"]["media"]["id"]
        assert media["url"] == f"{zaphook.url}/api/media/{media['id']}/file"
        assert media["sha256"] == hashlib.sha256(plaintext).hexdigest() and media["size"] == len(plaintext)
        assert requests.get(media["url"], timeout=10).content == plaintext
        for body in (message, ready):
            assert errors(body, SCHEMA) == [], body
        assert "mediaKey" not in json.dumps(message) and meta["mediaKey"] not in json.dumps(message)
    finally:
        zaphook.close()
        cdn.close()


def test_a_destination_gets_only_what_its_filter_lets_through(served, app_server):
    zaphook = served()
    statuses = add_destination(zaphook, app_server.url + "/statuses", format="normalised", types=["message.status"])
    other = add_destination(zaphook, app_server.url + "/other-instance", format="raw", instance="someone-else")
    app_server.route("POST", "/statuses", answering([204]))
    app_server.route("POST", "/other-instance", answering([204]))
    post_webhook(zaphook, plain_message("FILTER1", "not a status"), "/webhook/receive-message/")
    post_webhook(zaphook, load_sample("seeds/endpoint_message_status.json"), "/webhook/message-status/")

    # Both were applied (?wait=1), and a delivery is queued in the transaction that applies its event.
    def queued(destination: dict) -> list:
        return requests.get(f"{zaphook.url}/api/forward/deliveries", params={"destination": destination["id"]},
                            timeout=10).json()["items"]
    assert [item["type"] for item in queued(statuses)] == ["message.status"]
    assert queued(other) == []
    [status] = delivered(app_server, 1, "/statuses")
    assert status.json()["type"] == "message.status"
    assert app_server.hits("POST", "/other-instance") == []


# --- delivery that a provider would envy ---------------------------------------------------------------

def test_an_app_that_fails_three_times_gets_every_event_once_it_recovers_in_order(served, app_server):
    zaphook = served()
    app_server.route("POST", "/hook", answering([500, 500, 500, 200]))
    add_destination(zaphook, app_server.url + "/hook", format="normalised")
    for number in range(1, 4):
        post_webhook(zaphook, plain_message(f"ORDER{number}", f"message {number}"), "/webhook/receive-message/")

    ok = delivered(app_server, 3)
    assert [request.json()["data"]["id"] for request in ok] == ["ORDER1", "ORDER2", "ORDER3"]
    hits = app_server.hits("POST", "/hook")
    assert [hit.json()["data"]["id"] for hit in hits[:4]] == ["ORDER1"] * 4  # the chat waits for its first
    assert len({hit.headers["webhook-id"] for hit in ok}) == 3

    event_id = hits[0].json()["webhook_event_id"]
    panel = requests.get(f"{zaphook.url}/api/forward/events/{event_id}", timeout=10).json()
    [entry] = panel["destinations"]
    [delivery] = entry["deliveries"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 4
    assert [(a["outcome"], a["http_status"]) for a in delivery["attempt_log"]] == [
        ("retry", 500), ("retry", 500), ("retry", 500), ("delivered", 200)]
    assert delivery["attempt_log"][0]["response_excerpt"] == "busy"
    assert delivery["attempt_log"][0]["error_text"] == {"code": "forward.http_status", "params": {"status": 500}}


def test_a_delivery_whose_worker_died_is_taken_over_when_its_lease_runs_out_and_sent_once(served, app_server):
    from forwarding import Forwarder
    from models import ForwardDelivery

    zaphook = served(FORWARD_WORKERS=0)  # this process forwards nothing: the row waits for the other one
    add_destination(zaphook, app_server.url + "/hook", format="normalised")
    post_webhook(zaphook, plain_message("ORPHAN", "hi"), "/webhook/receive-message/")
    database = zaphook.app.extensions["zaphook.database"]
    with database.connection_context():
        # A worker of a process killed mid-send: its claim stands, with a lease that has run out.
        ForwardDelivery.update(state="delivering", lease_owner="killed-process", attempts=1,
                               lease_until=utcnow() - timedelta(seconds=1)).execute()
    other = Forwarder({**zaphook.app.config, "FORWARD_WORKERS": 1}, database)
    other.start(zaphook.url)
    try:
        [hit] = delivered(app_server, 1)
        with database.connection_context():
            wait_until(lambda: ForwardDelivery.get().state == "delivered", "settled by the worker that took it over")
            delivery = ForwardDelivery.get()
    finally:
        other.stop()
    assert hit.json()["data"]["id"] == "ORPHAN"
    assert len(app_server.hits("POST", "/hook")) == 1
    assert (delivery.attempts, delivery.lease_owner) == (2, None)


def test_two_forwarders_on_one_database_send_each_delivery_once_and_each_chat_in_order(served, app_server):
    from forwarding import Forwarder

    zaphook = served(FORWARD_WORKERS=3)
    other = Forwarder(zaphook.app.config, zaphook.app.extensions["zaphook.database"])  # another process's workers
    other.start(zaphook.url)
    try:
        add_destination(zaphook, app_server.url + "/hook", format="normalised")
        posted = {}
        for number in range(24):
            chat = f"551190000{number % 6:04d}"
            post_webhook(zaphook, plain_message(f"TWO{number}", "hi", chat=chat), "/webhook/receive-message/",
                         wait=False)
            posted.setdefault(f"{chat}@s.whatsapp.net", []).append(f"TWO{number}")
        hits = delivered(app_server, 24)
    finally:
        other.stop()
    assert len(app_server.hits("POST", "/hook")) == 24
    assert len({hit.headers["webhook-id"] for hit in hits}) == 24
    received = {}
    for hit in hits:
        data = hit.json()["data"]
        received.setdefault(data["chat"]["id"], []).append(data["id"])
    assert received == posted


def test_429_with_retry_after_is_honoured(served, app_server):
    zaphook = served(FORWARD_RETRY_SECONDS=0.01)
    app_server.route("POST", "/hook", answering([429, 200], {"Retry-After": "1"}))
    add_destination(zaphook, app_server.url + "/hook")
    post_webhook(zaphook, plain_message("LIMITED", "slow down"), "/webhook/receive-message/")

    delivered(app_server, 1)
    first, second = app_server.hits("POST", "/hook")
    assert (first.answered, second.answered) == (429, 200)
    assert second.at - first.at >= 0.95  # not the 0.01 s backoff


def test_a_refused_connection_and_a_timeout_are_retried_until_the_app_answers(served, app_server):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from tests.test_server_process import free_port

    port = free_port()  # nothing listens there yet: the app is still starting
    zaphook = served(FORWARD_TIMEOUT=0.5)
    add_destination(zaphook, f"http://127.0.0.1:{port}/hook", format="normalised")
    answer = post_webhook(zaphook, plain_message("LATE", "are you up?"), "/webhook/receive-message/")

    def attempts():
        items = requests.get(f"{zaphook.url}/api/forward/events/{answer['event_id']}", timeout=10).json()[
            "destinations"][0]["deliveries"]
        return items[0]["attempt_log"] if items and len(items[0]["attempt_log"]) >= 2 else None
    refused = wait_until(attempts, "two refused connections")
    assert all(a["outcome"] == "retry" and a["http_status"] is None and "could not connect" in a["error"]
               for a in refused)

    calls = []

    class App(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.headers["webhook-id"])
            if len(calls) == 1:
                time.sleep(1.5)  # slower than FORWARD_TIMEOUT: zaphook stops waiting and tries again
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), App)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        def delivered_late():
            items = requests.get(f"{zaphook.url}/api/forward/events/{answer['event_id']}", timeout=10).json()[
                "destinations"][0]["deliveries"]
            return items[0]["state"] == "delivered" and items[0]
        delivery = wait_until(delivered_late, "delivered once the app answers")
    finally:
        server.shutdown()
        server.server_close()
    log = delivery["attempt_log"]
    assert any("did not answer in time" in (a["error"] or "") for a in log), log
    assert log[-1]["outcome"] == "delivered" and log[-1]["http_status"] == 204
    assert len(set(calls)) == 1  # every attempt is the same event


def test_an_answer_that_is_not_worth_retrying_fails_at_once_and_the_chat_goes_on(served, app_server):
    zaphook = served()
    app_server.route("POST", "/hook", answering([400, 200]))
    add_destination(zaphook, app_server.url + "/hook", format="normalised")
    post_webhook(zaphook, plain_message("BAD1", "refused"), "/webhook/receive-message/")
    post_webhook(zaphook, plain_message("GOOD2", "accepted"), "/webhook/receive-message/")

    [ok] = delivered(app_server, 1)
    assert ok.json()["data"]["id"] == "GOOD2"
    first = app_server.hits("POST", "/hook")[0]
    event_id = first.json()["webhook_event_id"]
    [delivery] = requests.get(f"{zaphook.url}/api/forward/events/{event_id}", timeout=10).json()[
        "destinations"][0]["deliveries"]
    assert delivery["state"] == "failed" and delivery["last_status"] == 400 and delivery["attempts"] == 1


def test_a_delivery_that_keeps_failing_is_given_up_after_the_configured_time(served, app_server):
    zaphook = served(FORWARD_GIVE_UP_HOURS=2 / 3600)  # 2 s: several attempts even on a loaded machine
    app_server.route("POST", "/hook", answering([503]))
    add_destination(zaphook, app_server.url + "/hook")
    answer = post_webhook(zaphook, plain_message("NEVER", "down"), "/webhook/receive-message/")

    def failed():
        items = requests.get(f"{zaphook.url}/api/forward/events/{answer['event_id']}", timeout=10).json()[
            "destinations"][0]["deliveries"]
        return items and items[0]["state"] == "failed" and items[0]
    delivery = wait_until(failed, "given up")
    assert delivery["attempts"] >= 2 and delivery["last_error"].startswith("gave up after")
    assert delivery["last_error_text"] == {"code": "forward.gave_up", "params": {
        "count": delivery["attempts"], "reason": {"code": "forward.http_status", "params": {"status": 503}}}}
    assert all(attempt["http_status"] == 503 for attempt in delivery["attempt_log"])


def test_a_redirect_is_an_answer_not_somewhere_else_to_send_the_event(served, app_server):
    zaphook = served()
    app_server.serve("POST", "/moved", Reply(307, b"", {"Location": app_server.url + "/hook"}))
    add_destination(zaphook, app_server.url + "/moved")
    answer = post_webhook(zaphook, plain_message("MOVED", "there"), "/webhook/receive-message/")

    def settled():
        items = requests.get(f"{zaphook.url}/api/forward/events/{answer['event_id']}", timeout=10).json()[
            "destinations"][0]["deliveries"]
        return items and items[0]["state"] == "failed" and items[0]
    assert wait_until(settled, "failed on the redirect")["last_status"] == 307
    assert app_server.hits("POST", "/hook") == []


def test_retry_after_and_the_backoff():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    assert 100 < retry_after_seconds(later) <= 120
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0
    assert retry_delay(1, 5, 600, retry_after=30) == 30
    delays = [retry_delay(attempt, 5, 600) for attempt in (1, 2, 3, 10)]
    assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10 and 10 <= delays[2] <= 20 and 300 <= delays[3] <= 600


# --- replay ----------------------------------------------------------------------------------------

def test_replay_of_a_range_redelivers_those_events_in_order(served, app_server):
    zaphook = served()
    destination = add_destination(zaphook, app_server.url + "/hook", format="normalised")
    answers = [post_webhook(zaphook, plain_message(f"RANGE{n}", f"message {n}"), "/webhook/receive-message/")
               for n in range(1, 5)]
    delivered(app_server, 4)
    events = {item["id"]: item for item in requests.get(f"{zaphook.url}/api/events", timeout=10).json()["items"]}
    since, until = events[answers[1]["event_id"]]["received_at"], events[answers[2]["event_id"]]["received_at"]

    response = requests.post(f"{zaphook.url}/api/forward/replay", timeout=10,
                             json={"destination": destination["name"], "since": since, "until": until})
    assert response.status_code == 202, response.text
    assert response.json() == {"destination": destination["name"], "events": 2, "queued": 2}

    hits = delivered(app_server, 6)
    first_time, again = hits[:4], hits[4:]
    assert [hit.json()["data"]["id"] for hit in again] == ["RANGE2", "RANGE3"]
    assert [hit.headers["webhook-id"] for hit in again] == [hit.headers["webhook-id"] for hit in first_time[1:3]]

    one = requests.post(f"{zaphook.url}/api/forward/replay", timeout=10,
                        json={"destination": destination["id"], "event_id": answers[0]["event_id"]}).json()
    assert one["queued"] == 1
    assert delivered(app_server, 7)[-1].json()["data"]["id"] == "RANGE1"
    panel = requests.get(f"{zaphook.url}/api/forward/events/{answers[0]['event_id']}", timeout=10).json()
    assert [d["replay"] for d in panel["destinations"][0]["deliveries"]] == [False, True]


def test_replay_refuses_what_it_cannot_do(served, app_server):
    zaphook = served()
    destination = add_destination(zaphook, app_server.url + "/hook")
    cases = [({"destination": "nobody", "event_id": 1}, 404, "forward.no_destination"),
             ({"destination": destination["id"]}, 400, "forward.replay_needs_selection"),
             ({"destination": destination["id"], "since": "yesterday"}, 400, "forward.bad_time"),
             ({"destination": destination["id"], "event_id": "1"}, 400, "forward.bad_event_ids")]
    for body, status, code in cases:
        response = requests.post(f"{zaphook.url}/api/forward/replay", json=body, timeout=10)
        assert (response.status_code, response.json()["code"]) == (status, code), body


# --- restarts, and the provider's answer ---------------------------------------------------------

def test_a_restart_in_the_middle_of_retries_loses_nothing(tmp_path, app_server):
    from tests.test_server_process import free_port, start_server, stop_with_ctrl_c

    failing = threading.Event()
    failing.set()

    def app_route(recorded):
        recorded.answered = 503 if failing.is_set() else 200
        return Reply(recorded.answered, b"down" if failing.is_set() else b"ok")
    app_server.route("POST", "/hook", app_route)
    port = free_port()
    settings = dict(FORWARD_URL=app_server.url + "/hook", FORWARD_FORMAT="normalised", FORWARD_RETRY_SECONDS="0.05",
                    FORWARD_RETRY_MAX_SECONDS="0.1", TUNNEL="off")
    process = start_server(tmp_path, port, **settings)
    try:
        for number in range(1, 4):
            response = requests.post(f"http://127.0.0.1:{port}/webhook/receive-message/?wait=1",
                                     json=plain_message(f"RESTART{number}", f"message {number}"), timeout=10)
            assert response.json()["outcome"] == "processed"
        wait_until(lambda: len(app_server.hits("POST", "/hook")) >= 5, "retries under way")
    finally:
        log = stop_with_ctrl_c(process)
    assert "Traceback" not in log
    tried = len(app_server.hits("POST", "/hook"))
    assert all(getattr(hit, "answered", 503) == 503 for hit in app_server.hits("POST", "/hook"))

    failing.clear()
    process = start_server(tmp_path, port, **settings)
    try:
        ok = delivered(app_server, 3)
    finally:
        stop_with_ctrl_c(process)
    assert [hit.json()["data"]["id"] for hit in ok] == ["RESTART1", "RESTART2", "RESTART3"]
    assert len(app_server.hits("POST", "/hook")) > tried


def acknowledgement_times(zaphook: ServedApp, prefix: str, count: int) -> list[float]:
    session = requests.Session()
    times = []
    for number in range(count):
        started = time.perf_counter()
        response = session.post(f"{zaphook.url}/webhook/receive-message/", timeout=10,
                                json=plain_message(f"{prefix}{number}", "hi", chat=f"55119{number:08d}"))
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    session.close()
    return times


def test_a_slow_app_does_not_slow_the_webhooks_answers(served, app_server):
    release = threading.Event()

    def slow(recorded):
        release.wait(5)  # an app that takes its time over every webhook
        recorded.answered = 200
        return Reply(200, b"ok")
    app_server.route("POST", "/slow", slow)
    zaphook = served(FORWARD_TIMEOUT=10.0)
    try:
        add_destination(zaphook, app_server.url + "/slow", format="normalised")
        post_webhook(zaphook, plain_message("FIRST", "hi"), "/webhook/receive-message/")
        wait_until(lambda: app_server.hits("POST", "/slow"), "the slow app holding a delivery")
        with_slow_app = acknowledgement_times(zaphook, "SLOW", 60)  # all while the app holds its deliveries
    finally:
        release.set()
    # An answer that waited for the app would take its 5 s; a loaded machine's spikes stay far below.
    assert max(with_slow_app) < 2.5


# --- destinations: the API, the settings and the command line -----------------------------------------

def test_an_unnamed_destination_takes_the_first_free_app_name(served):
    zaphook = served()
    assert add_destination(zaphook, "http://localhost:3000/a", name="app-1")["name"] == "app-1"
    assert add_destination(zaphook, "http://localhost:3000/b")["name"] == "app-2"
    assert add_destination(zaphook, "http://localhost:3000/c", name="app-4")["name"] == "app-4"
    assert add_destination(zaphook, "http://localhost:3000/d")["name"] == "app-3"


def test_the_api_adds_lists_changes_and_removes_destinations_and_says_what_is_wrong(served, app_server):
    zaphook = served()
    base = f"{zaphook.url}/api/forward/destinations"
    created = add_destination(zaphook, "http://localhost:3000/webhook/", name="bot", format="normalized",
                              types="message.received,reaction", provider="evolution")
    assert created["url"] == "http://localhost:3000/webhook/" and created["format"] == "normalised"
    assert created["types"] == ["message.received", "reaction"] and created["provider"] == "evolution"
    assert len(secret_key(created["secret"])) == 32
    assert requests.get(f"{base}/bot", timeout=10).json()["id"] == created["id"]
    changed = requests.patch(f"{base}/{created['id']}", json={"enabled": False, "types": []}, timeout=10).json()
    assert changed["enabled"] is False and changed["types"] == []
    listed = requests.get(base, timeout=10).json()
    assert [item["name"] for item in listed["items"]] == ["bot"] and listed["status"]["running"] is True

    bad = [({"url": "ftp://x"}, "forward.bad_url"), ({"url": "http://user:pw@localhost/"}, "forward.bad_url"),
           ({"url": "http://localhost/", "format": "xml"}, "forward.bad_format"),
           ({"url": "http://localhost/", "types": ["message.exploded"]}, "forward.bad_type"),
           ({"url": "http://localhost/", "secret": "plain"}, "forward.bad_secret"),
           ({"url": "http://localhost/", "provider": "telegram"}, "forward.bad_provider"),
           ({"url": "http://localhost/", "name": "bot"}, "forward.name_taken")]
    for body, code in bad:
        response = requests.post(base, json=body, timeout=10)
        assert response.status_code in (400, 409) and response.json()["code"] == code, (body, response.text)
    refused = requests.post(base, json={"url": "http://localhost/", "types": ["message.exploded"]}, timeout=10).json()
    assert refused["params"]["type"] == "message.exploded" and "message.exploded" in refused["error"]
    assert requests.delete(f"{base}/bot", timeout=10).status_code == 204
    assert requests.get(f"{base}/bot", timeout=10).json()["code"] == "forward.no_destination"
    schema = requests.get(f"{zaphook.url}/api/forward/schema", timeout=10)
    assert schema.json()["$id"] == "urn:zaphook:event:v1"


def test_forward_url_in_the_settings_is_a_destination_kept_in_step_with_them(make_app):
    secret = "whsec_" + base64.b64encode(b"s" * 24).decode()
    app = make_app(FORWARD_URL="http://localhost:3000/hook", FORWARD_FORMAT="normalised", FORWARD_SECRET=secret)
    client = app.test_client()
    [env] = client.get("/api/forward/destinations").get_json()["items"]
    assert (env["name"], env["url"], env["format"], env["secret"], env["origin"]) == (
        "env", "http://localhost:3000/hook", "normalised", secret, "env")
    assert client.delete("/api/forward/destinations/env").get_json()["code"] == "forward.env_managed"
    assert client.patch("/api/forward/destinations/env", json={"url": "http://x/"}).get_json()["code"] == \
        "forward.env_managed"

    moved = make_app(FORWARD_URL="http://localhost:4000/hook").test_client()
    [env] = moved.get("/api/forward/destinations").get_json()["items"]
    assert env["url"] == "http://localhost:4000/hook" and env["format"] == "raw"
    assert env["secret"] == secret  # kept without FORWARD_SECRET: the app goes on verifying with it
    off = make_app().test_client()
    assert off.get("/api/forward/destinations").get_json()["items"][0]["enabled"] is False


def test_forward_url_without_a_secret_gets_one_generated_once(make_app):
    first = make_app(FORWARD_URL="http://localhost:3000/hook").test_client()
    [env] = first.get("/api/forward/destinations").get_json()["items"]
    assert len(secret_key(env["secret"])) == 32
    again = make_app(FORWARD_URL="http://localhost:3000/hook").test_client()
    assert again.get("/api/forward/destinations").get_json()["items"][0]["secret"] == env["secret"]


@pytest.mark.parametrize("name, value, message", [
    ("FORWARD_URL", "localhost:3000", "FORWARD_URL must start with http:// or https://"),
    ("FORWARD_FORMAT", "xml", "FORWARD_FORMAT must be raw or normalised"),
])
def test_a_bad_forwarding_setting_stops_start_up_naming_it(name, value, message):
    from config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(environ={name: value})


def test_a_forward_secret_that_is_not_whsec_stops_start_up(make_app):
    from config import ConfigError
    import models

    try:
        with pytest.raises(ConfigError, match="FORWARD_SECRET must start with whsec_"):
            make_app(FORWARD_URL="http://localhost:3000/hook", FORWARD_SECRET="my-secret")
    finally:
        models.db.obj.close_all()  # the process would end here; the test goes on


def test_the_command_line_adds_lists_replays_and_removes(make_app, app_server, capsys, tmp_path, monkeypatch):
    import server

    database_url = make_app().config["DATABASE_URL"]
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in (("DATA_DIR", str(tmp_path / "data")), ("DATABASE_URL", database_url), ("TUNNEL", "off"),
                        ("FORWARD_URL", ""), ("FORWARD_SECRET", "")):
        monkeypatch.setenv(name, value)

    def run(*argv) -> tuple[int, str, str]:
        code = server.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("forward", "add", app_server.url + "/hook", "--name", "mine", "--format", "normalised")
    assert code == 0 and "added destination" in out and "whsec_" in out
    code, out, _ = run("forward", "list")
    assert code == 0 and "mine" in out and app_server.url in out
    code, out, _ = run("forward", "list", "--json")
    assert json.loads(out.splitlines()[0])["name"] == "mine"
    code, _, err = run("forward", "add", "nowhere", "--name", "bad")
    assert code == 2 and "url must be an http:// or https:// URL" in err

    # A webhook applied while no forwarder runs (the test client): its delivery waits in the queue.
    answer = make_app(**FAST).test_client().post(
        "/webhook/receive-message/", json=plain_message("CLI1", "from the CLI test")).get_json()
    assert answer["outcome"] == "processed"
    code, out, _ = run("forward", "replay", "--destination", "mine", "--event", str(answer["event_id"]))
    assert code == 0 and "queued 1 deliveries of 1 events for mine" in out
    code, _, err = run("forward", "replay", "--destination", "mine", "--since", "whenever")
    assert code == 2 and "--since must be an ISO 8601 time" in err

    zaphook = ServedApp(make_app(**FAST))  # what was queued while no server ran goes out when one starts
    try:
        first, replayed = delivered(app_server, 2)
        assert first.json()["data"]["id"] == replayed.json()["data"]["id"] == "CLI1"
        assert first.headers["webhook-id"] == replayed.headers["webhook-id"]
    finally:
        zaphook.close()
    code, out, _ = run("forward", "remove", "mine")
    assert code == 0 and "removed destination mine" in out
    code, out, _ = run("forward", "list")
    assert "no destinations" in out


def test_a_copy_of_a_payload_is_not_forwarded_twice(served, app_server):
    zaphook = served()
    add_destination(zaphook, app_server.url + "/hook", format="raw")
    payload = plain_message("ONCE", "only once")
    assert post_webhook(zaphook, payload, "/webhook/receive-message/")["outcome"] == "processed"
    assert post_webhook(zaphook, copy.deepcopy(payload), "/webhook/receive-message/")["outcome"] == "duplicate"
    post_webhook(zaphook, plain_message("AFTER", "next"), "/webhook/receive-message/")
    hits = delivered(app_server, 2)
    assert [json.loads(hit.body)["messageId"] for hit in hits] == ["ONCE", "AFTER"]
