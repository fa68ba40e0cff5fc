"""``python server.py forward list|add|remove|replay``: forwarding destinations from the command line.

The work is done by plain functions (:func:`list_destinations`,
:func:`add_destination`, :func:`remove_destination`, :func:`replay_events`),
each on the configured database with no server running; the click group
:data:`forward` (added to cli.commands) only reads the options and prints. A
replay queues deliveries: a running zaphook sends them within a second, or
the next one started.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import click

FORMATS = ("raw", "normalised")


def _settings() -> dict:
    from cli import command_settings

    return command_settings()


@click.group(help="Forward every webhook to the app you are building: list, add or remove destinations, replay "
                  "events (see docs/forwarding.md).")
def forward() -> None:
    pass


@forward.command("list", help="List the destinations, their secrets and their deliveries.")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_command(as_json: bool) -> int:
    rows = list_destinations(_settings())
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return 0
    if not rows:
        click.echo("no destinations (add one: python server.py forward add <url>, or set FORWARD_URL)")
        return 0
    for row in rows:
        state = "on" if row["enabled"] else "off"
        counts = ", ".join(f"{count} {name}" for name, count in sorted(row["deliveries"].items())) or "nothing yet"
        click.echo(f"{row['id']:>3}  {row['name']:<16}  {row['format']:<10}  {state:<3}  {row['url']}")
        click.echo(f"     secret {row['secret']}  filter {_filter_text(row)}  deliveries: {counts}")
    return 0


@forward.command("add", help="Add a destination.")
@click.argument("url")
@click.option("--name", help="a name for it (default: app-<id>)")
@click.option("--format", "form", type=click.Choice(FORMATS), default="raw", show_default=True,
              help="raw: the provider's request as it came; normalised: one schema for every provider")
@click.option("--secret", help="the signing secret, whsec_<base64> (default: a new one)")
@click.option("--instance", help="only this instance (the provider's instance id)")
@click.option("--provider", help="only this provider")
@click.option("--types", help="only these event types, comma-separated (e.g. message.received,reaction)")
@click.option("--disabled", is_flag=True, help="add it switched off")
def add_command(url: str, name: Optional[str], form: str, secret: Optional[str], instance: Optional[str],
                provider: Optional[str], types: Optional[str], disabled: bool) -> int:
    row = add_destination(_settings(), {
        "url": url, "name": name, "format": form, "secret": secret, "instance": instance, "provider": provider,
        "types": types or "", "enabled": not disabled})
    click.echo(f"added destination {row['id']} ({row['name']}): {row['url']}, {row['format']}, "
               f"{'on' if row['enabled'] else 'off'}")
    click.echo(f"secret (verify the webhook-signature header with it): {row['secret']}")
    return 0


@forward.command("remove", help="Remove a destination (by id or name) and its deliveries.")
@click.argument("destination")
def remove_command(destination: str) -> int:
    click.echo(f"removed destination {remove_destination(_settings(), destination)} and its deliveries")
    return 0


@forward.command("replay", help="Queue events again for a destination: named ones (--event), or every event of a "
                                "time range and filter.")
@click.option("--destination", required=True, help="its id or name")
@click.option("--event", "event_ids", type=click.IntRange(min=1), multiple=True, help="an event id (repeatable)")
@click.option("--since", help="events received at or after this time (ISO 8601, UTC unless it says)")
@click.option("--until", help="events received at or before this time")
@click.option("--provider")
@click.option("--instance", help="the provider's instance id")
@click.option("--kind", help="the event kind (message, status, presence...)")
def replay_command(destination: str, event_ids: tuple, since: Optional[str], until: Optional[str],
                   provider: Optional[str], instance: Optional[str], kind: Optional[str]) -> int:
    events, queued, name = replay_events(_settings(), destination, event_ids=event_ids, since=since, until=until,
                                         provider=provider, instance=instance, kind=kind)
    click.echo(f"queued {queued} deliveries of {events} events for {name}: a running zaphook sends them within a "
               "second (or the next one started)")
    return 0


def _filter_text(row: Mapping[str, Any]) -> str:
    parts = [f"{name}={row[name]}" for name in ("provider", "instance") if row[name]]
    if row["types"]:
        parts.append("types=" + ",".join(row["types"]))
    return " ".join(parts) or "everything"


# --- the work --------------------------------------------------------------------------------

def _forward_errors():
    """ForwardError as the command line's bad input (exit code 2), with the message the API gives."""
    from contextlib import contextmanager

    from cli import bad_input
    from forwarding import ForwardError

    @contextmanager
    def translated():
        try:
            yield
        except ForwardError as exc:
            raise bad_input(str(exc)) from None
    return translated()


def list_destinations(settings: Mapping[str, Any]) -> list[dict]:
    from cli import data_app
    from forwarding import destination_json
    from models import ForwardDestination

    with data_app(settings):
        return [destination_json(row) for row in ForwardDestination.select().order_by(ForwardDestination.id)]


def add_destination(settings: Mapping[str, Any], values: Mapping[str, Any]) -> dict:
    from cli import data_app
    from forwarding import create_destination, destination_json

    given = {name: value for name, value in values.items() if value is not None}
    with data_app(settings), _forward_errors():
        return destination_json(create_destination(given))


def remove_destination(settings: Mapping[str, Any], key: str) -> str:
    from cli import data_app
    from forwarding import delete_destination, find_destination

    with data_app(settings), _forward_errors():
        destination = find_destination(key)
        delete_destination(destination)
        return destination.name


def replay_events(settings: Mapping[str, Any], destination: str, *, event_ids=(), since: Optional[str] = None,
                  until: Optional[str] = None, provider: Optional[str] = None, instance: Optional[str] = None,
                  kind: Optional[str] = None) -> tuple[int, int, str]:
    """Queue events again for a destination: (events, deliveries queued, the destination's name)."""
    from cli import bad_input, data_app
    from forwarding import find_destination
    from handlers.base import parse_timestamp

    times = {}
    for name, text in (("since", since), ("until", until)):
        if text:
            times[name] = parse_timestamp(text)
            if times[name] is None:
                raise bad_input(f"--{name} must be an ISO 8601 time (2025-05-01T10:00:00Z) or Unix seconds, "
                                f"got {text!r}")
    with data_app(settings) as app, _forward_errors():
        target = find_destination(destination)
        replayed = app.extensions["zaphook.forwarding"].replay(
            target, event_ids=event_ids, since=times.get("since"), until=times.get("until"), provider=provider,
            instance=instance, kind=kind)
        return replayed.events, replayed.deliveries, target.name
