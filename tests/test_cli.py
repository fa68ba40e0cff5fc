"""The command line: register (against fake providers), simulate, events, replay, export/import, instances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cli
import server
from config import SECRET_SETTINGS
from handlers.wapi import WEBHOOK_KINDS as WAPI_KINDS
from tests.fakes import FakeServer, json_reply
from tests.helpers import AppliedWebhooksClient

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(cli.SAMPLES_DIR)
ENV_NAMES = (*SECRET_SETTINGS, "DATABASE_URL", "PUBLIC_URL", "WAPI_BASE_URL", "EVOLUTION_BASE_URL", "PORT",
             "REGISTER_WEBHOOKS", "META_GRAPH_URL")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment on a temporary data dir (SQLite), run from tmp_path (no stray .env)."""
    monkeypatch.chdir(tmp_path)
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNNEL", "off")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))

    def use(data_dir: Path) -> None:
        monkeypatch.setenv("DATA_DIR", str(data_dir))

    return use


@pytest.fixture
def fake():
    server_ = FakeServer()
    yield server_
    server_.close()


def run(capsys, *argv):
    code = server.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def open_app(data_dir: Path, **overrides):
    app = server.create_app({"DATA_DIR": str(data_dir), "TESTING": True, "MEDIA_WORKERS": 0, "TUNNEL": "off",
                             "DATABASE_URL": "sqlite:///" + str(data_dir / "zaphook.db"), **overrides})
    app.test_client_class = AppliedWebhooksClient
    return app


def close_app(app) -> None:
    app.extensions["zaphook.media"].shutdown()
    app.extensions["zaphook.campaigns"].shutdown()
    app.extensions["zaphook.database"].close_all()


def seed(data_dir: Path, extra: list | None = None) -> None:
    """Store every simulate sample (and extra (route, payload) pairs) as if providers posted them."""
    app = open_app(data_dir)
    client = app.test_client()
    for sample in json.loads((SAMPLES / "manifest.json").read_text()):
        assert client.post(sample["route"], data=(SAMPLES / sample["file"]).read_bytes(),
                           content_type="application/json").status_code == 200
    for route, payload in extra or []:
        client.post(route, data=json.dumps(payload), content_type="application/json")
    close_app(app)


def messages(data_dir: Path) -> list:
    app = open_app(data_dir)
    items = app.test_client().get("/api/messages?limit=500").get_json()["items"]
    close_app(app)
    return sorted((m["instance_id"], m["provider_message_id"], m["direction"], m["text"], m["status"]) for m in items)


# --- register -------------------------------------------------------------------------


def test_register_wapi_sets_every_webhook_url(env, fake, capsys, monkeypatch):
    monkeypatch.setenv("WEBHOOK_TOKEN", "hooktoken")
    for kind in WAPI_KINDS:
        fake.serve("PUT", f"/v1/webhook/update-webhook-{kind}", json_reply({"error": False, "message": "ok"}))
    assert run(capsys, "instances", "add", "--provider", "wapi", "--instance", "INST1",
               "--token", "wapi-secret", "--base-url", fake.url)[0] == 0

    code, out, err = run(capsys, "register", "--provider", "wapi", "--instance", "INST1",
                         "--base-url", "https://hub.example.com/")
    assert code == 0, err
    expected = {
        "received": "/webhook/receive-message/", "delivery": "/webhook/send-message/",
        "message-status": "/webhook/message-status/", "chat-presence": "/webhook/chat-presence/",
        "connected": "/webhook/connect/", "disconnected": "/webhook/disconnect/",
    }
    for kind, path in expected.items():
        hits = fake.hits("PUT", f"/v1/webhook/update-webhook-{kind}")
        assert len(hits) == 1
        assert hits[0].query == {"instanceId": ["INST1"]}
        assert hits[0].headers["authorization"] == "Bearer wapi-secret"
        assert hits[0].json() == {"value": f"https://hub.example.com{path}?token=hooktoken"}
        assert f"https://hub.example.com{path}?token=hooktoken" in out
    assert out.count("-> ok HTTP 200") == 6
    assert "wapi-secret" not in out


