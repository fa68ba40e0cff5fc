"""The JSON API for people and tools: /status, /test and /api/*.

Reachable from this machine; through the tunnel only with the ADMIN_TOKEN.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, jsonify, request
from peewee import JOIN, fn

import status as status_report
from handlers import PROVIDERS as PROVIDER_MODULES
from models import (
    OUTCOMES,
    Chat,
    Client,
    Instance,
    MediaFile,
    Message,
    MessageStatusChange,
    WebhookEvent,
    chat_json,
    event_json,
    instance_json,
    iso,
    message_json,
    status_change_json,
)
from security import redact
from views.webhooks import hint_for_path

bp = Blueprint("api", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class BadRequest(ValueError):
    pass


@bp.app_errorhandler(BadRequest)
def bad_request(exc: BadRequest):
    return jsonify(error=str(exc), detail=None), 400


def _pipeline():
    return current_app.extensions["zaphook.pipeline"]


def _secrets() -> list:
    return _pipeline().secrets


def _int_arg(name: str, default=None, low: int = 1, high: int | None = None):
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{name} must be between {low} and {high}" if high else f"{name} must be at least {low}")
    return value


def instance_filter(query, field):
    """Filter by ?instance= given as the provider's instance id or our numeric id."""
    wanted = request.args.get("instance")
    if not wanted:
        return query
    condition = Instance.external_id == wanted
    if wanted.isdigit():
        condition |= Instance.id == int(wanted)
    return query.where(field.in_(Instance.select(Instance.id).where(condition)))


def page(query, model):
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    before = _int_arg("before_id")
    if before is not None:
        query = query.where(model.id < before)
    rows = list(query.order_by(model.id.desc()).limit(limit))
    next_before = rows[-1].id if len(rows) == limit else None
    return rows, next_before


@bp.get("/status")
def status():
    return jsonify(status_report.build(current_app, request.host_url))


@bp.get("/test")
def self_check():
    return jsonify(status_report.self_check(current_app))


@bp.post("/test")
def dry_run():
    hint = hint_for_path(request.args.get("route", "/webhook/"))
    answer = _pipeline().dry_run(request.get_data(cache=False), hint)
    return jsonify(answer.body), answer.status


@bp.get("/api/events")
def list_events():
    query = WebhookEvent.select(WebhookEvent, Instance).join(Instance, JOIN.LEFT_OUTER)
    if request.args.get("outcome") and request.args["outcome"] not in OUTCOMES:
        raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
    for name in ("provider", "kind", "outcome"):
        if request.args.get(name):
            query = query.where(getattr(WebhookEvent, name) == request.args[name])
    query = instance_filter(query, WebhookEvent.instance)
    text = request.args.get("q", "").strip()
    if text:
        # Case-insensitive "contains" on what identifies a request, and its stored body.
        query = query.where(WebhookEvent.route.contains(text) | WebhookEvent.event_name.contains(text)
                            | WebhookEvent.message_id.contains(text) | WebhookEvent.request_id.contains(text)
                            | WebhookEvent.error.contains(text) | WebhookEvent.body.contains(text))
    rows, next_before = page(query, WebhookEvent)
    return jsonify(items=[event_json(row) for row in rows], next_before_id=next_before)


def _event_or_404(event_id: int) -> WebhookEvent:
    event = WebhookEvent.get_or_none(WebhookEvent.id == event_id)
    if event is None:
        abort(404, description=f"no event {event_id}")
    return event


@bp.get("/api/events/<int:event_id>")
def show_event(event_id: int):
    event = _event_or_404(event_id)
    data = event_json(event)
    data["headers"] = redact(event.headers_dict, _secrets())
    data["body_encoding"] = event.body_encoding
    if event.body_encoding == "utf-8" and event.body is not None:
        try:
            data["payload"] = redact(json.loads(event.body), _secrets())
        except ValueError:
            data["payload"] = None
            data["body"] = redact(event.body, _secrets())
    else:
        data["payload"] = None
        data["body_base64"] = event.body
    return jsonify(data)


@bp.post("/api/events/<int:event_id>/replay")
def replay_event(event_id: int):
    event = _event_or_404(event_id)
    answer = _pipeline().replay(event, hint_for_path(event.route))
    return jsonify(answer.body), answer.status


@bp.get("/api/instances")
def list_instances():
    rows = Instance.select().order_by(Instance.id)
    return jsonify(items=[instance_json(row) for row in rows])


def _json_object() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("send a JSON object")
    return data


