"""The dashboard's pages, its login through the tunnel, the CSRF guard and the two string catalogues."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import handlers.base
import ingest
from access import SESSION_COOKIE, new_session_cookie
from tests.helpers import load_sample

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"
ADMIN = "admin-token-0123456789"
TUNNELLED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.fixture
def admin_client(make_app):
    return make_app(ADMIN_TOKEN=ADMIN).test_client()


def session_cookie(response) -> str:
    (header,) = [value for value in response.headers.getlist("Set-Cookie") if value.startswith(SESSION_COOKIE)]
    return header


# --- the page and its files ---------------------------------------------------------------------

def test_the_dashboard_is_served_at_the_root_with_a_strict_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b'<script type="module" src="/static/js/app.js">' in response.data
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_every_script_and_style_sheet_comes_from_zaphook_itself(client):
    page = client.get("/").get_data(as_text=True)
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert referenced and all(url.startswith(("/static/", "#", "data:")) for url in referenced), referenced
    for script in STATIC.rglob("*.js"):
        text = script.read_text(encoding="utf-8")
        assert "http://" not in text and "cdn" not in text.lower(), script
        for imported in re.findall(r'from\s+"(\.[^"]+)"', text):
            assert (script.parent / imported).resolve().is_file(), f"{script}: {imported}"
        path = "/static/" + script.relative_to(STATIC).as_posix()
        response = client.get(path)
        response.close()
        assert response.status_code == 200, path


def test_no_script_writes_html_from_data():
    for script in STATIC.rglob("*.js"):
        text = script.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in text, f"{script.name} uses {sink}"


# --- the string catalogues -----------------------------------------------------------------------

def _campaign_codes() -> dict:
    """The codes the campaigns API sends, which the campaigns page turns into keys."""
    from campaign_lists import PHONE_PROBLEMS
    from campaigns import PROBLEMS
    from models import LOG_ACTIONS
    from storage.send import REFUSALS

    return {
        "refusal.${code}": list(REFUSALS),
        "campaigns.problem.${code}": list(PROBLEMS),
        "campaigns.phone.${code}": list(PHONE_PROBLEMS),
        "campaigns.log.${action}": [action for action in LOG_ACTIONS if action != "created"],  # created: plural
        "campaigns.encoding.${encoding}": ["utf-8", "cp1252", "utf-16"],
    }


# Keys built from a variable, with every value the variable takes.
TEMPLATE_KEYS = {
    **_campaign_codes(),
    "campaigns.${action}": ["start", "pause", "resume", "cancel"],
    "campaigns.funnel_${field}": ["total_contacts", "sent_count", "delivered_count", "read_count",
                                  "failed_count", "replied_count", "skipped_count"],
    "live.${state}": ["starting", "on", "off"],
    "nav.${name}": ["overview", "chats", "events", "media", "campaigns", "qa"],
    # the events page: what each request was, presence states, why a replay cannot work (all from the server)
    "event_kind.${code}": [*ingest.SUMMARY_KINDS, *handlers.base.REQUEST_KINDS],
    "events.presence.${summary.state}": list(handlers.base.PRESENCE_STATES),
    "events.replay_refusal.${code}": list(ingest.REPLAY_REFUSALS),
    "qa.level.${level}": ["ok", "warning", "failure"],
}


def catalogue(language: str) -> dict:
    return json.loads((STATIC / "i18n" / f"{language}.json").read_text(encoding="utf-8"))


def used_keys() -> set[str]:
    keys = set()
    for script in STATIC.rglob("*.js"):
        for key in re.findall(r"\bt\(\s*[\"'`]([^\"'`]+)[\"'`]", script.read_text(encoding="utf-8")):
            if "${" in key:
                assert key in TEMPLATE_KEYS, f"{script.name}: add the values of {key} to TEMPLATE_KEYS"
                keys.update(key.replace(key[key.index("${"):key.index("}") + 1], value)
                            for value in TEMPLATE_KEYS[key])
            else:
                keys.add(key)
        # tn("key", count): a plural, key.one and key.other (the categories of English and Portuguese)
        for key in re.findall(r"\btn\(\s*[\"']([^\"']+)[\"']", script.read_text(encoding="utf-8")):
            keys.update((f"{key}.one", f"{key}.other"))
    keys.update(re.findall(r'data-i18n(?:-placeholder|-label)?="([^"]+)"', (STATIC / "index.html").read_text()))
    keys.update(re.findall(r'live\.\w+', (STATIC / "index.html").read_text()))
    keys.update(re.findall(r't\["([^"]+)"\]', (ROOT / "templates" / "login.html").read_text()))
    # A plural (t("qa.summary_warnings", {count})) is its forms: key.one, key.other (Intl.PluralRules).
    english = catalogue("en")
    plurals = {key for key in keys if key not in english and f"{key}.other" in english}
    return (keys - plurals) | {form for key in plurals for form in english if form.rsplit(".", 1)[0] == key}


def api_values() -> set[str]:
    """Every state, outcome and type the API hands out (the pages translate them with tState / tType),
    and every text code the server sends (codes.py; the pages translate them with tText)."""
    import codes
    from models import CAMPAIGN_STATES, CONTACT_STATES, OUTCOMES, MediaFile

    states = {*CAMPAIGN_STATES, *CONTACT_STATES, *OUTCOMES, *MediaFile.STATES,
              "pending", "sent", "delivered", "read", "played", "failed",  # message statuses
              "unknown", "connecting", "connected", "disconnected",  # connection states
              "off", "starting", "open", "closed"}  # tunnel states
    types = {"text", "image", "video", "audio", "document", "sticker", "location", "contact", "reaction",
             "interactive", "poll", "unknown"}
    server_texts = {key for code in codes.registered() for key in codes.catalogue_keys(code)}
    return {f"state.{value}" for value in states} | {f"type.{value}" for value in types} | server_texts


def test_both_catalogues_have_the_same_keys():
    english, portuguese = catalogue("en"), catalogue("pt-BR")
    assert sorted(english) == sorted(portuguese)
    assert all(isinstance(value, str) and value for value in [*english.values(), *portuguese.values()])


def test_every_key_the_pages_use_is_in_the_catalogues():
    keys = used_keys() | api_values()
    assert len(keys) > 100
    for language in ("en", "pt-BR"):
        missing = sorted(keys - set(catalogue(language)))
        assert not missing, f"{language}.json lacks {missing}"


def test_the_catalogues_hold_no_unused_keys():
    unused = sorted(set(catalogue("en")) - used_keys() - api_values())
    assert not unused, unused


def test_placeholders_match_between_languages():
    english, portuguese = catalogue("en"), catalogue("pt-BR")
    for key, text in english.items():
        assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", portuguese[key])), key


# --- through the tunnel ----------------------------------------------------------------------------

def test_without_admin_token_the_dashboard_and_login_do_not_exist_through_the_tunnel(client):
    for path in ("/", "/login", "/static/js/app.js", "/api/changes"):
        response = client.get(path, headers=TUNNELLED)
        assert response.status_code == 404, path
        assert response.get_json() == {"error": "not found", "detail": None, "code": "error.not_found", "params": {}}
    assert client.post("/login", data={"token": "x"}, headers=TUNNELLED).status_code == 404


def test_without_admin_token_login_locally_leads_to_the_dashboard(client):
    response = client.get("/login")
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_with_admin_token_only_the_login_page_answers_without_credentials(admin_client):
    assert admin_client.get("/", headers=TUNNELLED).status_code == 404
    assert admin_client.get("/static/js/app.js", headers=TUNNELLED).status_code == 404
    page = admin_client.get("/login", headers=dict(TUNNELLED, **{"Accept-Language": "pt-BR,pt;q=0.9"}))
    assert page.status_code == 200
    assert 'name="token"' in page.get_data(as_text=True)
    assert "Abrir o painel do zaphook" in page.get_data(as_text=True)
    assert "script" not in page.headers["Content-Security-Policy"]


def test_the_login_sets_a_strict_cookie_holding_an_hmac_not_the_token(admin_client):
    # over https through the tunnel: the agent said so, and waitress set the scheme from it
    response = admin_client.post("/login", data={"token": ADMIN}, headers=TUNNELLED,
                                 environ_overrides={"wsgi.url_scheme": "https"})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    cookie = session_cookie(response)
    assert ADMIN not in cookie
    assert "Max-Age=43200" in cookie  # 12 hours
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    # The test client keeps the cookie: the dashboard, its files and the API now answer.
    for path in ("/", "/static/js/app.js", "/api/changes", "/status"):
        response = admin_client.get(path, headers=TUNNELLED)
        response.close()
        assert response.status_code == 200, path


def test_the_cookie_is_not_secure_over_plain_http(admin_client):
    response = admin_client.post("/login", data={"token": ADMIN}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert "Secure" not in session_cookie(response)


@pytest.mark.parametrize("token", ["", "wrong-token-0123456789", ADMIN + "x", ADMIN[:-1]])
def test_a_wrong_token_sets_no_cookie(admin_client, token):
    response = admin_client.post("/login", data={"token": token}, headers=TUNNELLED)
    assert response.status_code == 403
    assert not [value for value in response.headers.getlist("Set-Cookie") if value.startswith(SESSION_COOKIE)]
    assert "That is not the ADMIN_TOKEN." in response.get_data(as_text=True)
    assert admin_client.get("/", headers=TUNNELLED).status_code == 404


@pytest.mark.parametrize("value", ["", "0" * 64, ADMIN, new_session_cookie("another-admin-token-000")[0]])
def test_a_forged_cookie_is_refused(admin_client, value):
    admin_client.set_cookie(SESSION_COOKIE, value)
    assert admin_client.get("/api/events", headers=TUNNELLED).status_code == 404


def test_a_cookie_stops_working_when_the_admin_token_changes(make_app):
    old = make_app(ADMIN_TOKEN=ADMIN).test_client()
    signed_in = old.post("/login", data={"token": ADMIN}, headers=TUNNELLED)
    assert old.get("/status", headers=TUNNELLED).status_code == 200
    new = make_app(ADMIN_TOKEN="a-brand-new-admin-token-42").test_client()
    new.set_cookie(SESSION_COOKIE, session_cookie(signed_in).split(";")[0].split("=", 1)[1])
    assert new.get("/status", headers=TUNNELLED).status_code == 404


def test_the_bearer_header_still_opens_the_api(admin_client):
    headers = dict(TUNNELLED, Authorization=f"Bearer {ADMIN}")
    assert admin_client.get("/api/changes", headers=headers).status_code == 200


def test_logout_clears_the_cookie(admin_client):
    admin_client.post("/login", data={"token": ADMIN}, headers=TUNNELLED)
    response = admin_client.post("/logout", headers=TUNNELLED)
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert admin_client.get("/", headers=TUNNELLED).status_code == 404


def test_webhooks_and_health_stay_open_through_the_tunnel(admin_client):
    assert admin_client.get("/health", headers=TUNNELLED).status_code == 200
    response = admin_client.post("/webhook/", json=load_sample("evolution/v1_messages.upsert_text_incoming.json"),
                                 headers=TUNNELLED)
    assert response.status_code == 200


# --- the CSRF guard --------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("POST", "/api/instances"), ("PATCH", "/api/instances/1"), ("PUT", "/api/instances/1"),
    ("DELETE", "/api/instances/1"), ("POST", "/test"), ("POST", "/api/campaigns/1/start"),
    ("POST", "/login"), ("POST", "/logout"),
])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:6666", "localhost"])
def test_a_state_change_from_another_origin_is_refused(client, method, path, origin):
    response = client.open(path, method=method, json={"provider": "wapi", "instance_id": "x"},
                           headers={"Origin": origin})
    assert response.status_code == 403
    assert response.get_json() == {"error": "cross-origin request refused", "detail": None, "code": "error.cross_origin",
                                   "params": {}}


def test_the_guard_lets_same_origin_and_originless_requests_through(client):
    body = {"provider": "wapi", "instance_id": "same-origin"}
    assert client.post("/api/instances", json=body, headers={"Origin": "http://localhost"}).status_code == 201
    body["instance_id"] = "no-origin"
    assert client.post("/api/instances", json=body).status_code == 201
    # A GET is never refused for its Origin.
    assert client.get("/api/instances", headers={"Origin": "https://evil.example"}).status_code == 200


def test_the_guard_accepts_the_tunnel_host(admin_client):
    """Behind the real agent waitress sets Host from X-Forwarded-Host: tests/test_boundary.py covers that path."""
    headers = dict(TUNNELLED, Authorization=f"Bearer {ADMIN}", Origin="https://shop.ngrok.app",
                   Host="shop.ngrok.app")
    assert admin_client.post("/api/instances", json={"provider": "wapi", "instance_id": "t"},
                             headers=headers).status_code == 201


def test_a_webhook_post_from_another_sites_page_is_refused_and_recorded(client):
    response = client.post("/webhook/", json=load_sample("evolution/v1_messages.upsert_text_incoming.json"),
                           headers={"Origin": "https://provider.example"})
    assert response.status_code == 403
    event = client.get(f"/api/events/{response.get_json()['detail']['event_id']}").get_json()
    assert event["outcome"] == "rejected"


def test_a_cross_origin_request_through_the_tunnel_without_credentials_is_still_not_found(admin_client):
    response = admin_client.post("/api/instances", json={}, headers=dict(TUNNELLED, Origin="https://evil.example"))
    assert response.status_code == 404