def test_register_wapi_refused_is_a_failed_operation(env, fake, capsys, monkeypatch):
    monkeypatch.setenv("WAPI_BASE_URL", fake.url)
    monkeypatch.setenv("WAPI_TOKEN", "wrong")
    for kind in WAPI_KINDS:
        fake.serve("PUT", f"/v1/webhook/update-webhook-{kind}", json_reply({"error": True, "message": "bad token"}, 401))
    code, out, err = run(capsys, "register", "--provider", "wapi", "--instance", "X", "--base-url", "https://h.example")
    assert code == 1
    assert "REFUSED HTTP 401" in out and "bad token" in out
    assert err.strip().splitlines() == ["zaphook: wapi refused 6 of 6 webhook settings"]


def test_register_evolution_nested_form_accepted(env, fake, capsys, monkeypatch):
    monkeypatch.setenv("EVOLUTION_BASE_URL", fake.url)
    monkeypatch.setenv("EVOLUTION_API_KEY", "evo-key")
    monkeypatch.setenv("PUBLIC_URL", "https://pub.example.com")
    fake.serve("POST", "/webhook/set/my-inst", json_reply({"webhook": {"enabled": True}}, 201))
    code, out, err = run(capsys, "register", "--provider", "evolution", "--instance", "my-inst")
    assert code == 0, err
    hits = fake.hits("POST", "/webhook/set/my-inst")
    assert len(hits) == 1
    assert hits[0].headers["apikey"] == "evo-key"
    body = hits[0].json()["webhook"]
    assert body["url"] == "https://pub.example.com/api/webhooks/evolution/"
    assert body["enabled"] is True and body["byEvents"] is False and "MESSAGES_UPSERT" in body["events"]
    assert "-> ok HTTP 201 [nested (2.2+)]" in out


def test_register_evolution_falls_back_to_flat_form(env, fake, capsys, monkeypatch):
    monkeypatch.setenv("EVOLUTION_BASE_URL", fake.url)
    monkeypatch.setenv("EVOLUTION_API_KEY", "evo-key")
    fake.serve_sequence("POST", "/webhook/set/old", [
        lambda: json_reply({"status": 400, "error": "Bad Request", "response": {"message": ["webhook is required"]}}, 400),
        lambda: json_reply({"enabled": True, "url": "x"}, 201),
    ])
    code, out, err = run(capsys, "register", "--provider", "evolution", "--instance", "old",
                         "--base-url", "https://h.example")
    assert code == 0, err
    first, second = fake.hits("POST", "/webhook/set/old")
    assert "webhook" in first.json()
    assert second.json()["url"] == "https://h.example/api/webhooks/evolution/"
    assert second.json()["enabled"] is True and "webhookByEvents" in second.json()
    assert "[flat (≤2.1)]" in out and "tried: nested (2.2+): 400, flat (≤2.1): 201" in out


def test_register_meta_prints_callback_and_verify_token(env, capsys, monkeypatch):
    monkeypatch.setenv("META_VERIFY_TOKEN", "verify-me")
    code, out, _ = run(capsys, "register", "--provider", "meta", "--base-url", "https://h.example")
    assert code == 0
    assert "Callback URL:  https://h.example/webhook/" in out and "Verify token:  verify-me" in out
    monkeypatch.delenv("META_VERIFY_TOKEN")
    code, _, err = run(capsys, "register", "--provider", "meta", "--base-url", "https://h.example")
    assert code == 2 and err.startswith("zaphook: META_VERIFY_TOKEN is not set")


