"""Who may call what, and what never leaves zaphook in clear text."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Optional

REDACTED = "[redacted]"

# A key, header or query parameter whose name contains one of these holds a
# secret. Names are compared lower-case without "-", "_", "." and spaces, so
# X-Api-Key, api_key, apiKey and "API KEY" are one name.
SECRET_NAME_PARTS = (
    "token", "secret", "password", "passwd", "passphrase", "apikey", "privatekey", "accesskey", "authkey",
    "signingkey", "encryptionkey", "authorization", "cookie", "signature", "session", "credential", "jwt",
    "hmac", "mediakey", "pairingcode",
)
# Whole names that hold a secret although they contain none of the parts.
SECRET_KEYS = frozenset({"auth", "pwd", "pass"})
# Names that contain a part but hold no secret: WAHA's and WPPConnect's
# "session" is the name of the instance, an id people search for.
NOT_SECRET_KEYS = frozenset({"session", "sessionname"})
# Query parameters that are secrets only in URLs, where they are signed-link
# signatures (?sig=) and API keys (?key=); as payload keys they are too common.
SECRET_QUERY_NAMES = frozenset({"sig", "key"})

# Inside a QR code event the code itself would let anyone link the account.
QRCODE_KEYS = frozenset({"code", "base64"})

_NAME_SEPARATORS = str.maketrans("", "", "-_. ")
_SECRET_NAME = re.compile("|".join(SECRET_NAME_PARTS))

# "name=value" in a URL's query (the value is masked when the name is a secret's).
_QUERY_PARAMETER = re.compile(r"([?&])([^=&#\s\"'<>]+)=([^&#\s\"'<>]+)")
# The password of "scheme://user:password@host".
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)([^/\s@]+)(@)")
# "name=value", "name: value", "name": "value" and 'name': 'value' in free text
# (log lines, error messages, bodies that are not JSON). The look-behind makes
# a name start only after a non-name character, which keeps the scan linear.
_SECRET_PAIR = re.compile(
    r"""(?<![\w.\-])(?P<quote>["']?)(?P<name>[A-Za-z][\w.\-]*)(?P=quote)(?P<separator>\s*[:=]\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?i:(?:bearer|basic|digest|token)\s+)?[^\s"',;&()\[\]{}]+)""")
_LITERALS_NOT_SECRET = frozenset({"true", "false", "null", "none"})
_TRACEBACKS = logging.Formatter()


# Names up to this long are remembered (payloads repeat the same few keys);
# longer ones are checked each time, so no payload can fill the memory.
_REMEMBERED_NAME_LENGTH = 64


def _normal_name(name: str) -> str:
    if len(name) > _REMEMBERED_NAME_LENGTH:
        return _lower_without_separators(name)
    return _remembered_normal_name(name)


def _lower_without_separators(name: str) -> str:
    return name.lower().translate(_NAME_SEPARATORS)


_remembered_normal_name = lru_cache(maxsize=4096)(_lower_without_separators)


def is_secret_key(name: str) -> bool:
    """Whether a payload key, header name or query parameter names a secret.

    Matching by part (token, secret, password, apikey, signature, cookie, ...)
    catches the names no list foresees: X-Auth-Token, client_secret,
    webhook_signature, sessionToken. Some non-secrets match too (tokenExpiry):
    redacting them costs little, and redact() keeps booleans and numbers
    (hasApiToken: true) anyway.
    """
    if len(name) > _REMEMBERED_NAME_LENGTH:
        return _names_a_secret(name)
    return _remembered_names_a_secret(name)


def _names_a_secret(name: str) -> bool:
    normal = _normal_name(name)
    if normal in NOT_SECRET_KEYS:
        return False
    return normal in SECRET_KEYS or _SECRET_NAME.search(normal) is not None


_remembered_names_a_secret = lru_cache(maxsize=4096)(_names_a_secret)


def is_secret_query_name(name: str) -> bool:
    return name.lower() in SECRET_QUERY_NAMES or is_secret_key(name)


def _maskable(value: Any) -> bool:
    """Whether a value under a secret's key is masked: text, objects and lists, not flags or counts."""
    return not (value is None or value == "" or isinstance(value, (bool, int, float)))


def redact(value: Any, secrets: Iterable[str] = (), _inside_qrcode: bool = False) -> Any:
    """A copy of a JSON value with every secret replaced by "[redacted]".

    Secrets are found by key name (is_secret_key: a text is masked, an object
    or list under such a key is replaced whole), by name inside text (query
    parameters, "name=value" pairs: see redact_text), and by value for the
    configured secrets.
    """
    return _redact(value, [s for s in secrets if s], _inside_qrcode)


def _redact(value: Any, secret_values: list, inside_qrcode: bool) -> Any:
    # Text and scalars are handled in place rather than by a call each: most of a payload's
    # values are leaves, and this runs over every payload the applier stores.
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            name = str(key)
            if _maskable(item) and (is_secret_key(name) or (inside_qrcode and _normal_name(name) in QRCODE_KEYS)):
                result[key] = REDACTED
            elif isinstance(item, str):
                result[key] = redact_text(item, secret_values)
            elif isinstance(item, (dict, list)):
                result[key] = _redact(item, secret_values, inside_qrcode or _normal_name(name) == "qrcode")
            else:
                result[key] = item
        return result
    if isinstance(value, list):
        return [redact_text(item, secret_values) if isinstance(item, str)
                else _redact(item, secret_values, inside_qrcode) if isinstance(item, (dict, list))
                else item for item in value]
    if isinstance(value, str):
        return redact_text(value, secret_values)
    return value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with the configured secrets and every secret-named value masked.

    Secret-named values are query parameters (``?access_token=``), URL
    passwords and ``name=value`` / ``"name": "value"`` pairs; text without a
    "=" or ":" (most message text, names, ids) is not scanned for them.
    """
    text = redact_values(text, secrets)
    if "=" in text or ":" in text:
        text = _SECRET_PAIR.sub(_mask_pair, text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
        if "=" in text:
            text = _QUERY_PARAMETER.sub(_mask_query_parameter, text)
    return text


def redact_values(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with every configured secret masked, wherever it appears."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _mask_pair(match: re.Match) -> str:
    value = match["value"]
    if not is_secret_key(match["name"]) or value.lower() in _LITERALS_NOT_SECRET:
        return match[0]
    quote = value[0] if value[0] in "\"'" else ""
    return match[0][:match.start("value") - match.start()] + quote + REDACTED + quote


def _mask_query_parameter(match: re.Match) -> str:
    if match[3] == REDACTED or not is_secret_query_name(match[2]):
        return match[0]
    return f"{match[1]}{match[2]}={REDACTED}"


def redact_base64(body: str, secrets: Iterable[str] = ()) -> str:
    """A base64 body (bytes that are not clean UTF-8 text) with its secrets masked.

    The bytes are read as UTF-8 with the invalid ones set aside
    (surrogateescape), masked as text, and written back: everything that is
    not a secret stays byte for byte.
    """
    import base64
    import binascii

    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return body
    text = raw.decode("utf-8", "surrogateescape")
    cleaned = redact_text(text, [s for s in secrets if s])
    if cleaned == text:
        return body
    return base64.b64encode(cleaned.encode("utf-8", "surrogateescape")).decode("ascii")


_NOT_JSON = object()


def redact_body(body: str, secrets: Iterable[str] = (), parsed: Any = _NOT_JSON) -> tuple[bool, Any]:
    """A stored UTF-8 request body as it may be shown.

    (True, the redacted JSON value) when the body is JSON, else (False, the
    redacted text). ``parsed``: the body's JSON value when the caller has it.
    """
    secret_values = [s for s in secrets if s]
    if parsed is _NOT_JSON:
        try:
            parsed = json.loads(body.removeprefix("\ufeff"))
        except (ValueError, RecursionError):
            return False, redact_text(body, secret_values)
    try:
        return True, _redact(parsed, secret_values, False)
    except RecursionError:  # deeper than Python recurses: masked as text instead
        return False, redact_text(body, secret_values)


def shown_body_text(body: str, secrets: Iterable[str] = (), parsed: Any = _NOT_JSON) -> str:
    """redact_body as one text: what an export writes and the event search looks in."""
    is_json, shown = redact_body(body, secrets, parsed)
    return json.dumps(shown, ensure_ascii=False) if is_json else shown


class RedactingFilter(logging.Filter):
    """Masks secrets in every log record, whatever logged them.

    The configured secrets by value, and by name what redact_text finds
    (``apikey=...``, ``"token": "..."``, ``?access_token=``), in the message
    and in the traceback of a logged exception.
    """

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
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


def check_hmac_signature(secret: Optional[str], header: Optional[str], body: bytes, *, header_name: str,
                         algorithm: str = "sha256", prefixed: bool = True) -> Optional[AuthFailure]:
    """Verify a header holding the hex HMAC of the raw body (``sha256=<hex>`` when ``prefixed``).

    Computed on the raw bytes (Meta signs its escaped-unicode text; a
    re-serialised JSON would not match). The expected value is never shown.
    """
    if not secret:
        return None
    if not header:
        return AuthFailure(401, f"missing {header_name}")
    given = header.strip()
    if prefixed:
        named, _, given = given.partition("=")
        if named.strip().lower() != algorithm or not given:
            return AuthFailure(403, f"malformed {header_name}: expected {algorithm}=<hex>")
    expected = hmac.new(secret.encode("utf-8"), body, getattr(hashlib, algorithm)).hexdigest()
    if not hmac.compare_digest(given.strip().lower().encode("ascii", "replace"), expected.encode("ascii")):
        return AuthFailure(403, f"{header_name} does not match the body")
    return None
