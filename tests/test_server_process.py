"""`python server.py` as a user runs it: serves with waitress, logs, stops on Ctrl+C."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import load_sample

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp_path: Path, port: int, **settings: str) -> subprocess.Popen:
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), DATA_DIR=str(tmp_path / "data"),
               DATABASE_URL="", WEBHOOK_TOKEN="", ADMIN_TOKEN="",
               META_APP_SECRET="", META_VERIFY_TOKEN="", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
               MEDIA_WORKERS="0")
    env.update(settings)
    process = subprocess.Popen([sys.executable, str(ROOT / "server.py")], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read())
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not answer /health within 30 s")


def stop_with_ctrl_c(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    return err


def test_the_server_serves_logs_each_request_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    process = start_server(tmp_path, port)
    try:
        response = requests.post(f"http://127.0.0.1:{port}/webhook/?wait=1",
                                 json=load_sample("evolution/v1_messages.upsert_text_incoming.json"), timeout=10)
        assert response.json()["outcome"] == "processed"
    finally:
        log = stop_with_ctrl_c(process)
    assert f"listening on http://127.0.0.1:{port}" in log
    assert "POST /webhook/ provider=evolution kind=message outcome=processed status=200 ms=" in log
    assert "stopped" in log
    assert "Traceback" not in log

    # a restart on the same data dir still has the event
    process = start_server(tmp_path, port)
    try:
        events = requests.get(f"http://127.0.0.1:{port}/api/events", timeout=10).json()["items"]
        assert [e["outcome"] for e in events] == ["processed"]
        again = requests.post(f"http://127.0.0.1:{port}/webhook/",
                              data=json.dumps(load_sample("evolution/v1_messages.upsert_text_incoming.json")),
                              headers={"Content-Type": "application/json"}, timeout=10)
        assert again.json()["outcome"] == "duplicate"
    finally:
        stop_with_ctrl_c(process)


def test_a_bad_setting_stops_start_up_with_one_clear_line(tmp_path):
    env = dict(os.environ, MAX_BODY_MB="big", DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, str(ROOT / "server.py")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "zaphook: configuration error: MAX_BODY_MB must be a number, got 'big'"


def test_a_port_in_use_stops_start_up_with_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), DATA_DIR=str(tmp_path), DATABASE_URL="")
        result = subprocess.run([sys.executable, str(ROOT / "server.py")], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_download_cut_off_by_a_crash_is_resumed_after_a_restart(tmp_path):
    from tests.fakes import FakeServer, Reply, file_reply
    from tests.media_support import files_under, vector, wapi_payload

    meta, encrypted, plaintext = vector("video")
    cdn = FakeServer()
    cdn.serve_sequence("GET", "/v/crash.enc", [
        lambda: Reply(200, cdn.stalled(encrypted[:50_000]), content_length=len(encrypted)),
        lambda: file_reply(encrypted),
    ])
    settings = dict(WA_MEDIA_BASE_URL=cdn.url, MEDIA_WORKERS="1", MEDIA_LEASE_SECONDS="1",
                    MEDIA_READ_TIMEOUT="60")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    media_folder = tmp_path / "data" / "media_storage"
    process = start_server(tmp_path, port, **settings)
    try:
        requests.post(f"{base}/webhook/?wait=1", json=wapi_payload(meta, "CRASHED", "/v/crash.enc"), timeout=10)
        media_id = requests.get(f"{base}/api/messages", timeout=10).json()["items"][0]["media"]["id"]
        deadline = time.monotonic() + 20
        while not any(path.name.startswith(".part-") for path in files_under(media_folder)):
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.02)
        assert requests.get(f"{base}/api/media/{media_id}", timeout=10).json()["state"] == "downloading"
    finally:
        process.kill()  # a crash: no clean shutdown, a half-written file left behind
        process.communicate(timeout=15)

    process = start_server(tmp_path, port, **settings)
    try:
        deadline = time.monotonic() + 20
        while (media := requests.get(f"{base}/api/media/{media_id}", timeout=10).json())["state"] != "done":
            assert time.monotonic() < deadline, media
            time.sleep(0.05)
    finally:
        stop_with_ctrl_c(process)
        cdn.close()
    assert (media_folder / media["path"]).read_bytes() == plaintext
    assert files_under(media_folder) == [media_folder / media["path"]]  # the half file is gone
    assert len(cdn.hits("GET", "/v/crash.enc")) == 2


def test_sigterm_stops_the_server_as_ctrl_c_does_and_gives_a_download_in_flight_back(tmp_path):
    """What systemd, Docker and service managers send: a clean stop, not an abrupt end."""
    from tests.fakes import FakeServer, Reply
    from tests.media_support import vector, wapi_payload

    meta, encrypted, _plaintext = vector("video")
    cdn = FakeServer()
    cdn.serve("GET", "/v/slow.enc", Reply(200, cdn.stalled(encrypted[:50_000]), content_length=len(encrypted)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(tmp_path, port, WA_MEDIA_BASE_URL=cdn.url, MEDIA_WORKERS="1", MEDIA_READ_TIMEOUT="60")
    try:
        requests.post(f"{base}/webhook/?wait=1", json=wapi_payload(meta, "TERM1", "/v/slow.enc"), timeout=10)
        media_id = requests.get(f"{base}/api/messages", timeout=10).json()["items"][0]["media"]["id"]
        deadline = time.monotonic() + 20
        while requests.get(f"{base}/api/media/{media_id}", timeout=10).json()["state"] != "downloading":
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _out, log = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        cdn.close()
    assert process.returncode == 0, log
    assert "stopping" in log and "stopped" in log and "Traceback" not in log

    process = start_server(tmp_path, port, MEDIA_WORKERS="0")
    try:
        media = requests.get(f"{base}/api/media/{media_id}", timeout=10).json()
    finally:
        stop_with_ctrl_c(process)
    assert media["state"] == "pending"  # given back, not left "downloading" under a dead lease


def fake_agent_settings(tmp_path: Path, mode: str) -> dict:
    """Settings that make `python server.py` open its tunnel with the fake ngrok agent."""
    launcher = tmp_path / "bin" / "ngrok"
    launcher.parent.mkdir(exist_ok=True)
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests' / 'fake_ngrok' / 'fake_ngrok.py'} \"$@\"\n")
    launcher.chmod(0o755)
    return dict(NGROK_AUTHTOKEN="2fakeAuthtoken0123456789_abcdefghijklmnop", NGROK_PATH=str(launcher),
                FAKE_NGROK_MODE=mode, FAKE_NGROK_RECORD=str(tmp_path / "agent.jsonl"),
                FAKE_NGROK_PUBLIC_URL="https://zaphook-test.ngrok-free.app", FAKE_NGROK_MAX_SECONDS="60")


def test_a_tunnel_that_fails_is_reported_and_the_server_keeps_serving_locally(tmp_path):
    port = free_port()
    process = start_server(tmp_path, port, **fake_agent_settings(tmp_path, "auth_error"))
    try:
        deadline = time.monotonic() + 30
        while (tunnel := requests.get(f"http://127.0.0.1:{port}/status", timeout=10).json()["tunnel"])["state"] != "failed":
            assert time.monotonic() < deadline, tunnel
            time.sleep(0.1)
        assert "ERR_NGROK_105" in tunnel["reason"]
        checks = {check["name"]: check for check in requests.get(f"http://127.0.0.1:{port}/test", timeout=10).json()["checks"]}
        assert checks["tunnel"]["ok"] is False and "ERR_NGROK_105" in checks["tunnel"]["detail"]
        payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
        token = (tmp_path / "data" / "webhook_token").read_text().strip()
        answer = requests.post(f"http://127.0.0.1:{port}/webhook/?token={token}&wait=1", json=payload, timeout=10)
        assert answer.json()["outcome"] == "processed"
    finally:
        err = stop_with_ctrl_c(process)
    assert err.count("ERR_NGROK_105") >= 1
    assert "Traceback" not in err


def test_with_an_authtoken_the_server_opens_the_tunnel_prints_the_urls_and_closes_it(tmp_path):
    record = tmp_path / "agent.jsonl"
    port = free_port()
    process = start_server(tmp_path, port, **fake_agent_settings(tmp_path, "ok"))
    try:
        deadline = time.monotonic() + 30
        while (status := requests.get(f"http://127.0.0.1:{port}/status", timeout=10).json())["tunnel"]["state"] != "open":
            assert status["tunnel"]["state"] in ("off", "starting"), status["tunnel"]
            assert time.monotonic() < deadline, status["tunnel"]
            time.sleep(0.1)
        token = (tmp_path / "data" / "webhook_token").read_text().strip()
        assert status["webhook_urls"]["evolution"] == \
            "https://zaphook-test.ngrok-free.app/api/webhooks/evolution/?token=<WEBHOOK_TOKEN>"
        # The generated token now guards the webhooks.
        refused = requests.post(f"http://127.0.0.1:{port}/webhook/", json={"a": 1}, timeout=10)
        assert refused.status_code == 401
        accepted = requests.post(f"http://127.0.0.1:{port}/webhook/?token={token}", json={"a": 1}, timeout=10)
        assert accepted.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert f"https://zaphook-test.ngrok-free.app/api/webhooks/evolution/?token={token}" in out
    assert token not in err  # on the console to paste, never in the log
    assert "2fakeAuthtoken" not in out + err
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    agent_pid = next(call["pid"] for call in calls if call.get("event") == "start")
    assert any(call.get("request", "").startswith("DELETE ") for call in calls), "the tunnel was not closed"
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)  # and the agent is gone


def test_register_webhooks_on_points_the_providers_at_the_tunnel_at_start_up(tmp_path):
    from tests.fakes import FakeServer, json_reply

    from handlers.wapi import WEBHOOK_KINDS as WAPI_KINDS

    wapi = FakeServer()
    for kind in WAPI_KINDS:
        wapi.serve("PUT", f"/v1/webhook/update-webhook-{kind}", json_reply({"error": False}))
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DATABASE_URL="", TUNNEL="off")
    subprocess.run([sys.executable, str(ROOT / "server.py"), "instances", "add", "--provider", "wapi",
                    "--instance", "shop1", "--token", "wapi-secret-token", "--base-url", wapi.url],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    process = start_server(tmp_path, port, REGISTER_WEBHOOKS="on", **fake_agent_settings(tmp_path, "ok"))
    try:
        deadline = time.monotonic() + 30
        while len(wapi.requests) < len(WAPI_KINDS):
            assert time.monotonic() < deadline, wapi.requests
            time.sleep(0.1)
    finally:
        err = stop_with_ctrl_c(process)
        wapi.close()
    token = (tmp_path / "data" / "webhook_token").read_text().strip()
    assert sorted(hit.path for hit in wapi.requests) == sorted(f"/v1/webhook/update-webhook-{kind}"
                                                               for kind in WAPI_KINDS)
    for hit in wapi.requests:
        assert hit.json()["value"].startswith("https://zaphook-test.ngrok-free.app/")
        assert hit.json()["value"].endswith(f"token={token}")
        assert hit.headers.get("authorization") == "Bearer wapi-secret-token"
        assert hit.query.get("instanceId") == ["shop1"]
    assert "wapi-secret-token" not in err and token not in err
