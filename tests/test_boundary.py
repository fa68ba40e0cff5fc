"""The security boundary, tested where it lives: on `python server.py` behind a tunnel agent that carries traffic.

The fake agent (tests/fake_ngrok) opens a real reverse proxy for the tunnel
zaphook asks for; it keeps the public Host header and adds X-Forwarded-For,
X-Forwarded-Proto and X-Forwarded-Host as the ngrok edge and agent do. Every
route in the app's URL map is tried through it, so a route added later is
covered without anyone remembering to add it here.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from server import create_app
from tests.test_server_process import fake_agent_settings, free_port, start_server

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == "win32", reason="the fake agent is started through a POSIX script")]

ADMIN = "admin-token-for-the-boundary-tests-0123456789"
BOUNDARY_404 = {"error": "not found", "detail": None, "code": "error.not_found", "params": {}}
PUBLIC_HOST = "zaphook-test.ngrok-free.app"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    endpoint: str


def every_route(tmp_path: Path) -> list[Route]:
    """Each (method, concrete path) of the app's URL map; placeholders get a value of their type."""
    app = create_app({"DATA_DIR": str(tmp_path / "map"), "TESTING": True, "MEDIA_WORKERS": 0,
                      "CAMPAIGN_SENDER": False, "TUNNEL": "off", "DATABASE_URL": ""})
    try:
        routes = []
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                          lambda match: "1" if match.group(1) in ("int", "float") else "x", rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                routes.append(Route(method, path, rule.endpoint))
        return routes
    finally:
        app.extensions["zaphook.media"].shutdown()
        app.extensions["zaphook.campaigns"].shutdown()
        app.extensions["zaphook.database"].close_all()


def is_open_to_the_internet(route: Route) -> bool:
    return route.endpoint == "health" or route.endpoint.startswith("webhooks.")


