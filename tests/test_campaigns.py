"""Campaigns end to end: fake provider send endpoints, the real sender thread, the real webhook routes."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import models
from tests.helpers import WEBHOOK_PREFIXES, ServedApp, load_sample, wait_applied
from tests.fakes import FakeServer, Recorded, Reply, json_reply

pytestmark = pytest.mark.slow

RATE = 600.0  # per minute: one send every 0.1 s (plus the random spread)
SECRET = "provider-secret-token-123456"
PHONES = ["5511999990001", "5511999990002", "5521988880003", "5531977770004", "5541966660005", "5551955550006"]
EXTERNAL = {"evolution": "shop_evo", "wapi": "3B6XIW-ZTS923-GEAY6V", "meta": "590968830767958"}
PATHS = {
    "evolution": ("POST", f"/message/sendText/{EXTERNAL['evolution']}"),
    "wapi": ("POST", "/v1/message/send-text"),
    "meta": ("POST", f"/{EXTERNAL['meta']}/messages"),
}


# --- fakes -------------------------------------------------------------------------------

class Providers:
    """One fake server answering the three send endpoints like the real ones, with fresh ids."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.failing: dict = {}  # provider -> a function of the request giving a Reply instead of success
        self.before_reply = None  # called with (provider, request, message id) before answering
        for provider, (method, path) in PATHS.items():
            self.server.route(method, path, lambda request, provider=provider: self.answer(provider, request))

    def next_id(self, provider: str) -> str:
        with self.lock:
            number = next(self.ids)
        return {"evolution": f"3EB0{number:012X}", "wapi": f"876A{number:012X}",
                "meta": f"wamid.HBgN{number:08d}=="}[provider]

    def answer(self, provider: str, request: Recorded) -> Reply:
        if provider in self.failing:
            return self.failing[provider](request)
        message_id = self.next_id(provider)
        if self.before_reply is not None:
            self.before_reply(provider, request, message_id)
        body = request.json()
        if provider == "evolution":
            return json_reply({"key": {"remoteJid": f"{body['number']}@s.whatsapp.net", "fromMe": True,
                                       "id": message_id},
                               "message": {"extendedTextMessage": {"text": body.get("text")}},
                               "messageTimestamp": str(int(time.time())), "status": "PENDING"}, 201)
        if provider == "wapi":
            return json_reply({"error": False, "instanceId": EXTERNAL["wapi"], "messageId": message_id,
                               "insertedId": message_id})
        return json_reply({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                           "messages": [{"id": message_id}]})

    def hits(self, provider: str) -> list[Recorded]:
        return self.server.hits(*PATHS[provider])

    @staticmethod
    def phone_of(provider: str, request: Recorded) -> str:
        body = request.json()
        return {"evolution": body.get("number"), "wapi": body.get("phone"), "meta": body.get("to")}[provider]


@pytest.fixture
def providers():
    fake = Providers()
    yield fake
    fake.server.close()


class Served(ServedApp):
    """An app served by waitress on 127.0.0.1, so webhooks come in over real HTTP from many threads."""

    def get(self, path: str):
        response = requests.get(self.url + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, payload=None, **kwargs):
        """POST; a webhook answers once its event is applied (?wait=1), so the test can read what it made."""
        url = self.url + path
        if path.startswith(WEBHOOK_PREFIXES):
            url = wait_applied(url)
        return requests.post(url, json=payload, timeout=10, **kwargs)


@pytest.fixture
def serve():
    served = []

    def start(app) -> Served:
        item = Served(app)
        served.append(item)
        return item

    yield start
    for item in served:
        item.close()


def campaign_app(make_app, providers: Providers, **overrides):
    settings = dict(
        CAMPAIGN_SENDER=True, CAMPAIGN_RATE_PER_MIN=RATE, CAMPAIGN_MAX_CONSECUTIVE_ERRORS=5,
        CAMPAIGN_DELIVERY_TIMEOUT_HOURS=24.0, CAMPAIGN_SEND_TIMEOUT=5.0,
        EVOLUTION_BASE_URL=providers.server.url, EVOLUTION_API_KEY=SECRET,
        WAPI_BASE_URL=providers.server.url, WAPI_TOKEN=SECRET,
        META_GRAPH_URL=providers.server.url, META_ACCESS_TOKEN=SECRET,
    )
    settings.update(overrides)
    return make_app(**settings)


