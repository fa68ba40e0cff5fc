"""Fixtures: the real app on a temporary data dir and a real database.

The database is SQLite in the test's temporary folder, or the PostgreSQL
server named by TEST_DATABASE_URL (CI runs the suite on both); on PostgreSQL
every test starts from empty tables.
"""

from __future__ import annotations

import json
import os

import pytest

import models
from server import create_app, start_background_work
from tests.helpers import AppliedWebhooksClient

def _reset_postgres(url: str) -> None:
    database = models.open_database(url)
    with database.connection_context():
        database.drop_tables(models.MODELS, safe=True, cascade=True)
        database.execute_sql('DROP TABLE IF EXISTS "schema_migration"')
    database.close_all()


@pytest.fixture
def make_app(tmp_path):
    """Build apps on one data dir (call it again to "restart" on the same data)."""
    postgres_url = os.environ.get("TEST_DATABASE_URL")
    if postgres_url:
        _reset_postgres(postgres_url)
    apps = []

    def factory(**overrides):
        # No media workers and no campaign sender unless a test asks: their defaults
        # point at real provider hosts, and tests make no traffic beyond 127.0.0.1.
        config = {"DATA_DIR": str(tmp_path / "data"), "TESTING": True, "MEDIA_WORKERS": 0,
                  "CAMPAIGN_SENDER": False, "TUNNEL": "off"}
        if postgres_url:
            config["DATABASE_URL"] = postgres_url
        config.update(overrides)
        app = create_app(config)
        start_background_work(app)  # as serve() does: the tests that ask for workers or a sender get them
        app.test_client_class = AppliedWebhooksClient
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["zaphook.forwarding"].stop()
        app.extensions["zaphook.media"].shutdown()
        app.extensions["zaphook.campaigns"].shutdown()
        app.extensions["zaphook.database"].close_all()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def post_webhook(client):
    """POST a payload (dict, list or raw bytes) to a webhook route as a provider would."""

    def post(path: str = "/webhook/", payload=None, *, headers=None, query=None, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(payload).encode("utf-8")
        return client.post(path, data=data, headers=headers or {}, query_string=query or {},
                           content_type="application/json")

    return post


@pytest.fixture
def live_server(app):
    """The app served by waitress on 127.0.0.1 (a free port), as `python server.py` does."""
    from tests.helpers import ServedApp

    served = ServedApp(app)
    yield served.url
    served.close()
