"""The webhook pipeline: authenticate, store the raw request, then normalise it.

The raw request is a row before anything else is made of it, in the same
transaction as its effects: either both are committed and the provider gets
200, or neither is and the provider retries. If normalising fails, the row
stays with outcome ``failed`` and the error, and can be replayed after a fix.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import time
import zlib
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import campaigns
import handlers
from config import SECRET_SETTINGS
from handlers import REGISTRY
from handlers.base import (
    ConnectionEvent,
    ContactEvent,
    DeleteEvent,
    EditEvent,
    KnownAlias,
    MessageEvent,
    Normalised,
    PayloadError,
    PresenceEvent,
    QrCodeEvent,
    RouteHint,
    StatusEvent,
    is_alias_jid,
    is_group_jid,
)
from handlers.provider import Provider, Signature
from models import (
    Chat,
    Contact,
    JidAlias,
    MediaFile,
    Message,
    MessageStatusChange,
    Presence,
    WebhookEvent,
    Instance,
    clean,
    is_transient,
    phone_digits,
    row_lock,
    savepoint,
    utcnow,
    write_transaction,
)
from access import AuthFailures
from security import REDACTED, AuthFailure, check_webhook_token, redact, redact_body, same_secret, shown_body_text
from storage.decrypt import decode_digest
from storage.inline import blob_path, extract_inline_media

log = logging.getLogger(__name__)

# JSON deeper than this is refused: no provider nests more than ~15 levels and
# recursive code further on must not hit Python's recursion limit.
MAX_JSON_DEPTH = 100
# What is kept of a request that failed authentication (it is not trusted data).
UNTRUSTED_BODY_BYTES = 4096
# The outcome of an acknowledged event the applier has not applied yet.
STORED = "stored"
# How many times an event's row is tried when the database fails for a moment.
STORE_TRIES = 3
# How many acknowledged events' normalised results are kept for the applier.
MAX_FRESH = 10_000

# Request headers never stored: our own credentials, not the provider's data.
DROPPED_HEADERS = frozenset({"authorization", "x-webhook-token", "cookie", "proxy-authorization"})
MAX_HEADER_TEXT = 8192
# What an edited replay does not take from its original: they described the original's bytes.
BODY_FRAMING_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})
MAX_RECORDED_SIZE = 2**31 - 1


@dataclass
class IncomingRequest:
    """What the view read from one HTTP request."""

    body: bytes
    path: str
    hint: RouteHint
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    remote_addr: Optional[str] = None
    request_id: str = "-"
    method: str = "POST"
    content_type: Optional[str] = None
    content_length: Optional[int] = None
    replay_of: Optional[int] = None  # the event an edited replay was made from (see Pipeline.replay_edited)


@dataclass
class Answer:
    """What to send back, plus what the request log line reports."""

    status: int
    body: dict
    event_id: Optional[int] = None
    provider: Optional[str] = None
    kind: Optional[str] = None
    outcome: Optional[str] = None


class Pipeline:
    """One per app: the settings the pipeline needs and its instance cache."""

    def __init__(self, settings: Mapping[str, Any], on_media: Optional[Callable[[], None]] = None,
                 auth_failures: Optional[AuthFailures] = None):
        self.on_media = on_media  # told after a commit that queued media downloads
        self.on_stored: Optional[Callable[[], None]] = None  # told after a commit that left events to apply
        # What this process normalised when it acknowledged an event, for the applier
        # (so it does not parse the body again); bounded, it is only a shortcut.
        self.fresh: dict[int, Normalised] = {}
        self.auth_failures = auth_failures  # caps how many refused, untrusted requests become rows
        self.data_dir = Path(settings["DATA_DIR"])
        self.opt_out_words = tuple(settings["CAMPAIGN_OPT_OUT_WORDS"])
        self.webhook_token = settings.get("WEBHOOK_TOKEN")
        self.settings = settings
        self.allow_unknown_instances = settings.get("ALLOW_UNKNOWN_INSTANCES", True)
        self._instances: dict[tuple[str, str], Instance] = {}
        self.secrets = [settings.get(name) for name in SECRET_SETTINGS]

    # --- receiving ----------------------------------------------------------

    def receive(self, request: IncomingRequest) -> Answer:
        """Authenticate, store and normalise one webhook request."""
        signed_by = self.signer(request)
        if signed_by is not None:
            signature = signed_by.signature
            failure = signature.verify(self.settings.get(signature.secret_setting), request.headers.get(signature.header),
                                       request.body)
        else:
            failure = check_webhook_token(self.webhook_token, request.headers, request.query)
        if failure:
            return self.reject(request, failure.status, failure.error, trusted=False)

        payload, error = parse_json(request.body)
        if error:
            return self.reject(request, 400, error)
        unsigned = self.unsigned_but_required(payload, request.hint, signed_by)
        if unsigned is not None:
            # Unsigned while a signature is required: as untrusted as a bad signature.
            return self.reject(request, 401, f"missing {unsigned.header} ({unsigned.secret_setting} is set)",
                               trusted=False)
        return self.admit(request, payload)

    def admit(self, request: IncomingRequest, payload: dict) -> Answer:
        """Store a parsed request whose sender is trusted, and say what becomes of it.

        The sender is the provider, authenticated by receive, or whoever
        replays an edited copy of an event (``request.replay_of``): the
        instance's own token is then not asked for again.
        """
        blobs = extract_inline_media(payload, self.data_dir)
        body_text = json.dumps(payload, ensure_ascii=False) if blobs else None
        normalised, failure_text = normalise(payload, request.hint)

        instance = None
        if normalised and normalised.instance_id:
            instance = self.instance_for(normalised.provider, normalised.instance_id)
            if instance is None:
                return self.reject(request, 403, f"unknown instance {normalised.instance_id!r} "
                                   "(ALLOW_UNKNOWN_INSTANCES is off)", normalised=normalised)
            failure = None if request.replay_of else instance_token_failure(REGISTRY.get(normalised.provider),
                                                                             instance, request.headers)
            if failure:
                return self.reject(request, failure.status, failure.error, trusted=False)
        return self.store(request, normalised, failure_text, instance, body_text, payload)

    def signer(self, request: IncomingRequest) -> Optional[Provider]:
        """The provider whose signature header the request carries, when its secret is set.

        A signed request is checked by its signature instead of WEBHOOK_TOKEN: a
        provider that signs its webhooks (Meta) cannot add a token to them.
        """
        for provider, signature in REGISTRY.signatures():
            if self.settings.get(signature.secret_setting) and request.headers.get(signature.header):
                return provider
        return None

    def unsigned_but_required(self, payload: Any, hint: RouteHint, signed_by: Optional[Provider]) -> Optional[Signature]:
        """The signature a payload lacks: its provider signs, its secret is set, and this request was not signed."""
        for provider, signature in REGISTRY.signatures():
            if provider is not signed_by and self.settings.get(signature.secret_setting) \
                    and isinstance(payload, dict) and provider.detect(payload, hint):
                return signature
        return None

    def instance_for(self, provider: str, external_id: str) -> Optional[Instance]:
        """The instance (cached: its id never changes), created when unknown ones are allowed."""
        key = (provider, external_id)
        instance = self._instances.get(key)
        if instance is None:
            if self.allow_unknown_instances:
                instance = Instance.find_or_create(provider, external_id)
            else:
                instance = Instance.find(provider, external_id)
            if instance is not None:
                self._instances[key] = instance
        return instance

    def forget_instances(self) -> None:
        """Drop the instance cache: instances were deleted (the demo's), so a cached id may be gone."""
        self._instances = {}

    def store(self, request: IncomingRequest, normalised: Optional[Normalised],
              failure_text: Optional[str], instance: Optional[Instance],
              body_text: Optional[str], payload: Any = None) -> Answer:
        """Commit the raw event: the acknowledgement. The applier makes its effects afterwards.

        An event with something to apply is stored with the outcome
        ``stored``; one that is ignored or unreadable gets its final outcome
        at once. A copy of an event already stored loses the race on the
        unique dedupe key and is recorded as a duplicate instead.

        Everything that needs no database (the row, its JSON, the dedupe key)
        is made before the write transaction, which holds SQLite's one writer.
        """
        key = dedupe_key(normalised, request.body) if failure_text is None else None
        outcome, error = expected_outcome(normalised, failure_text)
        row = self.event_row(request, normalised, instance, body_text, payload=payload)
        to_apply = outcome == "processed"
        row.update(outcome=STORED if to_apply else outcome, error=error, processed_at=None if to_apply else utcnow())
        event_id = self.store_retrying(row, key)
        if row["outcome"] == STORED:
            if len(self.fresh) < MAX_FRESH:
                self.fresh[event_id] = normalised
            if self.on_stored is not None:
                self.on_stored()
        return self.answer_for(event_id, row, duplicate_of=row.get("duplicate_of"))

    @staticmethod
    def has_media(normalised: Normalised) -> bool:
        return any(isinstance(item, MessageEvent) and item.media is not None for item in normalised.events)

    def answer_for_stored(self, event_id: int) -> Answer:
        """The answer an event's row gives now (after waiting for it to be applied)."""
        event = WebhookEvent.get_by_id(event_id)
        row = {"outcome": event.outcome, "provider": event.provider, "kind": event.kind, "error": event.error}
        return self.answer_for(event_id, row, duplicate_of=event.duplicate_of_id)

    @staticmethod
    def store_retrying(row: dict, key: Optional[str]) -> int:
        """Commit the event's row, trying again after a transient database error (a lock, a deadlock,
        a lost connection); the error propagates after the last try, for a 503 the provider retries."""
        for attempt in range(1, STORE_TRIES + 1):
            attempt_row = dict(row)
            try:
                with write_transaction():
                    event_id = Pipeline.store_once(attempt_row, key)
            except Exception as exc:
                if attempt == STORE_TRIES or not is_transient(exc):
                    raise
                log.warning("storing an event failed (%s); trying again (%d of %d)", exc, attempt, STORE_TRIES)
                time.sleep(random.uniform(0.5, 1.5) * 0.05 * attempt)
                continue
            row.update(attempt_row)
            return event_id
        raise AssertionError("unreachable")

    @staticmethod
    def store_once(row: dict, key: Optional[str]) -> int:
        """Insert the event; a copy of one already stored is inserted as its duplicate.

        Each row carries the answer it is about to be given (see answer_body).
        """
        row["response"] = stored_answer(answer_body(None, row))
        event_id = WebhookEvent.store(row, dedupe_key=key)
        if event_id is None:
            original = WebhookEvent.select(WebhookEvent.id).where(WebhookEvent.dedupe_key == key).scalar()
            row.update(outcome="duplicate", error=None, duplicate_of=original)
            row["response"] = stored_answer(answer_body(None, row))
            event_id = WebhookEvent.store(row)
        return event_id

    @staticmethod
    def record_answer(answer: Answer) -> None:
        """Keep the answer given after waiting for the applier (``?wait=1``) as the event's response.

        Best effort: the event is stored already, and a database busy for a
        moment only leaves the first answer ("stored") on its row.
        """
        try:
            with write_transaction():
                WebhookEvent.update(response=stored_answer(answer.body)) \
                    .where(WebhookEvent.id == answer.event_id).execute()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("event %s: its answer was not recorded (%s)", answer.event_id, exc)

    def apply_safely(self, normalised: Normalised, instance: Optional[Instance], event_id: int,
                     received_at: datetime) -> tuple[str, Optional[str]]:
        """Apply the events in a savepoint: the event's outcome and error.

        ``("processed", None)`` when everything applied. When only some of a
        batch's messages and statuses failed (see apply_events), the others
        are kept: ``("processed", "1 of 3 items failed: ...")``, the error
        naming the failed items for whoever looks at the stored event. When
        applying failed as a whole, its work is rolled back:
        ``("failed", error)``. The caller writes both on the event's row.
        """
        try:
            with savepoint("zaphook_apply"):
                failures = apply_events(normalised, instance, event_id, received_at, self.data_dir,
                                        self.opt_out_words)
        except EveryItemFailed as exc:
            return "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - any bug must not lose the event
            if is_transient(exc):
                raise  # a deadlock or a lost connection: the caller tries the whole transaction again
            log.exception("event %s could not be applied", event_id)
            return "failed", f"{type(exc).__name__}: {exc}"
        if failures:
            return "processed", clean(partial_failure_text(failures, normalised))
        return "processed", None

    def event_row(self, request: IncomingRequest, normalised: Optional[Normalised],
                  instance: Optional[Instance], body_text: Optional[str] = None,
                  trusted: bool = True, payload: Any = None) -> dict:
        """The event's row; ``payload``: the body's JSON (as stored) when it was parsed already."""
        body, encoding = encode_body(request.body, body_text, trusted)
        return dict(
            request_id=request.request_id,
            received_at=utcnow(),
            method=request.method,
            route=clean(request.path, 255),
            remote_addr=request.remote_addr,
            headers=headers_json(request.headers),
            content_type=clean(request.content_type, 255),
            body=body,
            body_encoding=encoding,
            # a declared size (413) can exceed the 32-bit column: kept as "at least 2 GiB"
            body_size=min(len(request.body) if request.body else (request.content_length or 0), MAX_RECORDED_SIZE),
            search_text=searchable_text(body, encoding, self.secrets, payload),
            summary=summarise(normalised),
            provider=normalised.provider if normalised else None,
            kind=normalised.kind if normalised else None,
            event_name=clean(normalised.event_name, 255) if normalised else None,
            instance=instance,
            message_id=clean(first_message_id(normalised), 255),
            replay_of=request.replay_of,
        )

    def reject(self, request: IncomingRequest, status: int, error: str, trusted: bool = True,
               normalised: Optional[Normalised] = None) -> Answer:
        """Record a refused request (what was received is kept) and say why.

        Untrusted ones (failed authentication, cross-site posts) are only
        counted, not stored, once their client is over its limit per minute.
        """
        if not trusted and self.auth_failures is not None and not self.auth_failures.record(request.remote_addr):
            return Answer(status, {"error": error, "detail": {"event_id": None, "stored": False}}, None,
                          None, None, "rejected")
        row = self.event_row(request, normalised, None, trusted=trusted)
        response = stored_answer({"error": error, "detail": {"event_id": None}})
        with write_transaction():
            event = WebhookEvent.create(outcome="rejected", error=error, http_status=status,
                                        processed_at=utcnow(), response=response, **row)
        return Answer(status, {"error": error, "detail": {"event_id": event.id}}, event.id,
                      row["provider"], row["kind"], "rejected")

    def reject_oversized(self, request: IncomingRequest, limit_mb: float) -> Answer:
        return self.reject(request, 413, f"body larger than MAX_BODY_MB ({limit_mb:g} MB)")

    @staticmethod
    def answer_for(event_id: int, row: dict, duplicate_of: Optional[int] = None) -> Answer:
        """The answer to the provider: what became of its request, and why when it failed or was ignored.

        A processed event whose batch had items that failed (its row's error
        names them) gets the normal processed answer: the provider can do
        nothing about our failing to store one message, and retrying would
        only make a duplicate. The detail stays on the stored event.
        """
        body = answer_body(event_id, row, duplicate_of)
        return Answer(200, body, event_id, row.get("provider"), row.get("kind"), row["outcome"])

    # --- replay and dry run ---------------------------------------------------

    def replay(self, event: WebhookEvent, hint: RouteHint) -> Answer:
        """Run a stored request through normalising again (e.g. after a fix); 409 where it cannot work."""
        refusal = replay_refusal(event)
        if refusal:
            return Answer(409, {"error": REPLAY_REFUSALS[refusal], "code": refusal, "detail": {"event_id": event.id}})
        payload, _error = parse_json(event.body_bytes())
        normalised, failure_text = normalise(payload, hint)
        instance = None
        if normalised and normalised.instance_id:
            instance = self.instance_for(normalised.provider, normalised.instance_id)
            if instance is None:
                return Answer(403, {"error": f"unknown instance {normalised.instance_id!r}",
                                    "detail": {"event_id": event.id}})
        outcome, error = expected_outcome(normalised, failure_text)
        with write_transaction():
            if outcome == "processed":
                # The error is replaced, not kept: items that fail now are named, a
                # replay where every item applies clears the earlier failure's text.
                outcome, error = self.apply_safely(normalised, instance, event.id, event.received_at)
            if event.outcome == "duplicate" and outcome == "processed":
                outcome = "duplicate"
            row = dict(
                outcome=outcome, error=error, processed_at=utcnow(), instance=instance,
                provider=normalised.provider if normalised else event.provider,
                kind=normalised.kind if normalised else event.kind,
                message_id=clean(first_message_id(normalised), 255) or event.message_id,
                summary=summarise(normalised) or event.summary,
            )
            WebhookEvent.update(replay_count=WebhookEvent.replay_count + 1, **row) \
                .where(WebhookEvent.id == event.id).execute()
        if outcome in ("processed", "duplicate") and normalised is not None and self.has_media(normalised) \
                and self.on_media is not None:
            self.on_media()
        answer = self.answer_for(event.id, row, duplicate_of=event.duplicate_of_id)
        answer.body["replayed"] = True
        if error and "detail" not in answer.body:
            answer.body["detail"] = error  # a replay is asked for by whoever fixes it: the items that still fail
        return answer

    def replay_edited(self, original: WebhookEvent, body: bytes, request_id: str,
                      remote_addr: Optional[str] = None) -> Answer:
        """Store an edited copy of a stored request as a new event, as if it had just arrived on its route.

        The original is left untouched. The copy has the original's route,
        headers and content type and goes the way every webhook goes (stored,
        deduplicated: an unchanged message is a duplicate, then applied by the
        applier), except that its sender is not authenticated again: a replay
        is asked for by whoever may use the dashboard. A value still shown as
        "[redacted]" where the original had a secret gets the original's value
        back (see restore_redacted), so nobody needs to see a secret to replay
        it. Refused with 400 when the edited body is not a JSON object (nothing
        is stored) and 409 when the original failed authentication.
        """
        detail = {"event_id": None, "replay_of": original.id}
        refusal = edit_refusal(original)
        if refusal:
            return Answer(409, {"error": REPLAY_REFUSALS[refusal], "code": refusal, "detail": detail})
        payload, error = parse_json(body)
        if error:
            return Answer(400, {"error": f"the edited body cannot be replayed: {error}", "code": "edited_not_json",
                                "params": {"reason": error}, "detail": detail})
        stored, stored_error = (parse_json(original.body_bytes()) if original.body_encoding == "utf-8"
                                else (None, "not text"))
        if stored_error is None:
            _is_json, shown = redact_body(original.body, self.secrets, parsed=stored)
            restored = restore_redacted(payload, stored, shown)
            if restored != payload:
                payload, body = restored, json.dumps(restored, ensure_ascii=False).encode("utf-8")
        headers = {name: value for name, value in original.headers_dict.items() if name not in BODY_FRAMING_HEADERS}
        request = IncomingRequest(
            body=body, path=original.route, hint=REGISTRY.hint_for_path(original.route),
            headers=headers, remote_addr=remote_addr, request_id=request_id,
            content_type=original.content_type or "application/json", replay_of=original.id,
        )
        return self.admit(request, payload)

    def dry_run(self, body: bytes, hint: RouteHint) -> Answer:
        """What zaphook would make of a payload, writing nothing."""
        payload, error = parse_json(body)
        if error:
            return Answer(400, {"error": error, "detail": None})
        normalised, failure_text = normalise(payload, hint)
        if failure_text is not None:
            return Answer(200, {"ok": False, "would_store": True, "outcome": "failed", "error": failure_text})
        events = [describe_event(item, self.secrets) for item in normalised.events]
        media = [event["media"] for event in events if event.get("media")]
        key = dedupe_key(normalised, body)
        duplicate = key is not None and WebhookEvent.select().where(WebhookEvent.dedupe_key == key).exists()
        known = None
        if normalised.instance_id:
            known = Instance.find(normalised.provider, normalised.instance_id) is not None
        outcome = "duplicate" if duplicate else (
            "ignored" if normalised.ignored_reason or not normalised.events else "processed")
        return Answer(200, {
            "ok": True,
            "would_store": True,
            "outcome": outcome,
            "provider": normalised.provider,
            "kind": normalised.kind,
            "event_name": normalised.event_name,
            "instance_id": normalised.instance_id,
            "instance_known": known,
            "ignored_reason": normalised.ignored_reason,
            "events": events,
            "media_to_fetch": media,
        })


# --- pure helpers -------------------------------------------------------------

# Why a stored request cannot be replayed (as it is, or with changes): a code the dashboard translates
# ("events.replay_refusal.<code>") and the sentence the API gives with it.
REPLAY_REFUSALS = {
    "untrusted": "this request failed authentication: it is kept for inspection, not replayed",
    "pending": "this request is not applied yet: the applier will apply it shortly",
    "body_not_stored": "the body of this request was not stored (it was refused before it was read)",
    "not_text": "the body of this request is not UTF-8 text: it cannot be replayed or edited",
    "not_json": "the stored body is not a JSON object: replay it with changes instead",
}


def edit_refusal(event: WebhookEvent) -> Optional[str]:
    """Why the event cannot be replayed with changes (a REPLAY_REFUSALS code), or None."""
    if event.failed_authentication:
        return "untrusted"
    if event.body is None or (event.body == "" and event.body_size > 0):
        return "body_not_stored"
    if event.body_encoding != "utf-8":
        return "not_text"
    return None


def replay_refusal(event: WebhookEvent) -> Optional[str]:
    """Why the event cannot be replayed as it is (a REPLAY_REFUSALS code), or None."""
    refusal = edit_refusal(event)
    if refusal:
        return refusal
    if event.outcome == STORED:
        return "pending"
    _payload, error = parse_json(event.body_bytes())
    return "not_json" if error else None


def restore_redacted(edited: Any, stored: Any, shown: Any) -> Any:
    """``edited`` with each value it kept as ``shown`` (redacted) put back to the ``stored`` one at that place.

    Only where the three agree on the place (same keys, same list positions)
    and the shown value differs from the stored one (it was masked): a secret
    can only go back where it was, never be copied elsewhere or read.
    """
    if isinstance(edited, dict) and isinstance(stored, dict) and isinstance(shown, dict):
        return {key: restore_redacted(value, stored[key], shown[key]) if key in stored and key in shown else value
                for key, value in edited.items()}
    if isinstance(edited, list) and isinstance(stored, list) and isinstance(shown, list):
        return [restore_redacted(value, stored[index], shown[index])
                if index < len(stored) and index < len(shown) else value
                for index, value in enumerate(edited)]
    if edited == shown and shown != stored and not isinstance(edited, (dict, list)):
        return stored
    return edited


def answer_body(event_id: Optional[int], row: dict, duplicate_of: Optional[int] = None) -> dict:
    """The JSON answer to an accepted request (see Pipeline.answer_for); ``duplicate_of`` defaults to the row's."""
    outcome = row["outcome"]
    body = {"ok": True, "event_id": event_id, "outcome": outcome,
            "provider": row.get("provider"), "kind": row.get("kind")}
    duplicate_of = duplicate_of or row.get("duplicate_of")
    if duplicate_of:
        body["duplicate_of"] = duplicate_of
    if row.get("error") and outcome in ("failed", "ignored"):
        body["detail"] = row["error"]
    return body


def stored_answer(body: dict) -> str:
    """An answer's body as WebhookEvent.response keeps it: JSON text any backend stores (see clean).

    A row's own id is not known before its INSERT, so an answer is stored with
    ``event_id`` null and models.event_response fills it in.
    """
    return clean(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


# How much of a message's text the event list is given.
SUMMARY_TEXT_CHARS = 200


def summarise(normalised: Optional[Normalised]) -> Optional[str]:
    """What a request was, in a few words, as JSON for WebhookEvent.summary (None when nothing was read).

    ``{"kind": code, "text", "type", "state", "chat", "chat_name", "items"}``,
    only the keys that apply: ``kind`` is message_in, message_out, reaction,
    status, presence, connection, qrcode, contact, message_edit or
    message_delete, taken from the first item; ``items`` counts the items when
    a batch has more than one. Made from the handler's result when the
    request is stored, so the event list never reads bodies.
    """
    if normalised is None or not normalised.events:
        return None
    first = normalised.events[0]
    summary: dict[str, Any] = {"kind": item_kind(first)}
    if isinstance(first, MessageEvent):
        if summary["kind"] == "reaction":
            summary["text"] = first.reaction_emoji
        else:
            summary["text"] = first.text or first.caption or first.location_name
            summary["type"] = first.type
        summary["chat"] = first.chat_id
        summary["chat_name"] = first.chat_name or (None if first.is_group or first.from_me else first.sender_name)
    elif isinstance(first, StatusEvent):
        summary.update(state=first.status, chat=first.chat_id, text=first.error)
    elif isinstance(first, (ConnectionEvent, PresenceEvent)):
        summary["state"] = first.state
        if isinstance(first, PresenceEvent):
            summary["chat"] = first.chat_id
    elif isinstance(first, ContactEvent):
        summary.update(chat=first.contact_id, chat_name=first.name)
    elif isinstance(first, EditEvent):
        summary.update(text=first.text, chat=first.chat_id)
    elif isinstance(first, DeleteEvent):
        summary["chat"] = first.chat_id
    if isinstance(summary.get("text"), str):
        summary["text"] = clean(summary["text"], SUMMARY_TEXT_CHARS)
    if len(normalised.events) > 1:
        summary["items"] = len(normalised.events)
    return clean(json.dumps({key: value for key, value in summary.items() if value not in (None, "")},
                            ensure_ascii=False, separators=(",", ":")))


# The kind of each item that is not a message (a message is message_in, message_out or a reaction).
_ITEM_KINDS = {
    StatusEvent: "status", PresenceEvent: "presence", ConnectionEvent: "connection", QrCodeEvent: "qrcode",
    ContactEvent: "contact", EditEvent: "message_edit", DeleteEvent: "message_delete",
}
# Every kind a summary names: codes the dashboard translates ("event_kind.<code>").
SUMMARY_KINDS = ("message_in", "message_out", "reaction", *_ITEM_KINDS.values(), "unknown")


def item_kind(item: Any) -> str:
    """The event_kind code of one normalised item (one of SUMMARY_KINDS)."""
    if isinstance(item, MessageEvent):
        if item.type == "reaction" or item.reaction_to:
            return "reaction"
        return "message_out" if item.from_me else "message_in"
    return _ITEM_KINDS.get(type(item), "unknown")


class BodyEncodingError(ValueError):
    """A Content-Encoding zaphook cannot or will not undo, with the status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# zlib's window bits: gzip only, zlib or gzip by header, raw deflate.
_GZIP, _ZLIB_OR_GZIP, _RAW_DEFLATE = 16 + zlib.MAX_WBITS, 32 + zlib.MAX_WBITS, -zlib.MAX_WBITS
_INFLATE_STEP = 64 * 1024


def decode_content(body: bytes, content_encoding: Optional[str], limit: int) -> bytes:
    """The body with its Content-Encoding undone (Z-API gzips its webhooks).

    ``gzip`` (several members too) and ``deflate`` (zlib-wrapped or raw) are
    inflated step by step, never past ``limit`` bytes, so a small compressed
    body cannot expand into gigabytes (413). Anything else is 415; a corrupt
    stream is 400.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):  # the last one applied is undone first
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, _GZIP, limit, "gzip")
        elif coding == "deflate":
            try:
                body = _inflate(body, _ZLIB_OR_GZIP, limit, "deflate")
            except BodyEncodingError as exc:
                if exc.status != 400:
                    raise
                body = _inflate(body, _RAW_DEFLATE, limit, "deflate")
        else:
            raise BodyEncodingError(415, f"unsupported Content-Encoding {coding!r}: send gzip, deflate or none")
    return body


