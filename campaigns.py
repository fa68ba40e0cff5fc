"""Campaigns: send one text to a list of contacts, then track each message to delivered and read.

:class:`CampaignSender` (``app.extensions["zaphook.campaigns"]``) is one thread
in the server process that works through running campaigns at
``CAMPAIGN_RATE_PER_MIN``. With several processes on one database only the
holder of the campaign-sender role sends (roles.py), and every send first
takes the deployment's and its instance's send slots in the database
(:class:`models.SendSlot`), so the rate is one rate for the deployment, also
across a takeover. A contact is marked ``sending`` (one conditional
UPDATE) before the provider is called, so a crash can never make it be sent
twice; a contact left in ``sending`` is reconciled by the provider's echo of
the message or a status that names it, else failed when the delivery timeout
passes, never resent.

The tracking functions (:func:`track_status`, :func:`track_message`) run inside
the webhook's write transaction, called from ingest.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

from models import (
    Campaign,
    CampaignContact,
    CampaignLog,
    Instance,
    MessageStatusChange,
    OptOut,
    SendSlot,
    bump_instance_health,
    clean,
    database_clock,
    db,
    json_or_none,
    row_lock,
    run_sql,
    still_bound,
    utcnow,
    write_transaction,
)
from roles import CAMPAIGN_SENDER
from campaign_lists import (
    PHONE_PROBLEMS,
    ContactList,
    ListError,
    check_phone,
    decode_list,
    field_warnings,
    from_json,
    longest_possible,
    normalize_phone,  # noqa: F401 - campaigns.normalize_phone is where callers have always found it
    phone_problem,
    read_list,
    render,
    same_columns,
    stored_fields,
)
from storage.http import Limits
from handlers import REGISTRY
from storage.send import SendError, SendTarget, allowed_hosts, refusal_of_text

log = logging.getLogger(__name__)

# Health score steps.
SCORE_ERROR = -10
SCORE_DELIVERED = 1
# Provider timestamps have whole seconds and clocks differ a little: a reply is "after" within this.
REPLY_CLOCK_SLACK = timedelta(seconds=30)
TRACKED = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}


# --- phone numbers ------------------------------------------------------------------

def phone_variants(phone: str) -> list[str]:
    """The forms WhatsApp may use for one number (Brazilian mobiles with or without the 9th digit)."""
    variants = [phone]
    if phone.startswith("55") and len(phone) == 13 and phone[4] == "9":
        variants.append(phone[:4] + phone[5:])
    elif phone.startswith("55") and len(phone) == 12 and phone[4] in "6789":
        variants.append(phone[:4] + "9" + phone[4:])
    return variants


def phone_of_jid(jid: Optional[str]) -> Optional[str]:
    if not jid or "@g.us" in jid or "@lid" in jid or "@newsletter" in jid or "@broadcast" in jid:
        return None
    digits = re.sub(r"\D", "", jid.split("@", 1)[0].split(":", 1)[0])
    return digits or None


def send_text(provider_name: str, target: SendTarget, phone: str, text: str) -> str:
    """Send through the provider's API; SendError when it cannot (no sending, no base URL, refused)."""
    provider = REGISTRY.get(provider_name)
    if provider is None or provider.send_text is None:
        raise SendError(f"sending is not supported for provider {provider_name!r}", code="unsupported",
                        params={"provider": provider_name})
    if not target.base_url:
        setting = provider.api.base_url_setting if provider.api else None
        raise SendError(f"no API base URL for this {provider_name} instance "
                        f"(set its api_base_url{f' or {setting}' if setting else ''})", code="not_configured",
                        params={"provider": provider_name, "setting": setting or "api_base_url"})
    return provider.send_text(target, phone, text)


def is_opted_out(phone: str) -> bool:
    return OptOut.select().where(OptOut.phone.in_(phone_variants(phone))).exists()


# --- creating a campaign ---------------------------------------------------------------------

MAX_CONTACTS = 100_000
MAX_TEXT = 4096
PREVIEW = 3  # messages the form shows as they will be sent

