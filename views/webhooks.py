"""The webhook routes every provider posts to, made from the provider registry.

A webhook POST is answered by :class:`WebhookFront`, a WSGI layer in front of
Flask, not by a Flask view: the acknowledgement is the hot path of the whole
product (one per message, status and presence of every instance), and
Flask's request machinery (request context, hooks, routing, response object)
cost as much CPU per webhook as storing it (issue 14). The front keeps every
rule the Flask hooks apply to a webhook: the request id and the access log
line, the body limit (413), the cross-site refusal, JSON errors, 503 on a
transient database error. Through the tunnel the webhooks answer everyone,
as before, so the front needs no caller check. Flask still owns the routes
(the front asks Flask's URL map which paths are webhooks) and answers their
GET handshake (Meta's ``hub.challenge``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from http import HTTPStatus
from typing import Any, Callable, Iterable, Optional
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_host

import models
from access import origin_allowed
from codes import error_body, say
from handlers import REGISTRY
from handlers.base import RouteHint
from handlers.provider import Registry
from ingest import STORED, Answer, BodyEncodingError, IncomingRequest, Pipeline, decode_content
from models import is_transient

log = logging.getLogger(__name__)
access_log = logging.getLogger("zaphook.access")

# How long ?wait=1 waits for the applier before answering "stored" anyway.
WAIT_SECONDS = 10.0
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
WAIT_WORDS = ("1", "true", "yes")
# How many distinct request paths the front remembers the routing of (a few per provider in practice).
ROUTE_CACHE_SIZE = 4096


def blueprint(registry: Registry = REGISTRY) -> tuple[Blueprint, set[str]]:
    """The webhooks blueprint and its endpoint names: every path in the registry's route table.

    Each path is also served with ``/<event>`` after it where its provider may
    append the event name (and on the catch-all, which takes any). POST is in
    each rule for routing; :class:`WebhookFront` answers it before Flask runs.
    """
    bp = Blueprint("webhooks", __name__)
    endpoints: set[str] = set()
    paths = list(registry.routes()) + [prefix + "<event>" for prefix in registry.event_suffix_prefixes()]
    for path in paths:
        endpoint = "receive_" + path.strip("/").replace("/", "_").replace("<", "").replace(">", "").replace("-", "_")
        bp.add_url_rule(path, endpoint=endpoint, view_func=subscription_check, methods=["GET", "POST"],
                        strict_slashes=False)
        endpoints.add(f"{bp.name}.{endpoint}")
    return bp, endpoints


def new_request_id(given: Optional[str]) -> str:
    """The caller's X-Request-Id when it is a sane one, else a new random id."""
    return given if given and REQUEST_ID.match(given) else os.urandom(6).hex()