def _inflate(data: bytes, wbits: int, limit: int, name: str) -> bytes:
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, _INFLATE_STEP)
            while True:
                out += chunk
                if len(out) > limit:
                    raise BodyEncodingError(413, f"body larger than MAX_BODY_MB once its {name} is undone")
                if not inflater.unconsumed_tail:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, _INFLATE_STEP)
            out += inflater.flush()
        except zlib.error:
            raise BodyEncodingError(400, f"body is not valid {name} (Content-Encoding: {name})") from None
        if len(out) > limit:
            raise BodyEncodingError(413, f"body larger than MAX_BODY_MB once its {name} is undone")
        if not inflater.eof:
            raise BodyEncodingError(400, f"body is not valid {name}: the stream ends early")
        data = inflater.unused_data
        if wbits != _GZIP or not data.strip(b"\0"):
            return bytes(out)


def parse_json(body: bytes) -> tuple[Any, Optional[str]]:
    """The JSON object in a body, or an error text for a 400 answer."""
    if not body or not body.strip():
        return None, "empty body: expected a JSON object"
    try:
        text = body.decode("utf-8-sig")  # JSON on the wire is UTF-8 (RFC 8259)
    except UnicodeDecodeError:
        return None, "body is not valid UTF-8 JSON"
    try:
        payload = json.loads(text)
    except RecursionError:
        return None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"expected a JSON object, got a JSON {json_type(payload)}"
    if json_depth(payload) > MAX_JSON_DEPTH:
        return None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    return payload, None


