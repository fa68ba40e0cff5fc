"""What every provider's text sending shares: pure network, no database.

A provider's ``send_text(target, phone, text)`` (in its module under
``handlers/``) returns the WhatsApp message id the provider gave the message,
or raises :class:`SendError` carrying the provider's own error text.
``SendError.maybe_sent`` says whether the message may have gone out anyway
(the answer was lost: timeout, broken connection), which the caller must
never resend blindly.

Every SendError also names its refusal: a stable ``code`` (one of
:data:`REFUSALS`) and ``params``, which the dashboard turns into a sentence in
the page's language ("this number is not on WhatsApp"). :func:`refusal_of`
reads the refusal from whatever a provider answered (Evolution's ``{status,
error, response: {message: [...]}}``, WAHA's NestJS errors, Meta's Graph
``error`` with its numeric code, W-API's and Z-API's ``{error, message}``);
:func:`refusal_of_text` from the error text of a failed-status webhook. The
English message stays what it was, for the log, the CLI and the API.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from storage.http import AllowedHost, DownloadError, Limits, entries_for_urls, host_of, open_stream, read_chunks

# A send answer is small; anything bigger is not a provider talking.
MAX_ANSWER = 256 * 1024
# What a refusal keeps of the provider's own words (one line): enough to recognise, never a page of JSON.
SHORT_TEXT = 200

# Why a campaign message did not go (or did not arrive): the dashboard's catalogues have refusal.<code>.
REFUSALS = (
    "not_on_whatsapp",        # the number has no WhatsApp account
    "disconnected",           # the instance (session) is not connected to WhatsApp
    "rate_limited",           # the provider or WhatsApp asks to slow down
    "credentials",            # the token / API key was refused
    "instance_unknown",       # the provider has no such instance or session
    "blocked",                # WhatsApp restricts the sending number (reports, spam, policy)
    "outside_window",         # Meta: 24 h since the contact last wrote, only a template may go
    "recipient_not_allowed",  # Meta: a test number sends only to its allowed list
    "undeliverable",          # WhatsApp could not deliver it (often: not on WhatsApp)
    "timeout",                # no answer in time: it may have gone out, not resent
    "connection",             # the connection broke: it may have gone out, not resent
    "address_refused",        # zaphook did not call the address (not an allowed host)
    "no_message_id",          # accepted without naming the message: it may have gone out, not resent
    "not_configured",         # no API base URL for the instance
    "no_token",               # no API token for the instance
    "unsupported",            # the provider cannot send
    "provider",               # any other refusal, with the provider's short text
    "internal",               # zaphook failed (a bug), with the exception's name
    "interrupted",            # sending was cut off and the provider never named the message
    "no_delivery",            # no delivery within CAMPAIGN_DELIVERY_TIMEOUT_HOURS
    "opted_out",              # the number asked for no more campaign messages
)


class SendError(Exception):
    """A send that did not work, with the provider's message and the refusal it amounts to."""

    def __init__(self, message: str, *, status: Optional[int] = None, maybe_sent: bool = False,
                 code: str = "provider", params: Optional[dict] = None) -> None:
        super().__init__(message)
        assert code in REFUSALS, code
        self.status = status
        self.maybe_sent = maybe_sent
        self.code = code
        self.params = dict(params) if params is not None else ({"text": short_text(message)} if code == "provider"
                                                                else {})

    def redacted(self, redact: Callable[[str], str]) -> "SendError":
        """The same error with ``redact`` applied to every text it carries (a token in a URL or an echo)."""
        params = {name: redact(value) if isinstance(value, str) else value for name, value in self.params.items()}
        return SendError(redact(str(self)), status=self.status, maybe_sent=self.maybe_sent, code=self.code,
                         params=params)


@dataclass(frozen=True)
class SendTarget:
    base_url: str
    token: Optional[str]
    instance: str  # the provider's instance id or name (Instance.external_id)
    allowed_hosts: tuple[AllowedHost, ...]
    limits: Limits
    # The app's settings, for an API that wants more than the instance's credential (Z-API's Client-Token).
    settings: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


