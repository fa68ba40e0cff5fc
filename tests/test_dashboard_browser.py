"""The dashboard in a real browser: Debian's Chromium driven by Playwright, the real app served by waitress.

Nothing is downloaded: Playwright drives /usr/bin/chromium (installed by .ci/run
in CI), and every request stays on 127.0.0.1. A screenshot of each page is
kept under test-output/screenshots/ at the repository root.
"""

from __future__ import annotations

import copy

import pytest

from tests.fakes import FakeServer, Reply
from tests.browser_support import LIVE, browser, dashboard, expect  # noqa: F401 (browser, dashboard: fixtures)
from tests.helpers import load_sample
from tests.media_support import made_vector, vector, wait_for_media, wapi_payload

pytestmark = pytest.mark.slow

EVOLUTION_IN = "evolution/v1_messages.upsert_text_incoming.json"
EVOLUTION_OUT = "evolution/v1_messages.upsert_text_outgoing_fromMe.json"


def chat_link(page, name: str):
    return page.locator(".chat-item", has_text=name)


def status_update(message_id: str, status: str) -> dict:
    """Evolution's messages.update for one of our messages in the tigo1 sample chat."""
    payload = load_sample("seeds/campaign_messages_update_delivered.json")
    payload["instance"] = "tigo1"
    payload["data"]["key"] = {"id": message_id, "remoteJid": "59171146267@s.whatsapp.net", "fromMe": True}
    payload["data"]["update"]["status"] = status
    return payload


# --- overview ------------------------------------------------------------------------------------

def test_overview_shows_instances_urls_and_events_as_they_arrive(dashboard):
    web = dashboard()
    web.open()
    page = web.page
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".url-row").first).to_contain_text("/webhook/")
    box = page.locator(".last-events").bounding_box()
    web.webhook(load_sample(EVOLUTION_IN))
    expect(page.locator(".event-line")).to_have_count(1, timeout=LIVE)
    expect(page.locator("tr[data-instance]")).to_contain_text("tigo1", timeout=LIVE)
    for _ in range(12):
        web.webhook(load_sample("meta/status_delivered_captured.json"))
    expect(page.locator(".event-line")).to_have_count(10, timeout=LIVE)
    assert page.locator(".last-events").bounding_box()["height"] == box["height"]  # no layout jump
    web.screenshot("overview")


# --- chats: live messages and ticks ------------------------------------------------------------------

def test_a_conversation_updates_live_with_sides_and_ticks(dashboard):
    web = dashboard()
    web.open("#/chats")
    page = web.page
    web.webhook(load_sample(EVOLUTION_IN))
    chat_link(page, "percy alvarez E1").click(timeout=LIVE)
    incoming = page.locator(".message.in")
    expect(incoming).to_have_count(1, timeout=LIVE)
    expect(incoming).to_contain_text("hola - text")
    expect(incoming.locator(".ticks")).to_have_count(0)  # ticks only on ours

    outgoing_payload = load_sample(EVOLUTION_OUT)
    message_id = outgoing_payload["data"]["key"]["id"]
    web.webhook(outgoing_payload)
    outgoing = page.locator(".message.out")
    expect(outgoing).to_contain_text("menasje saliente solo texto", timeout=LIVE)
    ticks = outgoing.locator(".ticks")
    expect(ticks).to_have_attribute("data-status", "sent")
    expect(ticks).to_have_text("✓")
    grey = ticks.evaluate("element => getComputedStyle(element).color")
    bubble = outgoing.locator(".bubble").bounding_box()
    assert bubble["x"] > page.locator(".message.in .bubble").bounding_box()["x"] + 100  # right side, theirs left

    web.webhook(status_update(message_id, "DELIVERY_ACK"))
    expect(ticks).to_have_attribute("data-status", "delivered", timeout=LIVE)
    expect(ticks).to_have_text("✓✓")
    expect(ticks).to_have_css("color", grey)

    web.webhook(status_update(message_id, "READ"))
    expect(ticks).to_have_attribute("data-status", "read", timeout=LIVE)
    expect(ticks).to_have_text("✓✓")
    expect(ticks).to_have_css("color", "rgb(83, 189, 235)")  # blue
    web.screenshot("conversation")
    page.goto(f"{web.url}/#/chats")
    expect(chat_link(page, "percy alvarez E1")).to_contain_text("You: menasje saliente solo texto")
    web.screenshot("chats")