def json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def json_depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def normalise(payload: dict, hint: RouteHint) -> tuple[Optional[Normalised], Optional[str]]:
    """Run the provider handlers; a failure is text for the event row, never an exception."""
    try:
        return handlers.normalise(payload, hint), None
    except PayloadError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a handler bug must not lose the event
        log.exception("a handler failed on a %s payload", hint.route)
        return None, f"{type(exc).__name__}: {exc}"


def dedupe_key(normalised: Optional[Normalised], body: bytes) -> Optional[str]:
    """A key that is the same for every copy of one provider event.

    Messages, statuses, edits and deletes have ids: their key is built from
    them, so a retry with a different envelope (a new date_time) is still a
    duplicate. Unknown payloads use the body's hash. Presence, connection and
    contact events have no id and may legitimately repeat: no key.
    """
    if normalised is None:
        return None
    if normalised.ignored_reason or not normalised.events:
        return "body:" + hashlib.sha256(body).hexdigest()
    keys = [event.dedupe_key for event in normalised.events]
    if any(key is None for key in keys):
        return None
    joined = "\n".join([normalised.provider, normalised.instance_id or "", *keys])
    return "ev:" + hashlib.sha256(joined.encode("utf-8")).hexdigest()


def expected_outcome(normalised: Optional[Normalised], failure_text: Optional[str]) -> tuple[str, Optional[str]]:
    """The outcome a request will have unless applying its events fails."""
    if failure_text is not None:
        return "failed", failure_text
    if normalised.ignored_reason or not normalised.events:
        return "ignored", normalised.ignored_reason or "no events in payload"
    return "processed", None


