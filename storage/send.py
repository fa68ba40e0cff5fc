"""What every provider's text sending shares: pure network, no database.

A provider's ``send_text(target, phone, text)`` (in its module under
``handlers/``) returns the WhatsApp message id the provider gave the message,
or raises :class:`SendError` carrying the provider's own error text.
``SendError.maybe_sent`` says whether the message may have gone out anyway
(the answer was lost: timeout, broken connection), which the caller must
never resend blindly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from storage.http import AllowedHost, DownloadError, Limits, entries_for_urls, host_of, open_stream, read_chunks

# A send answer is small; anything bigger is not a provider talking.
MAX_ANSWER = 256 * 1024


class SendError(Exception):
    """A send that did not work, with the provider's message."""

    def __init__(self, message: str, *, status: Optional[int] = None, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.maybe_sent = maybe_sent


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
        # Refused before sending (host not allowed) cannot have gone out; a timeout or a
        # broken connection after the request was written may have.
        if exc.kind == "timeout":
            message = f"{host_of(url)} did not answer in time ({target.limits.read_timeout:g} s)"
        elif exc.kind == "connection":
            message = f"the connection to {host_of(url)} failed: {exc}"
        else:
            message = str(exc)
        raise SendError(message, status=exc.status, maybe_sent=exc.kind in ("timeout", "connection")) from None
    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError:
        data = raw.decode("utf-8", "replace")[:500]
    return response.status_code, data


def provider_error(data: Any) -> str:
    """The provider's error text, from any of the shapes they use."""
    if isinstance(data, str):
        return data.strip()[:500] or "no message"
    if not isinstance(data, dict):
        return "no message"
    error = data.get("error")
    if isinstance(error, dict):  # Meta: {"error": {"message", "code", "error_data": {"details"}}}
        details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
        text = error.get("message") or error.get("title") or "error"
        code = error.get("code")
        return f"{text}{f' ({details})' if details else ''}{f' [code {code}]' if code is not None else ''}"[:500]
    response = data.get("response")
    if isinstance(response, dict) and response.get("message"):  # Evolution: {"response": {"message": [...]}}
        message = response["message"]
        return "; ".join(map(str, message))[:500] if isinstance(message, list) else str(message)[:500]
    for key in ("message", "detail", "error"):
        if isinstance(data.get(key), str) and data[key].strip():
            return data[key][:500]
    return json.dumps(data)[:500]


def refused(provider: str, status: int, data: Any) -> SendError:
    return SendError(f"{provider} refused the message (HTTP {status}): {provider_error(data)}", status=status)


def no_message_id(provider: str, data: Any) -> SendError:
    # The provider accepted the request but named no message: it may have been sent.
    return SendError(f"{provider} answered without a message id: {str(data)[:200]}", maybe_sent=True)


def allowed_hosts(urls: Iterable[Optional[str]]) -> tuple[AllowedHost, ...]:
    """The configured base URLs' hosts, each on its own port (the operator named them: private is fine)."""
    return entries_for_urls(urls)
