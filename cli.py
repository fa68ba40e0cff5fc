"""The command line besides ``run``: register, simulate, events, replay, export, import, instances.

``server.main()`` adds these commands with :func:`add_commands` and hands every
one but ``run`` to :func:`run_command`, after the settings are loaded.
Commands that read or change stored data open the configured database
themselves (no running server needed); ``simulate`` posts to a running server.

Errors are one line on stderr, ``zaphook: ...``: exit code 2 for bad input,
1 for an operation that failed (a provider refused, a server did not answer).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, TextIO

import forward_cli
from handlers import REGISTRY
from handlers.provider import Provider

SAMPLES_DIR = Path(__file__).resolve().parent / "simulate_samples"
HTTP_TIMEOUT = (10, 30)  # (connect, read) seconds for calls to a running zaphook


class CommandError(Exception):
    """One line for stderr and the exit code (2: bad input, 1: failed operation)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def bad_input(message: str) -> CommandError:
    return CommandError(message, 2)


# --- the parsers -------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """A command parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"zaphook: {self.prog}: {message} (see {self.prog} --help)\n")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add every command but ``run`` to server.py's subparsers (made with ``parser_class=OneLineParser``)."""
    register = subparsers.add_parser(
        "register", help="point a provider's webhooks at this server",
        description="Set the provider's webhooks to this server's URLs (PUBLIC_URL, or --base-url) through its "
                    "API; for a provider configured by hand (Meta), print what to paste into it.")
    register.add_argument("--provider", required=True, choices=[
        provider.name for provider in REGISTRY if provider.register or provider.register_by_hand])
    register.add_argument("--instance", help="the provider's instance id or name")
    register.add_argument("--base-url", help="the address providers reach zaphook on (default: PUBLIC_URL)")
    register.add_argument("--base64", action="store_true",
                          help="ask the provider to send media inline as base64 in the webhook, where it can "
                               "(Evolution; default: off)")

    migrate = subparsers.add_parser(
        "migrate", help="bring the database's schema to this release (start-up does it too)",
        description="Apply the pending schema migrations, one process at a time, as start-up does; "
                    "--status lists them and says which are applied.")
    migrate.add_argument("--status", action="store_true", help="list the migrations; change nothing")

    simulate = subparsers.add_parser(
        "simulate", help="post one real sample of each event kind to a running server",
        description="Post one real provider sample of each event kind to a running zaphook, "
                    "so you can see the whole pipeline work without a phone.")
    simulate.add_argument("--provider", default="all", choices=(*simulate_providers(), "all"))
    simulate.add_argument("--url", help="the running server (default: http://127.0.0.1:$PORT)")

    events = subparsers.add_parser("events", help="list stored webhook requests, newest first",
                                   description="List the stored webhook requests, newest first.")
    events.add_argument("--provider")
    events.add_argument("--kind")
    events.add_argument("--outcome")
    events.add_argument("--instance", help="the provider's instance id, or zaphook's numeric id")
    events.add_argument("--limit", type=_positive_int, default=50, help="how many (default: 50)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = subparsers.add_parser("replay", help="run a stored request through normalising again",
                                   description="Run a stored webhook request through normalising again.")
    replay.add_argument("event_id", type=_positive_int, help="the event id (see `events`)")

    export = subparsers.add_parser(
        "export", help="write stored webhook requests as JSON Lines",
        description="Write the stored webhook requests, oldest first, one JSON object per line "
                    "(what `import` reads). Secrets are redacted unless --with-secrets.")
    export.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    export.add_argument("--with-secrets", action="store_true", help="keep tokens, keys and signatures")
    export.add_argument("--provider")
    export.add_argument("--outcome")

    import_ = subparsers.add_parser(
        "import", help="replay captured requests (a JSON Lines export) through the pipeline",
        description="Feed every request of a JSON Lines export through the webhook pipeline, "
                    "as if it arrived now: dedupe and rejection behave as live.")
    import_.add_argument("file", help="a file written by `export` (- for stdin)")

    instances = subparsers.add_parser("instances", help="add or list instances",
                                      description="Add or list the WhatsApp instances zaphook knows.")
    actions = instances.add_subparsers(dest="action", metavar="{add,list}")
    actions.required = True
    add = actions.add_parser("add", help="declare an instance and its API credentials",
                             description="Declare an instance and its provider API credentials.")
    add.add_argument("--provider", required=True)
    add.add_argument("--instance", required=True, help="the provider's instance id or name")
    add.add_argument("--name", help="a name for people")
    add.add_argument("--token", help="the provider API's token or key for this instance")
    add.add_argument("--base-url", help="the provider API base URL (default: the .env one)")
    add.add_argument("--client", help="the client (customer) it belongs to")
    listing = actions.add_parser("list", help="list instances", description="List the instances.")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    forward_cli.add_parser(subparsers)  # forward list|add|remove|replay: forward_cli.py


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_command(args: argparse.Namespace, settings: dict) -> int:
    """Run one command; the exit code."""
    handler = COMMANDS[args.command]
    try:
        return handler(args, settings)
    except CommandError as exc:
        print(f"zaphook: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("zaphook: interrupted", file=sys.stderr)
        return 130


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


class Progress:
    """A progress bar on stderr when it is a terminal, else a counter line now and then."""

    def __init__(self, label: str, total: Optional[int], stream: Optional[TextIO] = None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._step = max(1, (total or 0) // 10) if total else 1000

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.tty:
            now = time.monotonic()
            if now - self._last >= 0.1 or self.done == self.total:
                self._last = now
                self._draw()
        elif self.done % self._step == 0 and self.done != self.total:
            print(f"{self.label}: {self._count()}", file=self.stream, flush=True)

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else str(self.done)

    def _draw(self) -> None:
        if self.total:
            width = 30
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"\r{self.label} [{bar}] {self._count()} ({100 * self.done // self.total}%)"
        else:
            text = f"\r{self.label}: {self.done}"
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self._draw()
            self.stream.write("\n")
        else:
            print(f"{self.label}: {self._count()} done", file=self.stream)
        self.stream.flush()


def _http():
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: these are configured hosts
    return session


def _answer_text(response) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return text[:300] + ("…" if len(text) > 300 else "")


# --- register ----------------------------------------------------------------------


def _base_url(args_base: Optional[str], settings: Mapping[str, Any]) -> str:
    base = (args_base or settings.get("PUBLIC_URL") or running_tunnel_url(settings) or "").strip().rstrip("/")
    if not base:
        raise bad_input("no public URL for the webhooks: start zaphook with its tunnel first, "
                        "or pass --base-url https://..., or set PUBLIC_URL")
    if not base.startswith(("http://", "https://")):
        raise bad_input(f"--base-url must start with http:// or https://, got {base!r}")
    return base


def running_tunnel_url(settings: Mapping[str, Any]) -> Optional[str]:
    """The public URL of the tunnel the zaphook running on this machine's PORT has open, if any."""
    try:
        response = _http().get(f"http://127.0.0.1:{settings['PORT']}/status", timeout=3)
        tunnel = response.json().get("tunnel") or {}
    except Exception:  # noqa: BLE001 - no server, another program on the port: no URL
        return None
    return tunnel.get("public_url") if tunnel.get("state") == "open" else None


def _credentials(provider: Provider, instance_id: str, settings: Mapping[str, Any]) -> tuple[str, str]:
    """The instance's API base URL and token (its own, else the .env defaults)."""
    from models import Instance

    instance = Instance.find(provider.name, instance_id) or Instance(provider=provider.name, external_id=instance_id)
    base, token = instance.api_access(settings)
    base_name, token_name = (provider.api.base_url_setting, provider.api.token_setting) if provider.api \
        else ("its api_base_url", "its api_token")
    if not base:
        raise bad_input(f"no API base URL for {provider.name} instance {instance_id!r}: set {base_name} "
                        f"or `instances add --base-url`")
    if not token:
        raise bad_input(f"no API token for {provider.name} instance {instance_id!r}: set {token_name} "
                        f"or `instances add --token`")
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


def cmd_register(args: argparse.Namespace, settings: dict) -> int:
    from config import SECRET_SETTINGS
    base = _base_url(args.base_url, settings)
    provider = REGISTRY.get(args.provider)
    if provider.register is None:
        try:
            lines = provider.register_by_hand(REGISTRY.urls_for(provider, base, settings.get("WEBHOOK_TOKEN")), settings)
        except ValueError as exc:
            raise bad_input(str(exc)) from None
        print("\n".join(lines))
        return 0
    if not args.instance or not args.instance.strip():
        raise bad_input(f"--instance is required for {args.provider}")
    with data_app(settings):
        results = register_instance(args.provider, args.instance.strip(), settings, base, args.base64)
    _print_results(results, [settings.get(name) for name in SECRET_SETTINGS])
    refused = [r for r in results if not r["ok"]]
    if refused:
        raise CommandError(f"{args.provider} refused {len(refused)} of {len(results)} webhook settings")
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


# --- simulate ----------------------------------------------------------------------


def _manifest() -> list[dict]:
    return json.loads((SAMPLES_DIR / "manifest.json").read_text(encoding="utf-8"))


def simulate_providers() -> tuple[str, ...]:
    """The providers that have samples to post, in registry order."""
    with_samples = {item["provider"] for item in _manifest()}
    return tuple(name for name in REGISTRY.names if name in with_samples)


def load_samples(provider: str) -> list[dict]:
    wanted = simulate_providers() if provider == "all" else (provider,)
    return [item for item in _manifest() if item["provider"] in wanted]


def cmd_simulate(args: argparse.Namespace, settings: dict) -> int:
    import requests

    base = (args.url or f"http://127.0.0.1:{settings['PORT']}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise bad_input(f"--url must start with http:// or https://, got {base!r}")
    token = settings.get("WEBHOOK_TOKEN") or _kept_token(settings)
    session = _http()
    failures = 0
    samples = load_samples(args.provider)
    for sample in samples:
        body = (SAMPLES_DIR / sample["file"]).read_bytes()
        headers = {"Content-Type": "application/json", "User-Agent": "zaphook-simulate"}
        signature = REGISTRY.get(sample["provider"]).signature
        if signature is not None and settings.get(signature.secret_setting):
            headers[signature.header] = signature.sign(settings[signature.secret_setting], body)
        try:
            response = session.post(base + sample["route"], data=body, headers=headers,
                                    params={"wait": "1", **({"token": token} if token else {})},
                                    timeout=HTTP_TIMEOUT)  # wait=1: print what each sample became
        except requests.ConnectionError:
            raise CommandError(f"no zaphook answering at {base}: start it with `python server.py` "
                               "(or pass --url)") from None
        except requests.RequestException as exc:
            raise CommandError(f"posting to {base} failed: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        ok = response.status_code == 200
        failures += not ok
        result = answer.get("outcome") if ok else f"HTTP {response.status_code}: {answer.get('error') or _answer_text(response)}"
        print(f"{sample['provider']:<9} {sample['kind']:<28} {sample['route']:<28} -> "
              f"{result} (event {answer.get('event_id')}, {answer.get('provider')}/{answer.get('kind')})")
    print(f"posted {len(samples)} samples to {base}; see {base}/api/messages and {base}/api/events")
    if failures:
        raise CommandError(f"{failures} of {len(samples)} samples were not accepted")
    return 0


def _kept_token(settings: Mapping[str, Any]) -> Optional[str]:
    """The token a tunnel-started server generated and kept in DATA_DIR, if any."""
    from tunnel import WEBHOOK_TOKEN_FILE

    try:
        return (Path(settings["DATA_DIR"]) / WEBHOOK_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


# --- events and replay ---------------------------------------------------------------


def _event_query(provider=None, kind=None, outcome=None, instance=None):
    from peewee import JOIN

    from models import OUTCOMES, Instance, WebhookEvent

    if outcome and outcome not in OUTCOMES:
        raise bad_input(f"--outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
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


def cmd_events(args: argparse.Namespace, settings: dict) -> int:
    from models import WebhookEvent, event_json

    with data_app(settings):
        query = _event_query(args.provider, args.kind, args.outcome, args.instance)
        rows = [event_json(row) for row in query.order_by(WebhookEvent.id.desc()).limit(args.limit)]
    if printed_without_table(rows, args.json, "no events"):
        return 0
    print(f"{'id':>6}  {'received_at':<20}  {'provider':<9}  {'kind':<14}  {'outcome':<9}  {'instance':<20}  route")
    for row in rows:
        line = (f"{row['id']:>6}  {(row['received_at'] or '')[:19]:<20}  {row['provider'] or '-':<9}  "
                f"{row['kind'] or '-':<14}  {row['outcome']:<9}  {row['instance_id'] or '-':<20}  {row['route']}")
        if row["error"]:
            line += f"  ({row['error'][:80]})"
        print(line)
    return 0


def cmd_replay(args: argparse.Namespace, settings: dict) -> int:
    from models import WebhookEvent

    with data_app(settings) as app:
        event = WebhookEvent.get_or_none(WebhookEvent.id == args.event_id)
        if event is None:
            raise bad_input(f"no event {args.event_id}")
        answer = app.extensions["zaphook.pipeline"].replay(event, REGISTRY.hint_for_path(event.route))
    print(json.dumps(answer.body, ensure_ascii=False))
    if answer.status >= 400:
        raise CommandError(f"event {args.event_id} was not replayed: {answer.body.get('error')}")
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


def cmd_export(args: argparse.Namespace, settings: dict) -> int:
    from config import SECRET_SETTINGS
    from models import WebhookEvent

    secrets = None if args.with_secrets else [settings.get(name) for name in SECRET_SETTINGS]
    output = sys.stdout if args.output == "-" else None
    if output is None:
        try:
            output = open(args.output, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise bad_input(f"cannot write {args.output}: {exc.strerror or exc}") from None
    try:
        with data_app(settings):
            query = _event_query(args.provider, None, args.outcome)
            progress = Progress("export", query.count())
            for event in query.order_by(WebhookEvent.id).iterator():
                output.write(json.dumps(export_line(event, secrets), ensure_ascii=False) + "\n")
                progress.advance()
            progress.finish()
    finally:
        if output is not sys.stdout:
            output.close()
        else:
            output.flush()
    if output is not sys.stdout:
        print(f"exported {progress.done} events to {args.output}" + ("" if secrets is None else " (redacted)"),
              file=sys.stderr)
    return 0


def read_export(path: str) -> list[dict]:
    """The lines of an export, checked before anything is imported."""
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise bad_input(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise bad_input(f"{path} is not UTF-8 text (a JSON Lines export)") from None
    records = []
    for number, line in enumerate(lines, 1):
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


def cmd_import(args: argparse.Namespace, settings: dict) -> int:
    from models import WebhookEvent, write_transaction

    records = read_export(args.file)
    outcomes: dict[str, int] = {}
    with data_app(settings) as app:
        pipeline = app.extensions["zaphook.pipeline"]
        applier = app.extensions["zaphook.applier"]
        progress = Progress("import", len(records))
        for record in records:
            answer = pipeline.receive(incoming_request(record, settings))
            if answer.outcome == "stored" and applier.apply_through(answer.event_id):
                answer = pipeline.answer_for_stored(answer.event_id)  # applied here: no server runs the applier
            outcome = answer.outcome or f"HTTP {answer.status}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            received_at = _parse_time(record.get("received_at"))
            if answer.event_id and received_at:
                with write_transaction():  # keep when it was captured, not when it was imported
                    WebhookEvent.update(received_at=received_at).where(WebhookEvent.id == answer.event_id).execute()
            progress.advance()
        progress.finish()
    summary = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))
    print(f"imported {len(records)} requests: {summary or 'none'}")
    return 0


# --- instances -----------------------------------------------------------------------


def cmd_instances(args: argparse.Namespace, settings: dict) -> int:
    from models import Client, Instance, instance_json, provider_api_defaults, same_api_base

    with data_app(settings):
        if args.action == "list":
            rows = [instance_json(row) for row in Instance.select().order_by(Instance.id)]
            if printed_without_table(rows, args.json, "no instances"):
                return 0
            print(f"{'id':>4}  {'provider':<9}  {'instance':<24}  {'name':<16}  {'state':<12}  {'token':<5}  api base URL")
            for row in rows:
                print(f"{row['id']:>4}  {row['provider']:<9}  {row['instance_id']:<24}  {row['name'] or '-':<16}  "
                      f"{row['connection_state']:<12}  {'yes' if row['has_api_token'] else 'no':<5}  "
                      f"{row['api_base_url'] or '(.env default)'}")
            return 0

        if REGISTRY.get(args.provider) is None:
            raise bad_input(f"--provider must be one of {', '.join(REGISTRY.names)}, got {args.provider!r}")
        external_id = args.instance.strip()
        if not external_id:
            raise bad_input("--instance must not be empty")
        values: dict = {}
        if args.name:
            values["name"] = args.name.strip()
        if args.token:
            values["api_token"] = args.token.strip()
        if args.base_url:
            base = args.base_url.strip().rstrip("/")
            if not base.startswith(("http://", "https://")):
                raise bad_input(f"--base-url must start with http:// or https://, got {args.base_url!r}")
            values["api_base_url"] = base
            default_base, _ = provider_api_defaults(args.provider, settings)
            if not args.token and not same_api_base(base, default_base):
                raise bad_input("--base-url names another host than the .env default: give that host's own "
                                "--token too (the .env key is never sent to another host)")
        if args.client:
            values["client"] = Client.named(args.client.strip())
        instance, created = Instance.register(args.provider, external_id, values)
        if not created:
            raise bad_input(f"instance {args.provider}/{external_id} already exists (id {instance.id})")
        print(f"added instance {instance.id}: {args.provider}/{external_id}"
              + (" with an API token" if args.token else ""))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: dict) -> int:
    """Show the migrations and whether each is applied, or apply the pending ones (as start-up does)."""
    from pathlib import Path

    import models

    Path(settings["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    database = models.open_database(settings["DATABASE_URL"])
    try:
        with database.connection_context():
            if args.status:
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


COMMANDS = {
    "register": cmd_register,
    "simulate": cmd_simulate,
    "events": cmd_events,
    "replay": cmd_replay,
    "export": cmd_export,
    "import": cmd_import,
    "instances": cmd_instances,
    "migrate": cmd_migrate,
    "forward": forward_cli.cmd_forward,
}
