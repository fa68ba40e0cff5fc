"""Who may reach what: the caller kinds, this server's own names, the per-client windows."""

import pytest

from access import (
    FOREIGN_HOST,
    LOCAL,
    PUBLIC,
    AuthFailures,
    SlidingWindow,
    host_is_ours,
    host_name,
    own_host_names,
    where_from,
)
from serving import ENTRANCE, TUNNEL

OURS = own_host_names({"HOST": "127.0.0.1"})


@pytest.mark.parametrize("environ, addr, headers, caller", [
    ({}, "127.0.0.1", {"Host": "127.0.0.1:5000"}, LOCAL),
    ({}, "::1", {"Host": "[::1]:5000"}, LOCAL),
    ({}, "127.0.0.5", {"Host": "localhost"}, LOCAL),
    ({ENTRANCE: TUNNEL}, "127.0.0.1", {"Host": "127.0.0.1:5000"}, PUBLIC),
    ({ENTRANCE: TUNNEL}, "127.0.0.1", {}, PUBLIC),
    ({}, "127.0.0.1", {"Host": "127.0.0.1", "X-Forwarded-For": "1.2.3.4"}, PUBLIC),
    ({}, "127.0.0.1", {"Host": "127.0.0.1", "Forwarded": "for=1.2.3.4"}, PUBLIC),
    ({}, "192.168.1.20", {"Host": "127.0.0.1"}, PUBLIC),
    ({}, "10.0.0.1", {"Host": "127.0.0.1"}, PUBLIC),
    ({}, None, {"Host": "127.0.0.1"}, PUBLIC),
    ({}, "not-an-ip", {"Host": "127.0.0.1"}, PUBLIC),
    ({}, "127.0.0.1", {"Host": "rebound.attacker.example"}, FOREIGN_HOST),
    ({}, "127.0.0.1", {}, FOREIGN_HOST),
])
def test_each_request_is_local_public_or_naming_a_foreign_host(environ, addr, headers, caller):
    assert where_from(environ, addr, headers, OURS) == caller


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:5000", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:5000", "::1"), ("[::1]", "::1"),
    ("example.org.", "example.org"), ("", ""), (None, ""),
])
def test_the_host_name_is_read_without_its_port(header, name):
    assert host_name(header) == name


def test_own_names_are_loopback_host_public_url_and_allowed_hosts():
    names = own_host_names({"HOST": "192.168.0.10", "PUBLIC_URL": "https://Shop.Example.com/hooks",
                            "ALLOWED_HOSTS": ("zaphook.lan", ".corp.test")})
    assert set(names) == {"127.0.0.1", "localhost", "::1", "192.168.0.10", "shop.example.com", "zaphook.lan",
                          ".corp.test"}
    assert set(own_host_names({"HOST": "0.0.0.0"})) == {"127.0.0.1", "localhost", "::1"}
    assert host_is_ours("a.corp.test:80", names) and host_is_ours("corp.test", names)
    assert not host_is_ours("corp.test.attacker.example", names)


def test_a_sliding_window_refuses_past_its_limit_and_says_when_to_retry():
    window = SlidingWindow(limit=2, seconds=60)
    assert [window.hit("a"), window.hit("a"), window.hit("a"), window.hit("b")] == [True, True, False, True]
    assert 50 <= window.retry_after("a") <= 60  # about a minute, even on a slow machine
    assert window.retry_after("b") == 0


def test_failed_authentications_are_all_counted_and_only_some_stored():
    failures = AuthFailures(per_minute=3)
    decisions = [failures.record("1.2.3.4") for _ in range(5)] + [failures.record("5.6.7.8")]
    assert decisions == [True, True, True, False, False, True]
    assert failures.as_json() == {"failed": 6, "stored": 4, "only_counted": 2, "stored_per_client_per_minute": 3}
