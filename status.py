"""What /status reports and what the /test self-check verifies."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flask import Flask
from peewee import fn

from handlers import REGISTRY
from roles import deployment_public_url
from models import Client, Instance, MediaFile, Message, WebhookEvent, db, instance_json, iso, utcnow
from security import REDACTED, redact_text

# Below this much free space in DATA_DIR the self-check fails.
MIN_FREE_BYTES = 200 * 1024 * 1024
# An instance whose last event is older than this is flagged in the self-check.
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
        "tunnel": app.extensions["zaphook.tunnel"].as_json(),
        "security": {
            "auth_failures": app.extensions["zaphook.auth_failures"].as_json(),
            "allowed_hosts": list(app.extensions["zaphook.own_hosts"]),
            "admin_token_set": bool(config.get("ADMIN_TOKEN")),
            "webhook_token_set": bool(config.get("WEBHOOK_TOKEN")),
        },
        "instances": [instance_json(row) for row in Instance.select(Instance, Client).join(Client)],
        "roles": app.extensions["zaphook.roles"].as_json(),
        "webhook_urls": webhook_urls(deployment_public_url(config, app.extensions["zaphook.roles"],
                                                           app.extensions["zaphook.tunnel"]) or request_base_url,
                                     bool(config.get("WEBHOOK_TOKEN"))),
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


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"name": name, "ok": ok, "detail": detail}


def check_database() -> dict:
    """Write a row and roll it back: proves the database takes writes now."""
    try:
        with db.atomic() as transaction:
            Client.insert(name=f"__self_check_{time.time_ns()}", created_at=utcnow()).execute()
            transaction.rollback()
    except Exception as exc:  # noqa: BLE001 - the check reports any failure
        return _check("database writable", False, f"{type(exc).__name__}: {exc}")
    return _check("database writable", True, "a test write was accepted and rolled back")


def check_data_dir(data_dir: str, name: str = "data dir writable") -> dict:
    folder = Path(data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".self-check-") as probe:
            probe.write(b"ok")
            probe.flush()
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return _check(name, False, f"{folder}: {exc}")
    free_mb = free // (1024 * 1024)
    if free < MIN_FREE_BYTES:
        return _check(name, False, f"{folder}: only {free_mb} MB free")
    return _check(name, True, f"{folder}: writable, {free_mb} MB free")


def check_tunnel(app: Flask) -> list[dict]:
    tunnel = app.extensions["zaphook.tunnel"]
    return [tunnel.as_check()] if tunnel.wanted else []


def check_media_workers(app: Flask) -> dict:
    workers = app.extensions["zaphook.media"]
    if workers.size == 0:
        return _check("media workers", True, "media downloads are off (MEDIA_WORKERS=0)")
    alive = workers.alive
    return _check("media workers", alive == workers.size, f"{alive} of {workers.size} download threads alive")


def check_tokens(config) -> list[dict]:
    checks = []
    token = config.get("WEBHOOK_TOKEN")
    exposed = config.get("HOST") not in ("127.0.0.1", "localhost", "::1")
    if not token:
        checks.append(_check(
            "webhook token", not exposed,
            "WEBHOOK_TOKEN is not set: anyone who can reach the webhooks can post events"
            + (f" (and HOST={config.get('HOST')} listens beyond this machine)" if exposed else "")))
    elif len(token) < MIN_TOKEN_LENGTH:
        checks.append(_check("webhook token", False, f"WEBHOOK_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters"))
    else:
        checks.append(_check("webhook token", True, "WEBHOOK_TOKEN is set"))
    admin = config.get("ADMIN_TOKEN")
    if admin and len(admin) < MIN_TOKEN_LENGTH:
        checks.append(_check("admin token", False, f"ADMIN_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters"))
    if admin and token and admin == token:
        checks.append(_check("admin token", False, "ADMIN_TOKEN equals WEBHOOK_TOKEN: anyone who can post webhooks could read everything"))
    for provider in REGISTRY:
        for problem in provider.check_settings(config):
            checks.append(_check(f"{provider.name} settings", False, problem))
    return checks


def check_instances() -> list[dict]:
    checks = []
    now = utcnow()
    for instance in Instance.select().order_by(Instance.id):
        name = f"instance {instance.provider}/{instance.external_id}"
        if instance.last_event_at is None:
            checks.append(_check(name, False, "no event received yet"))
            continue
        age = now - instance.last_event_at
        detail = f"last event {iso(instance.last_event_at)} ({int(age.total_seconds() // 60)} min ago), connection {instance.connection_state}"
        checks.append(_check(name, age <= QUIET_INSTANCE_AFTER and instance.connection_state != "disconnected", detail))
    return checks


def self_check(app: Flask) -> dict:
    config = app.config
    checks = [
        check_database(), check_data_dir(config["DATA_DIR"]), check_data_dir(config["MEDIA_DIR"], "media dir writable"),
        check_media_workers(app), *check_tunnel(app), *check_tokens(config), *check_instances(),
        check_campaign_counters(), *check_campaign_sender(app), check_applier(app), check_shared_media_dir(config),
    ]
    return {"ok": all(check["ok"] for check in checks), "checks": checks}


def check_shared_media_dir(config) -> dict:
    """MEDIA_DIR is the database's own folder: the one every process of the deployment shares."""
    from media import check_media_dir

    ok, detail = check_media_dir(Path(config["MEDIA_DIR"]))
    return _check("media dir shared", ok, detail)


# How long an acknowledged webhook may wait to be applied before /test says so.
APPLIER_LAG_LIMIT_SECONDS = 30


def check_applier(app: Flask) -> dict:
    """Acknowledged webhooks get applied: none waits long (the applier runs and keeps up)."""
    state = app.extensions["zaphook.applier"].as_json()
    oldest = state["oldest_pending_seconds"]
    if oldest is not None and oldest > APPLIER_LAG_LIMIT_SECONDS:
        running = "" if state["running"] else " (the applier is not running in this process)"
        return _check("applier", False, f"{state['pending']} acknowledged webhook(s) not applied yet, the oldest "
                                        f"for {oldest:.0f} s{running}")
    return _check("applier", True, f"{state['pending']} acknowledged webhook(s) waiting to be applied; "
                                   f"lag p99 {state['lag_ms']['p99']} ms")


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

    wrong = Campaign.counter_mismatches()
    if wrong:
        detail = "; ".join(f"campaign {item['campaign_id']}: " + ", ".join(
            f"{name} {value['counter']} != {value['contacts']} contacts" for name, value in item["differences"].items())
            for item in wrong[:10])
        return _check("campaign counters", False, detail)
    return _check("campaign counters", True, "every campaign counter equals its contacts' states")


def check_campaign_sender(app: Flask) -> list[dict]:
    sender = app.extensions.get("zaphook.campaigns")
    if sender is None or not sender.enabled:
        return []
    return [_check("campaign sender", sender.alive, "sending thread alive" if sender.alive
                   else "the campaign sending thread is not running")]
