"""The schema under versioned migrations: an upgrade keeps the data, a newer database is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import models
from server import create_app
from tests.helpers import load_sample

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS_RELEASE = Path(__file__).parent / "fixtures" / "release-66a36d6.db"  # made by main at 66a36d6
MIGRATIONS = sorted(path.stem for path in (ROOT / "migrations").glob("[0-9]*.py"))


def sqlite_app(data_dir: Path):
    return create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": "sqlite:///" + str(data_dir / "zaphook.db"),
                       "TESTING": True, "MEDIA_WORKERS": 0, "CAMPAIGN_SENDER": False, "TUNNEL": "off"})


def close(app) -> None:
    app.extensions["zaphook.media"].shutdown()
    app.extensions["zaphook.campaigns"].shutdown()
    app.extensions["zaphook.database"].close_all()


def test_a_database_of_the_previous_release_is_upgraded_and_keeps_its_data(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(PREVIOUS_RELEASE, data_dir / "zaphook.db")
    app = sqlite_app(data_dir)
    try:
        client = app.test_client()
        texts = sorted(m["provider_message_id"] for m in client.get("/api/messages").get_json()["items"])
        assert len(texts) == 3  # what the previous release stored
        with models.db.connection_context():
            assert {m.name for m in models.migration_runner().status() if m.applied} == set(MIGRATIONS)
            assert "kind" in {column.name for column in models.db.get_columns("chat")}
            assert "jid_alias" in models.db.get_tables()
        answer = client.post("/webhook/?wait=1", json=load_sample("seeds/endpoint_receive_message.json")).get_json()
        assert answer["outcome"] == "processed"
        assert len(client.get("/api/messages").get_json()["items"]) == 4
    finally:
        close(app)


def test_a_fresh_database_gets_its_schema_from_the_migrations(tmp_path):
    app = sqlite_app(tmp_path / "data")
    close(app)
    database = models.open_database("sqlite:///" + str(tmp_path / "data" / "zaphook.db"))
    with database.connection_context():
        rows = models.migration_runner().status()
        assert [(row.name, row.applied is not None) for row in rows] == [(name, True) for name in MIGRATIONS]
        assert set(models.db.get_tables()) >= {model._meta.table_name for model in models.MODELS}
    database.close_all()


def test_a_database_migrated_by_a_newer_release_is_refused_and_left_alone(tmp_path):
    close(sqlite_app(tmp_path / "data"))
    database = models.open_database("sqlite:///" + str(tmp_path / "data" / "zaphook.db"))
    with database.connection_context():
        models.db.execute_sql('INSERT INTO "schema_migration" ("name", "applied") VALUES (?, ?)',
                              ("0099_from_the_future", "2027-01-01 00:00:00"))
    database.close_all()
    with pytest.raises(models.SchemaTooNew, match="0099_from_the_future"):
        sqlite_app(tmp_path / "data")

    from tests.test_server_process import free_port

    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DATABASE_URL="", TUNNEL="off", PORT=str(free_port()))
    started = subprocess.run([sys.executable, str(ROOT / "server.py")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert "cannot start: the database was migrated by a newer zaphook (migration 0099_from_the_future)" \
        in started.stderr and "Traceback" not in started.stderr
    status = subprocess.run([sys.executable, str(ROOT / "server.py"), "migrate", "--status"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 1
    assert "[x] 0001_initial" in status.stdout and "[?] 0099_from_the_future" in status.stdout


def test_migrate_applies_and_status_lists_the_migrations(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DATABASE_URL="", TUNNEL="off")
    before = subprocess.run([sys.executable, str(ROOT / "server.py"), "migrate", "--status"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert before.returncode == 0 and "[ ] 0001_initial" in before.stdout
    assert f"{len(MIGRATIONS)} pending" in before.stdout
    applied = subprocess.run([sys.executable, str(ROOT / "server.py"), "migrate"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0 and applied.stdout.strip() == "applied: " + ", ".join(MIGRATIONS)
    again = subprocess.run([sys.executable, str(ROOT / "server.py"), "migrate"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() == "up to date: nothing to apply"


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (CI runs it)")
def test_a_postgres_database_of_the_previous_release_is_upgraded_and_keeps_its_data(tmp_path):
    """The previous release's schema and rows, on PostgreSQL, then started on by this release.

    The previous release's tables are this release's, less what it did not
    have yet (tables and columns missing from the fixture, and the migration
    history), with PostgreSQL's own types; the rows are the fixture's.
    """
    from peewee import SqliteDatabase, sort_models

    from tests.conftest import _reset_postgres

    url = os.environ["TEST_DATABASE_URL"]
    _reset_postgres(url)
    old = SqliteDatabase(str(PREVIOUS_RELEASE))
    postgres = models.open_database(url)
    current = {model._meta.table_name: model for model in models.MODELS}
    with old.connection_context(), postgres.connection_context():
        tables = sort_models(current[name] for name in old.get_tables() if name in current)  # parents first
        postgres.create_tables(tables)
        for model in tables:
            table = model._meta.table_name
            old_columns = [column.name for column in old.get_columns(table)]
            for column in set(model._meta.columns) - set(old_columns):
                postgres.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
            cursor = old.execute_sql(f'SELECT {", ".join(chr(34) + c + chr(34) for c in old_columns)} FROM "{table}"')
            fields = [model._meta.columns[column] for column in old_columns]
            for row in cursor.fetchall():
                values = [field.db_value(field.python_value(value)) for field, value in zip(fields, row)]
                postgres.execute_sql(f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in old_columns)}) '
                                     f'VALUES ({", ".join(["%s"] * len(values))})', values)
            if "id" in old_columns:
                postgres.execute_sql(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                     f'(SELECT coalesce(max(id), 1) FROM "{table}"))')
        assert "schema_migration" not in postgres.get_tables() and "jid_alias" not in postgres.get_tables()
    postgres.close_all()

    app = create_app({"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": url, "TESTING": True, "MEDIA_WORKERS": 0,
                      "CAMPAIGN_SENDER": False, "TUNNEL": "off"})
    try:
        client = app.test_client()
        assert len(client.get("/api/messages").get_json()["items"]) == 3  # what the previous release stored
        with models.db.connection_context():
            assert {m.name for m in models.migration_runner().status() if m.applied} == set(MIGRATIONS)
            assert "kind" in {column.name for column in models.db.get_columns("chat")}
        answer = client.post("/webhook/?wait=1", json=load_sample("seeds/endpoint_receive_message.json")).get_json()
        assert answer["outcome"] == "processed"
        assert len(client.get("/api/messages").get_json()["items"]) == 4
    finally:
        close(app)
