"""Registering webhooks never raises: an unreachable provider is a result that says so."""

from __future__ import annotations

from handlers.evolution import register as register_evolution
from handlers.wapi import WEBHOOK_KINDS as WAPI_KINDS, register as register_wapi
from tests.fakes import FakeServer


def _closed_url() -> str:
    server = FakeServer()
    url = server.url
    server.close()  # nothing listens there any more
    return url


def test_an_unreachable_wapi_gives_one_failed_result_per_kind():
    results = register_wapi(_closed_url(), "token", "I1", {kind: f"https://h.example/{kind}" for kind in WAPI_KINDS})
    assert [result["event"] for result in results] == list(WAPI_KINDS)
    assert all(not result["ok"] and result["status"] is None and "could not connect" in result["answer"]
               for result in results)


def test_an_unreachable_evolution_stops_at_the_first_form():
    [result] = register_evolution(_closed_url(), "key", "shop", {"all": "https://h.example/hook"})
    assert not result["ok"] and result["status"] is None and result["form"] == "nested (2.2+)"
    assert "could not connect" in result["answer"] and result["tried"] == []
