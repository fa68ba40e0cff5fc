"""The chats page in a real browser: quotes, phone numbers and group names, dates, the instance filter,
failure reasons and ticks, in English and Brazilian Portuguese, on a desktop and on a phone.

Debian's Chromium driven by Playwright, the app served by waitress (tests/browser_support.py). This
module opens its own Chromium to have two kinds of screen: a desktop (1280 × 800) and a phone
(390 × 844, touch). Both are in São Paulo's time zone, and the tests that read dates fix the page's
clock (``page.clock.set_fixed_time``), so "Today" and "Yesterday" mean the same whenever they run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LIVE, Dashboard, dashboard, expect, sync_api  # noqa: F401
from tests.helpers import load_sample

pytestmark = pytest.mark.slow

ZONE = "America/Sao_Paulo"  # UTC-3 all year (no daylight saving since 2019)
LOCAL = timezone(timedelta(hours=-3))
NOW = datetime(2026, 6, 15, 15, 0, tzinfo=LOCAL)  # a Monday afternoon
ANA = "5511987654321@s.whatsapp.net"
GROUP = "120363025246125888@g.us"
UNNAMED_GROUP = "120363000000000777@g.us"
PHONE_VIEWPORT = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium():
    """A Chromium of this module's own, for a desktop context and a touch phone context."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def browser(chromium):
    """The desktop the ``dashboard`` fixture opens its pages in (it overrides browser_support's)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id=ZONE,
                                   service_workers="block")
    yield context
    context.close()


@pytest.fixture
def phone(make_app, chromium):
    """``dashboard`` on a phone: 390 × 844, a touch screen, Brazilian Portuguese."""
    made = []

    def start(**settings) -> Dashboard:
        context = chromium.new_context(viewport=PHONE_VIEWPORT, has_touch=True, is_mobile=True, device_scale_factor=2,
                                       locale="pt-BR", timezone_id=ZONE, service_workers="block")
        context.add_init_script("localStorage.setItem('zaphook.language', 'pt-BR')")
        item = Dashboard(make_app(**settings), context.new_page())
        made.append((item, context))
        return item

    yield start
    for item, context in made:
        errors, dialogs = item.errors, item.dialogs
        item.close()
        context.close()
        assert errors == [], errors
        assert dialogs == [], dialogs


# --- payloads: the real Evolution sample, with other ids, texts and times ---------------------------------

def evolution_message(message_id: str, text: str, *, chat: str = ANA, from_me: bool = False,
                      at: datetime = NOW - timedelta(hours=1), instance: str = "tigo1", push_name: str = "Ana",
                      participant: str | None = None, context: dict | None = None) -> dict:
    payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
    payload["instance"] = instance
    data = payload["data"]
    data["key"] = {"remoteJid": chat, "fromMe": from_me, "id": message_id}
    if participant:
        data["key"]["participant"] = participant
    if from_me:
        data.pop("pushName")
    else:
        data["pushName"] = push_name
    data["message"] = {"extendedTextMessage": {"text": text, "contextInfo": context}} if context else {"conversation": text}
    data["messageTimestamp"] = int(at.timestamp())
    return payload


def evolution_groups(groups: list) -> dict:
    payload = load_sample("evolution/v1_messages.upsert_text_incoming.json")
    payload["event"], payload["data"] = "groups.upsert", groups
    return payload


def chat_item(page, name: str):
    """The chat list's entry of the chat named ``name`` (its whole name, not part of a preview)."""
    return page.locator(".chat-item").filter(has=page.locator(".chat-name-text").get_by_text(name, exact=True))


def open_chat(web, name: str):
    chat_item(web.page, name).click(timeout=LIVE)
    expect(web.page.locator(".conversation-head h2")).to_have_text(name, timeout=LIVE)


def open_page(web, hash_path: str = "#/chats", clock: datetime | None = NOW) -> None:
    if clock is not None:
        web.page.clock.set_fixed_time(clock)
    web.open(hash_path)


