"""What /status reports and what the /test self-check verifies."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from flask import Flask
from peewee import fn

from codes import Text, params_json, say
from handlers import REGISTRY
from handlers.base import CONNECTION_STATES
from handlers.provider import CATCH_ALL_PATH, CATCH_ALL_ROUTE
from models import DEMO_CLIENT, Client, Instance, MediaFile, Message, WebhookEvent, db, instance_json, iso, utcnow
from roles import deployment_public_url
from security import REDACTED, redact_text

# Below this much free space in DATA_DIR the self-check fails.
MIN_FREE_BYTES = 200 * 1024 * 1024
# An instance whose last event is older than this is quiet (a warning); if it says it is connected,
# the self-check fails: a connected number sends at least status and presence events within a day.
QUIET_INSTANCE_AFTER = timedelta(hours=24)
MIN_TOKEN_LENGTH = 16


def database_label(url: str) -> str:
    """The database URL without its password (in the address or as ?password=, ?sslpassword=...)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@")
        url = urlunsplit(parts._replace(netloc=netloc))
    return redact_text(url)


def webhook_urls(base: str, token_set: bool) -> dict:
    """The URLs to paste into each provider, from the registry (the token itself is not shown)."""
    return REGISTRY.urls_by_provider(base, "?token=<WEBHOOK_TOKEN>" if token_set else "")


# The label of each URL a provider is told to post to (handlers' WebhookUrl.label), as a code the
# dashboard translates. A provider whose label is not here shows its English label (test_codes fails).
URL_LABEL_CODES = {
    "all events": "url_label.all_events",
    'all events ("webhook by events" works too)': "url_label.all_events_by_event",
    "every callback (in each webhook field)": "url_label.every_callback",
    "callback URL (its verify token is META_VERIFY_TOKEN)": "url_label.callback_verify_token",
    "received": "url_label.received",
    "delivery": "url_label.delivery",
    "message-status": "url_label.message_status",
    "chat-presence": "url_label.chat_presence",
    "connected": "url_label.connected",
    "disconnected": "url_label.disconnected",
}


def webhook_url_rows(base: str, token_set: bool) -> list[dict]:
    """The same URLs as rows for people: provider, what the URL is for (English and code), the URL."""
    query = "?token=<WEBHOOK_TOKEN>" if token_set else ""
    rows = [{"provider": CATCH_ALL_ROUTE, "provider_label": None, "key": CATCH_ALL_ROUTE,
             "label": say("url_label.any").english, "label_code": "url_label.any",
             "url": f"{base.rstrip('/')}{CATCH_ALL_PATH}{query}"}]
    for provider, url, full in REGISTRY.url_rows(base, query):
        rows.append({"provider": provider.name, "provider_label": provider.label, "key": url.key, "label": url.label,
                     "label_code": URL_LABEL_CODES.get(url.label), "url": full})
    return rows


def _counts(*fields) -> dict:
    query = WebhookEvent.select(*fields, fn.COUNT(WebhookEvent.id).alias("n")).group_by(*fields)
    return {(getattr(row, fields[0].name) or "none"): row.n for row in query}


