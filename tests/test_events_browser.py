"""The events page in a real browser (Debian's Chromium, Playwright), on a desktop and on a phone.

The list and one event's detail stay in view together however long the list is; rows say what
each request was; pages go past a hundred; the answer zaphook gave is shown with the request;
replay with changes makes a new event; the keyboard moves through the list; the commands copied
work; and the Portuguese page has no English left.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest

from models import WebhookEvent
from tests.browser_support import (LIVE, SCREENSHOTS, browser, dashboard,  # noqa: F401 (browser, dashboard: fixtures)
                                   expect)
from tests.helpers import load_sample, wait_until

pytestmark = pytest.mark.slow

EVOLUTION_IN = "evolution/v1_messages.upsert_text_incoming.json"
EVOLUTION_OUT = "evolution/v1_messages.upsert_text_outgoing_fromMe.json"
PHONE = {"width": 390, "height": 844}
CATALOGUES = Path(__file__).resolve().parents[1] / "static" / "i18n"


def evolution_text(message_id: str, text: str) -> dict:
    payload = copy.deepcopy(load_sample(EVOLUTION_IN))
    payload["data"]["key"]["id"] = message_id
    payload["data"]["message"] = {"conversation": text}
    return payload


def post_many(web, count: int) -> list[int]:
    return [web.webhook(evolution_text(f"LONG-{n}", f"message number {n}"))["event_id"] for n in range(count)]


def rows(page):
    return page.locator(".events-table tbody tr[data-event-id]")


def row(page, event_id: int):
    return page.locator(f".events-table tbody tr[data-event-id='{event_id}']")


def detail_heading(page):
    return page.locator(".event-detail h2")


def screen(web, name: str) -> None:
    """A screenshot of what is on the screen (a full page of a long list shows nothing of the point)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    web.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def in_viewport(page, locator, whole: bool = True) -> dict:
    """The element's box, checked to lie in the viewport below the sticky header (whole, or its top)."""
    box = locator.bounding_box()
    viewport = page.viewport_size
    header = page.locator(".topbar").bounding_box()
    assert box is not None, "not displayed"
    assert box["y"] >= header["y"] + header["height"] - 1, f"{box} hides under the header {header}"
    assert box["y"] < viewport["height"], f"{box} starts below the screen ({viewport})"
    if whole:
        assert box["y"] + box["height"] <= viewport["height"] + 1, f"{box} goes past the screen ({viewport})"
    return box


# --- a long list, on a desktop ------------------------------------------------------------------------

def test_on_a_long_list_the_detail_opens_beside_the_row_in_view(dashboard):
    web = dashboard()
    page = web.page
    made = post_many(web, 130)
    web.open("#/events")
    expect(rows(page)).to_have_count(100)
    expect(rows(page).first).to_contain_text("message number 129")
    expect(rows(page).first.locator(".kind")).to_have_text("message in")
    expect(rows(page).first.locator(".what-sub")).to_contain_text("Evolution")
    expect(rows(page).first.locator(".what-sub")).to_contain_text("percy alvarez E1")

    last = row(page, made[30])  # the 100th row, at the bottom of a list some 5,000 px long
    last.scroll_into_view_if_needed()
    page.mouse.wheel(0, 600)
    assert page.evaluate("window.scrollY") > 2000
    last.click()
    expect(detail_heading(page)).to_have_text(f"Event {made[30]}", timeout=LIVE)
    expect(page.locator(".event-detail .what-detail")).to_have_text("message number 30")
    detail = in_viewport(page, page.locator(".event-detail"))
    in_viewport(page, detail_heading(page))
    clicked = in_viewport(page, last)
    assert detail["x"] > clicked["x"] + clicked["width"] - 1  # beside the list, not above or below it
    expect(last).to_have_attribute("aria-current", "true")
    screen(web, "events-long-list")

    page.get_by_role("button", name="Older").click()
    expect(rows(page)).to_have_count(30, timeout=LIVE)
    expect(rows(page).first).to_contain_text("message number 29")
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.locator(".event-detail").evaluate("pane => pane.scrollTop = pane.scrollHeight")  # read to its end
    row(page, made[0]).click()
    expect(detail_heading(page)).to_have_text(f"Event {made[0]}", timeout=LIVE)
    in_viewport(page, page.locator(".event-detail"))
    in_viewport(page, detail_heading(page))  # the next one is read from its top
    page.get_by_role("button", name="Newer").click()
    expect(rows(page)).to_have_count(100, timeout=LIVE)
    expect(rows(page).first).to_contain_text("message number 129")

    web.webhook(evolution_text("LONG-NEW", "the newest one"))  # the newest page follows new events
    expect(rows(page).first).to_contain_text("the newest one", timeout=LIVE)
    expect(rows(page)).to_have_count(100)


