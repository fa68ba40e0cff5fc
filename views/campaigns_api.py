"""The campaigns API: create, start / pause / resume / cancel, and follow every message.

What it says for people comes as a stable code with parameters next to the
English words (``problems``, ``warnings``, ``invalid[].code``, a contact's
``error_code``, a log line's ``action`` and ``params``); the dashboard turns
the codes into sentences in the page's language.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from peewee import JOIN

from campaign_lists import ListError
from campaigns import contact_list, create_planned, plan_campaign
from codes import say
from models import (
    CONTACT_STATES,
    CAMPAIGN_STATES,
    Campaign,
    CampaignContact,
    CampaignLog,
    campaign_contact_json,
    campaign_json,
    campaign_log_json,
)
from views.api import BadRequest, abort_with, instance_filter, page

bp = Blueprint("campaigns_api", __name__)


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = Campaign.get_or_none(Campaign.id == campaign_id)
    if campaign is None:
        abort_with(404, say("error.no_campaign", id=campaign_id))
    return campaign


def _read_request():
    """The campaign fields and the contact list (or why it cannot be read), from JSON or a CSV upload."""
    upload = request.files.get("file") or request.files.get("csv")
    if upload is not None:
        return request.form.to_dict(), _contacts(raw=upload.read())
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest(say("error.campaign_shape"))
    if isinstance(data.get("csv"), str):
        return data, _contacts(text=data["csv"])
    return data, _contacts(items=data.get("contacts"))


def _contacts(**source):
    try:
        return contact_list(**source)
    except ListError as exc:
        return exc


@bp.post("/api/campaigns")
def create_campaign():
    plan = plan_campaign(*_read_request())
    if plan.problems:
        first = plan.problems[0]
        return jsonify(error="; ".join(plan.messages), code=first["code"], params=first["params"],
                       detail=plan.report()), 400
    return jsonify({**campaign_json(create_planned(plan)), **plan.report()}), 201


@bp.post("/api/campaigns/check")
def check_campaign():
    """What creating this campaign would find wrong, and its first messages, without creating it."""
    plan = plan_campaign(*_read_request())
    return jsonify(ok=not plan.problems, problems=plan.problems, warnings=plan.warnings,
                   contacts_valid=len(plan.contacts), duplicates=plan.duplicates, invalid=plan.invalid,
                   preview=plan.preview(), list=plan.source)


@bp.post("/api/campaigns/<int:campaign_id>/<action>")
def change_state(campaign_id: int, action: str):
    if action not in Campaign.MOVES:
        abort_with(404, say("error.no_action", action=repr(action)))
    campaign = _campaign_or_404(campaign_id)
    if not Campaign.move(campaign.id, action):
        current = Campaign.get_by_id(campaign.id).state
        sources = " or ".join(Campaign.MOVES[action][0])
        return jsonify(error=f"cannot {action} a campaign that is {current} ({action} works from {sources})",
                       code="state_conflict", params={"action": action, "state": current,
                                                      "sources": list(Campaign.MOVES[action][0])},
                       detail={"state": current}), 409
    if action in ("start", "resume"):
        sender = current_app.extensions.get("zaphook.campaigns")
        if sender is not None:
            sender.notify()
    return jsonify(campaign_json(Campaign.get_by_id(campaign.id)))


@bp.get("/api/campaigns")
def list_campaigns():
    query = Campaign.select()
    state = request.args.get("state")
    if state:
        if state not in CAMPAIGN_STATES:
            raise BadRequest(say("error.one_of", name="state", choices=", ".join(CAMPAIGN_STATES)))
        query = query.where(Campaign.state == state)
    query = instance_filter(query, Campaign.instance)
    rows, next_before = page(query, Campaign)
    return jsonify(items=[campaign_json(row) for row in rows], next_before_id=next_before)


@bp.get("/api/campaigns/<int:campaign_id>")
def show_campaign(campaign_id: int):
    return jsonify(campaign_json(_campaign_or_404(campaign_id)))


@bp.get("/api/campaigns/<int:campaign_id>/contacts")
def list_contacts(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    query = CampaignContact.select().where(CampaignContact.campaign == campaign.id)
    state = request.args.get("state")
    if state:
        if state not in CONTACT_STATES:
            raise BadRequest(say("error.one_of", name="state", choices=", ".join(CONTACT_STATES)))
        query = query.where(CampaignContact.state == state)
    rows, next_before = page(query, CampaignContact)
    return jsonify(items=[campaign_contact_json(row) for row in rows], next_before_id=next_before)


@bp.get("/api/campaigns/<int:campaign_id>/log")
def show_log(campaign_id: int):
    """The campaign's log, newest first, each line naming its contact (phone and name) when it has one."""
    campaign = _campaign_or_404(campaign_id)
    query = (CampaignLog.select(CampaignLog, CampaignContact.phone, CampaignContact.name)
             .join(CampaignContact, JOIN.LEFT_OUTER, on=(CampaignLog.contact == CampaignContact.id), attr="named")
             .where(CampaignLog.campaign == campaign.id))
    rows, next_before = page(query, CampaignLog)
    return jsonify(items=[campaign_log_json(row, _named(row)) for row in rows], next_before_id=next_before)


def _named(line: CampaignLog):
    contact = getattr(line, "named", None)
    if line.contact_id is None or contact is None or contact.phone is None:
        return None
    return {"phone": contact.phone, "name": contact.name}