# What can be wrong with a campaign request: campaigns.problem.<code> in the dashboard, these words in the API.
PROBLEMS = {
    "name_required": "name is required",
    "text_required": "text (the message to send) is required",
    "text_too_long": "text is longer than {max} characters",
    "message_too_long": "the message to row {row} is longer than {max} characters once its fields are filled in",
    "instance_required": "instance_id is required (our instance id or the provider's instance id)",
    "instance_unknown": "no instance {instance!r}",
    "instance_cannot_send": "campaigns cannot send through {provider} instances (only {providers})",
    "too_many_contacts": "more than {max} contacts",
    "no_valid_contact": "no valid phone number in contacts",
    "contacts_not_list": "contacts must be a list of {{phone, name}}",
    "list_encoding": "the list is neither UTF-8 nor Windows-1252 text (byte {byte} on line {line}): "
                     "save it again as CSV",
    "list_xlsx": "an Excel workbook (.xlsx), not a CSV file: save it as CSV",
    "list_binary": "the list is not a text file",
}


def problem(code: str, **params) -> dict:
    """One problem as the API gives it: a stable code, its parameters, and the words."""
    return {"code": code, "params": params, "message": PROBLEMS[code].format(**params)}


class CampaignProblem(ValueError):
    def __init__(self, code: str, **params) -> None:
        super().__init__(PROBLEMS[code].format(**params))
        self.problem = problem(code, **params)


def sending_instance(value) -> Instance:
    if value is None or value == "":
        raise CampaignProblem("instance_required")
    instance = None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        instance = Instance.get_or_none(Instance.id == int(value))
    if instance is None and isinstance(value, str):
        instance = Instance.get_or_none(Instance.external_id == value)
    if instance is None:
        raise CampaignProblem("instance_unknown", instance=value)
    senders = REGISTRY.senders()
    if instance.provider not in [provider.name for provider in senders]:
        raise CampaignProblem("instance_cannot_send", provider=instance.provider,
                              providers=", ".join(provider.name for provider in senders))
    return instance


def contact_list(raw: bytes = None, text: Optional[str] = None, items: Any = None) -> ContactList:
    """The contacts of an uploaded file (bytes), a pasted list (text) or a JSON list; ListError when unreadable."""
    if raw is not None:
        return read_list(*decode_list(raw))
    if text is not None:
        return read_list(text)
    if not isinstance(items, list):
        raise ListError("contacts_not_list", message=PROBLEMS["contacts_not_list"].format())
    return from_json(items)


def check_contacts(raw: list, rows: Optional[list] = None) -> tuple[list, list, list]:
    """(valid contacts, duplicates, invalid ones), every row reported by its line (or position).

    A reason is given as words (``reason``) and as a code with parameters
    (``code``, ``params``: campaigns.phone.<code> in the dashboard).
    """
    valid, duplicates, invalid, seen = [], [], [], {}
    for position, item in enumerate(raw, start=1):
        row_number = rows[position - 1] if rows else position
        if isinstance(item, (str, int)):
            item = {"phone": item}
        if not isinstance(item, dict):
            invalid.append({"row": row_number, "phone": None, "reason": PHONE_PROBLEMS["not_object"].format(),
                            "code": "not_object", "params": {}})
            continue
        given = item.get("phone")
        phone, code, params = check_phone(given)
        if phone is None:
            invalid.append({"row": row_number, "phone": given if isinstance(given, (str, int)) else None,
                            "reason": phone_problem(code, params), "code": code, "params": params})
            continue
        if phone in seen:
            duplicates.append({"row": row_number, "phone": given, "normalized": phone, "same_as_row": seen[phone]})
            continue
        seen[phone] = row_number
        name = item.get("name")
        valid.append({"phone": phone, "name": clean(name.strip(), 255) if isinstance(name, str) and name.strip() else None,
                      "fields": stored_fields(item.get("fields")), "row": row_number})
    return valid, duplicates, invalid


