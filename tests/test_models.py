"""The schema: an older database is brought up to date in place."""

from __future__ import annotations

from playhouse.migrate import SchemaMigrator, migrate

import models


def _columns(table: str) -> set[str]:
    return {column.name for column in models.db.get_columns(table)}


def test_a_database_made_by_an_older_version_gets_the_new_columns_on_start(make_app, post_webhook):
    make_app()
    with models.db.connection_context():
        migrator = SchemaMigrator.from_database(models.db.obj)
        migrate(migrator.drop_column("instance", "api_token"), migrator.drop_column("media_file", "lease_owner"))
        assert "api_token" not in _columns("instance")

    make_app()  # a restart with the newer code

    with models.db.connection_context():
        assert "api_token" in _columns("instance")
        assert "lease_owner" in _columns("media_file")
