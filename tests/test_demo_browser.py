"""The demo in a real browser: `server.py demo` against the served app, seen on the overview, removed by its button.

Debian's Chromium driven by Playwright (see tests/browser_support.py); on a desktop and on a 390 x 844
phone, in English and in Brazilian Portuguese.
"""

from __future__ import annotations

import re

import pytest

import server
from config import SECRET_SETTINGS
from tests.browser_support import LIVE, browser, dashboard, expect  # noqa: F401 (browser, dashboard: fixtures)

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
TEXTS = {
    "en": {"clear": "Remove demo data", "yes": "Yes, remove", "keep": "Keep", "badge": "demo",
           "confirm": "Remove the demo instances and everything they received?", "removed": "Demo data removed."},
    "pt-BR": {"clear": "Remover dados de demonstração", "yes": "Sim, remover", "keep": "Manter",
              "badge": "demonstração", "confirm": "Remover as instâncias de demonstração e tudo o que elas receberam?",
              "removed": "Dados de demonstração removidos."},
}


@pytest.fixture
def run_demo(tmp_path, monkeypatch, capsys):
    """``python server.py demo --url <served app>``, from a clean environment."""
    monkeypatch.chdir(tmp_path)
    for name in (*SECRET_SETTINGS, "DATABASE_URL", "PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUNNEL", "off")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "cli"))

    def run(url: str) -> str:
        code = server.main(["demo", "--url", url])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    return run


@pytest.mark.parametrize("language, viewport", [("en", None), ("en", PHONE), ("pt-BR", PHONE), ("pt-BR", None)])
def test_the_demo_shows_on_the_overview_and_one_confirmed_button_removes_it(dashboard, run_demo, language, viewport):
    texts = TEXTS[language]
    web = dashboard()
    page = web.page
    if viewport:
        page.set_viewport_size(viewport)
    web.open()
    if language != "en":
        page.select_option("#language", language)
        expect(page.locator("nav a[data-page=overview]")).to_have_text("Visão geral", timeout=LIVE)
    clear = page.locator("#demo-clear")
    expect(clear).to_be_hidden()

    run_demo(web.url)
    rows = page.locator("tr[data-instance]")
    expect(rows).to_have_count(7, timeout=LIVE)
    expect(rows.first.locator(".demo-badge")).to_have_text(texts["badge"])
    expect(clear).to_have_text(texts["clear"])
    messages_today = rows.locator("td:nth-child(5)").all_inner_texts()
    assert any(text.strip() not in ("0 / 0", "") for text in messages_today), messages_today  # timed today
    if viewport:
        box = clear.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    web.screenshot(f"demo-{language}-{'phone' if viewport else 'desktop'}")

    clear.click()  # asks first; "keep" changes nothing
    expect(page.get_by_text(texts["confirm"])).to_be_visible()
    page.locator("#demo-clear-keep").click()
    expect(clear).to_be_visible()
    assert rows.count() == 7

    clear.click()
    yes = page.locator("#demo-clear-yes")
    expect(yes).to_have_text(texts["yes"])
    expect(page.locator("#demo-clear-keep")).to_have_text(texts["keep"])
    yes.click()
    expect(page.locator(".demo-result")).to_have_text(texts["removed"], timeout=LIVE)
    expect(rows).to_have_count(0, timeout=LIVE)
    expect(clear).to_be_hidden()
    assert web.client.get("/api/instances").get_json()["items"] == []
    web.screenshot(f"demo-removed-{language}-{'phone' if viewport else 'desktop'}")


def test_the_campaign_form_does_not_offer_demo_instances(dashboard, run_demo):
    web = dashboard()
    web.client.post("/api/instances", json={"provider": "evolution", "instance_id": "shop", "name": "Shop"})
    run_demo(web.url)
    web.open("#/campaigns")
    options = web.page.locator("#campaign-instance option")
    expect(options.first).to_have_text("evolution · Shop", timeout=LIVE)
    assert options.all_inner_texts() == ["evolution · Shop"]


def test_qa_stays_free_of_failures_with_the_demo_and_after_its_removal(dashboard, run_demo, monkeypatch):
    web = dashboard(WEBHOOK_TOKEN="a-good-long-webhook-token")  # a token, so "webhook token" passes too
    monkeypatch.setenv("WEBHOOK_TOKEN", "a-good-long-webhook-token")  # the demo command posts with it
    run_demo(web.url)
    answer = web.client.get("/test").get_json()
    demo_checks = [check for check in answer["checks"] if check.get("demo")]
    assert len(demo_checks) == 7 and {check["level"] for check in demo_checks} <= {"ok", "warning"}
    assert answer["failures"] == 0, [check for check in answer["checks"] if check["level"] == "failure"]

    web.open("#/qa")
    page = web.page
    expect(page.locator(".qa-summary")).to_have_attribute("data-level", re.compile("ok|warning"), timeout=LIVE)
    assert page.locator(".checklist li[data-level=failure]").count() == 0
    expect(page.locator(".checklist li", has_text="demo-evolution")).to_be_visible()

    web.open()
    page.locator("#demo-clear").click()
    page.locator("#demo-clear-yes").click()
    expect(page.locator("tr[data-instance]")).to_have_count(0, timeout=LIVE)
    assert web.client.get("/test").get_json()["failures"] == 0
    web.open("#/qa")
    expect(page.locator(".qa-summary")).to_have_attribute("data-level", "ok", timeout=LIVE)
    expect(page.locator(".checklist li", has_text="demo-")).to_have_count(0)
