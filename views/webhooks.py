"""The webhook routes every provider posts to, made from the provider registry."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from access import origin_allowed
from codes import error_body, say
from handlers import REGISTRY
from handlers.base import RouteHint
from handlers.provider import Registry
from ingest import STORED, BodyEncodingError, IncomingRequest, decode_content
from models import is_transient

# How long ?wait=1 waits for the applier before answering "stored" anyway.
WAIT_SECONDS = 10.0


def blueprint(registry: Registry = REGISTRY) -> tuple[Blueprint, set[str]]:
    """The webhooks blueprint and its endpoint names: every path in the registry's route table.

    Each path is also served with ``/<event>`` after it where its provider may
    append the event name (and on the catch-all, which takes any).
    """
    bp = Blueprint("webhooks", __name__)
    endpoints: set[str] = set()
    paths = list(registry.routes()) + [prefix + "<event>" for prefix in registry.event_suffix_prefixes()]
    for path in paths:
        endpoint = "receive_" + path.strip("/").replace("/", "_").replace("<", "").replace(">", "").replace("-", "_")
        bp.add_url_rule(path, endpoint=endpoint, view_func=receive_webhook, methods=["GET", "POST"],
                        strict_slashes=False)
        endpoints.add(f"{bp.name}.{endpoint}")
    return bp, endpoints


def receive_webhook(event: str | None = None) -> Response:
    if request.method in ("GET", "HEAD"):
        return subscription_check()
    hint = REGISTRY.hint_for_path(request.path)
    query = request.args.to_dict()
    path = request.path
    token = query.get("token")
    if token and "/" in token:
        # Evolution's "webhook by events" appends "/<event>" to the whole URL,
        # query string included: ".../evolution/?token=abc/messages-upsert".
        # The path is stored as Evolution meant it, so the applier and a replay read the same event.
        query["token"], _, suffix = token.partition("/")
        suffix = suffix.strip("/")
        if suffix:
            with_event = path.rstrip("/") + "/" + suffix
            if REGISTRY.hint_for_path(with_event) == RouteHint(hint.route, suffix):
                path, hint = with_event, RouteHint(hint.route, suffix)
            else:
                hint = RouteHint(hint.route, suffix)
    pipeline = current_app.extensions["zaphook.pipeline"]
    incoming = IncomingRequest(
        body=b"",
        path=path,
        hint=hint,
        headers=request.headers,
        query=query,
        remote_addr=request.remote_addr,
        request_id=g.request_id,
        method=request.method,
        content_type=request.content_type,
        content_length=request.content_length,
    )
    try:
        incoming.body = request.get_data(cache=False)
        if request.content_encoding:
            incoming.body = decode_content(incoming.body, request.content_encoding,
                                           current_app.config["MAX_CONTENT_LENGTH"])
    except RequestEntityTooLarge:
        answer = pipeline.reject_oversized(incoming, current_app.config["MAX_BODY_MB"])
    except BodyEncodingError as exc:
        answer = pipeline.reject(incoming, exc.status, str(exc))  # the body is kept as it came
    else:
        if origin_allowed(request.headers.get("Origin"), (request.host,)):
            try:
                answer = pipeline.receive(incoming)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                return database_busy(exc)
        else:
            # Providers send no Origin; a browser does, when a page on another site
            # posts here (a plain-text form post needs no CORS preflight).
            answer = pipeline.reject(incoming, 403, "cross-site post refused: webhooks take no posts from web "
                                     "pages of other sites (the request carried an Origin header)", trusted=False)
    if answer.outcome == STORED and request.args.get("wait") in ("1", "true", "yes"):
        answer = applied_answer(answer)
    g.log_fields = {"provider": answer.provider, "kind": answer.kind, "outcome": answer.outcome}
    response = jsonify(answer.body)
    response.status_code = answer.status
    return response


def database_busy(exc: Exception) -> Response:
    """503 after a transient database error: nothing was stored, and the provider's retry will be."""
    current_app.logger.warning("webhook not stored, the database failed for a moment: %s", exc)
    g.log_fields = {"outcome": "unavailable"}
    response = jsonify(error_body(say("error.database_busy")))
    response.status_code = 503
    response.headers["Retry-After"] = "2"
    return response


def applied_answer(answer):
    """``?wait=1``: answer with the outcome once the event is applied (tests, simulate, a curious person).

    Bounded by WAIT_SECONDS: past it the answer says ``stored``, which is still a
    durable acknowledgement.
    """
    applier = current_app.extensions["zaphook.applier"]
    try:
        applied = applier.apply_through(answer.event_id, timeout=WAIT_SECONDS)
    except Exception as exc:
        if not is_transient(exc):
            raise
        applied = False  # stored all the same: the applier tries it again
    if not applied:
        return answer
    pipeline = current_app.extensions["zaphook.pipeline"]
    answer = pipeline.answer_for_stored(answer.event_id)
    pipeline.record_answer(answer)  # this, not "stored", is what the caller is told
    return answer


def subscription_check() -> Response:
    """A provider's GET handshake on its webhook URL (Meta's hub.challenge); 405 for any other GET."""
    answer = REGISTRY.subscription_answer(request.args.to_dict(), current_app.config)
    if answer is None:
        response = jsonify(error_body(say("error.webhook_get")))
        response.status_code = 405
        response.headers["Allow"] = "POST"
        return response
    provider, status, body = answer
    g.log_fields = {"provider": provider, "kind": "verification",
                    "outcome": "processed" if status == 200 else "rejected"}
    if status != 200:
        response = jsonify(error_body(say("error.subscription_refused", reason=body)))
        response.status_code = status
        return response
    return Response(body, status=200, mimetype="text/plain")
