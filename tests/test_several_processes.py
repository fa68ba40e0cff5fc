"""Several `python server.py` processes on one PostgreSQL database, as a deployment runs them.

Each test starts real server processes on the PostgreSQL server CI starts
(TEST_DATABASE_URL), sharing one MEDIA_DIR, and talks to them over HTTP;
providers are fake servers on 127.0.0.1. Run alone with
``TEST_DATABASE_URL=... python -m pytest tests/test_several_processes.py``.
"""

from __future__ import annotations

import base64
import copy
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest
import requests

from tests.fakes import FakeServer, Recorded, json_reply
from tests.helpers import load_sample, wait_until
from tests.media_support import evolution_payload, vector
from tests.test_server_process import fake_agent_settings, free_port

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
LEASE_SECONDS = 2.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATABASE_URL, reason="several processes share a PostgreSQL database (CI runs these)"),
    pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals"),
]


class Server:
    """One `python server.py` process on the shared database."""

    def __init__(self, folder: Path, name: str, **settings: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(self.port), DATA_DIR=str(folder / name),
                   MEDIA_DIR=str(folder / "media"), DATABASE_URL=DATABASE_URL, TUNNEL="off",
                   WEBHOOK_TOKEN="", ADMIN_TOKEN="", MEDIA_WORKERS="0", CAMPAIGN_SENDER="off",
                   ROLE_LEASE_SECONDS=str(LEASE_SECONDS), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        env.update(settings)
        self.log_path = folder / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen([sys.executable, str(ROOT / "server.py")], cwd=folder, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 30.0) -> "Server":
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log()[-3000:]
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"{self.name} did not start: {self.log()[-3000:]}"
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> dict:
        response = requests.get(self.url + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, payload=None) -> requests.Response:
        return requests.post(self.url + path, json=payload, timeout=30)

    def holds(self, role: str) -> bool:
        return self.get("/status")["roles"]["roles"][role]["here"]

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._log.close()


@pytest.fixture
def deployment(tmp_path):
    """Start servers with ``deployment(name, **settings)`` on a fresh database; all stopped at the end."""
    from tests.conftest import _reset_postgres

    _reset_postgres(DATABASE_URL)
    servers: list[Server] = []

    def start(name: str, wait: bool = True, **settings: str) -> Server:
        server = Server(tmp_path, name, **settings)
        servers.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)
        server._log.close()


def test_two_processes_started_together_on_a_fresh_database_both_start(deployment):
    from tests.conftest import _reset_postgres

    for _round in range(3):
        _reset_postgres(DATABASE_URL)
        both = [deployment(f"a{_round}", wait=False), deployment(f"b{_round}", wait=False)]
        for server in both:
            server.wait_ready()
        assert [server.terminate() for server in both] == [0, 0]


# --- opposite lock orders ------------------------------------------------------------------------

def meta_batch(senders: list[str], round_number: int) -> dict:
    """One Meta webhook carrying one text message from each sender, in the order given."""
    payload = load_sample("meta/dashboard_test_webhook_text.json")
    change = payload["entry"][0]["changes"][0]
    changes = []
    for sender in senders:
        one = copy.deepcopy(change)
        one["value"]["contacts"][0]["wa_id"] = sender
        one["value"]["messages"][0].update({"from": sender, "id": f"wamid.{sender}.{round_number}.{senders[0]}",
                                           "timestamp": str(int(time.time()))})
        changes.append(one)
    payload["entry"][0]["changes"] = changes
    return payload


def test_payloads_that_touch_the_same_rows_in_opposite_orders_are_all_applied_on_two_processes(deployment):
    first, second = deployment("first"), deployment("second")
    x, y = "5511911110001", "5511922220002"
    posts = [(first, meta_batch([x, y], n)) for n in range(40)] + [(second, meta_batch([y, x], n)) for n in range(40)]

    def post(item):
        server, payload = item
        return server.post("/webhook/meta/?wait=1", payload)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, posts))
    assert [answer.status_code for answer in answers] == [200] * len(posts)
    assert {answer.json()["outcome"] for answer in answers} == {"processed"}
    status = first.get("/status")
    assert status["events"]["by_outcome"] == {"processed": len(posts)}
    assert status["messages"]["in"] == 2 * len(posts)
    chats = first.get("/api/chats?limit=50")["items"]
    assert sorted(chat["chat_id"].split("@")[0] for chat in chats) == [x, y]