class TunnelledServer:
    """`python server.py` with TUNNEL=on and the fake agent; ``edge`` is the public side of its tunnel."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.local = f"http://127.0.0.1:{self.port}"
        agent = fake_agent_settings(tmp_path, "ok")
        self.record = Path(agent["FAKE_NGROK_RECORD"])
        self.process = start_server(tmp_path, self.port, TUNNEL="on", **agent, **settings)
        deadline = time.monotonic() + 30
        while (state := requests.get(f"{self.local}/status", timeout=10).json()["tunnel"]["state"]) != "open":
            assert state in ("off", "starting") and time.monotonic() < deadline, state
            time.sleep(0.1)
        [edge] = [event for event in self.events() if event.get("event") == "edge"]
        self.edge = edge["edge"]
        self.upstream = edge["upstream"]["url"]  # the tunnel listener zaphook gave the agent
        self.webhook_token = (tmp_path / "data" / "webhook_token").read_text().strip()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        _out, err = self.process.communicate(timeout=20)
        assert self.process.returncode == 0, err
        return err


@pytest.fixture
def tunnelled(tmp_path):
    servers = []

    def start(**settings: str) -> TunnelledServer:
        server = TunnelledServer(tmp_path, **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.stop()


def call(base: str, route: Route, **kwargs) -> requests.Response:
    body = {} if route.method in ("POST", "PUT", "PATCH") else None
    return requests.request(route.method, base + route.path, json=body, timeout=10, allow_redirects=False, **kwargs)


def refused_as_absent(response: requests.Response) -> bool:
    return response.status_code == 404 and response.headers.get("Content-Type", "").startswith(
        "application/json") and response.json() == BOUNDARY_404


def test_the_tunnel_listener_is_not_the_local_port(tunnelled):
    server = tunnelled()
    assert server.upstream.startswith("http://127.0.0.1:")
    assert server.upstream != server.local


def test_through_the_tunnel_only_the_webhooks_and_health_answer(tunnelled, tmp_path):
    server = tunnelled()
    routes = every_route(tmp_path)
    assert len(routes) > 30 and any(route.endpoint.startswith("api.") for route in routes)
    reached, refused = [], []
    for route in routes:
        # as the agent delivers it, then with the proxy headers gone, then with a forged local Host
        answers = [call(server.edge, route),
                   call(server.upstream, route),
                   call(server.upstream, route, headers={"Host": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"})]
        if is_open_to_the_internet(route):
            assert not any(refused_as_absent(answer) for answer in answers), route
            reached.append(route)
        else:
            assert all(refused_as_absent(answer) for answer in answers), (route, [a.text[:200] for a in answers])
            # and the route is real: from this machine it answers something else
            assert not refused_as_absent(call(server.local, route)), route
            refused.append(route)
    assert {route.endpoint for route in reached} >= {"health", "webhooks.receive_webhook"}
    assert {"/status", "/test", "/api/events", "/api/media/1/file", "/"} <= {route.path for route in refused}

    posted = requests.post(f"{server.edge}/webhook/?token={server.webhook_token}", json={"event": "x"}, timeout=10)
    assert posted.status_code == 200 and posted.json()["ok"] is True
    stored = requests.get(f"{server.local}/api/events/{posted.json()['event_id']}", timeout=10).json()
    assert stored["remote_addr"] == "127.0.0.1"  # the client's address as the agent reported it
    assert stored["headers"]["host"] == PUBLIC_HOST


def test_with_admin_token_a_bearer_header_opens_every_route_through_the_tunnel(tunnelled, tmp_path):
    server = tunnelled(ADMIN_TOKEN=ADMIN)
    for route in every_route(tmp_path):
        if is_open_to_the_internet(route):
            continue
        anonymous = call(server.edge, route)
        if route.endpoint == "dashboard.login":
            assert anonymous.status_code in (200, 403), route  # the login page, and its refusal of an empty form
        else:
            assert refused_as_absent(anonymous), route
            assert refused_as_absent(call(server.edge, route, headers={"Authorization": "Bearer wrong-token"}))
        admitted = call(server.edge, route, headers={"Authorization": f"Bearer {ADMIN}"})
        assert not refused_as_absent(admitted), route


def test_the_login_cookie_is_secure_over_the_tunnel_and_logout_ends_it(tunnelled):
    server = tunnelled(ADMIN_TOKEN=ADMIN)
    browser = requests.Session()
    signed_in = browser.post(f"{server.edge}/login", data={"token": ADMIN}, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=43200" in cookie
    assert ADMIN not in cookie
    # The edge here is plain http on 127.0.0.1, where a client keeps Secure cookies to itself: send it by hand.
    session_cookie = {"Cookie": "zaphook_session=" + browser.cookies.get("zaphook_session")}
    assert requests.get(f"{server.edge}/api/events", headers=session_cookie, timeout=10).status_code == 200

    logged_out = requests.post(f"{server.edge}/logout", headers=session_cookie, allow_redirects=False, timeout=10)
    assert logged_out.status_code == 303
    copied = requests.get(f"{server.edge}/api/events", headers=session_cookie, timeout=10)
    assert refused_as_absent(copied), "a copy of the cookie still works after /logout"


def test_login_attempts_are_limited_per_client(tunnelled):
    server = tunnelled(ADMIN_TOKEN=ADMIN, LOGIN_ATTEMPTS_PER_MIN="3")
    answers = [requests.post(f"{server.edge}/login", data={"token": "wrong"}, timeout=10) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [403, 403, 403, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    # even the right token waits now: a guesser cannot tell
    assert requests.post(f"{server.edge}/login", data={"token": ADMIN}, allow_redirects=False,
                         timeout=10).status_code == 429


def test_a_flood_of_failed_authentications_is_counted_but_not_all_stored(tunnelled):
    server = tunnelled(AUTH_FAILURES_STORED_PER_MIN="5")
    for _ in range(25):
        refused = requests.post(f"{server.edge}/webhook/?token=guess", json={"event": "x"}, timeout=10)
        assert refused.status_code == 403
    security = requests.get(f"{server.local}/status", timeout=10).json()["security"]
    assert security["auth_failures"]["failed"] == 25
    assert security["auth_failures"]["stored"] == 5
    assert security["auth_failures"]["only_counted"] == 20
    rejected = requests.get(f"{server.local}/api/events?outcome=rejected", timeout=10).json()["items"]
    assert len(rejected) == 5


# --- the app under waitress, as serve() builds it -------------------------------------------------

@pytest.fixture
def serve(make_app):
    """Serve an app built with these settings the way `python server.py` does (both listeners)."""
    from tests.helpers import ServedApp

    served = []

    def start(**settings) -> ServedApp:
        server = ServedApp(make_app(**settings))
        served.append(server)
        return server

    yield start
    for server in served:
        server.close()


@pytest.mark.parametrize("host, settings, ours", [
    ("127.0.0.1:{port}", {}, True),
    ("localhost:{port}", {}, True),
    ("LOCALHOST.", {}, True),
    ("[::1]:{port}", {}, True),
    ("zaphook.lan:{port}", {"ALLOWED_HOSTS": ("zaphook.lan",)}, True),
    ("hooks.example.org", {"ALLOWED_HOSTS": (".example.org",)}, True),
    ("example.org", {"ALLOWED_HOSTS": (".example.org",)}, True),
    ("shop.example.com", {"PUBLIC_URL": "https://shop.example.com"}, True),
    ("anything.test", {"ALLOWED_HOSTS": ("*",)}, True),
    ("attacker.example", {}, False),
    ("127.0.0.1.attacker.example", {}, False),
    ("zaphook.lan.attacker.example", {"ALLOWED_HOSTS": ("zaphook.lan",)}, False),
    ("", {}, False),
])
def test_a_local_request_naming_a_foreign_host_reaches_only_the_webhooks(serve, host, settings, ours):
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name as Host."""
    server = serve(**settings)
    headers = {"Host": host.format(port=server.url.rsplit(":", 1)[1])}
    for method, path in (("GET", "/status"), ("GET", "/api/events"), ("GET", "/"), ("POST", "/api/campaigns"),
                         ("GET", "/test")):
        answer = requests.request(method, server.url + path, headers=headers, json={}, timeout=10)
        if ours:
            assert answer.status_code != 403, (path, answer.text)
        else:
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["detail"]["setting"] == "ALLOWED_HOSTS"
    assert requests.get(server.url + "/health", headers=headers, timeout=10).status_code == 200
    assert requests.post(server.url + "/webhook/", headers=headers, json={"event": "x"}, timeout=10).status_code == 200


