"""The webhook routes every provider posts to."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from handlers.base import RouteHint
from ingest import IncomingRequest
from access import origin_allowed
from security import same_secret

bp = Blueprint("webhooks", __name__)

# path -> route name given to the handlers as a hint
ROUTES = {
    "/webhook/": "any",
    "/webhook/connect/": "connect",
    "/webhook/disconnect/": "disconnect",
    "/webhook/send-message/": "send-message",
    "/webhook/receive-message/": "receive-message",
    "/webhook/chat-presence/": "chat-presence",
    "/webhook/message-status/": "message-status",
    "/api/webhooks/evolution/": "evolution",
}
EVENT_SUFFIX_ROUTES = {
    # Evolution's "webhook by events" mode appends the event to the URL.
    "/api/webhooks/evolution/<event>": "evolution",
    "/webhook/<event>": "any",
}
WEBHOOK_ENDPOINTS: set[str] = set()


def hint_for_path(path: str) -> RouteHint:
    """The RouteHint for a request path (also used to replay a stored request)."""
    normal = "/" + path.strip("/") + "/"
    if normal in ROUTES:
        return RouteHint(ROUTES[normal])
    for prefix, route in (("/api/webhooks/evolution/", "evolution"), ("/webhook/", "any")):
        if normal.startswith(prefix):
            return RouteHint(route, normal[len(prefix):].strip("/") or None)
    return RouteHint("any")


def receive_webhook(event: str | None = None) -> Response:
    if request.method in ("GET", "HEAD"):
        return meta_verification()
    hint = hint_for_path(request.path)
    query = request.args.to_dict()
    token = query.get("token")
    if token and "/" in token:
        # Evolution's "webhook by events" appends "/<event>" to the whole URL,
        # query string included: ".../evolution/?token=abc/messages-upsert".
        query["token"], _, suffix = token.partition("/")
        hint = RouteHint(hint.route, suffix.strip("/") or hint.event)
    pipeline = current_app.extensions["zaphook.pipeline"]
    incoming = IncomingRequest(
        body=b"",
        path=request.path,
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
    except RequestEntityTooLarge:
        answer = pipeline.reject_oversized(incoming, current_app.config["MAX_BODY_MB"])
    else:
        if origin_allowed(request.headers.get("Origin"), (request.host,)):
            answer = pipeline.receive(incoming)
        else:
            # Providers send no Origin; a browser does, when a page on another site
            # posts here (a plain-text form post needs no CORS preflight).
            answer = pipeline.reject(incoming, 403, "cross-site post refused: webhooks take no posts from web "
                                     "pages of other sites (the request carried an Origin header)", trusted=False)
    g.log_fields = {"provider": answer.provider, "kind": answer.kind, "outcome": answer.outcome}
    response = jsonify(answer.body)
    response.status_code = answer.status
    return response


def meta_verification() -> Response:
    """Meta's subscription handshake: echo hub.challenge when the verify token matches."""
    if request.args.get("hub.mode") != "subscribe":
        response = jsonify(error="method not allowed: webhooks accept POST (GET only for Meta's hub.mode=subscribe)",
                           detail=None)
        response.status_code = 405
        response.headers["Allow"] = "POST"
        return response
    expected = current_app.config.get("META_VERIFY_TOKEN")
    if not expected or not same_secret(request.args.get("hub.verify_token", ""), expected):
        g.log_fields = {"provider": "meta", "kind": "verification", "outcome": "rejected"}
        response = jsonify(error="verify token does not match META_VERIFY_TOKEN" if expected
                           else "META_VERIFY_TOKEN is not set", detail=None)
        response.status_code = 403
        return response
    g.log_fields = {"provider": "meta", "kind": "verification", "outcome": "processed"}
    return Response(request.args.get("hub.challenge", ""), status=200, mimetype="text/plain")


for _path, _name in list(ROUTES.items()) + list(EVENT_SUFFIX_ROUTES.items()):
    _endpoint = "receive_" + _path.strip("/").replace("/", "_").replace("<", "").replace(">", "").replace("-", "_")
    bp.add_url_rule(_path, endpoint=_endpoint, view_func=receive_webhook,
                    methods=["GET", "POST"], strict_slashes=False)
    WEBHOOK_ENDPOINTS.add(f"{bp.name}.{_endpoint}")
