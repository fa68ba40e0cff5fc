"""The data model: what zaphook knows about clients, instances, chats and messages.

One database object (a proxy) is bound per app by :func:`open_database`. State
changes that must happen once, even when copies of a webhook arrive on several
threads at the same moment, are single conditional SQL statements.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from peewee import (
    SQL,
    Case,
    fn,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    InterfaceError,
    Model,
    OperationalError,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect as connect_url
from playhouse.pool import PooledSqliteDatabase

from handlers import REGISTRY
from handlers.base import (
    CHAT_KIND_NEWSLETTER,
    CHAT_KIND_STATUS,
    STATUS_BROADCAST_JID,
    STATUS_FAILED,
    STATUS_ORDER,
    status_rank,
)

db = DatabaseProxy()
log = logging.getLogger(__name__)

DEFAULT_CLIENT = "default"
# The client the demo's instances belong to (``server.py demo``): kept apart from real data and
# removed as a whole (``server.py demo --clear``, the overview's button).
DEMO_CLIENT = "demo"

OUTCOMES = ("stored", "processed", "duplicate", "ignored", "rejected", "failed")


def utcnow() -> datetime:
    """Now, as the naive UTC datetime every column holds."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_datetime(value: Any) -> Optional[datetime]:
    """A column's datetime as raw SQL hands it back (SQLite gives text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def iso(value: Optional[datetime]) -> Optional[str]:
    """ISO 8601 UTC text for API answers."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back text for computed columns
        value = datetime.fromisoformat(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000).isoformat(timespec="milliseconds") + "Z"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: Any, limit: Optional[int] = None) -> Any:
    """Text safe for every backend.

    PostgreSQL refuses NUL characters in text, and no database driver encodes
    a lone UTF-16 surrogate: JSON may carry one ("\\ud83d", half an emoji cut by
    a JavaScript client), and Python's json keeps it. Both become U+FFFD.
    """
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = _LONE_SURROGATE.sub("\ufffd", value)
        if limit is not None and len(value) > limit:
            value = value[:limit]
    return value


# SQLite's default (1000 pages) makes a webhook's commit copy the write-ahead log into the
# database file several times a second under load; the applier does it instead, off the
# webhooks' path (Applier.checkpoint), and this is what a writer does if it falls behind.
WAL_AUTOCHECKPOINT_PAGES = 10000


def open_database(url: str, max_connections: int = 32):
    """Create the database for a URL and bind the models to it.

    Connections are pooled: a request takes one and gives it back, instead of
    paying for a new connection (and, on SQLite, a WAL checkpoint at close)
    every time. SQLite gets WAL, a busy timeout and IMMEDIATE transactions: a
    transaction takes the write lock when it starts, so a read turning into a
    write can never fail with "database is locked".
    """
    if url.startswith("sqlite:///"):
        database = PooledSqliteDatabase(
            url[len("sqlite:///"):],
            max_connections=max_connections,
            stale_timeout=600,
            timeout=30,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 30000,
                "cache_size": -16000,
                "wal_autocheckpoint": WAL_AUTOCHECKPOINT_PAGES,
            },
            lock_type="IMMEDIATE",
            returning_clause=True,
            check_same_thread=False,
        )
    else:
        # PostgreSQL through psycopg 3 (psycopg2's authors advise against its binary wheel in production).
        scheme, rest = url.split("://", 1)
        if scheme.split("+", 1)[0] in ("postgres", "postgresql", "psycopg3"):
            scheme = "psycopg3+pool"
        url = f"{scheme}://{rest}"
        database = connect_url(url, max_connections=max_connections, stale_timeout=600, timeout=30)
    db.initialize(database)
    return database


def still_bound(database) -> bool:
    """False once another app in this process (tests) rebound the models: a background thread
    of the first app must then stop instead of working on the other app's database."""
    return database is None or db.obj is database


_sqlite_writer = threading.RLock()

# PostgreSQL SQLSTATEs that say "try the transaction again": serialization failure, deadlock,
# lock not available, and the connection-lost classes.
_TRANSIENT_SQLSTATES = ("40001", "40P01", "55P03", "08000", "08003", "08006", "57P01", "57P02", "57P03")
_TRANSIENT_WORDS = ("database is locked", "database table is locked", "deadlock detected",
                    "could not serialize", "server closed the connection", "connection already closed",
                    "terminating connection", "connection not open")


def is_transient(exc: BaseException) -> bool:
    """Whether a database error goes away if the transaction is tried again.

    A deadlock, a serialization failure, a lock timeout or a lost connection
    says nothing about the event: it must be retried (or answered 503 so the
    provider retries), never recorded as the event's failure.
    """
    for error in (exc, getattr(exc, "__cause__", None), getattr(exc, "orig", None)):
        if error is None:
            continue
        if getattr(error, "pgcode", None) in _TRANSIENT_SQLSTATES or \
                getattr(getattr(error, "diag", None), "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        if isinstance(error, (OperationalError, InterfaceError)) or type(error).__name__ in (
                "OperationalError", "InterfaceError", "SerializationFailure", "DeadlockDetected"):
            text = str(error).lower()
            if any(words in text for words in _TRANSIENT_WORDS):
                return True
    return False


@contextmanager
def write_transaction():
    """A transaction that writes, queued behind the other writers of this process.

    SQLite has one write lock per file; threads that wait for it inside SQLite
    are put to sleep by its busy handler for growing intervals (up to 100 ms),
    which wrecks latency under concurrent webhooks. Queueing them on a Python
    lock first hands the database over the moment it is free. (Other processes
    still wait through busy_timeout.) PostgreSQL needs no such queue.
    """
    if isinstance(db.obj, SqliteDatabase):
        with _sqlite_writer, db.atomic():
            yield
    else:
        with db.atomic():
            yield


@contextmanager
def savepoint(name: str = "zaphook"):
    """A savepoint inside the current transaction: its work is undone alone if the block raises.

    Peewee names each of its savepoints with a fresh uuid, so every one is a
    new statement for SQLite to prepare; this one keeps a fixed name (savepoints
    of the same name nest) and costs two prepared statements per use.
    """
    quoted = '"' + name.replace('"', '') + '"'
    db.execute_sql(f"SAVEPOINT {quoted}")
    try:
        yield
    except BaseException:
        db.execute_sql(f"ROLLBACK TO SAVEPOINT {quoted}")
        db.execute_sql(f"RELEASE SAVEPOINT {quoted}")
        raise
    db.execute_sql(f"RELEASE SAVEPOINT {quoted}")


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SCHEMA_LOCK = "zaphook:schema"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer zaphook than this one."""


def migration_runner():
    from playhouse.migrations import Runner

    return Runner(db.obj, str(MIGRATIONS_DIR))


@contextmanager
def schema_lock():
    """One process at a time changes the schema: a PostgreSQL advisory lock, SQLite's write lock.

    Two processes started together on a fresh database would otherwise both
    create the tables, and one would crash (DuplicateTable, UniqueViolation).
    """
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_SCHEMA_LOCK,))
        try:
            with db.atomic():
                yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_SCHEMA_LOCK,))
    else:
        with _sqlite_writer, db.atomic("IMMEDIATE"):
            yield


def migrate_schema() -> list[str]:
    """Bring the database to this release's schema (migrations/), under the schema lock.

    A database made before zaphook had migrations (tables, no history) is
    brought up to date the old way, which only ever added tables and
    nullable columns, and every migration is recorded as applied. A database
    whose history names a migration this release does not have was made by
    a newer zaphook: SchemaTooNew, and nothing is touched. Returns the names
    of the migrations applied (or recorded) now.
    """
    runner = migration_runner()
    with schema_lock():
        unknown = [migration.name for migration in runner.status() if migration.path is None]
        if unknown:
            raise SchemaTooNew(f"the database was migrated by a newer zaphook (migration {', '.join(unknown)}); "
                               "run that release or newer, or restore a backup made before the upgrade")
        if not runner.History.table_exists() and WebhookEvent._meta.table_name in db.get_tables():
            db.create_tables(MODELS, safe=True)
            add_missing_columns()
            applied = runner.fake()
        else:
            applied = runner.up()
        Client.insert(name=DEFAULT_CLIENT, created_at=utcnow()).on_conflict_ignore().execute()
    return applied


def create_schema() -> None:
    """The schema zaphook needs, at start-up (see migrate_schema)."""
    applied = migrate_schema()
    if applied:
        log.info("database schema: applied %s", ", ".join(applied))


def add_missing_columns() -> None:
    """Bring a database made by an older zaphook up to date.

    Schema changes so far only add nullable or defaulted columns, which can be
    added in place on SQLite and PostgreSQL; a change that cannot be done this
    way will need a real migration step of its own. A column whose value the
    old rows already imply is filled in as it is added (FILLED_WHEN_ADDED).
    """
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(db.obj)
    operations = []
    added = []
    for model in MODELS:
        table = model._meta.table_name
        existing = {column.name for column in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in existing:
                operations.append(migrator.add_column(table, field.column_name, field))
                added.append((table, field.column_name))
    if operations:
        with db.atomic():
            migrate(*operations)
            for column in added:
                for statement, params in FILLED_WHEN_ADDED.get(column, ()):
                    run_sql(statement, params)


# What the rows of an older database already say about a column it did not
# have: run once, when that column is added, so old rows read like new ones.
FILLED_WHEN_ADDED = {
    ("chat", "kind"): (
        ('UPDATE "chat" SET "kind" = ? WHERE "jid" = ?', (CHAT_KIND_STATUS, STATUS_BROADCAST_JID)),
        ('UPDATE "chat" SET "kind" = ? WHERE "jid" LIKE ?', (CHAT_KIND_NEWSLETTER, "%@newsletter")),
    ),
}


def row_lock(key: str) -> None:
    """Serialise the transactions that touch one key until the current one ends.

    On SQLite every write transaction already holds the one write lock. On
    PostgreSQL (READ COMMITTED) a message and a status for it arriving at the
    same moment could each miss the other; a transaction-scoped advisory lock
    on the message key makes one wait for the other.
    """
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


_MISSING = object()
_STATEMENTS: dict = {}


def insert_row(model: type["BaseModel"], row: dict, conflict: str = "", want_id: bool = True) -> Optional[int]:
    """INSERT one row with SQL built once per model and conflict clause.

    Peewee builds a statement's SQL anew on every call, which costs several
    times what the database takes to run it (bench/ingest.py shows it); the
    few statements every webhook runs use this instead. Columns missing from
    ``row`` take their field's default. Returns the id of the inserted (or
    upserted) row, or None when ``conflict`` (e.g. "ON CONFLICT ... DO NOTHING")
    skipped it. With ``want_id=False`` an upsert (DO UPDATE) returns None.

    On SQLite a RETURNING clause doubles what an INSERT costs, so the id
    comes from the cursor (rowcount and lastrowid) whenever it can: always
    except for an upsert's id, which only RETURNING tells.
    """
    key = ("insert", model, conflict, want_id, db.param)
    entry = _STATEMENTS.get(key)
    if entry is None:
        fields = [f for f in model._meta.sorted_fields if not isinstance(f, AutoField)]
        columns = ", ".join(f'"{f.column_name}"' for f in fields)
        marks = ", ".join([db.param] * len(fields))
        upsert = "DO UPDATE" in conflict.upper()
        from_cursor = isinstance(db.obj, SqliteDatabase) and not upsert
        returning = "" if from_cursor or (upsert and not want_id) else ' RETURNING "id"'
        sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({marks}) {conflict}{returning}'
        entry = _STATEMENTS[key] = (sql, [_column_plan(f) for f in fields], from_cursor, bool(returning))
    sql, plan, from_cursor, returning = entry
    params = []
    get = row.get
    for name, default, default_is_factory, ready_types, db_value, is_foreign_key in plan:
        value = get(name, _MISSING)
        if value is _MISSING:
            value = default() if default_is_factory else default
        if value is None or type(value) in ready_types:
            params.append(value)  # what db_value would return unchanged
            continue
        if is_foreign_key and isinstance(value, Model):
            value = value.get_id()
        params.append(db_value(value))
    cursor = db.execute_sql(sql, params)
    if from_cursor:
        return cursor.lastrowid if cursor.rowcount == 1 else None
    if not returning:
        return None
    found = cursor.fetchall()
    return found[0][0] if found else None


# Python types that a field's db_value() passes through unchanged: no call needed.
_READY_TYPES = (
    (ForeignKeyField, (int,)),  # an id: the referenced AutoField passes it through
    (BooleanField, (bool,)),
    (DateTimeField, (datetime,)),
    (IntegerField, (int,)),  # BigIntegerField too; bool is not int here (type() is exact)
    (DoubleField, (float,)),
    (CharField, (str,)),
    (TextField, (str,)),
)


def _column_plan(field) -> tuple:
    ready: tuple = ()
    for kind, types in _READY_TYPES:
        if isinstance(field, kind):
            ready = types
            break
    return (field.name, field.default, callable(field.default), ready, field.db_value,
            isinstance(field, ForeignKeyField))


def run_sql(text: str, params: Iterable[Any]):
    """Run a hot-path statement written with "?" placeholders; return the cursor."""
    sql = text if db.param == "?" else text.replace("?", db.param)
    return db.execute_sql(sql, list(params))


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Client(BaseModel):
    """The customer who owns instances."""

    name = CharField(unique=True)
    created_at = DateTimeField(default=utcnow)

    @classmethod
    def default(cls) -> "Client":
        return cls.get(cls.name == DEFAULT_CLIENT)

    @classmethod
    def named(cls, name: str) -> "Client":
        """The client of that name, created the first time it is named."""
        cls.insert(name=clean(name, 255), created_at=utcnow()).on_conflict_ignore().execute()
        return cls.get(cls.name == clean(name, 255))


def provider_api_defaults(provider: str, settings: dict) -> tuple[Optional[str], Optional[str]]:
    """The settings' (.env) default base URL and credential of a provider's API; (None, None) if it has none."""
    unit = REGISTRY.get(provider)
    return unit.api_defaults(settings) if unit is not None else (None, None)


def _api_base_key(url: Optional[str]) -> Optional[tuple]:
    """What makes two API base URLs the same place: scheme, host, port and path (no trailing slash)."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: only the very same text is the same place
        return ("unparsed", url.strip())
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme),
            parts.path.rstrip("/"))


