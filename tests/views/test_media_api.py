"""The media API (/api/media...), the media part of /status and /test, and instance credentials."""

from __future__ import annotations

import base64
import json

import pytest

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
    assert detail["path"].startswith("cliente_1/instance_1/image/evolution_WITHFILE_")
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
    assert checks["media workers"] == {"name": "media workers", "ok": True, "detail": "1 of 1 download threads alive"}


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
