"""The dashboard in a real browser, shared by the browser test modules: Debian's Chromium driven by
Playwright, the real app served by waitress.

Nothing is downloaded: Playwright drives /usr/bin/chromium (installed by .ci/run
in CI), and every request stays on 127.0.0.1. A screenshot of each page is
kept under test-output/screenshots/ at the repository root. A browser test module
imports the ``browser`` and ``dashboard`` fixtures (and ``expect``, ``LIVE``) from here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ServedApp


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
LIVE = 3000  # ms: the dashboard promises two seconds; a little slack for a loaded machine

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module, on a fresh profile; each test gets its own page (and server origin)."""
    profile = tempfile.mkdtemp(prefix="zaphook-chromium-")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800}, locale="en-US", service_workers="block")
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Dashboard:
    """The app served by waitress on a free port of 127.0.0.1, and a page in the browser."""

    def __init__(self, app, page) -> None:
        self.app = app
        self.client = app.test_client()
        self.served = ServedApp(app, threads=8)
        self.url = self.served.url
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, hash_path: str = "#/overview") -> None:
        self.page.goto(f"{self.url}/{hash_path}")
        expect(self.page.locator("#live")).to_have_attribute("data-state", "on", timeout=LIVE)

    def webhook(self, payload: dict, route: str = "/webhook/") -> dict:
        response = self.client.post(route, data=json.dumps(payload), content_type="application/json")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        self.served.close()


@pytest.fixture
def dashboard(make_app, browser):
    """Build with ``dashboard(**settings)``; the page is checked for script errors at the end."""
    made = []

    def start(**settings) -> Dashboard:
        item = Dashboard(make_app(**settings), browser.new_page())
        made.append(item)
        return item

    yield start
    for item in made:
        errors, dialogs = item.errors, item.dialogs
        item.close()
        assert errors == [], errors
        assert dialogs == [], dialogs
