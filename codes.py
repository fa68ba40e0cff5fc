"""Every text the server writes for people, as a stable code with its English wording.

The server never hands the dashboard a sentence alone: next to the English text it
always sent (``error``, ``detail``: API clients, the CLI and logs read those), it sends
``code`` and ``params``, and the dashboard says it in the page's language from
static/i18n/<language>.json. tests/test_codes.py fails when a code registered here has
no entry in either catalogue, when the two catalogues' keys differ, and when a
``say("...")`` in the source names a code that is not registered.

Adding codes for your area (campaigns., refusal., event_kind., ...):

1. Register them once, at import time, under your area's prefix::

       from codes import define
       define("campaigns.", {
           "campaigns.no_phone": "row {row} has no phone number",
           "campaigns.rows_skipped": {"one": "{count} row skipped", "other": "{count} rows skipped"},
       })

   in codes.py (a section below) or in your own module; a module of your own goes in
   :data:`CODE_MODULES` so the test imports it.
2. Produce them with ``say("campaigns.no_phone", row=3)``: a :class:`Text`, whose
   ``english`` is the English and whose ``as_json()`` is ``{"code", "params"}``.
3. Add the keys to both catalogues (a plural's ``.one`` and ``.other``; pt-BR may add
   ``.many``), with the same ``{placeholders}``.

Wording and parameters:

* ``{name}`` is replaced by the parameter ``name``, as is, in both catalogues.
* A plural (``{"one": ..., "other": ...}``) is chosen by the ``count`` parameter
  (the page uses ``Intl.PluralRules``).
* A parameter whose name ends in ``_ago`` is a number of seconds in the past; the page
  writes it as "12 minutes ago" / "há 3 dias" (``Intl.RelativeTimeFormat``), the English
  text the same way. Durations travel as numbers, never as words.
* A parameter may itself be a Text (a reason inside a sentence) or a list of them
  (joined with "; "): each is said in the page's language too.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

English = Union[str, Mapping[str, str]]  # a sentence, or a plural {"one": ..., "other": ...}

# Modules outside this one that call define() when imported.
CODE_MODULES: tuple[str, ...] = ("forwarding",)

_REGISTRY: dict[str, English] = {}
_PREFIXES: set[str] = set()
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
AGO_SUFFIX = "_ago"


def define(prefix: str, entries: Mapping[str, English]) -> None:
    """Register codes under ``prefix`` (an area's own, ending with "."); a code is defined once."""
    if not prefix.endswith("."):
        raise ValueError(f"a prefix ends with '.': {prefix!r}")
    _PREFIXES.add(prefix)
    for code, text in entries.items():
        if not code.startswith(prefix):
            raise ValueError(f"{code!r} is not under {prefix!r}")
        if code in _REGISTRY and _REGISTRY[code] != text:
            raise ValueError(f"{code!r} is already defined")
        if isinstance(text, Mapping) and set(text) != {"one", "other"}:
            raise ValueError(f"the plural {code!r} needs exactly 'one' and 'other'")
        _REGISTRY[code] = text


def registered() -> dict[str, English]:
    """Every code and its English, the modules in CODE_MODULES included."""
    for name in CODE_MODULES:
        importlib.import_module(name)
    return dict(_REGISTRY)


def prefixes() -> frozenset[str]:
    """The areas codes are registered under ("qa.", "error.", ...)."""
    registered()
    return frozenset(_PREFIXES)


def catalogue_keys(code: str) -> tuple[str, ...]:
    """The catalogue keys a code needs: itself, or a plural's ``.one`` and ``.other``."""
    text = _REGISTRY[code]
    return (f"{code}.one", f"{code}.other") if isinstance(text, Mapping) else (code,)


@dataclass(frozen=True)
class Text:
    """A text for people: a code and its parameters; ``english`` is how it reads in English."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def english(self) -> str:
        return english(self.code, self.params)

    def __str__(self) -> str:
        return self.english

    def as_json(self) -> dict:
        return {"code": self.code, "params": params_json(self.params)}


def say(code: str, **params: Any) -> Text:
    """The text ``code`` with ``params`` (a code that is not registered is written as itself)."""
    return Text(code, params)


def params_json(params: Mapping[str, Any]) -> dict:
    """The parameters as JSON: a Text inside becomes {"code", "params"}, a list of them a list."""
    return {name: _value_json(value) for name, value in params.items()}


def _value_json(value: Any) -> Any:
    if isinstance(value, Text):
        return value.as_json()
    if isinstance(value, (list, tuple)):
        return [_value_json(item) for item in value]
    return value


def english(code: str, params: Mapping[str, Any]) -> str:
    """The English text of ``code`` with ``params`` filled in (the server's side of what the page does)."""
    template = _REGISTRY.get(code, code)
    if isinstance(template, Mapping):
        template = template["one"] if params.get("count") == 1 else template["other"]

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in params:
            return match.group(0)
        return _english_value(name, params[name])

    return _PLACEHOLDER.sub(fill, template)


def _english_value(name: str, value: Any) -> str:
    if isinstance(value, Text):
        return value.english
    if isinstance(value, (list, tuple)):
        return "; ".join(_english_value(name, item) for item in value)
    if name.endswith(AGO_SUFFIX) and isinstance(value, (int, float)):
        return ago_english(value)
    return str(value)


def error_body(text: Text, detail: Any = None) -> dict:
    """The JSON API's error answer: ``error`` (English, as always), ``detail``, and the text's code and params."""
    return {"error": text.english, "detail": detail, **text.as_json()}


_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400), ("day", 86400),
          ("hour", 3600), ("minute", 60), ("second", 1))


