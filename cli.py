"""The command line of ``python server.py``: run, register, demo/simulate, events, replay, export, import, instances, migrate.

The commands are click commands (click comes with Flask) in one group,
:data:`commands`; ``server.main()`` runs it through :func:`main`. A command
without a name runs the server. Commands that read or change stored data open
the configured database themselves (no running server needed); ``demo`` and
``simulate`` post to a running server.

Errors are one line on stderr, ``zaphook: ...``: exit code 2 for bad input
(a usage error raises SystemExit(2), as a parser does), 1 for an operation
that failed (a provider refused, a server did not answer).

What the commands print is UTF-8 whatever the console's code page (a
redirected Windows console would otherwise use cp1252 and fail on an emoji).
``export`` to stdout writes its JSON in ASCII (every other character as a
``\\u`` escape, which JSON reads back as the same text): PowerShell 5.1 decodes
a program's output with the console's code page before it writes a file with
``>``, which would garble any other byte. ``import`` reads UTF-8 (with or
without a BOM) and UTF-16 with a BOM (what that ``>`` writes).
"""

from __future__ import annotations

import base64
import functools
import json
import shlex
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, TextIO

import click

import demo
import forward_cli
from handlers import REGISTRY, UNKNOWN_PROVIDER
from handlers.provider import Provider

SAMPLES_DIR = demo.SAMPLES_DIR
HTTP_TIMEOUT = (10, 30)  # (connect, read) seconds for calls to a running zaphook
PROG = "server.py"


