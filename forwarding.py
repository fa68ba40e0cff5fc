"""Forwarding every webhook to the app the developer is building: destinations, a durable queue, delivery.

zaphook sits in front of the developer's app, as ngrok's inspector or the
Hookdeck CLI do for other webhooks, and speaks WhatsApp: each event is
forwarded to every matching destination, either ``raw`` (the provider's
request as it came) or ``normalised`` (one schema for every provider, see
forward_schema.py).

* **Queueing** happens when the applier applies a stored event, in the same
  transaction (:func:`queue_event`, the applier's one hook): the provider was
  answered long before, and a crash loses nothing, since the deliveries are rows
  as soon as the event's effects are. One row per destination and event
  (raw) or per destination and normalised event, plus a "media.ready" row
  that waits for a media message's download.
* **Delivery** is a background service (:class:`Forwarder`) started by the
  serving code. Workers claim due rows with one conditional UPDATE and a
  lease (several processes on PostgreSQL never send one row at the same
  time; a dead worker's row is taken over when its lease runs out), in order
  per destination and chat: a row waits while an earlier one of its chat is
  not delivered or given up. Each POST is signed the Standard Webhooks way,
  has a timeout, and goes through storage.http (the destination's URL is
  the one host it may reach, private addresses included: the operator named
  it). 2xx delivers; network errors, 5xx and 429 are retried with
  exponential backoff and jitter (Retry-After honoured) until
  FORWARD_GIVE_UP_HOURS after queueing, then the row is ``failed``; any other
  answer fails it at once. Every attempt is a row.
* **Replay** queues an event, or every event of a range or filter, again.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import itertools
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Optional

from codes import Text, define, params_json, say
from config import SECRET_SETTINGS, ConfigError
from forward_schema import (
    MEDIA_READY,
    TYPES,
    Envelope,
    MediaState,
    forwarded_events,
    media_ready_event,
)
from handlers import REGISTRY
from handlers.base import MediaDescriptor, MessageEvent, Normalised
from ingest import normalise, parse_json
from models import (
    FORWARD_FORMATS,
    ForwardAttempt,
    ForwardDelivery,
    ForwardDestination,
    Instance,
    MediaFile,
    Message,
    Chat,
    DeploymentFact,
    WebhookEvent,
    as_datetime,
    clean,
    db,
    insert_row,
    iso,
    is_transient,
    json_or_none,
    run_sql,
    savepoint,
    still_bound,
    utcnow,
    write_transaction,
)
from security import REDACTED
from storage.http import DownloadError, Limits, check_url, entry_for_url, open_stream

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ENV_DESTINATION = "env"
RAW = "raw"
NORMALISED = "normalised"
# Outcomes of the stored events that are forwarded, live and on replay: the ones the applier applied.
FORWARDED_OUTCOMES = ("processed", "failed")
WAITING, PENDING, DELIVERING, DELIVERED, FAILED = "waiting", "pending", "delivering", "delivered", "failed"

DESTINATIONS_TTL = 2.0  # seconds a process trusts its list of destinations (others may change it)
POLL_SECONDS = 1.0  # other processes queue deliveries and media finish: look now and then
WOKEN_POLL_SECONDS = 0.02  # just woken: the rows are committed a moment after the wake
CLAIM_BATCH = 8
EXCERPT_BYTES = 2048
EXCERPT_CHARS = 500
REPLAY_LIMIT = 10_000
USER_AGENT = "zaphook-forwarder"
# Request headers never forwarded: the transport's, a proxy's and zaphook's own credentials.
NOT_FORWARDED = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
    "expect", "content-encoding", "accept-encoding", "proxy-authorization", "proxy-connection", "forwarded",
    "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip",
    "authorization", "x-webhook-token", "cookie", "webhook-id", "webhook-timestamp", "webhook-signature",
})


# Every text forwarding writes for people: its API's refusals and why an attempt did not deliver.
define("forward.", {
    "forward.bad_url": "url must be an http:// or https:// URL with a host and no user:password@, got {url}",
    "forward.bad_name": "name must be 1 to 100 characters",
    "forward.bad_format": "format must be raw or normalised, got {format}",
    "forward.bad_secret": "secret must be whsec_ followed by the base64 of 24 to 64 bytes",
    "forward.bad_provider": "provider must be one of {choices}, got {provider}",
    "forward.bad_type": "unknown event type {type}: one of {choices}",
    "forward.bad_enabled": "enabled must be true or false",
    "forward.name_taken": "a destination is already named {name}",
    "forward.env_managed": "this destination is FORWARD_URL's: change or remove it in .env",
    "forward.no_destination": "no destination {destination}",
    "forward.no_delivery": "no delivery {delivery}",
    "forward.no_event": "no event {event_id}",
    "forward.not_json": "send a JSON object",
    "forward.replay_needs_selection": "name events or a range to replay: event ids, since/until, provider, "
                                      "instance or kind",
    "forward.replay_too_many": "more than {limit} events: narrow the range",
    "forward.bad_time": "{field} must be an ISO 8601 time or Unix seconds",
    "forward.bad_event_ids": "event_id must be a number, event_ids a list of numbers",
    "forward.http_status": "HTTP {status}",
    "forward.gave_up": {"one": "gave up after {count} attempt: {reason}",
                        "other": "gave up after {count} attempts: {reason}"},
    "forward.event_gone": "event {event_id} is no longer stored",
    "forward.media_gone": "the media file or its event is no longer stored",
})


class ForwardError(ValueError):
    """A request about destinations or replays that cannot be done: a coded text, and the HTTP status."""

    def __init__(self, text: Text, status: int = 400) -> None:
        super().__init__(text.english)
        self.text = text
        self.status = status

    @property
    def code(self) -> str:
        return self.text.code


class Gone(LookupError):
    """What a delivery forwards is no longer stored."""

    def __init__(self, text: Text) -> None:
        super().__init__(text.english)
        self.text = text


# --- Standard Webhooks signing -------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must hold 24 to 64 bytes (Standard Webhooks)")
    return key


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: v1, HMAC-SHA256 of "{id}.{timestamp}.{body}" in base64."""
    signed = f"{webhook_id}.{timestamp}.".encode("utf-8") + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, webhook_id: str, body: bytes, timestamp: Optional[int] = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, webhook_id, timestamp, body)}