def _instance_changes(data: dict) -> dict:
    """The settable fields of an instance, checked (api_token is write-only)."""
    changes = {}
    for name in ("name", "api_token", "api_base_url"):
        if name in data:
            value = data[name]
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{name} must be text or null")
            changes[name] = (value or "").strip() or None
    if changes.get("api_base_url") and not changes["api_base_url"].startswith(("http://", "https://")):
        raise BadRequest("api_base_url must start with http:// or https://")
    if changes.get("api_base_url"):
        changes["api_base_url"] = changes["api_base_url"].rstrip("/")
    if "client" in data:
        if not isinstance(data["client"], str) or not data["client"].strip():
            raise BadRequest("client must be a client name")
        changes["client"] = Client.named(data["client"].strip())
    return changes


@bp.post("/api/instances")
def create_instance():
    data = _json_object()
    provider, external_id = data.get("provider"), data.get("instance_id")
    names = [module.NAME for module in PROVIDER_MODULES]
    if provider not in names:
        raise BadRequest(f"provider must be one of {', '.join(names)}")
    if not isinstance(external_id, str) or not external_id.strip():
        raise BadRequest("instance_id (the provider's instance id or name) is required")
    changes = _instance_changes(data)
    instance, created = Instance.register(provider, external_id.strip(), changes)
    if not created:
        return jsonify(error=f"instance {provider}/{external_id} already exists: PATCH /api/instances/{instance.id}",
                       detail=instance_json(instance)), 409
    return jsonify(instance_json(instance)), 201


@bp.patch("/api/instances/<int:instance_id>")
def update_instance(instance_id: int):
    instance = Instance.get_or_none(Instance.id == instance_id)
    if instance is None:
        abort(404, description=f"no instance {instance_id}")
    changes = _instance_changes(_json_object())
    if changes:
        Instance.update(changes).where(Instance.id == instance.id).execute()
    return jsonify(instance_json(Instance.get_by_id(instance.id)))


@bp.get("/api/chats")
def list_chats():
    query = Chat.select(Chat, Instance).join(Instance)
    query = instance_filter(query, Chat.instance)
    rows, next_before = page(query, Chat)
    last = _last_messages([row.id for row in rows])
    return jsonify(items=[{**chat_json(row), "last_message": last.get(row.id)} for row in rows],
                   next_before_id=next_before)


def _last_messages(chat_ids: list[int]) -> dict:
    """The newest message of each chat (for a chat list's preview line), by chat id."""
    if not chat_ids:
        return {}
    newest = (Message.select(fn.MAX(Message.id)).where(Message.chat.in_(chat_ids)).group_by(Message.chat))
    return {
        row.chat_id: {"id": row.id, "type": row.type, "text": row.text, "caption": row.caption,
                      "from_me": row.from_me, "status": row.status, "sender_name": row.sender_name,
                      "timestamp": iso(row.timestamp), "deleted": row.deleted_at is not None}
        for row in Message.select().where(Message.id.in_(newest))
    }


def _messages_query():
    return (Message.select(Message, Instance, Chat, MediaFile)
            .join(Instance).switch(Message)
            .join(Chat).switch(Message)
            .join(MediaFile, JOIN.LEFT_OUTER, on=(MediaFile.message == Message.id), attr="media_file"))


def _media_of(message: Message):
    media = getattr(message, "media_file", None)
    return media if media is not None and media.id is not None else None


@bp.get("/api/messages")
def list_messages():
    query = instance_filter(_messages_query(), Message.instance)
    chat = request.args.get("chat")
    if chat:
        query = query.where((Chat.jid == chat) | (Chat.jid == f"{chat}@s.whatsapp.net") | (Chat.jid == f"{chat}@g.us"))
    direction = request.args.get("direction")
    if direction:
        if direction not in ("in", "out"):
            raise BadRequest("direction must be in or out")
        query = query.where(Message.direction == direction)
    for name in ("type", "status"):
        if request.args.get(name):
            query = query.where(getattr(Message, name) == request.args[name])
    rows, next_before = page(query, Message)
    return jsonify(items=[message_json(row, _media_of(row)) for row in rows], next_before_id=next_before)


@bp.get("/api/messages/<int:message_id>")
def show_message(message_id: int):
    message = _messages_query().where(Message.id == message_id).first()
    if message is None:
        abort(404, description=f"no message {message_id}")
    data = message_json(message, _media_of(message))
    changes = (MessageStatusChange.select()
               .where((MessageStatusChange.instance == message.instance_id)
                      & (MessageStatusChange.provider_message_id == message.provider_message_id))
               .order_by(MessageStatusChange.timestamp, MessageStatusChange.id))
    data["status_history"] = [status_change_json(change) for change in changes]
    return jsonify(data)

