"""Acknowledge on the stored row, apply in the background: what the provider, /status and a crash see."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from models import Message, WebhookEvent
from tests.helpers import ServedApp, load_sample, wait_until
from tests.test_server_process import free_port, start_server, stop_with_ctrl_c

EVOLUTION_TEXT = "evolution/v1_messages.upsert_text_incoming.json"


def evolution_message(message_id: str) -> dict:
    payload = load_sample(EVOLUTION_TEXT)
    payload["data"]["key"]["id"] = message_id
    return payload



def test_a_webhook_is_acknowledged_as_stored_and_applied_a_moment_later(make_app):
    served = ServedApp(make_app())
    try:
        answer = requests.post(f"{served.url}/webhook/", json=evolution_message("ACK-1"), timeout=10).json()
        assert (answer["outcome"], answer["provider"], answer["kind"]) == ("stored", "evolution", "message")
        event = wait_until(lambda: (lambda e: e if e["outcome"] != "stored" else None)(
            requests.get(f"{served.url}/api/events/{answer['event_id']}", timeout=10).json()), "applied")
        assert event["outcome"] == "processed"
        assert [m["provider_message_id"] for m in requests.get(f"{served.url}/api/messages", timeout=10)
                .json()["items"]] == ["ACK-1"]
        applier = requests.get(f"{served.url}/status", timeout=10).json()["applier"]
        assert applier["running"] is True and applier["pending"] == 0 and applier["applied"] == 1
        assert applier["lag_ms"]["samples"] == 1 and applier["lag_ms"]["p99"] is not None
    finally:
        served.close()


def test_wait_answers_with_the_applied_outcome_and_a_copy_is_a_duplicate_at_once(make_app):
    served = ServedApp(make_app())
    try:
        first = requests.post(f"{served.url}/webhook/?wait=1", json=evolution_message("W-1"), timeout=10).json()
        assert first["outcome"] == "processed"
        copy = requests.post(f"{served.url}/webhook/", json=evolution_message("W-1"), timeout=10).json()
        assert (copy["outcome"], copy["duplicate_of"]) == ("duplicate", first["event_id"])
    finally:
        served.close()


# What is decided before the answer keeps its status code, and its final outcome at once.
@pytest.mark.parametrize("body, status, outcome", [
    (b"not json", 400, "rejected"),
    (json.dumps({"event": "x.y", "data": {}}).encode(), 200, "ignored"),
    (json.dumps({"event": "messages.upsert", "instance": "i", "data": {"key": {}}}).encode(), 200, "failed"),
])
def test_what_needs_no_applying_gets_its_final_outcome_in_the_answer(client, body, status, outcome):
    response = client.post("/webhook/?wait=0", data=body, content_type="application/json")
    assert response.status_code == status
    event_id = response.get_json().get("event_id") or response.get_json()["detail"]["event_id"]
    assert WebhookEvent.get_by_id(event_id).outcome == outcome


def test_an_event_not_applied_yet_is_not_replayed(client):
    answer = client.post("/webhook/?wait=0", json=evolution_message("R-1")).get_json()
    assert answer["outcome"] == "stored"
    refused = client.post(f"/api/events/{answer['event_id']}/replay")
    assert refused.status_code == 409 and "not applied yet" in refused.get_json()["error"]


def test_the_self_check_says_when_acknowledged_webhooks_wait_too_long(client, app):
    answer = client.post("/webhook/?wait=0", json=evolution_message("LATE-1")).get_json()
    import models

    with models.write_transaction():
        WebhookEvent.update(received_at=models.utcnow().replace(year=2020)).where(
            WebhookEvent.id == answer["event_id"]).execute()
    checks = {check["name"]: check for check in client.get("/test").get_json()["checks"]}
    assert checks["applier"]["ok"] is False and "1 acknowledged webhook not applied yet" in checks["applier"]["detail"]
    assert checks["applier"]["params"]["count"] == 1 and checks["applier"]["code"].startswith("qa.applier.")
    client.post("/webhook/", json=evolution_message("LATE-2"))  # waits: applies both, oldest first
    checks = {check["name"]: check for check in client.get("/test").get_json()["checks"]}
    assert checks["applier"]["ok"] is True
    assert Message.select().count() == 2


@pytest.mark.slow
def test_every_acknowledged_webhook_is_applied_after_a_kill_9_at_any_moment(tmp_path):
    """Posts from 8 connections, the server killed at a random moment, restarted: nothing acknowledged is lost."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(tmp_path, port)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def post(worker: int) -> None:
        with requests.Session() as session:
            for number in range(10_000):
                if stop.is_set():
                    return
                message_id = f"K{worker}-{number}"
                try:
                    answer = session.post(f"{base}/webhook/", json=evolution_message(message_id), timeout=5)
                except requests.RequestException:
                    return  # the server is gone: this one was never acknowledged
                if answer.status_code == 200:
                    with lock:
                        acknowledged.append(message_id)

    with ThreadPoolExecutor(8) as pool:
        for worker in range(8):
            pool.submit(post, worker)
        wait_until(lambda: len(acknowledged) >= 100, "100 acknowledged", timeout=30)
        time.sleep(random.uniform(0, 0.5))
        process.kill()  # SIGKILL: no shutdown, whatever was in flight is cut
        process.communicate(timeout=15)
        stop.set()
    assert len(acknowledged) >= 100

    process = start_server(tmp_path, port)
    try:
        wait_until(lambda: requests.get(f"{base}/status", timeout=10).json()["applier"]["pending"] == 0,
                   "applied everything left", timeout=60)
        stored = {}
        before = None
        while True:
            page = requests.get(f"{base}/api/messages", params={"limit": 500, "before_id": before}, timeout=10).json()
            stored.update({m["provider_message_id"]: m for m in page["items"]})
            before = page.get("next_before_id")
            if not before:
                break
        events = requests.get(f"{base}/api/events", params={"outcome": "stored", "limit": 10}, timeout=10).json()
    finally:
        stop_with_ctrl_c(process)
    assert events["items"] == []
    missing = [message_id for message_id in acknowledged if message_id not in stored]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged webhooks were lost"