@pytest.mark.parametrize("tunnel", [
    {"state": "open", "public_url": "https://t.example"},  # the process on PORT owns the tunnel
    {"state": "elsewhere", "public_url": None},            # another process of the deployment owns it
])
def test_register_without_base_url_uses_the_running_deployments_public_url(env, fake, capsys, monkeypatch, tunnel):
    running = FakeServer()  # stands in for the zaphook already running on PORT (/status as status.py writes it)
    running.serve("GET", "/status", json_reply({"tunnel": tunnel, "public_url": "https://t.example"}))
    monkeypatch.setenv("PORT", running.url.rsplit(":", 1)[1])
    for kind in WAPI_KINDS:
        fake.serve("PUT", f"/v1/webhook/update-webhook-{kind}", json_reply({"error": False}))
    run(capsys, "instances", "add", "--provider", "wapi", "--instance", "I1", "--token", "t", "--base-url", fake.url)
    try:
        code, out, err = run(capsys, "register", "--provider", "wapi", "--instance", "I1")
    finally:
        running.close()
    assert code == 0, err
    assert fake.hits("PUT", "/v1/webhook/update-webhook-received")[0].json() == {
        "value": "https://t.example/webhook/receive-message/"}


def test_register_bad_input(env, capsys, monkeypatch):
    closed = FakeServer()
    monkeypatch.setenv("PORT", closed.url.rsplit(":", 1)[1])  # nothing listens there any more
    closed.close()
    code, _, err = run(capsys, "register", "--provider", "wapi", "--instance", "X")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--base-url" in err
    monkeypatch.setenv("PUBLIC_URL", "https://h.example")
    code, _, err = run(capsys, "register", "--provider", "wapi", "--instance", "X")
    assert code == 2 and "no API token" in err and "WAPI_TOKEN" in err
    code, _, err = run(capsys, "register", "--provider", "evolution")
    assert code == 2 and "--instance is required" in err
    with pytest.raises(SystemExit) as exited:
        server.main(["register", "--provider", "nope"])
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_register_all_registers_instances_with_credentials(env, fake, capsys, tmp_path):
    fake.serve("POST", "/webhook/set/evo1", json_reply({}, 201))
    for kind in WAPI_KINDS:
        fake.serve("PUT", f"/v1/webhook/update-webhook-{kind}", json_reply({"error": False}))
    run(capsys, "instances", "add", "--provider", "evolution", "--instance", "evo1", "--token", "k", "--base-url", fake.url)
    run(capsys, "instances", "add", "--provider", "wapi", "--instance", "w1", "--token", "t", "--base-url", fake.url)
    run(capsys, "instances", "add", "--provider", "evolution", "--instance", "nocreds")
    settings = server.load_settings()
    results = cli.register_all(settings, "https://h.example")
    assert [(r["instance"], r["ok"]) for r in results] == [("evo1", True)] + [("w1", True)] * 6 + [("nocreds", False)]
    assert "no API credentials" in results[-1]["answer"]
    assert len(fake.hits("POST", "/webhook/set/evo1")) == 1

    app = open_app(tmp_path / "data")  # with the running app too
    try:
        assert sum(r["ok"] for r in cli.register_all(app, "https://h.example")) == 7
    finally:
        close_app(app)


# --- events, replay, instances --------------------------------------------------------------


def test_events_filters(env, capsys, tmp_path):
    seed(tmp_path / "data")
    code, out, _ = run(capsys, "events", "--json", "--limit", "500")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(json.loads((SAMPLES / "manifest.json").read_text()))
    code, out, _ = run(capsys, "events", "--json", "--provider", "meta")
    assert {json.loads(line)["provider"] for line in out.splitlines()} == {"meta"}
    code, out, _ = run(capsys, "events", "--json", "--kind", "connection", "--instance", "instance_123")
    assert [json.loads(line)["kind"] for line in out.splitlines()] == ["connection", "connection"]
    code, out, _ = run(capsys, "events", "--limit", "2")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["id", "received_at", "provider"]
    assert len(out.splitlines()) == 3
    code, out, _ = run(capsys, "events", "--outcome", "failed")
    assert code == 0 and out.strip() == "no events"
    code, _, err = run(capsys, "events", "--outcome", "nope")
    assert code == 2 and err.startswith("zaphook: --outcome must be one of")


