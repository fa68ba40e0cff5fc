"""The demo: real provider samples made current and kept apart from real data, and their removal.

``server.py demo`` (and ``simulate``) posts one real sample of each event kind
of every provider (``simulate_samples/``) to a running zaphook. On the way the
samples are made to look like today's traffic of instances that exist only for
the demo:

* each sample's instance id becomes ``demo-<provider>``, and that instance is
  declared first under the client named ``models.DEMO_CLIENT``, the way a
  person puts an instance under a client (``POST /api/instances`` with
  ``client``, as ``instances add --client`` does). The webhooks then land on it
  like any other, the unknown-instance rule included; nothing in the pipeline
  knows about the demo.
* every time field the provider's handler reads is set to now, in the sample's
  own form (Unix seconds or milliseconds, as a number or as text, ISO 8601),
  so the demo counts as today's messages and its instances as just heard from.

:func:`clear` removes the demo client's instances and every row that belongs to
them in one transaction, then their media files. It also removes what a
``simulate`` older than the demo client left under the default client (see
:func:`legacy_instance_ids`).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from handlers import REGISTRY, normalise

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).resolve().parent / "simulate_samples"
# The User-Agent the demo posts with; a request stored with it came from the demo.
USER_AGENT = "zaphook-simulate"


@dataclass(frozen=True)
class SampleFields:
    """Where a provider's handler reads the instance id and the times (see handlers/<provider>.py).

    Dotted paths into the payload; a list met on the way is walked item by item.
    """

    instance: tuple[str, ...]
    times: tuple[str, ...]


FIELDS = {
    "wapi": SampleFields(instance=("instanceId",), times=("moment", "timestamp")),
    "plain": SampleFields(instance=("instanceId",), times=("moment", "timestamp")),
    "betzap": SampleFields(instance=("instanceId",), times=("messageTimestamp",)),
    "evolution": SampleFields(instance=("instance", "data.instance", "data.owner"),
                              times=("data.messageTimestamp", "data.datetime", "date_time")),
    "waha": SampleFields(instance=("session", "payload.name"),
                         times=("timestamp", "payload.timestamp", "payload._data.messageTimestamp",
                                "payload.statuses.timestamp")),
    "meta": SampleFields(instance=("entry.changes.value.metadata.phone_number_id",),
                         times=("entry.changes.value.messages.timestamp", "entry.changes.value.statuses.timestamp")),
    "zapi": SampleFields(instance=("instanceId",), times=("momment", "moment")),
}


@dataclass(frozen=True)
class Sample:
    """One entry of simulate_samples/manifest.json: what it shows, where it is posted, its payload."""

    family: str  # the manifest's provider (``--provider``): a betZap sample is among "plain"'s
    kind: str
    route: str
    payload: dict


@dataclass(frozen=True)
class DemoRequest:
    """A sample as the demo posts it: on its demo instance, timed now."""

    sample: Sample
    provider: str  # the handler that reads it
    instance_id: str
    body: bytes


def manifest() -> list[dict]:
    return json.loads((SAMPLES_DIR / "manifest.json").read_text(encoding="utf-8"))


def families() -> tuple[str, ...]:
    """The providers that have samples to post, in registry order."""
    with_samples = {item["provider"] for item in manifest()}
    return tuple(name for name in REGISTRY.names if name in with_samples)


def load_samples(family: str = "all") -> list[Sample]:
    wanted = families() if family == "all" else (family,)
    return [Sample(item["provider"], item["kind"], item["route"],
                   json.loads((SAMPLES_DIR / item["file"]).read_text(encoding="utf-8")))
            for item in manifest() if item["provider"] in wanted]


def instance_id_for(provider: str) -> str:
    return f"demo-{provider}"


def demo_request(sample: Sample, now: datetime) -> DemoRequest:
    """The sample on its provider's demo instance, each time the handler reads set to ``now`` (naive UTC)."""
    provider = normalise(sample.payload, REGISTRY.hint_for_path(sample.route)).provider
    fields = FIELDS.get(provider)
    if fields is None:
        raise ValueError(f"no demo fields for provider {provider!r}: add it to demo.FIELDS")
    payload = copy.deepcopy(sample.payload)
    instance_id = instance_id_for(provider)
    for path in fields.instance:
        _rewrite(payload, path.split("."), lambda _old: instance_id)
    for path in fields.times:
        _rewrite(payload, path.split("."), lambda old: now_like(old, now))
    return DemoRequest(sample, provider, instance_id, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def _rewrite(node: Any, path: list[str], change: Callable[[Any], Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite(item, path, change)
        return
    if not isinstance(node, dict) or path[0] not in node:
        return
    if len(path) == 1:
        node[path[0]] = change(node[path[0]])
    else:
        _rewrite(node[path[0]], path[1:], change)


def now_like(old: Any, now: datetime) -> Any:
    """``now`` written the way ``old`` is: seconds or milliseconds, number or text, or ISO 8601 (UTC)."""
    if old is None or isinstance(old, bool):
        return old
    seconds = now.replace(tzinfo=timezone.utc).timestamp()
    if isinstance(old, (int, float)):
        return int(seconds * 1000) if old > 10**11 else int(seconds)
    if isinstance(old, str):
        if old.strip().isdigit():
            return str(int(seconds * 1000) if int(old) > 10**11 else int(seconds))
        return now.isoformat(timespec="milliseconds") + "Z"
    return old


def demo_instances(requests: Iterable[DemoRequest]) -> list[tuple[str, str]]:
    """The (provider, instance id) pairs the requests land on, in order of first use."""
    seen: dict[tuple[str, str], None] = {}
    for request in requests:
        seen.setdefault((request.provider, request.instance_id), None)
    return list(seen)


def instance_name(provider: str) -> str:
    unit = REGISTRY.get(provider)
    return f"Demo {unit.label if unit is not None else provider}"


# --- removal -------------------------------------------------------------------------------------


def demo_instance_ids() -> list[int]:
    from models import DEMO_CLIENT, Client, Instance

    return [row.id for row in Instance.select(Instance.id).join(Client).where(Client.name == DEMO_CLIENT)]


def legacy_instance_ids() -> list[int]:
    """Instances an older ``simulate`` left under the default client, before the demo had its own.

    Each is one of the samples' own instances, has no API token and no
    campaign, and every request it ever received came from ``simulate``: a
    real instance never matches all of that.
    """
    from models import DEFAULT_CLIENT, Campaign, Client, Instance, WebhookEvent

    pairs = set()
    for sample in load_samples():
        try:
            normalised = normalise(sample.payload, REGISTRY.hint_for_path(sample.route))
        except Exception:  # noqa: BLE001 - a sample no handler reads names no instance
            continue
        pairs.add((normalised.provider, normalised.instance_id))
    found = []
    candidates = (Instance.select(Instance.id, Instance.provider, Instance.external_id).join(Client)
                  .where((Client.name == DEFAULT_CLIENT) & (Instance.api_token.is_null() | (Instance.api_token == ""))))
    for instance in candidates:
        if (instance.provider, instance.external_id) not in pairs:
            continue
        events = WebhookEvent.select().where(WebhookEvent.instance == instance.id)
        if (events.exists()
                and not events.where(~WebhookEvent.headers.contains(USER_AGENT)).exists()
                and not Campaign.select().where(Campaign.instance == instance.id).exists()):
            found.append(instance.id)
    return found


def clear(media_dir: Path, data_dir: Path) -> dict[str, int]:
    """Remove the demo's instances and every row that belongs to them, then their files.

    One transaction, so a failure leaves the demo whole. Rows of other
    instances that point at a demo event (a duplicate, a status change) stay,
    without the link. Returns how many rows of each kind went; empty when
    there was no demo.
    """
    from models import write_transaction

    with write_transaction():
        ids = sorted(set(demo_instance_ids()) | set(legacy_instance_ids()))
        if not ids:
            return {}
        files = _files_of(ids)
        removed = _delete_rows(ids)
        files = _unused(files, media_dir, data_dir)
    for path in files:
        _remove_file(path, (media_dir, data_dir))
    log.info("demo data removed: %s", describe(removed))
    return removed


def clear_in_app(app) -> dict[str, int]:
    """:func:`clear` for a running app, whose caches of instances must then forget the deleted ones."""
    removed = clear(Path(app.config["MEDIA_DIR"]), Path(app.config["DATA_DIR"]))
    if removed:
        app.extensions["zaphook.pipeline"].forget_instances()
        app.extensions["zaphook.applier"].forget_instances()
    return removed


def _files_of(ids: list[int]) -> list[tuple[str, str]]:
    """The files the instances' media rows name: ("local", path under MEDIA_DIR) or ("inline", under DATA_DIR)."""
    from models import MediaFile

    files = []
    for row in MediaFile.select(MediaFile.local_path, MediaFile.inline_path).where(MediaFile.instance.in_(ids)):
        if row.local_path:
            files.append(("local", row.local_path))
        if row.inline_path:
            files.append(("inline", row.inline_path))
    return files


def _unused(files: list[tuple[str, str]], media_dir: Path, data_dir: Path) -> list[Path]:
    """The files no remaining media row names: an inline blob is named by its content, and may be shared."""
    from models import MediaFile

    unused = []
    for kind, relative in files:
        field = MediaFile.local_path if kind == "local" else MediaFile.inline_path
        if not MediaFile.select().where(field == relative).exists():
            unused.append((media_dir if kind == "local" else data_dir) / relative)
    return unused


def _delete_rows(ids: list[int]) -> dict[str, int]:
    from models import (
        DEMO_CLIENT, Campaign, CampaignContact, CampaignLog, Chat, Client, Contact, Instance, JidAlias, MediaAttempt,
        MediaFile, Message, MessageStatusChange, OptOut, Presence, WebhookEvent,
    )

    events = WebhookEvent.select(WebhookEvent.id).where(WebhookEvent.instance.in_(ids))
    campaigns = Campaign.select(Campaign.id).where(Campaign.instance.in_(ids))
    media = MediaFile.select(MediaFile.id).where(MediaFile.instance.in_(ids))
    outside = WebhookEvent.instance.is_null() | WebhookEvent.instance.not_in(ids)
    WebhookEvent.update(duplicate_of=None).where(WebhookEvent.duplicate_of.in_(events) & outside).execute()
    Message.update(event=None).where(Message.event.in_(events) & Message.instance.not_in(ids)).execute()
    MessageStatusChange.update(event=None).where(
        MessageStatusChange.event.in_(events) & MessageStatusChange.instance.not_in(ids)).execute()
    CampaignLog.update(event=None).where(CampaignLog.event.in_(events) & CampaignLog.campaign.not_in(campaigns)).execute()
    # Children before parents, so that no foreign key is left dangling at any step.
    steps = (
        ("media_attempts", MediaAttempt, MediaAttempt.media.in_(media)),
        ("media", MediaFile, MediaFile.instance.in_(ids)),
        ("campaign_log", CampaignLog, CampaignLog.campaign.in_(campaigns)),
        ("campaign_contacts", CampaignContact,
         CampaignContact.campaign.in_(campaigns) | CampaignContact.instance.in_(ids)),
        ("campaigns", Campaign, Campaign.instance.in_(ids)),
        ("status_changes", MessageStatusChange, MessageStatusChange.instance.in_(ids)),
        ("messages", Message, Message.instance.in_(ids)),
        ("presence", Presence, Presence.instance.in_(ids)),
        ("aliases", JidAlias, JidAlias.instance.in_(ids)),
        ("contacts", Contact, Contact.instance.in_(ids)),
        ("chats", Chat, Chat.instance.in_(ids)),
        ("opt_outs", OptOut, OptOut.instance.in_(ids)),
        ("events", WebhookEvent, WebhookEvent.instance.in_(ids)),
        ("instances", Instance, Instance.id.in_(ids)),
    )
    removed = {name: model.delete().where(condition).execute() for name, model, condition in steps}
    if not Instance.select().join(Client).where(Client.name == DEMO_CLIENT).exists():
        Client.delete().where(Client.name == DEMO_CLIENT).execute()  # named again by the next demo
    return removed


def _remove_file(path: Path, roots: tuple[Path, ...]) -> None:
    """Delete a file that lies inside one of ``roots``, then its folders as long as they are empty."""
    resolved = path.resolve()
    root = next((r.resolve() for r in roots if resolved.is_relative_to(r.resolve())), None)
    if root is None:
        log.warning("demo: not removing %s, outside the media and data folders", path)
        return
    try:
        resolved.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("demo: cannot remove %s: %s", resolved, exc)
        return
    folder = resolved.parent
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            break  # not empty (or gone): the rest of the way up is someone's
        folder = folder.parent


def describe(removed: dict[str, int]) -> str:
    """``instances: 7, events: 31, ...`` for people: the kinds of rows there were, the main ones first."""
    first = ("instances", "events", "messages", "chats", "contacts", "media", "campaigns")
    names = [name for name in first if name in removed] + [name for name in removed if name not in first]
    return ", ".join(f"{name.replace('_', ' ')}: {removed[name]}" for name in names if removed[name])