def build(app: Flask, request_base_url: str) -> dict:
    config = app.config
    messages = {row.direction: row.n for row in Message.select(
        Message.direction, fn.COUNT(Message.id).alias("n")).group_by(Message.direction)}
    statuses = {row.status: row.n for row in Message.select(
        Message.status, fn.COUNT(Message.id).alias("n")).where(Message.from_me == True)  # noqa: E712
        .group_by(Message.status)}
    last_event = WebhookEvent.select(fn.MAX(WebhookEvent.received_at)).scalar()
    tunnel = app.extensions["zaphook.tunnel"]
    public_url = deployment_public_url(config, app.extensions["zaphook.roles"], tunnel)
    base = public_url or request_base_url
    token_set = bool(config.get("WEBHOOK_TOKEN"))
    return {
        "name": "zaphook",
        "version": config["VERSION"],
        "uptime_seconds": round(time.time() - config["STARTED_AT"], 1),
        "database": database_label(config["DATABASE_URL"]),
        "data_dir": config["DATA_DIR"],
        "events": {
            "total": WebhookEvent.select().count(),
            "by_provider": _counts(WebhookEvent.provider),
            "by_kind": _counts(WebhookEvent.kind),
            "by_outcome": _counts(WebhookEvent.outcome),
            "last_received_at": iso(last_event),
        },
        "messages": {"in": messages.get("in", 0), "out": messages.get("out", 0)},
        "outgoing_statuses": statuses,
        "applier": app.extensions["zaphook.applier"].as_json(),
        "media": media_summary(app),
        "campaigns": campaigns_summary(app),
        "tunnel": {**tunnel.as_json(), "message": tunnel_message(tunnel).as_json()},
        "security": {
            "auth_failures": app.extensions["zaphook.auth_failures"].as_json(),
            "allowed_hosts": list(app.extensions["zaphook.own_hosts"]),
            "admin_token_set": bool(config.get("ADMIN_TOKEN")),
            "webhook_token_set": bool(config.get("WEBHOOK_TOKEN")),
        },
        "instances": [instance_json(row) for row in Instance.select(Instance, Client).join(Client)],
        "roles": app.extensions["zaphook.roles"].as_json(),
        "public_url": public_url,  # where providers reach this deployment: the tunnel's, or PUBLIC_URL
        "webhook_urls": webhook_urls(base, token_set),
        "webhook_url_rows": webhook_url_rows(base, token_set),
    }


def media_summary(app: Flask) -> dict:
    by_state = {row.state: row.n for row in MediaFile.select(
        MediaFile.state, fn.COUNT(MediaFile.id).alias("n")).group_by(MediaFile.state)}
    return {
        "by_state": by_state,
        "queue": by_state.get("pending", 0) + by_state.get("downloading", 0),
        "due_now": MediaFile.due_count(),
        **app.extensions["zaphook.media"].as_json(),
    }


# How a check came out: "ok"; "warning" (worth a look, zaphook works); "failure" (/test is not ok).
OK, WARNING, FAILURE = "ok", "warning", "failure"
LEVELS = (OK, WARNING, FAILURE)


def _check(name: Text, level: str, detail: Text) -> dict:
    """One /test entry: the English name and detail as before, their codes for the dashboard, and the level.

    ``ok`` stays for older readers: a warning is ok, only a failure is not.
    """
    return {"name": name.english, "ok": level != FAILURE, "level": level, "detail": detail.english,
            **detail.as_json(), "name_code": name.code, "name_params": params_json(name.params)}


def _passed(name: Text, ok: bool, detail: Text) -> dict:
    return _check(name, OK if ok else FAILURE, detail)


def check_database() -> dict:
    """Write a row and roll it back: proves the database takes writes now."""
    name = say("qa.check.database")
    try:
        with db.atomic() as transaction:
            Client.insert(name=f"__self_check_{time.time_ns()}", created_at=utcnow()).execute()
            transaction.rollback()
    except Exception as exc:  # noqa: BLE001 - the check reports any failure
        return _check(name, FAILURE, say("qa.database.failed", error=f"{type(exc).__name__}: {exc}"))
    return _check(name, OK, say("qa.database.ok"))


def check_data_dir(data_dir: str, name: Text = say("qa.check.data_dir")) -> dict:
    folder = Path(data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".self-check-") as probe:
            probe.write(b"ok")
            probe.flush()
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return _check(name, FAILURE, say("qa.folder.failed", folder=str(folder), error=exc.strerror or str(exc)))
    free_mb = free // (1024 * 1024)
    if free < MIN_FREE_BYTES:
        return _check(name, FAILURE, say("qa.folder.low_space", folder=str(folder), free_mb=free_mb))
    return _check(name, OK, say("qa.folder.ok", folder=str(folder), free_mb=free_mb))


def tunnel_message(tunnel) -> Text:
    """What the tunnel's state means, as a message (/status's tunnel and the self-check)."""
    state = tunnel.as_json()
    if state["state"] == "open":
        return say("qa.tunnel.open", url=state["public_url"])
    if state["state"] == "off":
        return say("qa.tunnel.off_by_setting" if state["mode"] == "off" else "qa.tunnel.off_no_authtoken")
    if state["state"] == "starting":
        return say("qa.tunnel.starting")
    if state["state"] == "closed":
        return say("qa.tunnel.closed")
    if state["state"] == "elsewhere":
        return say("qa.tunnel.elsewhere")
    if state["error_code"]:
        return say("qa.tunnel.ngrok_error", error_code=state["error_code"], reason=state["reason"] or "")
    return say("qa.tunnel.failed", reason=state["reason"] or "")