@dataclass
class CampaignPlan:
    """A campaign as asked for, checked: what would be created, every problem and warning found."""

    name: str
    text: str
    instance: Optional[Instance]
    contacts: list
    duplicates: list
    invalid: list
    problems: list
    warnings: list
    source: dict

    @property
    def messages(self) -> list:
        return [problem["message"] for problem in self.problems]

    def preview(self, count: int = PREVIEW) -> list:
        """The first messages as they will be sent: to whom, and the text with its fields filled in."""
        return [{"row": contact["row"], "phone": contact["phone"], "name": contact["name"],
                 "text": render(self.text, merge_contact(contact))} for contact in self.contacts[:count]]

    def report(self) -> dict:
        return {"contacts_added": len(self.contacts), "duplicates": self.duplicates, "invalid": self.invalid,
                "problems": self.problems, "warnings": self.warnings, "list": self.source}


def merge_contact(contact) -> dict:
    """What merge fields read of a contact: a planned one (dict) or a stored CampaignContact (its JSON fields)."""
    if isinstance(contact, dict):  # the phone as it will be sent (normalised), not as the list wrote it
        return {"phone": contact.get("phone"), "name": contact.get("name"), "fields": contact.get("fields") or {}}
    fields = json_or_none(contact.fields)
    return {"phone": contact.phone, "name": contact.name, "fields": fields if isinstance(fields, dict) else {}}


def message_for(text: str, contact) -> str:
    """The text one contact gets: its merge fields filled in with the contact's values."""
    return render(text, merge_contact(contact))


def plan_campaign(data: Mapping[str, Any], contacts: "ContactList | list | ListError") -> CampaignPlan:
    """Check a campaign request (fields and contact list) without writing anything."""
    problems = []
    name, text = data.get("name"), data.get("text")
    if not isinstance(name, str) or not name.strip():
        problems.append(problem("name_required"))
    if not isinstance(text, str) or not text.strip():
        problems.append(problem("text_required"))
    elif len(text) > MAX_TEXT:
        problems.append(problem("text_too_long", max=MAX_TEXT))
    instance = None
    try:
        instance = sending_instance(data.get("instance_id"))
    except CampaignProblem as exc:
        problems.append(exc.problem)
    unreadable = isinstance(contacts, ListError)  # said once: no "no valid contact" after it
    if unreadable:
        problems.append(problem(contacts.code, **contacts.params))
        contacts = ContactList()
    elif isinstance(contacts, list):
        contacts = from_json(contacts)
    raw, rows = contacts.contacts, contacts.rows
    if len(raw) > MAX_CONTACTS:
        problems.append(problem("too_many_contacts", max=MAX_CONTACTS))
        raw, rows = raw[:MAX_CONTACTS], rows[:MAX_CONTACTS]
    valid, duplicates, invalid = check_contacts(raw, rows)
    same_columns(valid)
    if not valid and not unreadable:
        problems.append(problem("no_valid_contact"))
    text = text if isinstance(text, str) else ""
    warnings = []
    if text.strip() and valid:
        merged = [merge_contact(contact) for contact in valid]
        warnings = field_warnings(text, merged)
        if len(text) <= MAX_TEXT and longest_possible(text, merged) > MAX_TEXT:
            too_long = next((contact for contact, values in zip(valid, merged, strict=True)
                             if len(render(text, values)) > MAX_TEXT), None)
            if too_long is not None:
                problems.append(problem("message_too_long", row=too_long["row"], max=MAX_TEXT))
    return CampaignPlan(name=name.strip() if isinstance(name, str) else "", text=text, instance=instance,
                        contacts=valid, duplicates=duplicates, invalid=invalid, problems=problems, warnings=warnings,
                        source=contacts.describe())


def create_planned(plan: CampaignPlan) -> Campaign:
    """Create a checked campaign (state draft) with its contacts, in one transaction."""
    assert not plan.problems and plan.instance is not None
    now = utcnow()
    with write_transaction():
        campaign = Campaign.create(name=clean(plan.name, 255), instance=plan.instance, text=clean(plan.text),
                                   total_contacts=len(plan.contacts), created_at=now, updated_at=now)
        for start in range(0, len(plan.contacts), 500):
            CampaignContact.insert_many([
                {"campaign": campaign.id, "instance": plan.instance.id, "phone": contact["phone"],
                 "name": contact["name"], "updated_at": now,
                 "fields": clean(json.dumps(contact["fields"], ensure_ascii=False)) if contact["fields"] else None}
                for contact in plan.contacts[start:start + 500]]).execute()
        counts = {"contacts": len(plan.contacts), "duplicates": len(plan.duplicates), "invalid": len(plan.invalid)}
        CampaignLog.add(campaign.id, "created", detail=f"{len(plan.contacts)} contacts, "
                                                       f"{len(plan.duplicates)} duplicate(s), {len(plan.invalid)} invalid",
                        params=counts)
    return campaign


