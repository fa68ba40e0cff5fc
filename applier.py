"""The applier: makes chats, messages and statuses of the webhooks already acknowledged.

A webhook is answered as soon as its raw request row is committed with the
outcome ``stored`` (see ingest.Pipeline.receive). This service applies those
rows in the order they were stored, many per transaction (one commit, one
fsync for a whole batch instead of one per webhook), each in its own savepoint
so one bad event never undoes the others, and sets each row's outcome
(``processed``, ``failed``) as applying it inline did.

It is started by the serving code, stops cleanly, and needs no bookkeeping to
resume after a crash or a restart: whatever is still ``stored`` is the work
left. On PostgreSQL one process at a time applies (a transaction-scoped
advisory lock), so events keep their order across processes.

``apply_through(event_id)`` gives read-your-writes where a caller needs it
(``?wait=1`` on a webhook, ``simulate``): it applies up to that event in the
caller's thread when no background thread is running (the Flask test client),
or waits for the one that is.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from peewee import PostgresqlDatabase, SqliteDatabase

import forwarding
from handlers import REGISTRY
from handlers.base import Normalised
from ingest import Pipeline, normalise, parse_json, searchable_text
from models import (Instance, WebhookEvent, as_datetime, db, is_transient, run_sql, still_bound, utcnow,
                    write_transaction)

log = logging.getLogger(__name__)

STORED = "stored"
BATCH_SIZE = 200
IDLE_POLL_SECONDS = 1.0  # other processes store events too: look now and then without being told
ERROR_PAUSE_SECONDS = 0.5
LAG_SAMPLES = 2000
CHECKPOINT_SECONDS = 0.25
# Under load, after a batch of at least GATHER_MIN_EVENTS the applier lets the next events gather for
# GATHER_SECONDS instead of taking them a few at a time: a batch's cost (its transaction, its queries
# for the next rows) is shared by more events, and the acknowledgements get the GIL and the write lock
# more often (measured: 10% more webhooks per second, see docs/benchmarks.md). A quiet moment's single
# event is applied at once.
GATHER_MIN_EVENTS = 4
GATHER_SECONDS = 0.02

_NEXT_BATCH = ('SELECT "id", "route", "body", "body_encoding", "instance_id", "received_at" FROM "webhook_event" '
               'WHERE "outcome" = ? AND "id" > ? ORDER BY "id" LIMIT ?')
_STILL_STORED = 'SELECT "id" FROM "webhook_event" WHERE "outcome" = ? AND "id" BETWEEN ? AND ?'
_SETTLE = ('UPDATE "webhook_event" SET "outcome" = ?, "error" = ?, "processed_at" = ?, "search_text" = ? '
           'WHERE "id" = ? AND "outcome" = ?')


@dataclass
class _Prepared:
    """A stored event read for applying, with what could be made of it outside the transaction."""

    event_id: int
    instance_id: Optional[int]
    received_at: datetime
    normalised: Optional[Normalised] = None
    failure: Optional[str] = None  # why it cannot be applied: its outcome is "failed"
    search_text: Optional[str] = None


def gathers_after(applied: int, batch_size: int) -> bool:
    """Whether the applier lets events gather after a batch of ``applied`` (see GATHER_SECONDS).

    A full batch means more is waiting already, and a few events were a quiet
    moment's: neither waits. A batch of several says webhooks are arriving fast.
    """
    return GATHER_MIN_EVENTS <= applied < batch_size


class Applier:
    def __init__(self, pipeline: Pipeline, database=None, batch_size: int = BATCH_SIZE) -> None:
        self.pipeline = pipeline
        self.database = database  # the app's own database (the models' proxy may be rebound in tests)
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one batch at a time in this process
        self._work = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._instances: dict[int, Instance] = {}
        self._lags_ms: deque = deque(maxlen=LAG_SAMPLES)
        self.applied = 0
        self.batches = 0
        self.last_error: Optional[str] = None
        self._next_checkpoint = 0.0

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="zaphook-applier", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A stored event was committed: apply it now instead of at the next poll."""
        self._work.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand and stop; what is left stays stored for the next start."""
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the applier did not stop within %.0f s", timeout)
            else:
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not still_bound(self.database):
                return
            try:
                with db.connection_context():
                    done = self.apply_batch()
                    self.checkpoint(every=CHECKPOINT_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the service outlives an outage; the rows stay stored
                self.last_error = f"{type(exc).__name__}: {exc}"
                if is_transient(exc):  # a deadlock, a lock, a lost connection: the batch is simply tried again
                    log.warning("applying stored events: %s; trying again", exc)
                else:
                    log.exception("applying stored events failed; trying again")
                self._stop.wait(ERROR_PAUSE_SECONDS * random.uniform(0.5, 1.5))
                continue
            if gathers_after(done, self.batch_size):
                self._stop.wait(GATHER_SECONDS)
            if done < self.batch_size:
                self._work.wait(IDLE_POLL_SECONDS)
                self._work.clear()

    # --- applying ---------------------------------------------------------------

    def apply_batch(self) -> int:
        """Apply up to batch_size stored events, oldest first, in one transaction; how many.

        On SQLite, whose one write lock every acknowledgement waits for, what
        needs no database (parsing a body again, the search text) is done
        before the transaction; the events another process applied meanwhile
        are then left out, and those stored while this thread waited for the
        lock join the batch (made ready inside it: they are few), so they do
        not wait for the next one. On PostgreSQL it is all done once the turn
        is ours.
        """
        with self._lock:
            early = not isinstance(db.obj, PostgresqlDatabase)
            prepared = self._prepare(self._next_rows(self.batch_size)) if early else []
            if early and not prepared:
                return 0
            queued_media = False
            settled = []
            with write_transaction():
                if not self._turn_is_ours():
                    return 0
                if early:
                    last_read = prepared[-1].event_id
                    prepared = self._still_stored(prepared)
                    prepared += self._prepare(self._next_rows(self.batch_size - len(prepared), after=last_read))
                else:
                    prepared = self._prepare(self._next_rows(self.batch_size))
                for event in prepared:
                    outcome, error, media = self._apply_one(event)
                    run_sql(_SETTLE, (outcome, error, utcnow(), event.search_text, event.event_id, STORED))
                    settled.append(event.received_at)
                    queued_media = queued_media or media
            now = utcnow()
            for received_at in settled:
                self._lags_ms.append(max(0.0, (now - received_at).total_seconds() * 1000))
            self.applied += len(settled)
            self.batches += 1 if settled else 0
            if queued_media and self.pipeline.on_media is not None:
                self.pipeline.on_media()
            return len(settled)

    def _turn_is_ours(self) -> bool:
        """On PostgreSQL one process applies at a time (until its transaction ends)."""
        if isinstance(db.obj, PostgresqlDatabase):
            return bool(db.execute_sql("SELECT pg_try_advisory_xact_lock(hashtextextended('zaphook:applier', 0))")
                        .fetchone()[0])
        return True

    @staticmethod
    def _next_rows(limit: int, after: int = 0) -> list:
        return run_sql(_NEXT_BATCH, (STORED, after, limit)).fetchall()

    @staticmethod
    def _still_stored(prepared: list["_Prepared"]) -> list["_Prepared"]:
        """The prepared events no other process applied since they were read."""
        if not prepared:
            return prepared
        ids = {row[0] for row in run_sql(_STILL_STORED, (STORED, prepared[0].event_id, prepared[-1].event_id))}
        return [event for event in prepared if event.event_id in ids]

    def _prepare(self, rows: list) -> list["_Prepared"]:
        """What applying each stored row needs that the database does not: its normalised events
        (kept from its acknowledgement, or made again from the body) and its search text.

        The search text (the body as the API shows it, secrets redacted) is made
        here rather than when the event was acknowledged: see Pipeline.store.
        """
        secrets = self.pipeline.secrets
        prepared = []
        for event_id, route, body, encoding, instance_id, received_at in rows:
            event = _Prepared(event_id, instance_id, as_datetime(received_at))
            event.normalised = self.pipeline.fresh.pop(event_id, None)
            payload = None  # the search text parses the stored body itself (payloads are not kept: memory)
            if event.normalised is None:  # stored by another process, or before a restart: read it again
                payload, error = parse_json(WebhookEvent(body=body, body_encoding=encoding).body_bytes())
                if error:
                    event.failure = f"stored body cannot be read: {error}"
                    payload = None
                else:
                    event.normalised, event.failure = normalise(payload, REGISTRY.hint_for_path(route))
            event.search_text = searchable_text(body, encoding, secrets, payload)
            prepared.append(event)
        return prepared

    def _apply_one(self, event: "_Prepared") -> tuple[str, Optional[str], bool]:
        """(outcome, error, whether media was queued) of one stored event."""
        if event.failure is not None:
            return "failed", event.failure, False
        instance = self._instance(event.instance_id)
        outcome, error = self.pipeline.apply_safely(event.normalised, instance, event.event_id, event.received_at)
        forwarding.queue_event(event.event_id, event.normalised, instance, event.received_at)  # in this transaction
        return outcome, error, outcome == "processed" and self.pipeline.has_media(event.normalised)

    def _instance(self, instance_id: Optional[int]) -> Optional[Instance]:
        if instance_id is None:
            return None
        instance = self._instances.get(instance_id)
        if instance is None:
            instance = self._instances[instance_id] = Instance.get_by_id(instance_id)
        return instance

    def forget_instances(self) -> None:
        """Drop the instance cache: instances were deleted (the demo's), and SQLite may reuse their ids."""
        self._instances = {}

    # --- SQLite's write-ahead log ------------------------------------------------------

    def checkpoint(self, every: float = 0.0) -> None:
        """SQLite: copy what the write-ahead log holds into the database file, here.

        Left to SQLite, the checkpoint runs in whichever writer's commit takes
        the log past ``wal_autocheckpoint`` pages, inside that webhook's write
        transaction: an fsync of the database file (about 10 ms on the
        development machine, several times a second under load) while every
        other webhook waits for the write lock. A PASSIVE checkpoint takes no
        lock: writers and readers go on while it copies. The writers' own
        threshold (models.WAL_AUTOCHECKPOINT_PAGES) is high enough that they
        only checkpoint when this one cannot keep up (or is not running).
        Nothing about durability changes: a committed transaction is in the
        log, which survives a crash, until it is copied.

        ``every``: at most once per that many seconds.
        """
        if not isinstance(db.obj, SqliteDatabase) or time.monotonic() < self._next_checkpoint:
            return
        self._next_checkpoint = time.monotonic() + every
        db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")

    # --- read-your-writes ------------------------------------------------------------

    def apply_through(self, event_id: int, timeout: float = 10.0) -> bool:
        """Return once ``event_id`` is applied (True), or False after ``timeout`` seconds.

        Without a background thread (tests on Flask's client, one-off
        commands) the caller's thread applies the batches itself.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self._is_stored(event_id):
                return True
            if not self.running:
                if self.apply_batch() == 0 and self._is_stored(event_id):
                    time.sleep(0.01)  # another process holds the turn (PostgreSQL)
            else:
                self._work.set()
                time.sleep(0.005)
            if time.monotonic() > deadline:
                return False

    @staticmethod
    def _is_stored(event_id: int) -> bool:
        row = run_sql('SELECT "outcome" FROM "webhook_event" WHERE "id" = ?', (event_id,)).fetchone()
        return row is not None and row[0] == STORED

    # --- what /status shows --------------------------------------------------------------

    def as_json(self) -> dict:
        """The backlog (stored, not yet applied) and the lag from acknowledgement to applied."""
        pending, oldest = run_sql('SELECT COUNT(*), MIN("received_at") FROM "webhook_event" WHERE "outcome" = ?',
                                  (STORED,)).fetchone()
        oldest = as_datetime(oldest)
        lags = sorted(self._lags_ms)
        return {
            "running": self.running,
            "pending": pending,
            "oldest_pending_seconds": round((utcnow() - oldest).total_seconds(), 3) if oldest else None,
            "applied": self.applied,
            "batches": self.batches,
            "lag_ms": {
                "p50": round(statistics.median(lags), 1) if lags else None,
                "p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1) if lags else None,
                "samples": len(lags),
            },
            "last_error": self.last_error,
        }
