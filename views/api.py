"""The JSON API for people and tools: /status, /test and /api/*.

Reachable from this machine; through the tunnel only with the ADMIN_TOKEN.
"""

from __future__ import annotations

from typing import NoReturn, Union

from flask import Blueprint, current_app, jsonify, request
from peewee import JOIN, fn
from werkzeug.exceptions import default_exceptions

import demo
import status as status_report
from codes import Text, error_body, say
from handlers import REGISTRY
from models import (
    Chat,
    Client,
    Instance,
    MediaFile,
    Message,
    MessageStatusChange,
    chat_json,
    instance_json,
    iso,
    message_json,
    provider_api_defaults,
    same_api_base,
    status_change_json,
)
from security import redact

bp = Blueprint("api", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class BadRequest(ValueError):
    """A 400: a Text (English only is still accepted: it travels as error.bad_request)."""

    def __init__(self, reason: Union[Text, str]) -> None:
        self.text = reason if isinstance(reason, Text) else say("error.bad_request", reason=reason)
        super().__init__(self.text.english)


@bp.app_errorhandler(BadRequest)
def bad_request(exc: BadRequest):
    return jsonify(error_body(exc.text)), 400


def abort_with(status: int, text: Text) -> NoReturn:
    """Flask's abort, answered with ``text``'s English, code and params (server.py's error handler)."""
    error = default_exceptions[status](description=text.english)
    error.text = text
    raise error


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
        raise BadRequest(say("error.whole_number", name=name)) from None
    if value < low or (high is not None and value > high):
        raise BadRequest(say("error.number_between", name=name, low=low, high=high) if high
                         else say("error.number_at_least", name=name, low=low))
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
    hint = REGISTRY.hint_for_path(request.args.get("route", "/webhook/"))
    answer = _pipeline().dry_run(request.get_data(cache=False), hint)
    return jsonify(answer.body), answer.status


@bp.get("/api/providers")
def list_providers():
    """The providers zaphook speaks, what each can do and the webhook paths it posts to (the dashboard reads this)."""
    return jsonify(items=REGISTRY.describe(), routes=list(REGISTRY.routes()))


@bp.get("/api/instances")
def list_instances():
    rows = Instance.select().order_by(Instance.id)
    return jsonify(items=[instance_json(row) for row in rows])


def _json_object() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest(say("error.json_object"))
    return data


def _instance_changes(data: dict) -> dict:
    """The settable fields of an instance, checked (api_token is write-only)."""
    changes = {}
    for name in ("name", "api_token", "api_base_url"):
        if name in data:
            value = data[name]
            if value is not None and not isinstance(value, str):
                raise BadRequest(say("error.text_or_null", name=name))
            changes[name] = (value or "").strip() or None
    if changes.get("api_base_url") and not changes["api_base_url"].startswith(("http://", "https://")):
        raise BadRequest(say("error.http_url", name="api_base_url"))
    if changes.get("api_base_url"):
        changes["api_base_url"] = changes["api_base_url"].rstrip("/")
    if "client" in data:
        if not isinstance(data["client"], str) or not data["client"].strip():
            raise BadRequest(say("error.client_name"))
        changes["client"] = Client.named(data["client"].strip())
    return changes


def _keep_credentials_with_their_host(changes: dict, provider: str, current_base: str | None) -> None:
    """Refuse or adjust a change of api_base_url so that no credential reaches another host.

    Moving the instance to a host other than where it points now and other than
    the .env default needs its own api_token in the same request (the .env key
    never follows, see Instance.api_access). Moving it back to the default host
    (or clearing the override) drops the stored token unless one is given: it
    belonged to the host being left.
    """
    if "api_base_url" not in changes:
        return
    default_base, _default_token = provider_api_defaults(provider, current_app.config)
    new_base = changes["api_base_url"]
    if same_api_base(new_base or default_base, current_base or default_base):
        return
    if changes.get("api_token"):
        return
    if new_base and not same_api_base(new_base, default_base):
        unit = REGISTRY.get(provider)
        api = unit.api if unit is not None else None
        raise BadRequest(say("error.credential_stays_setting", token_setting=api.token_setting,
                             base_setting=api.base_url_setting) if api else say("error.credential_stays"))
    changes["api_token"] = None


@bp.post("/api/instances")
def create_instance():
    data = _json_object()
    provider, external_id = data.get("provider"), data.get("instance_id")
    if REGISTRY.get(provider) is None:
        raise BadRequest(say("error.one_of", name="provider", choices=", ".join(REGISTRY.names)))
    if not isinstance(external_id, str) or not external_id.strip():
        raise BadRequest(say("error.instance_id_required"))
    changes = _instance_changes(data)
    _keep_credentials_with_their_host(changes, provider, current_base=None)
    instance, created = Instance.register(provider, external_id.strip(), changes)
    if not created:
        return jsonify(error_body(say("error.instance_exists", provider=provider, instance=external_id,
                                      id=instance.id), instance_json(instance))), 409
    return jsonify(instance_json(instance)), 201


@bp.patch("/api/instances/<int:instance_id>")
def update_instance(instance_id: int):
    instance = Instance.get_or_none(Instance.id == instance_id)
    if instance is None:
        abort_with(404, say("error.no_instance", id=instance_id))
    changes = _instance_changes(_json_object())
    _keep_credentials_with_their_host(changes, instance.provider, current_base=instance.api_base_url)
    if changes:
        Instance.update(changes).where(Instance.id == instance.id).execute()
    return jsonify(instance_json(Instance.get_by_id(instance.id)))


@bp.delete("/api/demo")
def clear_demo():
    """Remove the demo's instances and everything they received (the overview's button, ``demo --clear``)."""
    return jsonify(removed=demo.clear_in_app(current_app._get_current_object()))


@bp.get("/api/chats")
def list_chats():
    query = Chat.select(Chat, Instance).join(Instance)
    query = instance_filter(query, Chat.instance)
    kind = request.args.get("kind")
    if kind:
        if kind not in Chat.KINDS:
            raise BadRequest(say("error.one_of", name="kind", choices=", ".join(Chat.KINDS)))
        query = query.where(Chat.of_kind(kind))
    rows, next_before = page(query, Chat)
    last = _last_messages([row.id for row in rows])
    return jsonify(items=[{**chat_json(row), "last_message": last.get(row.id)} for row in rows],
                   next_before_id=next_before)


def _last_messages(chat_ids: list[int]) -> dict:
    """The newest message of each chat (for a chat list's preview line), by chat id."""
    if not chat_ids:
        return {}
    newest = (Message.select(fn.MAX(Message.id)).where(Message.chat.in_(chat_ids)).group_by(Message.chat))
    secrets = _secrets()
    return {
        row.chat_id: redact({"id": row.id, "type": row.type, "text": row.text, "caption": row.caption,
                             "from_me": row.from_me, "status": row.status, "sender_name": row.sender_name,
                             "timestamp": iso(row.timestamp), "deleted": row.deleted_at is not None}, secrets)
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


def _shown_message(message: Message) -> dict:
    """A message as the API shows it: a secret in it (a token in a link, a configured one) masked."""
    return redact(message_json(message, _media_of(message)), _secrets())


@bp.get("/api/messages")
def list_messages():
    query = instance_filter(_messages_query(), Message.instance)
    chat = request.args.get("chat")
    if chat:
        query = query.where((Chat.jid == chat) | (Chat.jid == f"{chat}@s.whatsapp.net") | (Chat.jid == f"{chat}@g.us"))
    direction = request.args.get("direction")
    if direction:
        if direction not in ("in", "out"):
            raise BadRequest(say("error.direction"))
        query = query.where(Message.direction == direction)
    for name in ("type", "status"):
        if request.args.get(name):
            query = query.where(getattr(Message, name) == request.args[name])
    rows, next_before = page(query, Message)
    return jsonify(items=[_shown_message(row) for row in rows], next_before_id=next_before)


@bp.get("/api/messages/<int:message_id>")
def show_message(message_id: int):
    message = _messages_query().where(Message.id == message_id).first()
    if message is None:
        abort_with(404, say("error.no_message", id=message_id))
    data = _shown_message(message)
    changes = (MessageStatusChange.select()
               .where((MessageStatusChange.instance == message.instance_id)
                      & (MessageStatusChange.provider_message_id == message.provider_message_id))
               .order_by(MessageStatusChange.timestamp, MessageStatusChange.id))
    data["status_history"] = redact([status_change_json(change) for change in changes], _secrets())
    return jsonify(data)