def same_api_base(first: Optional[str], second: Optional[str]) -> bool:
    """Whether two API base URLs name the same place (two missing ones are the same: the default)."""
    return _api_base_key(first) == _api_base_key(second)


class Instance(BaseModel):
    """One WhatsApp number connected through one provider."""

    client = ForeignKeyField(Client, backref="instances")
    provider = CharField()
    external_id = CharField()  # the provider's instance id or name
    name = CharField(null=True)
    own_jid = CharField(null=True)
    connection_state = CharField(default="unknown")
    state_reason = CharField(null=True)
    state_changed_at = DateTimeField(null=True)
    connected_at = DateTimeField(null=True)
    disconnected_at = DateTimeField(null=True)
    last_event_at = DateTimeField(null=True)
    # The provider API's credentials for this instance (media download, sending);
    # empty ones fall back to the .env defaults. Secret: never shown.
    api_token = TextField(null=True)
    api_base_url = CharField(null=True)
    created_at = DateTimeField(default=utcnow)
    # The day's sending health (campaigns): counters of health_day (UTC date), reset by the first
    # change of a new day; health_score 0-100 falls with errors and rises with deliveries.
    health_day = CharField(null=True)
    sent_today = IntegerField(default=0)
    delivered_today = IntegerField(default=0)
    read_today = IntegerField(default=0)
    failed_today = IntegerField(default=0)
    consecutive_errors = IntegerField(default=0)
    health_score = IntegerField(default=100)

    class Meta:
        indexes = ((("provider", "external_id"), True),)

    @classmethod
    def find(cls, provider: str, external_id: str) -> Optional["Instance"]:
        return cls.get_or_none((cls.provider == provider) & (cls.external_id == external_id))

    @classmethod
    def find_or_create(cls, provider: str, external_id: str) -> "Instance":
        """The instance, created under the default client the first time it is seen."""
        instance = cls.find(provider, external_id)
        if instance is None:
            with write_transaction():
                cls.insert(
                    client=Client.default(), provider=provider, external_id=clean(external_id, 255),
                    created_at=utcnow(),
                ).on_conflict_ignore().execute()
            instance = cls.find(provider, external_id)
        return instance

    @classmethod
    def register(cls, provider: str, external_id: str, values: dict) -> tuple["Instance", bool]:
        """Create an instance a person declared (with its credentials); False when it already exists."""
        row = {"client": Client.default(), **values, "provider": provider,
               "external_id": clean(external_id, 255), "created_at": utcnow()}
        with write_transaction():
            created = insert_row(cls, row, conflict='ON CONFLICT ("provider", "external_id") DO NOTHING')
        return cls.find(provider, external_id), created is not None

    def api_access(self, settings: dict) -> tuple[Optional[str], Optional[str]]:
        """The provider API's base URL and credential for this instance: its own, else the settings' defaults.

        A credential stays with its host: the settings' default key belongs to the
        settings' default base URL, so an instance whose own base URL points elsewhere
        gets only its own api_token (or none), never the default key.
        """
        default_base, default_token = provider_api_defaults(self.provider, settings)
        if self.api_base_url and not same_api_base(self.api_base_url, default_base):
            return self.api_base_url, self.api_token or None
        return self.api_base_url or default_base, self.api_token or default_token

    def touch(self, at: datetime) -> None:
        """Move last_event_at forward (never back: events arrive out of order)."""
        run_sql('UPDATE "instance" SET "last_event_at" = ? WHERE "id" = ? '
                'AND ("last_event_at" IS NULL OR "last_event_at" < ?)', (at, self.id, at))

    def record_connection(self, state: str, at: datetime, reason: Optional[str] = None,
                          own_jid: Optional[str] = None) -> bool:
        """Set the connection state unless a newer state change is already known."""
        values: dict = {
            Instance.connection_state: state,
            Instance.state_changed_at: at,
            Instance.state_reason: clean(reason, 255),
        }
        if state == "connected":
            values[Instance.connected_at] = at
        elif state == "disconnected":
            values[Instance.disconnected_at] = at
        if own_jid:
            values[Instance.own_jid] = own_jid
        changed = Instance.update(values).where(
            (Instance.id == self.id)
            & (Instance.state_changed_at.is_null() | (Instance.state_changed_at <= at))
        ).execute()
        return bool(changed)


class WebhookEvent(BaseModel):
    """One HTTP request as it was received, before anything was made of it."""

    # What the API and exports say instead of the body of an untrusted request (a code the dashboard translates).
    HIDDEN_BODY_REASON = "untrusted"

    request_id = CharField()
    received_at = DateTimeField(default=utcnow)
    method = CharField(default="POST")
    route = CharField()
    remote_addr = CharField(null=True)
    headers = TextField(default="{}")  # JSON of the headers worth keeping
    content_type = CharField(null=True)
    body = TextField(null=True)
    body_encoding = CharField(default="utf-8")  # utf-8 | base64 | untrusted (first 4 KiB, base64)
    body_size = IntegerField(default=0)
    provider = CharField(null=True)
    kind = CharField(null=True)
    event_name = CharField(null=True)
    outcome = CharField(default="stored", index=True)
    error = TextField(null=True)
    http_status = IntegerField(default=200)
    instance = ForeignKeyField(Instance, null=True, backref="events", on_delete="SET NULL")
    message_id = CharField(null=True, index=True)  # the first provider message id in it
    dedupe_key = CharField(null=True, unique=True)
    duplicate_of = ForeignKeyField("self", null=True, on_delete="SET NULL")
    processed_at = DateTimeField(null=True)
    replay_count = IntegerField(default=0)
    # The body as the API shows it (secrets redacted): the event search looks
    # here, never in the body, so it cannot be used to guess a redacted value.
    # Made by the applier for an event it applies, when the request is stored
    # for any other. NULL while an event waits for the applier, for rows stored
    # before it existed, for bodies that failed authentication and for bodies
    # that are not text.
    search_text = TextField(null=True)
    # The JSON body of zaphook's answer (its status is http_status), written with the row: see
    # ingest.answer_body. The ids it names are left out (the row's own id is not known before its
    # INSERT); event_response puts them back. NULL for rows stored before it existed.
    response = TextField(null=True)
    # What the request was in a few words (ingest.summarise): JSON, made from the handler's result.
    summary = TextField(null=True)
    # The event a "replay with changes" was made from (the original is left untouched). Its index
    # is made by migration 0004 only: create_tables(safe=True) on a database older than the column
    # would make SQLite index the quoted name as a constant.
    replay_of = ForeignKeyField("self", null=True, on_delete="SET NULL", backref="edited_replays", index=False)

    @classmethod
    def store(cls, row: dict, dedupe_key: Optional[str] = None) -> Optional[int]:
        """Insert the raw request; None when an event with the same dedupe key exists."""
        return insert_row(cls, {**row, "dedupe_key": dedupe_key},
                          conflict='ON CONFLICT ("dedupe_key") DO NOTHING')

    @property
    def failed_authentication(self) -> bool:
        """Whether this request was refused before its sender was trusted.

        A wrong or missing webhook token or Meta signature (or a cross-site
        post, which carries none): only those are stored "untrusted" (see
        ingest.Pipeline.reject). Their body is kept, cut short, for inspection
        of the database on this machine, but never shown, searched or replayed.
        """
        return self.outcome == "rejected" and self.body_encoding == "untrusted"

    @property
    def headers_dict(self) -> dict:
        try:
            return json.loads(self.headers or "{}")
        except ValueError:
            return {}

    def body_bytes(self) -> bytes:
        import base64

        if self.body is None:
            return b""
        if self.body_encoding in ("base64", "untrusted"):
            return base64.b64decode(self.body)
        return self.body.encode("utf-8")


