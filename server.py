"""zaphook: one local process that receives every WhatsApp provider's webhooks.

``create_app(config=None)`` builds the Flask app; ``python server.py`` serves
it with waitress.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from access import (
    FOREIGN_HOST,
    LOCAL,
    SESSION_COOKIE,
    AuthFailures,
    SlidingWindow,
    host_name,
    origin_allowed,
    own_host_names,
    session_key_from_cookie,
    where_from,
)
from codes import error_body, say
from config import SECRET_SETTINGS, ConfigError, load_settings
from security import RedactingFilter, bearer_token, same_secret
from tunnel import format_url_table, share_generated_webhook_token, webhook_url_table

VERSION = "0.1.0"

log = logging.getLogger("zaphook")

PUBLIC_ENDPOINTS = {"health"}
STATE_CHANGING_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """Build the app: defaults, then the environment and .env, or a test override."""
    settings = load_settings(config)
    app = Flask(__name__)
    app.config.update(settings)
    app.config["VERSION"] = VERSION
    app.config["STARTED_AT"] = time.time()
    app.config["MAX_CONTENT_LENGTH"] = int(settings["MAX_BODY_MB"] * 1024 * 1024)
    app.json.sort_keys = False
    # Their debug lines carry SQL parameters and full URLs: mediaKeys, tokens, signed links.
    for chatty in ("peewee", "urllib3"):
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLogger(chatty).level))

    Path(settings["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    _install_secret_filter([settings.get(name) for name in SECRET_SETTINGS])

    import models
    from applier import Applier
    from forwarding import Forwarder, sync_env_destination
    from ingest import Pipeline
    from media import MediaWorkers, check_media_dir
    from roles import Roles
    from tunnel import Tunnel
    from views import api, campaigns_api, dashboard, dashboard_api, events_api, forward_api, media_api, webhooks
    from campaigns import CampaignSender

    app.extensions["zaphook.own_hosts"] = own_host_names(settings)
    app.extensions["zaphook.login_attempts"] = SlidingWindow(settings["LOGIN_ATTEMPTS_PER_MIN"])
    app.extensions["zaphook.auth_failures"] = AuthFailures(settings["AUTH_FAILURES_STORED_PER_MIN"])
    # One connection per waitress thread, media worker, forwarding worker and background service, and a few to spare.
    app.extensions["zaphook.database"] = models.open_database(
        settings["DATABASE_URL"], max_connections=int(settings["THREADS"]) + int(settings["MEDIA_WORKERS"])
        + int(settings["FORWARD_WORKERS"]) + 6)
    with models.db.connection_context():
        models.create_schema()
        shared, detail = check_media_dir(Path(settings["MEDIA_DIR"]))
        app.config["WEBHOOK_TOKEN"] = settings["WEBHOOK_TOKEN"] = share_generated_webhook_token(settings)
        sync_env_destination(settings)  # FORWARD_URL's destination, in step with .env
    _install_secret_filter([settings.get(name) for name in SECRET_SETTINGS])
    if not shared:
        log.warning("MEDIA_DIR: %s", detail)
    workers = app.extensions["zaphook.media"] = MediaWorkers(settings, app.extensions["zaphook.database"])
    app.extensions["zaphook.tunnel"] = Tunnel(settings)  # opened by serve(), once the port is known
    pipeline = app.extensions["zaphook.pipeline"] = Pipeline(settings, on_media=workers.notify,
                                                             auth_failures=app.extensions["zaphook.auth_failures"])
    applier = app.extensions["zaphook.applier"] = Applier(pipeline, app.extensions["zaphook.database"])
    pipeline.on_stored = applier.wake  # started by the serving code (serve, tests' ServedApp)
    # Forwarding to the developer's app: queued by the applier, delivered by this service (started by serve()).
    app.extensions["zaphook.forwarding"] = Forwarder(settings, app.extensions["zaphook.database"])
    # The deployment-wide roles (campaign sender, tunnel owner, registrar): leases in the database.
    roles = app.extensions["zaphook.roles"] = Roles(app.extensions["zaphook.database"],
                                                    settings["ROLE_LEASE_SECONDS"])
    app.extensions["zaphook.campaigns"] = CampaignSender(settings, app.extensions["zaphook.database"], roles)

    webhooks_bp, webhook_endpoints = webhooks.blueprint()
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(events_api.bp)
    app.register_blueprint(media_api.bp)
    app.register_blueprint(campaigns_api.bp)
    app.register_blueprint(dashboard_api.bp)
    app.register_blueprint(forward_api.bp)
    app.register_blueprint(dashboard.bp)
    _register_request_hooks(app, webhook_endpoints | PUBLIC_ENDPOINTS, dashboard.LOGIN_ENDPOINTS)
    _register_error_handlers(app)
    app.add_url_rule("/health", "health", lambda: jsonify(status="ok"))
    # Webhook POSTs are answered in front of Flask (see views/webhooks.py); "//" is merged before either.
    app.wsgi_app = _MergeSlashes(webhooks.WebhookFront(app, app.wsgi_app, webhook_endpoints))
    return app


def start_background_work(app: Flask) -> None:
    """Start the media downloads and the campaign sender: the serving code's job, not the factory's.

    An app made only to read or change the database (a CLI command, a test of
    one request) starts no threads and takes no deployment role. The applier,
    the forwarder and the roles are started by serve() (and the tests' ServedApp).
    """
    app.extensions["zaphook.media"].start()
    sender = app.extensions["zaphook.campaigns"]
    if sender.enabled:
        sender.start()


class _MergeSlashes:
    """Collapse "//" in request paths before routing.

    Evolution's "webhook by events" appends "/<event>" to the configured URL,
    so a URL ending in "/" is posted to ".../evolution//messages-upsert";
    Flask would answer that with a redirect instead of taking the event.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = re.sub(r"/{2,}", "/", path)
        return self.wsgi_app(environ, start_response)


def _register_request_hooks(app: Flask, tunnel_endpoints: set[str], login_endpoints: set[str]) -> None:
    import models
    from views.webhooks import log_access, new_request_id

    own_hosts = app.extensions["zaphook.own_hosts"]
    auth_failures = app.extensions["zaphook.auth_failures"]

    @app.before_request
    def start_request():
        g.request_id = new_request_id(request.headers.get("X-Request-Id"))
        g.started = time.perf_counter()
        g.log_fields = {}
        models.db.connect(reuse_if_open=True)  # before the checks: a session cookie is looked up
        endpoint = request.endpoint
        # The webhooks and /health answer every caller (through the tunnel too): who it is
        # is worked out for the other routes only, off the path every webhook takes.
        if endpoint not in tunnel_endpoints:
            g.caller = where_from(request.environ, request.remote_addr, request.headers, own_hosts)
            if g.caller != LOCAL and not _proves_admin(app.config.get("ADMIN_TOKEN"), endpoint in login_endpoints,
                                                       auth_failures):
                return _refusal(g.caller)
        if (request.method in STATE_CHANGING_METHODS
                and not origin_allowed(request.headers.get("Origin"), (request.host,))):
            # A page on another site posting through the visitor's browser (CSRF): the
            # dashboard is same-origin, and curl or scripts send no Origin at all. (A webhook
            # POST never gets here: views/webhooks.WebhookFront answers it, with its own refusal.)
            return jsonify(error_body(say("error.cross_origin"))), 403

    @app.teardown_request
    def close_database(_exc):
        if not models.db.is_closed():
            models.db.close()

    @app.after_request
    def log_request(response):
        response.headers["X-Request-Id"] = getattr(g, "request_id", "-")
        log_access(getattr(g, "request_id", "-"), request.method, request.path, getattr(g, "log_fields", None) or {},
                   response.status_code, getattr(g, "started", time.perf_counter()))
        return response


def _proves_admin(admin_token: Optional[str], is_login_page: bool, auth_failures: AuthFailures) -> bool:
    """Whether a request that is not local may go beyond the webhooks: it knows ADMIN_TOKEN.

    As a Bearer header, or as the session cookie the dashboard's login page
    sets (browsers cannot send a header when they open a page); the login page
    itself answers only when ADMIN_TOKEN is set. A wrong Bearer token is
    counted as a failed authentication.
    """
    import models

    if not admin_token:
        return False
    if is_login_page:
        return True
    token = bearer_token(request.headers)
    if token:
        if same_secret(token, admin_token):
            return True
        auth_failures.record(request.remote_addr)
        return False
    key = session_key_from_cookie(request.cookies.get(SESSION_COOKIE), admin_token)
    return key is not None and models.DashboardSession.is_open(key)


def _refusal(caller: str):
    """What a request gets for a route it may not reach.

    Through the tunnel only the webhooks exist: it is answered as if nothing
    else did. A local request naming a foreign host (DNS rebinding) is told
    why, so a person who uses another name for this machine can allow it.
    """
    if caller == FOREIGN_HOST:
        host = host_name(request.headers.get("Host"))
        return jsonify(error_body(say("error.foreign_host", host=repr(host)),
                                  {"host": host, "setting": "ALLOWED_HOSTS"})), 403
    return jsonify(error_body(say("error.not_found"))), 404


_HTTP_TEXTS = {404: say("error.not_found"), 405: say("error.method_not_allowed"), 413: say("error.too_large")}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # views.api.abort_with puts a Text on the exception; any other is named by its status.
        text = getattr(exc, "text", None) or _HTTP_TEXTS.get(exc.code) or say("error.http", status=exc.code)
        response = jsonify(error=exc.description or exc.name, detail=None, **text.as_json())
        response.status_code = exc.code or 500
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("unhandled error in rid=%s", getattr(g, "request_id", "-"))
        return jsonify(error_body(say("error.internal"), {"request_id": getattr(g, "request_id", None)})), 500


def _install_secret_filter(secrets: list) -> None:
    """Mask configured secrets in every log line, whichever library writes it."""
    secret_filter = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(secret_filter)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def serve(app: Flask) -> int:
    """Serve with waitress until Ctrl+C: the local listener, and the tunnel's (see serving.py)."""
    from serving import build_listeners, mark_stopped, stop_like_ctrl_c

    settings = app.config
    try:
        listeners = build_listeners(app, settings)
    except OSError as exc:
        log.error("cannot listen on %s:%s (or the tunnel port %s): %s (is zaphook already running? "
                  "choose another PORT)", settings["HOST"], settings["PORT"], settings.get("TUNNEL_PORT") or "auto",
                  exc.strerror or exc)
        return 2
    base = listeners.local_url
    tunnel = app.extensions["zaphook.tunnel"]
    log.info("zaphook %s listening on %s (data in %s)", VERSION, base, settings["DATA_DIR"])
    log.info("webhook URLs: %s", "; ".join(f"{provider} {event}: {url}" for provider, event, url
                                           in webhook_url_table(base, None)))
    log.info("tunnel listener on %s: only the webhooks and /health answer there", listeners.tunnel_url)
    log.info("%s", dashboard_line(base, settings, tunnel.wanted))
    stop_like_ctrl_c()
    applier = app.extensions["zaphook.applier"]
    roles = app.extensions["zaphook.roles"]
    applier.start()  # first of all: what an earlier run acknowledged and did not apply
    app.extensions["zaphook.forwarding"].start(base)  # and what it did not forward yet
    start_background_work(app)  # media downloads, campaign sender
    try:
        take_deployment_roles(app, listeners.tunnel.effective_port)
        listeners.run()
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping")
        tunnel.close()
        roles.stop()  # the other processes take the roles over at their next look
        listeners.close()
        applier.stop()
        app.extensions["zaphook.forwarding"].stop()  # a delivery waiting for an answer is given back
        app.extensions["zaphook.media"].shutdown(timeout=3)  # a download blocked in a read is given back
        app.extensions["zaphook.campaigns"].shutdown()
        app.extensions["zaphook.database"].close_all()
        log.info("stopped")
        mark_stopped()
    return 0


def take_deployment_roles(app: Flask, tunnel_port: int) -> None:
    """Compete for the tunnel and the registrar roles (roles.py); the campaign sender competes for its own.

    With one process, it gets every role at once, as before there were roles.
    With several on one database, one opens the tunnel and one registers the
    webhooks; when it dies, another takes over within ROLE_LEASE_SECONDS and
    opens its own tunnel (the registrar then points the providers at it).
    """
    from roles import REGISTRAR, TUNNEL_OWNER, deployment_public_url

    settings = app.config
    tunnel = app.extensions["zaphook.tunnel"]
    roles = app.extensions["zaphook.roles"]

    def open_tunnel() -> None:
        if tunnel.open(tunnel_port, host="127.0.0.1"):
            roles.tell(TUNNEL_OWNER, tunnel.public_url)
            # The one place the webhook token is shown: on the console, to paste, never in the log.
            print(format_url_table(webhook_url_table(tunnel.public_url, settings.get("WEBHOOK_TOKEN"))), flush=True)

    def leave_tunnel() -> None:
        tunnel.leave_to_another_process("another zaphook process of this deployment owns the tunnel")

    if tunnel.wanted:
        if not roles.want(TUNNEL_OWNER, on_gain=open_tunnel, on_lose=leave_tunnel):
            leave_tunnel()
            log.info("the tunnel is owned by another zaphook process on this database: this one takes it "
                     "over if that process stops")
    if settings["REGISTER_WEBHOOKS"]:
        if not (tunnel.wanted or settings["PUBLIC_URL"]):
            log.warning("REGISTER_WEBHOOKS is on but there is no public URL (no tunnel and no PUBLIC_URL): "
                        "no webhooks registered")
        else:
            registered: Optional[str] = None

            def register_when_the_url_changes() -> None:
                nonlocal registered
                with app.extensions["zaphook.database"].connection_context():
                    url = deployment_public_url(settings, roles, tunnel)
                if url and url != registered:
                    registered = url
                    register_webhooks_in_background(app, url)

            roles.want(REGISTRAR, while_held=register_when_the_url_changes)
    roles.start()


def dashboard_line(base: str, settings: Mapping[str, Any], tunnel_wanted: bool) -> str:
    """The start-up line that says where the dashboard is, and whether other machines need ADMIN_TOKEN.

    From this machine the dashboard needs no login; from anywhere else (another
    machine when HOST listens beyond this one, or the tunnel) it asks for
    ADMIN_TOKEN at /login, and without one it is not reachable at all. The
    token itself is never written.
    """
    url = base.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:") + "/"
    reachable_elsewhere = tunnel_wanted or settings.get("HOST") not in ("127.0.0.1", "localhost", "::1")
    if not reachable_elsewhere:
        hint = "open it in a browser on this machine"
    elif settings.get("ADMIN_TOKEN"):
        hint = "no login on this machine; from elsewhere, sign in at /login with ADMIN_TOKEN"
    else:
        hint = "from this machine only: set ADMIN_TOKEN to open it from elsewhere"
    return f"dashboard: {url} ({hint})"


def register_webhooks_in_background(app: Flask, public_url: Optional[str]) -> Optional[threading.Thread]:
    """REGISTER_WEBHOOKS=on: point the providers at this server without delaying the first webhook."""
    import cli

    if not public_url:
        log.warning("REGISTER_WEBHOOKS is on but there is no public URL (no tunnel and no PUBLIC_URL): "
                    "no webhooks registered")
        return None
    thread = threading.Thread(target=cli.register_all, args=(app, public_url), name="zaphook-register", daemon=True)
    thread.start()
    return thread


def main(argv: Optional[list[str]] = None) -> int:
    """``python server.py [command] ...``: the command line (cli.py); no command runs the server."""
    import cli

    return cli.main(argv)


def start(settings: dict) -> int:
    """Build the app on these settings and serve it until stopped (the ``run`` command)."""
    import models

    try:
        app = create_app(settings)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    except models.SchemaTooNew as exc:
        log.error("cannot start: %s", exc)
        return 2
    return serve(app)


if __name__ == "__main__":
    sys.exit(main())
