"""The /test self-check stays honest: demo data never fails it, quiet numbers warn, only real trouble fails."""

from __future__ import annotations

from datetime import timedelta

import pytest

import models
from status import FAILURE, OK, QUIET_INSTANCE_AFTER, WARNING, instance_verdict
from tests.helpers import load_sample

HOUR = 3600
LIMIT = QUIET_INSTANCE_AFTER.total_seconds()
YEARS = 782026 * 60  # the "782026 min ago" of a demo sample from 2025


@pytest.mark.parametrize("demo, connection, quiet, level, code", [
    (True, "connected", YEARS, OK, "qa.instance.demo"),
    (True, "disconnected", YEARS, OK, "qa.instance.demo"),
    (True, "unknown", None, OK, "qa.instance.no_event"),
    (False, "connected", 5 * 60, OK, "qa.instance.active"),
    (False, "unknown", HOUR, OK, "qa.instance.active"),
    (False, "disconnected", 5 * 60, WARNING, "qa.instance.disconnected"),
    (False, "disconnected", YEARS, WARNING, "qa.instance.disconnected"),
    (False, "unknown", LIMIT + HOUR, WARNING, "qa.instance.quiet"),
    (False, "connecting", LIMIT + HOUR, WARNING, "qa.instance.quiet"),
    (False, "unknown", None, WARNING, "qa.instance.no_event"),
    (False, "connected", LIMIT, OK, "qa.instance.active"),
    (False, "connected", LIMIT + 1, FAILURE, "qa.instance.silent"),
    (False, "connected", YEARS, FAILURE, "qa.instance.silent"),
])
def test_an_instance_is_judged_by_who_owns_it_its_connection_and_its_silence(demo, connection, quiet, level, code):
    verdict, text = instance_verdict(demo, connection, quiet)
    assert (verdict, text.code) == (level, code)
    assert "min ago" not in text.english  # durations travel as seconds, and read as people say them


def test_durations_are_sent_as_seconds_and_the_english_says_them_in_days():
    _level, text = instance_verdict(False, "connected", 3 * 86400 + 5)
    assert text.params["last_event_ago"] == 3 * 86400 + 5
    assert text.params["threshold_hours"] == 24
    assert "last event 3 days ago" in text.english


def _instance(client: str, external_id: str, connection: str, quiet: timedelta | None) -> None:
    now = models.utcnow()
    models.Instance.create(client=models.Client.named(client), provider="evolution", external_id=external_id,
                           connection_state=connection, last_event_at=now - quiet if quiet is not None else None)


def test_the_self_check_reports_levels_and_fails_only_on_a_connected_silent_number(make_app):
    app = make_app(WEBHOOK_TOKEN="a-good-long-webhook-token")
    client = app.test_client()
    with models.db.connection_context():
        _instance(models.DEMO_CLIENT, "demo-old", "connected", timedelta(days=543))
        _instance(models.DEFAULT_CLIENT, "shop-quiet", "disconnected", timedelta(days=3))
    report = client.get("/test").get_json()
    checks = {check["name"]: check for check in report["checks"]}
    assert (report["ok"], report["level"], report["failures"], report["warnings"]) == (True, "warning", 0, 1)
    demo = checks["instance evolution/demo-old"]
    assert (demo["ok"], demo["level"], demo["code"], demo["demo"]) == (True, "ok", "qa.instance.demo", True)
    quiet = checks["instance evolution/shop-quiet"]
    assert (quiet["ok"], quiet["level"], quiet["code"]) == (True, "warning", "qa.instance.disconnected")
    assert quiet["name_code"] == "qa.check.instance"
    assert quiet["name_params"] == {"provider": "evolution", "instance": "shop-quiet"}
    assert 3 * 86400 <= quiet["params"]["last_event_ago"] < 3 * 86400 + 60

    with models.db.connection_context():
        _instance(models.DEFAULT_CLIENT, "shop-silent", "connected", timedelta(hours=30))
    report = client.get("/test").get_json()
    silent = next(check for check in report["checks"] if check["name"] == "instance evolution/shop-silent")
    assert (silent["ok"], silent["level"], silent["code"]) == (False, "failure", "qa.instance.silent")
    assert (report["ok"], report["level"], report["failures"]) == (False, "failure", 1)


def test_every_check_keeps_its_old_fields_and_adds_a_level_and_codes(make_app):
    client = make_app().test_client()
    client.post("/webhook/", json=load_sample("evolution/v1_messages.upsert_text_incoming.json"))
    for check in client.get("/test").get_json()["checks"]:
        assert {"name", "ok", "detail", "level", "code", "params", "name_code", "name_params"} <= set(check), check
        assert check["ok"] == (check["level"] != FAILURE)
        assert check["code"].startswith("qa.") and check["name_code"].startswith("qa.check.")


def test_status_lists_the_webhook_urls_with_coded_labels_and_the_tunnel_as_a_text(client):
    status = client.get("/status").get_json()
    assert set(status["webhook_urls"]) >= {"any", "wapi", "evolution"}  # the shape older readers know
    rows = status["webhook_url_rows"]
    assert rows[0] == {"provider": "any", "provider_label": None, "key": "any", "label": "any provider: all events",
                       "label_code": "url_label.any", "url": rows[0]["url"]}
    assert all(row["label_code"] for row in rows)
    wapi = [row for row in rows if row["provider"] == "wapi"]
    assert [row["label_code"] for row in wapi][:2] == ["url_label.received", "url_label.delivery"]
    assert status["tunnel"]["message"] == {"code": "qa.tunnel.off_by_setting", "params": {}}


def test_the_applier_check_of_a_fresh_start_says_nothing_was_applied_yet_not_none(make_app):
    check = next(check for check in make_app().test_client().get("/test").get_json()["checks"]
                 if check["name_code"] == "qa.check.applier")
    assert check["level"] == "ok" and check["code"] == "qa.applier.ok_no_lag_yet"
    assert "None" not in check["detail"], check["detail"]
