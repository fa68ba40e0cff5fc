"""Who may call what, and what never leaves zaphook in clear text."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlsplit

REDACTED = "[redacted]"

# Keys whose values are secrets wherever they appear in a payload or headers
# (compared lower-case, ignoring "-" and "_").
SECRET_KEYS = frozenset({
    "mediakey", "apikey", "token", "accesstoken", "authorization", "jwtkey", "secret",
    "password", "clienttoken", "xwebhooktoken", "xapikey", "messagesecret", "xhubsignature256",
    "cookie", "pairingcode", "appsecret", "verifytoken",
})

# Inside a QR code event the code itself would let anyone link the account.
QRCODE_KEYS = frozenset({"code", "base64"})

# Query parameters carrying secrets in URLs (e.g. the token in a webhook URL).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|apikey|api_key|access_token|hub\.verify_token)=)[^&#\s\"']+")


def _normal_key(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


def redact(value: Any, secrets: Iterable[str] = (), _inside_qrcode: bool = False) -> Any:
    """A copy of a JSON value with every secret replaced by "[redacted]".

    Secrets are found by key name (mediaKey, apikey, token, ...), by query
    parameter inside URLs, and by value for the configured secrets.
    """
    secret_values = [s for s in secrets if s]
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            normal = _normal_key(str(key))
            if item not in (None, "") and (
                normal in SECRET_KEYS or (_inside_qrcode and normal in QRCODE_KEYS)
            ):
                result[key] = REDACTED
            else:
                result[key] = redact(item, secret_values, _inside_qrcode or normal == "qrcode")
        return result
    if isinstance(value, list):
        return [redact(item, secret_values, _inside_qrcode) for item in value]
    if isinstance(value, str):
        return redact_text(value, secret_values)
    return value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks the configured secrets in every log record, whatever logged them."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


@dataclass
class AuthFailure:
    status: int
    error: str


def bearer_token(headers: Mapping[str, str]) -> Optional[str]:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected secret never matches."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_webhook_token(expected: Optional[str], headers: Mapping[str, str],
                        query: Mapping[str, str]) -> Optional[AuthFailure]:
    """None when the request carries WEBHOOK_TOKEN (or none is configured).

    The token may come as ``?token=``, ``X-Webhook-Token`` or
    ``Authorization: Bearer``: providers differ in what they can send.
    """
    if not expected:
        return None
    candidates = [c for c in (query.get("token"), headers.get("X-Webhook-Token"), bearer_token(headers)) if c]
    if not candidates:
        return AuthFailure(401, "missing webhook token: send ?token=, X-Webhook-Token or Authorization: Bearer")
    if any(same_secret(candidate, expected) for candidate in candidates):
        return None
    return AuthFailure(403, "wrong webhook token")


def check_meta_signature(app_secret: Optional[str], header: Optional[str], body: bytes) -> Optional[AuthFailure]:
    """Verify ``X-Hub-Signature-256: sha256=<hex HMAC of the raw body>``.

    Computed on the raw bytes (Meta signs its escaped-unicode text; a
    re-serialised JSON would not match). The expected value is never shown.
    """
    if not app_secret:
        return None
    if not header:
        return AuthFailure(401, "missing X-Hub-Signature-256")
    algorithm, _, given = header.strip().partition("=")
    if algorithm.strip().lower() != "sha256" or not given:
        return AuthFailure(403, "malformed X-Hub-Signature-256: expected sha256=<hex>")
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().lower().encode("ascii", "replace"), expected.encode("ascii")):
        return AuthFailure(403, "X-Hub-Signature-256 does not match the body")
    return None


def is_direct_local(remote_addr: Optional[str], headers: Mapping[str, str]) -> bool:
    """Whether a request came straight from this machine.

    A tunnel agent (ngrok) connects from 127.0.0.1 too, but adds
    X-Forwarded-For; such a request counts as coming from the internet.
    """
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Forwarded-Host"):
        if headers.get(header):
            return False
    if not remote_addr:
        return False
    try:
        return ipaddress.ip_address(remote_addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# --- the dashboard through the tunnel -------------------------------------------------------

SESSION_COOKIE = "zaphook_session"
_SESSION_PURPOSE = b"zaphook dashboard session v1"


def dashboard_session(admin_token: str) -> str:
    """The cookie value that stands for "this browser knows ADMIN_TOKEN".

    An HMAC keyed with the token, never the token itself: a leaked cookie does
    not reveal ADMIN_TOKEN, and changing ADMIN_TOKEN logs every browser out.
    """
    return hmac.new(admin_token.encode("utf-8"), _SESSION_PURPOSE, hashlib.sha256).hexdigest()


def valid_session(cookie: Optional[str], admin_token: Optional[str]) -> bool:
    """Constant-time check of a session cookie; nothing matches without ADMIN_TOKEN."""
    if not admin_token or not cookie:
        return False
    return hmac.compare_digest(cookie.encode("utf-8", "replace"), dashboard_session(admin_token).encode("ascii"))


def origin_allowed(origin: Optional[str], hosts: Iterable[Optional[str]]) -> bool:
    """Whether a request's Origin header names one of its own hosts.

    No Origin (curl, scripts, same-origin GETs) is allowed; browsers send it on
    every cross-site POST, so a page elsewhere cannot drive the API through the
    visitor's browser. "null" (sandboxed frames, file://) never matches.
    """
    if origin is None:
        return True
    netloc = urlsplit(origin.strip()).netloc.lower() if "://" in origin else ""
    return bool(netloc) and any(netloc == host.strip().lower() for host in hosts if host)