def ago_english(seconds: float) -> str:
    """Seconds in the past as people say it: "just now", "12 minutes ago", "3 days ago"."""
    seconds = max(0, int(seconds))
    if seconds < 10:
        return "just now"
    for unit, size in _UNITS:
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


# --- the codes ------------------------------------------------------------------------------------
# One define() per area. The state.* words are the catalogue's own (connection and media states),
# listed so that a text may carry one as a parameter.

define("state.", {
    "state.unknown": "unknown",
    "state.connecting": "connecting",
    "state.connected": "connected",
    "state.disconnected": "disconnected",
    "state.pending": "pending",
    "state.downloading": "downloading",
    "state.done": "done",
    "state.failed": "failed",
    "state.expired": "expired",
})

# The /test self-check (status.py): each check's name, then what it found.
define("qa.", {
    "qa.check.database": "database writable",
    "qa.check.data_dir": "data dir writable",
    "qa.check.media_dir": "media dir writable",
    "qa.check.media_workers": "media workers",
    "qa.check.tunnel": "tunnel",
    "qa.check.webhook_token": "webhook token",
    "qa.check.admin_token": "admin token",
    "qa.check.provider_settings": "{provider} settings",
    "qa.check.instance": "instance {provider}/{instance}",
    "qa.check.campaign_counters": "campaign counters",
    "qa.check.campaign_sender": "campaign sender",
    "qa.check.applier": "applier",
    "qa.check.media_dir_shared": "media dir shared",

    "qa.database.ok": "a test write was accepted and rolled back",
    "qa.database.failed": "the database refused a test write: {error}",
    "qa.folder.ok": "{folder}: writable, {free_mb} MB free",
    "qa.folder.low_space": "{folder}: only {free_mb} MB free",
    "qa.folder.failed": "{folder} cannot be written: {error}",
    "qa.media_workers.off": "media downloads are off (MEDIA_WORKERS=0)",
    "qa.media_workers.alive": "{alive} of {size} download threads alive",
    "qa.tunnel.open": "open at {url}",
    "qa.tunnel.off_by_setting": "no tunnel: TUNNEL=off",
    "qa.tunnel.off_no_authtoken": "no tunnel: NGROK_AUTHTOKEN is not set (TUNNEL=auto)",
    "qa.tunnel.starting": "the ngrok agent is still starting",
    "qa.tunnel.closed": "closed (zaphook is stopping)",
    "qa.tunnel.elsewhere": "another zaphook process of this deployment owns the tunnel",
    "qa.tunnel.failed": "the tunnel did not open: {reason}",
    "qa.tunnel.ngrok_error": "ngrok refused the tunnel ({error_code}): {reason}",
    "qa.webhook_token.unset": "WEBHOOK_TOKEN is not set: only this machine can post events (HOST={host})",
    "qa.webhook_token.unset_exposed": "WEBHOOK_TOKEN is not set: anyone who can reach the webhooks can post "
                                      "events, and HOST={host} listens beyond this machine",
    "qa.webhook_token.short": "WEBHOOK_TOKEN is shorter than {length} characters",
    "qa.webhook_token.ok": "WEBHOOK_TOKEN is set",
    "qa.admin_token.short": "ADMIN_TOKEN is shorter than {length} characters",
    "qa.admin_token.same_as_webhook_token": "ADMIN_TOKEN equals WEBHOOK_TOKEN: anyone who can post webhooks "
                                            "could read everything",
    "qa.settings.meta_verify_token_missing": "META_APP_SECRET is set but META_VERIFY_TOKEN is not: Meta cannot "
                                             "verify the callback URL",
    "qa.settings.waha_base_url_missing": "WAHA_API_KEY is set but WAHA_BASE_URL is not: zaphook cannot reach "
                                         "WAHA to send, download media or set the webhook",
    "qa.settings.problem": "{problem}",
    "qa.instance.demo": "demo data (last event {last_event_ago}): the demo never fails the self-check",
    "qa.instance.no_event": "no event received yet: point the provider at the webhook URLs",
    "qa.instance.active": "last event {last_event_ago}, {connection}",
    "qa.instance.disconnected": "disconnected: last event {last_event_ago}; reconnect the number at the provider",
    "qa.instance.quiet": "quiet: last event {last_event_ago}, {connection}",
    "qa.instance.silent": "connected but silent: last event {last_event_ago}, more than {threshold_hours} hours "
                          "ago; check the provider still sends its webhooks to zaphook",
    "qa.campaign_counters.ok": "every campaign counter equals its contacts' states",
    "qa.campaign_counters.difference": "campaign {campaign}: {counter} {counted} != {contacts} contacts",
    "qa.campaign_counters.wrong": {
        "one": "the counters of {count} campaign disagree with its contacts: {campaigns}",
        "other": "the counters of {count} campaigns disagree with their contacts: {campaigns}",
    },
    "qa.campaign_sender.alive": "sending thread alive",
    "qa.campaign_sender.dead": "the campaign sending thread is not running",
    "qa.applier.ok": {
        "one": "{count} acknowledged webhook waiting to be applied; lag p99 {p99_ms} ms",
        "other": "{count} acknowledged webhooks waiting to be applied; lag p99 {p99_ms} ms",
    },
    "qa.applier.ok_no_lag_yet": {
        "one": "{count} acknowledged webhook waiting to be applied; nothing applied since start-up yet",
        "other": "{count} acknowledged webhooks waiting to be applied; nothing applied since start-up yet",
    },
    "qa.applier.behind": {
        "one": "{count} acknowledged webhook not applied yet, waiting for {oldest_seconds} s",
        "other": "{count} acknowledged webhooks not applied yet, the oldest for {oldest_seconds} s",
    },
    "qa.applier.not_running": {
        "one": "{count} acknowledged webhook not applied yet, waiting for {oldest_seconds} s (the applier is "
               "not running in this process)",
        "other": "{count} acknowledged webhooks not applied yet, the oldest for {oldest_seconds} s (the applier "
                 "is not running in this process)",
    },
    "qa.media_dir.ours": "{folder} is this database's media folder",
    "qa.media_dir.marked": "{folder} is this database's media folder (marked now)",
    "qa.media_dir.other_database": "{folder} belongs to another database (its marker says {found}…, this "
                                   "database is {expected}…): set MEDIA_DIR to this database's media folder",
    "qa.media_dir.not_shared": "{folder} is not the media folder the stored files are in: every process of a "
                               "deployment must use the same MEDIA_DIR (a shared folder)",
    "qa.media_dir.error": "{folder}: {error}",
})

