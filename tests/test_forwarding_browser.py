"""The event page's forwarding panel in a real browser: each destination's attempts, and sending again."""

from __future__ import annotations

import threading

import pytest

from tests.browser_support import LIVE, browser, dashboard, expect  # noqa: F401 (browser, dashboard: fixtures)
from tests.fakes import FakeServer, Reply
from tests.helpers import load_sample

pytestmark = pytest.mark.slow


def test_the_event_page_shows_each_destinations_attempts_and_sends_again(dashboard):
    app = FakeServer()
    answers = iter([500])
    lock = threading.Lock()

    def route(_request):
        with lock:
            status = next(answers, 200)
        return Reply(status, b"try later" if status == 500 else b"ok")
    app.route("POST", "/hook", route)
    web = dashboard(FORWARD_URL=app.url + "/hook", FORWARD_FORMAT="normalised", FORWARD_RETRY_SECONDS=0.05)
    try:
        event = web.webhook(load_sample("evolution/v1_messages.upsert_text_incoming.json"))
        web.open(f"#/events/{event['event_id']}")
        panel = web.page.locator(".event-forwarding")
        expect(panel.locator("h3")).to_have_text("Forwarding to your apps", timeout=LIVE)
        destination = panel.locator(".forward-destination", has_text="env")
        expect(destination.locator("code").first).to_have_text(app.url + "/hook")
        delivery = destination.locator(".forward-delivery").first
        expect(delivery).to_have_attribute("data-state", "delivered", timeout=LIVE)
        rows = delivery.locator(".forward-attempts tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("will retry")
        expect(rows.nth(0)).to_contain_text("500")
        expect(rows.nth(0)).to_contain_text("try later")
        expect(rows.nth(1)).to_contain_text("delivered")

        destination.get_by_role("button", name="Send again to env").click()
        expect(destination.locator(".forward-result")).to_have_text("Queued again: 1 delivery.",
                                                                           timeout=LIVE)
        again = destination.locator(".forward-delivery").nth(1)
        expect(again).to_contain_text("sent again on request", timeout=LIVE)
        expect(again).to_have_attribute("data-state", "delivered", timeout=LIVE)
        assert len(app.hits("POST", "/hook")) == 3

        page = web.page
        page.locator(".forward-add-details summary").click()
        page.fill("#forward-url", app.url + "/second")
        page.fill("#forward-name", "second-app")
        page.select_option("#forward-format", "raw")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(panel.locator(".forward-add .forward-result")).to_contain_text("Added second-app. Its signing secret: "
                                                                              "whsec_", timeout=LIVE)
        second = panel.locator(".forward-destination", has_text="second-app")
        expect(second).to_contain_text("Not sent here")
        second.get_by_role("button", name="Switch off").click()
        expect(second.locator(".badge.state-failed")).to_have_text("off", timeout=LIVE)
        second.get_by_role("button", name="Remove").click()
        second.get_by_role("button", name="Click again to remove it and its history").click()
        expect(panel.locator(".forward-destination")).to_have_count(1, timeout=LIVE)
        expect(destination.get_by_role("button", name="Remove")).to_have_count(0)  # FORWARD_URL's: in .env
        web.screenshot("event-forwarding")

        web.page.select_option("#language", "pt-BR")
        web.open(f"#/events/{event['event_id']}")
        expect(web.page.locator(".event-forwarding h3")).to_have_text("Encaminhamento para os seus apps",
                                                                      timeout=LIVE)
        expect(web.page.get_by_role("button", name="Reenviar para env")).to_be_visible()
    finally:
        app.close()