# --- destinations ------------------------------------------------------------------------------

def check_destination_url(url: Any) -> str:
    """A URL the HTTP client will send to exactly as written; ForwardError otherwise."""
    text = url.strip() if isinstance(url, str) else ""
    entry = entry_for_url(text)
    try:
        if entry is None:
            raise DownloadError("not an http(s) URL with a host")
        check_url(text, [entry])
    except DownloadError:
        raise ForwardError(say("forward.bad_url", url=text[:200])) from None
    return text


def destination_values(data: Mapping[str, Any], creating: bool) -> dict:
    """The columns a create or an update sets, checked; ForwardError names the first bad field."""
    values: dict = {}
    if "name" in data or creating:
        name = data.get("name")
        name = name.strip() if isinstance(name, str) else ""
        if creating and not name:
            name = None  # made from the id once inserted
        elif not name or len(name) > 100:
            raise ForwardError(say("forward.bad_name"))
        if name is not None:
            values["name"] = name
    if "url" in data or creating:
        values["url"] = check_destination_url(data.get("url"))
    if "format" in data or creating:
        form = str(data.get("format") or RAW).strip().lower().replace("normalized", NORMALISED)
        if form not in FORWARD_FORMATS:
            raise ForwardError(say("forward.bad_format", format=form[:40]))
        values["format"] = form
    if "secret" in data or creating:
        secret = data.get("secret")
        if secret in (None, ""):
            if creating:
                values["secret"] = new_secret()
        else:
            try:
                secret_key(secret)
            except ValueError:
                raise ForwardError(say("forward.bad_secret")) from None
            values["secret"] = secret
    if "provider" in data:
        provider = (data.get("provider") or "").strip().lower() or None
        if provider is not None and REGISTRY.get(provider) is None:
            raise ForwardError(say("forward.bad_provider", choices=", ".join(REGISTRY.names), provider=provider[:40]))
        values["provider"] = provider
    if "instance" in data:
        values["instance"] = clean((data.get("instance") or "").strip() or None, 255)
    if "types" in data:
        values["types"] = ",".join(parse_types(data.get("types"))) or None
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ForwardError(say("forward.bad_enabled"))
        values["enabled"] = data["enabled"]
    return values