# --- phone numbers: the formatting, table-driven ---------------------------------------------------------

PHONE_FORMATS = [
    ("5511987654321@s.whatsapp.net", "+55 11 98765-4321"),  # Brazil, a mobile
    ("5511987654321", "+55 11 98765-4321"),
    ("+55 (11) 98765-4321", "+55 11 98765-4321"),
    ("5511987654321:12@s.whatsapp.net", "+55 11 98765-4321"),  # a device's id
    ("5511987654321@c.us", "+55 11 98765-4321"),  # WAHA's form
    ("554499000016@s.whatsapp.net", "+55 44 9900-0016"),  # registered without the ninth digit
    ("551133334444", "+55 11 3333-4444"),  # a landline
    ("14155550123", "+1 415 555-0123"),
    ("447911123456", "+44 7911 123456"),
    ("351912345678", "+351 912 345 678"),
    ("5491123456789", "+54 9 11 2345-6789"),
    ("79161234567", "+7 916 123-45-67"),
    ("919876543210", "+91 98765 43210"),
    ("59171146267", "+591 7114 6267"),  # any other country: groups of three or four
    ("4915123456789", "+49 151 2345 6789"),
    ("972987654321", "+972 987 654 321"),
    ("5511", "+5511"),  # too short to be a whole number: as it is
    ("120363025246125888@g.us", None),  # a group, a LID, a channel, a BSUID: no phone number
    ("90000000000014@lid", None),
    ("120363144038483540@newsletter", None),
    ("bsuid:US.13491208655302741918", None),
    ("status@broadcast", None),
    ("", None),
]


def test_phone_numbers_are_formatted_as_people_write_them(dashboard):
    web = dashboard()
    open_page(web, "#/overview", clock=None)
    got = web.page.evaluate("""async (cases) => {
        const {formatPhone} = await import("/static/js/phone.js");
        return cases.map(([value]) => formatPhone(value));
    }""", PHONE_FORMATS)
    assert list(zip([value for value, _ in PHONE_FORMATS], got)) == PHONE_FORMATS


# --- quotes -----------------------------------------------------------------------------------------------

def test_a_quoted_reply_shows_the_quoted_message_and_goes_to_it(dashboard):
    web = dashboard()
    page = web.page
    start = NOW - timedelta(hours=3)
    web.webhook(evolution_message("3EB0ORIGINAL01", "Posso passar às 15h?", at=start))
    for number in range(30):  # enough to push the original out of view
        web.webhook(evolution_message(f"3EB0FILLER{number:04d}", f"mensagem {number}", from_me=number % 2 == 0,
                                      at=start + timedelta(minutes=number + 1)))
    web.webhook(evolution_message("3EB0REPLY00001", "Pode sim", from_me=True, at=start + timedelta(hours=1), context={
        "stanzaId": "3EB0ORIGINAL01", "participant": ANA, "quotedMessage": {"conversation": "Posso passar às 15h?"}}))
    # A quote of a message zaphook never stored: the payload's snippet; without one, a placeholder.
    web.webhook(evolution_message("3EB0REPLY00002", "Isso mesmo", at=start + timedelta(hours=1, minutes=1), context={
        "stanzaId": "3EB0NEVERSEEN1", "participant": ANA, "quotedMessage": {"conversation": "o pedido de ontem"}}))
    web.webhook(evolution_message("3EB0REPLY00003", "E isso?", at=start + timedelta(hours=1, minutes=2),
                                  context={"stanzaId": "3EB0NEVERSEEN2"}))
    open_page(web)
    open_chat(web, "Ana")

    reply = page.locator(".message[data-side=out]", has_text="Pode sim")
    quote = reply.locator(".quote")
    expect(quote).to_have_attribute("data-quoted", "stored", timeout=LIVE)
    expect(quote.locator(".quote-author")).to_have_text("Ana")
    expect(quote.locator(".quote-text")).to_have_text("Posso passar às 15h?")
    quote_box, text_box = quote.bounding_box(), reply.locator(".text").bounding_box()
    assert quote_box["y"] + quote_box["height"] <= text_box["y"]  # above the reply's own text

    original = page.locator(".message", has_text="Posso passar às 15h?").filter(has_not=page.locator(".quote"))
    expect(original).not_to_be_in_viewport()
    quote.click()
    expect(original).to_be_in_viewport(timeout=LIVE)
    expect(original.locator(".bubble")).to_be_focused()

    snippet = page.locator(".message", has_text="Isso mesmo").locator(".quote")
    expect(snippet).to_have_attribute("data-quoted", "missing")
    expect(snippet).to_have_text("o pedido de ontem")
    expect(page.locator(".message", has_text="E isso?").locator(".quote")).to_have_text("Quoted message not available")
    web.screenshot("chats-quote")


