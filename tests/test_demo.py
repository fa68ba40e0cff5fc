"""The demo: samples posted as today's traffic of demo instances (client "demo"), and removed as a whole."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import demo
import server
from config import SECRET_SETTINGS
from handlers import REGISTRY, normalise
from models import (
    DEMO_CLIENT, Campaign, CampaignContact, CampaignLog, Chat, Client, Contact, Instance, JidAlias, MediaFile,
    Message, MessageStatusChange, OptOut, Presence, WebhookEvent, utcnow,
)
from tests.helpers import load_sample

AUDIO = "evolution/v1_messages.upsert_audio_ptt_base64_converted.json"
TEXT = "evolution/v1_messages.upsert_text_incoming.json"
INSTANCE_TABLES = (WebhookEvent, Chat, Contact, Message, MessageStatusChange, Presence, JidAlias, MediaFile, Campaign,
                   CampaignContact, OptOut)


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """The command line on the ``app`` fixture's data dir and database, run from tmp_path (no stray .env)."""
    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_SETTINGS, "DATABASE_URL", "PUBLIC_URL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNNEL", "off")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    if os.environ.get("TEST_DATABASE_URL"):
        monkeypatch.setenv("DATABASE_URL", os.environ["TEST_DATABASE_URL"])
    return monkeypatch


def run(capsys, *argv):
    code = server.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def post(client, route: str, payload: dict, user_agent: str = "provider") -> dict:
    response = client.post(route, data=json.dumps(payload), content_type="application/json",
                           headers={"User-Agent": user_agent})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def declare_demo_instance(client, provider: str = "evolution") -> int:
    response = client.post("/api/instances", json={"provider": provider, "instance_id": demo.instance_id_for(provider),
                                                   "client": DEMO_CLIENT})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def rows_of(instance_ids: list[int]) -> dict:
    return {model.__name__: model.select().where(model.instance.in_(instance_ids)).count() for model in INSTANCE_TABLES}


# --- the samples, made current --------------------------------------------------------------------


def test_every_sample_lands_on_its_providers_demo_instance_timed_now():
    now = utcnow()
    old = 0
    for sample in demo.load_samples():
        hint = REGISTRY.hint_for_path(sample.route)
        before = normalise(sample.payload, hint)
        request = demo.demo_request(sample, now)
        after = normalise(json.loads(request.body), hint)
        assert (after.provider, after.instance_id) == (request.provider, f"demo-{request.provider}"), sample.kind
        assert after.kind == before.kind and after.ignored_reason == before.ignored_reason, sample.kind
        assert [getattr(event, "message_id", None) for event in after.events] == \
            [getattr(event, "message_id", None) for event in before.events]
        for event, original in zip(after.events, before.events, strict=True):
            if getattr(original, "timestamp", None) is not None:
                old += original.timestamp < now - timedelta(days=30)
                assert abs((event.timestamp - now).total_seconds()) < 2, (sample.kind, event)
    assert old >= 10  # what the samples said before: months and years ago
    assert set(demo.FIELDS) >= {request.provider for request in map(lambda s: demo.demo_request(s, now),
                                                                        demo.load_samples())}


@pytest.mark.parametrize("old, expected", [
    (1746132673, 1_750_000_000), ("1746132673", "1750000000"), (1757390383001, 1_750_000_000_000),
    ("1790851397044", "1750000000000"), ("2025-01-15T10:31:00Z", "2025-06-15T15:06:40.000Z"),
    (None, None), (True, True),
])
def test_now_is_written_the_way_the_sample_wrote_its_time(old, expected):
    now = datetime.fromtimestamp(1_750_000_000, tz=timezone.utc).replace(tzinfo=None)
    assert demo.now_like(old, now) == expected


def test_the_demo_command_posts_to_demo_instances_that_count_as_today(cli_env, capsys, live_server, app):
    code, out, err = run(capsys, "demo", "--url", live_server)
    assert code == 0, err
    assert "-> HTTP" not in out and "demo --clear" in out.splitlines()[-1]
    client = app.test_client()
    items = client.get("/api/instances").get_json()["items"]
    assert {(item["provider"], item["instance_id"]) for item in items} == {
        (name, f"demo-{name}") for name in ("wapi", "plain", "evolution", "waha", "meta", "zapi", "betzap")}
    assert all(item["client"] == DEMO_CLIENT and item["demo"] and item["name"].startswith("Demo ") for item in items)
    midnight = datetime.combine(utcnow().date(), datetime.min.time()).isoformat() + "Z"
    overview = client.get(f"/api/overview?since={midnight}").get_json()["instances"]
    assert sum(item["messages_today"]["in"] + item["messages_today"]["out"] for item in overview) >= 10
    for item in overview:
        seen = datetime.fromisoformat(item["last_event_at"].rstrip("Z"))
        assert utcnow() - seen < timedelta(minutes=1), item

    code, out, _ = run(capsys, "simulate", "--provider", "zapi", "--url", live_server)  # simulate is the demo too
    assert code == 0 and "duplicate" in out
    assert len(client.get("/api/instances").get_json()["items"]) == 7


