"""The ngrok tunnel: real pyngrok against the fake agent in tests/fake_ngrok.

No test reaches the internet or downloads the agent: NGROK_PATH points at the
fake, and pyngrok's installer is replaced by one that records the attempt.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from pyngrok import conf, installer, process

from tunnel import (
    Tunnel,
    ensure_webhook_token,
    format_url_table,
    parse_tunnel_mode,
    resolve_webhook_token,
    tunnel_wanted,
    webhook_url_table,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fake agent is started through a POSIX script")

FAKE_AGENT = Path(__file__).resolve().parent / "fake_ngrok" / "fake_ngrok.py"
AUTHTOKEN = "2fakeAuthtoken0123456789_abcdefghijklmnop"
PUBLIC_URL = "https://zaphook-test.ngrok-free.app"


class FakeAgent:
    """The launcher pyngrok runs as "ngrok", and what the fake agent recorded."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "ngrok"
        self.record = folder / "fake_ngrok.jsonl"
        self.path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_AGENT))} \"$@\"\n")
        self.path.chmod(0o755)
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("FAKE_NGROK_RECORD", str(self.record))
        monkeypatch.setenv("FAKE_NGROK_PUBLIC_URL", PUBLIC_URL)
        monkeypatch.setenv("FAKE_NGROK_MAX_SECONDS", "60")
        self.mode("ok")

    def mode(self, mode: str) -> None:
        self.monkeypatch.setenv("FAKE_NGROK_MODE", mode)

    def events(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def starts(self) -> list[dict]:
        return [event for event in self.events() if event.get("event") == "start"]

    def requests(self) -> list[str]:
        return [event["request"] for event in self.events() if "request" in event]


@pytest.fixture(autouse=True)
def no_download(monkeypatch, tmp_path):
    """Any download attempt is recorded (and fails); nothing may use the user's ngrok files."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("a test tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", refuse)
    monkeypatch.setattr(installer, "_download_file", refuse)
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(tmp_path / "pyngrok-default" / "ngrok"))
    for name in ("NGROK_AUTHTOKEN", "NGROK_API_KEY", "PYNGROK_NGROK_PATH"):
        monkeypatch.delenv(name, raising=False)
    yield attempts
    assert attempts == [], "ngrok download attempted"
    assert not (tmp_path / "pyngrok-default").exists()


@pytest.fixture
def agent(tmp_path, monkeypatch) -> FakeAgent:
    return FakeAgent(tmp_path / "bin", monkeypatch)


@pytest.fixture
def make_tunnel(tmp_path, agent):
    """Tunnels on the fake agent (short timeouts), all closed at the end of the test."""
    tunnels: list[Tunnel] = []

    def factory(startup_timeout: float = 5, **overrides) -> Tunnel:
        settings = {"NGROK_AUTHTOKEN": AUTHTOKEN, "NGROK_PATH": str(agent.path), "DATA_DIR": str(tmp_path / "data"),
                    "TUNNEL": None, "NGROK_DOMAIN": None, "WEBHOOK_TOKEN": None}
        settings.update(overrides)
        made = Tunnel(settings, startup_timeout=startup_timeout, request_timeout=2)
        tunnels.append(made)
        return made

    yield factory
    for made in tunnels:
        made.close()
    assert not process._current_processes, "an agent was left running"


def pid_gone(pid: int, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize("mode, token, wanted", [
    (None, None, False), (None, AUTHTOKEN, True), ("", AUTHTOKEN, True), ("auto", "", False),
    ("on", None, True), ("ON", AUTHTOKEN, True), ("off", AUTHTOKEN, False), ("false", AUTHTOKEN, False),
])
def test_tunnel_wanted(mode, token, wanted):
    assert tunnel_wanted({"TUNNEL": mode, "NGROK_AUTHTOKEN": token}) is wanted


def test_an_unknown_tunnel_mode_is_refused():
    with pytest.raises(ValueError, match="must be on, off or auto"):
        parse_tunnel_mode("sometimes")


def test_tunnel_off_starts_nothing(make_tunnel, agent):
    tunnel = make_tunnel(TUNNEL="off")
    assert tunnel.open(5000) is False
    assert tunnel.as_json()["state"] == "off"
    assert tunnel.reason == "TUNNEL=off"
    assert agent.starts() == []
    assert not tunnel.config_path.exists()
    tunnel.close()
    tunnel.close()


def test_close_is_safe_when_never_opened(make_tunnel):
    tunnel = make_tunnel()
    tunnel.close()
    tunnel.close()
    assert tunnel.state == "off"


# --- the webhook token --------------------------------------------------------------


def test_the_webhook_token_is_generated_private_and_reused(tmp_path):
    data = tmp_path / "data"
    token = ensure_webhook_token(data)
    path = data / "webhook_token"
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_webhook_token(data) == token
    assert [p.name for p in data.iterdir()] == ["webhook_token"]

    path.chmod(0o644)
    assert ensure_webhook_token(data) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_token_file_gets_a_token(tmp_path):
    (tmp_path / "webhook_token").write_text("\n")
    token = ensure_webhook_token(tmp_path)
    assert token and (tmp_path / "webhook_token").read_text().strip() == token


def test_resolve_webhook_token(tmp_path):
    data = str(tmp_path / "data")
    assert resolve_webhook_token({"DATA_DIR": data, "WEBHOOK_TOKEN": "mine-0123456789abcdef",
                                  "NGROK_AUTHTOKEN": AUTHTOKEN}) == "mine-0123456789abcdef"
    assert resolve_webhook_token({"DATA_DIR": data, "TUNNEL": "off", "NGROK_AUTHTOKEN": AUTHTOKEN}) is None
    assert not Path(data).exists()
    generated = resolve_webhook_token({"DATA_DIR": data, "NGROK_AUTHTOKEN": AUTHTOKEN, "WEBHOOK_TOKEN": ""})
    assert generated == (Path(data) / "webhook_token").read_text().strip()


# --- the URL table -------------------------------------------------------------------


def test_the_url_table_names_every_webhook_route():
    from handlers import REGISTRY

    routes = REGISTRY.routes()
    rows = webhook_url_table("https://abc.ngrok-free.app/", "tok_en-1")
    assert ("W-API", "received", "https://abc.ngrok-free.app/webhook/receive-message/?token=tok_en-1") in rows
    assert {event for provider, event, _ in rows if provider == "W-API"} == {
        "received", "delivery", "message-status", "chat-presence", "connected", "disconnected"}
    evolution = [row for row in rows if row[0] == "Evolution"]
    assert evolution[0][2] == "https://abc.ngrok-free.app/api/webhooks/evolution/?token=tok_en-1"
    assert "webhook by events" in evolution[0][1]
    assert [row[2] for row in rows if row[0] == "Meta"] == ["https://abc.ngrok-free.app/webhook/?token=tok_en-1"]
    for _provider, _event, url in rows:
        assert url.split("abc.ngrok-free.app", 1)[1].split("?")[0] in routes

    assert all("?" not in url for _p, _e, url in webhook_url_table("https://x.ngrok.app", None))
    assert webhook_url_table("https://x", "a&b#c")[0][2].endswith("?token=a%26b%23c")

    text = format_url_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["provider", "event", "URL"]
    assert len(lines) == len(rows) + 2
    assert len({line.index("https://") for line in lines[2:]}) == 1  # one URL column


# --- opening -------------------------------------------------------------------------


def test_the_tunnel_opens_and_closes_through_the_fake_agent(make_tunnel, agent, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    token = resolve_webhook_token({"DATA_DIR": str(tmp_path / "data"), "NGROK_AUTHTOKEN": AUTHTOKEN})
    tunnel = make_tunnel()

    assert tunnel.open(5123) is True
    status = tunnel.as_json()
    assert status["state"] == "open"
    assert status["public_url"] == PUBLIC_URL
    assert status["agent_path"] == str(agent.path)
    assert AUTHTOKEN not in json.dumps(status)

    # the agent got zaphook's own config, the authtoken in it and not on its command line
    [start] = agent.starts()
    assert start["argv"][:4] == ["start", "--none", "--log", "stdout"]
    assert start["argv"][start["argv"].index("--config") + 1] == str(tmp_path / "data" / "ngrok.yml")
    assert AUTHTOKEN not in " ".join(start["argv"])
    config = tmp_path / "data" / "ngrok.yml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert AUTHTOKEN in config.read_text()
    [post] = [e for e in agent.events() if e.get("request") == "POST /api/endpoints"]
    assert post["body"]["upstream"] == {"url": "http://127.0.0.1:5123"}
    assert post["body"]["name"] == "zaphook"
    assert "url" not in post["body"]

    # the table a user pastes
    rows = webhook_url_table(tunnel.public_url, token)
    assert ("W-API", "received", f"{PUBLIC_URL}/webhook/receive-message/?token={token}") in rows
    assert token == (tmp_path / "data" / "webhook_token").read_text().strip()

    tunnel.close()
    assert tunnel.state == "closed"
    assert "DELETE /api/endpoints/zaphook" in agent.requests()
    assert pid_gone(start["pid"])
    tunnel.close()
    assert AUTHTOKEN not in caplog.text
    assert f"ngrok tunnel open: {PUBLIC_URL} -> http://127.0.0.1:5123" in caplog.text


def test_a_reserved_domain_is_requested(make_tunnel, agent):
    tunnel = make_tunnel(NGROK_DOMAIN="https://My-Hook.ngrok.app/")
    assert tunnel.open(5000, host="0.0.0.0")
    assert tunnel.public_url == "https://my-hook.ngrok.app"
    [post] = [e for e in agent.events() if e.get("request") == "POST /api/endpoints"]
    assert post["body"]["url"] == "https://my-hook.ngrok.app"
    assert post["body"]["upstream"] == {"url": "http://127.0.0.1:5000"}


def test_the_real_server_answers_through_the_tunnels_upstream(make_tunnel, agent, live_server):
    """The upstream the agent is given is where zaphook answers."""
    port = int(live_server.rsplit(":", 1)[1])
    tunnel = make_tunnel()
    assert tunnel.open(port)
    [post] = [e for e in agent.events() if e.get("request") == "POST /api/endpoints"]
    assert requests.get(post["body"]["upstream"]["url"] + "/health", timeout=5).json() == {"status": "ok"}


@pytest.mark.parametrize("mode, code, advice", [
    ("auth_error", "ERR_NGROK_105", "copy it again from https://dashboard.ngrok.com/get-started/your-authtoken"),
    ("too_many_sessions", "ERR_NGROK_108", "stop the other ngrok agent"),
])
def test_ngrok_refusing_the_session_is_one_clear_line(make_tunnel, agent, caplog, mode, code, advice):
    caplog.set_level(logging.INFO)
    agent.mode(mode)
    tunnel = make_tunnel()
    started = time.monotonic()

    assert tunnel.open(5000) is False
    assert time.monotonic() - started < 5
    status = tunnel.as_json()
    assert status["state"] == "failed"
    assert status["error_code"] == code
    assert code in status["reason"] and advice in status["reason"]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in errors] == ["tunnel"]
    assert code in errors[0].getMessage()
    assert AUTHTOKEN not in caplog.text and AUTHTOKEN not in json.dumps(status)
    [start] = agent.starts()
    assert pid_gone(start["pid"])


def test_tunnel_on_without_an_authtoken_fails_before_starting_the_agent(make_tunnel, agent):
    tunnel = make_tunnel(TUNNEL="on", NGROK_AUTHTOKEN="")
    assert tunnel.open(5000) is False
    assert tunnel.state == "failed"
    assert tunnel.error_code == "ERR_NGROK_4018"
    assert "NGROK_AUTHTOKEN" in tunnel.reason
    assert agent.starts() == []


def test_an_agent_that_never_becomes_ready_times_out(make_tunnel, agent):
    agent.mode("hang")
    tunnel = make_tunnel(startup_timeout=1)
    started = time.monotonic()

    assert tunnel.open(5000) is False
    assert time.monotonic() - started < 6
    assert tunnel.state == "failed"
    assert "did not become ready within 1 s" in tunnel.reason
    assert tunnel.error_code is None
    [start] = agent.starts()
    assert pid_gone(start["pid"])


def test_an_agent_that_cannot_reach_ngrok_says_so(make_tunnel, agent):
    agent.mode("offline")
    tunnel = make_tunnel(startup_timeout=1)
    started = time.monotonic()

    assert tunnel.open(5000) is False
    assert time.monotonic() - started < 6
    assert "cannot reach ngrok's servers" in tunnel.reason
    assert "no such host" in tunnel.reason
    assert pid_gone(agent.starts()[0]["pid"])


def test_a_domain_already_online_elsewhere_fails_and_stops_the_agent(make_tunnel, agent):
    agent.mode("domain_taken")
    tunnel = make_tunnel(NGROK_DOMAIN="my-hook.ngrok.app")
    assert tunnel.open(5000) is False
    assert tunnel.error_code == "ERR_NGROK_334"
    assert "my-hook.ngrok.app is already online" in tunnel.reason
    assert pid_gone(agent.starts()[0]["pid"])


# --- the agent binary ----------------------------------------------------------------


def test_a_missing_ngrok_path_fails_without_downloading(make_tunnel, tmp_path, no_download):
    missing = tmp_path / "tools" / "ngrok"
    tunnel = make_tunnel(NGROK_PATH=str(missing))
    assert tunnel.open(5000) is False
    assert tunnel.state == "failed"
    assert f"NGROK_PATH={missing} does not exist" in tunnel.reason
    assert "https://ngrok.com/download" in tunnel.reason
    assert no_download == []
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("content, mode, expected", [
    ("#!/bin/sh\nexit 0\n", 0o644, "is not executable: run chmod +x"),
    ("#!/usr/bin/python3\nfrom pyngrok.ngrok import main\nmain()\n", 0o755, "downloads the agent on first use"),
])
def test_an_unusable_ngrok_path_is_refused(make_tunnel, tmp_path, content, mode, expected):
    path = tmp_path / "tools" / "ngrok"
    path.parent.mkdir()
    path.write_text(content)
    path.chmod(mode)
    tunnel = make_tunnel(NGROK_PATH=str(path))
    assert tunnel.open(5000) is False
    assert expected in tunnel.reason


def test_a_program_that_is_not_the_agent_is_reported(make_tunnel, tmp_path):
    path = tmp_path / "tools" / "ngrok"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    tunnel = make_tunnel(NGROK_PATH=str(path))
    assert tunnel.open(5000) is False
    assert f"the ngrok agent at {path} exited while starting" in tunnel.reason
    assert f"`{path} version`" in tunnel.reason


def test_without_ngrok_path_the_agent_on_path_is_used(make_tunnel, agent, tmp_path, monkeypatch):
    pyngrok_script = tmp_path / "venv-bin" / "ngrok"
    pyngrok_script.parent.mkdir()
    pyngrok_script.write_text("#!/usr/bin/python3\nfrom pyngrok.ngrok import main\nmain()\n")
    pyngrok_script.chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(pyngrok_script.parent), str(agent.path.parent)]))

    tunnel = make_tunnel(NGROK_PATH=None)
    assert tunnel.open(5000) is True
    assert tunnel.ngrok_path == str(agent.path)


def test_without_ngrok_path_and_no_agent_installed_nothing_is_downloaded(make_tunnel, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    tunnel = make_tunnel(NGROK_PATH="")
    assert tunnel.open(5000) is False
    assert "no ngrok agent found on PATH or at" in tunnel.reason
    assert str(tmp_path / "pyngrok-default" / "ngrok") in tunnel.reason
    assert "zaphook never downloads it" in tunnel.reason


# --- after opening ---------------------------------------------------------------------


def test_an_agent_that_dies_is_reported(make_tunnel, agent, caplog):
    tunnel = make_tunnel()
    assert tunnel.open(5000)
    pid = agent.starts()[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while tunnel.as_json()["state"] == "open" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = tunnel.as_json()
    assert status["state"] == "failed"
    assert "the ngrok agent stopped" in status["reason"]
    assert status["public_url"] is None
    tunnel.close()
    assert tunnel.state == "failed"


def test_close_while_starting_stops_the_agent(make_tunnel, agent):
    agent.mode("hang")
    tunnel = make_tunnel(startup_timeout=30)
    opener = threading.Thread(target=tunnel.open, args=(5000,))
    opener.start()
    deadline = time.monotonic() + 5
    while not agent.starts() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    tunnel.close()
    opener.join(timeout=10)
    assert not opener.is_alive()
    assert time.monotonic() - started < 5
    assert tunnel.state == "closed"
    assert pid_gone(agent.starts()[0]["pid"])
    assert tunnel.open(5000) is False  # closed is final