# An upsert's last_message_at: it only moves forward.
_LATER_LAST_MESSAGE_AT = ('CASE WHEN "chat"."last_message_at" IS NULL OR excluded."last_message_at" > '
                          '"chat"."last_message_at" THEN excluded."last_message_at" ELSE "chat"."last_message_at" END')


class Chat(BaseModel):
    """A conversation of an instance: one person, one group, the Status posts or a channel."""

    instance = ForeignKeyField(Instance, backref="chats", on_delete="CASCADE")
    jid = CharField()
    name = CharField(null=True)
    is_group = BooleanField(default=False)
    # "status" (status@broadcast) or "newsletter" (a channel), as MessageEvent.chat_kind
    # says; NULL for one-to-one chats and groups (kind_shown is what the API shows).
    kind = CharField(null=True)
    last_message_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    # What the API calls each sort of chat (?kind= takes these).
    KINDS = ("direct", "group", CHAT_KIND_STATUS, CHAT_KIND_NEWSLETTER)

    class Meta:
        indexes = ((("instance", "jid"), True),)

    @classmethod
    def record(cls, instance: Instance, jid: str, name: Optional[str], is_group: bool,
               at: Optional[datetime], kind: Optional[str] = None) -> int:
        """Create or refresh the chat in one statement; returns its id.

        The name is replaced only by a non-empty one, and the kind only by a
        known one (an event that does not say is no reason to forget it);
        last_message_at only moves forward.
        """
        return insert_row(cls, {
            "instance": instance.id, "jid": jid, "name": clean(name, 255), "is_group": is_group,
            "kind": kind, "last_message_at": at,
        }, conflict=(
            'ON CONFLICT ("instance_id", "jid") DO UPDATE SET '
            '"name" = COALESCE(excluded."name", "chat"."name"), '
            '"kind" = COALESCE(excluded."kind", "chat"."kind"), '
            f'"last_message_at" = {_LATER_LAST_MESSAGE_AT}'))

    @classmethod
    def absorb(cls, instance: Instance, alias_jid: str, phone_jid: str) -> None:
        """Make the chat kept under an alias (a LID, a BSUID) part of the phone's chat.

        Its messages move to the phone's chat, made now if there is none (so
        the chat's id changes); the name of whichever chat spoke last stays
        (the other's when it has none), with the later last_message_at and
        the earlier created_at. Its messages by the alias are by the phone.
        Upserting the phone's chat instead of renaming this one cannot
        collide with a phone chat another transaction is creating.
        """
        alias_chat = cls.get_or_none((cls.instance == instance.id) & (cls.jid == alias_jid))
        if alias_chat is None:
            return
        phone_chat_id = insert_row(cls, {
            "instance": instance.id, "jid": phone_jid, "name": alias_chat.name,
            "is_group": alias_chat.is_group, "kind": alias_chat.kind, "last_message_at": alias_chat.last_message_at,
            "created_at": alias_chat.created_at,
        }, conflict=(
            'ON CONFLICT ("instance_id", "jid") DO UPDATE SET '
            '"name" = CASE WHEN excluded."last_message_at" > "chat"."last_message_at" '
            'THEN COALESCE(excluded."name", "chat"."name") ELSE COALESCE("chat"."name", excluded."name") END, '
            f'"last_message_at" = {_LATER_LAST_MESSAGE_AT}, '
            '"created_at" = CASE WHEN excluded."created_at" < "chat"."created_at" '
            'THEN excluded."created_at" ELSE "chat"."created_at" END'))
        run_sql('UPDATE "message" SET "chat_id" = ?, "sender_jid" = CASE WHEN "sender_jid" = ? THEN ? '
                'ELSE "sender_jid" END WHERE "chat_id" = ?', (phone_chat_id, alias_jid, phone_jid, alias_chat.id))
        # Deleting a chat deletes its messages (ON DELETE CASCADE): only an empty one goes.
        run_sql('DELETE FROM "chat" WHERE "id" = ? AND NOT EXISTS '
                '(SELECT 1 FROM "message" WHERE "chat_id" = ?)', (alias_chat.id, alias_chat.id))

    @property
    def kind_shown(self) -> str:
        """One of KINDS: the stored kind, else "group" or "direct"."""
        return self.kind or ("group" if self.is_group else "direct")

    @classmethod
    def of_kind(cls, kind: str):
        """The condition that selects the chats the API shows as ``kind`` (one of KINDS)."""
        if kind in (CHAT_KIND_STATUS, CHAT_KIND_NEWSLETTER):
            return cls.kind == kind
        return cls.kind.is_null() & (cls.is_group == (kind == "group"))


def phone_digits(jid: str) -> Optional[str]:
    """The digits of a phone JID ("5511...@s.whatsapp.net"), None for any other id."""
    return jid.split("@", 1)[0] if jid.endswith("@s.whatsapp.net") else None


class Contact(BaseModel):
    """A person an instance has talked to, with the name they go by."""

    instance = ForeignKeyField(Instance, backref="contacts", on_delete="CASCADE")
    jid = CharField()
    name = CharField(null=True)
    phone = CharField(null=True)
    profile_picture_url = TextField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("instance", "jid"), True),)

    @classmethod
    def record(cls, instance: Instance, jid: str, name: Optional[str] = None,
               profile_picture_url: Optional[str] = None) -> None:
        insert_row(cls, {
            "instance": instance.id, "jid": jid, "name": clean(name, 255), "phone": phone_digits(jid),
            "profile_picture_url": clean(profile_picture_url),
        }, conflict=(
            'ON CONFLICT ("instance_id", "jid") DO UPDATE SET '
            '"name" = COALESCE(excluded."name", "contact"."name"), '
            '"profile_picture_url" = COALESCE(excluded."profile_picture_url", "contact"."profile_picture_url"), '
            '"updated_at" = excluded."updated_at"'), want_id=False)

    @classmethod
    def absorb(cls, instance: Instance, alias_jid: str, phone_jid: str) -> None:
        """Make the contact kept under an alias (a LID, a BSUID) part of the phone's contact.

        Of the two, the one updated last gives the name and picture it has,
        the other fills what it lacks; the alias's row goes.
        """
        alias_contact = cls.get_or_none((cls.instance == instance.id) & (cls.jid == alias_jid))
        if alias_contact is None:
            return
        newer_first = ('CASE WHEN excluded."updated_at" > "contact"."updated_at" '
                       'THEN COALESCE(excluded."{0}", "contact"."{0}") ELSE COALESCE("contact"."{0}", excluded."{0}") END')
        insert_row(cls, {
            "instance": instance.id, "jid": phone_jid, "name": alias_contact.name, "phone": phone_digits(phone_jid),
            "profile_picture_url": alias_contact.profile_picture_url, "updated_at": alias_contact.updated_at,
        }, conflict=(
            'ON CONFLICT ("instance_id", "jid") DO UPDATE SET '
            f'"name" = {newer_first.format("name")}, '
            f'"profile_picture_url" = {newer_first.format("profile_picture_url")}, '
            '"updated_at" = CASE WHEN excluded."updated_at" > "contact"."updated_at" '
            'THEN excluded."updated_at" ELSE "contact"."updated_at" END'), want_id=False)
        alias_contact.delete_instance()