# --- chat headers -----------------------------------------------------------------------------------------

def test_headers_show_a_formatted_number_and_a_groups_name_never_a_jid(dashboard):
    web = dashboard()
    page = web.page
    web.webhook(evolution_message("3EB0OURS000001", "Olá, seu pedido saiu", from_me=True))  # no name: the number
    web.webhook(evolution_groups([{"id": GROUP, "subject": "Loja Centro", "size": 3}]))
    web.webhook(evolution_message("3EB0GROUP00001", "bom dia", chat=GROUP, participant="5521912345678@s.whatsapp.net",
                                  push_name="Bia"))
    web.webhook(evolution_message("3EB0GROUP00002", "oi", chat=UNNAMED_GROUP,
                                  participant="5521912345678@s.whatsapp.net", push_name="Bia"))
    open_page(web)

    open_chat(web, "+55 11 98765-4321")
    expect(page.locator(".conversation-details")).to_have_text("instance tigo1")

    open_chat(web, "Loja Centro")
    head = page.locator(".conversation-head")
    expect(head).to_contain_text("Group")
    expect(page.locator(".message.in .sender")).to_have_text("Bia")

    open_chat(web, "Group …0777")
    expect(page.locator(".message.in")).to_have_count(1, timeout=LIVE)
    for text in (GROUP, UNNAMED_GROUP, ANA, "5511987654321"):
        expect(page.locator(".chat-list-pane")).not_to_contain_text(text)
        expect(head).not_to_contain_text(text)
    web.screenshot("chats-group-names")

    web.webhook(evolution_message("3EB0ANA0000001", "Obrigada!", push_name="Ana Souza"))
    open_chat(web, "Ana Souza")  # a name once she wrote; the number stays in the header
    expect(page.locator(".conversation-details")).to_have_text("+55 11 98765-4321 · instance tigo1")


# --- dates ------------------------------------------------------------------------------------------------

