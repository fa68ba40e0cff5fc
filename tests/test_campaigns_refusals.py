"""A provider's refusal becomes a stable code with parameters, never its dict: each provider against a fake of it.

Every case is a real HTTP server on 127.0.0.1 (tests/fakes.py) answering a
send the way that provider refuses one: Evolution's ``{status, error,
response: {message: [...]}}`` (not on WhatsApp: ``{exists: false}``; "Connection
Closed"; an unknown instance), WAHA's NestJS errors (401, 422 with the
session's status, 404, a 500 carrying WhatsApp's 463), Meta's Graph ``error``
with its numeric code, Z-API's ``{error}`` (the client token, "Instance not
found"), W-API's ``{error: true, message}``. Then the same codes through the
campaign sender, stored on the contact and its log line, and the test that
every code the server sends has a sentence in both catalogues.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import campaign_lists
import campaigns
import models
from handlers import REGISTRY
from storage.http import Limits
from storage.send import REFUSALS, SendError, SendTarget, allowed_hosts, refusal_of_text
from tests.fakes import FakeServer, Reply, json_reply
from tests.helpers import load_sample
from tests.test_campaigns import (  # noqa: F401 (providers, serve: fixtures)
    PHONES, act, campaign_app, contacts_of, new_campaign, new_instance, providers, serve, status_payload, wait_for,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PHONE = "5511987654321"
ZAPI_INSTANCE = "3E000000000000000000000000000001"
ZAPI_TOKEN = "F5DA3871D271E4965BD44484"
CLIENT_TOKEN = "Fe4f1c2a9b8d7e6f5a4b3c2d1e0f9a8bS"
INSTANCES = {"evolution": "shop", "wapi": "3B6XIW-ZTS923-GEAY6V", "meta": "590968830767958", "waha": "default",
             "zapi": ZAPI_INSTANCE}
SEND = {
    "evolution": ("POST", "/message/sendText/shop"),
    "wapi": ("POST", "/v1/message/send-text"),
    "meta": ("POST", "/590968830767958/messages"),
    "waha": ("POST", "/api/sendText"),
    "zapi": ("POST", f"/instances/{ZAPI_INSTANCE}/token/{ZAPI_TOKEN}/send-text"),
}
CHECK_EXISTS = ("GET", "/api/contacts/check-exists")


def meta_error(code: int, message: str, status: int = 400, details: str = "") -> Reply:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return json_reply({"error": error}, status)


def evolution_error(status: int, message) -> Reply:
    names = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
    return json_reply({"status": status, "error": names[status], "response": {"message": message}}, status)


WORKING = json_reply({"numberExists": True, "chatId": f"{PHONE}@c.us"})

# provider, the send endpoint's answer, check-exists' answer (WAHA), the code, params it must include
CASES = [
    ("evolution", evolution_error(400, [{"jid": f"{PHONE}@s.whatsapp.net", "exists": False, "number": PHONE}]), None,
     "not_on_whatsapp", {"status": 400, "text": f"{PHONE} is not on WhatsApp"}),
    ("evolution", evolution_error(500, ["Error: Connection Closed"]), None, "disconnected", {"status": 500}),
    ("evolution", evolution_error(400, ["Connection Closed"]), None, "disconnected", {}),
    ("evolution", evolution_error(404, ['The "shop" instance does not exist']), None, "instance_unknown", {}),
    ("evolution", evolution_error(401, "Unauthorized"), None, "credentials", {}),
    ("evolution", Reply(429, b"Too Many Requests", {"Content-Type": "text/plain"}), None, "rate_limited", {}),
    ("evolution", evolution_error(400, [["number must match pattern"]]), None, "provider",
     {"text": "number must match pattern"}),
    ("waha", json_reply({"message": "Unauthorized", "statusCode": 401}, 401), WORKING, "credentials", {}),
    ("waha", json_reply({"error": "Session status is not as expected. Try again later or restart the session",
                         "session": "default", "status": "STOPPED", "expected": ["WORKING"]}, 422), WORKING,
     "disconnected", {"state": "STOPPED"}),
    ("waha", json_reply({"message": "We didn't find a session with name 'default'. Please start it first by using "
                                    "POST /api/sessions/default/start request", "error": "Not Found",
                         "statusCode": 404}, 404), WORKING, "instance_unknown", {}),
    ("waha", json_reply({"statusCode": 500, "timestamp": "2026-07-23T19:48:30.717Z",
                         "exception": {"message": "2 UNKNOWN: server returned error 463", "code": 2,
                                       "details": "server returned error 463"}}, 500), WORKING, "blocked", {}),
    ("waha", None, json_reply({"numberExists": False, "chatId": None}), "not_on_whatsapp", {"phone": PHONE}),
    ("waha", None, json_reply({"message": "Unauthorized", "statusCode": 401}, 401), "credentials", {}),
    ("meta", meta_error(190, "Error validating access token: Session has expired.", 401), None, "credentials", {}),
    ("meta", meta_error(131030, "(#131030) Recipient phone number not in allowed list",
                        details="Recipient phone number not in allowed list: Add recipient phone number to recipient "
                                "list and try again."), None, "recipient_not_allowed", {}),
    ("meta", meta_error(131047, "Re-engagement message",
                        details="Message failed to send because more than 24 hours have passed since the customer "
                                "last replied to this number."), None, "outside_window", {}),
    ("meta", meta_error(130429, "(#130429) Rate limit hit"), None, "rate_limited", {}),
    ("meta", meta_error(100, "(#100) Invalid parameter"), None, "provider",
     {"text": "(#100) Invalid parameter [code 100]"}),
    ("zapi", json_reply({"error": "your client-token is not configured"}, 400), None, "credentials", {}),
    ("zapi", json_reply({"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, 403), None, "credentials",
     {"text": "Client-Token [redacted] not allowed"}),
    ("zapi", json_reply({"error": "Instance not found"}, 404), None, "instance_unknown", {}),
    ("zapi", json_reply({"error": "null not allowed"}), None, "credentials", {"status": 200}),
    ("zapi", json_reply({"value": False, "message": "phone invalid"}, 400), None, "provider", {"text": "phone invalid"}),
    ("wapi", json_reply({"error": True, "message": "instance disconnected"}, 500), None, "disconnected", {}),
    ("wapi", json_reply({"error": True, "message": "Token inválido"}, 401), None, "credentials", {}),
    ("wapi", json_reply({"error": True, "message": "Número não existe no WhatsApp"}), None, "not_on_whatsapp", {}),
]


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.close()


def target(fake: FakeServer, provider: str, read_timeout: float = 5.0, base_url: str = "",
           allowed: str = "") -> SendTarget:
    return SendTarget(base_url=base_url or fake.url, token=ZAPI_TOKEN if provider == "zapi" else "provider-key",
                      instance=INSTANCES[provider], allowed_hosts=allowed_hosts([allowed or fake.url]),
                      limits=Limits(2.0, read_timeout, 256 * 1024), settings={"ZAPI_CLIENT_TOKEN": CLIENT_TOKEN})


def refusal(fake: FakeServer, provider: str, **options) -> SendError:
    with pytest.raises(SendError) as raised:
        REGISTRY.get(provider).send_text(target(fake, provider, **options), PHONE, "Olá!")
    return raised.value


@pytest.mark.parametrize("provider, answer, checked, code, params", CASES,
                         ids=[f"{case[0]}-{case[3]}-{n}" for n, case in enumerate(CASES)])
def test_each_providers_refusal_has_its_code(fake, provider, answer, checked, code, params):
    if answer is not None:
        fake.serve(*SEND[provider], answer)
    if checked is not None:
        fake.serve(*CHECK_EXISTS, checked)
    error = refusal(fake, provider)
    assert error.code == code, (str(error), error.params)
    assert params.items() <= error.params.items(), error.params
    assert not error.maybe_sent
    shown = json.dumps(error.params, ensure_ascii=False) + str(error)
    assert "{'" not in shown and "': " not in shown  # never a Python repr
    assert CLIENT_TOKEN not in shown and ZAPI_TOKEN not in shown
    assert code in REFUSALS


def test_a_send_without_an_answer_may_have_gone_out_and_says_so(fake):
    fake.serve(*SEND["evolution"], Reply(200, fake.stalled(), {"Content-Type": "application/json"}))
    timed_out = refusal(fake, "evolution", read_timeout=0.3)
    assert (timed_out.code, timed_out.maybe_sent, timed_out.params["seconds"]) == ("timeout", True, 0.3)
    fake.serve(*SEND["evolution"], json_reply({"status": "PENDING"}, 201))
    unnamed = refusal(fake, "evolution")
    assert (unnamed.code, unnamed.maybe_sent) == ("no_message_id", True)
    assert str(unnamed) == 'Evolution answered without a message id: {"status": "PENDING"}'


def test_an_address_zaphook_may_not_call_and_a_closed_port_have_their_codes(fake):
    other = FakeServer()
    port = other.url.rsplit(":", 1)[1]
    other.close()
    closed = f"http://127.0.0.1:{port}"
    refused = refusal(fake, "evolution", base_url=closed, allowed=closed)
    assert (refused.code, refused.params["host"], refused.maybe_sent) == ("connection", "127.0.0.1", True)
    not_allowed = refusal(fake, "meta", base_url="http://10.1.2.3:9")  # not called at all
    assert (not_allowed.code, not_allowed.params, not_allowed.maybe_sent) == ("address_refused", {"host": "10.1.2.3"},
                                                                              False)


@pytest.mark.parametrize("text, code", [
    ("Phone number does not exist", "not_on_whatsapp"),                     # Z-API's DeliveryCallback
    ("Phone number does not exist (SHADOW_BAN)", "not_on_whatsapp"),
    ("SHADOW_BAN", "blocked"),
    ("131026: Message undeliverable – Unable to deliver message", "undeliverable"),  # Meta's failed status
    ("131047: Re-engagement message", "outside_window"),
    ("130472: User's number is part of an experiment", "provider"),
    (None, "provider"),
])
def test_a_failed_status_is_read_as_a_refusal(text, code):
    assert refusal_of_text(text)[0] == code


# --- through the sender ----------------------------------------------------------------------------

def test_the_sender_stores_the_refusal_on_the_contact_and_its_log_line_naming_the_contact(make_app, providers,
                                                                                          serve):
    web = serve(campaign_app(make_app, providers, CAMPAIGN_MAX_CONSECUTIVE_ERRORS=2))
    instance_id = new_instance(web, "evolution")
    providers.failing["evolution"] = lambda request: json_reply(
        {"status": 500, "error": "Internal Server Error", "response": {"message": ["Error: Connection Closed"]}}, 500)
    campaign = new_campaign(web, instance_id, PHONES[:3])
    act(web, campaign["id"], "start")
    paused = wait_for(web, campaign["id"], lambda c: c["state"] == "paused", what="paused")
    assert paused["state_detail"] == {"code": "paused_for_errors", "limit": 2}
    failed = contacts_of(web, campaign["id"], "failed")
    assert [(c["error_code"], c["error_params"]) for c in failed] == [
        ("disconnected", {"provider": "Evolution", "text": "Error: Connection Closed", "status": 500})] * 2
    log = web.get(f"/api/campaigns/{campaign['id']}/log?limit=50")["items"]
    lines = [line for line in log if line["action"] == "failed"]
    assert sorted(line["contact"]["phone"] for line in lines) == sorted(PHONES[:2])
    assert all(line["contact"]["name"].startswith("Cliente ") for line in lines)
    assert all(line["params"]["refusal"] == "disconnected" for line in lines)
    assert next(line for line in log if line["action"] == "paused")["params"] == {"code": "paused_for_errors",
                                                                                 "limit": 2}
    assert next(line for line in log if line["action"] == "started")["contact"] is None


def test_a_failed_status_webhook_stores_its_refusal_code(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers))
    campaign = new_campaign(web, new_instance(web, "meta"), PHONES[:1])
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    [contact] = contacts_of(web, campaign["id"])
    route, body = status_payload("meta", contact["whatsapp_message_id"], "failed", PHONES[0])
    errors = load_sample("meta/fixture_status_failed_errors.json")["entry"][0]["changes"][0]["value"]["statuses"][0]
    errors["errors"][0].update(code=131026, title="Message undeliverable", message="Message undeliverable",
                               error_data={"details": "Unable to deliver message."})
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"] = errors["errors"]
    assert web.post(route, body).status_code == 200
    [failed] = contacts_of(web, campaign["id"], "failed")
    assert failed["error_code"] == "undeliverable"
    assert failed["error_params"] == {"text": "131026: Message undeliverable – Unable to deliver message."}
    # A late "read" wins over the failure and clears it.
    route, body = status_payload("meta", contact["whatsapp_message_id"], "read", PHONES[0])
    assert web.post(route, body).status_code == 200
    [read] = contacts_of(web, campaign["id"], "read")
    assert (read["error"], read["error_code"], read["error_params"]) == (None, None, None)


def test_an_opted_out_number_is_skipped_with_its_code(make_app, providers, serve):
    app = campaign_app(make_app, providers)
    web = serve(app)
    with app.extensions["zaphook.database"].connection_context():
        models.OptOut.create(phone=PHONES[0], word="SAIR", created_at=models.utcnow())
    campaign = new_campaign(web, new_instance(web, "evolution"), PHONES[:2])
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    [skipped] = contacts_of(web, campaign["id"], "skipped")
    assert (skipped["error"], skipped["error_code"]) == ("opted out", "opted_out")


# --- the catalogues ------------------------------------------------------------------------------------

def catalogues() -> dict:
    return {language: json.loads((ROOT / "static" / "i18n" / f"{language}.json").read_text(encoding="utf-8"))
            for language in ("en", "pt-BR")}


def plural_or_plain(catalogue: dict, key: str) -> bool:
    return key in catalogue or f"{key}.other" in catalogue


def test_every_code_the_server_sends_has_a_sentence_in_both_catalogues():
    keys = [f"refusal.{code}" for code in REFUSALS]
    keys += ["refusal.provider_status", "refusal.provider_unknown", "refusal.maybe_sent"]
    keys += [f"campaigns.problem.{code}" for code in campaigns.PROBLEMS]
    keys += [f"campaigns.phone.{code}" for code in campaign_lists.PHONE_PROBLEMS]
    keys += [f"campaigns.warning.{code}" for code in campaign_lists.WARNINGS]
    keys += [f"campaigns.log.{action}" for action in models.LOG_ACTIONS]
    keys += [f"campaigns.encoding.{encoding}" for encoding in ("utf-8", "cp1252", "utf-16")]
    keys += ["campaigns.state_reason.paused_for_errors", "campaigns.api.state_conflict"]
    for language, catalogue in catalogues().items():
        missing = [key for key in keys if not plural_or_plain(catalogue, key)]
        assert missing == [], f"{language} has no sentence for {missing}"
    english, portuguese = catalogues().values()
    assert english.keys() == portuguese.keys()


def test_a_json_list_gives_every_contact_every_column(make_app, providers, serve):
    """A JSON list whose contacts have different keys: every contact gets every column, empty where it had none."""
    web = serve(campaign_app(make_app, providers, CAMPAIGN_SENDER=False))
    instance_id = new_instance(web, "evolution")
    response = web.post("/api/campaigns", {"name": "Lojas", "instance_id": instance_id, "text": "{loja}: oi {nome}",
                                           "contacts": [{"phone": PHONES[0], "name": "Ana", "loja": "Centro"},
                                                        {"phone": PHONES[1], "name": "Bia"}]})
    assert response.status_code == 201, response.text
    assert response.json()["warnings"][0]["code"] == "field_missing"
    fields = {c["phone"]: c["fields"] for c in contacts_of(web, response.json()["id"])}
    assert fields == {PHONES[0]: {"name": "Ana", "loja": "Centro"}, PHONES[1]: {"name": "Bia", "loja": ""}}
    assert providers.hits("evolution") == []  # a draft: nothing was sent
