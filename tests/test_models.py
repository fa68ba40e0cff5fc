"""The schema: an older database is brought up to date in place."""

from __future__ import annotations

import pytest
from playhouse.migrate import SchemaMigrator, migrate

import models
from tests.helpers import load_sample


def _columns(table: str) -> set[str]:
    return {column.name for column in models.db.get_columns(table)}


def forget_migrations() -> None:
    """Drop the migration history: the database is then as a release from before migrations left it."""
    with models.db.connection_context():
        models.db.execute_sql('DROP TABLE "schema_migration"')


def test_a_database_made_by_an_older_version_gets_the_new_columns_on_start(make_app, post_webhook):
    make_app()
    with models.db.connection_context():
        migrator = SchemaMigrator.from_database(models.db.obj)
        migrate(migrator.drop_column("instance", "api_token"), migrator.drop_column("media_file", "lease_owner"),
                migrator.drop_column("webhook_event", "search_text"))
        assert "api_token" not in _columns("instance")
        assert "search_text" not in _columns("webhook_event")

    forget_migrations()  # as a release from before migrations left it
    make_app()  # a restart with the newer code

    with models.db.connection_context():
        assert "api_token" in _columns("instance")
        assert "lease_owner" in _columns("media_file")
        assert "search_text" in _columns("webhook_event")


def test_chats_of_an_older_database_get_their_kind_when_the_column_is_added(make_app):
    make_app()
    with models.db.connection_context():
        instance = models.Instance.find_or_create("evolution", "shop")
        for jid in ("status@broadcast", "120363144038483540@newsletter", "120363025246125888@g.us",
                    "5511999999999@s.whatsapp.net"):
            models.Chat.record(instance, jid, None, jid.endswith("@g.us"), None)
        migrate(SchemaMigrator.from_database(models.db.obj).drop_column("chat", "kind"))

    forget_migrations()  # as a release from before migrations left it
    make_app()  # a restart with the newer code

    with models.db.connection_context():
        assert {chat.jid: chat.kind for chat in models.Chat.select()} == {
            "status@broadcast": "status", "120363144038483540@newsletter": "newsletter",
            "120363025246125888@g.us": None, "5511999999999@s.whatsapp.net": None}


def test_a_chats_kind_is_never_forgotten_by_an_event_that_does_not_say_it(app):
    with models.db.connection_context():
        instance = models.Instance.find_or_create("evolution", "shop")
        chat_id = models.Chat.record(instance, "120363144038483540@newsletter", None, False, None, "newsletter")
        assert models.Chat.record(instance, "120363144038483540@newsletter", "Canal", False, None) == chat_id
        chat = models.Chat.get_by_id(chat_id)
        assert (chat.kind, chat.name, chat.kind_shown) == ("newsletter", "Canal", "newsletter")


def test_a_database_made_by_an_older_version_gets_the_new_indexes_on_start(make_app):
    def indexed_columns() -> set:
        return {tuple(index.columns) for index in models.db.get_indexes("media_file")}

    make_app()
    with models.db.connection_context():
        for index in models.db.get_indexes("media_file"):
            if tuple(index.columns) in (("content_key", "state"), ("updated_at",)):
                models.db.execute_sql(f'DROP INDEX "{index.name}"')
        assert ("updated_at",) not in indexed_columns()

    forget_migrations()  # as a release from before migrations left it
    make_app()  # a restart with the newer code

    with models.db.connection_context():
        assert {("content_key", "state"), ("updated_at",)} <= indexed_columns()


# --- the write path's fast paths ---------------------------------------------------------

def _client_names() -> set[str]:
    return {client.name for client in models.Client.select()}


def test_a_savepoint_undoes_only_its_own_work(app):
    with models.db.connection_context():
        with models.write_transaction():
            models.Client.insert(name="outer").execute()
            with pytest.raises(RuntimeError):
                with models.savepoint("test"):
                    models.Client.insert(name="inner").execute()
                    with models.savepoint("test"):  # same name: nests
                        models.Client.insert(name="innermost").execute()
                    raise RuntimeError("undo inner")
            with models.savepoint("test"):
                models.Client.insert(name="kept").execute()
        assert {"outer", "kept"} <= _client_names()
        assert not {"inner", "innermost"} & _client_names()


def test_insert_row_gives_the_new_id_or_none_when_the_conflict_skipped_it(app):
    with models.db.connection_context(), models.write_transaction():
        first = models.WebhookEvent.store({"request_id": "a", "route": "/webhook/"}, dedupe_key="same")
        second = models.WebhookEvent.store({"request_id": "b", "route": "/webhook/"}, dedupe_key="same")
        third = models.WebhookEvent.store({"request_id": "c", "route": "/webhook/"}, dedupe_key="other")
    assert isinstance(first, int) and second is None and third not in (None, first)
    with models.db.connection_context():
        assert models.WebhookEvent.get_by_id(first).request_id == "a"