# --- clearing -------------------------------------------------------------------------------------


def media_row(instance_id: int, message_id: str) -> MediaFile:
    return (MediaFile.select().join(Message, on=(MediaFile.message == Message.id))
            .where((MediaFile.instance == instance_id) & (Message.provider_message_id == message_id)).get())


def give_a_stored_file(app, row: MediaFile, name: str) -> Path:
    """As a finished download leaves it: a file under MEDIA_DIR, named by the row."""
    relative = Path(f"cliente_{row.instance.client_id}") / f"instance_{row.instance.external_id}" / "audio" / name
    path = Path(app.config["MEDIA_DIR"]) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"OggS fake audio")
    MediaFile.update(local_path=str(relative), state="done").where(MediaFile.id == row.id).execute()
    return path


def audio(instance: str, message_id: str, salt: bytes = b"") -> dict:
    payload = load_sample(AUDIO)
    payload["instance"] = instance
    payload["data"]["key"]["id"] = message_id
    if salt:
        message = payload["data"]["message"]
        message["base64"] = base64.b64encode(base64.b64decode(message["base64"]) + salt).decode()
    return payload


def test_clearing_removes_every_row_and_file_of_the_demo_and_nothing_else(app):
    client = app.test_client()
    demo_id = declare_demo_instance(client)  # first: its id is not the highest once the real one exists
    real_text = post(client, "/api/webhooks/evolution/", load_sample(TEXT))
    post(client, "/api/webhooks/evolution/", audio("tigo1", "REALAUDIO1"))
    shared = post(client, "/api/webhooks/evolution/", audio("demo-evolution", "DEMOAUDIO1"))  # the same blob
    post(client, "/api/webhooks/evolution/", audio("demo-evolution", "DEMOAUDIO2", salt=b"demo only"))
    text = load_sample(TEXT)
    text["instance"] = "demo-evolution"
    post(client, "/api/webhooks/evolution/", text)
    real_id = Instance.find("evolution", "tigo1").id
    assert client.post("/api/campaigns", json={"name": "demo run", "instance_id": demo_id, "text": "Oi",
                                               "contacts": [{"phone": "5511987654321", "name": "Ana"}]}).status_code == 201
    OptOut.create(phone="5511900000000", instance=demo_id, word="SAIR")
    with app.app_context():
        real_file = give_a_stored_file(app, media_row(real_id, "REALAUDIO1"), "real.ogg")
        demo_file = give_a_stored_file(app, media_row(demo_id, "DEMOAUDIO1"), "demo.ogg")
        blobs = {row.message.provider_message_id: Path(app.config["DATA_DIR"]) / row.inline_path
                 for row in MediaFile.select(MediaFile, Message).join(Message)}
    assert blobs["REALAUDIO1"] == blobs["DEMOAUDIO1"] != blobs["DEMOAUDIO2"]
    assert all(path.is_file() for path in blobs.values())
    # A real event that names a demo event (a duplicate of it) keeps itself, without the link.
    WebhookEvent.update(duplicate_of=shared["event_id"]).where(WebhookEvent.id == real_text["event_id"]).execute()
    CampaignLog.insert(campaign=Campaign.get().id, action="created", at=utcnow(), event=shared["event_id"]).execute()
    real_before = rows_of([real_id])
    assert all(rows_of([demo_id])[name] for name in ("WebhookEvent", "Chat", "Message", "MediaFile", "Campaign",
                                                     "CampaignContact", "OptOut"))

    answer = client.delete("/api/demo")
    assert answer.status_code == 200
    removed = answer.get_json()["removed"]
    assert (removed["instances"], removed["media"], removed["campaigns"], removed["opt_outs"]) == (1, 2, 1, 1)
    assert removed["events"] == 3 and removed["messages"] == 3

    assert set(rows_of([demo_id]).values()) == {0}
    assert Instance.get_or_none(Instance.id == demo_id) is None
    assert CampaignLog.select().count() == 0
    assert Client.get_or_none(Client.name == DEMO_CLIENT) is None
    assert rows_of([real_id]) == real_before
    assert WebhookEvent.get_by_id(real_text["event_id"]).duplicate_of_id is None
    assert real_file.is_file() and blobs["REALAUDIO1"].is_file()  # the blob is the real message's too
    assert not demo_file.exists() and not blobs["DEMOAUDIO2"].exists()
    assert not demo_file.parent.parent.exists()  # the demo instance's empty folders went too
    assert client.get("/api/messages").get_json()["items"][0]["instance_id"] == "tigo1"

    assert client.delete("/api/demo").get_json() == {"removed": {}}
    # The server forgot the deleted instance: a new demo lands on a new one.
    new_id = declare_demo_instance(client)
    assert post(client, "/api/webhooks/evolution/", text)["outcome"] == "processed"
    assert Message.select().where(Message.instance == new_id).count() == 1