class Message(BaseModel):
    """A message sent or received on an instance; unique per instance and provider id."""

    instance = ForeignKeyField(Instance, backref="messages", on_delete="CASCADE")
    chat = ForeignKeyField(Chat, backref="messages", on_delete="CASCADE")
    provider = CharField()
    provider_message_id = CharField()
    direction = CharField()  # in | out
    from_me = BooleanField()
    sender_jid = CharField(null=True)
    sender_name = CharField(null=True)
    type = CharField()
    raw_type = CharField(null=True)
    text = TextField(null=True)
    caption = TextField(null=True)
    timestamp = DateTimeField(null=True, index=True)
    status = CharField(default="pending")
    sent_at = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    read_at = DateTimeField(null=True)
    played_at = DateTimeField(null=True)
    failed_at = DateTimeField(null=True)
    error = TextField(null=True)
    quoted_message_id = CharField(null=True)
    quoted_text = TextField(null=True)  # the payload's snippet of the quoted message (migration 0008)
    forwarded = BooleanField(default=False)
    reaction_to = CharField(null=True)
    reaction_emoji = CharField(null=True)
    latitude = DoubleField(null=True)
    longitude = DoubleField(null=True)
    location_name = CharField(null=True)
    contacts = TextField(null=True)  # JSON list of shared contact cards
    interactive_id = CharField(null=True)
    is_voice = BooleanField(default=False)
    edited_at = DateTimeField(null=True)
    deleted_at = DateTimeField(null=True)
    event = ForeignKeyField(WebhookEvent, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("instance", "provider_message_id"), True),)

    @classmethod
    def find(cls, instance: Instance, provider_message_id: str) -> Optional["Message"]:
        return cls.get_or_none(
            (cls.instance == instance) & (cls.provider_message_id == provider_message_id)
        )

    @classmethod
    def id_of(cls, instance: Instance, provider_message_id: str) -> Optional[int]:
        row = run_sql('SELECT "id" FROM "message" WHERE "instance_id" = ? AND "provider_message_id" = ?',
                      (instance.id, provider_message_id)).fetchone()
        return row[0] if row else None

    @classmethod
    def record(cls, instance: Instance, chat_id: int, values: dict) -> tuple[int, bool]:
        """Insert the message once; a second copy only fills fields still empty.

        Returns the message id and whether this call created it.
        """
        row = {key: clean(value) for key, value in values.items() if value is not None}
        created_id = insert_row(cls, {"instance": instance.id, "chat": chat_id, **row},
                                conflict='ON CONFLICT ("instance_id", "provider_message_id") DO NOTHING')
        if created_id is not None:
            return created_id, True
        message = cls.find(instance, values["provider_message_id"])
        fill = {
            getattr(cls, key): value for key, value in row.items()
            if key not in ("status", "sent_at", "delivered_at", "read_at", "played_at", "failed_at")
            and value not in ("", False) and getattr(message, key) in (None, "")
        }
        if fill:
            cls.update(fill).where(cls.id == message.id).execute()
        return message.id, False

    @staticmethod
    def apply_status(message_id: int, status: str, at: datetime, error: Optional[str] = None) -> bool:
        """Move the status forward with a conditional UPDATE; never backwards.

        pending < sent < delivered < read < played. A late status only fills
        its own time if that is empty. "failed" applies only to a message not
        yet delivered, and a later delivered or read wins over it. Returns
        whether the status moved.
        """
        rank = status_rank(status)
        if status == STATUS_FAILED:
            allowed_from = ["pending", "sent"]
        else:
            allowed_from = [s for s in STATUS_ORDER if status_rank(s) < rank]
            if rank >= status_rank("delivered"):
                allowed_from.append(STATUS_FAILED)
        if not allowed_from:
            return False
        marks = ", ".join("?" * len(allowed_from))
        time_column = f"{status}_at" if status != "pending" else None
        assignments = '"status" = ?'
        params: list = [status]
        if time_column:
            assignments += f', "{time_column}" = COALESCE("{time_column}", ?)'
            params.append(at)
        if status == STATUS_FAILED:
            assignments += ', "error" = ?'
            params.append(clean(error))
        moved = run_sql(f'UPDATE "message" SET {assignments} WHERE "id" = ? AND "status" IN ({marks})',
                        params + [message_id, *allowed_from]).rowcount
        if not moved and time_column:
            run_sql(f'UPDATE "message" SET "{time_column}" = ? WHERE "id" = ? AND "{time_column}" IS NULL',
                    (at, message_id))
        return bool(moved)


class MessageStatusChange(BaseModel):
    """Every status a message went through, with the event that said so.

    A status can arrive before its message (providers do not keep order); it
    is kept with ``message`` empty and applied when the message arrives.
    """

    instance = ForeignKeyField(Instance, on_delete="CASCADE")
    provider_message_id = CharField()
    message = ForeignKeyField(Message, null=True, backref="status_changes", on_delete="CASCADE")
    status = CharField()
    timestamp = DateTimeField()
    error = TextField(null=True)
    event = ForeignKeyField(WebhookEvent, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("instance", "provider_message_id", "status"), True),)

    @classmethod
    def record(cls, instance: Instance, provider_message_id: str, status: str, at: datetime,
               message_id: Optional[int], event_id: Optional[int], error: Optional[str] = None) -> None:
        """Keep the status in the history (once per message and status)."""
        insert_row(cls, {
            "instance": instance.id, "provider_message_id": provider_message_id, "message": message_id,
            "status": status, "timestamp": at, "error": clean(error), "event": event_id,
        }, conflict='ON CONFLICT ("instance_id", "provider_message_id", "status") DO NOTHING')

    @classmethod
    def attach_waiting(cls, instance: Instance, provider_message_id: str, message_id: int) -> list[tuple]:
        """Link the statuses that arrived before their message; return (status, time, error) of each."""
        rows = run_sql(
            'UPDATE "message_status_change" SET "message_id" = ? WHERE "instance_id" = ? '
            'AND "provider_message_id" = ? AND "message_id" IS NULL RETURNING "status", "timestamp", "error"',
            (message_id, instance.id, provider_message_id)).fetchall()
        return [(status, cls.timestamp.python_value(at), error) for status, at, error in rows]


class Presence(BaseModel):
    """The latest presence of a person in a chat: typing, recording, online, offline."""

    instance = ForeignKeyField(Instance, on_delete="CASCADE")
    chat_jid = CharField()
    participant_jid = CharField(default="")
    state = CharField()
    updated_at = DateTimeField()

    class Meta:
        indexes = ((("instance", "chat_jid", "participant_jid"), True),)

    @classmethod
    def record(cls, instance: Instance, chat_jid: str, participant_jid: Optional[str], state: str,
               at: datetime) -> None:
        """Upsert the presence unless a newer one is already stored."""
        cls.insert(
            instance=instance, chat_jid=chat_jid, participant_jid=participant_jid or "",
            state=state, updated_at=at,
        ).on_conflict(
            conflict_target=[cls.instance, cls.chat_jid, cls.participant_jid],
            update={cls.state: SQL("excluded.state"), cls.updated_at: SQL("excluded.updated_at")},
            where=(cls.updated_at <= SQL("excluded.updated_at")),
        ).execute()

    @classmethod
    def absorb(cls, instance: Instance, alias_jid: str, phone_jid: str) -> None:
        """Presences kept under an alias (as chat or participant) become the phone's.

        Where the phone already has its own presence in the same place, that one stays.
        """
        for column, other in (("chat_jid", "participant_jid"), ("participant_jid", "chat_jid")):
            run_sql(f'DELETE FROM "presence" WHERE "instance_id" = ? AND "{column}" = ? AND EXISTS ('
                    f'SELECT 1 FROM "presence" AS "phone" WHERE "phone"."instance_id" = "presence"."instance_id" '
                    f'AND "phone"."{column}" = ? AND "phone"."{other}" = "presence"."{other}")',
                    (instance.id, alias_jid, phone_jid))
            run_sql(f'UPDATE "presence" SET "{column}" = ? WHERE "instance_id" = ? AND "{column}" = ?',
                    (phone_jid, instance.id, alias_jid))


class JidAlias(BaseModel):
    """Another id a person of an instance goes by, and the phone JID it stands for.

    WhatsApp's LIDs ("…@lid") and Meta's BSUIDs ("bsuid:…") name a person
    without their number. A payload that shows both forms teaches the link
    (handlers.base.KnownAlias); from then on the person's messages are filed
    under the phone JID whichever form names them, so one person stays one
    chat. Links are kept per instance.
    """

    instance = ForeignKeyField(Instance, on_delete="CASCADE")
    alias_jid = CharField()
    phone_jid = CharField()
    learnt_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("instance", "alias_jid"), True),)

    @classmethod
    def learn(cls, instance: Instance, alias_jid: str, phone_jid: str) -> bool:
        """Remember that the alias stands for the phone; True when that is news.

        News is a link not known before, or one whose phone changed (a number
        moved to another account keeps its LID); a link known already is left
        as it is, in the same statement.
        """
        learnt = insert_row(cls, {
            "instance": instance.id, "alias_jid": clean(alias_jid, 255), "phone_jid": clean(phone_jid, 255),
            "learnt_at": utcnow(),
        }, conflict=(
            'ON CONFLICT ("instance_id", "alias_jid") DO UPDATE SET '
            '"phone_jid" = excluded."phone_jid", "learnt_at" = excluded."learnt_at" '
            'WHERE "jid_alias"."phone_jid" <> excluded."phone_jid"'))
        return learnt is not None

    @classmethod
    def phone_for(cls, instance: Instance, alias_jid: str) -> Optional[str]:
        """The phone JID the alias stands for on this instance, None when not learnt."""
        row = run_sql('SELECT "phone_jid" FROM "jid_alias" WHERE "instance_id" = ? AND "alias_jid" = ?',
                      (instance.id, alias_jid)).fetchone()
        return row[0] if row else None