# --- campaigns -----------------------------------------------------------------------------------

EVOLUTION_INSTANCE = "shop_evo"
PHONES = [f"55119876500{n:02d}" for n in range(1, 9)]


class Provider:
    """Evolution's send endpoint, answering like the real one, recording when each send arrived."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.count = 0
        self.server.route("POST", f"/message/sendText/{EVOLUTION_INSTANCE}", self.answer)

    def answer(self, request: Recorded):
        self.count += 1
        body = request.json()
        return json_reply({"key": {"remoteJid": f"{body['number']}@s.whatsapp.net", "fromMe": True,
                                   "id": f"3EB0{self.count:012X}"},
                           "message": {"conversation": body.get("text")},
                           "messageTimestamp": str(int(time.time())), "status": "PENDING"}, 201)

    def sends(self) -> list[Recorded]:
        return self.server.hits("POST", f"/message/sendText/{EVOLUTION_INSTANCE}")


@pytest.fixture
def provider():
    fake = Provider()
    yield fake
    fake.server.close()


def sender_settings(provider: Provider, rate_per_min: float) -> dict:
    return dict(CAMPAIGN_SENDER="on", CAMPAIGN_RATE_PER_MIN=str(rate_per_min), CAMPAIGN_SEND_TIMEOUT="5",
                EVOLUTION_BASE_URL=provider.server.url, EVOLUTION_API_KEY="evo-secret-key-123456")


def start_campaign(server: Server, phones=PHONES) -> int:
    instance = server.post("/api/instances", {"provider": "evolution", "instance_id": EVOLUTION_INSTANCE})
    assert instance.status_code == 201, instance.text
    campaign = server.post("/api/campaigns", {"name": "Natal", "instance_id": instance.json()["id"],
                                              "text": "Feliz Natal!", "contacts": [{"phone": p} for p in phones]})
    assert campaign.status_code == 201, campaign.text
    campaign_id = campaign.json()["id"]
    assert server.post(f"/api/campaigns/{campaign_id}/start").status_code == 200
    return campaign_id


def sender_of(servers: list[Server]) -> Optional[Server]:
    holders = [server for server in servers if server.process.poll() is None and server.holds("campaign-sender")]
    assert len(holders) <= 1, "two processes are the campaign sender"
    return holders[0] if holders else None


def test_a_campaign_on_two_processes_keeps_one_rate_and_sends_each_contact_once(deployment, provider):
    rate = 120.0  # one send every 0.5 s at least (plus a random spread)
    servers = [deployment("first", **sender_settings(provider, rate)),
               deployment("second", **sender_settings(provider, rate))]
    wait_until(lambda: sender_of(servers), "one process is the sender", timeout=10)
    campaign_id = start_campaign(servers[1])
    wait_until(lambda: servers[0].get(f"/api/campaigns/{campaign_id}")["sent_count"] == len(PHONES),
               "every contact sent", timeout=30)
    sends = provider.sends()
    assert sorted(hit.json()["number"] for hit in sends) == sorted(PHONES)  # each once
    times = sorted(hit.at for hit in sends)
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert min(gaps) >= 0.5 * 0.8, gaps  # the slot's gap, less what the HTTP hop may shift


def test_when_the_sender_is_killed_the_other_process_takes_over_and_nobody_is_sent_twice(deployment, provider):
    rate = 60.0  # one send a second: the kill lands in the middle of the campaign
    servers = [deployment("first", **sender_settings(provider, rate)),
               deployment("second", **sender_settings(provider, rate))]
    sender = wait_until(lambda: sender_of(servers), "one process is the sender", timeout=10)
    other = next(server for server in servers if server is not sender)
    campaign_id = start_campaign(other)
    wait_until(lambda: len(provider.sends()) >= 2, "two sends", timeout=20)
    sender.kill()  # kill -9: no clean stop, the lease just runs out
    wait_until(lambda: other.holds("campaign-sender"), "the other process takes the role within a few seconds",
               timeout=LEASE_SECONDS * 5)
    wait_until(lambda: not other.get(f"/api/campaigns/{campaign_id}/contacts?state=pending")["items"],
               "the rest sent by the new sender", timeout=30)
    numbers = [hit.json()["number"] for hit in provider.sends()]
    assert len(numbers) == len(set(numbers)), numbers  # nobody twice
    # At most the one send the kill interrupted is left unsent (it is never resent blindly).
    assert len(numbers) >= len(PHONES) - 1, numbers


def test_a_clean_stop_hands_the_sender_role_over_at_once(deployment, provider):
    # A long lease: a takeover well before it runs out can only come from the role given back.
    lease = 30.0
    servers = [deployment(name, ROLE_LEASE_SECONDS=str(lease), **sender_settings(provider, 600.0))
               for name in ("first", "second")]
    sender = wait_until(lambda: sender_of(servers), "one process is the sender", timeout=10)
    other = next(server for server in servers if server is not sender)
    assert sender.terminate() == 0  # SIGTERM, as systemd or Docker stop it
    log = sender.log()
    assert "stopping" in log and "stopped" in log and "gave back" in log
    wait_until(lambda: other.holds("campaign-sender"), "the other process takes the role at its next look",
               timeout=lease / 2)


# --- media and the tunnel ------------------------------------------------------------------------

def test_a_media_file_written_by_one_process_is_served_by_the_other(deployment):
    first, second = deployment("first", MEDIA_WORKERS="1"), deployment("second")  # only the first files media
    meta, _encrypted, plaintext = vector("image")
    payload = evolution_payload(meta, "EVOINLINE2P", "/v/never.enc")
    payload["data"]["message"]["base64"] = base64.b64encode(plaintext).decode()
    assert first.post("/api/webhooks/evolution/?wait=1", payload).json()["outcome"] == "processed"
    message = next(item for item in second.get("/api/messages?limit=50")["items"]
                   if item["provider_message_id"] == "EVOINLINE2P")
    media_id = message["media"]["id"]
    wait_until(lambda: second.get(f"/api/media/{media_id}")["state"] == "done", "the inline file is filed")
    served = requests.get(f"{second.url}/api/media/{media_id}/file", timeout=10)
    assert served.status_code == 200 and served.content == plaintext
    checks = {check["name"]: check for check in second.get("/test")["checks"]}
    assert checks["media dir shared"]["ok"], checks["media dir shared"]


def test_one_process_opens_the_tunnel_and_the_other_takes_it_over_when_it_dies(deployment, tmp_path):
    agent = fake_agent_settings(tmp_path, "ok")
    servers = [deployment("first", **agent, TUNNEL="on"), deployment("second", **agent, TUNNEL="on")]

    def owner() -> Optional[Server]:
        owners = [server for server in servers if server.process.poll() is None
                  and server.get("/status")["tunnel"]["state"] == "open"]
        assert len(owners) <= 1, "two tunnels are open"
        return owners[0] if owners else None

    first_owner = wait_until(owner, "one process opens the tunnel")
    other = next(server for server in servers if server is not first_owner)
    status = other.get("/status")
    assert status["tunnel"]["state"] == "elsewhere"
    assert status["webhook_urls"]["evolution"].startswith("https://zaphook-test.ngrok-free.app/")
    # One token for the deployment: the URL the owner printed works on the other process too.
    token = (tmp_path / first_owner.name / "webhook_token").read_text().strip()
    assert (tmp_path / other.name / "webhook_token").read_text().strip() == token
    answer = other.post(f"/webhook/?token={token}&wait=1", load_sample("evolution/v1_messages.upsert_text_incoming.json"))
    assert answer.json()["outcome"] == "processed"

    first_owner.kill()
    assert wait_until(owner, "the other process opens the tunnel", timeout=LEASE_SECONDS + 15) is other