def test_the_answer_given_is_shown_with_the_request_and_json_folds(dashboard):
    web = dashboard()
    page = web.page
    answer = web.webhook(load_sample(EVOLUTION_IN))
    web.open(f"#/events/{answer['event_id']}")
    detail = page.locator(".event-detail")
    expect(detail.locator(".response-line")).to_contain_text("HTTP 200", timeout=LIVE)
    trees = detail.locator(".json-tree")
    expect(trees).to_have_count(2)  # the request's body, then the answer
    expect(trees.nth(1)).to_contain_text('"outcome": "processed"')
    expect(trees.nth(1)).to_contain_text(f'"event_id": {answer["event_id"]}')
    body = trees.nth(0)
    expect(body.locator(".j-key", has_text='"apikey"').locator("xpath=following-sibling::span[2]")).to_have_text(
        '"[redacted]"')
    expect(body.locator(".j-str", has_text='"hola - text"')).to_be_visible()
    assert body.locator(".j-str").first.evaluate("e => getComputedStyle(e).color") != \
        body.locator(".j-key").first.evaluate("e => getComputedStyle(e).color")  # highlighted
    data = body.locator(".j-node").nth(1)  # "data": {...}
    fold = data.locator("> .j-toggle")
    expect(fold).to_have_attribute("aria-expanded", "true")
    fold.click()
    expect(fold).to_have_attribute("aria-expanded", "false")
    expect(body.locator(".j-str", has_text='"hola - text"')).to_be_hidden()
    expect(data.locator("> .j-count")).to_have_text(" 7 keys ")
    fold.press("Enter")  # a button: the keyboard unfolds it too
    expect(body.locator(".j-str", has_text='"hola - text"')).to_be_visible()
    deep = body.locator(".j-entry", has=page.locator("> .j-key", has_text='"messageContextInfo"')).locator("> .j-node")
    expect(deep).to_have_class(re.compile("folded"))  # three levels down: folded, and not built yet
    expect(deep.locator(".j-key")).to_have_count(0)
    deep.locator("> .j-toggle").click()
    expect(deep.locator("> .j-children > .j-entry > .j-key", has_text='"messageSecret"')).to_be_visible()

    refused = web.client.post("/webhook/", data=b"oops", content_type="application/json").get_json()
    page.goto(f"{web.url}/#/events/{refused['detail']['event_id']}")
    expect(detail.locator(".response-line")).to_contain_text("HTTP 400", timeout=LIVE)
    expect(detail.locator(".json-tree").last).to_contain_text("body is not JSON")
    expect(page.locator("#replay")).to_be_disabled()
    expect(detail.locator(".replay-refusal")).to_contain_text("its body is not a JSON object")
    web.screenshot("events-refused")


# --- a phone ----------------------------------------------------------------------------------------------