class CommandError(Exception):
    """One line for stderr and the exit code (2: bad input, 1: failed operation)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def bad_input(message: str) -> CommandError:
    return CommandError(message, 2)


# --- running a command ------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command line (``sys.argv[1:]`` by default); the exit code.

    A usage error prints one line and raises SystemExit(2); ``--help`` prints
    the help and gives 0.
    """
    utf8_output()
    try:
        code = commands.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else PROG
        message = " ".join(exc.format_message().split())
        print(f"zaphook: {path}: {message} (see {path} --help)", file=sys.stderr)
        raise SystemExit(2) from None
    except CommandError as exc:
        print(f"zaphook: {exc}", file=sys.stderr)
        return exc.code
    except click.ClickException as exc:
        print(f"zaphook: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        print("zaphook: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def utf8_output() -> None:
    """Write stdout and stderr in UTF-8, whatever the console's code page or PYTHONIOENCODING says."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
        if encoding not in ("utf-8", "utf8") and hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8")


def command_settings(host: Optional[str] = None, port: Optional[int] = None) -> dict:
    """The settings a command works with (.env, the environment), logging set up; bad ones are bad input."""
    from config import ConfigError, load_settings
    from server import configure_logging
    from tunnel import resolve_webhook_token

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise bad_input(f"configuration error: {exc}") from None
    configure_logging(settings["LOG_LEVEL"])
    if host:
        settings["HOST"] = host
    if port:
        settings["PORT"] = port
    try:
        # A tunnel makes the webhooks public: without a WEBHOOK_TOKEN one is generated and kept.
        settings["WEBHOOK_TOKEN"] = resolve_webhook_token(settings)
    except OSError as exc:
        raise bad_input(f"cannot keep the generated webhook token in {settings['DATA_DIR']}: "
                        f"{exc.strerror or exc}") from None
    return settings


def with_settings(function: Callable[..., int]) -> Callable[..., int]:
    """Give the command its settings as the first argument, loaded once its options are known to be right."""

    @functools.wraps(function)
    def command(**options):
        return function(command_settings(), **options)

    return command


@click.group(name=PROG, invoke_without_command=True,
             help="zaphook: local WhatsApp webhook hub. Without a command, runs the server.")
@click.pass_context
def commands(ctx: click.Context) -> int:
    if ctx.invoked_subcommand is None:
        return ctx.invoke(run)
    return 0


@commands.command(help="Serve the webhooks, the dashboard and the API (the default).")
@click.option("--host", help="address to listen on (default: HOST or 127.0.0.1)")
@click.option("--port", type=int, help="port to listen on (default: PORT or 5000)")
def run(host: Optional[str] = None, port: Optional[int] = None) -> int:
    import server

    return server.start(command_settings(host, port))


# --- helpers -----------------------------------------------------------------------


@contextmanager
def data_app(settings: Mapping[str, Any]) -> Iterator[Any]:
    """The app on the configured database, without workers, sender or tunnel, in an app context."""
    from config import ConfigError
    from server import create_app
    import models

    try:
        app = create_app({**settings, "MEDIA_WORKERS": 0, "CAMPAIGN_SENDER": False, "TUNNEL": "off"})
    except ConfigError as exc:
        raise bad_input(f"configuration error: {exc}") from None
    except models.SchemaTooNew as exc:
        raise CommandError(str(exc)) from None
    try:
        with app.app_context(), models.db.connection_context():
            yield app
    finally:
        app.extensions["zaphook.media"].shutdown()
        campaigns = app.extensions.get("zaphook.campaigns")
        if campaigns is not None:
            campaigns.shutdown()
        app.extensions["zaphook.database"].close_all()


@contextmanager
def progress(label: str, total: int, stream: Optional[TextIO] = None) -> Iterator[Callable[[int], None]]:
    """Count items done with the function this yields: click's progress bar on a terminal (stderr),
    else a line at every tenth, so a log shows the way too."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        with click.progressbar(length=total, label=label, file=stream, show_pos=True) as bar:
            yield bar.update
        return
    counter = Counter(label, total, stream)
    yield counter.advance
    counter.finish()


class Counter:
    """Progress for a stream that is not a terminal: ``label: n/total`` at every tenth, then ``... done``."""

    def __init__(self, label: str, total: int, stream: TextIO):
        self.label, self.total, self.done, self.stream = label, total, 0, stream
        self._step = max(1, total // 10) if total else 1000

    def advance(self, count: int = 1) -> None:
        for _ in range(count):
            self.done += 1
            if self.done % self._step == 0 and self.done != self.total:
                print(f"{self.label}: {self._count()}", file=self.stream, flush=True)

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else str(self.done)

    def finish(self) -> None:
        print(f"{self.label}: {self._count()} done", file=self.stream, flush=True)


def _http():
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: these are configured hosts
    return session


def _answer_text(response) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return text[:300] + ("…" if len(text) > 300 else "")


def _server_url(url: Optional[str], settings: Mapping[str, Any]) -> str:
    base = (url or f"http://127.0.0.1:{settings['PORT']}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise bad_input(f"--url must start with http:// or https://, got {base!r}")
    return base


def _admin_headers(settings: Mapping[str, Any]) -> dict:
    """What a call to the API of a zaphook that is not on this machine needs (local calls need nothing)."""
    return {"Authorization": f"Bearer {settings['ADMIN_TOKEN']}"} if settings.get("ADMIN_TOKEN") else {}


def _not_answering(base: str) -> CommandError:
    return CommandError(f"no zaphook answering at {base}: start it with `python server.py` (or pass --url)")


def _known_provider(name: Optional[str], option: str = "--provider", extra: tuple[str, ...] = ()) -> None:
    known = (*REGISTRY.names, *extra)
    if name and name not in known:
        raise bad_input(f"{option} must be one of {', '.join(known)}, got {name!r}")


# --- register ----------------------------------------------------------------------


def _base_url(args_base: Optional[str], settings: Mapping[str, Any]) -> str:
    base = (args_base or settings.get("PUBLIC_URL") or running_public_url(settings) or "").strip().rstrip("/")
    if not base:
        raise bad_input("no public URL for the webhooks: start zaphook with its tunnel first, "
                        "or pass --base-url https://..., or set PUBLIC_URL")
    if not base.startswith(("http://", "https://")):
        raise bad_input(f"--base-url must start with http:// or https://, got {base!r}")
    return base


def running_public_url(settings: Mapping[str, Any]) -> Optional[str]:
    """The public URL the zaphook running on this machine's PORT reports for its deployment, if any:
    its own tunnel's, the tunnel another process owns (status.py: ``public_url``), or its PUBLIC_URL."""
    try:
        response = _http().get(f"http://127.0.0.1:{settings['PORT']}/status", timeout=3)
        return response.json().get("public_url")
    except Exception:  # noqa: BLE001 - no server, another program on the port: no URL
        return None


def _credentials(provider: Provider, instance_id: str, settings: Mapping[str, Any]) -> tuple[str, str]:
    """The instance's API base URL and token (its own, else the .env defaults).

    When one is missing, the hint names the command that gives it: ``instances
    set`` for an instance zaphook knows (a webhook created it, or a person),
    ``instances add`` for one it does not.
    """
    from models import Instance

    known = Instance.find(provider.name, instance_id)
    instance = known or Instance(provider=provider.name, external_id=instance_id)
    base, token = instance.api_access(settings)
    base_name, token_name = (provider.api.base_url_setting, provider.api.token_setting) if provider.api \
        else ("its api_base_url", "its api_token")
    fix = (f"{PROG} instances {'set' if known else 'add'} --provider {provider.name} "
           f"--instance {shlex.quote(instance_id)}")
    if not base:
        raise bad_input(f"no API base URL for {provider.name} instance {instance_id!r}: set {base_name} in .env, "
                        f"or give the instance its own: `{fix} --base-url <URL> --token <token>`")
    if not token:
        raise bad_input(f"no API token for {provider.name} instance {instance_id!r}: set {token_name} in .env, "
                        f"or give the instance its own: `{fix} --token <token>`")
    return base, token


def register_instance(provider_name: str, instance_id: str, settings: Mapping[str, Any], base_url: str,
                      with_base64: bool = False) -> list[dict]:
    """Register one instance's webhooks through its provider (needs the database open); one result per URL set.

    A provider that signs its webhooks is given the secret to sign them with
    (``signing_secret``, its Signature's setting; None when that is empty).
    """
    provider = REGISTRY.get(provider_name)
    if provider is None or provider.register is None:
        raise bad_input(f"zaphook cannot set {provider_name}'s webhooks through its API")
    urls = REGISTRY.urls_for(provider, base_url, settings.get("WEBHOOK_TOKEN"))
    api_base, token = _credentials(provider, instance_id, settings)
    signing_secret = settings.get(provider.signature.secret_setting) if provider.signature else None
    return provider.register(api_base, token, instance_id, urls, with_base64=with_base64,
                             signing_secret=signing_secret or None, settings=settings)


def _print_results(results: list[dict], secrets: list) -> None:
    from security import redact_text

    for result in results:
        mark = "ok" if result["ok"] else "REFUSED"
        form = f" [{result['form']}]" if result.get("form") else ""
        print(f"{result['provider']} {result['instance']} {result['event']}: {result['url']}")
        print(f"  -> {mark} HTTP {result['status']}{form}: {redact_text(result['answer'] or '', secrets)}")
        if result.get("tried") and len(result["tried"]) > 1:
            print(f"  tried: {', '.join(result['tried'])}")


REGISTRARS = tuple(provider.name for provider in REGISTRY if provider.register or provider.register_by_hand)


@commands.command(help="Point a provider's webhooks at this server: set them to this server's URLs (PUBLIC_URL, "
                       "or --base-url) through its API; for a provider configured by hand (Meta), print what to "
                       "paste into it.")
@click.option("--provider", required=True, type=click.Choice(REGISTRARS))
@click.option("--instance", help="the provider's instance id or name")
@click.option("--base-url", help="the address providers reach zaphook on (default: PUBLIC_URL)")
@click.option("--base64", "with_base64", is_flag=True,
              help="ask the provider to send media inline as base64 in the webhook, where it can "
                   "(Evolution; default: off)")
@with_settings
def register(settings: dict, provider: str, instance: Optional[str], base_url: Optional[str],
             with_base64: bool) -> int:
    from config import SECRET_SETTINGS

    base = _base_url(base_url, settings)
    unit = REGISTRY.get(provider)
    if unit.register is None:
        try:
            lines = unit.register_by_hand(REGISTRY.urls_for(unit, base, settings.get("WEBHOOK_TOKEN")), settings)
        except ValueError as exc:
            raise bad_input(str(exc)) from None
        print("\n".join(lines))
        return 0
    if not instance or not instance.strip():
        raise bad_input(f"--instance is required for {provider}")
    with data_app(settings):
        results = register_instance(provider, instance.strip(), settings, base, with_base64)
    _print_results(results, [settings.get(name) for name in SECRET_SETTINGS])
    refused = [r for r in results if not r["ok"]]
    if refused:
        raise CommandError(f"{provider} refused {len(refused)} of {len(results)} webhook settings")
    return 0


def register_all(app_or_settings: Any, base_url: str) -> list:
    """Register the webhooks of every instance whose provider zaphook can set them through (REGISTER_WEBHOOKS=on).

    Takes the running app (uses its database) or the settings (opens the
    database itself). Never raises: one result dict per URL set, with ``ok``;
    instances without credentials are skipped with a result saying so.
    """
    import logging

    from models import Instance

    log = logging.getLogger("zaphook.register")
    app = app_or_settings if hasattr(app_or_settings, "app_context") else None
    settings = app.config if app is not None else app_or_settings

    def run() -> list:
        results: list = []
        registrars = [provider.name for provider in REGISTRY.registrars()]
        for instance in Instance.select().where(Instance.provider.in_(registrars)).order_by(Instance.id):
            api_base, token = instance.api_access(settings)
            if not (api_base and token):
                results.append({"provider": instance.provider, "instance": instance.external_id, "event": None,
                                "url": None, "ok": False, "status": None, "answer": "skipped: no API credentials"})
                continue
            try:
                done = register_instance(instance.provider, instance.external_id, settings, base_url)
            except Exception as exc:  # noqa: BLE001 - start-up must go on
                done = [{"provider": instance.provider, "instance": instance.external_id, "event": None,
                         "url": None, "ok": False, "status": None, "answer": f"{type(exc).__name__}: {exc}"}]
            results.extend(done)
        for result in results:
            level = logging.INFO if result["ok"] else logging.WARNING
            log.log(level, "webhook registration %s %s %s: %s (HTTP %s)", result["provider"], result["instance"],
                    result["event"] or "", "ok" if result["ok"] else "not set", result["status"])
        return results

    if app is not None:
        import models

        with app.app_context(), models.db.connection_context():
            return run()
    with data_app(settings):
        return run()


# --- demo and simulate ------------------------------------------------------------------


def simulate_providers() -> tuple[str, ...]:
    """The providers that have samples to post, in registry order."""
    return demo.families()


SAMPLE_FAMILIES = (*simulate_providers(), "all")


@commands.command(help="Post one real sample of each event kind to a running zaphook, so you can see the whole "
                       "pipeline work without a phone. The same as `demo`: the samples go to demo instances, "
                       "timed now; `demo --clear` removes them.")
@click.option("--provider", type=click.Choice(SAMPLE_FAMILIES), default="all", show_default=True)
@click.option("--url", help="the running server (default: http://127.0.0.1:$PORT)")
@with_settings
def simulate(settings: dict, provider: str, url: Optional[str]) -> int:
    return post_demo(settings, provider, url)


@commands.command("demo", help="Show zaphook working without a phone: post one real sample of each event kind of "
                               "every provider to a running zaphook, as today's traffic of demo instances (client "
                               "\"demo\"), kept apart from real data. --clear removes them and everything they "
                               "received.")
@click.option("--provider", type=click.Choice(SAMPLE_FAMILIES), default="all", show_default=True)
@click.option("--url", help="the running server (default: http://127.0.0.1:$PORT)")
@click.option("--clear", is_flag=True, help="remove the demo instances and everything they received")
@with_settings
def demo_command(settings: dict, provider: str, url: Optional[str], clear: bool) -> int:
    if clear:
        removed = clear_demo(settings, url)
        print(f"removed the demo data: {demo.describe(removed)}" if removed else "no demo data to remove")
        return 0
    return post_demo(settings, provider, url)


def post_demo(settings: dict, family: str, url: Optional[str]) -> int:
    """Declare the demo instances on the running server, then post each sample to it, timed now."""
    import requests

    from models import DEMO_CLIENT, utcnow

    base = _server_url(url, settings)
    token = settings.get("WEBHOOK_TOKEN") or _kept_token(settings)
    session = _http()
    now = utcnow()
    posts = [demo.demo_request(sample, now) for sample in demo.load_samples(family)]
    for provider, instance_id in demo.demo_instances(posts):
        _declare_demo_instance(session, base, settings, provider, instance_id)
    failures = 0
    for post in posts:
        headers = {"Content-Type": "application/json", "User-Agent": demo.USER_AGENT}
        signature = REGISTRY.get(post.provider).signature
        if signature is not None and settings.get(signature.secret_setting):
            headers[signature.header] = signature.sign(settings[signature.secret_setting], post.body)
        try:
            response = session.post(base + post.sample.route, data=post.body, headers=headers,
                                    params={"wait": "1", **({"token": token} if token else {})},
                                    timeout=HTTP_TIMEOUT)  # wait=1: print what each sample became
        except requests.ConnectionError:
            raise _not_answering(base) from None
        except requests.RequestException as exc:
            raise CommandError(f"posting to {base} failed: {exc}") from None
        answer = _json_of(response)
        ok = response.status_code == 200
        failures += not ok
        result = answer.get("outcome") if ok else f"HTTP {response.status_code}: {answer.get('error') or _answer_text(response)}"
        print(f"{post.sample.family:<9} {post.sample.kind:<28} {post.sample.route:<28} -> "
              f"{result} (event {answer.get('event_id')}, {answer.get('provider')}/{answer.get('kind')})")
    print(f"posted {len(posts)} samples to {base} as demo data (client {DEMO_CLIENT!r}): see {base}/ ; "
          f"remove them with `{PROG} demo --clear` or the overview's button")
    if failures:
        raise CommandError(f"{failures} of {len(posts)} samples were not accepted")
    return 0


def _json_of(response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _declare_demo_instance(session, base: str, settings: Mapping[str, Any], provider: str, instance_id: str) -> None:
    """Create the demo instance under the demo client, as a person would (one that exists is left as it is)."""
    import requests

    from models import DEMO_CLIENT

    try:
        response = session.post(f"{base}/api/instances", headers=_admin_headers(settings), timeout=HTTP_TIMEOUT,
                                json={"provider": provider, "instance_id": instance_id,
                                      "name": demo.instance_name(provider), "client": DEMO_CLIENT})
    except requests.ConnectionError:
        raise _not_answering(base) from None
    except requests.RequestException as exc:
        raise CommandError(f"declaring the demo instance {provider}/{instance_id} at {base} failed: {exc}") from None
    if response.status_code not in (201, 409):
        error = _json_of(response).get("error") or _answer_text(response)
        raise CommandError(f"declaring the demo instance {provider}/{instance_id} at {base} failed: "
                           f"HTTP {response.status_code}: {error}")


def clear_demo(settings: dict, url: Optional[str]) -> dict:
    """Remove the demo data: through the running server when one answers, else in the database.

    The running server keeps the instances it has seen in memory; deleting
    them behind its back would leave it naming deleted instances, so it is
    asked to do the work itself (``DELETE /api/demo``).
    """
    import requests

    base = _server_url(url, settings)
    try:
        response = _http().delete(f"{base}/api/demo", headers=_admin_headers(settings), timeout=HTTP_TIMEOUT)
    except requests.ConnectionError:
        if url:
            raise _not_answering(base) from None
        with data_app(settings) as app:  # no server running: nothing else holds the instances
            return demo.clear_in_app(app)
    except requests.RequestException as exc:
        raise CommandError(f"asking {base} to remove the demo data failed: {exc}") from None
    answer = _json_of(response)
    if response.status_code != 200:
        raise CommandError(f"{base} did not remove the demo data: HTTP {response.status_code}: "
                           f"{answer.get('error') or _answer_text(response)}")
    return answer.get("removed") or {}


def _kept_token(settings: Mapping[str, Any]) -> Optional[str]:
    """The token a tunnel-started server generated and kept in DATA_DIR, if any."""
    from tunnel import WEBHOOK_TOKEN_FILE

    try:
        return (Path(settings["DATA_DIR"]) / WEBHOOK_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


# --- events and replay ---------------------------------------------------------------


def _check_filters(provider: Optional[str], outcome: Optional[str]) -> None:
    """Refuse a --provider or --outcome no event can have, listing the ones there are."""
    from models import OUTCOMES

    _known_provider(provider, extra=(UNKNOWN_PROVIDER,))
    if outcome and outcome not in OUTCOMES:
        raise bad_input(f"--outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")


def _event_query(provider=None, kind=None, outcome=None, instance=None):
    from peewee import JOIN

    from models import Instance, WebhookEvent

    query = WebhookEvent.select(WebhookEvent, Instance).join(Instance, JOIN.LEFT_OUTER)
    for name, value in (("provider", provider), ("kind", kind), ("outcome", outcome)):
        if value:
            query = query.where(getattr(WebhookEvent, name) == value)
    if instance:
        condition = Instance.external_id == instance
        if instance.isdigit():
            condition |= Instance.id == int(instance)
        query = query.where(WebhookEvent.instance.in_(Instance.select(Instance.id).where(condition)))
    return query


def printed_without_table(rows: list, as_json: bool, nothing: str) -> bool:
    """Print ``rows`` as JSON Lines (``--json``), or say ``nothing`` when there are none.

    False: the caller prints its table.
    """
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return True
    if not rows:
        print(nothing)
        return True
    return False


def local_time(text: Optional[str]) -> str:
    """A time the API writes (ISO 8601, UTC) as this machine's local time, with its offset from UTC."""
    if not text:
        return "-"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone().isoformat(sep=" ", timespec="seconds")


@commands.command(help="List the stored webhook requests, newest first (times in this machine's local time, "
                       "with their offset from UTC; --json gives them in UTC).")
@click.option("--provider", help=f"one of {', '.join(REGISTRY.names)} or {UNKNOWN_PROVIDER}")
@click.option("--kind")
@click.option("--outcome")
@click.option("--instance", help="the provider's instance id, or zaphook's numeric id")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="how many")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@with_settings
def events(settings: dict, provider: Optional[str], kind: Optional[str], outcome: Optional[str],
           instance: Optional[str], limit: int, as_json: bool) -> int:
    from models import WebhookEvent, event_json

    _check_filters(provider, outcome)
    with data_app(settings):
        query = _event_query(provider, kind, outcome, instance)
        rows = [event_json(row) for row in query.order_by(WebhookEvent.id.desc()).limit(limit)]
    if printed_without_table(rows, as_json, "no events"):
        return 0
    print(f"{'id':>6}  {'received_at':<25}  {'provider':<9}  {'kind':<14}  {'outcome':<9}  {'instance':<20}  route")
    for row in rows:
        line = (f"{row['id']:>6}  {local_time(row['received_at']):<25}  {row['provider'] or '-':<9}  "
                f"{row['kind'] or '-':<14}  {row['outcome']:<9}  {row['instance_id'] or '-':<20}  {row['route']}")
        if row["error"]:
            line += f"  ({row['error'][:80]})"
        print(line)
    return 0


@commands.command(help="Run a stored webhook request through normalising again (after a fix).")
@click.argument("event_id", type=click.IntRange(min=1))
@with_settings
def replay(settings: dict, event_id: int) -> int:
    from models import WebhookEvent

    with data_app(settings) as app:
        event = WebhookEvent.get_or_none(WebhookEvent.id == event_id)
        if event is None:
            raise bad_input(f"no event {event_id}")
        answer = app.extensions["zaphook.pipeline"].replay(event, REGISTRY.hint_for_path(event.route))
    print(json.dumps(answer.body, ensure_ascii=False))
    if answer.status >= 400:
        raise CommandError(f"event {event_id} was not replayed: {answer.body.get('error')}")
    return 0


# --- export and import ---------------------------------------------------------------


def export_line(event: Any, secrets: Optional[list]) -> dict:
    """One stored request as a JSON object; redacted with ``secrets`` unless it is None.

    Redacted, a request that failed authentication is written without its
    body, as the API shows it; ``--with-secrets`` keeps everything.
    """
    from models import iso
    from security import redact, redact_base64, redact_text, shown_body_text

    headers = event.headers_dict
    body, encoding, error = event.body, event.body_encoding, event.error
    hidden = None
    if secrets is not None:
        headers = redact(headers, secrets)
        error = redact_text(error, secrets) if error else error
        if event.failed_authentication:
            body, hidden = None, event.HIDDEN_BODY_REASON
        elif encoding == "utf-8" and body is not None:
            body = shown_body_text(body, secrets)
        elif body is not None:
            body = redact_base64(body, secrets)
    line = {
        "id": event.id,
        "received_at": iso(event.received_at),
        "request_id": event.request_id,
        "method": event.method,
        "route": event.route,
        "remote_addr": event.remote_addr,
        "content_type": event.content_type,
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
        "body_size": event.body_size,
        "provider": event.provider,
        "kind": event.kind,
        "event_name": event.event_name,
        "instance_id": event.instance.external_id if event.instance_id else None,
        "message_id": event.message_id,
        "outcome": event.outcome,
        "error": error,
        "http_status": event.http_status,
        "duplicate_of": event.duplicate_of_id,
        "redacted": secrets is not None,
    }
    if hidden:
        line["body_hidden"] = hidden
    return line


@commands.command(help="Write the stored webhook requests, oldest first, one JSON object per line (what `import` "
                       "reads). Secrets are redacted unless --with-secrets. A file is UTF-8; stdout is ASCII, "
                       "any other character escaped, so that no console or shell redirection can garble it.")
@click.option("-o", "--output", default="-", help="file to write (default: stdout)")
@click.option("--with-secrets", is_flag=True, help="keep tokens, keys and signatures")
@click.option("--provider")
@click.option("--outcome")
@with_settings
def export(settings: dict, output: str, with_secrets: bool, provider: Optional[str], outcome: Optional[str]) -> int:
    from config import SECRET_SETTINGS
    from models import WebhookEvent

    _check_filters(provider, outcome)
    secrets = None if with_secrets else [settings.get(name) for name in SECRET_SETTINGS]
    to_stdout = output == "-"
    if to_stdout:
        stream = sys.stdout
    else:
        try:
            stream = open(output, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise bad_input(f"cannot write {output}: {exc.strerror or exc}") from None
    done = 0
    try:
        with data_app(settings):
            query = _event_query(provider, None, outcome)
            with progress("export", query.count()) as advance:
                for event in query.order_by(WebhookEvent.id).iterator():
                    stream.write(json.dumps(export_line(event, secrets), ensure_ascii=to_stdout) + "\n")
                    done += 1
                    advance(1)
    finally:
        if to_stdout:
            stream.flush()
        else:
            stream.close()
    if not to_stdout:
        print(f"exported {done} events to {output}" + ("" if secrets is None else " (redacted)"), file=sys.stderr)
    return 0


def decode_export(data: bytes, name: str) -> str:
    """The text of an export: UTF-8 (a BOM is dropped), or UTF-16 with its BOM (PowerShell 5.1's ``>``)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise bad_input(f"{name} is neither UTF-8 nor UTF-16 text (a JSON Lines export)") from None


def read_export(path: str) -> list[dict]:
    """The lines of an export, checked before anything is imported."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise bad_input(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(decode_export(data, path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise bad_input(f"{path} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("route"), str):
            raise bad_input(f"{path} line {number}: not an exported request (needs at least route and body)")
        if record.get("body_encoding", "utf-8") not in ("utf-8", "base64", "untrusted"):
            raise bad_input(f"{path} line {number}: unknown body_encoding {record.get('body_encoding')!r}")
        if record.get("body") is not None and not isinstance(record["body"], str):
            raise bad_input(f"{path} line {number}: body must be text")
        if not isinstance(record.get("headers", {}), dict):
            raise bad_input(f"{path} line {number}: headers must be an object")
        records.append(record)
    return records


def incoming_request(record: Mapping[str, Any], settings: Mapping[str, Any]):
    """The IncomingRequest a captured request becomes.

    Requests that passed authentication when captured carry the configured
    credentials (token; a fresh Meta signature when the body was redacted;
    the instance's token in Z-API's header). Needs the database open.
    Requests that failed it (``untrusted``) are replayed as they came.
    """
    from werkzeug.datastructures import Headers

    from ingest import DROPPED_HEADERS, IncomingRequest
    from security import REDACTED

    encoding = record.get("body_encoding") or "utf-8"
    text = record.get("body") or ""
    try:
        body = base64.b64decode(text, validate=True) if encoding in ("base64", "untrusted") else text.encode("utf-8")
    except ValueError:
        raise bad_input(f"event {record.get('id')}: body is not valid base64") from None
    headers = Headers()
    for name, value in (record.get("headers") or {}).items():
        if str(name).lower() in DROPPED_HEADERS or value == REDACTED:
            continue  # our own credentials, never stored, or redacted at export
        headers.add(str(name), str(value))
    query = {}
    if encoding != "untrusted":
        if settings.get("WEBHOOK_TOKEN"):
            query["token"] = settings["WEBHOOK_TOKEN"]
        for provider, signature in REGISTRY.signatures():
            secret = settings.get(signature.secret_setting)
            if secret and (record.get("redacted") or signature.header not in headers) \
                    and (signature.header in headers or record.get("provider") == provider.name):
                headers.set(signature.header, signature.sign(secret, body))
        _add_instance_token(record, headers)
    return IncomingRequest(
        body=body,
        path=record["route"],
        hint=REGISTRY.hint_for_path(record["route"]),
        headers=headers,
        query=query,
        remote_addr=record.get("remote_addr"),
        request_id=str(record.get("request_id") or "import")[:64],
        method=record.get("method") or "POST",
        content_type=record.get("content_type"),
        content_length=len(body),
    )


def _add_instance_token(record: Mapping[str, Any], headers) -> None:
    """The instance token header (never stored) of a request that passed authentication, from its instance."""
    from models import Instance

    provider = REGISTRY.get(record.get("provider"))
    header = provider.instance_token_header if provider is not None else None
    if header and record.get("instance_id"):
        instance = Instance.find(provider.name, record["instance_id"])
        if instance is not None and instance.api_token:
            headers.set(header, instance.api_token)


def _parse_time(text: Any) -> Optional[datetime]:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=None) if value.tzinfo else value


@commands.command("import", help="Feed every request of a JSON Lines export through the webhook pipeline, as if it "
                                 "arrived now: dedupe and rejection behave as live. Reads UTF-8 and UTF-16 (what "
                                 "PowerShell's > writes).")
@click.argument("file")
@with_settings
def import_command(settings: dict, file: str) -> int:
    from models import WebhookEvent, write_transaction

    records = read_export(file)
    outcomes: dict[str, int] = {}
    with data_app(settings) as app:
        pipeline = app.extensions["zaphook.pipeline"]
        applier = app.extensions["zaphook.applier"]
        with progress("import", len(records)) as advance:
            for record in records:
                answer = pipeline.receive(incoming_request(record, settings))
                if answer.outcome == "stored" and applier.apply_through(answer.event_id):
                    answer = pipeline.answer_for_stored(answer.event_id)  # applied here: no server runs the applier
                outcome = answer.outcome or f"HTTP {answer.status}"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                received_at = _parse_time(record.get("received_at"))
                if answer.event_id and received_at:
                    with write_transaction():  # keep when it was captured, not when it was imported
                        WebhookEvent.update(received_at=received_at).where(
                            WebhookEvent.id == answer.event_id).execute()
                advance(1)
    summary = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))
    print(f"imported {len(records)} requests: {summary or 'none'}")
    return 0


# --- instances -----------------------------------------------------------------------


@commands.group(no_args_is_help=False, help="Add, change or list the WhatsApp instances zaphook knows.")
def instances() -> None:
    pass


def _instance_options(function):
    """The options ``instances add`` and ``instances set`` share."""
    for option in reversed((
        click.option("--provider", required=True, help=f"one of {', '.join(REGISTRY.names)}"),
        click.option("--instance", "external_id", required=True, help="the provider's instance id or name"),
        click.option("--name", help="a name for people"),
        click.option("--token", help="the provider API's token or key for this instance"),
        click.option("--base-url", help="the provider API base URL (default: the .env one)"),
        click.option("--client", help="the client (customer) it belongs to"),
    )):
        function = option(function)
    return function


def _instance_values(settings: Mapping[str, Any], provider: str, name: Optional[str], token: Optional[str],
                     base_url: Optional[str], client: Optional[str], current_base: Optional[str] = None) -> dict:
    """The columns the options set, checked.

    A credential stays with its host (see Instance.api_access): pointing the
    instance at a host other than the .env default needs that host's own
    --token; pointing it back at the default host drops the token it had,
    which belonged to the host it leaves.
    """
    from models import Client, provider_api_defaults, same_api_base

    values: dict = {}
    if name is not None:
        values["name"] = name.strip() or None
    if token is not None:
        values["api_token"] = token.strip() or None
    if base_url is not None:
        base = base_url.strip().rstrip("/")
        if base and not base.startswith(("http://", "https://")):
            raise bad_input(f"--base-url must start with http:// or https://, got {base_url!r}")
        values["api_base_url"] = base or None
        default_base, _ = provider_api_defaults(provider, settings)
        moved = not same_api_base(base or default_base, current_base or default_base)
        if moved and not values.get("api_token"):
            if base and not same_api_base(base, default_base):
                raise bad_input("--base-url names another host than the .env default: give that host's own "
                                "--token too (the .env key is never sent to another host)")
            values["api_token"] = None
    if client is not None:
        if not client.strip():
            raise bad_input("--client must name a client")
        values["client"] = Client.named(client.strip())
    return values


@instances.command("add", help="Declare an instance and its provider API credentials.")
@_instance_options
@with_settings
def instances_add(settings: dict, provider: str, external_id: str, name: Optional[str], token: Optional[str],
                  base_url: Optional[str], client: Optional[str]) -> int:
    from models import Instance

    _known_provider(provider)
    external_id = external_id.strip()
    if not external_id:
        raise bad_input("--instance must not be empty")
    with data_app(settings):
        values = _instance_values(settings, provider, name, token, base_url, client)
        instance, created = Instance.register(provider, external_id, values)
        if not created:
            raise bad_input(f"instance {provider}/{external_id} already exists (id {instance.id}): change it with "
                            f"`{PROG} instances set --provider {provider} --instance {shlex.quote(external_id)} ...`")
        print(f"added instance {instance.id}: {provider}/{external_id}"
              + (" with an API token" if values.get("api_token") else ""))
    return 0


@instances.command("set", help="Change an instance zaphook knows (one a webhook created, or one added): its API "
                               "credentials, name or client. An empty --token removes the instance's own token.")
@_instance_options
@with_settings
def instances_set(settings: dict, provider: str, external_id: str, name: Optional[str], token: Optional[str],
                  base_url: Optional[str], client: Optional[str]) -> int:
    from models import Instance, write_transaction

    _known_provider(provider)
    external_id = external_id.strip()
    if all(value is None for value in (name, token, base_url, client)):
        raise bad_input("nothing to change: give --token, --base-url, --name or --client")
    with data_app(settings):
        instance = Instance.find(provider, external_id)
        if instance is None:
            raise bad_input(f"no instance {provider}/{external_id}: declare it with "
                            f"`{PROG} instances add --provider {provider} --instance {shlex.quote(external_id)} ...`")
        values = _instance_values(settings, provider, name, token, base_url, client, instance.api_base_url)
        with write_transaction():
            Instance.update(values).where(Instance.id == instance.id).execute()
        changed = ", ".join(sorted("API token" if key == "api_token" else key.replace("api_base_url", "API base URL")
                                   for key in values))
        print(f"updated instance {instance.id}: {provider}/{external_id} ({changed})")
    return 0


@instances.command("list", help="List the instances.")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@with_settings
def instances_list(settings: dict, as_json: bool) -> int:
    from models import Instance, instance_json

    with data_app(settings):
        rows = [instance_json(row) for row in Instance.select().order_by(Instance.id)]
    if printed_without_table(rows, as_json, "no instances"):
        return 0
    print(f"{'id':>4}  {'provider':<9}  {'instance':<24}  {'name':<16}  {'state':<12}  {'token':<5}  api base URL")
    for row in rows:
        print(f"{row['id']:>4}  {row['provider']:<9}  {row['instance_id']:<24}  {row['name'] or '-':<16}  "
              f"{row['connection_state']:<12}  {'yes' if row['has_api_token'] else 'no':<5}  "
              f"{row['api_base_url'] or '(.env default)'}")
    return 0


# --- migrate -------------------------------------------------------------------------


commands.add_command(forward_cli.forward)  # forward list|add|remove|replay: forward_cli.py


@commands.command(help="Bring the database's schema to this release (start-up does it too), one process at a "
                       "time; --status lists the migrations and says which are applied.")
@click.option("--status", is_flag=True, help="list the migrations; change nothing")
@with_settings
def migrate(settings: dict, status: bool) -> int:
    import models

    Path(settings["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    database = models.open_database(settings["DATABASE_URL"])
    try:
        with database.connection_context():
            if status:
                rows = models.migration_runner().status()
                for row in rows:
                    mark = "?" if row.path is None else ("x" if row.applied else " ")
                    when = f"  {row.applied:%Y-%m-%d %H:%M:%S}" if row.applied else ""
                    print(f"[{mark}] {row.name}{when}")
                if any(row.path is None for row in rows):
                    raise CommandError("the database has migrations this release does not know: a newer zaphook "
                                       "migrated it")
                pending = [row.name for row in rows if not row.applied]
                print(f"{len(pending)} pending" if pending else "up to date")
                return 0
            try:
                applied = models.migrate_schema()
            except models.SchemaTooNew as exc:
                raise CommandError(str(exc)) from None
    finally:
        database.close_all()
    print("applied: " + ", ".join(applied) if applied else "up to date: nothing to apply")
    return 0