def post_json(target: SendTarget, url: str, headers: dict, body: dict) -> tuple[int, Any]:
    """POST JSON; (status, parsed answer or the raw text)."""
    try:
        response = open_stream("POST", url, allowed=target.allowed_hosts, limits=target.limits,
                               headers={"Content-Type": "application/json", **headers}, json_body=body)
        raw = b"".join(read_chunks(response, Limits(target.limits.connect_timeout, target.limits.read_timeout,
                                                    MAX_ANSWER)))
    except DownloadError as exc:
        raise network_error(exc, url, target.limits.read_timeout) from None
    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError:
        data = raw.decode("utf-8", "replace")[:500]
    return response.status_code, data


def network_error(exc: DownloadError, url: str, read_timeout: float) -> SendError:
    """A SendError for a call that did not get its answer.

    Refused before sending (host not allowed) cannot have gone out; a timeout or
    a broken connection after the request was written may have.
    """
    host = host_of(url)
    if exc.kind == "timeout":
        return SendError(f"{host} did not answer in time ({read_timeout:g} s)", status=exc.status,
                         maybe_sent=True, code="timeout", params={"host": host, "seconds": read_timeout})
    if exc.kind == "connection":
        return SendError(f"the connection to {host} failed: {exc}", status=exc.status, maybe_sent=True,
                         code="connection", params={"host": host})
    if exc.kind == "refused":
        return SendError(str(exc), status=exc.status, code="address_refused", params={"host": host})
    return SendError(str(exc), status=exc.status)


# --- what the provider said ------------------------------------------------------------------

def provider_text(data: Any) -> Optional[str]:
    """The words a provider's error answer says, from any of the shapes they use; None when it says none.

    Never a Python repr: an object inside a message list becomes its own words
    (Evolution's ``{"exists": false, "number": ...}`` says the number is not on WhatsApp).
    """
    if isinstance(data, str):
        return data.strip() or None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):  # Meta: {"error": {"message", "code", "error_data": {"details"}}}
        details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
        text = error.get("message") or error.get("title") or "error"
        code = error.get("code")
        return f"{text}{f' ({details})' if details else ''}{f' [code {code}]' if code is not None else ''}"
    response = data.get("response")
    if isinstance(response, dict) and response.get("message"):  # Evolution: {"response": {"message": [...]}}
        words = _words(response["message"])
        if words:
            return words
    exception = data.get("exception")
    if isinstance(exception, dict) and isinstance(exception.get("message"), str):  # WAHA's 500s
        return exception["message"].strip() or None
    for key in ("message", "error", "detail", "title"):
        if isinstance(data.get(key), str) and data[key].strip():
            return data[key].strip()
    return None


def _words(message: Any) -> Optional[str]:
    if isinstance(message, str):
        return message.strip() or None
    if isinstance(message, list):
        parts = [_words(item) for item in message]
        return "; ".join(part for part in parts if part) or None
    if isinstance(message, dict):
        if message.get("exists") is False:
            number = message.get("number") or str(message.get("jid") or "").split("@", 1)[0]
            return f"{number} is not on WhatsApp".strip()
        parts = [f"{key}: {value}" for key, value in message.items() if isinstance(value, (str, int, float, bool))]
        return ", ".join(parts) or None
    if isinstance(message, (int, float)):
        return str(message)
    return None


def provider_error(data: Any) -> str:
    """The provider's error text for the log and the API (compact JSON when it says nothing in words)."""
    text = provider_text(data)
    if text:
        return text[:500]
    if data is None or data == "" or data == {}:
        return "no message"
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))[:500]


def short_text(text: Optional[str]) -> Optional[str]:
    """One line of at most SHORT_TEXT characters, for a sentence on the page."""
    if not text:
        return None
    line = " ".join(str(text).split())
    return line if len(line) <= SHORT_TEXT else line[:SHORT_TEXT - 1] + "…"


# --- refusals --------------------------------------------------------------------------------

# Meta's Graph API error codes (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
_META_CODES = {
    0: "credentials", 190: "credentials", 10: "credentials",
    4: "rate_limited", 80007: "rate_limited", 130429: "rate_limited", 131048: "rate_limited", 131056: "rate_limited",
    131026: "undeliverable", 131047: "outside_window", 131030: "recipient_not_allowed",
    368: "blocked", 131031: "blocked", 133010: "disconnected",
}

