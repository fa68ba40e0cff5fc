"""``python server.py forward list|add|remove|replay``: forwarding destinations from the command line.

The work is done by plain functions (:func:`list_destinations`,
:func:`add_destination`, :func:`remove_destination`, :func:`replay_events`),
each on the configured database with no server running; :func:`add_parser`
and :func:`cmd_forward` only wire them to server.py's argparse commands
(cli.py registers them), so another command-line library can call the same
functions. A replay queues deliveries: a running zaphook sends them within a
second, or the next one started.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Mapping, Optional


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    forward = subparsers.add_parser(
        "forward", help="forward webhooks to your app: list, add or remove destinations, replay events",
        description="Forward every webhook to the app you are building (see docs/forwarding.md).")
    actions = forward.add_subparsers(dest="action", metavar="{list,add,remove,replay}")
    actions.required = True
    listing = actions.add_parser("list", help="list the destinations, with their secrets",
                                 description="List the destinations, their secrets and their deliveries.")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add = actions.add_parser("add", help="add a destination", description="Add a destination.")
    add.add_argument("url", help="where to POST, e.g. http://localhost:3000/webhook")
    add.add_argument("--name", help="a name for it (default: app-<id>)")
    add.add_argument("--format", choices=("raw", "normalised"), default="raw",
                     help="raw: the provider's request as it came; normalised: one schema for every provider")
    add.add_argument("--secret", help="the signing secret, whsec_<base64> (default: a new one)")
    add.add_argument("--instance", help="only this instance (the provider's instance id)")
    add.add_argument("--provider", help="only this provider")
    add.add_argument("--types", help="only these event types, comma-separated (e.g. message.received,reaction)")
    add.add_argument("--disabled", action="store_true", help="add it switched off")
    remove = actions.add_parser("remove", help="remove a destination and its delivery history",
                                description="Remove a destination (by id or name) and its deliveries.")
    remove.add_argument("destination", help="its id or name")
    replay = actions.add_parser("replay", help="deliver events to a destination again",
                                description="Queue events again for a destination: named ones (--event), or every "
                                            "event of a time range and filter.")
    replay.add_argument("--destination", required=True, help="its id or name")
    replay.add_argument("--event", type=int, action="append", default=[], help="an event id (repeatable)")
    replay.add_argument("--since", help="events received at or after this time (ISO 8601, UTC unless it says)")
    replay.add_argument("--until", help="events received at or before this time")
    replay.add_argument("--provider")
    replay.add_argument("--instance", help="the provider's instance id")
    replay.add_argument("--kind", help="the event kind (message, status, presence...)")


def cmd_forward(args: argparse.Namespace, settings: dict) -> int:
    if args.action == "list":
        rows = list_destinations(settings)
        if args.json:
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
            return 0
        if not rows:
            print("no destinations (add one: python server.py forward add <url>, or set FORWARD_URL)")
            return 0
        for row in rows:
            state = "on" if row["enabled"] else "off"
            counts = ", ".join(f"{count} {name}" for name, count in sorted(row["deliveries"].items())) or "nothing yet"
            print(f"{row['id']:>3}  {row['name']:<16}  {row['format']:<10}  {state:<3}  {row['url']}")
            print(f"     secret {row['secret']}  filter {_filter_text(row)}  deliveries: {counts}")
        return 0
    if args.action == "add":
        row = add_destination(settings, {
            "url": args.url, "name": args.name, "format": args.format, "secret": args.secret,
            "instance": args.instance, "provider": args.provider, "types": args.types or "",
            "enabled": not args.disabled})
        print(f"added destination {row['id']} ({row['name']}): {row['url']}, {row['format']}, "
              f"{'on' if row['enabled'] else 'off'}")
        print(f"secret (verify the webhook-signature header with it): {row['secret']}")
        return 0
    if args.action == "remove":
        name = remove_destination(settings, args.destination)
        print(f"removed destination {name} and its deliveries")
        return 0
    events, queued, name = replay_events(settings, args.destination, event_ids=args.event, since=args.since,
                                         until=args.until, provider=args.provider, instance=args.instance,
                                         kind=args.kind)
    print(f"queued {queued} deliveries of {events} events for {name}: a running zaphook sends them within a "
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
