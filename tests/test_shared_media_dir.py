"""Every process of a deployment uses the one MEDIA_DIR: the folder carries its database's id."""

from __future__ import annotations

import models
from media import MEDIA_DIR_MARKER
from tests.helpers import load_sample


def media_dir_check(client) -> dict:
    return {check["name"]: check for check in client.get("/test").get_json()["checks"]}["media dir shared"]


def test_a_new_media_folder_is_marked_with_the_database_id_and_passes_the_check(make_app, tmp_path):
    app = make_app(MEDIA_DIR=str(tmp_path / "media"))
    marker = tmp_path / "media" / MEDIA_DIR_MARKER
    with models.db.connection_context():
        assert marker.read_text().strip() == models.DeploymentFact.database_id()
    assert media_dir_check(app.test_client())["ok"] is True
    make_app(MEDIA_DIR=str(tmp_path / "media"))  # a restart, or a second process on the shared folder
    assert media_dir_check(app.test_client())["ok"] is True


def test_a_process_with_a_media_folder_of_its_own_is_told_so(make_app, tmp_path):
    first = make_app(MEDIA_DIR=str(tmp_path / "shared"))
    client = first.test_client()
    client.post("/webhook/", json=load_sample("wapi/webhookReceived_image_real.json"))
    with models.db.connection_context():
        models.MediaFile.update(state="done", local_path="cliente_1/instance_x/image/a.jpg").execute()

    second = make_app(MEDIA_DIR=str(tmp_path / "elsewhere"))  # same database, another folder
    check = media_dir_check(second.test_client())
    assert check["ok"] is False and "every process of a deployment must use the same MEDIA_DIR" in check["detail"]
    assert not (tmp_path / "elsewhere" / MEDIA_DIR_MARKER).exists()


def test_a_media_folder_of_another_database_fails_the_check(make_app, tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / MEDIA_DIR_MARKER).write_text("0123456789abcdef0123456789abcdef\n")
    app = make_app(MEDIA_DIR=str(folder))
    check = media_dir_check(app.test_client())
    assert check["ok"] is False and "belongs to another database (its marker says 01234567" in check["detail"]
