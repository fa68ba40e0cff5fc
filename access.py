"""Who may reach what: the tunnel rule, this server's own names, the dashboard's login.

Three kinds of caller, decided per request by :func:`where_from`:

- ``local``: came through the local listener from this machine, naming one of
  this server's own host names. Reaches everything.
- ``foreign_host``: came from this machine but names a host that is not one of
  ours: a web page whose DNS name was rebound to 127.0.0.1 (DNS rebinding).
  Reaches the webhooks and ``/health``; the rest answers 403.
- ``public``: came through the tunnel listener, from another machine, or
  through a proxy. Reaches the webhooks and ``/health``; the rest answers 404
  unless the request proves it knows ``ADMIN_TOKEN``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving import ENTRANCE, TUNNEL

LOCAL = "local"
FOREIGN_HOST = "foreign_host"
PUBLIC = "public"

# Headers a proxy adds: a request carrying one did not come straight from this machine.
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Forwarded-Host")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})


def host_name(host_header: Optional[str]) -> str:
    """The name in a Host header, without its port, lower case: "[::1]:5000" → "::1"."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def own_host_names(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """This server's names: loopback, HOST, PUBLIC_URL's host and ALLOWED_HOSTS ("*" allows any)."""
    names = set(LOOPBACK_NAMES)
    if settings.get("HOST") and settings["HOST"] not in WILDCARD_ADDRESSES:
        names.add(host_name(settings["HOST"]))
    if settings.get("PUBLIC_URL"):
        names.add((urlsplit(settings["PUBLIC_URL"]).hostname or "").lower())
    names.update(host_name(entry) for entry in settings.get("ALLOWED_HOSTS") or ())  # a port is not part of a name
    return tuple(sorted(name for name in names if name))


def host_is_ours(host_header: Optional[str], own_names: Iterable[str]) -> bool:
    """Whether a Host header names this server; ".example.com" entries allow the domain and its subdomains."""
    host = host_name(host_header)
    if not host:
        return False
    for name in own_names:
        if name == "*" or host == name or (name.startswith(".") and (host == name[1:] or host.endswith(name))):
            return True
    return False


def is_loopback(remote_addr: Optional[str]) -> bool:
    try:
        return ipaddress.ip_address((remote_addr or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def where_from(environ: Mapping[str, Any], remote_addr: Optional[str], headers: Mapping[str, str],
               own_names: Iterable[str]) -> str:
    """``local``, ``foreign_host`` or ``public`` (see the module's docstring).

    The tunnel listener's mark is set by the server, not by the request, so no
    header can make a tunnelled request local.
    """
    if environ.get(ENTRANCE) == TUNNEL:
        return PUBLIC
    if not is_loopback(remote_addr) or any(headers.get(name) for name in PROXY_HEADERS):
        return PUBLIC
    if not host_is_ours(headers.get("Host"), own_names):
        return FOREIGN_HOST
    return LOCAL


def origin_allowed(origin: Optional[str], hosts: Iterable[Optional[str]]) -> bool:
    """Whether a request's Origin header names one of its own hosts.

    No Origin (curl, scripts, providers, same-origin GETs) is allowed; browsers
    send it on every cross-site POST, so a page elsewhere cannot drive the API
    or post to a webhook through the visitor's browser. "null" (sandboxed
    frames, file://) never matches.
    """
    if origin is None:
        return True
    netloc = urlsplit(origin.strip()).netloc.lower() if "://" in origin else ""
    return bool(netloc) and any(netloc == host.strip().lower() for host in hosts if host)


# --- the dashboard's login through the tunnel ---------------------------------------------------

SESSION_COOKIE = "zaphook_session"
SESSION_SECONDS = 12 * 3600
_SESSION_SALT = "zaphook dashboard session v2"


def _serializer(admin_token: str) -> URLSafeTimedSerializer:
    # Keyed with ADMIN_TOKEN: changing it logs every browser out.
    return URLSafeTimedSerializer(admin_token, salt=_SESSION_SALT)


def new_session_cookie(admin_token: str) -> tuple[str, str]:
    """A signed, timestamped cookie value and the key the server keeps to end it (``/logout``)."""
    session_id = secrets.token_urlsafe(24)
    return _serializer(admin_token).dumps(session_id), session_key(session_id)


def session_key(session_id: str) -> str:
    """What the database keeps of a session: a hash, so a database copy cannot be replayed as a cookie."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def session_key_from_cookie(cookie: Optional[str], admin_token: Optional[str]) -> Optional[str]:
    """The session key of a cookie that is signed with ADMIN_TOKEN and younger than 12 h, else None."""
    if not cookie or not admin_token:
        return None
    try:
        session_id = _serializer(admin_token).loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:  # also SignatureExpired
        return None
    return session_key(session_id) if isinstance(session_id, str) else None


# --- abuse: login attempts and failed authentication ----------------------------------------------

class SlidingWindow:
    """Events per client over the last ``seconds``, in memory (per process)."""

    MAX_CLIENTS = 10_000  # a flood from many addresses must not grow memory without bound

    def __init__(self, limit: int, seconds: float = 60.0) -> None:
        self.limit = limit
        self.seconds = seconds
        self._times: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque:
        times = self._times[client]
        while times and times[0] <= now - self.seconds:
            times.popleft()
        return times

    def hit(self, client: str) -> bool:
        """Count one event; True while the client is within its limit (this one included)."""
        now = time.monotonic()
        with self._lock:
            if len(self._times) >= self.MAX_CLIENTS and client not in self._times:
                self._forget_idle(now)
            times = self._recent(client, now)
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True

    def retry_after(self, client: str) -> int:
        """Seconds until the client may try again (at least 1)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.limit:
                return 0
            return max(1, int(times[0] + self.seconds - now + 0.999))

    def _forget_idle(self, now: float) -> None:
        for client in [c for c, times in self._times.items() if not times or times[-1] <= now - self.seconds]:
            del self._times[client]
        if len(self._times) >= self.MAX_CLIENTS:
            self._times.clear()


@dataclass
class AuthFailureStats:
    failed: int = 0
    stored: int = 0
    only_counted: int = 0


class AuthFailures:
    """Requests that failed authentication: all counted, at most ``per_minute`` per client stored.

    An open tunnel is reachable by anyone: without this cap, a loop posting
    garbage with a wrong token would fill the disk with rejected rows.
    """

    def __init__(self, per_minute: int) -> None:
        self._window = SlidingWindow(per_minute)
        self._lock = threading.Lock()
        self.stats = AuthFailureStats()

    def record(self, client: Optional[str]) -> bool:
        """Count a failure; True when it may be stored as a row."""
        store = self._window.hit(client or "-")
        with self._lock:
            self.stats.failed += 1
            if store:
                self.stats.stored += 1
            else:
                self.stats.only_counted += 1
        return store

    def as_json(self) -> dict:
        with self._lock:
            return {"failed": self.stats.failed, "stored": self.stats.stored,
                    "only_counted": self.stats.only_counted, "stored_per_client_per_minute": self._window.limit}