class MediaFile(BaseModel):
    """An attachment of a message, with every descriptor needed to fetch it later."""

    message = ForeignKeyField(Message, unique=True, backref="media_files", on_delete="CASCADE")
    instance = ForeignKeyField(Instance, on_delete="CASCADE")
    media_type = CharField()
    state = CharField(default="pending", index=True)  # pending | downloading | done | failed | expired
    mimetype = CharField(null=True)
    file_name = CharField(null=True)
    file_length = BigIntegerField(null=True)
    media_key = CharField(null=True)  # secret: redacted in every answer
    direct_path = TextField(null=True)
    url = TextField(null=True)
    file_sha256 = CharField(null=True)
    file_enc_sha256 = CharField(null=True)
    caption = TextField(null=True)
    width = IntegerField(null=True)
    height = IntegerField(null=True)
    seconds = IntegerField(null=True)
    is_voice = BooleanField(default=False)
    is_animated = BooleanField(default=False)
    media_id = CharField(null=True)  # Meta's media id
    inline_path = TextField(null=True)  # a base64 body written to a file under DATA_DIR
    inline_size = BigIntegerField(null=True)
    inline_sha256 = CharField(null=True)
    local_path = TextField(null=True)
    stored_sha256 = CharField(null=True)
    stored_size = BigIntegerField(null=True)
    attempts = IntegerField(default=0)
    error = TextField(null=True)
    # The same reason as a code and its parameters (JSON) for the dashboard (codes.py, migration 0007).
    error_code = CharField(null=True)
    error_params = TextField(null=True)
    failed_check = CharField(null=True)  # e.g. "mac", "file_sha256" when verification refused the bytes
    way = CharField(null=True)  # how the stored bytes were obtained: inline | cdn | copy | the provider's name (its API)
    # What identifies the content itself, so the same media delivered twice is fetched once.
    content_key = CharField(null=True)  # indexed with state (see Meta): twins are looked up by both
    next_attempt_at = DateTimeField(null=True)
    lease_owner = CharField(null=True)  # the worker downloading it...
    lease_until = DateTimeField(null=True)  # ...which renews this while it is alive
    finished_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow, index=True)  # the dashboard polls MAX() of it

    STATES = ("pending", "downloading", "done", "failed", "expired")

    class Meta:
        indexes = ((("content_key", "state"), False),)

    @classmethod
    def record(cls, message_id: int, instance: Instance, values: dict) -> None:
        row = {key: clean(value) for key, value in values.items() if value is not None}
        insert_row(cls, {"message": message_id, "instance": instance.id, **row},
                   conflict='ON CONFLICT ("message_id") DO NOTHING')

    @classmethod
    def _claimable(cls, now: datetime):
        due = cls.next_attempt_at.is_null() | (cls.next_attempt_at <= now)
        abandoned = (cls.state == "downloading") & (cls.lease_until < now)
        return ((cls.state == "pending") & due) | abandoned

    @classmethod
    def _not_waiting_for_twin(cls, now: datetime):
        """Leaves out pending rows whose content is downloading for another row right now.

        Claiming them only to put them back (media.py's WAIT_FOR_TWIN) made every
        such row cost a write transaction a second while the first download
        ran: hundreds of messages sharing one image kept the workers and the
        write lock busy for nothing. The contents in flight are few (one per
        worker), so they are read first and left out by value.
        """
        busy = [key for (key,) in run_sql(
            'SELECT DISTINCT "content_key" FROM "media_file" WHERE "state" = ? AND "lease_until" >= ? '
            'AND "content_key" IS NOT NULL', ("downloading", now)).fetchall()]
        if not busy:
            return SQL("1 = 1")
        return (cls.state != "pending") | cls.content_key.is_null() | cls.content_key.not_in(busy)

    @classmethod
    def claim_next(cls, owner: str, lease_seconds: float) -> Optional["MediaFile"]:
        """Take the next due row for ``owner``: pending ones, or downloads whose worker died.

        The claim is one conditional UPDATE, so two workers (threads or
        processes) can never take the same row; the loser tries the next one.
        Each claim counts as an attempt, so a file that crashes the process
        still runs out of attempts.
        """
        now = utcnow()
        candidates = [row.id for row in cls.select(cls.id).where(cls._claimable(now) & cls._not_waiting_for_twin(now))
                      .order_by(cls.id).limit(8)]
        for media_id in candidates:
            with write_transaction():
                taken = cls.update(
                    state="downloading", lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=cls.attempts + 1, updated_at=now,
                ).where((cls.id == media_id) & cls._claimable(now)).execute()
            if taken:
                return cls.get_by_id(media_id)
        return None

    @classmethod
    def seconds_until_due(cls) -> Optional[float]:
        """Seconds until the next pending row's back-off ends (None: nothing waiting)."""
        due = cls.select(fn.MIN(cls.next_attempt_at)).where(
            (cls.state == "pending") & cls._not_waiting_for_twin(utcnow())).scalar()
        if due is None:
            return None
        if isinstance(due, str):
            due = datetime.fromisoformat(due)
        return (due - utcnow()).total_seconds()

    @classmethod
    def due_count(cls) -> int:
        return cls.select().where(cls._claimable(utcnow())).count()

    def renew_lease(self, owner: str, lease_seconds: float) -> bool:
        """Keep the claim alive; False when another worker has taken the row over."""
        with write_transaction():
            return bool(MediaFile.update(lease_until=utcnow() + timedelta(seconds=lease_seconds)).where(
                (MediaFile.id == self.id) & (MediaFile.lease_owner == owner) & (MediaFile.state == "downloading")
            ).execute())

    @classmethod
    def give_back(cls, owner: str) -> int:
        """Every download this owner still holds goes back to pending, its attempt not counted (one UPDATE).

        For a stop: a worker blocked in a read cannot settle its row itself, and
        a row left "downloading" would wait for its lease to run out.
        """
        with write_transaction():
            return cls.update(state="pending", lease_owner=None, lease_until=None, attempts=cls.attempts - 1,
                              updated_at=utcnow()).where(
                (cls.lease_owner == owner) & (cls.state == "downloading")).execute()

    def settle(self, owner: str, state: str, **values) -> bool:
        """Leave the downloading state (done, failed, expired or back to pending) if still ours."""
        now = utcnow()
        values.update(state=state, lease_owner=None, lease_until=None, updated_at=now)
        if state in ("done", "failed", "expired"):
            values["finished_at"] = now
        with write_transaction():
            return bool(MediaFile.update(**values).where(
                (MediaFile.id == self.id) & (MediaFile.lease_owner == owner) & (MediaFile.state == "downloading")
            ).execute())

    @classmethod
    def retry(cls, media_id: int) -> bool:
        """Queue a failed or expired download again with a fresh set of attempts."""
        with write_transaction():
            return bool(cls.update(
                state="pending", attempts=0, next_attempt_at=None, error=None, error_code=None, error_params=None,
                failed_check=None, updated_at=utcnow(),
            ).where((cls.id == media_id) & cls.state.in_(("failed", "expired"))).execute())

    @classmethod
    def stored_copy(cls, content_key: str, exclude_id: int) -> Optional["MediaFile"]:
        """A finished download of the same content whose file is still there."""
        return (cls.select().where((cls.content_key == content_key) & (cls.state == "done")
                                   & (cls.id != exclude_id) & cls.local_path.is_null(False))
                .order_by(cls.id).first())

    @classmethod
    def in_flight(cls, content_key: str, exclude_id: int) -> bool:
        return cls.select().where((cls.content_key == content_key) & (cls.state == "downloading")
                                  & (cls.id != exclude_id) & (cls.lease_until >= utcnow())).exists()


class MediaAttempt(BaseModel):
    """One try at getting a media file's bytes one way (what the row's history shows)."""

    media = ForeignKeyField(MediaFile, backref="attempt_log", on_delete="CASCADE")
    round = IntegerField()  # the MediaFile.attempts value of the claim it belongs to
    way = CharField()  # inline | cdn | copy | the provider's name (its API)
    outcome = CharField()  # ok | next (fell through to the next way) | retry | failed | expired
    http_status = IntegerField(null=True)
    error = TextField(null=True)
    size = BigIntegerField(null=True)
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(default=utcnow)


# --- campaigns -------------------------------------------------------------------