def evolution_post_to(chat_id: str, message_id: str, text: str, **key) -> dict:
    """An Evolution messages.upsert into a Status or channel chat (shapes as in tests/views/test_webhooks.py)."""
    payload = load_sample(EVOLUTION_IN)
    payload["data"]["key"] = {"remoteJid": chat_id, "fromMe": False, "id": message_id, **key}
    payload["data"]["message"] = {"conversation": text}
    return payload


def test_status_posts_and_channels_are_listed_apart_from_conversations(dashboard):
    web = dashboard()
    web.open("#/chats")
    page = web.page
    broadcasts = page.locator(".broadcasts")
    expect(broadcasts).to_be_hidden()
    web.webhook(load_sample(EVOLUTION_IN))
    web.webhook(evolution_post_to("status@broadcast", "3A0STATUS1", "bom dia",
                                  participant="5511888888888@s.whatsapp.net"))
    web.webhook(evolution_post_to("120363144038483540@newsletter", "3A0CHANNEL1", "news"))

    expect(broadcasts.locator(".chat-item")).to_have_count(2, timeout=LIVE)
    expect(broadcasts.get_by_role("heading")).to_have_text("Status and channels")
    expect(page.locator(".chat-list:not(.broadcast-list) .chat-item")).to_have_count(1)
    expect(chat_link(page, "percy alvarez E1").locator(".badge")).to_have_count(0)
    status = broadcasts.locator(".chat-item[data-kind=status]")
    expect(status.locator(".chat-name")).to_contain_text("Status updates")
    expect(status.locator(".badge")).to_have_text("status")
    expect(broadcasts.locator(".chat-item[data-kind=newsletter] .badge")).to_have_text("channel")
    web.screenshot("chats-status-and-channels")

    status.click()
    expect(page.locator(".message.in .sender")).to_have_text("percy alvarez E1", timeout=LIVE)  # who posted it


def test_a_failed_message_shows_a_red_mark_with_its_reason(dashboard):
    web = dashboard()
    web.open("#/chats")
    outgoing = load_sample(EVOLUTION_OUT)
    web.webhook(outgoing)
    failed = status_update(outgoing["data"]["key"]["id"], "ERROR")
    web.webhook(failed)
    chat_link(web.page, "+591 7114 6267").click(timeout=LIVE)  # the number, formatted
    ticks = web.page.locator(".message.out .ticks")
    expect(ticks).to_have_attribute("data-status", "failed", timeout=LIVE)
    expect(ticks).to_have_text("!")
    expect(ticks).to_have_css("color", "rgb(198, 40, 40)")
    expect(ticks).to_have_attribute("title", "failed")


def test_user_text_is_shown_as_text_never_run(dashboard):
    web = dashboard()
    web.open("#/chats")
    payload = load_sample(EVOLUTION_IN)
    payload["data"]["message"]["conversation"] = "<script>alert(1)</script>"
    payload["data"]["pushName"] = '<img src=x onerror="alert(2)">'
    web.webhook(payload)
    link = web.page.locator(".chat-item").first
    expect(link).to_contain_text('<img src=x onerror="alert(2)">', timeout=LIVE)
    link.click()
    bubble = web.page.locator(".message.in .text")
    expect(bubble).to_have_text("<script>alert(1)</script>", timeout=LIVE)
    assert web.page.locator("main script, main img[src='x']").count() == 0
    web.page.wait_for_timeout(300)  # a handler that ran would have opened its dialog by now
    # The fixture asserts that no dialog opened and no script error happened.


# --- media --------------------------------------------------------------------------------------

@pytest.fixture
def cdn():
    server = FakeServer()
    yield server
    server.close()


