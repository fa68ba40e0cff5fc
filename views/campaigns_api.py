"""The campaigns API: create, start / pause / resume / cancel, and follow every message."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, abort, current_app, jsonify, request

from campaigns import normalize_phone
from models import (
    CONTACT_STATES,
    CAMPAIGN_STATES,
    Campaign,
    CampaignContact,
    CampaignLog,
    Instance,
    campaign_contact_json,
    campaign_json,
    campaign_log_json,
    clean,
    utcnow,
    write_transaction,
)
from views.api import BadRequest, instance_filter, page

bp = Blueprint("campaigns_api", __name__)

MAX_CONTACTS = 100_000
MAX_TEXT = 4096
SENDABLE_PROVIDERS = ("evolution", "wapi", "meta")


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = Campaign.get_or_none(Campaign.id == campaign_id)
    if campaign is None:
        abort(404, description=f"no campaign {campaign_id}")
    return campaign


def _instance(value) -> Instance:
    if value is None or value == "":
        raise BadRequest("instance_id is required (our instance id or the provider's instance id)")
    instance = None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        instance = Instance.get_or_none(Instance.id == int(value))
    if instance is None and isinstance(value, str):
        instance = Instance.get_or_none(Instance.external_id == value)
    if instance is None:
        raise BadRequest(f"no instance {value!r}")
    if instance.provider not in SENDABLE_PROVIDERS:
        raise BadRequest(f"campaigns cannot send through {instance.provider} instances "
                         f"(only {', '.join(SENDABLE_PROVIDERS)})")
    return instance


def _csv_contacts(text: str) -> list:
    """Rows of a phone,name CSV (a header row naming the columns is optional)."""
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    phone_col, name_col, start = 0, 1, 0
    phone_names = ("phone", "telefone", "numero", "número", "number", "celular", "whatsapp")
    if any(cell in phone_names for cell in header):
        phone_col = next(i for i, cell in enumerate(header) if cell in phone_names)
        name_col = next((i for i, cell in enumerate(header) if cell in ("name", "nome")), None)
        start = 1
    contacts = []
    for row in rows[start:]:
        if not any(cell.strip() for cell in row):
            continue
        phone = row[phone_col] if phone_col < len(row) else ""
        name = row[name_col] if name_col is not None and name_col < len(row) else None
        contacts.append({"phone": phone, "name": name})
    return contacts


def _read_request() -> tuple[dict, list]:
    """The campaign fields and the raw contact list, from JSON or a CSV upload."""
    upload = request.files.get("file") or request.files.get("csv")
    if upload is not None:
        data = request.form.to_dict()
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadRequest("the CSV file must be UTF-8 text") from None
        return data, _csv_contacts(text)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("send a JSON object {name, instance_id, text, contacts: [{phone, name}]} "
                         "or a multipart form with a CSV file (phone,name columns)")
    contacts = data.get("contacts")
    if isinstance(data.get("csv"), str):
        contacts = _csv_contacts(data["csv"])
    if not isinstance(contacts, list):
        raise BadRequest("contacts must be a list of {phone, name}")
    return data, contacts


def check_contacts(raw: list) -> tuple[list, list, list]:
    """(valid contacts, duplicates, invalid ones), every row reported by its position."""
    valid, duplicates, invalid, seen = [], [], [], {}
    for row_number, item in enumerate(raw, start=1):
        if isinstance(item, (str, int)):
            item = {"phone": item}
        if not isinstance(item, dict):
            invalid.append({"row": row_number, "phone": None, "reason": "not an object {phone, name}"})
            continue
        given = item.get("phone")
        phone, reason = normalize_phone(given)
        if phone is None:
            invalid.append({"row": row_number, "phone": given if isinstance(given, (str, int)) else None,
                            "reason": reason})
            continue
        if phone in seen:
            duplicates.append({"row": row_number, "phone": given, "normalized": phone, "same_as_row": seen[phone]})
            continue
        seen[phone] = row_number
        name = item.get("name")
        valid.append({"phone": phone, "name": clean(name.strip(), 255) if isinstance(name, str) and name.strip() else None})
    return valid, duplicates, invalid


@bp.post("/api/campaigns")
def create_campaign():
    data, raw = _read_request()
    name, text = data.get("name"), data.get("text")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("name is required")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("text (the message to send) is required")
    if len(text) > MAX_TEXT:
        raise BadRequest(f"text is longer than {MAX_TEXT} characters")
    instance = _instance(data.get("instance_id"))
    if len(raw) > MAX_CONTACTS:
        raise BadRequest(f"more than {MAX_CONTACTS} contacts")
    valid, duplicates, invalid = check_contacts(raw)
    report = {"contacts_added": len(valid), "duplicates": duplicates, "invalid": invalid}
    if not valid:
        return jsonify(error="no valid phone number in contacts", detail=report), 400
    now = utcnow()
    with write_transaction():
        campaign = Campaign.create(name=clean(name.strip(), 255), instance=instance, text=clean(text),
                                   total_contacts=len(valid), created_at=now, updated_at=now)
        for start in range(0, len(valid), 500):
            CampaignContact.insert_many([
                {"campaign": campaign.id, "instance": instance.id, "phone": contact["phone"],
                 "name": contact["name"], "updated_at": now}
                for contact in valid[start:start + 500]]).execute()
        CampaignLog.add(campaign.id, "created", detail=f"{len(valid)} contacts, {len(duplicates)} duplicate(s), "
                                                       f"{len(invalid)} invalid")
    return jsonify({**campaign_json(campaign), **report}), 201


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