# Why a media download failed (storage/*.py, media.py, the providers' media ways).
define("media_error.", {
    "media_error.each_way": "{reasons}",
    "media_error.gave_up": "gave up after {count} attempts: {reason}",
    "media_error.internal": "internal error: {error}",
    "media_error.cannot_file": "cannot file it: {reason}",
    "media_error.failed": "the download failed: {reason}",
    "media_error.too_large": "too large: {size_mb} MB > MEDIA_MAX_MB {limit_mb}",
    "media_error.no_way": "no way to download it: {reasons}",
    "media_error.no_media_key": "the payload has no mediaKey for the WhatsApp CDN",
    "media_error.no_direct_path": "the payload has no directPath or WhatsApp URL",
    "media_error.no_credentials": "no {provider} API credentials (set {settings}, or the instance's api_token "
                                  "with PATCH /api/instances/<id>)",
    "media_error.nothing_in_payload": "nothing in the payload says where the {media_type} is",
    "media_error.provider_needs": "{reason}",
    "media_error.no_key_and_path": "the payload has no mediaKey and directPath for {provider}'s download",
    "media_error.no_media_id": "the payload has no {provider} media id",
    "media_error.no_file_url": "the payload has no {provider} file URL",
    "media_error.file_gone": "the file {name} is gone",
    "media_error.media_key_not_base64": "the payload's mediaKey is not base64",
    "media_error.media_key_size": "the payload's mediaKey is not 32 bytes",
    "media_error.cdn_expired": "CDN answered {status}: the media expired; ask the sender to resend",
    "media_error.who.cdn": "the WhatsApp CDN",
    "media_error.who.file_link": "{provider}'s file link",
    "media_error.who.file_url": "{provider}'s file URL",
    "media_error.who.media_url": "{provider}'s media URL",
    "media_error.retry_later": "{who} answered {status}: trying again later",
    "media_error.http_status": "{who} answered {status}",
    "media_error.credentials_refused": "{who} refused the credentials ({status}): check the instance's api token",
    "media_error.provider_gone": "{who} answered {status}: it does not have this media",
    "media_error.provider_gone_hint": "{who} answered {status}: it does not have this media; {hint}",
    "media_error.hint.meta_expiry": "media ids expire 30 days after the message",
    "media_error.hint.waha_lifetime": "WAHA deletes its files WHATSAPP_FILES_LIFETIME seconds after the message "
                                      "(180 by default): set WHATSAPP_FILES_LIFETIME=0 there, or use its S3 media "
                                      "storage",
    "media_error.provider_could_not_fetch": "{provider} could not fetch it",
    "media_error.answer_without_url": "{provider}'s media answer has no url",
    "media_error.not_json": "{who} answered something that is not JSON",
    "media_error.no_base64": "{who}'s answer has no base64",
    "media_error.corrupt_base64": "{who}'s base64 is corrupt",
    "media_error.zapi_file_gone": "Z-API's file URL answered {status}: the file is gone (Z-API deletes them 30 "
                                  "days after the message)",
    "media_error.waha_no_media_url": "WAHA sent no media.url: it did not download this file (see media.error in "
                                     "the event, and WAHA's WHATSAPP_DOWNLOAD_MEDIA and WHATSAPP_FILES_MIMETYPES)",
    "media_error.waha_not_a_file": "media.url {url} is not one of WAHA's files: not fetched",
    "media_error.waha_redirected": "WAHA sent its file elsewhere, and WAHA files are taken from WAHA_BASE_URL "
                                   "only (where the key goes)",
    "media_error.waha_foreign": "media.url is neither a WAHA file nor on an allowed media host: {reason}",
    "media_error.url_refused": "refused: zaphook does not fetch this URL (only http(s) URLs to allowed hosts)",
    "media_error.host_not_allowed": "refused: {host} is not an allowed media host (add it to MEDIA_ALLOWED_HOSTS "
                                    "if you trust it)",
    "media_error.port_not_allowed": "refused: {host} is allowed, but not on port {port} (add {host_port} to "
                                    "MEDIA_ALLOWED_HOSTS if you trust it)",
    "media_error.no_public_address": "refused: {host} resolves to no public address",
    "media_error.too_many_redirects": "more than {count} redirects",
    "media_error.redirect_without_location": "{host} answered {status} without a Location",
    "media_error.timeout": "{host} did not answer in time",
    "media_error.connect_failed": "could not connect to {host}: {error}",
    "media_error.request_failed": "request to {host} failed: {error}",
    "media_error.stopped_mid_download": "{host} stopped sending mid-download ({error})",
    "media_error.broke_off": "download from {host} broke off: {error}",
    "media_error.checks": "{first}; also failed: {others}",
    "media_error.check.length": "wrong length: the download is not whole AES blocks plus a 10-byte MAC",
    "media_error.check.mac": "MAC mismatch: corrupt download",
    "media_error.check.file_enc_sha256": "file_enc_sha256 mismatch: the download is not the encrypted file the "
                                         "message points to",
    "media_error.check.padding": "bad padding: the last block does not decrypt to PKCS7 padding (corrupt download "
                                 "or wrong key)",
    "media_error.check.file_sha256": "file_sha256 mismatch: the decrypted file is not the one the sender sent",
    "media_error.check.sha256": "sha256 mismatch: the file is not the one the provider described",
    "media_error.check.file_length": "file_length mismatch: the file does not have the length the message gives",
})