def parse_types(value: Any) -> list[str]:
    """Event types from a list or a comma-separated text; ForwardError for an unknown one."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    types = []
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        if name not in TYPES:
            raise ForwardError(say("forward.bad_type", type=name[:40], choices=", ".join(TYPES)))
        if name not in types:
            types.append(name)
    return types


def create_destination(data: Mapping[str, Any]) -> ForwardDestination:
    values = destination_values(data, creating=True)
    now = utcnow()
    name = values.pop("name", None)
    with write_transaction():
        if name is None:  # the first free "app-N" (a person may have named one "app-2" already)
            name = next(candidate for candidate in (f"app-{n}" for n in itertools.count(1))
                        if not _name_taken(candidate))
        elif _name_taken(name):
            raise ForwardError(say("forward.name_taken", name=name), 409)
        destination = ForwardDestination.create(name=name, created_at=now, updated_at=now, origin="api", **values)
    destinations_changed()
    return destination


def _name_taken(name: str, but: Optional[int] = None) -> bool:
    query = ForwardDestination.select().where(ForwardDestination.name == name)
    return (query.where(ForwardDestination.id != but) if but is not None else query).exists()


def update_destination(destination: ForwardDestination, data: Mapping[str, Any]) -> ForwardDestination:
    values = destination_values(data, creating=False)
    if destination.origin == ENV_DESTINATION and set(values) & {"name", "url", "format", "secret"}:
        raise ForwardError(say("forward.env_managed"), 409)
    if values:
        with write_transaction():
            if "name" in values and _name_taken(values["name"], but=destination.id):
                raise ForwardError(say("forward.name_taken", name=values["name"]), 409)
            ForwardDestination.update(updated_at=utcnow(), **values).where(
                ForwardDestination.id == destination.id).execute()
        destinations_changed()
    return ForwardDestination.get_by_id(destination.id)


def delete_destination(destination: ForwardDestination) -> None:
    if destination.origin == ENV_DESTINATION:
        raise ForwardError(say("forward.env_managed"), 409)
    with write_transaction():
        ForwardDestination.delete().where(ForwardDestination.id == destination.id).execute()
    destinations_changed()


def find_destination(key: Any) -> ForwardDestination:
    """A destination by id or name; ForwardError 404 when there is none."""
    text = str(key if key is not None else "").strip()
    found = None
    if text.isdigit():
        found = ForwardDestination.get_or_none(ForwardDestination.id == int(text))
    if found is None and text:
        found = ForwardDestination.get_or_none(ForwardDestination.name == text)
    if found is None:
        raise ForwardError(say("forward.no_destination", destination=text[:100]), 404)
    return found


def sync_env_destination(settings: Mapping[str, Any]) -> Optional[ForwardDestination]:
    """Keep the destination FORWARD_URL configures in step with the settings (at start-up).

    Its secret is FORWARD_SECRET, or one generated once and kept. Without
    FORWARD_URL it is disabled (its history stays).
    """
    url = settings.get("FORWARD_URL") or ""
    existing = ForwardDestination.get_or_none(ForwardDestination.name == ENV_DESTINATION)
    if not url:
        if existing is not None and existing.enabled:
            with write_transaction():
                ForwardDestination.update(enabled=False, updated_at=utcnow()).where(
                    ForwardDestination.id == existing.id).execute()
            destinations_changed()
        return None
    try:
        check_destination_url(url)
    except ForwardError as exc:
        raise ConfigError(f"FORWARD_URL {exc}") from None
    secret = settings.get("FORWARD_SECRET")
    if secret:
        try:
            secret_key(secret)
        except ValueError as exc:
            raise ConfigError(f"FORWARD_SECRET {exc}, e.g. {SECRET_PREFIX}" + "A" * 43 + "=") from None
    values = {"url": url, "format": settings.get("FORWARD_FORMAT") or RAW, "enabled": True, "origin": ENV_DESTINATION}
    now = utcnow()
    with write_transaction():
        ForwardDestination.insert(name=ENV_DESTINATION, secret=secret or new_secret(), created_at=now, updated_at=now,
                                  **values).on_conflict_ignore().execute()
        if secret:
            values["secret"] = secret
        ForwardDestination.update(updated_at=now, **values).where(ForwardDestination.name == ENV_DESTINATION).execute()
    destinations_changed()
    return ForwardDestination.get(ForwardDestination.name == ENV_DESTINATION)


def destination_json(destination: ForwardDestination, counts: bool = True) -> dict:
    data = {
        "id": destination.id,
        "name": destination.name,
        "url": destination.url,
        "format": destination.format,
        "secret": destination.secret,
        "instance": destination.instance,
        "provider": destination.provider,
        "types": list(destination.type_list),
        "enabled": destination.enabled,
        "origin": destination.origin,
        "created_at": iso(destination.created_at),
        "updated_at": iso(destination.updated_at),
    }
    if counts:
        rows = run_sql('SELECT "state", COUNT(*) FROM "forward_delivery" WHERE "destination_id" = ? GROUP BY "state"',
                       (destination.id,)).fetchall()
        data["deliveries"] = {state: count for state, count in rows}
    return data


def matches(destination: ForwardDestination, provider: str, instance: Optional[str], types: Iterable[str]) -> bool:
    """Whether the destination's filter lets an event (of these normalised types) through."""
    if destination.provider and destination.provider != provider:
        return False
    if destination.instance and destination.instance != instance:
        return False
    wanted = destination.type_list
    return not wanted or any(kind in wanted for kind in types)


# --- queueing ----------------------------------------------------------------------------------

# Each app's Forwarder (weakly), by the database it was made for: the applier's hook finds it through
# the models' current database, as the app's other background services check theirs with still_bound.
_FORWARDERS: "weakref.WeakKeyDictionary[Any, weakref.ref]" = weakref.WeakKeyDictionary()


def current_forwarder() -> Optional["Forwarder"]:
    found = _FORWARDERS.get(db.obj)
    return found() if found is not None else None


def queue_event(event_id: int, normalised: Normalised, instance: Optional[Instance], received_at: Any) -> None:
    """The applier's hook: queue this applied event's deliveries, inside the applier's transaction."""
    forwarder = current_forwarder()
    if forwarder is not None:
        forwarder.queue_event(event_id, normalised, instance, as_datetime(received_at))


