"""API endpoints the dashboard needs beyond the rest of the JSON API.

``GET /api/changes`` is what the dashboard polls every second: a few indexed
MAX() lookups that say which parts of the data moved since the caller's
cursor, so a page refetches only when something changed.
``GET /api/overview`` gives each instance's numbers for today.
"""

from __future__ import annotations

import re
from datetime import datetime, time as day_start, timezone

from flask import Blueprint, jsonify, request
from peewee import fn

from codes import say
from ingest import STORED
from models import Campaign, CampaignLog, Client, Instance, MediaFile, Message, WebhookEvent, instance_json, iso, utcnow
from views.api import BadRequest

bp = Blueprint("dashboard_api", __name__)

# The parts of a cursor, in order: what each one follows.
CURSOR_PARTS = ("events", "pending", "media", "campaigns", "campaign_log")
_CURSOR = re.compile(r"^\d+(\.\d+){%d}$" % (len(CURSOR_PARTS) - 1))
MEDIA_FAILED_STATES = ("failed", "expired")


def _as_millis(value) -> int:
    """A stored time as milliseconds since the epoch (0 for none)."""
    if value is None:
        return 0
    if isinstance(value, str):  # SQLite hands back text for MAX() of a datetime column
        value = datetime.fromisoformat(value)
    return int(value.replace(tzinfo=timezone.utc).timestamp() * 1000)


def current_cursor() -> list[int]:
    """Where the data stands now, one number per part of CURSOR_PARTS.

    Every webhook is a new event row (messages, statuses, connection states all
    arrive that way), and ``pending`` (how many are acknowledged and not
    applied yet, an indexed count) moves when the applier makes their chats and
    messages, a moment later; download workers and the campaign sender move
    ``updated_at`` and write log rows. A replay keeps its event id: the page
    that replays refreshes itself.
    """
    return [
        WebhookEvent.select(fn.MAX(WebhookEvent.id)).scalar() or 0,
        WebhookEvent.select().where(WebhookEvent.outcome == STORED).count(),
        _as_millis(MediaFile.select(fn.MAX(MediaFile.updated_at)).scalar()),
        _as_millis(Campaign.select(fn.MAX(Campaign.updated_at)).scalar()),
        CampaignLog.select(fn.MAX(CampaignLog.id)).scalar() or 0,
    ]


@bp.get("/api/changes")
def changes():
    """The current cursor, and which parts differ from ``?since=`` (all of them without one)."""
    since = request.args.get("since", "")
    if since and not _CURSOR.match(since):
        raise BadRequest(say("error.changes_cursor", parts=len(CURSOR_PARTS)))
    now = current_cursor()
    before = [int(part) for part in since.split(".")] if since else [None] * len(CURSOR_PARTS)
    changed = [name for name, old, new in zip(CURSOR_PARTS, before, now, strict=True) if old != new]
    return jsonify(cursor=".".join(str(part) for part in now), changed=changed)


def _day_start() -> datetime:
    """``?since=`` as naive UTC (the browser sends its own local midnight), else today's UTC midnight."""
    raw = request.args.get("since")
    if not raw:
        return datetime.combine(utcnow().date(), day_start())
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(say("error.iso_time")) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


@bp.get("/api/overview")
def overview():
    """Each instance with its health score, messages in and out and media settled since the day began."""
    since = _day_start()
    messages: dict = {}
    for row in (Message.select(Message.instance, Message.direction, fn.COUNT(Message.id).alias("n"))
                .where(Message.timestamp >= since).group_by(Message.instance, Message.direction)):
        messages.setdefault(row.instance_id, {"in": 0, "out": 0})[row.direction] = row.n
    media: dict = {}
    for row in (MediaFile.select(MediaFile.instance, MediaFile.state, fn.COUNT(MediaFile.id).alias("n"))
                .where((MediaFile.finished_at >= since) & MediaFile.state.in_(("done", *MEDIA_FAILED_STATES)))
                .group_by(MediaFile.instance, MediaFile.state)):
        counts = media.setdefault(row.instance_id, {"done": 0, "failed": 0})
        counts["done" if row.state == "done" else "failed"] += row.n
    items = [
        {**instance_json(row), "health_score": row.health_score,
         "messages_today": messages.get(row.id, {"in": 0, "out": 0}),
         "media_today": media.get(row.id, {"done": 0, "failed": 0})}
        for row in Instance.select(Instance, Client).join(Client).order_by(Instance.id)
    ]
    return jsonify(since=iso(since), instances=items)
