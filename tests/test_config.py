import re
from pathlib import Path

import pytest

from config import SECRET_SETTINGS, SETTINGS, ConfigError, load_settings
from server import create_app, main

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_local_and_sqlite_in_the_data_dir(tmp_path):
    settings = load_settings(environ={"DATA_DIR": str(tmp_path)})
    assert settings["HOST"] == "127.0.0.1"
    assert settings["PORT"] == 5000
    assert settings["MAX_BODY_MB"] == 64
    assert settings["WEBHOOK_TOKEN"] is None
    assert settings["ALLOW_UNKNOWN_INSTANCES"] is True
    assert settings["DATABASE_URL"] == "sqlite:///" + str(tmp_path.resolve() / "zaphook.db")


def test_environment_values_are_parsed(tmp_path):
    settings = load_settings(environ={
        "DATA_DIR": str(tmp_path), "PORT": "8080", "MAX_BODY_MB": "0.5", "LOG_LEVEL": "debug",
        "ALLOW_UNKNOWN_INSTANCES": "off", "WEBHOOK_TOKEN": "s3cret-token-value",
        "DATABASE_URL": "postgresql://u:p@localhost/zaphook",
    })
    assert settings["PORT"] == 8080
    assert settings["MAX_BODY_MB"] == 0.5
    assert settings["LOG_LEVEL"] == "DEBUG"
    assert settings["ALLOW_UNKNOWN_INSTANCES"] is False
    assert settings["WEBHOOK_TOKEN"] == "s3cret-token-value"
    assert settings["DATABASE_URL"].startswith("postgresql://")


@pytest.mark.parametrize("name, value", [
    ("PORT", "http"),
    ("PORT", "70000"),
    ("MAX_BODY_MB", "-1"),
    ("MAX_BODY_MB", "lots"),
    ("LOG_LEVEL", "LOUD"),
    ("ALLOW_UNKNOWN_INSTANCES", "maybe"),
    ("DATABASE_URL", "mysql://localhost/x"),
    ("WEBHOOK_TOKEN", "change-me"),
    ("HOST", "local host"),
    ("THREADS", "0"),
])
def test_a_bad_value_stops_start_up_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as error:
        load_settings(environ={name: value})
    assert str(error.value).startswith(name + " ")


def test_the_command_line_exits_with_a_message_on_bad_configuration(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("PORT", "not-a-port")
    assert main(["run"]) == 2
    assert "PORT must be a whole number" in capsys.readouterr().err


def test_env_example_documents_every_setting_with_placeholder_secrets():
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    lines = re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.MULTILINE)
    documented = dict(lines)
    assert set(documented) == set(SETTINGS)
    assert len(lines) == len(documented), "a setting appears twice"
    for secret in SECRET_SETTINGS:
        assert documented[secret] == "change-me"


def test_a_copied_env_example_names_every_placeholder_secret_in_one_message(tmp_path):
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    environ = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.MULTILINE), DATA_DIR=str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        load_settings(environ=environ)
    message = str(raised.value)
    assert message.count("change-me") == 1  # one sentence, not one start-up per secret
    named = set(message.split(":")[0].split(", "))
    assert named == set(SECRET_SETTINGS)


def test_the_app_factory_does_no_work_at_import_and_opens_its_own_database(tmp_path):
    first = create_app({"DATA_DIR": str(tmp_path / "one"), "MEDIA_WORKERS": 0})
    second = create_app({"DATA_DIR": str(tmp_path / "two"), "MEDIA_WORKERS": 0})
    assert (tmp_path / "one" / "zaphook.db").exists()
    assert (tmp_path / "two" / "zaphook.db").exists()
    assert first.extensions["zaphook.database"] is not second.extensions["zaphook.database"]


def test_the_app_factory_starts_no_background_work_the_serving_code_does(tmp_path):
    import threading

    from server import start_background_work

    def background() -> set[str]:
        return {thread.name.rstrip("0123456789") for thread in threading.enumerate()
                if thread.name.startswith(("zaphook-media-", "zaphook-campaigns"))}

    app = create_app({"DATA_DIR": str(tmp_path / "data"), "MEDIA_WORKERS": 2, "CAMPAIGN_SENDER": True,
                      "TUNNEL": "off"})
    try:
        assert background() == set()
        start_background_work(app)
        assert background() == {"zaphook-media-", "zaphook-campaigns"}
    finally:
        app.extensions["zaphook.media"].shutdown()
        app.extensions["zaphook.campaigns"].shutdown()
        app.extensions["zaphook.roles"].stop()
        app.extensions["zaphook.database"].close_all()


def test_the_settings_page_documents_every_setting():
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([A-Z_]+)` \|", page, flags=re.MULTILINE)
    assert set(documented) == set(SETTINGS)
    assert len(documented) == len(set(documented)), "a setting appears twice"