# --- a database that fails for a moment ------------------------------------------------------

TRANSIENT = [
    ("database is locked", True),
    ("deadlock detected\nDETAIL: Process 1 waits for ShareLock", True),
    ("could not serialize access due to concurrent update", True),
    ("server closed the connection unexpectedly", True),
    ("no such table: message", False),
    ("UNIQUE constraint failed: message.id", False),
]


@pytest.mark.parametrize("text, transient", TRANSIENT)
def test_what_counts_as_a_database_error_that_goes_away(text, transient):
    from peewee import IntegrityError, OperationalError

    from models import is_transient

    error = (IntegrityError if "UNIQUE" in text else OperationalError)(text)
    assert is_transient(error) is transient
    assert is_transient(ValueError(text)) is False  # only the database's own errors


class PostgresError(Exception):
    """What psycopg raises: the SQLSTATE says what happened, whatever the message's language."""

    def __init__(self, pgcode: str) -> None:
        super().__init__("erro")
        self.pgcode = pgcode


@pytest.mark.parametrize("pgcode, transient", [("40P01", True), ("40001", True), ("57P01", True),
                                                ("23505", False), ("42P01", False)])
def test_a_postgres_error_is_judged_by_its_sqlstate(pgcode, transient):
    from peewee import OperationalError

    from models import is_transient

    wrapped = OperationalError("erro")
    wrapped.__cause__ = PostgresError(pgcode)
    assert is_transient(wrapped) is transient


def test_a_deadlock_while_applying_leaves_the_event_stored_and_it_is_applied_on_the_next_try(client, monkeypatch):
    """Never a "failed" row for a deadlock: the whole batch is tried again."""
    from peewee import OperationalError

    import ingest

    real = ingest.record_message
    calls = {"n": 0}

    def deadlocking_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("deadlock detected")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "record_message", deadlocking_once)
    answer = client.post("/webhook/?wait=0", json=evolution_message("DL-1")).get_json()
    applier = client.application.extensions["zaphook.applier"]
    with pytest.raises(OperationalError):
        applier.apply_batch()
    assert WebhookEvent.get_by_id(answer["event_id"]).outcome == "stored"
    assert applier.apply_batch() == 1
    event = WebhookEvent.get_by_id(answer["event_id"])
    assert (event.outcome, event.error) == ("processed", None)
    assert [m.provider_message_id for m in Message.select()] == ["DL-1"]


def test_storing_is_tried_again_after_a_lock_and_answered_503_when_the_database_stays_busy(client, monkeypatch):
    from peewee import OperationalError

    real = WebhookEvent.store
    failures = {"left": 2}

    def locked(row, dedupe_key=None):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("database is locked")
        return real(row, dedupe_key=dedupe_key)

    monkeypatch.setattr(WebhookEvent, "store", staticmethod(locked))
    stored = client.post("/webhook/?wait=0", json=evolution_message("LOCK-1"))
    assert stored.status_code == 200 and stored.get_json()["outcome"] == "stored"
    assert WebhookEvent.select().count() == 1

    failures["left"] = 99
    busy = client.post("/webhook/?wait=0", json=evolution_message("LOCK-2"))
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
    assert "nothing was stored" in busy.get_json()["error"]
    assert WebhookEvent.select().count() == 1  # the provider's retry will be the first copy, not a duplicate