def test_replay(env, capsys, tmp_path):
    seed(tmp_path / "data")
    code, out, _ = run(capsys, "replay", "1")
    assert code == 0
    answer = json.loads(out)
    assert answer["event_id"] == 1 and answer["outcome"] == "processed"
    code, out, _ = run(capsys, "events", "--json", "--limit", "500")
    assert [json.loads(line)["replay_count"] for line in out.splitlines() if json.loads(line)["id"] == 1] == [1]
    code, _, err = run(capsys, "replay", "9999")
    assert code == 2 and err == "zaphook: no event 9999\n"
    with pytest.raises(SystemExit) as exited:
        server.main(["replay", "abc"])
    assert exited.value.code == 2


def test_instances_add_with_another_hosts_base_url_needs_that_hosts_token(env, capsys):
    code, _, err = run(capsys, "instances", "add", "--provider", "wapi", "--instance", "w", "--base-url",
                       "https://elsewhere.example")
    assert code == 2 and "--token" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "instances", "add", "--provider", "wapi", "--instance", "w", "--base-url",
                       "https://api.w-api.app/")  # the .env default host: its key may go there
    assert code == 0, out


def test_instances_add_and_list(env, capsys):
    code, out, _ = run(capsys, "instances", "list")
    assert code == 0 and out.strip() == "no instances"
    code, out, _ = run(capsys, "instances", "add", "--provider", "evolution", "--instance", "shop",
                       "--name", "Shop", "--token", "sekret", "--base-url", "https://evo.example/", "--client", "acme")
    assert code == 0 and out.startswith("added instance 1: evolution/shop")
    code, out, _ = run(capsys, "instances", "list", "--json")
    row = json.loads(out)
    assert (row["provider"], row["instance_id"], row["name"], row["client"], row["api_base_url"], row["has_api_token"]) \
        == ("evolution", "shop", "Shop", "acme", "https://evo.example", True)
    assert "sekret" not in out
    code, out, _ = run(capsys, "instances", "list")
    assert "shop" in out and "sekret" not in out
    code, _, err = run(capsys, "instances", "add", "--provider", "evolution", "--instance", "shop")
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "instances", "add", "--provider", "nope", "--instance", "x")
    assert code == 2 and "--provider must be one of" in err
    code, _, err = run(capsys, "instances", "add", "--provider", "wapi", "--instance", "x", "--base-url", "ftp://x")
    assert code == 2 and "--base-url" in err


# --- export and import --------------------------------------------------------------------------


def evolution_with_apikey(value: str) -> dict:
    payload = json.loads((SAMPLES / "evolution/01_v1_messages.upsert_text_incoming.json").read_text())
    payload["apikey"] = value
    payload["data"]["key"]["id"] = "SECRETTEST01"
    payload["server_url"] = f"https://evo.example/?apikey={value}"
    return payload


def test_export_import_round_trip(env, capsys, tmp_path):
    source, target = tmp_path / "a", tmp_path / "b"
    seed(source)
    env(source)
    code, _, err = run(capsys, "export", "-o", str(tmp_path / "day.jsonl"))
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "day.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert {"id", "received_at", "route", "method", "headers", "body", "body_encoding", "outcome"} <= set(lines[0])
    assert "export:" in err  # the progress counter (stderr is not a terminal here)

    env(target)
    code, out, err = run(capsys, "import", str(tmp_path / "day.jsonl"))
    assert code == 0, err
    assert out.startswith(f"imported {len(lines)} requests:")
    assert messages(target) == messages(source)
    assert len(messages(target)) > 5
    # received_at is kept from the capture
    code, out, _ = run(capsys, "events", "--json", "--limit", "500")
    imported = sorted(json.loads(line)["received_at"] for line in out.splitlines())
    assert imported == sorted(line["received_at"] for line in lines)

    # the same day again: dedupe works as live
    code, out, _ = run(capsys, "import", str(tmp_path / "day.jsonl"))
    assert code == 0 and "duplicate" in out
    assert messages(target) == messages(source)