def test_an_image_downloads_renders_in_its_chat_and_a_failed_one_can_be_retried(dashboard, cdn):
    meta, encrypted, _plaintext = vector("image")
    cdn.serve("GET", "/v/photo.enc", Reply(200, encrypted, {"Content-Type": "application/octet-stream"}))
    web = dashboard(MEDIA_WORKERS=1, WA_MEDIA_BASE_URL=cdn.url, WAPI_BASE_URL=cdn.url, EVOLUTION_BASE_URL=cdn.url,
                    META_GRAPH_URL=cdn.url + "/v21.0", MEDIA_RETRY_SECONDS=0.05, MEDIA_MAX_ATTEMPTS=1,
                    MEDIA_CONNECT_TIMEOUT=2.0, MEDIA_READ_TIMEOUT=2.0)
    web.open("#/chats")
    page = web.page
    web.webhook(wapi_payload(meta, "PHOTO1", "/v/photo.enc"))
    gone, _encrypted, _plaintext = made_vector(2048, "image")
    web.webhook(wapi_payload(gone, "GONE1", "/v/gone.enc"))  # the CDN answers 404
    page.locator(".chat-item").first.click(timeout=LIVE)
    image = page.locator(".message.in img.slot-image, .message.in .slot-image img")
    expect(image).to_be_visible(timeout=LIVE)
    # visible comes before loaded: wait until the browser has fetched and decoded the stored file
    page.wait_for_function(
        "selector => [...document.querySelectorAll(selector)].some(img => img.complete && img.naturalWidth > 0)",
        arg=".message.in img.slot-image, .message.in .slot-image img", timeout=LIVE)
    retry = page.locator(".message.in .media-state button")
    expect(retry).to_be_visible(timeout=LIVE)
    web.screenshot("conversation-media")

    page.goto(f"{web.url}/#/media")
    cards = page.locator(".media-card")
    expect(cards).to_have_count(2, timeout=LIVE)
    expect(page.locator(".media-card[data-media-state=done] img")).to_be_visible()
    failed = page.locator(".media-card", has=page.locator("button"))
    expect(failed).to_have_count(1)
    page.select_option("#media-state", "done")
    expect(cards).to_have_count(1, timeout=LIVE)
    page.select_option("#media-state", "")
    expect(cards).to_have_count(2, timeout=LIVE)
    web.screenshot("media")
    with page.expect_response(lambda response: response.url.endswith("/retry")) as answer:
        failed.locator("button").click()
    assert answer.value.status == 202
    retried = wait_for_media(web.client, answer.value.json()["id"], timeout=5)
    assert retried["state"] in ("failed", "expired")
    assert len(cdn.hits("GET", "/v/gone.enc")) == 2  # fetched again
    expect(failed.locator("button")).to_be_visible(timeout=LIVE)  # failed again, shown live


# --- campaigns -------------------------------------------------------------------------------------

def test_a_campaign_from_a_csv_shows_its_problems_then_counts_live(dashboard):
    from tests.test_campaigns import EXTERNAL, Providers

    providers = Providers()
    try:
        web = dashboard(CAMPAIGN_SENDER=True, CAMPAIGN_RATE_PER_MIN=600.0, CAMPAIGN_SEND_TIMEOUT=5.0,
                        EVOLUTION_BASE_URL=providers.server.url, EVOLUTION_API_KEY="provider-secret-token-123456")
        created = web.client.post("/api/instances", json={"provider": "evolution", "instance_id": EXTERNAL["evolution"],
                                                          "name": "Shop"})
        assert created.status_code == 201
        web.open("#/campaigns")
        page = web.page
        page.fill("#campaign-name", "Black Friday")
        page.fill("#campaign-text", "Promoção de hoje: 20% off!")
        csv = "phone,name\n5511999990001,Ana\n5511999990002,Bia\n5511999990001,Ana again\nnot-a-phone,Bob\n" \
              "5521988880003,Caio\n"
        page.set_input_files("#campaign-file", {"name": "contacts.csv", "mimeType": "text/csv",
                                                "buffer": csv.encode()})
        report = page.locator(".campaign-report")
        expect(report).to_contain_text("3 valid contacts.", timeout=LIVE)
        expect(report).to_contain_text("1 invalid row")
        expect(report).to_contain_text("1 duplicate")
        expect(report.locator(".invalid-rows")).to_contain_text("not-a-phone")
        web.screenshot("campaigns")
        page.get_by_role("button", name="Create campaign").click()
        expect(page.locator("#campaign-state")).to_have_text("draft", timeout=LIVE)
        expect(page.locator("[data-count=total_contacts]")).to_have_text("3")
        expect(page.locator(".campaign-actions [data-action=pause]")).to_be_disabled()

        page.locator(".campaign-actions [data-action=start]").click()
        expect(page.locator("[data-count=sent_count]")).to_have_text("3", timeout=LIVE)
        expect(page.locator("#campaign-state")).to_have_text("done", timeout=LIVE)
        expect(page.locator("#campaign-progress")).to_have_js_property("value", 100)
        contacts = web.client.get("/api/campaigns/1/contacts").get_json()["items"]
        for contact in contacts:
            web.webhook(status_update_for(contact, "DELIVERY_ACK"), "/api/webhooks/evolution/")
        web.webhook(status_update_for(contacts[0], "READ"), "/api/webhooks/evolution/")
        expect(page.locator("[data-count=delivered_count]")).to_have_text("3", timeout=LIVE)
        expect(page.locator("[data-count=read_count]")).to_have_text("1", timeout=LIVE)
        expect(page.locator("[data-rate=delivery]")).to_have_text("100 %")
        expect(page.locator("[data-rate=read]")).to_have_text("33.3 %")
        page.select_option("#contact-state", "read")
        expect(page.locator("tr[data-contact-state]")).to_have_count(1, timeout=LIVE)
        expect(page.locator(".campaign-log li").first).to_be_visible()
        web.screenshot("campaign")
        assert len(providers.hits("evolution")) == 3
    finally:
        providers.server.close()