def first_message_id(normalised: Optional[Normalised]) -> Optional[str]:
    for event in normalised.events if normalised else ():
        message_id = getattr(event, "message_id", None)
        if message_id:
            return message_id
    return None


def encode_body(body: bytes, body_text: Optional[str], trusted: bool) -> tuple[Optional[str], str]:
    """The body as text for the database (base64 when it is not clean UTF-8)."""
    if body_text is not None:
        return clean(body_text), "utf-8"
    if not trusted:
        return base64.b64encode(body[:UNTRUSTED_BODY_BYTES]).decode("ascii"), "untrusted"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"
    if "\x00" in text:
        return base64.b64encode(body).decode("ascii"), "base64"
    return text, "utf-8"


def searchable_text(body: Optional[str], encoding: str, secrets: list, payload: Any = None) -> Optional[str]:
    """What the event search looks in: the body as the API shows it, secrets redacted.

    None for bodies the API does not show as text (untrusted or base64).
    """
    if body is None or encoding != "utf-8":
        return None
    if payload is None:
        return clean(shown_body_text(body, secrets))
    return clean(shown_body_text(body, secrets, parsed=payload))


def instance_token_failure(provider: Optional[Provider], instance: Instance,
                           headers: Mapping[str, str]) -> Optional[AuthFailure]:
    """The provider's instance token header checked against the instance's stored api_token.

    Only when both exist: the provider names such a header (Z-API's
    ``z-api-token``) and a person stored the instance's token. The expected
    value is never shown.
    """
    header = provider.instance_token_header if provider is not None else None
    if not header:
        return None
    # Read now, not from the pipeline's cached row: a person may have set or changed it since.
    expected = Instance.select(Instance.api_token).where(Instance.id == instance.id).scalar()
    if not expected or not expected.strip():
        return None
    given = headers.get(header)
    if not given:
        return AuthFailure(401, f"missing {header} header (the instance has an api token)")
    if not same_secret(given.strip(), expected.strip()):
        return AuthFailure(403, f"{header} does not match the instance's api token")
    return None