def test_import_with_webhook_token_and_stdout_export(env, capsys, tmp_path, monkeypatch):
    seed(tmp_path / "a")
    env(tmp_path / "a")
    code, out, _ = run(capsys, "export")
    assert code == 0
    (tmp_path / "x.jsonl").write_text(out)
    env(tmp_path / "b")
    monkeypatch.setenv("WEBHOOK_TOKEN", "now-required")
    code, out, _ = run(capsys, "import", str(tmp_path / "x.jsonl"))
    assert code == 0 and "rejected" not in out
    assert messages(tmp_path / "b") == messages(tmp_path / "a")


def test_export_redacts_unless_with_secrets(env, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLUTION_API_KEY", "CONFIGUREDKEY99")
    seed(tmp_path / "data", [("/api/webhooks/evolution/", evolution_with_apikey("CONFIGUREDKEY99"))])
    code, redacted, _ = run(capsys, "export")
    assert code == 0
    assert "CONFIGUREDKEY99" not in redacted and "[redacted]" in redacted
    assert all(json.loads(line)["redacted"] is True for line in redacted.splitlines())
    code, full, _ = run(capsys, "export", "--with-secrets")
    assert code == 0 and "CONFIGUREDKEY99" in full
    assert all(json.loads(line)["redacted"] is False for line in full.splitlines())
    code, only, _ = run(capsys, "export", "--provider", "meta")
    assert {json.loads(line)["provider"] for line in only.splitlines()} == {"meta"}


def test_import_bad_input(env, capsys, tmp_path):
    code, _, err = run(capsys, "import", str(tmp_path / "missing.jsonl"))
    assert code == 2 and err.startswith("zaphook: cannot read") and len(err.splitlines()) == 1
    (tmp_path / "bad.jsonl").write_text('{"route": "/webhook/", "body": "{}"}\nnot json\n')
    code, _, err = run(capsys, "import", str(tmp_path / "bad.jsonl"))
    assert code == 2 and "line 2: not JSON" in err
    (tmp_path / "bad2.jsonl").write_text('{"body": "{}"}\n')
    code, _, err = run(capsys, "import", str(tmp_path / "bad2.jsonl"))
    assert code == 2 and "line 1: not an exported request" in err
    code, out, _ = run(capsys, "events")
    assert out.strip() == "no events"  # nothing imported from a bad file
    code, _, err = run(capsys, "export", "-o", str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert code == 2 and err.startswith("zaphook: cannot write")


def test_progress_is_clicks_bar_on_a_terminal_and_count_lines_elsewhere():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with cli.progress("import", 4, stream) as advance:
        for _ in range(4):
            advance(1)
    assert "import  [" + "#" * 36 + "]  4/4" in stream.getvalue()
    plain = io.StringIO()
    with cli.progress("export", 3000, plain) as advance:
        for _ in range(3000):
            advance(1)
    lines = plain.getvalue().splitlines()
    assert lines[0] == "export: 300/3000" and lines[-1] == "export: 3000/3000 done" and len(lines) == 10


# --- simulate -----------------------------------------------------------------------------------


def test_simulate_posts_every_sample_to_a_running_server(env, capsys, live_server, app):
    code, out, err = run(capsys, "simulate", "--url", live_server)
    assert code == 0, err
    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    assert len(out.splitlines()) == len(manifest) + 1
    assert "-> HTTP" not in out
    items = app.test_client().get("/api/messages?limit=500").get_json()["items"]
    ids = {item["provider_message_id"] for item in items}
    assert {"SIMWAPI0001", "SIMWAPI0002", "SIMEVO0001", "SIMEVO0002", "wamid.SIMMETA0001", "SIMPLAIN0001",
            "SIMWAHA0001", "SIMWAHA0002"} <= ids
    delivered = [item for item in items if item["provider_message_id"] == "SIMWAPI0002"]
    assert delivered[0]["direction"] == "out"
    ours = [item for item in items if item["provider_message_id"] == "SIMWAHA0002"]
    assert (ours[0]["direction"], ours[0]["status"]) == ("out", "read")  # WAHA's ack of it was simulated too

    code, out, _ = run(capsys, "simulate", "--provider", "meta", "--url", live_server)
    assert code == 0 and len(out.splitlines()) == 5 and "duplicate" in out


def test_simulate_without_a_server_fails_in_one_line(env, capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run(capsys, "simulate", "--url", f"http://127.0.0.1:{port}")
    assert code == 1 and err.startswith("zaphook: no zaphook answering at") and len(err.splitlines()) == 1
    code, _, err = run(capsys, "simulate", "--url", "ftp://x")
    assert code == 2


def test_simulate_samples_are_not_read_from_tests():
    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    assert set(cli.simulate_providers()) == {"wapi", "evolution", "waha", "zapi", "meta", "plain"}
    assert {item["provider"] for item in manifest} == set(cli.simulate_providers())
    for item in manifest:
        assert (SAMPLES / item["file"]).is_file()


@pytest.mark.parametrize("argv", [["bogus"], ["run", "--port", "x"], ["instances"], ["replay", "-3"]])
def test_every_usage_error_is_one_line_with_exit_code_2(env, capsys, argv):
    with pytest.raises(SystemExit) as exited:
        server.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("zaphook: ") and "--help" in err


def test_export_masks_secrets_inside_bodies_that_are_not_utf8(env, capsys, tmp_path, monkeypatch):
    import base64

    monkeypatch.setenv("EVOLUTION_API_KEY", "CONFIGUREDKEY99")
    app = open_app(tmp_path / "data")
    body = b'{"apikey": "CONFIGUREDKEY99", "junk": "\xff\xfe"}'  # not UTF-8: stored as base64
    assert app.test_client().post("/webhook/", data=body, content_type="application/json").status_code == 400
    close_app(app)
    code, redacted, _ = run(capsys, "export")
    assert code == 0
    line = json.loads(redacted.splitlines()[-1])
    assert line["body_encoding"] == "base64"
    assert base64.b64decode(line["body"]) == body.replace(b"CONFIGUREDKEY99", b"[redacted]")
    code, full, _ = run(capsys, "export", "--with-secrets")
    assert base64.b64decode(json.loads(full.splitlines()[-1])["body"]) == body


# --- Windows consoles: UTF-8 out whatever the code page, UTF-16 in --------------------------------------

ACCENTED = "Olá, João! Promoção de verão ☀️🎉, ação já"


def store_accented(data_dir: Path) -> None:
    """A message with Portuguese accents and emoji, posted as providers post it: raw UTF-8."""
    payload = json.loads((SAMPLES / "evolution/01_v1_messages.upsert_text_incoming.json").read_text())
    payload["data"]["key"]["id"] = "ACCENTS01"
    payload["data"]["pushName"] = "Conceição 🌻"
    payload["data"]["message"]["conversation"] = ACCENTED
    app = open_app(data_dir)
    response = app.test_client().post("/api/webhooks/evolution/", data=json.dumps(payload, ensure_ascii=False).encode(),
                                      content_type="application/json")
    assert response.status_code == 200
    close_app(app)


def server_py(data_dir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DATA_DIR": str(data_dir), "TUNNEL": "off", **env}
    environment.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, str(ROOT / "server.py"), *argv], cwd=data_dir.parent, env=environment,
                          capture_output=True, timeout=60)


def test_a_cp1252_console_gets_utf8_and_an_export_that_survives_any_code_page(env, tmp_path):
    data = tmp_path / "data"
    store_accented(data)
    assert run_instances_add(data, "Loja São João 🛍️").returncode == 0

    exported = server_py(data, "export", PYTHONIOENCODING="cp1252")
    assert exported.returncode == 0, exported.stderr.decode("utf-8", "replace")
    text = exported.stdout.decode("ascii")  # every other character escaped: no code page can garble it
    (line,) = [json.loads(item) for item in text.splitlines() if "ACCENTS01" in item]
    assert json.loads(line["body"])["data"]["message"]["conversation"] == ACCENTED

    to_file = server_py(data, "export", "--output", str(tmp_path / "day.jsonl"), PYTHONIOENCODING="cp1252")
    assert to_file.returncode == 0, to_file.stderr.decode("utf-8", "replace")
    assert ACCENTED in (tmp_path / "day.jsonl").read_text(encoding="utf-8")  # a file is plain UTF-8

    listed = server_py(data, "instances", "list", PYTHONIOENCODING="cp1252")
    assert listed.returncode == 0, listed.stderr.decode("utf-8", "replace")
    assert "Loja São João 🛍️" in listed.stdout.decode("utf-8")
    as_json = server_py(data, "instances", "list", "--json", PYTHONIOENCODING="cp1252")
    assert "Loja São João 🛍️" in as_json.stdout.decode("utf-8")


def run_instances_add(data: Path, name: str) -> subprocess.CompletedProcess:
    return server_py(data, "instances", "add", "--provider", "wapi", "--instance", "loja", "--name", name,
                     PYTHONIOENCODING="cp1252")


def accented_texts(data_dir: Path) -> list:
    return [text for (_, message_id, _, text, _) in messages(data_dir) if message_id == "ACCENTS01"]


@pytest.mark.parametrize("form", ["stdout", "output", "stdout in UTF-16 (PowerShell 5.1's >)",
                                  "stdout through PowerShell 5.1 on an OEM console", "file with a UTF-8 BOM"])
def test_what_export_wrote_imports_again_with_accents_and_emoji(env, capsys, tmp_path, form):
    source, target = tmp_path / "a", tmp_path / "b"
    store_accented(source)
    env(source)
    written = tmp_path / "day.jsonl"
    if form == "output":
        assert run(capsys, "export", "--output", str(written))[0] == 0
    else:
        code, out, _ = run(capsys, "export")
        assert code == 0
        data = out.encode("utf-8")
        if form.startswith("stdout in UTF-16"):
            data = b"\xff\xfe" + out.encode("utf-16-le")
        elif form.startswith("stdout through PowerShell"):
            data = b"\xff\xfe" + data.decode("cp850").encode("utf-16-le")  # decoded with the console's OEM page
        elif form == "file with a UTF-8 BOM":
            data = b"\xef\xbb\xbf" + data
        written.write_bytes(data)
    env(target)
    code, out, err = run(capsys, "import", str(written))
    assert code == 0, err
    assert out.startswith("imported 1 requests: 1 processed")
    assert accented_texts(target) == [ACCENTED] == accented_texts(source)


def test_import_refuses_text_in_another_encoding_in_one_line(env, capsys, tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes('{"route": "/webhook/", "body": "ação"}\n'.encode("latin-1"))
    code, _, err = run(capsys, "import", str(tmp_path / "latin1.jsonl"))
    assert code == 2 and len(err.splitlines()) == 1 and "neither UTF-8 nor UTF-16" in err


# --- events: times with their zone, providers checked --------------------------------------------------


def test_events_prints_local_times_with_their_offset(env, capsys, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        seed(tmp_path / "data")
        code, out, _ = run(capsys, "events", "--limit", "1")
        _, rows, _ = run(capsys, "events", "--limit", "1", "--json")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert code == 0
    received = json.loads(rows)["received_at"]  # UTC in JSON
    from datetime import datetime, timedelta, timezone

    local = datetime.fromisoformat(received.replace("Z", "+00:00")).astimezone(timezone(timedelta(hours=-3)))
    assert local.isoformat(sep=" ", timespec="seconds") in out.splitlines()[1]
    assert out.splitlines()[1].split()[2].endswith("-03:00")


def test_an_unknown_provider_is_refused_like_an_unknown_outcome(env, capsys, tmp_path):
    seed(tmp_path / "data")
    for command in ("events", "export"):
        code, _, err = run(capsys, command, "--provider", "evolutoin")
        assert code == 2 and len(err.splitlines()) == 1
        assert err.startswith("zaphook: --provider must be one of meta, evolution,") and "'evolutoin'" in err
    code, out, _ = run(capsys, "events", "--provider", "unknown")
    assert code == 0 and out.strip() == "no events"


# --- register's hint and instances set ----------------------------------------------------------------


def test_registers_hint_names_a_command_that_works_for_an_instance_a_webhook_created(env, fake, capsys, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("PUBLIC_URL", "https://h.example")
    seed(tmp_path / "data")  # the W-API sample created instance CYAJQL-HIIWWG-S6RU9I
    code, _, err = run(capsys, "register", "--provider", "wapi", "--instance", "CYAJQL-HIIWWG-S6RU9I")
    assert code == 2 and "no API token" in err and "WAPI_TOKEN" in err
    hint = err.split("`")[1]
    assert hint == "server.py instances set --provider wapi --instance CYAJQL-HIIWWG-S6RU9I --token <token>"

    for kind in WAPI_KINDS:
        fake.serve("PUT", f"/v1/webhook/update-webhook-{kind}", json_reply({"error": False}))
    code, out, err = run(capsys, *hint.split()[1:-1], "wapi-secret", "--base-url", fake.url)
    assert code == 0, err
    assert out.startswith("updated instance 1: wapi/CYAJQL-HIIWWG-S6RU9I (API base URL, API token)")
    code, out, err = run(capsys, "register", "--provider", "wapi", "--instance", "CYAJQL-HIIWWG-S6RU9I")
    assert code == 0, err
    assert fake.hits("PUT", "/v1/webhook/update-webhook-received")[0].headers["authorization"] == "Bearer wapi-secret"

    code, _, err = run(capsys, "register", "--provider", "wapi", "--instance", "never-seen")
    assert "`server.py instances add --provider wapi --instance never-seen --token <token>`" in err


def test_instances_set_keeps_each_credential_with_its_host(env, capsys, tmp_path):
    assert run(capsys, "instances", "add", "--provider", "wapi", "--instance", "w", "--token", "own",
               "--base-url", "https://elsewhere.example")[0] == 0
    code, _, err = run(capsys, "instances", "set", "--provider", "wapi", "--instance", "w",
                       "--base-url", "https://third.example")
    assert code == 2 and "--token" in err  # the stored token belongs to elsewhere.example
    code, out, _ = run(capsys, "instances", "set", "--provider", "wapi", "--instance", "w",
                       "--base-url", "https://api.w-api.app", "--name", "Loja", "--client", "acme")
    assert code == 0, out
    _, listed, _ = run(capsys, "instances", "list", "--json")
    row = json.loads(listed)
    assert (row["name"], row["client"], row["api_base_url"], row["has_api_token"]) == \
        ("Loja", "acme", "https://api.w-api.app", False)  # back on the .env host: its own token went
    code, _, err = run(capsys, "instances", "set", "--provider", "wapi", "--instance", "w")
    assert code == 2 and "nothing to change" in err
    code, _, err = run(capsys, "instances", "set", "--provider", "wapi", "--instance", "nope", "--name", "x")
    assert code == 2 and "instances add" in err