def test_the_list_shows_the_year_of_an_old_chat_and_the_conversation_separates_days(dashboard):
    web = dashboard()
    page = web.page
    web.webhook(evolution_message("3EB0MARCH00001", "em março", at=datetime(2026, 3, 2, 9, 30, tzinfo=LOCAL)))
    web.webhook(evolution_message("3EB0YESTERDAY1", "ontem à noite", at=datetime(2026, 6, 14, 21, 0, tzinfo=LOCAL)))
    web.webhook(evolution_message("3EB0TODAY00001", "hoje cedo", at=datetime(2026, 6, 15, 8, 5, tzinfo=LOCAL)))
    web.webhook(evolution_message("3EB0TODAY00002", "hoje de tarde", from_me=True,
                                  at=datetime(2026, 6, 15, 14, 40, tzinfo=LOCAL)))
    web.webhook(evolution_message("3EB0OLD0000001", "faz tempo", chat="5531988887777@s.whatsapp.net", push_name="Caio",
                                  at=datetime(2023, 5, 10, 11, 0, tzinfo=LOCAL)))
    web.webhook(evolution_message("3EB0LASTWEEK01", "semana passada", chat="5531977776666@s.whatsapp.net",
                                  push_name="Duda", at=datetime(2026, 6, 10, 18, 0, tzinfo=LOCAL)))
    open_page(web)

    times = {name: chat_item(page, name).locator(".chat-time") for name in ("Ana", "Caio", "Duda")}
    expect(times["Ana"]).to_have_text("02:40 PM", timeout=LIVE)
    expect(times["Duda"]).to_have_text("06/10")
    expect(times["Caio"]).to_have_text("05/10/2023")  # not this year: with the year
    names = page.locator(".chat-list:not(.broadcast-list) .chat-name-text")
    expect(names).to_have_text(["Ana", "Duda", "Caio"])  # newest first

    open_chat(web, "Ana")
    rows = page.locator(".messages > li")
    expect(rows).to_have_count(7, timeout=LIVE)
    assert [row.get_attribute("class") for row in rows.all()] == \
        ["day-separator", "message in", "day-separator", "message in", "day-separator", "message in", "message out"]
    expect(page.locator(".day-separator")).to_have_text(["Monday, March 2", "Yesterday", "Today"])
    expect(page.locator(".message.out time")).to_have_text("02:40 PM")
    web.screenshot("chats-days")

    open_chat(web, "Caio")
    expect(page.locator(".day-separator")).to_have_text(["May 10, 2023"], timeout=LIVE)


# --- the instance filter ----------------------------------------------------------------------------------

def test_the_instance_filter_shows_one_instances_chats_and_is_remembered(dashboard):
    web = dashboard()
    page = web.page
    web.webhook(evolution_message("3EB0TIGO000001", "da loja 1", push_name="Ana"))
    web.webhook(evolution_message("3EB0LOJA000001", "da loja 2", instance="loja2", chat="5531988887777@s.whatsapp.net",
                                  push_name="Caio"))
    open_page(web)
    items = page.locator(".chat-list:not(.broadcast-list) .chat-item")
    expect(items).to_have_count(2, timeout=LIVE)
    select = page.get_by_label("Instance")
    expect(select.locator("option")).to_have_text(["All instances", "tigo1 · evolution", "loja2 · evolution"])

    select.select_option(label="loja2 · evolution")
    chosen = select.input_value()
    expect(items).to_have_count(1, timeout=LIVE)
    expect(items).to_contain_text("Caio")
    web.webhook(evolution_message("3EB0TIGO000002", "mais uma", push_name="Bia", chat="5521912345678@s.whatsapp.net"))
    web.webhook(evolution_message("3EB0LOJA000002", "outra", instance="loja2", chat="5521955554444@s.whatsapp.net",
                                  push_name="Duda"))
    expect(items).to_have_count(2, timeout=LIVE)  # live, and still only loja2's
    expect(page.locator(".chat-list-pane")).not_to_contain_text("Bia")

    page.reload()
    expect(page.get_by_label("Instance")).to_have_value(chosen, timeout=LIVE)
    expect(items).to_have_count(2, timeout=LIVE)
    page.get_by_label("Instance").select_option(label="All instances")
    expect(items).to_have_count(4, timeout=LIVE)


# --- a phone, in Portuguese: a failed message's reason on tap, ticks you can read -------------------------

def zapi_failed_send() -> list:
    """A message of ours (Z-API's real fromMe sample) and Z-API's real delivery error for it."""
    failure = load_sample("zapi/delivery_error.json")
    ours = load_sample("zapi/received_fromme_text_real.json")
    ours.update(messageId=failure["messageId"], instanceId=failure["instanceId"], phone="5511987654321",
                chatName=None, momment=int((NOW - timedelta(minutes=5)).timestamp() * 1000))
    ours["text"]["message"] = "Seu pedido saiu para entrega"
    return [ours, failure]