def headers_json(headers: Mapping[str, str]) -> str:
    kept = {}
    dropped = DROPPED_HEADERS | REGISTRY.instance_token_headers()
    for name, value in headers.items():
        lower = name.lower()
        kept[lower] = REDACTED if lower in dropped else clean(value, 1024)
    text = json.dumps(kept, ensure_ascii=False)
    return text if len(text) <= MAX_HEADER_TEXT else json.dumps({"note": "headers too large to keep"})


def describe_event(event: Any, secrets: list) -> dict:
    """A normalised event as redacted JSON, for the dry run."""
    data = asdict(event) if is_dataclass(event) else dict(event)
    data = {"event": type(event).__name__, **data}
    return redact(json_ready(data), secrets)


def json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


# --- applying normalised events to the model ---------------------------------

class EveryItemFailed(Exception):
    """No message or status of a batch could be applied: the whole event failed."""


@dataclass
class ItemFailure:
    """A message or status of a batch that could not be applied (its work was undone)."""

    item: Any  # the MessageEvent or StatusEvent
    error: str  # "ExceptionName: text"

    def __str__(self) -> str:
        if isinstance(self.item, StatusEvent):
            return f"status {self.item.status} of {self.item.message_id}: {self.error}"
        return f"message {self.item.message_id}: {self.error}"