@pytest.mark.parametrize("origin, allowed", [
    (None, True),
    ("http://127.0.0.1:{port}", True),
    ("https://attacker.example", False),
    ("http://127.0.0.1:1", False),
    ("null", False),
])
def test_a_webhook_post_from_a_page_of_another_site_is_refused_and_recorded(serve, origin, allowed):
    server = serve()
    port = server.url.rsplit(":", 1)[1]
    headers = {"Content-Type": "text/plain"}
    if origin:
        headers["Origin"] = origin.format(port=port)
    answer = requests.post(server.url + "/webhook/", data='{"event": "x"}', headers=headers, timeout=10)
    if allowed:
        assert answer.status_code == 200, answer.text
    else:
        assert answer.status_code == 403
        assert "cross-site" in answer.json()["error"]
        event = requests.get(f"{server.url}/api/events/{answer.json()['detail']['event_id']}", timeout=10).json()
        assert event["outcome"] == "rejected" and event["http_status"] == 403


LIMIT = 256 * 1024  # MAX_BODY_MB=0.25


@pytest.mark.parametrize("size, chunked, status", [
    (LIMIT - 100, False, 200),
    (LIMIT + 1, False, 413),
    (LIMIT * 64, False, 413),   # far over: drained, and the 413 still reaches the client
    (LIMIT * 4, True, 413),     # no Content-Length: counted as it streams
])
def test_a_body_over_max_body_mb_gets_the_json_413_and_is_recorded(serve, size, chunked, status):
    server = serve(MAX_BODY_MB=0.25)
    body = b'{"event": "x", "pad": "' + b"x" * (size - 25) + b'"}'
    data = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    with requests.Session() as provider:
        answer = provider.post(server.url + "/webhook/", data=data, timeout=30,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == status, answer.text[:300]
        assert answer.headers["Content-Type"] == "application/json"
        if status == 413:
            assert answer.json()["error"] == "body larger than MAX_BODY_MB (0.25 MB)"
            event = requests.get(f"{server.url}/api/events/{answer.json()['detail']['event_id']}", timeout=10).json()
            assert (event["outcome"], event["http_status"]) == ("rejected", 413)
            assert event["body_size"] >= size
        # the connection is still good for the next webhook
        assert provider.post(server.url + "/webhook/", json={"event": "y"}, timeout=10).status_code == 200


def test_a_body_declared_past_the_drain_limit_is_answered_and_recorded_then_the_connection_closes(serve):
    import socket

    server = serve(MAX_BODY_MB=0.25)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as provider:
        provider.sendall(b"POST /webhook/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 5000000000\r\n\r\n" + b"x" * 4096)
        answer = b""
        while chunk := provider.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"Connection: close" in head
    recorded = json.loads(body)
    assert recorded["error"] == "body larger than MAX_BODY_MB (0.25 MB)"
    event = requests.get(f"{server.url}/api/events/{recorded['detail']['event_id']}", timeout=10).json()
    assert event["body_size"] == 2**31 - 1  # the column's most: "at least 2 GiB"


def test_the_session_cookie_is_not_secure_over_plain_http_whatever_the_headers_say(serve):
    server = serve(ADMIN_TOKEN=ADMIN)
    signed_in = requests.post(server.url + "/login", data={"token": ADMIN}, headers={"X-Forwarded-Proto": "https"},
                              allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303
    assert "Secure" not in signed_in.headers["Set-Cookie"]


def test_a_session_cookie_older_than_12_hours_is_refused(serve):
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    import access
    import models

    class TwelveHoursAndAMinuteAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - access.SESSION_SECONDS - 60

    server = serve(ADMIN_TOKEN=ADMIN)
    session_id = "an-old-session"
    old = URLSafeTimedSerializer(ADMIN, salt=access._SESSION_SALT, signer=TwelveHoursAndAMinuteAgo).dumps(session_id)
    fresh = URLSafeTimedSerializer(ADMIN, salt=access._SESSION_SALT).dumps(session_id)
    with models.db.connection_context():
        models.DashboardSession.open(access.session_key(session_id), access.SESSION_SECONDS)
    tunnel = server.tunnel_url + "/api/events"
    assert requests.get(tunnel, headers={"Cookie": f"zaphook_session={fresh}"}, timeout=10).status_code == 200
    assert refused_as_absent(requests.get(tunnel, headers={"Cookie": f"zaphook_session={old}"}, timeout=10))


def test_the_csrf_guard_knows_the_public_host_the_agent_forwards(tunnelled):
    server = tunnelled(ADMIN_TOKEN=ADMIN)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    same_site = requests.post(f"{server.edge}/api/instances", json={"provider": "wapi", "instance_id": "t"},
                              headers=dict(admin, Origin=f"https://{PUBLIC_HOST}"), timeout=10)
    assert same_site.status_code == 201, same_site.text
    other_site = requests.post(f"{server.edge}/api/instances", json={"provider": "wapi", "instance_id": "u"},
                               headers=dict(admin, Origin="https://attacker.example"), timeout=10)
    assert other_site.status_code == 403