def test_on_a_phone_the_list_gives_way_to_the_detail_and_comes_back(dashboard):
    web = dashboard()
    page = web.page
    page.set_viewport_size(PHONE)
    made = post_many(web, 40)
    web.open("#/events")
    expect(rows(page)).to_have_count(40)
    expect(page.locator(".event-detail")).to_be_hidden()
    target = row(page, made[3])
    target.scroll_into_view_if_needed()
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 500
    target.click()
    expect(detail_heading(page)).to_have_text(f"Event {made[3]}", timeout=LIVE)
    expect(page.locator(".events-list-pane")).to_be_hidden()
    in_viewport(page, detail_heading(page))
    back = page.get_by_role("button", name="Back to the list")
    in_viewport(page, back)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screen(web, "events-phone-detail")

    back.click()
    expect(rows(page)).to_have_count(40, timeout=LIVE)
    expect(page.locator(".event-detail")).to_be_hidden()
    wait_until(lambda: abs(page.evaluate("window.scrollY") - scrolled) < 5, "back where the list was", timeout=5)
    in_viewport(page, target)
    assert page.evaluate("document.activeElement.dataset.eventId") == str(made[3])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screen(web, "events-phone-list")


# --- replay with changes -------------------------------------------------------------------------------

def test_replay_with_changes_sends_the_edited_body_as_a_new_event(dashboard):
    web = dashboard()
    page = web.page
    original = web.webhook(load_sample(EVOLUTION_IN))["event_id"]
    stored_before = WebhookEvent.get_by_id(original).body
    web.open(f"#/events/{original}")
    page.get_by_role("button", name="Replay with changes").click()
    editor = page.locator("#event-edit")
    expect(editor).to_be_focused()
    edited = json.loads(editor.input_value())
    assert edited["apikey"] == "[redacted]"  # the page never had the secret
    page.fill("#event-edit", "{not json")
    page.get_by_role("button", name="Send as a new event").click()
    expect(page.locator(".edit-error")).to_contain_text("The edited body is not a JSON object", timeout=LIVE)

    edited["data"]["key"]["id"] = "EDITED-IN-THE-PAGE"
    edited["data"]["message"]["conversation"] = "changed in the page"
    page.fill("#event-edit", json.dumps(edited, indent=2))
    page.get_by_role("button", name="Send as a new event").click()
    expect(page.locator(".event-detail .replay-of")).to_have_text(f"Replay with changes of event {original}",
                                                                  timeout=LIVE)
    new_id = int(page.evaluate("location.hash").rsplit("/", 1)[1])
    assert new_id != original
    expect(detail_heading(page)).to_have_text(f"Event {new_id}")
    expect(page.locator(".event-detail .what-detail")).to_have_text("changed in the page")
    expect(page.locator("#event-outcome")).to_have_text("processed")
    expect(rows(page).first).to_contain_text("changed in the page", timeout=LIVE)
    expect(rows(page).first.locator(".what-sub")).to_contain_text(f"replay of {original}")
    web.screenshot("events-replayed-with-changes")
    assert WebhookEvent.get_by_id(original).body == stored_before
    assert WebhookEvent.get_by_id(new_id).replay_of_id == original
    messages = web.client.get("/api/messages").get_json()["items"]
    assert {m["text"] for m in messages} == {"hola - text", "changed in the page"}


def test_replay_is_offered_only_where_it_can_work(dashboard):
    web = dashboard(WEBHOOK_TOKEN="the-webhook-token-0123")
    page = web.page
    refused = web.client.post("/webhook/", json=load_sample(EVOLUTION_IN)).get_json()["detail"]["event_id"]
    web.open(f"#/events/{refused}")
    expect(page.locator("#replay")).to_be_disabled(timeout=LIVE)
    expect(page.locator("#replay-edit")).to_be_disabled()
    expect(page.locator(".replay-refusal")).to_have_text("Cannot be replayed: this request failed authentication.")
    expect(page.locator(".body-hidden")).to_be_visible()
    expect(page.locator(".response-line")).to_contain_text("HTTP 401")


# --- the keyboard ----------------------------------------------------------------------------------------