def partial_failure_text(failures: list, normalised: Normalised) -> str:
    """The event's error when some items failed: "1 of 3 items failed: message wamid.2: ..."."""
    return f"{len(failures)} of {count_items(normalised)} items failed: " + "; ".join(map(str, failures))


def count_items(normalised: Normalised) -> int:
    """How many messages and statuses the request carries: each is applied on its own."""
    return sum(isinstance(item, (MessageEvent, StatusEvent)) for item in normalised.events)


def apply_events(normalised: Normalised, instance: Optional[Instance], event_id: int,
                 received_at: datetime, data_dir: Path, opt_out_words: tuple = ()) -> list:
    """Write what the events say into the model, inside the caller's transaction.

    ``opt_out_words``: a reply that is only one of them opts its number out of campaigns.

    When a request carries several messages and statuses (a Meta batch), each
    is applied in a savepoint of its own: one that fails is undone alone and
    returned as an ItemFailure, the others are kept. When all of them fail,
    EveryItemFailed is raised. A request with a single one applies it as
    before: its failure is raised as is.
    """
    if instance is None:
        raise PayloadError("missing instance id")
    item_count = count_items(normalised)
    isolated = item_count > 1
    if isolated:
        lock_messages(instance, normalised.events)
    failures = []
    latest = None
    for item in normalised.events:
        at = getattr(item, "timestamp", None) or received_at
        latest = at if latest is None or at > latest else latest
        if isinstance(item, (MessageEvent, StatusEvent)) and isolated:
            failure = apply_item_alone(instance, normalised.provider, item, at, event_id, data_dir,
                                       opt_out_words)
            if failure is not None:
                failures.append(failure)
        elif isinstance(item, (MessageEvent, StatusEvent)):
            record_item(instance, normalised.provider, item, at, event_id, data_dir, opt_out_words)
        elif isinstance(item, ConnectionEvent):
            instance.record_connection(item.state, at, item.reason, item.own_id)
        elif isinstance(item, QrCodeEvent):
            instance.record_connection("connecting", at, "waiting for the QR code to be scanned")
        elif isinstance(item, PresenceEvent):
            Presence.record(instance, known_phone(instance, item.chat_id),
                            known_phone(instance, item.participant_id), item.state, at)
        elif isinstance(item, ContactEvent) and is_group_jid(item.contact_id):
            record_group_name(instance, item)
        elif isinstance(item, ContactEvent):
            Contact.record(instance, known_phone(instance, item.contact_id), item.name, item.profile_picture_url)
        elif isinstance(item, EditEvent):
            Message.update(text=clean(item.text), edited_at=at).where(
                (Message.instance == instance) & (Message.provider_message_id == item.message_id)).execute()
        elif isinstance(item, DeleteEvent):
            Message.update(deleted_at=at).where(
                (Message.instance == instance) & (Message.provider_message_id == item.message_id)
                & Message.deleted_at.is_null()).execute()
    if failures and len(failures) == item_count:
        raise EveryItemFailed("every item failed: " + "; ".join(map(str, failures)))
    if latest is not None:
        instance.touch(latest)
    return failures