CAMPAIGN_STATES = ("draft", "running", "paused", "done", "cancelled")
CONTACT_STATES = ("pending", "sending", "sent", "delivered", "read", "failed", "skipped")
# How far a contact has come, for monotonic tracking (failed and skipped stand outside).
CONTACT_RANK = {"pending": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def bump_instance_health(instance_id: int, counter: Optional[str], score: int = 0,
                         errors: Optional[str] = None, at: Optional[datetime] = None) -> None:
    """Count one send outcome in the instance's day, in one statement (a new day starts at 0).

    ``counter``: sent | delivered | read | failed; ``score``: added to health_score (kept 0-100);
    ``errors``: "reset" or "add" for consecutive_errors.
    """
    today = _day(at or utcnow())
    parts, params = ['"health_day" = ?'], [today]
    for name in ("sent", "delivered", "read", "failed"):
        add = 1 if name == counter else 0
        parts.append(f'"{name}_today" = CASE WHEN "health_day" = ? THEN "{name}_today" + ? ELSE ? END')
        params += [today, add, add]
    if score > 0:
        parts.append('"health_score" = CASE WHEN "health_score" + ? > 100 THEN 100 ELSE "health_score" + ? END')
        params += [score, score]
    elif score < 0:
        parts.append('"health_score" = CASE WHEN "health_score" + ? < 0 THEN 0 ELSE "health_score" + ? END')
        params += [score, score]
    if errors == "reset":
        parts.append('"consecutive_errors" = 0')
    elif errors == "add":
        parts.append('"consecutive_errors" = "consecutive_errors" + 1')
    run_sql(f'UPDATE "instance" SET {", ".join(parts)} WHERE "id" = ?', params + [instance_id])


_COUNTER_CHECK_SQL = (
    'SELECT "c"."id", "c"."sent_count", "c"."delivered_count", "c"."read_count", "c"."failed_count", '
    '"c"."replied_count", "c"."skipped_count", '
    'SUM(CASE WHEN "k"."sent_at" IS NOT NULL AND "k"."state" IN (\'sent\', \'delivered\', \'read\', \'failed\') '
    'THEN 1 ELSE 0 END), '
    'SUM(CASE WHEN "k"."state" IN (\'delivered\', \'read\') THEN 1 ELSE 0 END), '
    'SUM(CASE WHEN "k"."state" = \'read\' THEN 1 ELSE 0 END), '
    'SUM(CASE WHEN "k"."state" = \'failed\' THEN 1 ELSE 0 END), '
    'SUM(CASE WHEN "k"."replied_at" IS NOT NULL THEN 1 ELSE 0 END), '
    'SUM(CASE WHEN "k"."state" = \'skipped\' THEN 1 ELSE 0 END) '
    'FROM "campaign" AS "c" LEFT JOIN "campaign_contact" AS "k" ON "k"."campaign_id" = "c"."id" '
    'GROUP BY "c"."id", "c"."sent_count", "c"."delivered_count", "c"."read_count", "c"."failed_count", '
    '"c"."replied_count", "c"."skipped_count" ORDER BY "c"."id"'
)


class Campaign(BaseModel):
    """One text sent to a list of contacts through one instance, tracked to delivered and read."""

    name = CharField()
    instance = ForeignKeyField(Instance, backref="campaigns", on_delete="CASCADE")
    text = TextField()
    state = CharField(default="draft", index=True)  # draft | running | paused | done | cancelled
    state_reason = TextField(null=True)
    # The reason as a code and its parameters for the dashboard, JSON: {"code": "paused_for_errors", "limit": 5}.
    state_detail = TextField(null=True)
    total_contacts = IntegerField(default=0)
    sent_count = IntegerField(default=0)
    delivered_count = IntegerField(default=0)
    read_count = IntegerField(default=0)
    failed_count = IntegerField(default=0)
    replied_count = IntegerField(default=0)
    skipped_count = IntegerField(default=0)
    consecutive_errors = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    COUNTERS = ("sent", "delivered", "read", "failed", "replied", "skipped")
    # state change -> the states it may come from
    MOVES = {
        "start": (("draft",), "running"),
        "pause": (("running",), "paused"),
        "resume": (("paused",), "running"),
        "cancel": (("draft", "running", "paused"), "cancelled"),
    }

    @property
    def delivery_rate(self) -> float:
        return round(100.0 * self.delivered_count / self.sent_count, 2) if self.sent_count else 0.0

    @property
    def read_rate(self) -> float:
        return round(100.0 * self.read_count / self.delivered_count, 2) if self.delivered_count else 0.0

    @classmethod
    def move(cls, campaign_id: int, action: str, reason: Optional[str] = None) -> bool:
        """start | pause | resume | cancel, as one conditional UPDATE; False when the state forbids it."""
        sources, target = cls.MOVES[action]
        now = utcnow()
        values: dict = {cls.state: target, cls.updated_at: now, cls.state_reason: clean(reason),
                        cls.state_detail: None}
        if action == "start":
            values[cls.started_at] = now
        if action in ("resume", "start"):
            values[cls.consecutive_errors] = 0
        if target == "cancelled":
            values[cls.finished_at] = now
        with write_transaction():
            moved = cls.update(values).where((cls.id == campaign_id) & cls.state.in_(sources)).execute()
            if moved and action in ("pause", "cancel", "resume", "start"):
                CampaignLog.add(campaign_id, {"pause": "paused", "cancel": "cancelled", "resume": "resumed",
                                              "start": "started"}[action], detail=reason)
        return bool(moved)

    @classmethod
    def pause_for_errors(cls, campaign_id: int, limit: int) -> bool:
        """Pause a running campaign whose consecutive send errors reached ``limit``."""
        reason = f"paused after {limit} consecutive send errors"
        detail = {"code": "paused_for_errors", "limit": limit}
        moved = cls.update(state="paused", state_reason=reason, state_detail=json.dumps(detail),
                           updated_at=utcnow()).where(
            (cls.id == campaign_id) & (cls.state == "running") & (cls.consecutive_errors >= limit)).execute()
        if moved:
            CampaignLog.add(campaign_id, "paused", detail=reason, params=detail)
        return bool(moved)

    @classmethod
    def finish_if_done(cls, campaign_id: int) -> bool:
        """running -> done once no contact is left to send (or being sent)."""
        open_contacts = CampaignContact.select(CampaignContact.id).where(
            (CampaignContact.campaign == campaign_id) & CampaignContact.state.in_(("pending", "sending")))
        now = utcnow()
        moved = cls.update(state="done", finished_at=now, updated_at=now).where(
            (cls.id == campaign_id) & (cls.state == "running") & ~fn.EXISTS(open_contacts)).execute()
        if moved:
            CampaignLog.add(campaign_id, "done")
        return bool(moved)

    @classmethod
    def count(cls, campaign_id: int, deltas: dict) -> None:
        """Move counters by the given amounts in one statement (never read-modify-write)."""
        values = {getattr(cls, f"{name}_count"): getattr(cls, f"{name}_count") + delta
                  for name, delta in deltas.items() if delta}
        if values:
            values[cls.updated_at] = utcnow()
            cls.update(values).where(cls.id == campaign_id).execute()

    @classmethod
    def counter_mismatches(cls) -> list[dict]:
        """Campaigns whose counters differ from what their contacts' states say (should be none)."""
        wrong = []
        for row in run_sql(_COUNTER_CHECK_SQL, ()).fetchall():
            counters, actual = row[1:7], [int(value or 0) for value in row[7:13]]
            diffs = {name: {"counter": counters[i], "contacts": actual[i]}
                     for i, name in enumerate(cls.COUNTERS) if counters[i] != actual[i]}
            if diffs:
                wrong.append({"campaign_id": row[0], "differences": diffs})
        return wrong


def contact_counters(state: str, was_sent: bool) -> set:
    """The campaign counters a contact in ``state`` is part of (each counter = contacts at or past it)."""
    if state == "read":
        return {"sent", "delivered", "read"}
    if state == "delivered":
        return {"sent", "delivered"}
    if state == "sent":
        return {"sent"}
    if state == "failed":
        return {"failed", "sent"} if was_sent else {"failed"}
    if state == "skipped":
        return {"skipped"}
    return set()


class CampaignContact(BaseModel):
    """One phone number of a campaign and how far its message has come."""

    campaign = ForeignKeyField(Campaign, backref="contacts", on_delete="CASCADE")
    instance = ForeignKeyField(Instance, on_delete="CASCADE")  # the campaign's, for the status lookup
    phone = CharField()  # digits, country code first
    name = CharField(null=True)
    state = CharField(default="pending")
    whatsapp_message_id = CharField(null=True)
    sending_at = DateTimeField(null=True)
    sent_at = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    read_at = DateTimeField(null=True)
    failed_at = DateTimeField(null=True)
    replied_at = DateTimeField(null=True)
    error = TextField(null=True)
    # Why it failed or was skipped, for the dashboard: a storage.send.REFUSALS code and its parameters (JSON).
    error_code = CharField(null=True)
    error_params = TextField(null=True)
    reply = TextField(null=True)
    # The contact's columns of the list it came from (JSON {column: value}): its campaign's merge fields.
    fields = TextField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("campaign", "phone"), True),
            (("campaign", "state"), False),
            (("instance", "whatsapp_message_id"), False),
            (("instance", "phone"), False),
        )

    @classmethod
    def transition(cls, contact_id: int, campaign_id: int, from_state: str, was_sent: bool, to_state: str,
                   at: datetime, values: Optional[dict] = None, log_detail: Optional[str] = None,
                   event_id: Optional[int] = None, extra_where: str = "", log_params: Optional[dict] = None) -> bool:
        """Move one contact from ``from_state`` to ``to_state`` if it is still there.

        One conditional UPDATE; only the call that moved the row moves the
        campaign's counters, so copies of one status racing each other count once.
        ``values`` maps column -> (sql expression, params) or a plain value.
        """
        parts, params = ['"state" = ?', '"updated_at" = ?'], [to_state, utcnow()]
        for column, value in (values or {}).items():
            if isinstance(value, tuple):
                parts.append(f'"{column}" = {value[0]}')
                params += list(value[1])
            else:
                parts.append(f'"{column}" = ?')
                params.append(value)
        moved = run_sql(f'UPDATE "campaign_contact" SET {", ".join(parts)} WHERE "id" = ? AND "state" = ?{extra_where}',
                        params + [contact_id, from_state]).rowcount
        if not moved:
            return False
        now_sent = was_sent or to_state in ("sent", "delivered", "read")
        before, after = contact_counters(from_state, was_sent), contact_counters(to_state, now_sent)
        deltas = {name: 1 for name in after - before}
        deltas.update({name: -1 for name in before - after})
        Campaign.count(campaign_id, deltas)
        row = run_sql('SELECT "whatsapp_message_id" FROM "campaign_contact" WHERE "id" = ?', (contact_id,)).fetchone()
        CampaignLog.add(campaign_id, to_state, contact_id=contact_id, message_id=row[0] if row else None,
                        detail=log_detail, at=at, event_id=event_id, params=log_params)
        return True

    @classmethod
    def claim(cls, contact_id: int) -> bool:
        """pending -> sending, before the provider is called (a crash leaves it there: never resent)."""
        now = utcnow()
        return bool(cls.update(state="sending", sending_at=now, updated_at=now).where(
            (cls.id == contact_id) & (cls.state == "pending")).execute())

    @classmethod
    def mark_sent(cls, contact_id: int, campaign_id: int, message_id: str, at: datetime,
                  detail: Optional[str] = None) -> bool:
        return cls.transition(contact_id, campaign_id, "sending", False, "sent", at,
                              {"whatsapp_message_id": clean(message_id, 255), "sent_at": at, "error": None,
                               "error_code": None, "error_params": None},
                              log_detail=detail)

    @classmethod
    def mark_send_failed(cls, contact_id: int, campaign_id: int, error: str, at: datetime,
                         code: Optional[str] = None, params: Optional[dict] = None) -> bool:
        return cls.transition(contact_id, campaign_id, "sending", False, "failed", at,
                              {"failed_at": at, "error": clean(error), **_error_columns(code, params)},
                              log_detail=clean(error), log_params=_refusal_params(code, params))

    @classmethod
    def skip(cls, contact_id: int, campaign_id: int, reason: str, code: Optional[str] = None) -> bool:
        now = utcnow()
        return cls.transition(contact_id, campaign_id, "pending", False, "skipped", now,
                              {"error": reason, **_error_columns(code, None)}, log_detail=reason,
                              log_params=_refusal_params(code, None))

    @classmethod
    def advance(cls, contact_id: int, campaign_id: int, state: str, was_sent: bool, status: str,
                at: datetime, error: Optional[str] = None, event_id: Optional[int] = None,
                error_code: Optional[str] = None, error_params: Optional[dict] = None) -> Optional[bool]:
        """Apply a tracked status (sent | delivered | read | failed) to a contact seen in ``state``.

        Returns None when the status does not move the contact (old news), else
        whether the conditional UPDATE won (False: the row changed meanwhile, look again).
        """
        if status == "failed":
            if state != "sent":
                return None
            return cls.transition(contact_id, campaign_id, state, was_sent, "failed", at,
                                  {"failed_at": at, "error": clean(error) or "failed",
                                   **_error_columns(error_code, error_params)},
                                  log_detail=clean(error), event_id=event_id,
                                  log_params=_refusal_params(error_code, error_params))
        current = CONTACT_RANK["sent"] if state == "failed" and was_sent else CONTACT_RANK.get(state, -1)
        if status not in CONTACT_RANK or CONTACT_RANK[status] <= current or state in ("pending", "skipped"):
            return None
        values: dict = {}
        if status in ("delivered", "read"):
            values["delivered_at"] = ("COALESCE(\"delivered_at\", ?)", [at])
        if status == "read":
            values["read_at"] = ("COALESCE(\"read_at\", ?)", [at])
        if state == "failed":
            values.update(error=None, error_code=None, error_params=None)
        return cls.transition(contact_id, campaign_id, state, was_sent, status, at, values, event_id=event_id)


def _error_columns(code: Optional[str], params: Optional[dict]) -> dict:
    """The error_code / error_params values of a contact's refusal (storage.send.REFUSALS)."""
    return {"error_code": code, "error_params": json.dumps(params, ensure_ascii=False) if params else None}


def _refusal_params(code: Optional[str], params: Optional[dict]) -> Optional[dict]:
    """A log line's params for a refusal: {"refusal": code, "refusal_params": {...}}."""
    return {"refusal": code, "refusal_params": params or {}} if code else None


