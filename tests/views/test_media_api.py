"""The media API (/api/media...), the media part of /status and /test, and instance credentials."""

from __future__ import annotations

import base64
import json

import pytest

import models
from tests.media_support import evolution_payload, media_of, post, vector, wait_for_media

TUNNELLED = {"X-Forwarded-For": "203.0.113.7"}


@pytest.fixture
def downloaded(make_app):
    """An app whose one media file was filed from an Evolution base64 webhook (no network needed)."""
    meta, _encrypted, plaintext = vector("image")
    app = make_app(MEDIA_WORKERS=1, MEDIA_RETRY_SECONDS=0.05)
    client = app.test_client()
    payload = evolution_payload(meta, "WITHFILE", "/v/x.enc")
    payload["data"]["message"]["base64"] = base64.b64encode(plaintext).decode()
    post(client, "/api/webhooks/evolution/", payload)
    media = wait_for_media(client, media_of(client, "WITHFILE")["id"])
    assert media["state"] == "done"
    return app, client, media, plaintext


def test_media_list_filters_by_state_type_and_instance(downloaded):
    _app, client, media, _plaintext = downloaded
    assert [item["id"] for item in client.get("/api/media").get_json()["items"]] == [media["id"]]
    assert client.get("/api/media?status=done&type=image&instance=instance_3_553175564133").get_json()["items"]
    assert client.get("/api/media?status=failed").get_json()["items"] == []
    assert client.get("/api/media?type=video").get_json()["items"] == []
    assert client.get("/api/media?instance=nobody").get_json()["items"] == []
    bad = client.get("/api/media?status=lost")
    assert bad.status_code == 400
    assert "status must be one of" in bad.get_json()["error"]


def test_media_detail_shows_state_attempts_sizes_hashes_and_path_but_no_key(downloaded):
    _app, client, media, plaintext = downloaded
    detail = client.get(f"/api/media/{media['id']}").get_json()
    assert detail["state"] == "done"
    assert detail["way"] == "inline"
    assert detail["stored_size"] == len(plaintext)
    assert detail["path"].startswith("cliente_1/instance_instance_3_553175564133/image/evolution_WITHFILE_")
    assert detail["attempt_log"][0]["way"] == "inline" and detail["attempt_log"][0]["outcome"] == "ok"
    assert detail["has_media_key"] is True
    assert "media_key" not in detail
    assert vector("image")[0]["mediaKey"] not in json.dumps(detail)
    assert client.get("/api/media/424242").status_code == 404


def test_the_message_json_carries_its_media_state_and_file_url(downloaded):
    _app, client, media, _plaintext = downloaded
    item = client.get("/api/messages").get_json()["items"][0]
    assert item["media"]["state"] == "done"
    assert item["media"]["file_url"] == f"/api/media/{media['id']}/file"


def test_the_file_is_served_with_its_content_type_locally_only(downloaded):
    _app, client, media, plaintext = downloaded
    with client.get(f"/api/media/{media['id']}/file") as response:
        assert response.status_code == 200
        assert response.data == plaintext
        assert response.mimetype == "image/png"
    assert client.get(f"/api/media/{media['id']}/file", headers=TUNNELLED).status_code == 404


# --- a file never runs as a page on zaphook's origin ------------------------------------------

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# declared mimetype -> the Content-Type served inline, or None: a download as application/octet-stream
SERVED_AS = {
    # what a browser could run as a page (or sniff into one): downloads
    "text/html": None,
    "text/html; charset=utf-8": None,
    "TEXT/HTML": None,
    "image/svg+xml": None,
    "application/xhtml+xml": None,
    "text/xml": None,
    "application/xml": None,
    "application/javascript": None,
    "text/javascript": None,
    "text/plain": None,
    "": None,
    None: None,
    "weird": None,
    "x-weird/whatever; boundary=x": None,
    "application/octet-stream": None,
    # the allow-list: shown inline as the bare declared type
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/gif": "image/gif",
    "image/webp": "image/webp",
    "IMAGE/PNG": "image/png",
    "audio/ogg; codecs=opus": "audio/ogg",
    "audio/mpeg": "audio/mpeg",
    "audio/mp4": "audio/mp4",
    "audio/aac": "audio/aac",
    "audio/amr": "audio/amr",
    "audio/wav": "audio/wav",
    "audio/webm": "audio/webm",
    "audio/opus": "audio/opus",
    "video/mp4": "video/mp4",
    "video/3gpp": "video/3gpp",
    "video/webm": "video/webm",
    "video/quicktime": "video/quicktime",
    "application/pdf": "application/pdf",
}