def check_tunnel(app: Flask) -> list[dict]:
    tunnel = app.extensions["zaphook.tunnel"]
    if not tunnel.wanted:
        return []
    detail = tunnel_message(tunnel)
    level = {"open": OK, "off": OK, "elsewhere": OK, "starting": WARNING}.get(tunnel.state, FAILURE)
    return [_check(say("qa.check.tunnel"), level, detail)]


def check_media_workers(app: Flask) -> dict:
    workers = app.extensions["zaphook.media"]
    name = say("qa.check.media_workers")
    if workers.size == 0:
        return _check(name, OK, say("qa.media_workers.off"))
    alive = workers.alive
    return _passed(name, alive == workers.size, say("qa.media_workers.alive", alive=alive, size=workers.size))


def check_tokens(config) -> list[dict]:
    checks = []
    token = config.get("WEBHOOK_TOKEN")
    exposed = config.get("HOST") not in ("127.0.0.1", "localhost", "::1")
    webhook_token = say("qa.check.webhook_token")
    if not token:
        checks.append(_passed(webhook_token, not exposed, say(
            "qa.webhook_token.unset_exposed" if exposed else "qa.webhook_token.unset", host=config.get("HOST"))))
    elif len(token) < MIN_TOKEN_LENGTH:
        checks.append(_check(webhook_token, FAILURE, say("qa.webhook_token.short", length=MIN_TOKEN_LENGTH)))
    else:
        checks.append(_check(webhook_token, OK, say("qa.webhook_token.ok")))
    admin = config.get("ADMIN_TOKEN")
    admin_token = say("qa.check.admin_token")
    if admin and len(admin) < MIN_TOKEN_LENGTH:
        checks.append(_check(admin_token, FAILURE, say("qa.admin_token.short", length=MIN_TOKEN_LENGTH)))
    if admin and token and admin == token:
        checks.append(_check(admin_token, FAILURE, say("qa.admin_token.same_as_webhook_token")))
    for provider in REGISTRY:
        for problem in provider.check_settings(config):
            detail = problem if isinstance(problem, Text) else say("qa.settings.problem", problem=problem)
            checks.append(_check(say("qa.check.provider_settings", provider=provider.name), FAILURE, detail))
    return checks


def instance_verdict(demo: bool, connection: str, seconds_quiet: Optional[float],
                     quiet_after: timedelta = QUIET_INSTANCE_AFTER) -> tuple[str, Text]:
    """How an instance's check comes out, and why.

    Demo instances never fail (their sample events are old by nature). An
    instance that has been quiet, or is disconnected, is a warning: zaphook
    works, the number may simply be idle or switched off. Only one that says it
    is connected and has sent nothing for longer than ``quiet_after`` fails:
    the provider has probably stopped delivering its webhooks here.
    """
    quiet_limit = quiet_after.total_seconds()
    state = say(f"state.{connection}" if connection in CONNECTION_STATES else "state.unknown")
    if demo:
        if seconds_quiet is None:
            return OK, say("qa.instance.no_event")
        return OK, say("qa.instance.demo", last_event_ago=round(seconds_quiet))
    if seconds_quiet is None:
        return WARNING, say("qa.instance.no_event")
    ago = round(seconds_quiet)
    if connection == "disconnected":
        return WARNING, say("qa.instance.disconnected", last_event_ago=ago)
    if seconds_quiet <= quiet_limit:
        return OK, say("qa.instance.active", last_event_ago=ago, connection=state)
    if connection == "connected":
        return FAILURE, say("qa.instance.silent", last_event_ago=ago, threshold_hours=round(quiet_limit / 3600))
    return WARNING, say("qa.instance.quiet", last_event_ago=ago, connection=state)


def check_instances() -> list[dict]:
    checks = []
    now = utcnow()
    demo = DEMO_CLIENT
    for instance in Instance.select(Instance, Client).join(Client).order_by(Instance.id):
        quiet = (now - instance.last_event_at).total_seconds() if instance.last_event_at is not None else None
        level, detail = instance_verdict(instance.client.name == demo, instance.connection_state, quiet)
        name = say("qa.check.instance", provider=instance.provider, instance=instance.external_id)
        checks.append({**_check(name, level, detail), "instance_id": instance.id,
                       "last_event_at": iso(instance.last_event_at), "demo": instance.client.name == demo})
    return checks


