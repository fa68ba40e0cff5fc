"""The campaigns API: create, start / pause / resume / cancel, and follow every message."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from campaigns import create_planned, csv_contacts, plan_campaign
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
from views.api import BadRequest, instance_filter, page

bp = Blueprint("campaigns_api", __name__)


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = Campaign.get_or_none(Campaign.id == campaign_id)
    if campaign is None:
        abort(404, description=f"no campaign {campaign_id}")
    return campaign


def _read_request() -> tuple[dict, list]:
    """The campaign fields and the raw contact list, from JSON or a CSV upload."""
    upload = request.files.get("file") or request.files.get("csv")
    if upload is not None:
        data = request.form.to_dict()
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadRequest("the CSV file must be UTF-8 text") from None
        return data, csv_contacts(text)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("send a JSON object {name, instance_id, text, contacts: [{phone, name}]} "
                         "or a multipart form with a CSV file (phone,name columns)")
    contacts = data.get("contacts")
    if isinstance(data.get("csv"), str):
        contacts = csv_contacts(data["csv"])
    if not isinstance(contacts, list):
        raise BadRequest("contacts must be a list of {phone, name}")
    return data, contacts


@bp.post("/api/campaigns")
def create_campaign():
    plan = plan_campaign(*_read_request())
    if plan.problems:
        return jsonify(error="; ".join(plan.problems), detail=plan.report()), 400
    return jsonify({**campaign_json(create_planned(plan)), **plan.report()}), 201


@bp.post("/api/campaigns/check")
def check_campaign():
    """What creating this campaign would find wrong, without creating it (the form shows it first)."""
    plan = plan_campaign(*_read_request())
    return jsonify(ok=not plan.problems, problems=plan.problems, contacts_valid=len(plan.contacts),
                   duplicates=plan.duplicates, invalid=plan.invalid, preview=plan.contacts[:5])


@bp.post("/api/campaigns/<int:campaign_id>/<action>")
def change_state(campaign_id: int, action: str):
    if action not in Campaign.MOVES:
        abort(404, description=f"no action {action!r}: start, pause, resume or cancel")
    campaign = _campaign_or_404(campaign_id)
    if not Campaign.move(campaign.id, action):
        current = Campaign.get_by_id(campaign.id).state
        sources = " or ".join(Campaign.MOVES[action][0])
        return jsonify(error=f"cannot {action} a campaign that is {current} ({action} works from {sources})",
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
            raise BadRequest(f"state must be one of {', '.join(CAMPAIGN_STATES)}")
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
            raise BadRequest(f"state must be one of {', '.join(CONTACT_STATES)}")
        query = query.where(CampaignContact.state == state)
    rows, next_before = page(query, CampaignContact)
    return jsonify(items=[campaign_contact_json(row) for row in rows], next_before_id=next_before)


@bp.get("/api/campaigns/<int:campaign_id>/log")
def show_log(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    rows, next_before = page(CampaignLog.select().where(CampaignLog.campaign == campaign.id), CampaignLog)
    return jsonify(items=[campaign_log_json(row) for row in rows], next_before_id=next_before)