def test_an_instance_uses_its_own_api_credentials_else_its_providers_settings():
    settings = {"WAPI_BASE_URL": "https://api.w-api.app/v1", "WAPI_TOKEN": "env-token",
                "EVOLUTION_BASE_URL": "", "EVOLUTION_API_KEY": None}
    declared = models.Instance(provider="wapi", external_id="A", api_base_url="https://mine.example/v1",
                               api_token="own-token")
    assert declared.api_access(settings) == ("https://mine.example/v1", "own-token")
    assert models.Instance(provider="wapi", external_id="B").api_access(settings) == (
        "https://api.w-api.app/v1", "env-token")
    assert models.Instance(provider="evolution", external_id="C").api_access(settings) == (None, None)
    assert models.Instance(provider="betzap", external_id="D").api_access(settings) == (None, None)


ACCESS_SETTINGS = {"EVOLUTION_BASE_URL": "https://evo.example.com/api/", "EVOLUTION_API_KEY": "env-key",
                   "WAPI_BASE_URL": "https://api.w-api.app", "WAPI_TOKEN": ""}


@pytest.mark.parametrize("provider, own_base, own_token, expected", [
    # an own base URL elsewhere: only the instance's own token goes there, never the .env key
    ("evolution", "https://other.example.com", "own-key", ("https://other.example.com", "own-key")),
    ("evolution", "https://other.example.com", None, ("https://other.example.com", None)),
    ("evolution", "https://other.example.com", "", ("https://other.example.com", None)),
    ("evolution", "http://evo.example.com/api", None, ("http://evo.example.com/api", None)),  # other scheme
    ("evolution", "https://evo.example.com:8443/api", None, ("https://evo.example.com:8443/api", None)),  # port
    ("evolution", "https://evo.example.com/other", None, ("https://evo.example.com/other", None)),  # path
    ("evolution", "https://evo.example.com.evil.test/api", None, ("https://evo.example.com.evil.test/api", None)),
    ("evolution", "https://evo.example.com:bad/api", None, ("https://evo.example.com:bad/api", None)),
    # an own base URL that is the default one, however written: the default key still applies
    ("evolution", "https://evo.example.com/api", None, ("https://evo.example.com/api", "env-key")),
    ("evolution", "HTTPS://EVO.example.com:443/api///", None, ("HTTPS://EVO.example.com:443/api///", "env-key")),
    ("evolution", "https://evo.example.com/api", "own-key", ("https://evo.example.com/api", "own-key")),
    # no override: the defaults, or the own token with the default base
    ("evolution", None, None, ("https://evo.example.com/api/", "env-key")),
    ("evolution", "", None, ("https://evo.example.com/api/", "env-key")),
    ("evolution", None, "own-key", ("https://evo.example.com/api/", "own-key")),
    ("wapi", None, None, ("https://api.w-api.app", None)),  # an empty default key is no key
    # a provider without defaults: only what the instance has
    ("betzap", "https://betzap.example", None, ("https://betzap.example", None)),
    ("betzap", None, "own-key", (None, "own-key")),
])
def test_a_default_key_goes_only_to_the_default_base_url(provider, own_base, own_token, expected):
    instance = models.Instance(provider=provider, external_id="X", api_base_url=own_base, api_token=own_token)
    assert instance.api_access(ACCESS_SETTINGS) == expected


def test_an_overridden_base_url_with_no_default_base_gets_no_default_key():
    settings = {"EVOLUTION_BASE_URL": "", "EVOLUTION_API_KEY": "env-key"}
    instance = models.Instance(provider="evolution", external_id="X", api_base_url="https://mine.example")
    assert instance.api_access(settings) == ("https://mine.example", None)


def test_media_waiting_for_its_twin_is_not_claimed_until_the_twin_is_settled(app, post_webhook):
    image = "evolution/v1_messages.upsert_image_no_base64.json"
    for message_id in ("TWIN-A", "TWIN-B"):
        payload = load_sample(image)
        payload["data"]["key"]["id"] = message_id
        assert post_webhook("/webhook/", payload).get_json()["outcome"] == "processed"
    with models.db.connection_context():
        rows = list(models.MediaFile.select().order_by(models.MediaFile.id))
        assert len(rows) == 2 and rows[0].content_key and rows[0].content_key == rows[1].content_key
        first = models.MediaFile.claim_next("worker-1", 60)
        assert first.id == rows[0].id
        # the twin is due, but its content is downloading: left for later, and no spin on it
        assert models.MediaFile.claim_next("worker-2", 60) is None
        assert models.MediaFile.seconds_until_due() is None
        first.settle("worker-1", "failed", error="test")
        second = models.MediaFile.claim_next("worker-2", 60)
        assert second is not None and second.id == rows[1].id