def self_check(app: Flask) -> dict:
    """Every check; ``ok`` is false when one fails, ``level`` is the worst of them."""
    config = app.config
    checks = [
        check_database(), check_data_dir(config["DATA_DIR"]),
        check_data_dir(config["MEDIA_DIR"], say("qa.check.media_dir")),
        check_media_workers(app), *check_tunnel(app), *check_tokens(config), *check_instances(),
        check_campaign_counters(), *check_campaign_sender(app), check_applier(app), check_shared_media_dir(config),
    ]
    counts = {level: sum(check["level"] == level for check in checks) for level in LEVELS}
    worst = FAILURE if counts[FAILURE] else WARNING if counts[WARNING] else OK
    return {"ok": counts[FAILURE] == 0, "level": worst, "failures": counts[FAILURE], "warnings": counts[WARNING],
            "checks": checks}


def check_shared_media_dir(config) -> dict:
    """MEDIA_DIR is the database's own folder: the one every process of the deployment shares."""
    from media import check_media_dir

    ok, detail = check_media_dir(Path(config["MEDIA_DIR"]))
    return _passed(say("qa.check.media_dir_shared"), ok, detail)


# How long an acknowledged webhook may wait to be applied before /test says so.
APPLIER_LAG_LIMIT_SECONDS = 30


def check_applier(app: Flask) -> dict:
    """Acknowledged webhooks get applied: none waits long (the applier runs and keeps up)."""
    state = app.extensions["zaphook.applier"].as_json()
    oldest = state["oldest_pending_seconds"]
    name = say("qa.check.applier")
    if oldest is not None and oldest > APPLIER_LAG_LIMIT_SECONDS:
        code = "qa.applier.behind" if state["running"] else "qa.applier.not_running"
        return _check(name, FAILURE, say(code, count=state["pending"], oldest_seconds=round(oldest)))
    if state["lag_ms"]["p99"] is None:
        return _check(name, OK, say("qa.applier.ok_no_lag_yet", count=state["pending"]))
    return _check(name, OK, say("qa.applier.ok", count=state["pending"], p99_ms=state["lag_ms"]["p99"]))


# --- campaigns ------------------------------------------------------------------------

def campaigns_summary(app: Flask) -> dict:
    """Campaigns by state, the sender thread and each sending instance's health today."""
    from models import Campaign

    by_state = {row.state: row.n for row in Campaign.select(
        Campaign.state, fn.COUNT(Campaign.id).alias("n")).group_by(Campaign.state)}
    sender = app.extensions.get("zaphook.campaigns")
    health = [
        {"instance_id": row.id, "provider": row.provider, "external_id": row.external_id, "day": row.health_day,
         "sent_today": row.sent_today, "delivered_today": row.delivered_today, "read_today": row.read_today,
         "failed_today": row.failed_today, "consecutive_errors": row.consecutive_errors,
         "health_score": row.health_score}
        for row in Instance.select().where(Instance.health_day.is_null(False)).order_by(Instance.id)
    ]
    return {"by_state": by_state, **(sender.as_json() if sender is not None else {}), "instance_health": health}


def check_campaign_counters() -> dict:
    from models import Campaign

    name = say("qa.check.campaign_counters")
    wrong = Campaign.counter_mismatches()
    if wrong:
        differences = [say("qa.campaign_counters.difference", campaign=item["campaign_id"], counter=counter,
                               counted=value["counter"], contacts=value["contacts"])
                       for item in wrong[:10] for counter, value in item["differences"].items()]
        return _check(name, FAILURE, say("qa.campaign_counters.wrong", count=len(wrong), campaigns=differences))
    return _check(name, OK, say("qa.campaign_counters.ok"))


def check_campaign_sender(app: Flask) -> list[dict]:
    sender = app.extensions.get("zaphook.campaigns")
    if sender is None or not sender.enabled:
        return []
    detail = say("qa.campaign_sender.alive" if sender.alive else "qa.campaign_sender.dead")
    return [_passed(say("qa.check.campaign_sender"), sender.alive, detail)]