def status_update_for(contact: dict, status: str) -> dict:
    payload = copy.deepcopy(load_sample("seeds/campaign_messages_update_delivered.json"))
    payload["instance"] = "shop_evo"
    payload["data"]["key"] = {"id": contact["whatsapp_message_id"], "remoteJid": f"{contact['phone']}@s.whatsapp.net",
                              "fromMe": True}
    payload["data"]["update"]["status"] = status
    return payload


# --- QA, languages, phones ----------------------------------------------------------------------------

def test_qa_renders_the_self_check_as_a_checklist(dashboard):
    web = dashboard()
    web.open("#/qa")
    items = web.page.locator(".checklist li")
    expect(items.first).to_be_visible(timeout=LIVE)
    expect(web.page.locator(".checklist li.ok", has_text="database writable")).to_have_count(1)
    assert items.count() == len(web.client.get("/test").get_json()["checks"])
    web.screenshot("qa")


def test_the_portuguese_switch_changes_the_labels_and_is_remembered(dashboard):
    web = dashboard()
    web.open("#/campaigns")
    page = web.page
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    page.select_option("#language", "pt-BR")
    expect(page.get_by_role("heading", name="Campanhas")).to_be_visible(timeout=LIVE)
    expect(page.locator("nav a[data-page=overview]")).to_have_text("Visão geral")
    expect(page.get_by_role("button", name="Criar campanha")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "pt-BR"
    page.reload()
    expect(page.locator("nav a[data-page=chats]")).to_have_text("Conversas", timeout=LIVE)
    web.screenshot("campaigns-pt-BR")
    page.select_option("#language", "en")
    expect(page.locator("nav a[data-page=chats]")).to_have_text("Chats", timeout=LIVE)


def test_pages_fit_a_phone_and_controls_are_reachable_by_keyboard(dashboard):
    web = dashboard()
    web.webhook(load_sample(EVOLUTION_IN))
    page = web.page
    page.set_viewport_size({"width": 390, "height": 800})
    for hash_path in ("#/overview", "#/chats", "#/chats/1", "#/events", "#/media", "#/campaigns", "#/qa"):
        web.open(hash_path)
        page.wait_for_timeout(200)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{hash_path} is {width} px wide on a 390 px phone"
        if hash_path == "#/chats/1":
            expect(page.locator(".message.in")).to_have_count(1, timeout=LIVE)
            web.screenshot("conversation-phone")
    page.goto(f"{web.url}/#/overview")
    page.keyboard.press("Tab")  # the skip link first
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#/overview"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Chats")).to_be_visible(timeout=LIVE)