def test_clearing_also_removes_what_an_older_simulate_left_under_the_default_client(app):
    client = app.test_client()
    for sample in demo.load_samples("zapi"):  # as simulate posted them before the demo had its client
        post(client, sample.route, sample.payload, user_agent=demo.USER_AGENT)
    wapi = next(sample for sample in demo.load_samples("wapi") if sample.kind == "received")
    post(client, wapi.route, wapi.payload, user_agent=demo.USER_AGENT)
    real = dict(wapi.payload, messageId="REAL0001")
    post(client, wapi.route, real)  # the same instance id also heard from a real W-API: not the demo's
    assert client.delete("/api/demo").get_json()["removed"]["instances"] == 1
    left = client.get("/api/instances").get_json()["items"]
    assert [(item["provider"], item["instance_id"]) for item in left] == [("wapi", "CYAJQL-HIIWWG-S6RU9I")]


def test_only_the_admin_may_clear_the_demo(make_app):
    app = make_app(ADMIN_TOKEN="admin-token-for-tests-0123456789")
    client = app.test_client()
    declare_demo_instance(client)
    through_the_internet = {"X-Forwarded-For": "203.0.113.9"}
    assert client.delete("/api/demo", headers=through_the_internet).status_code == 404
    assert client.delete("/api/demo", headers={"Origin": "https://elsewhere.example"}).status_code == 403
    assert Instance.select().count() == 1
    answer = client.delete("/api/demo", headers={**through_the_internet,
                                                 "Authorization": "Bearer admin-token-for-tests-0123456789"})
    assert answer.status_code == 200 and answer.get_json()["removed"]["instances"] == 1


def test_demo_clear_asks_the_running_server_and_works_without_one(cli_env, capsys, live_server, app, tmp_path):
    assert run(capsys, "demo", "--provider", "meta", "--url", live_server)[0] == 0
    cli_env.setenv("PORT", live_server.rsplit(":", 1)[1])
    code, out, err = run(capsys, "demo", "--clear")  # through the server on PORT, whose caches forget
    assert code == 0, err
    assert out.startswith("removed the demo data: instances: 1, events: 4, messages: 3")
    assert run(capsys, "demo", "--provider", "meta", "--url", live_server)[0] == 0
    assert app.test_client().get("/api/instances").get_json()["items"][0]["instance_id"] == "demo-meta"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code, _, err = run(capsys, "demo", "--clear", "--url", f"http://127.0.0.1:{closed}")
    assert code == 1 and err.startswith("zaphook: no zaphook answering at") and len(err.splitlines()) == 1
    cli_env.setenv("PORT", str(closed))  # no server on PORT: the database directly
    code, out, err = run(capsys, "demo", "--clear")
    assert code == 0, err
    assert out.startswith("removed the demo data: instances: 1, events: 4")
    code, out, _ = run(capsys, "demo", "--clear")
    assert code == 0 and out.strip() == "no demo data to remove"


def test_the_demo_works_where_unknown_instances_are_refused(cli_env, capsys, make_app):
    from tests.helpers import ServedApp

    app = make_app(ALLOW_UNKNOWN_INSTANCES="false")
    served = ServedApp(app)
    try:
        code, out, err = run(capsys, "demo", "--provider", "evolution", "--url", served.url)
    finally:
        served.close()
    assert code == 0, err
    assert all("-> processed" in line for line in out.splitlines()[:-1])  # its instances are declared first
