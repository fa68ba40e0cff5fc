"""The QA page, the empty overview and empty lists in a real browser, in English and Brazilian Portuguese,
on a desktop and on a phone (390 × 844): every text the server sends arrives as a code the page translates.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

import models
from tests.browser_support import LIVE, browser, dashboard, expect  # noqa: F401 (browser, dashboard: fixtures)
from tests.fakes import FakeServer
from tests.media_support import made_vector, wait_for_media, wapi_payload

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EN = json.loads((ROOT / "static" / "i18n" / "en.json").read_text(encoding="utf-8"))
PT = json.loads((ROOT / "static" / "i18n" / "pt-BR.json").read_text(encoding="utf-8"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# The areas whose texts the server produces (codes.py) and the empty pages say.
SERVER_AREAS = ("qa.", "empty.", "error.", "media_error.", "url_label.", "state.")


def english_fragments() -> list[str]:
    """The English of the server's texts, cut at their {placeholders}, less what Portuguese says alike.

    Technical names (WEBHOOK_TOKEN, mediaKey, MEDIA_DIR) read the same in both languages and are left out.
    """
    portuguese = " ".join(PT.values())
    fragments = set()
    for key, text in EN.items():
        if not key.startswith(SERVER_AREAS):
            continue
        for piece in re.split(r"\{\w+\}", text):
            piece = piece.strip(" .,:;()…'\"!?=")
            words = re.findall(r"[A-Za-z]+", piece)
            if not any(len(word) >= 4 and word.islower() for word in words):
                continue
            if piece and piece not in portuguese and piece.lower() not in portuguese.lower():
                fragments.add(piece)
    return sorted(fragments, key=len, reverse=True)


def english_left(text: str) -> list[str]:
    return [fragment for fragment in english_fragments() if re.search(rf"(?<![A-Za-z_]){re.escape(fragment)}(?![A-Za-z_])",
                                                                      text)]


def open_page(web, hash_path: str, language: str, viewport: dict) -> None:
    page = web.page
    page.set_viewport_size(viewport)
    web.open(hash_path)
    if language != "en":
        page.select_option("#language", language)
        expect(page.locator("html")).to_have_attribute("lang", language, timeout=LIVE)


def fits(page, viewport: dict) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page is {width} px wide on a {viewport['width']} px screen"


def add_instance(client: str, external_id: str, connection: str, quiet: timedelta | None, provider="evolution"):
    with models.db.connection_context():
        models.Instance.create(client=models.Client.named(client), provider=provider, external_id=external_id,
                               connection_state=connection,
                               last_event_at=models.utcnow() - quiet if quiet is not None else None)


def qa_app(dashboard):
    """An app whose self-check has every level: demo data, quiet and silent numbers, bad settings."""
    web = dashboard(WEBHOOK_TOKEN="short", META_APP_SECRET="a-meta-app-secret")
    add_instance(models.DEMO_CLIENT, "demo-evo", "connected", timedelta(days=543))
    add_instance(models.DEFAULT_CLIENT, "loja-centro", "connected", timedelta(minutes=12))
    add_instance(models.DEFAULT_CLIENT, "loja-praia", "disconnected", timedelta(days=3))
    add_instance(models.DEFAULT_CLIENT, "loja-sul", "unknown", timedelta(days=40))
    add_instance(models.DEFAULT_CLIENT, "loja-norte", "connected", timedelta(hours=30))
    add_instance(models.DEFAULT_CLIENT, "loja-nova", "unknown", None, provider="wapi")
    return web


# --- the QA page ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_portuguese_qa_page_has_no_english_left(dashboard, viewport):
    web = qa_app(dashboard)
    open_page(web, "#/qa", "pt-BR", viewport)
    page = web.page
    expect(page.get_by_role("heading", name="Autoverificação (QA)")).to_be_visible(timeout=LIVE)
    items = page.locator(".checklist li")
    expect(items).to_have_count(len(web.client.get("/test").get_json()["checks"]), timeout=LIVE)
    expect(page.locator(".qa-summary")).to_have_text("3 verificações falham.")
    text = page.locator("#main").inner_text()
    assert english_left(text) == [], text
    assert "min ago" not in text and " ago" not in text
    # failures first, then warnings; times as people say them; demo data never fails
    assert items.first.get_attribute("data-level") == "failure"
    demo = page.locator(".checklist li", has_text="instância evolution/demo-evo")
    expect(demo).to_have_attribute("data-level", "ok")
    expect(demo).to_contain_text("dados de demonstração (último evento há 1 ano)")
    expect(page.locator(".checklist li", has_text="loja-centro")).to_contain_text(re.compile(r"há 1[23] minutos, conectada"))  # a slow machine may pass the minute
    expect(page.locator(".checklist li", has_text="loja-praia")).to_contain_text("desconectada: último evento há 3 dias")
    silent = page.locator(".checklist li", has_text="loja-norte")
    expect(silent).to_have_attribute("data-level", "failure")
    expect(silent).to_contain_text("conectada, mas em silêncio: último evento há 1 dia, há mais de 24 horas")
    expect(page.locator(".checklist li", has_text="configurações de meta")).to_contain_text("META_VERIFY_TOKEN não")
    expect(page.locator(".checklist li[data-level=warning] .check-mark").first).to_have_attribute("aria-label", "aviso")
    fits(page, viewport)
    web.screenshot(f"qa-pt-BR-{viewport['width']}")


def test_the_english_qa_page_warns_about_quiet_numbers_without_failing(dashboard):
    web = dashboard(WEBHOOK_TOKEN="a-good-long-webhook-token")
    add_instance(models.DEMO_CLIENT, "demo-evo", "connected", timedelta(days=543))
    add_instance(models.DEFAULT_CLIENT, "shop-quiet", "unknown", timedelta(days=2, hours=1))
    open_page(web, "#/qa", "en", DESKTOP)
    page = web.page
    expect(page.locator(".qa-summary")).to_have_text("No check fails; 1 warning to look at.", timeout=LIVE)
    expect(page.locator(".qa-summary")).to_have_attribute("data-level", "warning")
    quiet = page.locator(".checklist li", has_text="instance evolution/shop-quiet")
    expect(quiet).to_have_attribute("data-level", "warning")
    expect(quiet).to_contain_text("quiet: last event 2 days ago, unknown")
    expect(page.locator(".checklist li", has_text="demo-evo")).to_contain_text("last event 1 year ago")
    assert page.locator(".checklist li[data-level=failure]").count() == 0


# --- the first screen ---------------------------------------------------------------------------------

@pytest.mark.parametrize("language, title, simulate_hint", [
    ("en", "No WhatsApp number has reached zaphook yet.", "To see it work without a phone"),
    ("pt-BR", "Nenhum número de WhatsApp chegou ao zaphook ainda.", "Para ver funcionando sem celular"),
])
def test_an_empty_overview_on_a_phone_says_how_to_point_a_provider_at_zaphook(dashboard, language, title,
                                                                               simulate_hint):
    web = dashboard()
    open_page(web, "#/overview", language, PHONE)
    page = web.page
    guide = page.locator(".empty-guide")
    expect(guide).to_have_attribute("data-guide", "local", timeout=LIVE)
    expect(guide).to_contain_text(title)
    expect(guide).to_contain_text(simulate_hint)
    expect(guide.locator("code")).to_have_text("python server.py demo")
    expect(guide).to_contain_text("NGROK_AUTHTOKEN")
    if language == "pt-BR":
        expect(page.locator(".url-row").first).to_contain_text("qualquer provedor: todos os eventos")
        expect(page.locator(".url-row", has_text="W-API").first).to_contain_text("W-API · recebidas")
        expect(page.locator(".tunnel")).to_contain_text("sem túnel: TUNNEL=off")
        assert english_left(page.locator("#main").inner_text()) == []
    guide.scroll_into_view_if_needed()
    box = guide.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    fits(page, PHONE)
    web.screenshot(f"overview-empty-{language}-phone")


def test_with_a_public_url_the_empty_overview_points_at_it_instead_of_simulate(dashboard):
    web = dashboard()
    tunnel = web.app.extensions["zaphook.tunnel"]
    tunnel.state, tunnel.public_url = "open", "https://zaphook-demo.ngrok.app"  # as an opened tunnel reports itself
    open_page(web, "#/overview", "pt-BR", PHONE)
    guide = web.page.locator(".empty-guide")
    expect(guide).to_have_attribute("data-guide", "public", timeout=LIVE)
    expect(guide).to_contain_text("As URLs chegam ao zaphook em https://zaphook-demo.ngrok.app.")
    expect(guide.locator("code")).to_have_count(0)
    expect(web.page.locator(".url-row code").first).to_have_text("https://zaphook-demo.ngrok.app/webhook/")


@pytest.mark.parametrize("hash_path, sentence", [
    ("#/chats", "Nenhuma conversa ainda: as conversas aparecem quando um provedor entrega uma mensagem ao zaphook"),
    ("#/events", "Nenhum webhook recebido ainda"),
    ("#/media", "Nenhuma mídia ainda"),
    ("#/campaigns", "Nenhuma campanha ainda"),
])
def test_an_empty_list_on_a_phone_says_why_it_is_empty(dashboard, hash_path, sentence):
    web = dashboard()
    open_page(web, hash_path, "pt-BR", PHONE)
    expect(web.page.locator("#main")).to_contain_text(sentence, timeout=LIVE)
    fits(web.page, PHONE)


def test_a_filter_that_hides_everything_says_so_instead(dashboard):
    web = dashboard()
    open_page(web, "#/media", "en", DESKTOP)
    page = web.page
    expect(page.locator("#main")).to_contain_text(EN["empty.media"], timeout=LIVE)
    page.select_option("#media-state", "failed")
    expect(page.locator("#main")).to_contain_text(EN["media.none"], timeout=LIVE)


# --- media errors ----------------------------------------------------------------------------------------

@pytest.fixture
def cdn():
    server = FakeServer()
    yield server
    server.close()


def test_a_media_error_is_said_in_the_page_language_with_the_english_on_hover(dashboard, cdn):
    web = dashboard(MEDIA_WORKERS=1, WA_MEDIA_BASE_URL=cdn.url, MEDIA_MAX_ATTEMPTS=1,
                    MEDIA_CONNECT_TIMEOUT=2.0, MEDIA_READ_TIMEOUT=2.0)
    gone, _encrypted, _plaintext = made_vector(2048, "image")
    answer = web.webhook(wapi_payload(gone, "GONE1", "/v/gone.enc"))  # the fake CDN answers 404
    with models.db.connection_context():
        media_id = models.MediaFile.get(models.MediaFile.message == models.Message.get(
            models.Message.provider_message_id == "GONE1").id).id
    row = wait_for_media(web.client, media_id)
    assert (row["state"], row["error_code"], row["error_params"]) == ("expired", "media_error.cdn_expired",
                                                                       {"status": 404}), (answer, row)
    open_page(web, "#/media", "pt-BR", PHONE)
    error = web.page.locator(".media-card .error")
    expect(error).to_have_text("a CDN respondeu 404: a mídia expirou; peça ao remetente que a envie de novo",
                               timeout=LIVE)
    expect(error).to_have_attribute("title", row["error"])
    fits(web.page, PHONE)


# --- API errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("language, said", [("en", "no event 999999"), ("pt-BR", "não existe o evento 999999")])
def test_an_api_error_reaches_the_page_in_its_language(dashboard, language, said):
    web = dashboard()
    open_page(web, "#/events", language, DESKTOP)
    error = web.page.evaluate("""async () => {
      const api = await import("/static/js/api.js");
      try { await api.get("/api/events/999999"); } catch (error) { return [error.status, error.message, error.body]; }
    }""")
    # the browser logs the 404 it was asked to make: that one is expected, any other error is not
    assert web.errors == ["Failed to load resource: the server responded with a status of 404 (NOT FOUND)"]
    web.errors.clear()
    assert error[:2] == [404, said]
    assert error[2] == {"error": "no event 999999", "detail": None, "code": "error.no_event", "params": {"id": 999999}}