def destinations_changed() -> None:
    """A destination was added, changed or removed here: this process stops trusting its cached list."""
    forwarder = current_forwarder()
    if forwarder is not None:
        forwarder.forget_destinations()


@dataclass
class Replayed:
    events: int
    deliveries: int


def order_key(provider: str, instance: Optional[str], chat_id: Optional[str]) -> str:
    """Deliveries of one destination and key go out in order: one chat (or an instance's chat-less events)."""
    return clean(f"{provider}:{instance or '-'}:{chat_id or '-'}", 255)


# --- the delivery service ------------------------------------------------------------------------

_CLAIMABLE = (
    '(("state" = \'pending\' AND ("next_attempt_at" IS NULL OR "next_attempt_at" <= ?)) '
    'OR ("state" = \'delivering\' AND "lease_until" < ?) '
    'OR ("state" = \'waiting\' AND EXISTS (SELECT 1 FROM "media_file" m WHERE m."id" = d."media_id" '
    'AND m."state" IN (\'done\', \'failed\', \'expired\')))) '
    'AND NOT EXISTS (SELECT 1 FROM "forward_delivery" e WHERE e."destination_id" = d."destination_id" '
    'AND e."order_key" = d."order_key" AND e."id" < d."id" AND e."state" IN (\'pending\', \'delivering\')) '
    'AND EXISTS (SELECT 1 FROM "forward_destination" t WHERE t."id" = d."destination_id" AND t."enabled" = ?)'
)
_CANDIDATES = f'SELECT d."id" FROM "forward_delivery" d WHERE {_CLAIMABLE} ORDER BY d."id" LIMIT ?'
_CLAIM = ('UPDATE "forward_delivery" AS d SET "state" = \'delivering\', "lease_owner" = ?, "lease_until" = ?, '
          f'"attempts" = "attempts" + 1, "updated_at" = ? WHERE d."id" = ? AND {_CLAIMABLE}')
_SETTLE = ('UPDATE "forward_delivery" SET "state" = ?, "next_attempt_at" = ?, "last_status" = ?, "last_error" = ?, '
           '"last_error_code" = ?, "last_error_params" = ?, "finished_at" = ?, "updated_at" = ?, '
           '"lease_owner" = NULL, "lease_until" = NULL '
           'WHERE "id" = ? AND "lease_owner" = ? AND "state" = \'delivering\'')
_GIVE_BACK = ('UPDATE "forward_delivery" SET "state" = \'pending\', "lease_owner" = NULL, "lease_until" = NULL, '
              '"attempts" = "attempts" - 1, "updated_at" = ? WHERE "lease_owner" = ? AND "state" = \'delivering\'')
# The next retry to come (one already due but held back, by its chat's order or a disabled destination,
# is looked at again at the poll interval).
_NEXT_DUE = 'SELECT MIN("next_attempt_at") FROM "forward_delivery" WHERE "state" = \'pending\' AND "next_attempt_at" > ?'


@dataclass
class Outcome:
    """What one attempt came to."""

    result: str  # delivered | retry | failed
    status: Optional[int] = None
    text: Optional[Text] = None  # why it did not deliver
    excerpt: Optional[str] = None
    retry_after: Optional[float] = None