def declare(app, media_id: int, mimetype) -> None:
    """Make the stored row say what a sender could have declared."""
    with app.app_context(), models.db.connection_context():
        models.MediaFile.update(mimetype=mimetype).where(models.MediaFile.id == media_id).execute()


def assert_protected(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


@pytest.mark.parametrize("declared, inline_type", SERVED_AS.items(), ids=[repr(key) for key in SERVED_AS])
def test_only_allowed_types_are_served_inline_and_every_file_is_protected(downloaded, declared, inline_type):
    app, client, media, plaintext = downloaded
    declare(app, media["id"], declared)
    with client.get(f"/api/media/{media['id']}/file") as response:
        assert response.status_code == 200
        assert response.data == plaintext
        disposition = response.headers["Content-Disposition"]
        if inline_type is None:
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert disposition.startswith("attachment; filename=")
        else:
            assert response.headers["Content-Type"] == inline_type
            assert disposition.startswith("inline; filename=")
        assert_protected(response)


@pytest.mark.parametrize("declared, inline_type", SERVED_AS.items(), ids=[repr(key) for key in SERVED_AS])
def test_the_json_inline_flag_says_what_the_file_route_does(downloaded, declared, inline_type):
    app, client, media, _plaintext = downloaded
    declare(app, media["id"], declared)
    expected = inline_type is not None
    assert client.get(f"/api/media/{media['id']}").get_json()["inline"] is expected
    assert client.get("/api/media").get_json()["items"][0]["inline"] is expected
    assert client.get("/api/messages").get_json()["items"][0]["media"]["inline"] is expected
    assert models.served_inline(declared) is expected


@pytest.mark.parametrize("declared", ["image/png", "text/html"])
def test_conditional_and_range_answers_keep_the_security_headers(downloaded, declared):
    app, client, media, plaintext = downloaded
    declare(app, media["id"], declared)
    url = f"/api/media/{media['id']}/file"
    with client.get(url) as first:
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for conditions in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        with client.get(url, headers=conditions) as unchanged:
            assert unchanged.status_code == 304, conditions
            assert unchanged.data == b""
            assert_protected(unchanged)
    with client.get(url, headers={"Range": "bytes=0-9"}) as part:
        assert part.status_code == 206
        assert part.data == plaintext[:10]
        assert part.headers["Content-Range"] == f"bytes 0-9/{len(plaintext)}"
        assert_protected(part)
        if declared == "text/html":
            assert part.headers["Content-Type"] == "application/octet-stream"
            assert part.headers["Content-Disposition"].startswith("attachment;")


def test_a_sender_declaring_html_gets_a_download_end_to_end(make_app):
    """The declared type comes from the webhook; nothing in between makes it a page."""
    meta, _encrypted, plaintext = vector("image")
    app = make_app(MEDIA_WORKERS=1, MEDIA_RETRY_SECONDS=0.05)
    client = app.test_client()
    payload = evolution_payload(meta, "HTMLFILE", "/v/x.enc", mimetype="text/html")
    payload["data"]["message"]["base64"] = base64.b64encode(plaintext).decode()
    post(client, "/api/webhooks/evolution/", payload)
    media = wait_for_media(client, media_of(client, "HTMLFILE")["id"])
    assert media["state"] == "done" and media["mimetype"] == "text/html" and media["inline"] is False
    with client.get(f"/api/media/{media['id']}/file") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert_protected(response)


def test_a_file_that_is_not_downloaded_yet_is_404(make_app):
    meta, _encrypted, _plaintext = vector("image")
    app = make_app()  # no workers: the row stays pending
    client = app.test_client()
    post(client, "/api/webhooks/evolution/", evolution_payload(meta, "NOTYET", "/v/x.enc"))
    media_id = media_of(client, "NOTYET")["id"]
    response = client.get(f"/api/media/{media_id}/file")
    assert response.status_code == 404
    assert "pending" in response.get_json()["error"]


def test_status_and_self_check_report_media(downloaded):
    _app, client, _media, _plaintext = downloaded
    status = client.get("/status").get_json()
    assert status["media"]["by_state"] == {"done": 1}
    assert status["media"]["queue"] == 0
    assert status["media"]["workers"] == 1 and status["media"]["alive"] == 1
    checks = {check["name"]: check for check in client.get("/test").get_json()["checks"]}
    assert checks["media dir writable"]["ok"] is True
    workers = checks["media workers"]
    assert {name: workers[name] for name in ("name", "ok", "level", "detail", "code", "params")} == {
        "name": "media workers", "ok": True, "level": "ok", "detail": "1 of 1 download threads alive",
        "code": "qa.media_workers.alive", "params": {"alive": 1, "size": 1}}


def test_the_self_check_fails_when_the_pool_is_dead(downloaded):
    app, client, _media, _plaintext = downloaded
    app.extensions["zaphook.media"].shutdown()
    checks = {check["name"]: check for check in client.get("/test").get_json()["checks"]}
    assert checks["media workers"]["ok"] is False
    assert checks["media workers"]["detail"] == "0 of 1 download threads alive"


# --- instances and their credentials ---------------------------------------------------------

def test_an_instance_is_declared_with_credentials_that_are_never_shown(client):
    created = client.post("/api/instances", json={
        "provider": "wapi", "instance_id": "ABC-123", "name": "Shop", "client": "acme",
        "api_token": "wapi-token-xyz", "api_base_url": "https://api.w-api.app/"})
    assert created.status_code == 201, created.get_json()
    data = created.get_json()
    assert data["instance_id"] == "ABC-123" and data["client"] == "acme" and data["name"] == "Shop"
    assert data["has_api_token"] is True
    assert data["api_base_url"] == "https://api.w-api.app"
    assert "wapi-token-xyz" not in json.dumps(client.get("/api/instances").get_json())
    assert "wapi-token-xyz" not in json.dumps(data)

    again = client.post("/api/instances", json={"provider": "wapi", "instance_id": "ABC-123"})
    assert again.status_code == 409
    assert f"PATCH /api/instances/{data['id']}" in again.get_json()["error"]


def test_an_instance_is_updated_and_its_token_cleared(client):
    instance_id = client.post("/api/instances", json={"provider": "evolution", "instance_id": "shop"}).get_json()["id"]
    changed = client.patch(f"/api/instances/{instance_id}", json={"api_token": "evo-key", "name": "Shop 2"})
    assert changed.status_code == 200
    assert changed.get_json()["has_api_token"] is True and changed.get_json()["name"] == "Shop 2"
    cleared = client.patch(f"/api/instances/{instance_id}", json={"api_token": None})
    assert cleared.get_json()["has_api_token"] is False
    assert client.patch("/api/instances/9999", json={}).status_code == 404


@pytest.mark.parametrize("body, error", [
    ({"provider": "nope", "instance_id": "x"}, "provider must be one of"),
    ({"provider": "wapi"}, "instance_id"),
    ({"provider": "wapi", "instance_id": "x", "api_base_url": "ftp://x"}, "api_base_url must start with"),
    ({"provider": "wapi", "instance_id": "x", "api_token": 12}, "api_token must be text"),
    ([1, 2], "send a JSON object"),
])
def test_bad_instance_declarations_are_400(client, body, error):
    response = client.post("/api/instances", json=body)
    assert response.status_code == 400
    assert error in response.get_json()["error"]


def test_instance_routes_are_closed_through_the_tunnel(client):
    assert client.post("/api/instances", json={"provider": "wapi", "instance_id": "x"},
                       headers=TUNNELLED).status_code == 404


def test_the_served_app_keeps_the_file_protections_and_the_tunnel_never_serves_files(downloaded):
    """As waitress serves it: the headers survive the server; through the tunnel's listener files do not exist."""
    import requests

    from tests.helpers import ServedApp

    app, _client, media, plaintext = downloaded
    declare(app, media["id"], "image/svg+xml")
    served = ServedApp(app)
    try:
        response = requests.get(f"{served.url}/api/media/{media['id']}/file", timeout=10)
        assert response.status_code == 200 and response.content == plaintext
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert_protected(response)
        assert requests.get(f"{served.tunnel_url}/api/media/{media['id']}/file", timeout=10).status_code == 404
    finally:
        served.close()