def test_on_a_phone_a_failed_messages_reason_shows_on_tap_and_ticks_are_readable(phone):
    web = phone()
    page = web.page
    for payload in zapi_failed_send():
        web.webhook(payload)
    web.webhook(evolution_message("3EB0OURS000002", "Chegou?", from_me=True, chat="5531988887777@s.whatsapp.net"))
    open_page(web)
    expect(page.get_by_role("heading", name="Conversas")).to_be_visible(timeout=LIVE)
    expect(page.get_by_label("Instância").locator("option").first).to_have_text("Todas as instâncias")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_VIEWPORT["width"]

    chat_item(page, "+55 11 98765-4321").tap()
    mark = page.locator(".message.out .ticks")
    expect(mark).to_have_attribute("data-status", "failed", timeout=LIVE)
    expect(page.locator(".conversation-head .back")).to_be_visible()  # the list gave way to the conversation
    expect(page.locator(".day-separator")).to_have_text(["Hoje"])
    reason = page.locator(".failed-reason")
    expect(reason).to_have_count(0)
    expect(mark).to_have_attribute("aria-expanded", "false")
    conversation = page.locator(".conversation").bounding_box()
    assert conversation["y"] + conversation["height"] <= PHONE_VIEWPORT["height"]  # no page scroll to reach it
    mark.tap()
    expect(reason).to_have_text("falhou: Phone number does not exist")
    expect(reason).to_be_in_viewport()
    expect(mark).to_have_attribute("aria-expanded", "true")
    expect(mark).to_have_attribute("aria-label", "falhou: Phone number does not exist. Ocultar o motivo")
    box = mark.bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24, box  # a target a thumb can hit
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_VIEWPORT["width"]
    web.screenshot("chats-failed-reason-phone")
    mark.tap()
    expect(reason).to_have_count(0)

    page.locator(".conversation-head .back").tap()
    chat_item(page, "+55 31 98888-7777").tap()
    ticks = page.locator(".message.out .ticks")
    expect(ticks).to_have_attribute("data-status", "sent", timeout=LIVE)
    expect(ticks).to_have_attribute("role", "img")
    expect(ticks).to_have_attribute("aria-label", "enviada")
    assert float(ticks.evaluate("element => getComputedStyle(element).fontSize").removesuffix("px")) >= 16
    assert ticks.bounding_box()["height"] >= 16


def test_the_chats_page_speaks_portuguese(phone):
    web = phone()
    page = web.page
    web.webhook(evolution_message("3EB0ONTEM00001", "ontem", at=NOW - timedelta(days=1)))
    web.webhook(evolution_message("3EB0HOJE000001", "hoje", at=NOW - timedelta(hours=1),
                                  context={"stanzaId": "3EB0NEVERSEEN3"}))
    web.webhook(evolution_message("3EB0GRUPO00001", "oi", chat=UNNAMED_GROUP, participant=ANA, push_name="Ana",
                                  at=datetime(2025, 12, 24, 10, 0, tzinfo=LOCAL)))
    open_page(web)
    expect(chat_item(page, "Grupo …0777").locator(".chat-time")).to_have_text("24/12/2025",
                                                                                                  timeout=LIVE)
    expect(chat_item(page, "Ana")).to_contain_text("hoje")
    web.screenshot("chats-list-pt-BR-phone")
    chat_item(page, "Ana").tap()
    expect(page.locator(".day-separator")).to_have_text(["Ontem", "Hoje"], timeout=LIVE)
    expect(page.locator(".quote")).to_have_text("Mensagem citada indisponível")
    expect(page.locator(".conversation-details")).to_have_text("+55 11 98765-4321 · instância tigo1")
    expect(page.locator(".conversation-head .back")).to_have_text("← Conversas")
    page.locator(".conversation-head .back").tap()
    chat_item(page, "Grupo …0777").tap()
    expect(page.locator(".conversation-details")).to_have_text("Grupo · instância tigo1", timeout=LIVE)
    expect(page.locator(".day-separator")).to_have_text(["24 de dezembro de 2025"])
    web.screenshot("chats-pt-BR-phone")