# --- tracking (inside the webhook's transaction) ------------------------------------------

_CONTACT_BY_ID = ('SELECT "id", "campaign_id", "state", "sent_at" FROM "campaign_contact" '
                  'WHERE "instance_id" = ? AND "whatsapp_message_id" = ?')


def track_status(instance: Instance, message_id: Optional[str], status: str, at: datetime,
                 error: Optional[str] = None, event_id: Optional[int] = None,
                 chat_id: Optional[str] = None) -> bool:
    """Apply a normalised status to the campaign contact whose message it names, if any."""
    tracked = TRACKED.get(status)
    if tracked is None or not message_id:
        return False
    for _attempt in range(5):
        row = run_sql(_CONTACT_BY_ID, (instance.id, message_id)).fetchone()
        if row is None:
            if chat_id and tracked != "failed" and _reconcile(instance, message_id, chat_id, at, None):
                continue  # a contact left in "sending" by a crash: now it has its id
            return False
        contact_id, campaign_id, state, sent_at = row
        code, params = refusal_of_text(error) if tracked == "failed" else (None, None)
        moved = CampaignContact.advance(contact_id, campaign_id, state, sent_at is not None, tracked, at,
                                        error, event_id, code, params)
        if moved is None:
            return False
        if moved:
            _count_health(instance.id, state, tracked, at)
            return True
    return False


def _count_health(instance_id: int, before: str, after: str, at: datetime) -> None:
    if after == "failed":
        bump_instance_health(instance_id, "failed", SCORE_ERROR, at=at)
        return
    if after in ("delivered", "read") and before not in ("delivered", "read"):
        bump_instance_health(instance_id, "delivered", SCORE_DELIVERED, at=at)
    if after == "read":
        bump_instance_health(instance_id, "read", at=at)


def _reconcile(instance: Instance, message_id: str, chat_id: str, at: datetime, text: Optional[str]) -> bool:
    """Give a contact left in "sending" (the answer to its send was lost) the id the provider names."""
    phone = phone_of_jid(chat_id)
    if not phone:
        return False
    marks = ", ".join("?" * len(phone_variants(phone)))
    rows = run_sql(
        'SELECT "k"."id", "k"."campaign_id", "c"."text", "k"."phone", "k"."name", "k"."fields" '
        'FROM "campaign_contact" AS "k" JOIN "campaign" AS "c" ON "c"."id" = "k"."campaign_id" '
        f'WHERE "k"."instance_id" = ? AND "k"."phone" IN ({marks}) AND "k"."state" = ? '
        'AND "k"."whatsapp_message_id" IS NULL ORDER BY "k"."sending_at" DESC',
        [instance.id, *phone_variants(phone), "sending"]).fetchall()
    for contact_id, campaign_id, campaign_text, contact_phone, name, fields in rows:
        sent_text = message_for(campaign_text or "", CampaignContact(phone=contact_phone, name=name, fields=fields))
        if text is not None and sent_text.strip() != text.strip():
            continue
        if CampaignContact.mark_sent(contact_id, campaign_id, message_id, at,
                                     detail="reconciled from the provider's webhook"):
            bump_instance_health(instance.id, "sent", errors="reset", at=at)
            return True
    return False


