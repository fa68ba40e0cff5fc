"""A campaign through Z-API end to end: a fake Z-API on 127.0.0.1, the real sender thread, the real webhooks.

Z-API answers send-text with WhatsApp's ``messageId``; its DeliveryCallback
and MessageStatusCallback (several ``ids`` at a time) name the message by it,
so each contact is tracked sent → delivered → read, or failed.
"""

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
from tests.fakes import FakeServer, json_reply
from tests.helpers import load_sample, wait_applied
from tests.test_campaigns import (
    PHONES, RATE, Served, act, assert_counters_match_contacts, contacts_of, new_campaign, wait_for,
)

pytestmark = pytest.mark.slow

INSTANCE = "3E000000000000000000000000000001"
TOKEN = "F5DA3871D271E4965BD44484"
CLIENT_TOKEN = "Fe4f1c2a9b8d7e6f5a4b3c2d1e0f9a8bS"
SEND = f"/instances/{INSTANCE}/token/{TOKEN}/send-text"
TEXT = "Promoção de hoje: 20% off!"


class ZApi:
    """Z-API's send-text: ``{zaapId, messageId, id}`` with a fresh id each time."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.before_reply = None  # called with (request, message id) before answering
        self.server.route("POST", SEND, self.answer)

    def answer(self, request):
        with self.lock:
            number = next(self.ids)
        message_id = f"3EB0{number:016X}"
        if self.before_reply is not None:
            self.before_reply(request, message_id)
        return json_reply({"zaapId": f"{number:032X}", "messageId": message_id, "id": message_id})

    def hits(self):
        return self.server.hits("POST", SEND)


@pytest.fixture
def zapi_api():
    fake = ZApi()
    yield fake
    fake.server.close()


@pytest.fixture
def web(make_app, zapi_api):
    app = make_app(CAMPAIGN_SENDER=True, CAMPAIGN_RATE_PER_MIN=RATE, CAMPAIGN_MAX_CONSECUTIVE_ERRORS=5,
                   CAMPAIGN_DELIVERY_TIMEOUT_HOURS=24.0, CAMPAIGN_SEND_TIMEOUT=5.0,
                   ZAPI_BASE_URL=zapi_api.server.url, ZAPI_TOKEN=TOKEN, ZAPI_CLIENT_TOKEN=CLIENT_TOKEN)
    served = Served(app)
    yield served
    served.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def delivery(message_id: str, phone: str, error: str | None = None) -> dict:
    """Z-API's DeliveryCallback (its documented example), for our instance."""
    body = dict(load_sample("zapi/delivery_error.json"), instanceId=INSTANCE, messageId=message_id, phone=phone,
                momment=now_ms())
    if error is None:
        del body["error"]
    else:
        body["error"] = error
    return body


def statuses(ids: list, status: str, phone: str) -> dict:
    """A real MessageStatusCallback naming several messages."""
    return dict(load_sample("zapi/status_received_real.json"), ids=list(ids), status=status, phone=phone,
                momment=now_ms())


def echo(message_id: str, phone: str, text: str = TEXT) -> dict:
    """The ReceivedCallback of one of our API sends (notify sent by me on): the real fromMe capture."""
    body = load_sample("zapi/received_fromme_text_real.json")
    body.update(messageId=message_id, phone=phone, chatLid=None, fromApi=True, referenceMessageId=None,
                momment=now_ms(), text={"message": text})
    return body


def reply(message_id: str, phone: str, text: str) -> dict:
    body = echo(message_id, phone, text)
    body.update(fromMe=False, fromApi=False, senderName="Cliente")
    return body


def post(web: Served, body: dict) -> None:
    response = web.post("/webhook/zapi/", body)
    assert response.status_code == 200, response.text