def new_instance(web: Served, provider: str) -> int:
    response = web.post("/api/instances", {"provider": provider, "instance_id": EXTERNAL[provider]})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def new_campaign(web: Served, instance_id: int, phones=PHONES, text="Promoção de hoje: 20% off!") -> dict:
    contacts = [{"phone": phone, "name": f"Cliente {n}"} for n, phone in enumerate(phones, 1)]
    response = web.post("/api/campaigns", {"name": "Black Friday", "instance_id": instance_id, "text": text,
                                           "contacts": contacts})
    assert response.status_code == 201, response.text
    return response.json()


def act(web: Served, campaign_id: int, action: str, expect: int = 200) -> dict:
    response = web.post(f"/api/campaigns/{campaign_id}/{action}")
    assert response.status_code == expect, response.text
    return response.json()


def wait_for(web: Served, campaign_id: int, check, timeout: float = 20.0, what: str = "") -> dict:
    """Poll the campaign until ``check(campaign)`` holds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        data = web.get(f"/api/campaigns/{campaign_id}")
        if check(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"campaign {campaign_id} never got {what}: {data}")
        time.sleep(0.02)


def contacts_of(web: Served, campaign_id: int, state: str = "") -> list[dict]:
    query = f"?limit=500&state={state}" if state else "?limit=500"
    return web.get(f"/api/campaigns/{campaign_id}/contacts{query}")["items"]


def status_payload(provider: str, message_id: str, status: str, phone: str) -> tuple[str, dict]:
    """(route, body) of a status webhook as each provider posts it."""
    if provider == "evolution":
        body = load_sample("seeds/campaign_messages_update_delivered.json")
        body["instance"] = EXTERNAL["evolution"]
        body["data"]["key"] = {"id": message_id, "remoteJid": f"{phone}@s.whatsapp.net", "fromMe": True}
        body["data"]["update"]["status"] = {"delivered": 2, "read": 3, "failed": 0}[status]
        return "/api/webhooks/evolution/", body
    if provider == "wapi":
        return "/webhook/message-status/", {"instanceId": EXTERNAL["wapi"], "event": "webhookMessageStatus",
                                            "messageId": message_id, "status": status.upper(),
                                            "chat": {"id": phone}, "moment": int(time.time())}
    body = load_sample("meta/status_delivered_captured.json")
    value = body["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = EXTERNAL["meta"]
    value["statuses"][0].update(id=message_id, status=status, recipient_id=phone,
                                timestamp=str(int(time.time())))
    return "/webhook/", body


def incoming_payload(provider: str, phone: str, text: str, message_id: str) -> tuple[str, dict]:
    """(route, body) of a message a contact sends to the instance."""
    if provider == "evolution":
        return "/api/webhooks/evolution/", {
            "event": "messages.upsert", "instance": EXTERNAL["evolution"],
            "data": {"key": {"remoteJid": f"{phone}@s.whatsapp.net", "fromMe": False, "id": message_id},
                     "pushName": "Cliente", "message": {"conversation": text},
                     "messageType": "conversation", "messageTimestamp": int(time.time())}}
    raise NotImplementedError(provider)


def assert_counters_match_contacts(web: Served, campaign_id: int) -> dict:
    data = web.get(f"/api/campaigns/{campaign_id}")
    states = [contact["state"] for contact in contacts_of(web, campaign_id)]
    sent = [c for c in contacts_of(web, campaign_id) if c["sent_at"]]
    assert data["delivered_count"] == sum(s in ("delivered", "read") for s in states), data
    assert data["read_count"] == states.count("read"), data
    assert data["failed_count"] == states.count("failed"), data
    assert data["sent_count"] == len(sent), data
    check = web.get("/test")
    counters = [item for item in check["checks"] if item["name"] == "campaign counters"]
    assert counters and counters[0]["ok"], counters
    sender = [item for item in check["checks"] if item["name"] == "campaign sender"]
    assert all(item["ok"] for item in sender), sender
    return data


# --- the whole loop -------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["evolution", "wapi", "meta"])
def test_whole_loop_sends_once_at_rate_and_counts_exactly(make_app, providers, serve, provider):
    web = serve(campaign_app(make_app, providers))
    instance_id = new_instance(web, provider)
    campaign = new_campaign(web, instance_id)
    assert campaign["state"] == "draft" and campaign["total_contacts"] == len(PHONES)
    assert providers.hits(provider) == []  # nothing is sent before start

    act(web, campaign["id"], "start")
    done = wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    assert done["sent_count"] == len(PHONES) and done["failed_count"] == 0

    hits = providers.hits(provider)
    assert sorted(providers.phone_of(provider, hit) for hit in hits) == sorted(PHONES)  # each exactly once
    gaps = [later.at - earlier.at for earlier, later in zip(hits, hits[1:], strict=False)]
    assert min(gaps) >= 0.8 * 60 / RATE, gaps  # never faster than the rate (random spread above it)
    assert (hits[-1].at - hits[0].at) <= (len(hits) - 1) * 60 / RATE * 1.3 + 2.0, gaps
    first = hits[0]
    if provider == "evolution":
        assert first.headers["apikey"] == SECRET
        assert first.json() == {"number": PHONES[0], "text": "Promoção de hoje: 20% off!"}
    elif provider == "wapi":
        assert first.headers["authorization"] == f"Bearer {SECRET}"
        assert first.query == {"instanceId": [EXTERNAL["wapi"]]}
        assert first.json() == {"phone": PHONES[0], "message": "Promoção de hoje: 20% off!", "delayMessage": 1}
    else:
        assert first.headers["authorization"] == f"Bearer {SECRET}"
        assert first.json()["to"] == PHONES[0] and first.json()["text"]["body"] == "Promoção de hoje: 20% off!"

    contacts = contacts_of(web, campaign["id"])
    ids = {c["phone"]: c["whatsapp_message_id"] for c in contacts}
    assert len(set(ids.values())) == len(PHONES) and all(ids.values())

    # Statuses: the first two phones delivered only, the next three read (read posted before delivered
    # for some), the last one nothing; every webhook 20 times from 20 threads, all shuffled.
    jobs = []
    for n, phone in enumerate(PHONES[:5]):
        wanted = ["delivered"] if n < 2 else (["read", "delivered"] if n % 2 else ["delivered", "read"])
        for status in wanted:
            jobs += [status_payload(provider, ids[phone], status, phone)] * 20
    random.Random(7).shuffle(jobs)
    local, sessions = threading.local(), []

    def post(job):
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        return local.session.post(wait_applied(web.url + job[0]), json=job[1], timeout=30)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, jobs))
    for session in sessions:
        session.close()
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers if a.status_code != 200]

    data = assert_counters_match_contacts(web, campaign["id"])
    assert (data["sent_count"], data["delivered_count"], data["read_count"], data["failed_count"]) == (6, 5, 3, 0)
    assert data["delivery_rate"] == round(100 * 5 / 6, 2) and data["read_rate"] == 60.0
    assert data["progress"] == 100.0
    by_phone = {c["phone"]: c for c in contacts_of(web, campaign["id"])}
    assert by_phone[PHONES[2]]["state"] == "read" and by_phone[PHONES[2]]["delivered_at"]
    assert by_phone[PHONES[0]]["state"] == "delivered" and by_phone[PHONES[5]]["state"] == "sent"

    log = web.get(f"/api/campaigns/{campaign['id']}/log?limit=500")["items"]
    actions = [line["action"] for line in log]
    # one line per transition: a read that came before its delivered is one "read" line
    assert actions.count("sent") == 6 and actions.count("read") == 3 and 2 <= actions.count("delivered") <= 5
    health = web.get("/status")["campaigns"]["instance_health"]
    assert health[0]["sent_today"] == 6 and health[0]["delivered_today"] == 5 and health[0]["read_today"] == 3
    assert SECRET not in json.dumps(web.get("/status")) and SECRET not in json.dumps(log)


@pytest.mark.parametrize("names_chat", [True, False])
def test_status_arriving_before_the_send_call_returns_is_applied(make_app, providers, serve, names_chat):
    web = serve(campaign_app(make_app, providers))
    instance_id = new_instance(web, "evolution")

    def deliver_first(provider, request, message_id):
        phone = request.json()["number"]
        route, body = status_payload(provider, message_id, "read", phone)
        if not names_chat:  # kept until the send returns the id, then applied
            del body["data"]["key"]["remoteJid"]
        assert requests.post(wait_applied(web.url + route), json=body, timeout=10).status_code == 200

    providers.before_reply = deliver_first
    campaign = new_campaign(web, instance_id, PHONES[:3])
    act(web, campaign["id"], "start")
    data = wait_for(web, campaign["id"], lambda c: c["state"] == "done" and c["read_count"] == 3, what="3 read")
    assert (data["sent_count"], data["delivered_count"], data["read_count"]) == (3, 3, 3)
    assert_counters_match_contacts(web, campaign["id"])


# --- failures ------------------------------------------------------------------------------

def test_refused_send_fails_with_the_provider_error_and_timeout_fails_without_resending(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers, CAMPAIGN_SEND_TIMEOUT=0.5))
    instance_id = new_instance(web, "evolution")
    calls = {"n": 0}

    def answer(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return json_reply({"status": 400, "error": "Bad Request",
                               "response": {"message": [{"exists": False, "number": PHONES[0]}]}}, 400)
        if calls["n"] == 2:
            return Reply(200, providers.server.stalled(), {"Content-Type": "application/json"})
        providers.failing.pop("evolution")
        return providers.answer("evolution", request)

    providers.failing["evolution"] = answer
    campaign = new_campaign(web, instance_id, PHONES[:3])
    act(web, campaign["id"], "start")
    data = wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    assert (data["sent_count"], data["failed_count"]) == (1, 2)
    by_phone = {c["phone"]: c for c in contacts_of(web, campaign["id"])}
    refused = by_phone[PHONES[0]]
    assert refused["error"] == f"Evolution refused the message (HTTP 400): {PHONES[0]} is not on WhatsApp"
    assert refused["error_code"] == "not_on_whatsapp" and refused["error_params"]["status"] == 400
    timed_out = by_phone[PHONES[1]]
    assert "did not answer in time" in timed_out["error"] and "not resent" in timed_out["error"]
    assert timed_out["error_code"] == "timeout" and timed_out["error_params"]["maybe_sent"] is True
    assert by_phone[PHONES[2]]["state"] == "sent"
    assert len(providers.hits("evolution")) == 3  # the timed-out one was not sent again
    assert_counters_match_contacts(web, campaign["id"])


def test_campaign_pauses_after_consecutive_errors_and_resumes(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers, CAMPAIGN_MAX_CONSECUTIVE_ERRORS=3))
    instance_id = new_instance(web, "wapi")
    providers.failing["wapi"] = lambda request: json_reply({"error": True, "message": "instance disconnected"}, 500)
    campaign = new_campaign(web, instance_id)
    act(web, campaign["id"], "start")
    data = wait_for(web, campaign["id"], lambda c: c["state"] == "paused", what="paused")
    assert data["failed_count"] == 3 and "3 consecutive" in data["state_reason"]
    time.sleep(0.3)  # several send intervals: a paused campaign sends nothing more
    assert len(providers.hits("wapi")) == 3
    assert len(contacts_of(web, campaign["id"], "pending")) == 3
    failed = contacts_of(web, campaign["id"], "failed")
    assert all("instance disconnected" in c["error"] for c in failed)
    act(web, campaign["id"], "start", expect=409)

    providers.failing.clear()
    act(web, campaign["id"], "resume")
    data = wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    assert (data["sent_count"], data["failed_count"]) == (3, 3)
    assert len(providers.hits("wapi")) == 6
    assert "paused" in [line["action"] for line in web.get(f"/api/campaigns/{campaign['id']}/log")["items"]]
    health = web.get("/status")["campaigns"]["instance_health"][0]
    assert health["failed_today"] == 3 and health["consecutive_errors"] == 0 and health["health_score"] < 100


def test_no_delivery_within_the_timeout_fails_and_a_late_delivery_still_counts(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers, CAMPAIGN_DELIVERY_TIMEOUT_HOURS=1.5 / 3600))
    instance_id = new_instance(web, "meta")
    campaign = new_campaign(web, instance_id, PHONES[:3])
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["sent_count"] == 3, what="3 sent")
    ids = {c["phone"]: c["whatsapp_message_id"] for c in contacts_of(web, campaign["id"])}
    route, body = status_payload("meta", ids[PHONES[0]], "delivered", PHONES[0])
    assert web.post(route, body).status_code == 200
    data = wait_for(web, campaign["id"], lambda c: c["failed_count"] == 2, what="2 failed by timeout")
    assert (data["sent_count"], data["delivered_count"]) == (3, 1)
    failed = contacts_of(web, campaign["id"], "failed")
    assert all("CAMPAIGN_DELIVERY_TIMEOUT_HOURS" in c["error"] for c in failed)
    # An error status on a delivered message changes nothing; a late read on a timed-out one wins.
    route, body = status_payload("meta", ids[PHONES[0]], "failed", PHONES[0])
    assert web.post(route, body).status_code == 200
    route, body = status_payload("meta", ids[PHONES[1]], "read", PHONES[1])
    assert web.post(route, body).status_code == 200
    data = assert_counters_match_contacts(web, campaign["id"])
    assert (data["delivered_count"], data["read_count"], data["failed_count"]) == (2, 1, 1)


def test_error_status_marks_the_contact_failed(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers))
    instance_id = new_instance(web, "evolution")
    campaign = new_campaign(web, instance_id, PHONES[:2])
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    ids = {c["phone"]: c["whatsapp_message_id"] for c in contacts_of(web, campaign["id"])}
    route, body = status_payload("evolution", ids[PHONES[0]], "failed", PHONES[0])
    for _ in range(3):
        assert web.post(route, body).status_code == 200
    data = assert_counters_match_contacts(web, campaign["id"])
    assert (data["sent_count"], data["failed_count"], data["delivered_count"]) == (2, 1, 0)


# --- replies and opt-out -------------------------------------------------------------------

def test_replies_are_counted_and_an_opt_out_word_stops_later_campaigns(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers))
    instance_id = new_instance(web, "evolution")
    campaign = new_campaign(web, instance_id, PHONES[:3])
    # A message before the campaign is not a reply.
    route, body = incoming_payload("evolution", PHONES[0], "oi", "IN-BEFORE")
    assert web.post(route, body).status_code == 200
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    for phone, text, message_id in ((PHONES[0], "Quero saber mais!", "IN-1"), (PHONES[0], "Oi?", "IN-2"),
                                    (PHONES[1], "Sair", "IN-3")):
        route, body = incoming_payload("evolution", phone, text, message_id)
        for _ in range(3):  # provider retries: counted once
            assert web.post(route, body).status_code == 200
    data = web.get(f"/api/campaigns/{campaign['id']}")
    assert data["replied_count"] == 2
    by_phone = {c["phone"]: c for c in contacts_of(web, campaign["id"])}
    assert by_phone[PHONES[0]]["reply"] == "Quero saber mais!" and by_phone[PHONES[1]]["reply"] == "Sair"
    assert by_phone[PHONES[2]]["replied_at"] is None
    log = [line["action"] for line in web.get(f"/api/campaigns/{campaign['id']}/log")["items"]]
    assert log.count("replied") == 2 and log.count("opted_out") == 1

    second = new_campaign(web, instance_id, PHONES[:3], text="Última chance!")
    act(web, second["id"], "start")
    data = wait_for(web, second["id"], lambda c: c["state"] == "done", what="done")
    assert (data["sent_count"], data["skipped_count"]) == (2, 1)
    assert [c["error"] for c in contacts_of(web, second["id"], "skipped")] == ["opted out"]
    sent_to = [hit.json()["number"] for hit in providers.hits("evolution") if hit.json()["text"] == "Última chance!"]
    assert sorted(sent_to) == sorted([PHONES[0], PHONES[2]])
    assert_counters_match_contacts(web, second["id"])


# --- restart ---------------------------------------------------------------------------------

def test_restart_mid_campaign_sends_nobody_twice_and_nobody_never(make_app, providers, serve):
    app1 = campaign_app(make_app, providers, CAMPAIGN_RATE_PER_MIN=300.0)
    web1 = serve(app1)
    instance_id = new_instance(web1, "evolution")
    text = "Promoção de hoje: 20% off!"
    campaign = new_campaign(web1, instance_id, text=text)
    act(web1, campaign["id"], "start")
    wait_for(web1, campaign["id"], lambda c: c["sent_count"] >= 2, what="2 sent")
    app1.extensions["zaphook.campaigns"].shutdown()  # the process stops between two sends...
    web1.close()
    sent_before = len(providers.hits("evolution"))
    assert 2 <= sent_before < len(PHONES)

    # ...and one more contact was in the middle of its send when the power went: the provider got it,
    # the answer never came back.
    with app1.extensions["zaphook.database"].connection_context():
        crashed = (models.CampaignContact.select().where((models.CampaignContact.campaign == campaign["id"])
                                                         & (models.CampaignContact.state == "pending"))
                   .order_by(models.CampaignContact.id).first())
        models.CampaignContact.claim(crashed.id)

    app2 = campaign_app(make_app, providers, CAMPAIGN_RATE_PER_MIN=300.0)
    web2 = serve(app2)
    wait_for(web2, campaign["id"], lambda c: c["sent_count"] == len(PHONES) - 1, what="the others sent")
    phones_sent = [hit.json()["number"] for hit in providers.hits("evolution")]
    assert crashed.phone not in phones_sent  # never resent blindly
    assert web2.get(f"/api/campaigns/{campaign['id']}")["state"] == "running"  # one still being reconciled

    # The provider's echo of the interrupted message names its id: the contact is reconciled.
    echo = {"event": "send.message", "instance": EXTERNAL["evolution"],
            "data": {"key": {"remoteJid": f"{crashed.phone}@s.whatsapp.net", "fromMe": True, "id": "3EB0CRASHED01"},
                     "message": {"conversation": text}, "messageType": "conversation",
                     "messageTimestamp": int(time.time()), "status": "PENDING"}}
    assert web2.post("/api/webhooks/evolution/", echo).status_code == 200
    data = wait_for(web2, campaign["id"], lambda c: c["state"] == "done", what="done")
    assert data["sent_count"] == len(PHONES) and data["failed_count"] == 0
    assert sorted(phones_sent + [crashed.phone]) == sorted(PHONES)  # everyone once
    route, body = status_payload("evolution", "3EB0CRASHED01", "read", crashed.phone)
    assert web2.post(route, body).status_code == 200
    assert assert_counters_match_contacts(web2, campaign["id"])["read_count"] == 1


# --- API -------------------------------------------------------------------------------------

def test_csv_upload_reports_duplicates_and_invalid_numbers(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers, CAMPAIGN_SENDER=False))
    instance_id = new_instance(web, "wapi")
    csv_text = ("phone,name\n+55 (11) 99999-0001,Ana\n11 99999-0002,Bia\n5511999990001,Ana again\n"
                "abc,Nobody\n123,Short\n\n5521988880003,Caio\n")
    response = requests.post(f"{web.url}/api/campaigns", data={"name": "CSV", "instance_id": EXTERNAL["wapi"],
                                                               "text": "Olá"},
                             files={"file": ("contacts.csv", csv_text.encode(), "text/csv")}, timeout=10)
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["contacts_added"] == 3 and data["total_contacts"] == 3
    # Rows are the file's lines as a spreadsheet numbers them: the header is line 1.
    assert [item["row"] for item in data["duplicates"]] == [4] and data["duplicates"][0]["same_as_row"] == 2
    assert sorted(item["phone"] for item in data["invalid"]) == ["123", "abc"]
    assert sorted((item["row"], item["code"]) for item in data["invalid"]) == [(5, "letters"), (6, "length")]
    phones = sorted(c["phone"] for c in contacts_of(web, data["id"]))
    assert phones == ["5511999990001", "5511999990002", "5521988880003"]

    bad = web.post("/api/campaigns", {"name": "x", "instance_id": instance_id, "text": "t", "contacts": [{"phone": "x"}]})
    assert bad.status_code == 400 and bad.json()["detail"]["invalid"][0]["reason"]
    assert web.post("/api/campaigns", {"name": "x", "instance_id": 999, "text": "t", "contacts": []}).status_code == 400
    assert web.post("/api/campaigns/999/start").status_code == 404

    act(web, data["id"], "cancel")
    conflict = act(web, data["id"], "start", expect=409)
    assert "cancelled" in conflict["error"]
    assert act(web, data["id"], "pause", expect=409)["detail"]["state"] == "cancelled"
    listed = web.get("/api/campaigns?state=cancelled")["items"]
    assert [item["id"] for item in listed] == [data["id"]]
    assert web.get(f"/api/campaigns?instance={EXTERNAL['wapi']}")["items"][0]["id"] == data["id"]


def test_starting_a_done_campaign_is_a_conflict(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers))
    instance_id = new_instance(web, "meta")
    campaign = new_campaign(web, instance_id, PHONES[:1])
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    answer = act(web, campaign["id"], "start", expect=409)
    assert "done" in answer["error"] and "draft" in answer["error"]
    assert act(web, campaign["id"], "resume", expect=409)["detail"]["state"] == "done"
    assert len(providers.hits("meta")) == 1


def test_evolution_v1_server_gets_the_v1_body_after_refusing_the_v2_one(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers))
    instance_id = new_instance(web, "evolution")

    def v1_server(request):
        body = request.json()
        if "textMessage" not in body:
            return json_reply({"status": 400, "error": "Bad Request",
                               "response": {"message": [["instance requires property \"textMessage\""]]}}, 400)
        return json_reply({"key": {"remoteJid": f"{body['number']}@s.whatsapp.net", "fromMe": True,
                                   "id": f"V1-{body['number']}"}, "status": "PENDING"}, 201)

    providers.failing["evolution"] = v1_server
    campaign = new_campaign(web, instance_id, PHONES[:2])
    act(web, campaign["id"], "start")
    data = wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    assert (data["sent_count"], data["failed_count"]) == (2, 0)
    assert sorted(c["whatsapp_message_id"] for c in contacts_of(web, campaign["id"])) == [
        f"V1-{PHONES[0]}", f"V1-{PHONES[1]}"]
    assert providers.hits("evolution")[1].json() == {"number": PHONES[0], "textMessage": {"text": campaign["text"]}}


@pytest.mark.parametrize("given, expected", [
    ("+55 (11) 99999-0001", "5511999990001"),
    ("11 99999-0001", "5511999990001"),
    ("5511999990001@s.whatsapp.net", "5511999990001"),
    ("0044 20 7946 0958", "442079460958"),
    (5511999990001, "5511999990001"),
])
def test_phone_numbers_are_normalised(given, expected):
    from campaigns import normalize_phone, phone_variants

    assert normalize_phone(given) == (expected, None)
    assert "551199990001" in phone_variants("5511999990001")


@pytest.mark.parametrize("given", ["", "abc", "123", "+1 234", None, "55119999900011234567"])
def test_invalid_phone_numbers_say_why(given):
    from campaigns import normalize_phone

    phone, reason = normalize_phone(given)
    assert phone is None and reason


def test_the_self_check_names_a_counter_that_disagrees_with_the_contacts(make_app, providers, serve):
    import models

    web = serve(campaign_app(make_app, providers, CAMPAIGN_SENDER=False))
    campaign = new_campaign(web, new_instance(web, "meta"), PHONES[:2])
    assert_counters_match_contacts(web, campaign["id"])
    with web.app.app_context(), models.db.connection_context():
        models.Campaign.update(sent_count=5).where(models.Campaign.id == campaign["id"]).execute()
    check = web.get("/test")
    counters = next(item for item in check["checks"] if item["name"] == "campaign counters")
    assert check["ok"] is False and counters["ok"] is False
    assert f"campaign {campaign['id']}: sent 5 != 0 contacts" in counters["detail"]


@pytest.mark.parametrize("provider", ["evolution", "wapi", "meta"])
def test_the_default_key_never_travels_to_an_instance_moved_to_another_host(make_app, providers, serve, provider):
    """The .env key (EVOLUTION_API_KEY...) is for the .env base URL (server A) only.

    The instance's base URL is moved to server B straight in the database, past the
    API's own check, with no token of its own: its sends go to B without any key.
    """
    elsewhere = Providers()
    try:
        web = serve(campaign_app(make_app, providers))
        instance_id = new_instance(web, provider)
        with web.app.app_context(), models.db.connection_context():
            models.Instance.update(api_base_url=elsewhere.server.url, api_token=None).where(
                models.Instance.id == instance_id).execute()
        campaign = new_campaign(web, instance_id, PHONES[:2])
        act(web, campaign["id"], "start")
        wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")

        assert providers.server.requests == []  # the default host saw nothing of this instance
        assert len(elsewhere.hits(provider)) == 2
        for request in elsewhere.server.requests:
            assert "apikey" not in request.headers and "authorization" not in request.headers, request.headers
            assert all(SECRET not in value for value in request.headers.values()), request.headers
            assert SECRET.encode() not in request.body
    finally:
        elsewhere.server.close()