def record_group_name(instance: Instance, item: ContactEvent) -> None:
    """A group's subject names its chat, made now if no message came yet.

    Evolution's contacts fall back on the bare id for a group without a
    name: that is no name.
    """
    name = clean(item.name, 255)
    if name and name != item.contact_id.split("@", 1)[0]:
        Chat.record(instance, item.contact_id, name, True, None)


def lock_messages(instance: Instance, events: list) -> None:
    """Take the locks of every message a batch names, in one order, before applying any of it.

    Items lock their message and then update shared rows (a campaign's
    counters). Two batches naming the same messages in other orders (Z-API's
    status ``ids``) would each hold what the other waits for: on PostgreSQL, a
    deadlock that fails one of them.
    """
    keys = {message_lock_key(instance, item.message_id) for item in events
            if isinstance(item, (MessageEvent, StatusEvent))}
    for key in sorted(keys):
        row_lock(key)


def message_lock_key(instance: Instance, message_id: str) -> str:
    return f"message:{instance.id}:{message_id}"


def apply_item_alone(instance: Instance, provider: str, item: Any, at: datetime, event_id: int,
                     data_dir: Path, opt_out_words: tuple) -> Optional[ItemFailure]:
    """Apply one message or status in its own savepoint; a failure undoes only its work."""
    try:
        # One fixed name: these savepoints follow each other, never nest in one another.
        with savepoint("zaphook_item"):
            record_item(instance, provider, item, at, event_id, data_dir, opt_out_words)
    except Exception as exc:  # noqa: BLE001 - one bad item must not sink the others
        if is_transient(exc):
            raise  # not this item's fault: the whole transaction is tried again
        log.exception("event %s: %s %s could not be applied", event_id, type(item).__name__, item.message_id)
        return ItemFailure(item, f"{type(exc).__name__}: {exc}")
    return None


def record_item(instance: Instance, provider: str, item: Any, at: datetime, event_id: int,
                data_dir: Path, opt_out_words: tuple) -> None:
    if isinstance(item, MessageEvent):
        record_message(instance, provider, item, at, event_id, data_dir, opt_out_words)
    else:
        record_status(instance, item, at, event_id)


def record_message(instance: Instance, provider: str, item: MessageEvent, at: datetime,
                   event_id: int, data_dir: Path, opt_out_words: tuple = ()) -> None:
    row_lock(message_lock_key(instance, item.message_id))
    learn_aliases(instance, item.aliases)
    item = by_known_phones(instance, item)
    chat_id = Chat.record(instance, item.chat_id, item.chat_name, item.is_group, item.timestamp, item.chat_kind)
    if item.sender_id and not item.from_me:
        Contact.record(instance, item.sender_id, item.sender_name)
        if item.sender_linked_id:
            record_linked_contact(instance, item.sender_linked_id, item.sender_name, item.sender_id)
    status = item.status or ("sent" if item.from_me else "delivered")
    values = dict(
        provider=provider,
        provider_message_id=item.message_id,
        direction="out" if item.from_me else "in",
        from_me=item.from_me,
        sender_jid=item.sender_id,
        sender_name=clean(item.sender_name, 255),
        type=clean(item.type, 255),
        raw_type=clean(item.raw_type, 255),
        text=item.text,
        caption=item.caption,
        timestamp=item.timestamp,
        quoted_message_id=clean(item.quoted_message_id, 255),
        quoted_text=item.quoted_text,
        forwarded=item.forwarded,
        reaction_to=clean(item.reaction_to, 255),
        reaction_emoji=clean(item.reaction_emoji, 255),
        latitude=item.latitude,
        longitude=item.longitude,
        location_name=clean(item.location_name, 255),
        contacts=json.dumps(item.contacts, ensure_ascii=False) if item.contacts else None,
        interactive_id=clean(item.interactive_id, 255),
        is_voice=bool(item.media and item.media.is_voice),
        edited_at=at if item.edited else None,
        event=event_id,
        status=status,
    )
    if status != "pending":
        values[f"{status}_at"] = at
    message_id, created = Message.record(instance, chat_id, values)
    if not created:
        Message.apply_status(message_id, status, at)
    MessageStatusChange.record(instance, item.message_id, status, at, message_id, event_id)
    for waiting_status, waiting_at, waiting_error in MessageStatusChange.attach_waiting(
            instance, item.message_id, message_id):
        Message.apply_status(message_id, waiting_status, waiting_at, waiting_error)
    if item.media is not None:
        MediaFile.record(message_id, instance, media_values(item.media, data_dir, provider))
    campaigns.track_message(instance, item, at, event_id, opt_out_words)