def new_zapi_instance(web: Served) -> int:
    response = web.post("/api/instances", {"provider": "zapi", "instance_id": INSTANCE})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_zapi_campaign_is_sent_once_each_and_tracked_to_read(web, zapi_api):
    instance_id = new_zapi_instance(web)
    campaign = new_campaign(web, instance_id, text=TEXT)
    act(web, campaign["id"], "start")
    done = wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    assert done["sent_count"] == len(PHONES) and done["failed_count"] == 0

    hits = zapi_api.hits()
    assert sorted(hit.json()["phone"] for hit in hits) == sorted(PHONES)  # each exactly once
    assert hits[0].json() == {"phone": PHONES[0], "message": TEXT}
    assert all(hit.headers["client-token"] == CLIENT_TOKEN for hit in hits)
    gaps = [later.at - earlier.at for earlier, later in zip(hits, hits[1:], strict=False)]
    assert min(gaps) >= 0.8 * 60 / RATE, gaps
    ids = {c["phone"]: c["whatsapp_message_id"] for c in contacts_of(web, campaign["id"])}
    assert len(set(ids.values())) == len(PHONES) and all(i.startswith("3EB0") for i in ids.values())

    # Z-API's callbacks, each posted 5 times from several threads, shuffled: the echo of every
    # send, every delivery (the last one failed), "RECEIVED" for five messages in one batch and
    # "READ" for three (two of them before their "RECEIVED" may come).
    jobs = [echo(ids[phone], phone) for phone in PHONES]
    jobs += [delivery(ids[phone], phone) for phone in PHONES[:5]]
    jobs += [delivery(ids[PHONES[5]], PHONES[5], "Phone number does not exist")]
    jobs += [statuses([ids[phone] for phone in PHONES[:5]], "RECEIVED", "")]
    jobs += [statuses([ids[phone]], "READ", phone) for phone in PHONES[2:5]]
    jobs *= 5
    random.Random(13).shuffle(jobs)
    local, sessions = threading.local(), []

    def send(body):
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        return local.session.post(wait_applied(web.url + "/webhook/zapi/"), json=body, timeout=30)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, jobs))
    for session in sessions:
        session.close()
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers if a.status_code != 200]

    data = assert_counters_match_contacts(web, campaign["id"])
    assert (data["sent_count"], data["delivered_count"], data["read_count"], data["failed_count"]) == (6, 5, 3, 1)
    by_phone = {c["phone"]: c for c in contacts_of(web, campaign["id"])}
    assert by_phone[PHONES[0]]["state"] == "delivered" and by_phone[PHONES[3]]["state"] == "read"
    assert (by_phone[PHONES[5]]["state"], by_phone[PHONES[5]]["error"]) == ("failed", "Phone number does not exist")
    # The echoes are our messages in the contacts' chats, with their statuses.
    ours = {m["provider_message_id"]: m for m in web.get("/api/messages?direction=out&limit=50")["items"]}
    assert set(ours) == set(ids.values())
    assert ours[ids[PHONES[3]]]["status"] == "read" and ours[ids[PHONES[3]]]["text"] == TEXT
    assert ours[ids[PHONES[0]]]["chat_id"] == f"{PHONES[0]}@s.whatsapp.net"

    # A reply is counted; our reading it (READ_BY_ME) is no status of the campaign's message.
    post(web, reply("IN-REPLY-1", PHONES[0], "Quero saber mais!"))
    post(web, statuses(["IN-REPLY-1"], "READ_BY_ME", PHONES[0]))
    data = assert_counters_match_contacts(web, campaign["id"])
    assert (data["replied_count"], data["read_count"]) == (1, 3)
    assert {c["phone"]: c["state"] for c in contacts_of(web, campaign["id"])}[PHONES[0]] == "delivered"
    incoming = web.get("/api/messages?direction=in")["items"]
    assert [(m["provider_message_id"], m["status"]) for m in incoming] == [("IN-REPLY-1", "read")]

    status = json.dumps(web.get("/status"))
    log = json.dumps(web.get(f"/api/campaigns/{campaign['id']}/log?limit=500"))
    assert TOKEN not in status + log and CLIENT_TOKEN not in status + log


def test_statuses_that_come_before_the_send_call_returns_are_applied(web, zapi_api):
    instance_id = new_zapi_instance(web)

    def deliver_first(request, message_id):
        phone = request.json()["phone"]
        for body in (delivery(message_id, phone), statuses([message_id], "READ", phone)):
            assert requests.post(wait_applied(web.url + "/webhook/zapi/"), json=body, timeout=10).status_code == 200

    zapi_api.before_reply = deliver_first
    campaign = new_campaign(web, instance_id, PHONES[:3])
    act(web, campaign["id"], "start")
    data = wait_for(web, campaign["id"], lambda c: c["state"] == "done" and c["read_count"] == 3, what="3 read")
    assert (data["sent_count"], data["delivered_count"], data["read_count"]) == (3, 3, 3)
    assert_counters_match_contacts(web, campaign["id"])


@pytest.mark.parametrize("names_it", ["delivery", "echo"])
def test_a_send_whose_answer_was_lost_is_reconciled_by_zapis_callback(make_app, zapi_api, names_it):
    app = make_app(CAMPAIGN_SENDER=False, ZAPI_BASE_URL=zapi_api.server.url, ZAPI_TOKEN=TOKEN)
    web = Served(app)
    try:
        campaign = new_campaign(web, new_zapi_instance(web), PHONES[:1], text=TEXT)
        act(web, campaign["id"], "start")
        with app.extensions["zaphook.database"].connection_context():
            contact = models.CampaignContact.get(models.CampaignContact.campaign == campaign["id"])
            assert models.CampaignContact.claim(contact.id)  # the power went during its send
        post(web, delivery("3EB0LOST000001", PHONES[0]) if names_it == "delivery" else echo("3EB0LOST000001", PHONES[0]))
        [reconciled] = contacts_of(web, campaign["id"])
        assert (reconciled["state"], reconciled["whatsapp_message_id"]) == ("sent", "3EB0LOST000001")
        post(web, statuses(["3EB0LOST000001"], "PLAYED", PHONES[0]))
        assert contacts_of(web, campaign["id"])[0]["state"] == "read"
        assert zapi_api.hits() == []  # never resent
    finally:
        web.close()