def track_message(instance: Instance, item, at: datetime, event_id: Optional[int], opt_out: tuple) -> None:
    """A message event: the echo of a campaign message we sent, or a contact's reply.

    ``opt_out`` holds the words (upper case) that opt a number out when they are the whole reply.
    """
    if item.is_group:
        return
    if item.from_me:
        row = run_sql(_CONTACT_BY_ID, (instance.id, item.message_id)).fetchone()
        if row is None and not _reconcile(instance, item.message_id, item.chat_id, at, item.text):
            return
        if item.status:
            track_status(instance, item.message_id, item.status, at, event_id=event_id)
        return
    phone = phone_of_jid(item.chat_id) or phone_of_jid(item.sender_id)
    if not phone:
        return
    variants = phone_variants(phone)
    text = item.text if item.text is not None else item.caption
    marks = ", ".join("?" * len(variants))
    # Hot path (every incoming message): plain SQL on the (instance, phone) index.
    row = run_sql(
        'SELECT "id", "campaign_id" FROM "campaign_contact" WHERE "instance_id" = ? '
        f'AND "phone" IN ({marks}) AND "sent_at" IS NOT NULL AND "sent_at" <= ? AND "replied_at" IS NULL '
        'ORDER BY "sent_at" DESC LIMIT 1', [instance.id, *variants, at + REPLY_CLOCK_SLACK]).fetchone()
    contact_id, campaign_id = row if row else (None, None)
    if contact_id is not None:
        replied = run_sql('UPDATE "campaign_contact" SET "replied_at" = ?, "reply" = ?, "updated_at" = ? '
                          'WHERE "id" = ? AND "replied_at" IS NULL',
                          (at, clean(text) if text is not None else f"[{item.type}]", utcnow(), contact_id)).rowcount
        if replied:
            Campaign.count(campaign_id, {"replied": 1})
            CampaignLog.add(campaign_id, "replied", contact_id=contact_id, message_id=item.message_id,
                            detail=clean(text, 500), at=at, event_id=event_id,
                            params={"text": clean(text, 500) if text is not None else None, "type": item.type})
    word = re.sub(r"[^\w]", "", (text or "").upper())
    if word and word in opt_out:
        created = OptOut.insert(phone=variants[0], instance=instance.id, word=word,
                                created_at=utcnow()).on_conflict_ignore().execute()
        if created and contact_id is not None:
            CampaignLog.add(campaign_id, "opted_out", contact_id=contact_id, detail=word, at=at,
                            event_id=event_id, params={"word": word})


def apply_waiting_statuses(instance: Instance, message_id: str) -> None:
    """Statuses that arrived before the send call returned the id: apply them now."""
    rows = run_sql('SELECT "status", "timestamp", "error", "event_id" FROM "message_status_change" '
                   'WHERE "instance_id" = ? AND "provider_message_id" = ?', (instance.id, message_id)).fetchall()
    for status, at, error, event_id in rows:
        track_status(instance, message_id, status, MessageStatusChange.timestamp.python_value(at), error, event_id)


# --- the sender ----------------------------------------------------------------------------