# What a campaign's log lines say (the dashboard's campaigns.log.<action>).
LOG_ACTIONS = ("created", "started", "paused", "resumed", "cancelled", "done", "sent", "delivered", "read", "failed",
               "skipped", "replied", "opted_out")


class CampaignLog(BaseModel):
    """The audit trail of a campaign: one line per thing that happened."""

    campaign = ForeignKeyField(Campaign, backref="log", on_delete="CASCADE")
    contact = ForeignKeyField(CampaignContact, null=True, on_delete="CASCADE")
    action = CharField()  # started | sent | delivered | read | failed | skipped | replied | opted_out | paused ...
    at = DateTimeField(default=utcnow)
    whatsapp_message_id = CharField(null=True)
    detail = TextField(null=True)
    # What the line says as parameters of its action, for the dashboard's sentence (JSON).
    params = TextField(null=True)
    event = ForeignKeyField(WebhookEvent, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("campaign", "id"), False),)

    @classmethod
    def add(cls, campaign_id: int, action: str, contact_id: Optional[int] = None, message_id: Optional[str] = None,
            detail: Optional[str] = None, at: Optional[datetime] = None, event_id: Optional[int] = None,
            params: Optional[dict] = None) -> None:
        assert action in LOG_ACTIONS, action
        insert_row(cls, {"campaign": campaign_id, "contact": contact_id, "action": action, "at": at or utcnow(),
                         "whatsapp_message_id": message_id, "detail": clean(detail), "event": event_id,
                         "params": clean(json.dumps(params, ensure_ascii=False)) if params else None})


class OptOut(BaseModel):
    """A number that asked for no more campaign messages."""

    phone = CharField(unique=True)
    instance = ForeignKeyField(Instance, null=True, on_delete="SET NULL")
    word = CharField(null=True)
    created_at = DateTimeField(default=utcnow)


class DashboardSession(BaseModel):
    """A browser logged in to the dashboard through the tunnel (``/login``).

    The cookie is signed and expires by itself; this row is what ``/logout``
    deletes, so a copied cookie stops working at once. Only a hash of the
    session id is kept.
    """

    key = CharField(unique=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    @classmethod
    def open(cls, key: str, seconds: int) -> None:
        now = utcnow()
        cls.delete().where(cls.expires_at < now).execute()  # the expired ones go whenever someone logs in
        cls.create(key=key, created_at=now, expires_at=now + timedelta(seconds=seconds))

    @classmethod
    def is_open(cls, key: str) -> bool:
        return cls.select().where((cls.key == key) & (cls.expires_at > utcnow())).exists()

    @classmethod
    def close(cls, key: str) -> None:
        cls.delete().where(cls.key == key).execute()


class DeploymentFact(BaseModel):
    """A fact about the whole deployment every process reads the same: the database's own id, for one."""

    name = CharField(unique=True)
    value = CharField()

    DATABASE_ID = "database_id"
    WEBHOOK_TOKEN = "generated_webhook_token"

    @classmethod
    def adopt(cls, name: str, candidate: str) -> str:
        """The fact's value: ``candidate`` if nobody stored one yet, else the one stored first."""
        with write_transaction():
            cls.insert(name=name, value=candidate).on_conflict_ignore().execute()
        return cls.get(cls.name == name).value

    @classmethod
    def database_id(cls) -> str:
        """A random id this database keeps for life, made the first time it is asked for."""
        import uuid

        return cls.adopt(cls.DATABASE_ID, uuid.uuid4().hex)


def database_clock() -> float:
    """Now, in seconds since the epoch, by the database's clock when processes may run on several machines.

    Leases and send slots compare times written by different processes: on
    PostgreSQL they all read the server's clock; SQLite is one machine's file.
    """
    if isinstance(db.obj, PostgresqlDatabase):
        return float(db.execute_sql("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
    import time

    return time.time()


class RoleLease(BaseModel):
    """Which process holds a deployment-wide role (campaign sender, tunnel owner, registrar), until when.

    A holder renews its lease well before ``expires_at``; a process that dies
    stops renewing, and another takes the role once the lease has expired.
    ``detail`` is what the holder tells the others (the tunnel's public URL).
    """

    name = CharField(primary_key=True)
    holder = CharField()
    expires_at = DoubleField()
    detail = TextField(null=True)

    @classmethod
    def claim(cls, name: str, holder: str, now: float, seconds: float) -> bool:
        """Take the role if it is free or expired, or renew it if ours: one statement. Whether we hold it now."""
        cls.insert(name=name, holder=holder, expires_at=now + seconds).on_conflict(
            conflict_target=[cls.name],
            update={cls.holder: holder, cls.expires_at: now + seconds,
                    cls.detail: Case(None, [(cls.holder == holder, cls.detail)], None)},
            where=(cls.holder == holder) | (cls.expires_at < now),
        ).execute()
        return cls.select().where((cls.name == name) & (cls.holder == holder)).exists()

    @classmethod
    def release(cls, holder: str, name: Optional[str] = None) -> int:
        """Give this holder's roles (or one of them) back: the others take over at their next look."""
        query = cls.delete().where(cls.holder == holder)
        return (query.where(cls.name == name) if name else query).execute()

    @classmethod
    def tell(cls, name: str, holder: str, detail: Optional[str]) -> bool:
        return bool(cls.update(detail=detail).where((cls.name == name) & (cls.holder == holder)).execute())

    @classmethod
    def current(cls, name: str, now: float) -> Optional["RoleLease"]:
        """The live lease of a role, or None when nobody holds it."""
        return cls.get_or_none((cls.name == name) & (cls.expires_at >= now))


class SendSlot(BaseModel):
    """The earliest moment (epoch seconds) a scope may send its next campaign message.

    Scopes are the whole deployment and each instance; a send takes the slots
    of both in one transaction, so two senders (one taking over from another,
    or two processes during a lease's last instant) never exceed the rate.
    """

    scope = CharField(primary_key=True)
    next_at = DoubleField()

    @classmethod
    def take(cls, intervals: dict[str, float], now: float) -> Optional[float]:
        """Claim every scope's slot if all are due: None when taken, else the seconds until the latest is due.

        ``intervals`` maps each scope to the gap it needs after this send.
        The scopes are updated in sorted order (one lock order for every
        process) inside a transaction that is rolled back unless all were due.
        """
        scopes = sorted(intervals)
        try:
            with write_transaction():
                for scope in scopes:
                    cls.insert(scope=scope, next_at=0.0).on_conflict_ignore().execute()
                for scope in scopes:
                    # Under the row lock (PostgreSQL) or the write lock (SQLite): whether this scope is due.
                    taken = cls.update(next_at=now + intervals[scope]).where(
                        (cls.scope == scope) & (cls.next_at <= now)).execute()
                    if not taken:
                        raise _SlotNotDue
        except _SlotNotDue:
            due = max(row.next_at for row in cls.select().where(cls.scope.in_(scopes)))
            return max(0.0, due - now)
        return None


    @classmethod
    def hold(cls, intervals: dict[str, float], now: float) -> None:
        """After a send: keep every scope busy for its interval from now, when the send itself took time.

        The slot was taken before the provider was called; a slow call followed
        by a fast one would otherwise bring two messages closer together at the
        provider than the rate allows.
        """
        with write_transaction():
            for scope in sorted(intervals):
                cls.update(next_at=now + intervals[scope]).where(
                    (cls.scope == scope) & (cls.next_at < now + intervals[scope])).execute()


class _SlotNotDue(Exception):
    """Rolls back a send slot claim that found one of its scopes not yet due."""


# --- forwarding (see forwarding.py) ------------------------------------------------

FORWARD_FORMATS = ("raw", "normalised")
DELIVERY_STATES = ("waiting", "pending", "delivering", "delivered", "failed")


class ForwardDestination(BaseModel):
    """An app zaphook forwards webhooks to: its URL, format, filter and signing secret.

    ``origin`` is "env" for the one FORWARD_URL configures (kept in step with
    the settings at start-up), "api" for those made through the API, the
    dashboard or the command line. The secret is shared with the app (it
    verifies the signatures with it), so the API shows it.
    """

    name = CharField(unique=True)
    url = TextField()
    format = CharField(default="raw")  # raw | normalised
    secret = CharField()  # whsec_<base64>, Standard Webhooks
    instance = CharField(null=True)  # only this instance (the provider's id), or any
    provider = CharField(null=True)  # only this provider, or any
    types = TextField(null=True)  # only these normalised event types, comma-separated, or any
    enabled = BooleanField(default=True)
    origin = CharField(default="api")  # api | env
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    @property
    def type_list(self) -> tuple[str, ...]:
        return tuple(part for part in (self.types or "").split(",") if part)


class ForwardDelivery(BaseModel):
    """One event to deliver to one destination, and where its delivery stands.

    ``waiting`` rows are "media.ready" events whose download has not finished;
    ``pending`` ones are due at ``next_attempt_at``; ``delivering`` ones are
    leased by a worker (taken over when the lease runs out). Deliveries of one
    destination and ``order_key`` (a chat) go out in id order.
    """

    destination = ForeignKeyField(ForwardDestination, backref="deliveries", on_delete="CASCADE")
    event = ForeignKeyField(WebhookEvent, null=True, on_delete="CASCADE")
    media = ForeignKeyField(MediaFile, null=True, on_delete="CASCADE")  # a media.ready event's file
    type = CharField()  # "raw" or a normalised event type
    webhook_id = CharField()  # the webhook-id header: the same for every attempt and replay
    order_key = CharField()
    payload = TextField(null=True)  # the normalised event's JSON; raw: the stored request
    replay = BooleanField(default=False)
    state = CharField(default="pending")
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(null=True)
    lease_owner = CharField(null=True)
    lease_until = DateTimeField(null=True)
    last_status = IntegerField(null=True)
    last_error = TextField(null=True)
    last_error_code = CharField(null=True)  # the same reason for the dashboard (codes.py)...
    last_error_params = TextField(null=True)  # ...and its parameters, JSON
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("state", "next_attempt_at"), False),
            (("destination", "order_key", "state"), False),
        )


class ForwardAttempt(BaseModel):
    """One HTTP request of a delivery: what the app answered (or why there was no answer)."""

    delivery = ForeignKeyField(ForwardDelivery, backref="attempt_log", on_delete="CASCADE")
    number = IntegerField()
    outcome = CharField()  # delivered | retry | failed
    http_status = IntegerField(null=True)
    error = TextField(null=True)
    error_code = CharField(null=True)  # the same reason for the dashboard (codes.py)...
    error_params = TextField(null=True)  # ...and its parameters, JSON
    response_excerpt = TextField(null=True)
    duration_ms = IntegerField(default=0)
    started_at = DateTimeField(default=utcnow)


MODELS: Iterable[type[BaseModel]] = (
    Client, Instance, WebhookEvent, Chat, Contact, Message, MessageStatusChange, Presence, JidAlias,
    MediaFile, MediaAttempt, Campaign, CampaignContact, CampaignLog, OptOut, DashboardSession, DeploymentFact,
    RoleLease, SendSlot, ForwardDestination, ForwardDelivery, ForwardAttempt,
)


# --- what the JSON API shows ----------------------------------------------------

def instance_json(instance: Instance) -> dict:
    return {
        "id": instance.id,
        "provider": instance.provider,
        "instance_id": instance.external_id,
        "client": instance.client.name,
        "demo": instance.client.name == DEMO_CLIENT,
        "name": instance.name,
        "own_jid": instance.own_jid,
        "connection_state": instance.connection_state,
        "state_reason": instance.state_reason,
        "state_changed_at": iso(instance.state_changed_at),
        "connected_at": iso(instance.connected_at),
        "disconnected_at": iso(instance.disconnected_at),
        "last_event_at": iso(instance.last_event_at),
        "api_base_url": instance.api_base_url,
        "has_api_token": bool(instance.api_token),
        "created_at": iso(instance.created_at),
    }


def event_json(event: WebhookEvent) -> dict:
    return {
        "id": event.id,
        "request_id": event.request_id,
        "received_at": iso(event.received_at),
        "route": event.route,
        "remote_addr": event.remote_addr,
        "provider": event.provider,
        "kind": event.kind,
        "event_name": event.event_name,
        "outcome": event.outcome,
        "http_status": event.http_status,
        "instance_id": event.instance.external_id if event.instance_id else None,
        "message_id": event.message_id,
        "error": event.error,
        "body_size": event.body_size,
        "duplicate_of": event.duplicate_of_id,
        "replay_count": event.replay_count,
        "replay_of": event.replay_of_id,
        "summary": json_or_none(event.summary),
    }


def event_response(event: WebhookEvent) -> Optional[dict]:
    """The JSON body zaphook answered the request with, its ids put back (see ingest.stored_answer).

    None for events stored before answers were kept.
    """
    body = json_or_none(event.response)
    if not isinstance(body, dict):
        return None
    if "event_id" in body and body["event_id"] is None:
        body["event_id"] = event.id
    if isinstance(body.get("detail"), dict) and body["detail"].get("event_id", 0) is None:
        body["detail"]["event_id"] = event.id
    return body


def json_or_none(text: Optional[str]) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def chat_json(chat: Chat) -> dict:
    return {
        "id": chat.id,
        "instance_id": chat.instance.external_id,
        "chat_id": chat.jid,
        "name": chat.name,
        "is_group": chat.is_group,
        "kind": chat.kind_shown,
        "last_message_at": iso(chat.last_message_at),
    }


# The only types a stored file is served as (and the dashboard shows) inline: the
# sender declares the mimetype, and anything a browser could run as a page on
# zaphook's origin (HTML, SVG, XML, scripts, unknown types) must be a download.
INLINE_MIMETYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp",
    "audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr", "audio/wav", "audio/webm", "audio/opus",
    "video/mp4", "video/3gpp", "video/webm", "video/quicktime",
    "application/pdf",
})


