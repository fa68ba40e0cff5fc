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


SEARCH_SECRET = "s3cr3tSEARCH"


def message_with_a_secret(message_id: str) -> dict:
    payload = evolution_message(message_id)
    payload["apikey"] = SEARCH_SECRET
    payload["data"]["message"]["conversation"] = f"findable words of {message_id}"
    return payload


@pytest.mark.parametrize("restarted", [False, True], ids=["same process", "after a restart"])
def test_the_applier_makes_the_search_text_of_an_acknowledged_event_with_its_secrets_redacted(make_app, restarted):
    client = make_app().test_client()
    answer = client.post("/webhook/?wait=0", json=message_with_a_secret("SEARCH-1")).get_json()
    assert answer["outcome"] == "stored"
    assert WebhookEvent.get_by_id(answer["event_id"]).search_text is None  # not made while the provider waits
    if restarted:  # what this process parsed is gone: the applier reads the stored body again
        client = make_app().test_client()
    assert client.application.extensions["zaphook.applier"].apply_batch() == 1

    event = WebhookEvent.get_by_id(answer["event_id"])
    assert event.outcome == "processed"
    assert "findable words of SEARCH-1" in event.search_text and SEARCH_SECRET not in event.search_text
    found = client.get("/api/events", query_string={"q": "findable words"}).get_json()["items"]
    assert [item["id"] for item in found] == [answer["event_id"]]
    assert client.get("/api/events", query_string={"q": SEARCH_SECRET}).get_json()["items"] == []


def test_a_copy_of_an_event_waiting_to_be_applied_gets_its_search_text_at_once(client):
    first = client.post("/webhook/?wait=0", json=message_with_a_secret("SEARCH-2")).get_json()
    copy = client.post("/webhook/?wait=0", json=message_with_a_secret("SEARCH-2")).get_json()
    assert (first["outcome"], copy["outcome"]) == ("stored", "duplicate")
    text = WebhookEvent.get_by_id(copy["event_id"]).search_text  # the applier never sees a duplicate
    assert "findable words of SEARCH-2" in text and SEARCH_SECRET not in text


def test_events_another_applier_applied_while_they_were_read_are_not_applied_twice(client):
    """The applier reads and prepares a batch before it takes SQLite's write lock; another process's
    applier (a command run beside the server) may apply the same events in between."""
    from applier import Applier
    from models import MessageStatusChange

    app = client.application
    if not app.config["DATABASE_URL"].startswith("sqlite:"):
        pytest.skip("on PostgreSQL a batch is read once the applier's turn is taken (an advisory lock)")
    pipeline = app.extensions["zaphook.pipeline"]
    other = app.extensions["zaphook.applier"]

    class ReadJustBeforeTheOther(Applier):
        def _next_rows(self, limit, after=0):
            rows = super()._next_rows(limit, after)
            if rows:
                assert other.apply_batch() == len(rows) == 2  # the other one applies them now
            return rows

    for number in (1, 2):
        client.post("/webhook/?wait=0", json=evolution_message(f"RACE-{number}"))
    assert ReadJustBeforeTheOther(pipeline, app.extensions["zaphook.database"]).apply_batch() == 0
    assert sorted(m.provider_message_id for m in Message.select()) == ["RACE-1", "RACE-2"]
    assert MessageStatusChange.select().count() == 2  # one "delivered" each, not two
    assert WebhookEvent.select().where(WebhookEvent.outcome == "stored").count() == 0


def test_events_stored_while_the_applier_waited_for_the_write_lock_join_its_batch(client):
    """They would otherwise wait a whole batch more (the lag)."""
    from applier import Applier

    app = client.application
    if not app.config["DATABASE_URL"].startswith("sqlite:"):
        pytest.skip("on PostgreSQL a batch is read once the applier's turn is taken (an advisory lock)")

    class StoredMeanwhile(Applier):
        posted = False

        def _prepare(self, rows):
            prepared = super()._prepare(rows)
            if not self.posted:  # the batch read before the write lock is taken: two more come now
                self.posted = True
                for number in (2, 3):
                    assert client.post("/webhook/?wait=0", json=evolution_message(f"LATE-{number}")).status_code == 200
            return prepared

    client.post("/webhook/?wait=0", json=evolution_message("LATE-1"))
    applier = StoredMeanwhile(app.extensions["zaphook.pipeline"], app.extensions["zaphook.database"])
    assert applier.apply_batch() == 3
    assert sorted(m.provider_message_id for m in Message.select()) == ["LATE-1", "LATE-2", "LATE-3"]
    assert applier.batches == 1


def _rows_in_the_database_file(path) -> int:
    """Events in the SQLite database file itself, ignoring what is only in its write-ahead log."""
    import sqlite3

    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return connection.execute("SELECT COUNT(*) FROM webhook_event").fetchone()[0]
    finally:
        connection.close()


def test_the_applier_copies_the_write_ahead_log_into_the_database_file_not_the_webhooks(app, client):
    """SQLite's own checkpoint would run inside a webhook's commit, holding the write lock for an fsync."""
    import os

    import models

    if not app.config["DATABASE_URL"].startswith("sqlite:"):
        pytest.skip("SQLite's write-ahead log")
    path = app.config["DATABASE_URL"][len("sqlite:///"):]
    assert models.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == models.WAL_AUTOCHECKPOINT_PAGES
    applier = app.extensions["zaphook.applier"]
    applier.checkpoint()
    before = _rows_in_the_database_file(path)
    for number in range(20):
        client.post("/webhook/?wait=0", json=evolution_message(f"WAL-{number}"))
    assert applier.apply_batch() == 20
    assert _rows_in_the_database_file(path) == before  # committed, in the log: no writer copied it
    assert os.path.getsize(path + "-wal") > 0
    applier.checkpoint()
    assert _rows_in_the_database_file(path) == before + 20


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


@pytest.mark.parametrize("applied, gathers", [
    (0, False),     # nothing to do: it waits to be woken instead
    (1, False),     # a quiet moment's webhook: the next is applied at once
    (3, False),
    (4, True),      # webhooks arriving fast: let the next ones gather into a bigger batch
    (199, True),
    (200, False),   # a full batch: more is waiting already
])
def test_the_applier_lets_events_gather_only_when_they_arrive_fast(applied, gathers):
    from applier import BATCH_SIZE, gathers_after

    assert BATCH_SIZE == 200
    assert gathers_after(applied, BATCH_SIZE) is gathers
