"""The stored requests for people and tools: /api/events, one event, and its replays.

The list pages by id both ways (``before_id`` for older, ``after_id`` for
newer): a cursor stays valid while new events arrive, where an offset would
slide. Each row says what the request was (``summary``: a kind code the
dashboard translates, the text or status, the chat and its name).
"""

from __future__ import annotations

import json

from flask import Blueprint, current_app, g, jsonify, request
from peewee import JOIN

from codes import say
from handlers import REGISTRY
from ingest import STORED, edit_refusal, replay_refusal
from models import OUTCOMES, Chat, Instance, WebhookEvent, event_json, event_response
from security import redact, redact_base64, redact_body, redact_text, redact_values
from views.api import (DEFAULT_LIMIT, MAX_LIMIT, BadRequest, _int_arg, _pipeline, _secrets, abort_with,
                       instance_filter)
from views.webhooks import applied_answer

bp = Blueprint("events_api", __name__)

# What the event list reads of each row: what event_json shows, not the request itself.
_LISTED_EVENT_FIELDS = tuple(field for field in WebhookEvent._meta.sorted_fields
                             if field.name not in ("headers", "body", "search_text", "response"))
# What ?q= looks in: what identifies a request, its error and its body as shown
# (search_text, redacted when stored), never the stored body itself.
_SEARCHED_EVENT_FIELDS = ("route", "event_name", "message_id", "request_id", "error", "search_text")


@bp.get("/api/events")
def list_events():
    text = request.args.get("q", "").strip()
    fields = _LISTED_EVENT_FIELDS + ((WebhookEvent.search_text,) if text else ())
    query = WebhookEvent.select(*fields, Instance).join(Instance, JOIN.LEFT_OUTER)
    if request.args.get("outcome") and request.args["outcome"] not in OUTCOMES:
        raise BadRequest(say("error.one_of", name="outcome", choices=", ".join(OUTCOMES)))
    for name in ("provider", "kind", "outcome"):
        if request.args.get(name):
            query = query.where(getattr(WebhookEvent, name) == request.args[name])
    query = instance_filter(query, WebhookEvent.instance)
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before, after = _int_arg("before_id"), _int_arg("after_id")
    if before is not None and after is not None:
        raise BadRequest(say("error.before_or_after"))
    page = EventPage(query, text, _secrets())
    rows, older, newer = page.read(limit, before, after)
    return jsonify(items=_summaries(rows), next_before_id=older, next_after_id=newer)


class EventPage:
    """Pages of events matching a query, newest first, read by id from either side.

    With ``text``, rows are candidates found by SQL and kept only when what the
    API shows of them contains the text: an error is stored as written (and
    may quote a payload) and a secret may have been configured after
    search_text was made, so no answer depends on a redacted value and the
    search cannot be used to guess one. Candidates that fail the check are
    rare; the reading goes on past them.
    """

    def __init__(self, query, text: str, secrets: list) -> None:
        self.text = text.lower()
        self.secrets = secrets
        if text:
            condition = None
            for name in _SEARCHED_EVENT_FIELDS:
                matches = getattr(WebhookEvent, name).contains(text)
                condition = matches if condition is None else condition | matches
            query = query.where(condition)
        self.query = query

    def read(self, limit: int, before: int | None, after: int | None) -> tuple[list, int | None, int | None]:
        """(rows newest first, the before_id of the older page, the after_id of the newer page).

        Without a cursor: the newest rows. ``after``: the ``limit`` rows just
        newer than it. A cursor is None when there is no page on that side.
        """
        if after is not None:
            rows = self._take(WebhookEvent.id > after, ascending=True, count=limit + 1)
            newer_exists, rows = len(rows) > limit, rows[:limit]
            rows.reverse()
            older_exists = bool(self._take(WebhookEvent.id <= after, ascending=False, count=1))
        else:
            bound = WebhookEvent.id < before if before is not None else None
            rows = self._take(bound, ascending=False, count=limit + 1)
            older_exists, rows = len(rows) > limit, rows[:limit]
            newer_exists = before is not None and bool(self._take(WebhookEvent.id >= before, ascending=True, count=1))
        # An empty page beyond either end still points back at the rows on the other side.
        older = rows[-1].id if rows and older_exists else (after + 1 if not rows and older_exists else None)
        newer = rows[0].id if rows and newer_exists else (before - 1 if not rows and newer_exists else None)
        return rows, older, newer

    def _take(self, bound, ascending: bool, count: int) -> list:
        order = WebhookEvent.id.asc() if ascending else WebhookEvent.id.desc()
        batch_size = max(count, DEFAULT_LIMIT)
        found: list = []
        while True:
            query = self.query if bound is None else self.query.where(bound)
            rows = list(query.order_by(order).limit(batch_size))
            for row in rows:
                if not self.text or self._shows(row):
                    found.append(row)
                    if len(found) == count:
                        return found
            if len(rows) < batch_size:
                return found
            last = rows[-1].id
            bound = (WebhookEvent.id > last) if ascending else (WebhookEvent.id < last)

    def _shows(self, event: WebhookEvent) -> bool:
        """Whether what the API shows of a searched field of the event contains the text."""
        shown = (event.route, event.event_name, event.message_id, event.request_id,
                 redact_text(event.error, self.secrets) if event.error else None,
                 redact_values(event.search_text, self.secrets) if event.search_text else None)
        return any(self.text in value.lower() for value in shown if value)