def bare_mimetype(mimetype: Optional[str]) -> str:
    """The declared type without parameters, lower case ("audio/ogg; codecs=opus" -> "audio/ogg")."""
    return (mimetype or "").split(";", 1)[0].strip().lower()


def served_inline(mimetype: Optional[str]) -> bool:
    """Whether a file declared as ``mimetype`` may be shown in the browser rather than downloaded."""
    return bare_mimetype(mimetype) in INLINE_MIMETYPES


def media_json(media: Optional[MediaFile]) -> Optional[dict]:
    """What a message shows of its attachment (mediaKey never)."""
    if media is None:
        return None
    return {
        "id": media.id,
        "state": media.state,
        "media_type": media.media_type,
        "mimetype": media.mimetype,
        "file_name": media.file_name,
        "file_length": media.file_length,
        "error": media.error,
        "error_code": media.error_code,
        "error_params": json_or_none(media.error_params) or {},
        "file_url": f"/api/media/{media.id}/file" if media.state == "done" else None,
        "inline": served_inline(media.mimetype),
    }


def media_detail_json(media: MediaFile, attempts: Optional[Iterable["MediaAttempt"]] = None) -> dict:
    """A media row for the media API; with ``attempts``, its attempt log too."""
    data = {
        **media_json(media),
        "message_id": media.message_id,
        "instance_id": media.instance_id,
        "caption": media.caption,
        "width": media.width,
        "height": media.height,
        "seconds": media.seconds,
        "is_voice": media.is_voice,
        "is_animated": media.is_animated,
        "has_media_key": bool(media.media_key),
        "direct_path": media.direct_path.split("?", 1)[0] if media.direct_path else None,
        "meta_media_id": media.media_id,
        "file_sha256": media.file_sha256,
        "file_enc_sha256": media.file_enc_sha256,
        "failed_check": media.failed_check,
        "way": media.way,
        "path": media.local_path,
        "stored_size": media.stored_size,
        "stored_sha256": media.stored_sha256,
        "attempts": media.attempts,
        "next_attempt_at": iso(media.next_attempt_at),
        "created_at": iso(media.created_at),
        "updated_at": iso(media.updated_at),
        "finished_at": iso(media.finished_at),
    }
    if attempts is not None:
        data["attempt_log"] = [
            {
                "round": attempt.round,
                "way": attempt.way,
                "outcome": attempt.outcome,
                "http_status": attempt.http_status,
                "error": attempt.error,
                "size": attempt.size,
                "started_at": iso(attempt.started_at),
                "finished_at": iso(attempt.finished_at),
            }
            for attempt in attempts
        ]
    return data


def message_json(message: Message, media: Optional[MediaFile] = None) -> dict:
    return {
        "id": message.id,
        "instance_id": message.instance.external_id,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "chat_id": message.chat.jid,
        "sender_id": message.sender_jid,
        "sender_name": message.sender_name,
        "from_me": message.from_me,
        "direction": message.direction,
        "type": message.type,
        "raw_type": message.raw_type,
        "text": message.text,
        "caption": message.caption,
        "timestamp": iso(message.timestamp),
        "status": message.status,
        "sent_at": iso(message.sent_at),
        "delivered_at": iso(message.delivered_at),
        "read_at": iso(message.read_at),
        "played_at": iso(message.played_at),
        "failed_at": iso(message.failed_at),
        "error": message.error,
        "quoted_message_id": message.quoted_message_id,
        "quoted_text": message.quoted_text,
        "forwarded": message.forwarded,
        "reaction_to": message.reaction_to,
        "reaction_emoji": message.reaction_emoji,
        "location": (
            {"latitude": message.latitude, "longitude": message.longitude, "name": message.location_name}
            if message.latitude is not None else None
        ),
        "contacts": json.loads(message.contacts) if message.contacts else None,
        "interactive_id": message.interactive_id,
        "is_voice": message.is_voice,
        "edited_at": iso(message.edited_at),
        "deleted_at": iso(message.deleted_at),
        "media": media_json(media),
    }


def status_change_json(change: MessageStatusChange) -> dict:
    return {
        "status": change.status,
        "timestamp": iso(change.timestamp),
        "error": change.error,
        "event_id": change.event_id,
        "recorded_at": iso(change.created_at),
    }


def campaign_json(campaign: Campaign) -> dict:
    """A campaign with its counters, rates, timings and progress."""
    done = campaign.total_contacts - campaign_open_count(campaign)
    started, finished = campaign.started_at, campaign.finished_at
    return {
        "id": campaign.id,
        "name": campaign.name,
        "instance_id": campaign.instance_id,
        "text": campaign.text,
        "state": campaign.state,
        "state_reason": campaign.state_reason,
        "state_detail": json_or_none(campaign.state_detail),
        "total_contacts": campaign.total_contacts,
        "sent_count": campaign.sent_count,
        "delivered_count": campaign.delivered_count,
        "read_count": campaign.read_count,
        "failed_count": campaign.failed_count,
        "replied_count": campaign.replied_count,
        "skipped_count": campaign.skipped_count,
        "delivery_rate": campaign.delivery_rate,
        "read_rate": campaign.read_rate,
        "progress": round(100.0 * done / campaign.total_contacts, 2) if campaign.total_contacts else 0.0,
        "created_at": iso(campaign.created_at),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration_seconds": round(((finished or utcnow()) - started).total_seconds(), 1) if started else None,
    }


def campaign_open_count(campaign: Campaign) -> int:
    """Contacts still to send or being sent."""
    return CampaignContact.select().where((CampaignContact.campaign == campaign.id)
                                          & CampaignContact.state.in_(("pending", "sending"))).count()


def campaign_contact_json(contact: CampaignContact) -> dict:
    return {
        "id": contact.id,
        "phone": contact.phone,
        "name": contact.name,
        "state": contact.state,
        "whatsapp_message_id": contact.whatsapp_message_id,
        "sent_at": iso(contact.sent_at),
        "delivered_at": iso(contact.delivered_at),
        "read_at": iso(contact.read_at),
        "failed_at": iso(contact.failed_at),
        "replied_at": iso(contact.replied_at),
        "error": contact.error,
        "error_code": contact.error_code,
        "error_params": json_or_none(contact.error_params),
        "reply": contact.reply,
        "fields": json_or_none(contact.fields),
    }


def campaign_log_json(line: CampaignLog, contact: Optional[dict] = None) -> dict:
    """A log line; ``contact`` ({phone, name}) names the contact it is about."""
    return {
        "id": line.id,
        "action": line.action,
        "at": iso(line.at),
        "contact_id": line.contact_id,
        "contact": contact,
        "whatsapp_message_id": line.whatsapp_message_id,
        "detail": line.detail,
        "params": json_or_none(line.params),
        "event_id": line.event_id,
    }