def log_access(request_id: str, method: str, path: str, fields: dict, status: int, started: float) -> None:
    """The one access log line of a request (the Flask hooks and the front write the same)."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("rid=%s %s %s provider=%s kind=%s outcome=%s status=%s ms=%.1f",
                        request_id, method, path, fields.get("provider") or "-", fields.get("kind") or "-",
                        fields.get("outcome") or "-", status, (time.perf_counter() - started) * 1000)


class WebhookFront:
    """WSGI: answers webhook POSTs with the pipeline directly; everything else goes on to Flask."""

    def __init__(self, app: Flask, flask_wsgi: Callable, endpoints: Iterable[str]) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        self.endpoints = frozenset(endpoints)
        self.pipeline: Pipeline = app.extensions["zaphook.pipeline"]
        self.body_limit: int = app.config["MAX_CONTENT_LENGTH"]
        self.limit_mb: float = app.config["MAX_BODY_MB"]
        self._routes: dict[str, bool] = {}

    def __call__(self, environ: dict, start_response: Callable):
        if environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi(environ, start_response)
        path = "/" + environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace").lstrip("/")
        if not self.is_webhook(path):
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        request_id = new_request_id(environ.get("HTTP_X_REQUEST_ID"))
        headers = [("X-Request-Id", request_id)]
        models.db.connect(reuse_if_open=True)
        try:
            answer = self.answer(environ, path, request_id)
        except Exception as exc:  # noqa: BLE001 - the provider gets JSON, the log the traceback
            if is_transient(exc):
                # Nothing was stored (Pipeline.store_retrying tried again first): the provider's retry will be.
                log.warning("rid=%s webhook not stored, the database failed for a moment: %s", request_id, exc)
                answer = Answer(503, error_body(say("error.database_busy")), outcome="unavailable")
                headers.append(("Retry-After", "2"))
            else:
                log.exception("unhandled error in rid=%s", request_id)
                answer = Answer(500, error_body(say("error.internal"), {"request_id": request_id}))
        finally:
            if not models.db.is_closed():
                models.db.close()
        payload = (json.dumps(answer.body, separators=(",", ":")) + "\n").encode("ascii")
        log_access(request_id, "POST", path, {"provider": answer.provider, "kind": answer.kind,
                                              "outcome": answer.outcome}, answer.status, started)
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))] + headers)
        return [payload]

    def is_webhook(self, path: str) -> bool:
        """Whether Flask routes a POST to ``path`` to a webhook endpoint (remembered per path)."""
        known = self._routes.get(path)
        if known is None:
            try:
                endpoint, _args = self.app.url_map.bind("zaphook").match(path, method="POST")
            except HTTPException:  # not found, a redirect, another method: Flask answers it
                endpoint = None
            known = endpoint in self.endpoints
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[path] = known
        return known

    def answer(self, environ: dict, path: str, request_id: str) -> Answer:
        query = first_values(environ.get("QUERY_STRING", ""))
        hint = REGISTRY.hint_for_path(path)
        path, hint = with_evolution_event(path, hint, query)
        headers = EnvironHeaders(environ)
        content_length = declared_length(environ)
        incoming = IncomingRequest(
            body=b"",
            path=path,
            hint=hint,
            headers=headers,
            query=query,
            remote_addr=environ.get("REMOTE_ADDR"),
            request_id=request_id,
            method="POST",
            content_type=environ.get("CONTENT_TYPE") or None,
            content_length=content_length,
        )
        pipeline = self.pipeline
        if content_length is not None and content_length > self.body_limit:
            return pipeline.reject_oversized(incoming, self.limit_mb)
        body = read_body(environ, content_length, self.body_limit)
        if body is None:
            return pipeline.reject_oversized(incoming, self.limit_mb)
        incoming.body = body
        encoding = environ.get("HTTP_CONTENT_ENCODING")
        if encoding:
            try:
                incoming.body = decode_content(body, encoding, self.body_limit)
            except BodyEncodingError as exc:
                return pipeline.reject(incoming, exc.status, str(exc))  # the body is kept as it came
        if not origin_allowed(headers.get("Origin"), (get_host(environ),)):
            # Providers send no Origin; a browser does, when a page on another site
            # posts here (a plain-text form post needs no CORS preflight).
            return pipeline.reject(incoming, 403, "cross-site post refused: webhooks take no posts from web "
                                   "pages of other sites (the request carried an Origin header)", trusted=False)
        answer = pipeline.receive(incoming)
        if answer.outcome == STORED and query.get("wait") in WAIT_WORDS:
            answer = applied_answer(answer, pipeline, self.app.extensions["zaphook.applier"])
        return answer


def first_values(query_string: str) -> dict[str, str]:
    """The query string as ``request.args.to_dict()`` reads it: the first value of each name."""
    values: dict[str, str] = {}
    text = query_string.encode("latin-1").decode("utf-8", "replace")
    for name, value in parse_qsl(text, keep_blank_values=True):
        values.setdefault(name, value)
    return values


def declared_length(environ: dict) -> Optional[int]:
    """The request's Content-Length (waitress sets it for a chunked body too, once read); None when absent."""
    text = environ.get("CONTENT_LENGTH")
    if not text:
        return None
    try:
        return max(0, int(text))
    except ValueError:
        return None


def read_body(environ: dict, content_length: Optional[int], limit: int) -> Optional[bytes]:
    """The whole body, or None when it turns out larger than ``limit`` (a body with no declared length)."""
    stream = environ["wsgi.input"]
    if content_length is not None:
        return stream.read(content_length) if content_length else b""
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and a stream that may not end: WSGI says read nothing (as werkzeug does)
    body = stream.read(limit + 1)
    return None if len(body) > limit else body


def with_evolution_event(path: str, hint: RouteHint, query: dict) -> tuple[str, RouteHint]:
    """Evolution's "webhook by events" appends "/<event>" to the whole URL, query string included:
    ``.../evolution/?token=abc/messages-upsert``. The token is cut back, and the path stored as
    Evolution meant it, so the applier and a replay read the same event."""
    token = query.get("token")
    if not token or "/" not in token:
        return path, hint
    query["token"], _, suffix = token.partition("/")
    suffix = suffix.strip("/")
    if not suffix:
        return path, hint
    with_event = path.rstrip("/") + "/" + suffix
    if REGISTRY.hint_for_path(with_event) == RouteHint(hint.route, suffix):
        return with_event, RouteHint(hint.route, suffix)
    return path, RouteHint(hint.route, suffix)


def applied_answer(answer: Answer, pipeline: Pipeline, applier: Any) -> Answer:
    """``?wait=1``: answer with the outcome once the event is applied (tests, simulate, a curious person).

    Bounded by WAIT_SECONDS: past it the answer says ``stored``, which is still a
    durable acknowledgement.
    """
    try:
        applied = applier.apply_through(answer.event_id, timeout=WAIT_SECONDS)
    except Exception as exc:
        if not is_transient(exc):
            raise
        applied = False  # stored all the same: the applier tries it again
    if not applied:
        return answer
    answer = pipeline.answer_for_stored(answer.event_id)
    pipeline.record_answer(answer)  # this, not "stored", is what the caller is told
    return answer


def subscription_check(event: Optional[str] = None) -> Response:
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