# The URLs a person pastes into each provider (/status webhook_url_rows); the catch-all last.
define("url_label.", {
    "url_label.any": "any provider: all events",
    "url_label.all_events": "all events",
    "url_label.all_events_by_event": "all events (\"webhook by events\" works too)",
    "url_label.every_callback": "every callback (in each webhook field)",
    "url_label.callback_verify_token": "callback URL (its verify token is META_VERIFY_TOKEN)",
    "url_label.received": "received",
    "url_label.delivery": "delivery",
    "url_label.message_status": "message status",
    "url_label.chat_presence": "chat presence",
    "url_label.connected": "connected",
    "url_label.disconnected": "disconnected",
})

# Errors the JSON API answers (views/*.py, server.py): {"error": English, "code", "params"}.
define("error.", {
    "error.bad_request": "{reason}",
    "error.not_found": "not found",
    "error.method_not_allowed": "method not allowed",
    "error.too_large": "the request body is too large",
    "error.internal": "internal error",
    "error.http": "HTTP error {status}",
    "error.cross_origin": "cross-origin request refused",
    "error.foreign_host": "host {host} is not one of this server's names: add it to ALLOWED_HOSTS if you reach "
                          "zaphook by that name",
    "error.database_busy": "the database is busy or unreachable for a moment: nothing was stored, send it again",
    "error.webhook_get": "method not allowed: webhooks accept POST (GET only for a provider's subscription "
                         "check, such as Meta's hub.mode=subscribe)",
    "error.subscription_refused": "{reason}",
    "error.json_object": "send a JSON object",
    "error.whole_number": "{name} must be a whole number",
    "error.number_between": "{name} must be between {low} and {high}",
    "error.number_at_least": "{name} must be at least {low}",
    "error.one_of": "{name} must be one of {choices}",
    "error.text_or_null": "{name} must be text or null",
    "error.http_url": "{name} must start with http:// or https://",
    "error.client_name": "client must be a client name",
    "error.credential_stays": "a changed api_base_url needs its own api_token in the same request: the default "
                              "credential is never sent to another host",
    "error.credential_stays_setting": "a changed api_base_url needs its own api_token in the same request: the "
                                      "default credential ({token_setting}, which only goes to {base_setting}) is "
                                      "never sent to another host",
    "error.direction": "direction must be in or out",
    "error.instance_id_required": "instance_id (the provider's instance id or name) is required",
    "error.instance_exists": "instance {provider}/{instance} already exists: PATCH /api/instances/{id}",
    "error.no_event": "no event {id}",
    "error.before_or_after": "give before_id (older events) or after_id (newer events), not both",
    "error.edit_shape": "send {\"body\": \"<the edited body, JSON text>\"} or {\"payload\": <a JSON object>}",
    "error.edit_body_text": "body must be text (the edited request body)",
    "error.edit_payload_object": "payload must be a JSON object",
    "error.no_instance": "no instance {id}",
    "error.no_message": "no message {id}",
    "error.no_media": "no media {id}",
    "error.no_campaign": "no campaign {id}",
    "error.no_action": "no action {action}: start, pause, resume or cancel",
    "error.media_not_downloaded": "media {id} is {state}, not downloaded",
    "error.media_file_missing": "the file of media {id} is missing from the media folder",
    "error.media_not_retryable": "media {id} is {state}: only failed or expired downloads are retried",
    "error.campaign_shape": "send a JSON object {name, instance_id, text, contacts: [{phone, name}]} or a "
                            "multipart form with a CSV file (phone,name columns)",
    "error.changes_cursor": "since must be a cursor from an earlier answer ({parts} numbers joined by '.')",
    "error.iso_time": "since must be an ISO 8601 time, e.g. 2025-06-02T03:00:00.000Z",
})