def learn_aliases(instance: Instance, aliases: tuple) -> None:
    """Remember each alias ↔ phone link; what was kept under a newly linked alias becomes the phone's.

    Its chat, contact and presences join the phone's (see Chat.absorb). The
    alias's lock (see known_phone) keeps a message that names the person by
    the alias alone from being filed under it while the link is learnt.
    """
    for alias in sorted(set(aliases)):
        row_lock(alias_lock_key(instance, alias.alias_jid))
        if JidAlias.learn(instance, alias.alias_jid, alias.phone_jid):
            absorb_alias(instance, alias)


def absorb_alias(instance: Instance, alias: KnownAlias) -> None:
    Chat.absorb(instance, alias.alias_jid, alias.phone_jid)
    Contact.absorb(instance, alias.alias_jid, alias.phone_jid)
    Presence.absorb(instance, alias.alias_jid, alias.phone_jid)


def known_phone(instance: Instance, jid: Optional[str]) -> Optional[str]:
    """The phone JID an alias (a LID, a BSUID) stands for once it is learnt; any other id as it is.

    On PostgreSQL a message of the alias alone and the payload that teaches
    its phone may be applied at the same moment; both take the alias's lock,
    so either the link is learnt first and the message goes to the phone's
    chat, or the message is filed under the alias first and is moved when the
    link is learnt.
    """
    if not is_alias_jid(jid):
        return jid
    row_lock(alias_lock_key(instance, jid))
    return JidAlias.phone_for(instance, jid) or jid


def alias_lock_key(instance: Instance, alias_jid: str) -> str:
    return f"alias:{instance.id}:{alias_jid}"


def by_known_phones(instance: Instance, item: MessageEvent) -> MessageEvent:
    """The message with its chat and author named by phone JID where an alias of theirs is known."""
    chat_id = known_phone(instance, item.chat_id)
    sender_id = known_phone(instance, item.sender_id)
    if (chat_id, sender_id) == (item.chat_id, item.sender_id):
        return item
    return replace(item, chat_id=chat_id, sender_id=sender_id)


def record_linked_contact(instance: Instance, contact_id: str, name: Optional[str], phone_jid: str) -> None:
    """Record another id of a person (a Meta BSUID) as a contact carrying their phone number.

    The link lives in Contact.phone: the "bsuid:<id>" contact and the phone
    JID's contact have the same phone, so either finds the other. (Which chat
    a BSUID's messages go to is JidAlias's business, see learn_aliases.)
    """
    Contact.record(instance, contact_id, name)
    phone = phone_digits(phone_jid)
    if phone:
        Contact.update(phone=phone).where(
            (Contact.instance == instance) & (Contact.jid == contact_id)
            & ((Contact.phone.is_null()) | (Contact.phone != phone))).execute()


def record_status(instance: Instance, item: StatusEvent, at: datetime, event_id: int) -> None:
    row_lock(message_lock_key(instance, item.message_id))
    message_id = Message.id_of(instance, item.message_id)
    MessageStatusChange.record(instance, item.message_id, item.status, at, message_id, event_id, item.error)
    if message_id is not None:
        Message.apply_status(message_id, item.status, at, item.error)
    campaigns.track_status(instance, item.message_id, item.status, at, item.error, event_id,
                           known_phone(instance, item.chat_id))


def media_values(media, data_dir: Path, provider: str) -> dict:
    values = {
        key: getattr(media, key) for key in (
            "media_type", "mimetype", "file_name", "file_length", "media_key", "direct_path", "url",
            "file_sha256", "file_enc_sha256", "caption", "width", "height", "seconds", "is_voice",
            "is_animated", "media_id",
        )
    }
    for key in ("mimetype", "file_name", "media_key", "file_sha256", "file_enc_sha256", "media_id"):
        values[key] = clean(values[key], 255)
    if media.inline_blob:
        path = blob_path(data_dir, media.inline_blob)
        if path is not None:
            values["inline_path"] = str(path.relative_to(data_dir.resolve()))
            values["inline_size"] = media.inline_blob.get("size")
            values["inline_sha256"] = media.inline_blob.get("sha256")
    values["content_key"] = content_key(values, provider)
    return values


def content_key(values: dict, provider: str) -> Optional[str]:
    """What identifies the media's content, so a second delivery can reuse the first download.

    A provider's own media id (Meta's) names a file only within that provider.
    """
    plain = decode_digest(values.get("file_sha256"))
    if plain or values.get("inline_sha256"):
        return f"sha256:{plain.hex() if plain else values['inline_sha256']}"
    encrypted = decode_digest(values.get("file_enc_sha256"))
    if encrypted:
        return f"enc:{encrypted.hex()}"
    if values.get("media_id"):
        return f"{provider}:{values['media_id']}"
    return None


__all__ = ["Pipeline", "IncomingRequest", "Answer", "BodyEncodingError", "decode_content", "parse_json", "dedupe_key"]
