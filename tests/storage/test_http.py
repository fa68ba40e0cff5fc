"""Outbound HTTP cannot be turned against the machine it runs on or its network (SSRF).

The URL checks are tried against real HTTP servers on 127.0.0.1 and a fake
DNS (:func:`storage.http.resolve` replaced: there is no DNS here) that points
every name at a trap server: whatever slipped through would land there, so
"the trap saw nothing" proves nothing was sent.
"""

from __future__ import annotations

import datetime
import socket
import ssl

import pytest
import requests

from storage import http
from handlers.meta import PROVIDER as META
from storage.fetch import WHATSAPP_HOSTS, FetchConfig
from storage.http import (
    FALLBACK_TIMEOUT,
    AllowedHost,
    DownloadError,
    Limits,
    allowed_entry,
    check_url,
    configured_hosts,
    entries_for_urls,
    entry_for_url,
    host_allowed,
    is_public_address,
    open_stream,
    read_chunks,
)
from tests.fakes import FakeServer, Reply

LIMITS = Limits(connect_timeout=2.0, read_timeout=2.0, max_bytes=1_000_000)
DEFAULTS = WHATSAPP_HOSTS + META.media_hosts
SECRET = "internal-secret-7f3a"


class FakeDNS:
    """Answers chosen names with chosen addresses; IP literals as the system would; anything else fails."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[str, int]]] = {}
        self.asked: list[str] = []

    def point(self, name: str, *addresses: tuple[str, int]) -> None:
        self.answers[name] = list(addresses)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.asked.append(host)
        if host in self.answers:
            return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                     "", (address, answer_port) if ":" not in address else (address, answer_port, 0, 0))
                    for address, answer_port in self.answers[host]]
        try:
            return socket.getaddrinfo(host, port, family, type, proto, socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, "unknown to the fake DNS") from None


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS()
    monkeypatch.setattr(http, "resolve", fake)
    return fake


def _server():
    server = FakeServer()
    server.port = server.server.server_address[1]
    return server


# The servers live for the whole module (stopping one takes half a second);
# each test starts with no routes and no recorded requests.
@pytest.fixture(scope="module")
def servers():
    started = {name: _server() for name in ("trap", "local", "other")}
    yield started
    for server in started.values():
        server.close()


def _fresh(server):
    server.routes.clear()
    server.requests.clear()
    return server


@pytest.fixture
def trap(servers, dns):
    """A server every name resolves to: a request that reaches it is a request that got through."""
    server = _fresh(servers["trap"])
    server.serve("GET", "*", Reply(200, SECRET.encode()))
    server.serve("POST", "*", Reply(200, SECRET.encode()))
    for name in ("mmg.whatsapp.net", "media-gru1-1.cdn.whatsapp.net", "lookaside.fbsbx.com", "graph.facebook.com",
                 "localhost", "evil.com", "mmg.whatsapp.net.evil.com", "evilwhatsapp.net"):
        dns.point(name, ("127.0.0.1", server.port))
    return server


@pytest.fixture
def local(servers):
    return _fresh(servers["local"])


@pytest.fixture
def other(servers):
    return _fresh(servers["other"])


@pytest.fixture
def tls_server():
    server = _server()
    yield server
    server.close()


def fetch(url: str, allowed, headers=None) -> bytes:
    response = open_stream("GET", url, allowed=allowed, limits=LIMITS, headers=headers)
    assert response.status_code == 200
    return b"".join(read_chunks(response, LIMITS))


def refusal(url: str, allowed, **kwargs) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        open_stream("GET", url, allowed=allowed, limits=LIMITS, **kwargs)
    return caught.value


# --- shapes of URL ---------------------------------------------------------------------

REFUSED_SHAPES = [
    # User-info: what urllib.parse calls the host is not where the request goes.
    ("backslash before user-info", "http://127.0.0.1:{trap}\\@mmg.whatsapp.net/x"),
    ("allowed name as user-info", "https://mmg.whatsapp.net@127.0.0.1:{trap}/"),
    ("user and password", "https://a:b@mmg.whatsapp.net/"),
    ("empty user-info", "https://@mmg.whatsapp.net/"),
    ("user-info after a backslash", "http://mmg.whatsapp.net\\@127.0.0.1:{trap}/"),
    # Backslashes, whitespace and control characters in the authority.
    ("backslash in the host", "https://mmg.whatsapp.net\\.evil.com/"),
    ("backslash as a path", "https://evil.com\\mmg.whatsapp.net/"),
    ("space in the host", "https://mmg.whatsapp.net /x"),
    ("space before the port", "http://127.0.0.1 :{trap}/"),
    ("tab in the host", "https://mmg.whats\tapp.net/"),
    ("newline in the host", "https://mmg.whatsapp.net\n.evil.com/"),
    ("carriage return in the host", "https://evil.com\r\n@mmg.whatsapp.net/"),
    ("NUL in the host", "https://mmg.whatsapp.net\x00.evil.com/"),
    # Allowed names on the wrong port, or names that only look allowed.
    ("allowed name, other port", "https://mmg.whatsapp.net:8443/"),
    ("allowed name, http's port on https", "https://mmg.whatsapp.net:80/"),
    ("allowed name, the trap's port", "http://mmg.whatsapp.net:{trap}/"),
    ("allowed name as a prefix", "https://mmg.whatsapp.net.evil.com/"),
    ("allowed domain without its dot", "https://evilwhatsapp.net/"),
    ("full-width dot", "https://mmg.whatsapp.net\uff0eevil.com/"),
    # Other schemes, or none.
    ("file", "file:///etc/passwd"),
    ("ftp", "ftp://mmg.whatsapp.net/"),
    ("gopher", "gopher://127.0.0.1:{trap}/_GET%20/"),
    ("data", "data:text/plain,hello"),
    ("scheme-relative", "//mmg.whatsapp.net/"),
    ("scheme without slashes", "http:mmg.whatsapp.net/"),
    ("one slash and a backslash", "http:/\\mmg.whatsapp.net/"),
    ("no host", "http:///x"),
    ("only a port", "https://:443/"),
    # Local addresses, written every way a resolver reads them.
    ("loopback, port not allowed", "http://127.0.0.1:{trap}/"),
    ("localhost", "http://localhost:{trap}/"),
    ("IPv6 loopback", "http://[::1]:{trap}/"),
    ("IPv6 loopback, default port", "http://[::1]/"),
    ("IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]:{trap}/"),
    ("decimal IPv4", "http://2130706433/"),
    ("decimal IPv4 with port", "http://2130706433:{trap}/"),
    ("hex and short IPv4", "http://0x7f.1/"),
    ("octal IPv4", "http://0177.0.0.1:{trap}/"),
    ("short IPv4", "http://127.1:{trap}/"),
    ("cloud metadata", "http://169.254.169.254/latest/meta-data/"),
    ("unspecified address", "http://0.0.0.0:{trap}/"),
]


@pytest.mark.parametrize("url", [url for _name, url in REFUSED_SHAPES],
                         ids=[name for name, _url in REFUSED_SHAPES])
def test_a_refused_shape_sends_nothing_and_looks_nothing_up(url, trap, dns, other):
    # The allow-list has the defaults and one configured local port, not the trap's.
    allowed = DEFAULTS + entries_for_urls([other.url])
    error = refusal(url.format(trap=trap.port), allowed)

    assert error.kind == "refused" and not error.retryable
    assert trap.requests == [] and other.requests == []
    assert dns.asked == []  # refused from the URL alone: no connection was even attempted
    assert SECRET not in str(error)


# An allow-list as FetchConfig builds it from settings, with fixed ports (no network here).
ALLOWED = (DEFAULTS + configured_hosts(["cdn.lan:9443", ".example.org", "[::1]:7000"])
           + entries_for_urls(["http://127.0.0.1:8080", "https://graph.facebook.com/v21.0"]))

ACCEPTED_SHAPES = [
    # url, host, port, may be on a private network
    ("https://mmg.whatsapp.net/v/t62.7118-24/123.enc?ccb=11-4&oh=01&oe=65", "mmg.whatsapp.net", 443, False),
    ("https://media-gru1-1.cdn.whatsapp.net/v/t62/1.enc", "media-gru1-1.cdn.whatsapp.net", 443, False),
    ("HTTPS://MMG.WhatsApp.NET:443/x", "mmg.whatsapp.net", 443, False),
    ("https://mmg.whatsapp.net./x", "mmg.whatsapp.net", 443, False),
    ("https://mmg.whatsapp.net:/x", "mmg.whatsapp.net", 443, False),
    ("http://mmg.whatsapp.net/x", "mmg.whatsapp.net", 80, False),
    ("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", "lookaside.fbsbx.com", 443, False),
    # Configured by META_GRAPH_URL, but a public service's name: it must stay public.
    ("https://graph.facebook.com/v21.0/1234", "graph.facebook.com", 443, False),
    ("http://127.0.0.1:8080/v1/message/download-media?instanceId=I1", "127.0.0.1", 8080, True),
    ("http://127.0.0.1:8080/a\\b?q=@x#@y", "127.0.0.1", 8080, True),  # backslash and @ outside the authority
    ("http://127.0.0.1:8080#@mmg.whatsapp.net/", "127.0.0.1", 8080, True),
    ("https://cdn.lan:9443/file", "cdn.lan", 9443, True),
    ("https://files.example.org/file", "files.example.org", 443, True),
    ("https://example.org/file", "example.org", 443, True),
    ("http://[::1]:7000/", "::1", 7000, True),
    ("http://[0:0::1]:7000/", "::1", 7000, True),
]


@pytest.mark.parametrize("url, host, port, may_be_private", ACCEPTED_SHAPES)
def test_an_accepted_shape_goes_where_it_says(url, host, port, may_be_private, dns):
    target = check_url(url, ALLOWED)
    assert (target.host, target.port, target.may_be_private) == (host, port, may_be_private)
    assert dns.asked == []  # checking a URL resolves nothing: addresses are checked when connecting


ENTRIES = [
    # entry as written, configured: the entry
    (".whatsapp.net", AllowedHost(".whatsapp.net", None, False)),
    ("MMG.WhatsApp.net.", AllowedHost("mmg.whatsapp.net", None, False)),
    ("127.0.0.1:8080", AllowedHost("127.0.0.1", 8080, False)),
    ("[::1]:8080", AllowedHost("::1", 8080, False)),
    ("::1", AllowedHost("::1", None, False)),
    (".example.org:8443", AllowedHost(".example.org", 8443, False)),
    ("host:0", None),
    ("host:99999", None),
    ("host:http", None),
    ("[::1]8080", None),
    ("", None),
]


@pytest.mark.parametrize("text, entry", ENTRIES)
def test_allow_list_entries_carry_a_port_or_mean_the_default_one(text, entry):
    assert allowed_entry(text) == entry


@pytest.mark.parametrize("url, entry", [
    ("http://127.0.0.1:8080", AllowedHost("127.0.0.1", 8080, True)),
    ("http://127.0.0.1:8080/", AllowedHost("127.0.0.1", 8080, True)),
    ("https://graph.facebook.com/v21.0", AllowedHost("graph.facebook.com", 443, True)),
    ("http://evolution.lan", AllowedHost("evolution.lan", 80, True)),
    ("https://EVO.lan:8443/base/", AllowedHost("evo.lan", 8443, True)),
    ("http://[::1]:9000", AllowedHost("::1", 9000, True)),
    ("http://user@evo.lan", None),
    ("ftp://evo.lan", None),
    ("", None),
    (None, None),
])
def test_a_configured_base_url_allows_exactly_its_host_and_port(url, entry):
    assert entry_for_url(url) == entry


@pytest.mark.parametrize("host, port, scheme, allowed", [
    ("mmg.whatsapp.net", None, "https", True),
    ("mmg.whatsapp.net", 443, "https", True),
    ("mmg.whatsapp.net", 80, "http", True),
    ("mmg.whatsapp.net", 80, "https", False),
    ("mmg.whatsapp.net", 8443, "https", False),
    ("whatsapp.net", 443, "https", True),
    ("127.0.0.1", 8080, "http", True),
    ("127.0.0.1", 80, "http", False),
    ("127.0.0.1", 8081, "http", False),
    ("evil.example.net", 443, "https", False),
])
def test_hosts_are_compared_with_their_ports(host, port, scheme, allowed):
    entries = DEFAULTS + entries_for_urls(["http://127.0.0.1:8080"])
    assert host_allowed(host, entries, port, scheme) is allowed


def test_a_domain_entry_never_matches_an_ip_address():
    assert not host_allowed("127.0.0.1", (".0.1",), 443)


# --- the address really connected to ---------------------------------------------------

@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True),
    ("2606:4700:4700::1111", True),
    ("::ffff:8.8.8.8", True),
    ("64:ff9b::808:808", True),  # NAT64 of a public address
    ("127.0.0.1", False),
    ("127.255.0.9", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.1.1", False),
    ("169.254.169.254", False),
    ("100.64.0.1", False),
    ("0.0.0.0", False),
    ("224.0.0.1", False),
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("192.0.2.1", False),
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("fec0::1", False),
    ("ff02::1", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::127.0.0.1", False),
    ("64:ff9b::7f00:1", False),  # NAT64 of loopback
    ("2002:7f00:1::1", False),  # 6to4 of loopback
    ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
    ("not an address", False),
])
def test_only_public_addresses_count_as_public(address, public):
    assert is_public_address(address) is public


NON_PUBLIC_ANSWERS = ["127.0.0.1", "127.0.0.2", "10.0.0.7", "192.168.0.10", "172.31.255.1", "169.254.169.254",
                      "100.64.1.1", "0.0.0.0", "224.0.0.251", "::1", "::ffff:127.0.0.1", "fe80::1", "fd00::1", "::"]


@pytest.mark.parametrize("address", NON_PUBLIC_ANSWERS)
def test_a_default_name_that_resolves_to_a_non_public_address_is_refused_when_connecting(address, trap, dns):
    # The name is allowed (a default, on http's default port); the fake DNS sends it to the trap's port.
    dns.point("mmg.whatsapp.net", (address, trap.port))
    config = FetchConfig("https://mmg.whatsapp.net", (), LIMITS,
                         api_base_urls=("https://api.w-api.app", "", "https://graph.facebook.com/v21.0"),
                         public_hosts=META.media_hosts)
    error = refusal("http://mmg.whatsapp.net/v/t62/x.enc", config.allowed_hosts())

    assert error.kind == "refused" and not error.retryable
    assert "mmg.whatsapp.net resolves to no public address" in str(error)
    assert address not in str(error) and SECRET not in str(error)
    assert dns.asked == ["mmg.whatsapp.net"]  # refused after resolving, before connecting
    assert trap.requests == []


def test_a_configured_host_may_be_local(local, dns):
    local.serve("GET", "/media", Reply(200, b"local file"))

    assert fetch(f"{local.url}/media", entries_for_urls([local.url])) == b"local file"
    assert fetch(f"{local.url}/media", configured_hosts([f"127.0.0.1:{local.port}"])) == b"local file"
    assert len(local.requests) == 2


def test_a_configured_name_that_resolves_to_a_private_address_is_fetched(local, dns):
    local.serve("GET", "/media", Reply(200, b"lan file"))
    dns.point("evolution.lan", ("127.0.0.1", local.port))

    assert fetch(f"http://evolution.lan:{local.port}/media", entries_for_urls([f"http://evolution.lan:{local.port}"])) \
        == b"lan file"
    assert local.requests[0].headers["host"] == f"evolution.lan:{local.port}"


@pytest.mark.parametrize("allowed", [
    pytest.param(lambda port: (f"127.0.0.1:{port}",), id="a plain entry is a default"),
    pytest.param(lambda port: (AllowedHost("127.0.0.1", port),), id="an entry not marked configured"),
])
def test_an_entry_nobody_configured_must_be_public_even_for_an_ip_address(local, dns, allowed):
    error = refusal(f"{local.url}/x", allowed(local.port))
    assert error.kind == "refused" and local.requests == []


@pytest.mark.parametrize("entries", [
    pytest.param(lambda port: configured_hosts([f"mmg.whatsapp.net:{port}"]), id="MEDIA_ALLOWED_HOSTS"),
    pytest.param(lambda port: entries_for_urls([f"http://mmg.whatsapp.net:{port}"]), id="a base URL"),
    pytest.param(lambda port: entries_for_urls([f"http://graph.facebook.com:{port}"]), id="META_GRAPH_URL"),
    pytest.param(lambda port: entries_for_urls([f"http://api.w-api.app:{port}"]), id="WAPI_BASE_URL"),
])
def test_a_public_service_name_stays_public_even_when_configured(trap, dns, entries):
    dns.point("api.w-api.app", ("127.0.0.1", trap.port))
    allowed = entries(trap.port)
    url = f"http://{allowed[0].host}:{trap.port}/x"
    error = refusal(url, allowed)
    assert error.kind == "refused" and trap.requests == []


def test_only_the_public_answers_of_a_mixed_dns_answer_are_connected_to(trap, dns, monkeypatch):
    connected = []

    def unreachable(address, *_args, **_kwargs):
        connected.append(address)
        raise ConnectionRefusedError("unreachable in this test")

    monkeypatch.setattr(http, "create_connection", unreachable)
    dns.point("mmg.whatsapp.net", ("8.8.8.8", 80), ("127.0.0.1", trap.port), ("2606:4700::1111", 80))
    error = refusal("http://mmg.whatsapp.net/x", DEFAULTS)

    assert connected == [("8.8.8.8", 80), ("2606:4700::1111", 80)]
    assert error.kind == "connection" and trap.requests == []


def test_each_new_connection_is_checked_again(local, dns):
    """A name that passed once and then answers with a private address (DNS rebinding) is refused then."""
    local.serve("GET", "/media", Reply(200, b"file"))
    dns.point("media.lan", ("127.0.0.1", local.port))
    configured = configured_hosts([f"media.lan:{local.port}"])
    assert fetch(f"http://media.lan:{local.port}/media", configured) == b"file"

    # The same name, as a plain (default) entry: a fresh connection, checked afresh.
    error = refusal(f"http://media.lan:{local.port}/media", (f"media.lan:{local.port}",))
    assert error.kind == "refused" and len(local.requests) == 1


# --- redirects -------------------------------------------------------------------------

@pytest.mark.parametrize("location", [
    "http://127.0.0.1:{other}/loot",
    "//127.0.0.1:{other}/loot",
    "http://localhost:{other}/loot",
    "http://[::1]:{other}/loot",
    "http://127.0.0.1:{other}\\@127.0.0.1:{local}/loot",
    "http://127.0.0.1:{local}@127.0.0.1:{other}/loot",
    "http://2130706433:{other}/loot",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{other}/_x",
])
def test_a_redirect_to_a_local_port_that_is_not_allowed_is_refused(location, local, other, dns):
    other.serve("GET", "/loot", Reply(200, SECRET.encode()))
    local.serve("GET", "/start", Reply(302, b"", {"Location": location.format(other=other.port, local=local.port)}))
    error = refusal(f"{local.url}/start", DEFAULTS + entries_for_urls([local.url]))

    assert error.kind == "refused"
    assert len(local.requests) == 1 and other.requests == []
    assert SECRET not in str(error)


def test_a_redirect_to_a_default_name_on_a_private_address_is_refused_when_connecting(local, trap, dns):
    local.serve("GET", "/start", Reply(302, b"", {"Location": "http://mmg.whatsapp.net/v/x.enc"}))
    error = refusal(f"{local.url}/start", DEFAULTS + entries_for_urls([local.url]))

    assert error.kind == "refused" and "mmg.whatsapp.net resolves to no public address" in str(error)
    assert len(local.requests) == 1 and trap.requests == []


def test_credentials_follow_a_redirect_only_to_the_same_scheme_host_and_port(local, other, dns):
    local.serve("GET", "/start", Reply(302, b"", {"Location": "/same"}))
    local.serve("GET", "/same", Reply(302, b"", {"Location": f"{other.url}/there"}))
    other.serve("GET", "/there", Reply(200, b"moved"))
    allowed = entries_for_urls([local.url, other.url])  # same host, another port

    body = fetch(f"{local.url}/start", allowed, headers={"Authorization": "Bearer T0KEN", "apikey": "K3Y",
                                                         "X-Api-Key": "W4HA", "Client-Token": "Z4PI",
                                                         "X-Trace": "kept"})

    assert body == b"moved"
    assert [request.headers.get("authorization") for request in local.requests] == ["Bearer T0KEN"] * 2
    assert local.requests[1].headers["apikey"] == "K3Y"
    [moved] = other.requests
    assert "authorization" not in moved.headers and "apikey" not in moved.headers
    assert "x-api-key" not in moved.headers and "client-token" not in moved.headers
    assert local.requests[1].headers["x-api-key"] == "W4HA"
    assert moved.headers["x-trace"] == "kept"


def test_too_many_redirects_are_refused(local, dns):
    local.serve("GET", "/loop", Reply(302, b"", {"Location": "/loop"}))
    error = refusal(f"{local.url}/loop", entries_for_urls([local.url]))
    assert error.kind == "refused" and len(local.requests) == http.MAX_REDIRECTS + 1


# --- what errors tell ------------------------------------------------------------------

def _redirect_without_location(local, other):
    local.serve("GET", "/x", Reply(302, f"<html>{SECRET}</html>".encode()))
    return f"{local.url}/x", entries_for_urls([local.url])


def _redirect_to_a_host_not_allowed(local, other):
    other.serve("GET", "/loot", Reply(500, SECRET.encode()))
    local.serve("GET", "/x", Reply(302, SECRET.encode(), {"Location": f"{other.url}/loot"}))
    return f"{local.url}/x", entries_for_urls([local.url])


def _refused_address(local, other):
    local.serve("GET", "/x", Reply(500, SECRET.encode()))
    return f"{local.url}/x", (f"127.0.0.1:{local.port}",)


def _body_cut_off(local, other):
    local.serve("GET", "/x", Reply(200, [SECRET.encode()], content_length=10_000))
    return f"{local.url}/x", entries_for_urls([local.url])


def _too_large(local, other):
    local.serve("GET", "/x", Reply(200, [SECRET.encode() * 10] * 2))
    return f"{local.url}/x", entries_for_urls([local.url])


@pytest.mark.parametrize("scenario", [_redirect_without_location, _redirect_to_a_host_not_allowed, _refused_address,
                                      _body_cut_off, _too_large])
def test_an_error_never_carries_what_a_refused_or_failing_host_answered(scenario, local, other, dns):
    url, allowed = scenario(local, other)
    limits = Limits(1.0, 1.0, 100)
    with pytest.raises(DownloadError) as caught:
        response = open_stream("GET", url, allowed=allowed, limits=limits)
        b"".join(read_chunks(response, limits))

    assert SECRET not in str(caught.value)
    assert other.requests == []


# --- the client itself -----------------------------------------------------------------

def test_proxies_from_the_environment_are_ignored(local, trap, dns, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, trap.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    local.serve("GET", "/media", Reply(200, b"direct"))

    assert fetch(f"{local.url}/media", entries_for_urls([local.url])) == b"direct"
    assert trap.requests == []
    assert not http.session().trust_env and not http.session(may_be_private=True).trust_env


def test_a_request_without_a_timeout_gets_one(monkeypatch):
    seen = {}

    def capture(self, request, **kwargs):
        seen.update(kwargs)
        raise requests.ConnectionError("captured")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", capture)
    prepared = requests.Request("GET", "http://127.0.0.1:9/").prepare()
    with pytest.raises(requests.ConnectionError):
        http.session(may_be_private=True).send(prepared)
    assert seen["timeout"] == FALLBACK_TIMEOUT and seen["proxies"] == {}


# --- TLS keeps the name ----------------------------------------------------------------

def _certificate(tmp_path, name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("certificate_name, trusted, works", [
    ("media.lan", True, True),  # connected to 127.0.0.1, verified as media.lan
    ("other.lan", True, False),  # a certificate for another name: refused
    ("media.lan", False, False),  # an unknown issuer: refused (verification stays on)
])
def test_tls_is_verified_on_the_host_name_while_connecting_to_the_checked_address(
        certificate_name, trusted, works, tls_server, dns, tmp_path, monkeypatch):
    local = tls_server
    cert_path, key_path = _certificate(tmp_path, certificate_name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server_names = []
    context.sni_callback = lambda _socket, server_name, _context: server_names.append(server_name)
    local.server.socket = context.wrap_socket(local.server.socket, server_side=True)
    local.serve("GET", "/media", Reply(200, b"over tls"))
    dns.point("media.lan", ("127.0.0.1", local.port))
    if trusted:
        monkeypatch.setattr(http.session(may_be_private=True), "verify", str(cert_path))
    url, allowed = f"https://media.lan:{local.port}/media", configured_hosts([f"media.lan:{local.port}"])

    if works:
        assert fetch(url, allowed) == b"over tls"
        assert len(local.requests) == 1
    else:
        error = refusal(url, allowed)
        assert "SSLError" in str(error) and local.requests == []
    assert server_names and set(server_names) == {"media.lan"}