def test_the_keyboard_moves_through_the_list_and_shows_each_event(dashboard):
    web = dashboard()
    page = web.page
    made = post_many(web, 5)[::-1]  # newest first, as listed
    web.open("#/events")
    expect(rows(page)).to_have_count(5)
    page.locator("#filter-text").focus()
    page.keyboard.press("Tab")  # one tab stop for the list: its first row
    assert page.evaluate("document.activeElement.dataset.eventId") == str(made[0])
    page.keyboard.press("Enter")
    expect(detail_heading(page)).to_have_text(f"Event {made[0]}", timeout=LIVE)
    for key, index in (("ArrowDown", 1), ("ArrowDown", 2), ("j", 3), ("ArrowUp", 2), ("k", 1)):
        page.keyboard.press(key)
        expect(detail_heading(page)).to_have_text(f"Event {made[index]}", timeout=LIVE)
        expect(row(page, made[index])).to_have_attribute("aria-current", "true")
        assert page.evaluate("document.activeElement.dataset.eventId") == str(made[index])
    focused = row(page, made[1])
    assert focused.evaluate("e => e.matches(':focus-visible')")
    assert focused.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"  # the focus is visible
    assert page.evaluate("location.hash") == f"#/events/{made[1]}"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # back into the list: the selected row, not the first
    assert page.evaluate("document.activeElement.dataset.eventId") == str(made[1])


# --- copy as cURL --------------------------------------------------------------------------------------

def test_the_copied_curl_command_sends_the_request_again_without_its_secrets(dashboard, browser):
    web = dashboard(EVOLUTION_API_KEY="evolution-key-0123456789")
    page = web.page
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.url)
    original = web.webhook(evolution_text("CURL-1", "send me again"))["event_id"]
    web.client.post("/webhook/", json=evolution_text("CURL-2", "with headers"),
                    headers={"User-Agent": "axios/1.6", "X-Api-Key": "evolution-key-0123456789",
                             "X-Forwarded-For": "203.0.113.9"})
    web.open(f"#/events/{original + 1}")
    page.get_by_role("button", name="Copy as cURL").click()
    expect(page.locator(".copy-status")).to_have_text("Copied.", timeout=LIVE)
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == page.locator("#curl-command").text_content()
    assert "evolution-key-0123456789" not in command
    assert "-H 'user-agent: axios/1.6'" in command
    assert re.search(r"^# headers left out: .*x-api-key \(secret\)", command, re.M)
    assert "x-forwarded-for" in command.splitlines()[1] and "203.0.113.9" not in command
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert answer.returncode == 0, answer.stderr
    sent = json.loads(answer.stdout)
    assert sent["outcome"] == "duplicate"  # the same request again: duplicates are found when it is stored
    replayed = WebhookEvent.get_by_id(sent["event_id"])
    assert replayed.headers_dict["user-agent"] == "axios/1.6"
    assert json.loads(replayed.body)["data"]["message"]["conversation"] == "with headers"

    page.get_by_role("button", name="Copy for PowerShell").click()
    powershell = page.evaluate("navigator.clipboard.readText()")
    assert "curl.exe -X POST" in powershell and "Set-Content -Encoding utf8" in powershell
    assert "evolution-key-0123456789" not in powershell


# --- in Portuguese --------------------------------------------------------------------------------------

def english_left(text: str) -> list[str]:
    """The English catalogue texts (those Portuguese words differently) found in a page's text."""
    english = json.loads((CATALOGUES / "en.json").read_text(encoding="utf-8"))
    portuguese = json.loads((CATALOGUES / "pt-BR.json").read_text(encoding="utf-8"))
    found = []
    for key, value in english.items():
        if value == portuguese[key] or not (key.startswith(("events.", "event_kind.", "state.", "type.", "nav."))):
            continue
        parts = [re.escape(part) for part in re.split(r"\{\w+\}", value)]
        pattern = r"(?<!\w)" + r".+?".join(parts) + r"(?!\w)"
        if re.search(pattern, text):
            found.append(f"{key}: {value}")
    return found