class CampaignSender:
    """The sending thread, kept in ``app.extensions["zaphook.campaigns"]``."""

    def __init__(self, settings: Mapping[str, Any], database=None, roles=None) -> None:
        self.settings = settings
        self.database = database
        self.roles = roles  # None: this process is the only sender (no lease to hold)
        self.enabled = bool(settings["CAMPAIGN_SENDER"])
        self.rate = float(settings["CAMPAIGN_RATE_PER_MIN"])
        self.instance_rate = float(settings.get("CAMPAIGN_RATE_PER_INSTANCE_PER_MIN") or self.rate)
        self.max_errors = int(settings["CAMPAIGN_MAX_CONSECUTIVE_ERRORS"])
        self.delivery_timeout = timedelta(hours=float(settings["CAMPAIGN_DELIVERY_TIMEOUT_HOURS"]))
        self.send_timeout = float(settings["CAMPAIGN_SEND_TIMEOUT"])
        self.poll_seconds = 0.5
        # How often undelivered messages are checked against the delivery timeout.
        self.sweep_seconds = max(0.2, min(30.0, self.delivery_timeout.total_seconds() / 4))
        self._stop = threading.Event()
        self._work = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._next_send = 0.0  # monotonic time before which no send slot is due
        self._last_sweep = 0.0

    def start(self) -> None:
        if self._thread is not None:
            return
        if self.roles is not None:
            self.roles.want(CAMPAIGN_SENDER, on_gain=self.notify)
            self.roles.start()
        self._thread = threading.Thread(target=self._run, name="zaphook-campaigns", daemon=True)
        self._thread.start()

    @property
    def sends_here(self) -> bool:
        """Whether this process is the deployment's campaign sender now."""
        if self.roles is None:
            return True
        return self.roles.holds(CAMPAIGN_SENDER)

    def notify(self) -> None:
        """A campaign was started or resumed: look now instead of at the next poll."""
        self._work.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the campaign sender did not stop within %.0f s", timeout)
        if self.roles is not None and self._thread is not None:
            self.roles.give_back(CAMPAIGN_SENDER)  # another process sends from its next look

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def as_json(self) -> dict:
        return {"sender": self.enabled, "alive": self.alive, "sends_here": self.enabled and self.sends_here,
                "rate_per_min": self.rate, "rate_per_instance_per_min": self.instance_rate,
                "max_consecutive_errors": self.max_errors,
                "delivery_timeout_hours": self.delivery_timeout.total_seconds() / 3600}

    # --- loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not still_bound(self.database):
                log.debug("campaign sender stops: its app's database is no longer bound")
                return
            if not self.sends_here:
                # Another process is the sender (or the lease is being renewed): look again soon.
                self._stop.wait(self.poll_seconds)
                continue
            try:
                with db.connection_context():
                    if time.monotonic() - self._last_sweep >= self.sweep_seconds:
                        self._last_sweep = time.monotonic()
                        self.sweep_timeouts()
                    wait = self._next_send - time.monotonic()
                    sent = None
                    if wait <= 0:
                        sent = self.send_next()
            except Exception:  # noqa: BLE001 - the sender must outlive any one bad row or outage
                log.exception("campaign sender error; going on")
                self._stop.wait(self.poll_seconds)
                continue
            if sent == "skipped":
                continue  # nothing went out: the next contact needs no wait
            if sent in ("sent", "not due"):
                continue  # the slots say how long to wait (send_next set _next_send)
            pause = self.poll_seconds if wait <= 0 else min(wait, self.poll_seconds)
            if self._work.wait(pause):
                self._work.clear()

    def send_next(self) -> Optional[str]:
        """Send to the next pending contact of a running campaign.

        "sent" when the provider was called (whatever it answered), "skipped" when an
        opted-out number was passed over, "not due" when every campaign with a
        contact to send waits for a send slot (``_next_send`` says until when),
        None when there was nothing to do.
        """
        waits = []
        for campaign in Campaign.select().where(Campaign.state == "running").order_by(Campaign.started_at, Campaign.id):
            contact = (CampaignContact.select().where((CampaignContact.campaign == campaign.id)
                                                      & (CampaignContact.state == "pending"))
                       .order_by(CampaignContact.id).first())
            if contact is None:
                with write_transaction():
                    Campaign.finish_if_done(campaign.id)
                continue
            if is_opted_out(contact.phone):
                with write_transaction():
                    CampaignContact.skip(contact.id, campaign.id, "opted out", code="opted_out")
                    Campaign.finish_if_done(campaign.id)
                return "skipped"
            intervals = self.slot_intervals(campaign.instance_id)
            wait = SendSlot.take(intervals, database_clock())
            if wait is not None:
                waits.append(wait)
                continue  # this number must wait; another campaign's may not
            with write_transaction():
                if not CampaignContact.claim(contact.id):
                    return "skipped"
            try:
                self.send_one(campaign, contact)
            finally:
                SendSlot.hold(intervals, database_clock())
            return "sent"
        if waits:
            self._next_send = time.monotonic() + min(waits)
            return "not due"
        return None

    def slot_intervals(self, instance_id: int) -> dict[str, float]:
        """The gap each send slot needs after a send from this instance: a random spread above the rate."""
        spread = random.uniform(1.0, 1.3)
        return {"deployment": 60.0 / self.rate * spread,
                f"instance:{instance_id}": 60.0 / self.instance_rate * spread}

    def send_one(self, campaign: Campaign, contact: CampaignContact) -> None:
        instance = Instance.get_by_id(campaign.instance_id)
        base, token = instance.api_access(self.settings)
        target = SendTarget(base_url=base or "", token=token, instance=instance.external_id,
                            allowed_hosts=allowed_hosts([base]),
                            limits=Limits(min(10.0, self.send_timeout), self.send_timeout, 256 * 1024),
                            settings=self.settings)
        try:
            message_id = send_text(instance.provider, target, contact.phone, message_for(campaign.text, contact))
        except SendError as exc:
            error, params = str(exc), dict(exc.params)
            if exc.maybe_sent:
                error += " (not resent: it may have gone out)"
                params["maybe_sent"] = True
            self.record_failure(campaign, contact, instance, error, exc.code, params)
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the contact, counted as an error
            log.exception("campaign %s: sending to contact %s failed", campaign.id, contact.id)
            self.record_failure(campaign, contact, instance, f"internal error: {type(exc).__name__}", "internal",
                                {"name": type(exc).__name__})
            return
        now = utcnow()
        with write_transaction():
            row_lock(f"message:{instance.id}:{message_id}")
            if CampaignContact.mark_sent(contact.id, campaign.id, message_id, now):
                bump_instance_health(instance.id, "sent", errors="reset", at=now)
            apply_waiting_statuses(instance, message_id)
            Campaign.update(consecutive_errors=0).where(Campaign.id == campaign.id).execute()
            Campaign.finish_if_done(campaign.id)

    def record_failure(self, campaign: Campaign, contact: CampaignContact, instance: Instance, error: str,
                       code: str = "provider", params: Optional[dict] = None) -> None:
        now = utcnow()
        with write_transaction():
            CampaignContact.mark_send_failed(contact.id, campaign.id, error, now, code, params)
            bump_instance_health(instance.id, "failed", SCORE_ERROR, errors="add", at=now)
            Campaign.update(consecutive_errors=Campaign.consecutive_errors + 1).where(
                Campaign.id == campaign.id).execute()
            if Campaign.pause_for_errors(campaign.id, self.max_errors):
                log.warning("campaign %s paused after %s consecutive send errors", campaign.id, self.max_errors)
            Campaign.finish_if_done(campaign.id)
        log.info("campaign %s: contact %s failed: %s", campaign.id, contact.id, error)

    def sweep_timeouts(self) -> int:
        """Fail messages with no delivery after the timeout, and sends whose outcome was never known."""
        cutoff = utcnow() - self.delivery_timeout
        # A send in flight is "sending" for up to the send timeout: never fail it under the call.
        sending_cutoff = utcnow() - max(self.delivery_timeout, timedelta(seconds=2 * self.send_timeout + 5))
        hours = self.delivery_timeout.total_seconds() / 3600
        failed = 0
        late = list(CampaignContact.select(CampaignContact.id, CampaignContact.campaign, CampaignContact.instance,
                                           CampaignContact.state, CampaignContact.sent_at)
                    .where(((CampaignContact.state == "sent") & (CampaignContact.sent_at < cutoff))
                           | ((CampaignContact.state == "sending") & (CampaignContact.sending_at < sending_cutoff)))
                    .limit(200))
        for contact in late:
            now = utcnow()
            with write_transaction():
                if contact.state == "sent":
                    error = f"no delivery within CAMPAIGN_DELIVERY_TIMEOUT_HOURS ({hours:g} h)"
                    why = {"error_code": "no_delivery", "error_params": json.dumps({"hours": hours})}
                    moved = CampaignContact.transition(contact.id, contact.campaign_id, "sent", True, "failed", now,
                                                       {"failed_at": now, "error": error, **why}, log_detail=error,
                                                       log_params={"refusal": "no_delivery",
                                                                   "refusal_params": {"hours": hours}})
                else:
                    error = "sending was interrupted and the provider never named the message: not resent"
                    why = {"error_code": "interrupted", "error_params": None}
                    moved = CampaignContact.transition(contact.id, contact.campaign_id, "sending", False, "failed",
                                                       now, {"failed_at": now, "error": error, **why},
                                                       log_detail=error,
                                                       log_params={"refusal": "interrupted", "refusal_params": {}})
                if moved:
                    failed += 1
                    bump_instance_health(contact.instance_id, "failed", SCORE_ERROR, at=now)
                    Campaign.finish_if_done(contact.campaign_id)
        return failed
