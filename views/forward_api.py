"""The forwarding part of the JSON API: destinations, one event's deliveries, replay, the schema.

Like the rest of the API, reachable from this machine, or through the tunnel
only with the ADMIN_TOKEN (the request hooks in server.py enforce it). Errors
are ``codes.error_body``: the English ``error`` and a ``code`` (``forward.*``)
with its ``params``, which the dashboard translates.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from codes import error_body, say
from forward_schema import SCHEMA_FILE
from forwarding import (
    ForwardError,
    create_destination,
    delete_destination,
    delivery_json,
    destination_json,
    event_forwarding,
    find_destination,
    update_destination,
)
from handlers.base import parse_timestamp
from models import DELIVERY_STATES, ForwardAttempt, ForwardDelivery, ForwardDestination, WebhookEvent
from views.api import BadRequest, page

bp = Blueprint("forward_api", __name__)


@bp.app_errorhandler(ForwardError)
def forward_error(exc: ForwardError):
    return jsonify(error_body(exc.text)), exc.status


def _forwarder():
    return current_app.extensions["zaphook.forwarding"]


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ForwardError(say("forward.not_json"))
    return data


@bp.get("/api/forward/destinations")
def list_destinations():
    rows = ForwardDestination.select().order_by(ForwardDestination.id)
    return jsonify(items=[destination_json(row) for row in rows], status=_forwarder().as_json())


@bp.post("/api/forward/destinations")
def add_destination():
    return jsonify(destination_json(create_destination(_json_body()))), 201


@bp.get("/api/forward/destinations/<key>")
def show_destination(key: str):
    return jsonify(destination_json(find_destination(key)))


@bp.patch("/api/forward/destinations/<key>")
def change_destination(key: str):
    return jsonify(destination_json(update_destination(find_destination(key), _json_body())))


@bp.delete("/api/forward/destinations/<key>")
def remove_destination(key: str):
    delete_destination(find_destination(key))
    return Response(status=204)


@bp.get("/api/forward/deliveries")
def list_deliveries():
    query = ForwardDelivery.select()
    if request.args.get("destination"):
        query = query.where(ForwardDelivery.destination == find_destination(request.args["destination"]).id)
    state = request.args.get("state")
    if state:
        if state not in DELIVERY_STATES:
            raise BadRequest(f"state must be one of {', '.join(DELIVERY_STATES)}")
        query = query.where(ForwardDelivery.state == state)
    if request.args.get("event_id", "").isdigit():
        query = query.where(ForwardDelivery.event == int(request.args["event_id"]))
    rows, next_before = page(query, ForwardDelivery)
    return jsonify(items=[delivery_json(row) for row in rows], next_before_id=next_before)


@bp.get("/api/forward/deliveries/<int:delivery_id>")
def show_delivery(delivery_id: int):
    delivery = ForwardDelivery.get_or_none(ForwardDelivery.id == delivery_id)
    if delivery is None:
        raise ForwardError(say("forward.no_delivery", delivery=delivery_id), 404)
    attempts = ForwardAttempt.select().where(ForwardAttempt.delivery == delivery.id).order_by(ForwardAttempt.id)
    return jsonify(delivery_json(delivery, attempts))


@bp.get("/api/forward/events/<int:event_id>")
def show_event_forwarding(event_id: int):
    if not WebhookEvent.select().where(WebhookEvent.id == event_id).exists():
        raise ForwardError(say("forward.no_event", event_id=event_id), 404)
    return jsonify(event_forwarding(event_id))


@bp.post("/api/forward/replay")
def replay():
    """Queue events again for one destination: ``event_id``/``event_ids``, or since/until/provider/instance/kind."""
    data = _json_body()
    destination = find_destination(data.get("destination"))
    event_ids = data.get("event_ids") or ([data["event_id"]] if data.get("event_id") is not None else [])
    if not isinstance(event_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in event_ids):
        raise ForwardError(say("forward.bad_event_ids"))
    times = {}
    for name in ("since", "until"):
        if data.get(name) not in (None, ""):
            times[name] = parse_timestamp(data[name])
            if times[name] is None:
                raise ForwardError(say("forward.bad_time", field=name))
    replayed = _forwarder().replay(destination, event_ids=event_ids, since=times.get("since"),
                                   until=times.get("until"), provider=data.get("provider") or None,
                                   instance=data.get("instance") or None, kind=data.get("kind") or None)
    return jsonify(destination=destination.name, events=replayed.events, queued=replayed.deliveries), 202


@bp.get("/api/forward/schema")
def schema():
    """The normalised events' JSON Schema (schemas/zaphook-event.v1.json)."""
    return Response(SCHEMA_FILE.read_text(encoding="utf-8"), mimetype="application/schema+json")