def _summaries(rows: list) -> list[dict]:
    """The rows as the list shows them, each chat named as it is known now (a group's subject, a contact's name)."""
    items = [_event_summary(row) for row in rows]
    wanted = {(row.instance_id, item["summary"]["chat"]) for row, item in zip(rows, items)
              if row.instance_id and item["summary"] and item["summary"].get("chat")}
    if not wanted:
        return items
    names = {(chat.instance_id, chat.jid): chat.name for chat in
             Chat.select(Chat.instance, Chat.jid, Chat.name)
             .where(Chat.instance.in_({instance for instance, _ in wanted}) & Chat.jid.in_({jid for _, jid in wanted}))
             if chat.name}
    for row, item in zip(rows, items):
        summary = item["summary"]
        if summary and summary.get("chat"):
            name = names.get((row.instance_id, summary["chat"]))
            if name:
                summary["chat_name"] = redact_text(name, _secrets())
    return items


def _event_summary(event: WebhookEvent) -> dict:
    """An event as the list and the detail show it: its error (which may quote a payload) and summary redacted."""
    data = event_json(event)
    if data["error"]:
        data["error"] = redact_text(data["error"], _secrets())
    if data["summary"]:
        data["summary"] = redact(data["summary"], _secrets())
    return data


def _event_or_404(event_id: int) -> WebhookEvent:
    event = WebhookEvent.get_or_none(WebhookEvent.id == event_id)
    if event is None:
        abort_with(404, say("error.no_event", id=event_id))
    return event


@bp.get("/api/events/<int:event_id>")
def show_event(event_id: int):
    """One event: the request (headers, body) redacted, the answer zaphook gave, and what replays can do."""
    event = _event_or_404(event_id)
    secrets = _secrets()
    data = _event_summary(event)
    data["headers"] = redact(event.headers_dict, secrets)
    data["content_type"] = event.content_type
    data["method"] = event.method
    data["body_encoding"] = event.body_encoding
    data["payload"] = None
    if event.failed_authentication:
        # Whoever sent it was not who they claimed: nothing of it is shown.
        data["body"] = None
        data["body_hidden"] = WebhookEvent.HIDDEN_BODY_REASON
    elif event.body_encoding == "utf-8" and event.body is not None:
        is_json, shown = redact_body(event.body, secrets)
        data["payload" if is_json else "body"] = shown
    else:
        data["body_base64"] = redact_base64(event.body, secrets) if event.body else event.body
    # What the sender was told then; "outcome" above is what became of the request since.
    answer = event_response(event)
    data["response"] = {"status": event.http_status, "body": redact(answer, secrets) if answer else None}
    replay, edit = replay_refusal(event), edit_refusal(event)
    data["replay"] = {"allowed": replay is None, "refusal": replay}
    data["replay_edited"] = {"allowed": edit is None, "refusal": edit}
    return jsonify(data)


@bp.post("/api/events/<int:event_id>/replay")
def replay_event(event_id: int):
    """Run the stored request again, in place (after a fix): the same event, its outcome updated."""
    event = _event_or_404(event_id)
    answer = _pipeline().replay(event, REGISTRY.hint_for_path(event.route))
    return jsonify(answer.body), answer.status


@bp.post("/api/events/<int:event_id>/replays")
def replay_edited(event_id: int):
    """Replay the event with changes as a NEW event: ``{"body": "<JSON text>"}`` or ``{"payload": {...}}``.

    201 with the new event's answer (once applied, as ``?wait=1`` gives it);
    400 when the edit is not a JSON object; 409 when the event cannot be replayed.
    The original is left as it was.
    """
    event = _event_or_404(event_id)
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or ("body" in data) == ("payload" in data):
        raise BadRequest(say("error.edit_shape"))
    if "body" in data:
        if not isinstance(data["body"], str):
            raise BadRequest(say("error.edit_body_text"))
        body = data["body"].encode("utf-8", "surrogatepass")
    else:
        if not isinstance(data["payload"], dict):
            raise BadRequest(say("error.edit_payload_object"))
        body = json.dumps(data["payload"], ensure_ascii=False).encode("utf-8")
    answer = _pipeline().replay_edited(event, body, g.request_id, request.remote_addr)
    if answer.outcome == STORED:
        answer = applied_answer(answer, _pipeline(), current_app.extensions["zaphook.applier"])
    g.log_fields = {"provider": answer.provider, "kind": answer.kind, "outcome": answer.outcome}
    return jsonify(answer.body), 201 if answer.event_id and answer.status == 200 else answer.status