# Words in a provider's answer, compared without case or accents, first match wins.
_TEXT_RULES = (
    ("instance_unknown", ("instance does not exist", "instance not found", "session not found",
                          "didn't find a session", "instancia nao encontrada", "instancia nao existe")),
    ("not_on_whatsapp", ("is not on whatsapp", "not on whatsapp", "number does not exist", "numero nao existe",
                         "not a whatsapp", "nao possui whatsapp", "nao tem whatsapp", "numberexists: false",
                         "exists: false", "not registered on whatsapp", "nao esta no whatsapp")),
    ("blocked", ("shadow_ban", "shadowban", "error 463", "banned", "banido", "account is restricted")),
    ("disconnected", ("connection closed", "not connected", "disconnected", "desconectad", "not logged",
                      "logged out", "session status is not as expected", "qr code", "qrcode", "nao esta conectad",
                      "instance is close", "session is not working")),
    ("rate_limited", ("rate limit", "rate-limit", "ratelimit", "too many requests", "throttl",
                      "limite de envio", "limite de mensagens")),
    ("credentials", ("unauthorized", "unauthorised", "forbidden", "invalid token", "token invalido",
                     "client-token", "null not allowed", "api key", "apikey", "access token", "authentication",
                     "nao autorizado", "invalid credentials", "credenciais")),
)


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).lower()


def _by_words(text: Optional[str]) -> Optional[str]:
    if not text:
        return None
    plain = _plain(text)
    for code, needles in _TEXT_RULES:
        if any(needle in plain for needle in needles):
            return code
    return None


def _meta_code(data: Any) -> Optional[int]:
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def refusal_of(status: Optional[int], data: Any) -> tuple[str, dict]:
    """(code, params) of a provider's refusal, from its HTTP status and its parsed answer."""
    text = provider_text(data)
    params: dict = {"text": short_text(text)} if text else {}
    if status is not None:
        params["status"] = status
    code = None
    meta = _meta_code(data)
    if meta is not None:
        code = _META_CODES.get(meta) or ("credentials" if 200 <= meta <= 299 else None)
    if code is None and isinstance(data, dict) and status == 422 and isinstance(data.get("expected"), list):
        code = "disconnected"  # WAHA: the session is not WORKING ({"status": "STOPPED", "expected": ["WORKING"]})
        if isinstance(data.get("status"), str):
            params["state"] = data["status"]
    code = code or _by_words(text)
    if code is None and status is not None:
        code = {401: "credentials", 403: "credentials", 429: "rate_limited"}.get(status)
    return code or "provider", params


def refusal_of_text(text: Optional[str]) -> tuple[str, dict]:
    """(code, params) of the error a failed-status webhook carries (Meta's "131026: ...", Z-API's words)."""
    if not text:
        return "provider", {}
    params = {"text": short_text(text)}
    match = re.match(r"\s*\(?#?(\d{1,6})\)?\s*[:\-–]", text)
    if match and int(match.group(1)) in _META_CODES:
        return _META_CODES[int(match.group(1))], params
    return _by_words(text) or "provider", params


def refused(provider: str, status: int, data: Any) -> SendError:
    code, params = refusal_of(status, data)
    return SendError(f"{provider} refused the message (HTTP {status}): {provider_error(data)}", status=status,
                     code=code, params={"provider": provider, **params})


def no_message_id(provider: str, data: Any) -> SendError:
    # The provider accepted the request but named no message: it may have been sent.
    shown = json.dumps(data, ensure_ascii=False) if isinstance(data, (dict, list)) else str(data)
    return SendError(f"{provider} answered without a message id: {shown[:200]}", maybe_sent=True,
                     code="no_message_id", params={"provider": provider})


def allowed_hosts(urls: Iterable[Optional[str]]) -> tuple[AllowedHost, ...]:
    """The configured base URLs' hosts, each on its own port (the operator named them: private is fine)."""
    return entries_for_urls(urls)