class Forwarder:
    """The delivery service, kept in ``app.extensions["zaphook.forwarding"]``; started by the serving code."""

    def __init__(self, settings: Mapping[str, Any], database=None) -> None:
        self.settings = settings
        self.database = database  # the app's own database (the models' proxy may be rebound in tests)
        self.size = int(settings["FORWARD_WORKERS"])
        self.timeout = float(settings["FORWARD_TIMEOUT"])
        self.retry_seconds = float(settings["FORWARD_RETRY_SECONDS"])
        self.retry_max_seconds = float(settings["FORWARD_RETRY_MAX_SECONDS"])
        self.give_up = timedelta(hours=float(settings["FORWARD_GIVE_UP_HOURS"]))
        # Longer than any attempt can take: connecting, sending, the answer's headers and its excerpt.
        self.lease_seconds = 3 * self.timeout + 30
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.local_url = settings.get("FORWARD_MEDIA_BASE_URL") or _local_url(settings)
        self.secrets = [value for value in (settings.get(name) for name in SECRET_SETTINGS) if value]
        self._stop = threading.Event()
        self._work = threading.Event()
        self._woken_at = 0.0
        self._threads: list[threading.Thread] = []
        self._destinations: Optional[list] = None
        self._loaded_at = 0.0
        self._id_prefix: Optional[str] = None
        self.delivered = 0
        self.failed = 0
        self.last_error: Optional[str] = None
        if database is not None:
            _FORWARDERS[database] = weakref.ref(self)

    # --- lifecycle ------------------------------------------------------------

    def start(self, local_url: Optional[str] = None) -> None:
        """Start the workers; ``local_url``: where this server really listens (media URLs point there)."""
        if local_url and not self.settings.get("FORWARD_MEDIA_BASE_URL"):
            self.local_url = local_url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
        if self.size == 0 or self._threads:
            return
        self._stop.clear()
        for number in range(self.size):
            thread = threading.Thread(target=self._run, name=f"zaphook-forward-{number + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._woken_at = time.monotonic()
        self._work.set()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the workers; a delivery still waiting for an answer is given back (tried again at the next start)."""
        self._stop.set()
        self._work.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread for thread in self._threads if thread.is_alive()]
        self._threads = []
        if stuck and still_bound(self.database):
            log.info("%d forwarding worker(s) still waiting for an answer: their deliveries are given back", len(stuck))
            with db.connection_context():
                self.give_back()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def give_back(self) -> int:
        with write_transaction():
            return run_sql(_GIVE_BACK, (utcnow(), self.owner)).rowcount

    # --- queueing (inside the applier's transaction) -------------------------------

    def destinations(self) -> list:
        """The enabled destinations, read at most every DESTINATIONS_TTL seconds."""
        now = time.monotonic()
        if self._destinations is None or now - self._loaded_at > DESTINATIONS_TTL:
            self._destinations = list(ForwardDestination.select().where(ForwardDestination.enabled == True)  # noqa: E712
                                      .order_by(ForwardDestination.id))
            self._loaded_at = now
        return self._destinations

    def forget_destinations(self) -> None:
        self._destinations = None

    def id_prefix(self) -> str:
        """What every webhook id starts with: ids of a database started afresh never repeat older ones."""
        if self._id_prefix is None:
            self._id_prefix = "zh_" + DeploymentFact.database_id()[:8]
        return self._id_prefix

    def queue_event(self, event_id: int, normalised: Normalised, instance: Optional[Instance],
                    received_at: datetime) -> None:
        """Queue the deliveries of one applied event; a failure here never fails the event."""
        destinations = self.destinations()
        if not destinations or not normalised.events:
            return
        try:
            # Its reads too: on PostgreSQL any failed statement would abort the applier's whole batch.
            with savepoint("zaphook_forward"):
                rows = self.rows_for(destinations, event_id, normalised, instance, received_at)
                insert_deliveries(rows)
        except Exception as exc:  # noqa: BLE001 - forwarding must not undo what the event applied
            if is_transient(exc):
                raise
            log.exception("event %s: its forwarding could not be queued", event_id)
            return
        if rows:
            self.wake()

    def rows_for(self, destinations: Iterable[ForwardDestination], event_id: int, normalised: Normalised,
                 instance: Optional[Instance], received_at: datetime, replay: bool = False) -> list[dict]:
        """The delivery rows of one event for these destinations (their filters applied)."""
        envelope = Envelope(event_id, normalised.provider, normalised.instance_id, received_at, self.id_prefix())
        media_for = None
        if any(destination.format != RAW for destination in destinations):
            media_for = lambda item: self.media_state(instance, item)  # noqa: E731
        made = forwarded_events(normalised, envelope, media_for)
        now = utcnow()
        rows = []
        for destination in destinations:
            if not matches(destination, normalised.provider, normalised.instance_id, [f.type for f in made]):
                continue
            common = dict(destination=destination.id, event=event_id, media=None, payload=None, replay=replay,
                          state=PENDING, created_at=now, updated_at=now)
            if destination.format == RAW:
                chat = next((f.chat_id for f in made if f.chat_id), None)
                rows.append(dict(common, type=RAW, webhook_id=f"{envelope.id_prefix}_{event_id}",
                                 order_key=order_key(normalised.provider, normalised.instance_id, chat)))
                continue
            wanted = destination.type_list
            for forwarded in made:
                key = order_key(normalised.provider, normalised.instance_id, forwarded.chat_id)
                if not wanted or forwarded.type in wanted:
                    rows.append(dict(common, type=forwarded.type, webhook_id=forwarded.payload["id"], order_key=key,
                                     payload=json.dumps(forwarded.payload, ensure_ascii=False,
                                                        separators=(",", ":"))))
                if forwarded.media_id is not None and (not wanted or MEDIA_READY in wanted):
                    rows.append(dict(common, type=MEDIA_READY,
                                     webhook_id=f"{envelope.id_prefix}_media_{forwarded.media_id}",
                                     order_key=key, media=forwarded.media_id, state=WAITING))
        return rows

    def media_state(self, instance: Optional[Instance], item: MessageEvent) -> Optional[MediaState]:
        if instance is None:
            return None
        row = run_sql('SELECT mf."id", mf."state", mf."stored_size", mf."stored_sha256", mf."error" '
                      'FROM "media_file" mf JOIN "message" m ON m."id" = mf."message_id" '
                      'WHERE m."instance_id" = ? AND m."provider_message_id" = ?',
                      (instance.id, item.message_id)).fetchone()
        return self._state_of(*row) if row else None

    def _state_of(self, media_id: int, state: str, size: Optional[int], sha256: Optional[str],
                  error: Optional[str]) -> MediaState:
        done = state == "done"
        return MediaState(media_id, state, f"{self.local_url}/api/media/{media_id}/file" if done else None,
                          size if done else None, sha256 if done else None, error)

    # --- replay ----------------------------------------------------------------------

    def replay(self, destination: ForwardDestination, *, event_ids: Iterable[int] = (),
               since: Optional[datetime] = None, until: Optional[datetime] = None, provider: Optional[str] = None,
               instance: Optional[str] = None, kind: Optional[str] = None, limit: int = REPLAY_LIMIT) -> Replayed:
        """Queue events again for one destination (its format and filter apply): named ones, or a range."""
        event_ids = list(event_ids)
        if not (event_ids or since or until or provider or instance or kind):
            raise ForwardError(say("forward.replay_needs_selection"))
        query = (WebhookEvent.select(WebhookEvent.id).where(WebhookEvent.outcome.in_(FORWARDED_OUTCOMES)
                                                            & (WebhookEvent.body_encoding != "untrusted")))
        if event_ids:
            query = query.where(WebhookEvent.id.in_(event_ids))
        if since:
            query = query.where(WebhookEvent.received_at >= since)
        if until:  # inclusive, to the millisecond the API shows times with
            query = query.where(WebhookEvent.received_at < until + timedelta(milliseconds=1))
        if provider:
            query = query.where(WebhookEvent.provider == provider)
        if kind:
            query = query.where(WebhookEvent.kind == kind)
        if instance:
            query = query.where(WebhookEvent.instance.in_(
                Instance.select(Instance.id).where(Instance.external_id == instance)))
        ids = [row.id for row in query.order_by(WebhookEvent.id).limit(limit + 1)]
        if len(ids) > limit:
            raise ForwardError(say("forward.replay_too_many", limit=limit))
        queued = 0
        for chunk_start in range(0, len(ids), 200):
            with write_transaction():
                rows = []
                for event in WebhookEvent.select().where(WebhookEvent.id.in_(ids[chunk_start:chunk_start + 200])) \
                        .order_by(WebhookEvent.id):
                    payload, error = parse_json(event.body_bytes())
                    normalised = None if error else normalise(payload, REGISTRY.hint_for_path(event.route))[0]
                    if normalised is None or not normalised.events:
                        continue
                    owner = Instance.get_or_none(Instance.id == event.instance_id) if event.instance_id else None
                    rows += self.rows_for([destination], event.id, normalised, owner, event.received_at, replay=True)
                insert_deliveries(rows)
                queued += len(rows)
        if queued:
            self.wake()
        return Replayed(len(ids), queued)

    # --- the worker loop ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not still_bound(self.database):
                return
            delivery = None
            try:
                with db.connection_context():
                    delivery = self.claim_next()
                if delivery is not None:
                    self.deliver(delivery)
            except Exception as exc:  # noqa: BLE001 - a worker outlives any one bad row or outage
                self.last_error = f"{type(exc).__name__}: {exc}"
                if is_transient(exc):
                    log.warning("forwarding: %s; trying again", exc)
                else:
                    log.exception("forwarding worker error; going on")
                self._stop.wait(POLL_SECONDS * random.uniform(0.5, 1.5))
                continue
            if delivery is None:
                self._work.wait(self._idle_seconds())
                self._work.clear()

    def _idle_seconds(self) -> float:
        if time.monotonic() - self._woken_at < 1.0:
            return WOKEN_POLL_SECONDS
        try:
            with db.connection_context():
                due = as_datetime(run_sql(_NEXT_DUE, (utcnow(),)).fetchone()[0])
        except Exception:  # noqa: BLE001 - an unreadable queue is looked at again at the poll interval
            return POLL_SECONDS
        if due is None:
            return POLL_SECONDS
        return max(0.005, min(POLL_SECONDS, (due - utcnow()).total_seconds()))

    def claim_next(self) -> Optional[ForwardDelivery]:
        """Take the next due delivery (a lease), oldest first, keeping each chat's order."""
        now = utcnow()
        candidates = [row[0] for row in run_sql(_CANDIDATES, (now, now, True, CLAIM_BATCH)).fetchall()]
        for delivery_id in candidates:
            with write_transaction():
                taken = run_sql(_CLAIM, (self.owner, now + timedelta(seconds=self.lease_seconds), now, delivery_id,
                                         now, now, True)).rowcount
            if taken:
                return ForwardDelivery.get_by_id(delivery_id)
        return None

    def deliver(self, delivery: ForwardDelivery) -> Outcome:
        """Send one claimed delivery, record the attempt, settle the row.

        No database connection is held while the app answers (up to
        FORWARD_TIMEOUT): a slow app must not hold the pooled connections the
        webhooks need.
        """
        started_at, started = utcnow(), time.monotonic()
        with db.connection_context():
            destination = ForwardDestination.get_by_id(delivery.destination_id)
            try:
                body, headers = self.request_for(delivery)
            except Gone as exc:
                outcome = Outcome("failed", text=exc.text)
            else:
                headers.update(signed_headers(destination.secret, delivery.webhook_id, body))
                outcome = None
        if outcome is None:
            outcome = self.send(destination.url, body, headers)
        with db.connection_context():
            self.settle(delivery, outcome, started_at, int((time.monotonic() - started) * 1000))
        return outcome

    def send(self, url: str, body: bytes, headers: dict) -> Outcome:
        """POST once; what the app answered, or why it could not be asked."""
        limits = Limits(self.timeout, self.timeout, EXCERPT_BYTES)
        try:
            # The destination is the only host this request may reach (even on a private network: the
            # operator named it), and a redirect is an answer, not somewhere else to send the event.
            response = open_stream("POST", url, allowed=[entry_for_url(url)], limits=limits, headers=headers,
                                   data=body, follow_redirects=False)
        except DownloadError as exc:
            return Outcome("retry" if exc.retryable else "failed", text=exc.text)
        status = response.status_code
        excerpt = read_excerpt(response, self.timeout)
        if 200 <= status < 300:
            return Outcome("delivered", status, excerpt=excerpt)
        error = say("forward.http_status", status=status)
        if status == 429 or status >= 500:
            return Outcome("retry", status, error, excerpt, retry_after_seconds(response.headers.get("Retry-After")))
        return Outcome("failed", status, error, excerpt)

    def settle(self, delivery: ForwardDelivery, outcome: Outcome, started_at: datetime, duration_ms: int) -> None:
        now = utcnow()
        state, next_at, finished, text = outcome.result, None, None, outcome.text
        if outcome.result == "retry":
            delay = retry_delay(delivery.attempts, self.retry_seconds, self.retry_max_seconds, outcome.retry_after)
            next_at = now + timedelta(seconds=delay)
            if next_at > as_datetime(delivery.created_at) + self.give_up:
                state, outcome.result = FAILED, FAILED
                text = say("forward.gave_up", count=delivery.attempts, reason=outcome.text)
            else:
                state = PENDING
        error = clean(text.english) if text else None
        code, params = (text.code, json.dumps(params_json(text.params))) if text else (None, None)
        if state in (DELIVERED, FAILED):
            finished, next_at = now, None
        with write_transaction():
            settled = run_sql(_SETTLE, (state, next_at, outcome.status, error, code, params, finished, now,
                                        delivery.id, self.owner)).rowcount
            if settled:
                ForwardAttempt.insert(delivery=delivery.id, number=delivery.attempts, outcome=outcome.result,
                                      http_status=outcome.status, error=error, error_code=code, error_params=params,
                                      response_excerpt=clean(outcome.excerpt), duration_ms=duration_ms,
                                      started_at=started_at).execute()
        if not settled:
            log.warning("forward delivery %s: taken over by another worker while it was sent", delivery.id)
            return
        if state == DELIVERED:
            self.delivered += 1
        elif state == FAILED:
            self.failed += 1
            log.warning("forward delivery %s (%s) failed: %s", delivery.id, delivery.type, error)
        else:
            log.info("forward delivery %s: attempt %s: %s; next in %.1f s", delivery.id, delivery.attempts,
                     error, (next_at - now).total_seconds())

    # --- what is sent ------------------------------------------------------------------

    def request_for(self, delivery: ForwardDelivery) -> tuple[bytes, dict]:
        """The body and headers of a delivery (Gone when what it forwards is no longer stored)."""
        if delivery.type == MEDIA_READY:
            return self.media_ready_body(delivery), {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if delivery.type != RAW:
            return (delivery.payload or "").encode("utf-8"), {"Content-Type": "application/json",
                                                              "User-Agent": USER_AGENT}
        event = WebhookEvent.get_or_none(WebhookEvent.id == delivery.event_id)
        if event is None or event.body_encoding == "untrusted":
            raise Gone(say("forward.event_gone", event_id=delivery.event_id))
        return event.body_bytes(), self.raw_headers(event)

    def raw_headers(self, event: WebhookEvent) -> dict:
        """The provider's headers as they came, less the transport's and anything carrying zaphook's secrets."""
        dropped = NOT_FORWARDED | REGISTRY.instance_token_headers()
        instance_token = None
        if event.instance_id:
            instance_token = Instance.select(Instance.api_token).where(Instance.id == event.instance_id).scalar()
        secrets_here = [value for value in (*self.secrets, instance_token) if value and len(value) >= 4]
        headers = {}
        for name, value in event.headers_dict.items():
            if not isinstance(value, str) or name.lower() in dropped or value == REDACTED:
                continue
            if any(secret in value for secret in secrets_here):
                continue
            headers[name] = value
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = event.content_type or "application/json"
        if not any(name.lower() == "user-agent" for name in headers):
            headers["User-Agent"] = USER_AGENT
        return headers

    def media_ready_body(self, delivery: ForwardDelivery) -> bytes:
        media = MediaFile.get_or_none(MediaFile.id == delivery.media_id)
        event = WebhookEvent.get_or_none(WebhookEvent.id == delivery.event_id)
        if media is None or event is None:
            raise Gone(say("forward.media_gone"))
        message = Message.get_by_id(media.message_id)
        instance = Instance.get_by_id(media.instance_id)
        chat_jid = Chat.select(Chat.jid).where(Chat.id == message.chat_id).scalar()
        descriptor = MediaDescriptor(
            media_type=media.media_type, mimetype=media.mimetype, file_name=media.file_name,
            file_length=media.file_length, width=media.width, height=media.height, seconds=media.seconds,
            is_voice=media.is_voice, is_animated=media.is_animated)
        state = self._state_of(media.id, media.state, media.stored_size, media.stored_sha256, media.error)
        envelope = Envelope(event.id, instance.provider, instance.external_id, as_datetime(event.received_at),
                            self.id_prefix())
        payload = media_ready_event(media.id, message.provider_message_id, chat_jid, envelope, descriptor, state,
                                    as_datetime(media.finished_at))
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # --- what the API shows ------------------------------------------------------------

    def as_json(self) -> dict:
        rows = run_sql('SELECT "state", COUNT(*) FROM "forward_delivery" GROUP BY "state"', ()).fetchall()
        return {"running": self.running, "workers": self.size, "delivered": self.delivered, "failed": self.failed,
                "deliveries": {state: count for state, count in rows}, "last_error": self.last_error}


def insert_deliveries(rows: Iterable[dict]) -> None:
    """INSERT the rows with the statement built once (on the applier's hot path, peewee's per-call
    SQL building cost more than the rest of queueing put together)."""
    for row in rows:
        insert_row(ForwardDelivery, row, want_id=False)


def _local_url(settings: Mapping[str, Any]) -> str:
    host = str(settings.get("HOST") or "127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{settings.get('PORT')}" if ":" in host else f"http://{host}:{settings.get('PORT')}"


def read_excerpt(response, timeout: float) -> Optional[str]:
    """The start of an answer's body, for the attempt log; never more than EXCERPT_BYTES read."""
    received = b""
    deadline = time.monotonic() + timeout
    try:
        for chunk in response.iter_content(512):
            received += chunk
            if len(received) >= EXCERPT_BYTES or time.monotonic() > deadline:
                break
    except Exception:  # noqa: BLE001 - the status is the answer; its body is only shown to help
        pass
    finally:
        response.close()
    text = received[:EXCERPT_BYTES].decode("utf-8", errors="replace").strip()
    return text[:EXCERPT_CHARS] or None


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """Retry-After as seconds from now: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def retry_delay(attempts: int, base: float, ceiling: float, retry_after: Optional[float] = None) -> float:
    """Seconds before the next attempt: the app's Retry-After, else exponential backoff with jitter."""
    if retry_after is not None:
        return retry_after
    return min(ceiling, base * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)


# --- what the API and the dashboard show --------------------------------------------------------

def coded(code: Optional[str], params: Optional[str]) -> Optional[dict]:
    """A stored reason as the dashboard reads it: {code, params} (codes.py), or None."""
    if not code:
        return None
    return {"code": code, "params": json_or_none(params) or {}}


def attempt_json(attempt: ForwardAttempt) -> dict:
    return {
        "number": attempt.number,
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "error": attempt.error,
        "error_text": coded(attempt.error_code, attempt.error_params),
        "response_excerpt": attempt.response_excerpt,
        "duration_ms": attempt.duration_ms,
        "started_at": iso(attempt.started_at),
    }


def delivery_json(delivery: ForwardDelivery, attempts: Optional[Iterable[ForwardAttempt]] = None) -> dict:
    data = {
        "id": delivery.id,
        "destination_id": delivery.destination_id,
        "event_id": delivery.event_id,
        "media_id": delivery.media_id,
        "type": delivery.type,
        "webhook_id": delivery.webhook_id,
        "state": delivery.state,
        "replay": delivery.replay,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "last_error_text": coded(delivery.last_error_code, delivery.last_error_params),
        "created_at": iso(delivery.created_at),
        "finished_at": iso(delivery.finished_at),
    }
    if attempts is not None:
        data["attempt_log"] = [attempt_json(attempt) for attempt in attempts]
    return data


def event_forwarding(event_id: int) -> dict:
    """Each destination's deliveries of one event, with every attempt (the event page's panel)."""
    deliveries = list(ForwardDelivery.select().where(ForwardDelivery.event == event_id).order_by(ForwardDelivery.id))
    attempts: dict[int, list] = {}
    if deliveries:
        for attempt in ForwardAttempt.select().where(ForwardAttempt.delivery.in_([d.id for d in deliveries])) \
                .order_by(ForwardAttempt.id):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    destinations = ForwardDestination.select().order_by(ForwardDestination.id)  # switched off ones too
    return {
        "event_id": event_id,
        "destinations": [
            {"destination": destination_json(destination, counts=False),
             "deliveries": [delivery_json(d, attempts.get(d.id, [])) for d in deliveries
                            if d.destination_id == destination.id]}
            for destination in destinations
        ],
    }
