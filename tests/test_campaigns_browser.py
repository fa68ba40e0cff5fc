"""The campaigns page in a real browser, as a shop owner in Brazil uses it: an Excel list, {nome}, a phone.

Debian's Chromium driven by Playwright (tests/browser_support.py), the real app
served by waitress, a fake Evolution API on 127.0.0.1 that refuses one number
the way Evolution does. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import pytest

from tests.browser_support import LIVE, browser, dashboard, expect  # noqa: F401 (browser, dashboard: fixtures)
from tests.fakes import json_reply
from tests.test_campaigns import EXTERNAL, Providers, incoming_payload

pytestmark = pytest.mark.slow

JOSE, CONCEICAO, JOAO = "5511987654321", "5521988880002", "5531977770003"
# What Excel in Brazil writes for "CSV (separado por vírgulas)": Windows-1252, ";", CRLF, a header in Portuguese.
EXCEL_BR = ("telefone;nome;cidade\r\n"
            "(11) 98765-4321;José;São Paulo\r\n"
            "+55 21 98888-0002;Conceição;Niterói\r\n"
            "5531977770003;João;\r\n"
            "abc;Ninguém;Recife\r\n").encode("cp1252")
TEXT = "Olá {nome}, a promoção chegou em {cidade}!"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def evolution():
    """Evolution's sendText: Conceição's number is not on WhatsApp (its real 400 answer), the others go out."""
    fake = Providers()

    def answer(request):
        number = request.json()["number"]
        if number == CONCEICAO:
            return json_reply({"status": 400, "error": "Bad Request", "response": {"message": [
                {"jid": f"{number}@s.whatsapp.net", "exists": False, "number": number}]}}, 400)
        fake.failing.pop("evolution")
        try:
            return fake.answer("evolution", request)
        finally:
            fake.failing["evolution"] = answer

    fake.failing["evolution"] = answer
    yield fake
    fake.server.close()


def shop(dashboard, evolution):
    web = dashboard(CAMPAIGN_SENDER=True, CAMPAIGN_RATE_PER_MIN=600.0, CAMPAIGN_SEND_TIMEOUT=5.0,
                    EVOLUTION_BASE_URL=evolution.server.url, EVOLUTION_API_KEY="provider-secret-token-123456")
    created = web.client.post("/api/instances", json={"provider": "evolution", "instance_id": EXTERNAL["evolution"],
                                                      "name": "Loja"})
    assert created.status_code == 201, created.get_json()
    return web


def reachable_on_a_phone(page, cell) -> None:
    """The cell is on screen after scrolling to it, and nothing needs a sideways scroll."""
    cell.scroll_into_view_if_needed()
    expect(cell).to_be_visible()
    box = cell.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_an_excel_br_list_with_nome_is_previewed_sent_and_its_refusal_read_in_portuguese(dashboard, evolution):
    web = shop(dashboard, evolution)
    page = web.page
    web.open("#/campaigns")
    page.select_option("#language", "pt-BR")
    expect(page.get_by_role("heading", name="Campanhas")).to_be_visible(timeout=LIVE)

    page.fill("#campaign-name", "Promoção de inverno")
    page.fill("#campaign-text", TEXT)
    page.set_input_files("#campaign-file", {"name": "clientes.csv", "mimeType": "text/csv", "buffer": EXCEL_BR})
    report = page.locator(".campaign-report")
    expect(report.locator(".valid-count")).to_have_text("3 contatos válidos.", timeout=LIVE)
    expect(report.locator(".list-read")).to_contain_text("Windows-1252 (Excel), colunas separadas por ponto e vírgula")
    expect(report.locator(".list-read")).to_contain_text("Colunas: telefone, nome, cidade.")
    expect(report.locator(".invalid-rows li")).to_have_text("Linha 5: abc — não é um telefone (letras ou símbolos)")
    expect(report.locator(".warning")).to_have_text(
        "1 dos 3 contatos não tem valor para {cidade}: ele fica de fora dessa mensagem.")
    previews = page.locator(".preview-item")
    expect(previews).to_have_count(3)
    expect(previews.nth(0).locator(".preview-to")).to_have_text("Para José · +55 11 98765-4321")
    expect(previews.nth(0).locator(".preview-text")).to_have_text("Olá José, a promoção chegou em São Paulo!")
    expect(previews.nth(1).locator(".preview-text")).to_have_text("Olá Conceição, a promoção chegou em Niterói!")
    expect(page.locator(".field-chips .chip")).to_have_text(["{telefone}", "{nome}", "{cidade}"])
    web.screenshot("campaigns-excel-br-pt-BR")

    # A typo is a warning the preview shows as written, not a crash.
    page.fill("#campaign-text", "Olá {nme}!")
    expect(report.locator(".warning")).to_contain_text("Nenhum contato tem valor para {nme}", timeout=LIVE)
    expect(previews.nth(0).locator(".preview-text")).to_have_text("Olá {nme}!")
    page.fill("#campaign-text", TEXT)
    expect(previews.nth(0).locator(".preview-text")).to_have_text("Olá José, a promoção chegou em São Paulo!",
                                                                  timeout=LIVE)

    page.get_by_role("button", name="Criar campanha").click()
    expect(page.locator("#campaign-state")).to_have_text("rascunho", timeout=LIVE)
    page.locator(".campaign-actions [data-action=start]").click()
    expect(page.locator("[data-count=failed_count]")).to_have_text("1", timeout=LIVE)
    expect(page.locator("#campaign-state")).to_have_text("concluído", timeout=LIVE)
    sent = {hit.json()["number"]: hit.json()["text"] for hit in evolution.hits("evolution")}
    assert sent == {JOSE: "Olá José, a promoção chegou em São Paulo!",
                    CONCEICAO: "Olá Conceição, a promoção chegou em Niterói!",
                    JOAO: "Olá João, a promoção chegou em!"}

    refused = page.locator("tr[data-contact-state=failed] td.contact-error")
    expect(refused).to_have_text("Este número não está no WhatsApp.")
    failed_line = page.locator(".campaign-log li[data-action=failed]")
    expect(failed_line.locator(".log-contact")).to_have_text("Conceição (+55 21 98888-0002)")
    expect(failed_line.locator(".log-detail")).to_have_text("Este número não está no WhatsApp.")
    created = page.locator(".campaign-log li[data-action=created]")
    expect(created.locator("strong")).to_have_text("criada com 3 contatos")
    expect(created.locator(".log-detail")).to_have_text("de fora: duplicados 0, linhas inválidas 1")
    for text in (page.locator(".contacts-table").inner_text(), page.locator(".campaign-log").inner_text()):
        assert "{" not in text and "exists" not in text and "HTTP" not in text, text

    # José answers: the reply column fills in.
    route, body = incoming_payload("evolution", JOSE, "Quero duas, obrigado!", "IN-JOSE-1")
    web.webhook(body, route)
    reply = page.locator("tr", has_text="José").locator("td.contact-reply")
    expect(reply).to_have_text("Quero duas, obrigado!", timeout=LIVE)
    # On a desktop the six columns fit: nothing hides behind a sideways scroll.
    wrap = page.locator(".contacts-card .table-wrap")
    assert wrap.evaluate("wrap => wrap.scrollWidth <= wrap.clientWidth"), "the contacts table scrolls sideways"
    web.screenshot("campaign-refusal-pt-BR")

    # On a phone the contacts are cards: the error and the reply are on screen, labelled, no sideways scroll.
    page.set_viewport_size(PHONE)
    page.reload()
    expect(refused).to_have_text("Este número não está no WhatsApp.", timeout=LIVE)
    reachable_on_a_phone(page, refused)
    reachable_on_a_phone(page, reply)
    label = refused.evaluate("cell => getComputedStyle(cell, '::before').content")
    assert label == '"Erro"', label
    web.screenshot("campaign-refusal-phone-pt-BR")

    # The same refusal in English.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.select_option("#language", "en")
    expect(refused).to_have_text("This number is not on WhatsApp.", timeout=LIVE)
    expect(failed_line.locator(".log-detail")).to_have_text("This number is not on WhatsApp.")
    expect(page.locator(".campaign-log li[data-action=failed] strong")).to_have_text("failed")


def test_the_form_says_what_is_wrong_with_a_workbook_in_the_pages_language(dashboard, evolution):
    web = shop(dashboard, evolution)
    page = web.page
    web.open("#/campaigns")
    page.fill("#campaign-name", "Workbook")
    page.fill("#campaign-text", "Oi {nome}")
    page.set_input_files("#campaign-file", {"name": "clientes.xlsx", "mimeType": "application/octet-stream",
                                            "buffer": b"PK\x03\x04" + bytes(64)})
    problems = page.locator(".campaign-report .problems li")
    expect(problems.filter(has_text="Excel workbook (.xlsx)")).to_have_count(1, timeout=LIVE)
    page.select_option("#language", "pt-BR")
    page.fill("#campaign-name", "Pasta")
    page.fill("#campaign-text", "Oi {nome}")
    page.set_input_files("#campaign-file", {"name": "clientes.xlsx", "mimeType": "application/octet-stream",
                                            "buffer": b"PK\x03\x04" + bytes(64)})
    expect(problems.filter(has_text="pasta de trabalho do Excel (.xlsx)")).to_have_count(1, timeout=LIVE)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    web.screenshot("campaigns-xlsx-phone-pt-BR")