def test_the_portuguese_events_page_has_no_english_left(dashboard):
    web = dashboard()
    page = web.page
    web.webhook(load_sample(EVOLUTION_IN))
    web.webhook(load_sample(EVOLUTION_OUT))
    web.webhook(load_sample("meta/fixture_reaction.json"))
    web.webhook(load_sample("meta/fixture_status_read.json"))
    web.webhook(load_sample("seeds/endpoint_chat_presence.json"), "/webhook/chat-presence/")
    connection = web.webhook(load_sample("evolution/v1_connection.update_connecting.json"))["event_id"]
    refused = web.client.post("/webhook/", data=b"oops", content_type="application/json").get_json()
    web.open("#/events")
    page.select_option("#language", "pt-BR")
    expect(page.get_by_role("heading", name="Eventos")).to_be_visible(timeout=LIVE)
    expect(rows(page)).to_have_count(7, timeout=LIVE)
    kinds = rows(page).locator(".kind").all_text_contents()
    assert kinds == ["desconhecido", "conexão", "presença", "status", "reação", "mensagem enviada",
                     "mensagem recebida"]
    expect(row(page, connection).locator(".what-text")).to_have_text("conectando")
    row(page, connection).click()
    expect(page.locator(".event-detail h2")).to_have_text(f"Evento {connection}", timeout=LIVE)
    page.locator(".event-commands summary").click()
    page.locator(".event-headers summary").click()
    page.get_by_role("button", name="Reenviar com alterações").click()

    def shown_text() -> str:
        # What the page says, without what the requests said (payloads, headers, commands, texts).
        return page.evaluate("""() => {
            const copy = document.querySelector('main').cloneNode(true);
            copy.querySelectorAll('.json-tree, pre, code, textarea, .what-text, .what-sub, .what-detail, '
                + '#filter-instance, #filter-provider, #dry-run-route, .event-meta dd, .headers-table')
                .forEach((node) => node.remove());
            return copy.innerText;
        }""")

    text = shown_text()
    assert english_left(text) == [], text
    assert "events." not in text and "event_kind." not in text  # no key without its text
    row(page, refused["detail"]["event_id"]).click()
    expect(page.locator(".replay-refusal")).to_contain_text("o corpo não é um objeto JSON", timeout=LIVE)
    text = shown_text()
    assert english_left(text) == [], text
    web.screenshot("events-pt-BR")


# --- filters, redacted JSON, replay in place and the dry run -----------------------------------------------

def test_events_filter_show_redacted_json_replay_and_dry_run(dashboard):
    web = dashboard()
    first = web.webhook(load_sample(EVOLUTION_IN))
    web.webhook(load_sample("meta/fixture_image.json"))
    web.open("#/events")
    page = web.page
    expect(rows(page)).to_have_count(2)
    page.select_option("#filter-provider", "meta")
    expect(rows(page)).to_have_count(1, timeout=LIVE)
    page.select_option("#filter-provider", "")
    page.fill("#filter-text", "hola - text")
    expect(rows(page)).to_have_count(1, timeout=LIVE)
    page.fill("#filter-text", "")
    expect(rows(page)).to_have_count(2, timeout=LIVE)

    page.locator(f"a[href='#/events/{first['event_id']}']").click()
    detail = page.locator(".event-detail")
    expect(detail.locator(".json-tree").first).to_contain_text('"apikey": "[redacted]"', timeout=LIVE)
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(detail.locator(".replay-result")).to_have_text("Replayed: processed", timeout=LIVE)
    expect(detail.locator(".replay-count")).to_have_text("1", timeout=LIVE)

    page.fill("#dry-run-payload", json.dumps(load_sample("meta/fixture_reaction.json")))
    page.get_by_role("button", name="Run the dry run").click()
    result = page.locator(".dry-run-result .json-tree")
    expect(result).to_contain_text('"would_store": true', timeout=LIVE)
    expect(result).to_contain_text('"provider": "meta"')
    web.webhook(load_sample("evolution/v1_connection.update_connecting.json"))
    expect(rows(page)).to_have_count(3, timeout=LIVE)
    web.screenshot("events")
