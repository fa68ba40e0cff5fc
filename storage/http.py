"""Outbound HTTP: only to allowed hosts and ports, only to addresses that are safe, always with timeouts.

Every request of zaphook to the outside (media downloads, campaign sends,
webhook registration, forwarding to the developer's app, whose allow-list is
exactly the destination URL's host and port) goes through :func:`open_stream`.
What it checks, and where:

* **The URL** (:func:`check_url`), at every hop: the raw text first (an
  http(s) scheme, nothing in the authority that parsers read differently:
  no user-info ``@``, backslash, whitespace or control character), then the
  URL as requests prepared it, read both by urllib3's parser and by
  ``urllib.parse`` (the one requests' adapter picks the host and port with):
  both must see the same scheme, host and port, and that host and port must
  be on the allow-list (:class:`AllowedHost`).
* **The address** (:class:`GuardedAdapter`), when the socket is opened: the
  host is resolved with :func:`resolve` and only addresses that are public
  (not loopback, private, link-local, multicast, reserved...) are connected
  to, unless the host is one the operator configured (a base URL setting, an
  instance's api_base_url, MEDIA_ALLOWED_HOSTS) and not a public service's
  name (:data:`PUBLIC_SERVICE_DOMAINS`). Checking the address really
  connected to leaves no gap for a DNS answer that changes between a check
  and the connection.
* **Redirects** are followed here, not by requests: each hop goes through
  both checks again, and credentials go only to the scheme, host and port
  they were meant for.

:func:`read_chunks` enforces the size limit on the bytes actually received,
whatever Content-Length claimed. Error messages name the host and the reason,
never what a refused or failing host answered.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Union
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError, NewConnectionError
from urllib3.util import parse_url
from urllib3.util.connection import allowed_gai_family, create_connection

from codes import Text, say
from security import is_secret_key

CHUNK_SIZE = 1024 * 1024
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}
# Used when a caller passes no timeout: a request never waits forever.
FALLBACK_TIMEOUT = (10.0, 60.0)
# Names of the public services zaphook talks to: they must resolve to public
# addresses even when a setting names them (a private answer for them is a
# poisoned resolver or a rebinding attack, not an operator's choice).
PUBLIC_SERVICE_DOMAINS = (".whatsapp.net", ".whatsapp.com", ".fbsbx.com", ".facebook.com", ".fbcdn.net",
                          ".w-api.app", ".z-api.io")

# How host names become addresses; a module attribute so tests can answer for a DNS.
resolve = socket.getaddrinfo

_local = threading.local()


class DownloadError(Exception):
    """A download that did not work, with what a person needs to know about it.

    ``retryable`` marks passing trouble (timeouts, refused connections, 5xx,
    429) worth another try later; ``status`` is the HTTP status when there was one.
    ``message`` is a :class:`codes.Text` (its English is the exception's text), or
    English only; ``text`` is then a shorter coded version for the dashboard.
    """

    def __init__(self, message: Union[str, Text], *, status: Optional[int] = None, retryable: bool = False,
                 kind: str = "error", text: Optional[Text] = None) -> None:
        if isinstance(message, Text):
            text, message = message, message.english
        super().__init__(message)
        self.text = text or say("media_error.failed", reason=message)
        self.status = status
        self.retryable = retryable
        self.kind = kind


class AddressRefused(Exception):
    """Raised while connecting: the host resolved to no address it may be reached at.

    Not an OSError on purpose, so that neither urllib3 nor requests take it
    for passing network trouble (to retry or wrap): it reaches open_stream as is.
    """

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} resolves to no public address")
        self.host = host


@dataclass(frozen=True)
class Limits:
    connect_timeout: float
    read_timeout: float
    max_bytes: int

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


# --- the allow-list ----------------------------------------------------------------

@dataclass(frozen=True)
class AllowedHost:
    """One allow-list entry: an exact host (name or IP address) or a ".suffix" domain, on one port.

    ``port`` None allows only the scheme's default port (443 for https, 80 for
    http). ``configured`` marks a host the operator named (a setting, an
    instance's api_base_url): only those may resolve to non-public addresses.
    """

    host: str
    port: Optional[int] = None
    configured: bool = False

    def matches(self, host: str, port: int, scheme: str) -> bool:
        if port != (self.port if self.port is not None else DEFAULT_PORTS[scheme]):
            return False
        return _host_matches(host, self.host)


Allowed = Iterable[Union[str, AllowedHost]]


def allowed_entry(text: str, configured: bool = False) -> Optional[AllowedHost]:
    """``host``, ``host:port``, ``.domain``, ``.domain:port``, ``[v6]:port`` or a bare IPv6 address; None if not one."""
    text = text.strip().lower()
    port: Optional[str] = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text  # a name, or an IPv6 address without brackets (so without a port)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    suffix = host.startswith(".")
    host = normal_host(host[1:] if suffix else host)
    if not host:
        return None
    return AllowedHost("." + host if suffix else host, int(port) if port else None, configured)


def configured_hosts(entries: Iterable[str]) -> tuple[AllowedHost, ...]:
    """Allow-list entries the operator wrote (MEDIA_ALLOWED_HOSTS); ones that do not parse allow nothing."""
    parsed = (allowed_entry(entry, configured=True) for entry in entries)
    return tuple(entry for entry in parsed if entry is not None)


def entry_for_url(url: Optional[str]) -> Optional[AllowedHost]:
    """The entry a configured base URL stands for: exactly its host and its (explicit or default) port."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = normal_host(parts.hostname)
    return AllowedHost(host, port or DEFAULT_PORTS[parts.scheme], configured=True) if host else None


def entries_for_urls(urls: Iterable[Optional[str]]) -> tuple[AllowedHost, ...]:
    """Entries for configured base URLs (empty ones skipped), without duplicates."""
    entries = (entry_for_url(url) for url in urls)
    return tuple(dict.fromkeys(entry for entry in entries if entry is not None))


def normal_host(host: str) -> str:
    """A host as compared: lower case, no brackets or trailing dot, IP addresses in their canonical form."""
    host = host.strip().lower().strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        # A domain entry covers names only: ".0.1" must not match the address 127.0.0.1.
        return not _is_ip(host) and (host == pattern[1:] or host.endswith(pattern))
    return host == pattern


def _as_entries(allowed: Allowed) -> tuple[AllowedHost, ...]:
    """Plain strings are the built-in defaults: names that must resolve to public addresses."""
    entries = []
    for entry in allowed:
        if isinstance(entry, str):
            entry = allowed_entry(entry)
        if entry is not None:
            entries.append(entry)
    return tuple(entries)


def host_allowed(host: str, allowed: Allowed, port: Optional[int] = None, scheme: str = "https") -> bool:
    """Whether ``host`` on ``port`` (None: the scheme's default) is on the allow-list."""
    port = port if port is not None else DEFAULT_PORTS[scheme]
    host = normal_host(host)
    return any(entry.matches(host, port, scheme) for entry in _as_entries(allowed))


# --- checking a URL ---------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where a checked URL really goes."""

    url: str  # as prepared by requests: what is sent
    scheme: str
    host: str  # normal_host form
    port: int
    may_be_private: bool  # the operator configured this host: non-public addresses are fine

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def host_of(url: str) -> str:
    """The host of a URL, for messages."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def shown_url(url: str) -> str:
    """A URL for logs and error texts: user-info and signed query strings (oh=, oe=, tokens) left out."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _refused(reason: str, text: Optional[Text] = None) -> DownloadError:
    """A URL zaphook will not fetch; ``text`` says why to the dashboard (else a general refusal)."""
    return DownloadError(f"refused: {reason}", kind="refused", text=text or say("media_error.url_refused"))


# Anything a resolver reads as a number: 2130706433, 0x7f.1, 017700000001, 127.1.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def _check_raw(url: str) -> None:
    """Refuse what parsers disagree on before any parser reads it."""
    if not isinstance(url, str):
        raise _refused("not a URL")
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in DEFAULT_PORTS:
        raise _refused(f"{shown_url(url)!r} is not an http(s) URL")
    if any(ord(char) < 32 or ord(char) == 127 for char in url):
        raise _refused("control characters in the URL")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise _refused("user-info (@) in the URL's host part")
    if "\\" in authority or any(char.isspace() for char in authority):
        raise _refused("a backslash or whitespace in the URL's host part")


def _check_prepared(prepared_url: str, allowed: tuple[AllowedHost, ...]) -> Target:
    """Read the prepared URL as both urllib3 and requests' adapter do; they must agree, and be allowed."""
    try:
        by_urllib3 = parse_url(prepared_url)
        by_adapter = urlsplit(prepared_url)
        adapter_port = by_adapter.port
    except (LocationParseError, ValueError):
        raise _refused(f"{shown_url(prepared_url)!r} is not a valid URL") from None
    scheme = (by_urllib3.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or by_adapter.scheme.lower() != scheme:
        raise _refused(f"{shown_url(prepared_url)!r} is not an http(s) URL")
    if by_urllib3.auth is not None or by_adapter.username is not None or by_adapter.password is not None:
        raise _refused("user-info (@) in the URL's host part")
    host = normal_host(by_urllib3.host or "")
    if not host:
        raise _refused(f"{shown_url(prepared_url)!r} has no host")
    port = by_urllib3.port or DEFAULT_PORTS[scheme]
    if normal_host(by_adapter.hostname or "") != host or (adapter_port or DEFAULT_PORTS[scheme]) != port:
        raise _refused(f"{shown_url(prepared_url)!r} reads differently to different parsers")
    if "%" in host:
        raise _refused(f"{host}: an IPv6 zone is not a host")
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]) and not _is_ip(host):
        raise _refused(f"{host} is a number that resolvers read as an IP address: write the address in full")
    matching = [entry for entry in allowed if entry.matches(host, port, scheme)]
    if not matching:
        if any(_host_matches(host, entry.host) for entry in allowed):
            with_port = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise _refused(f"{host} is allowed, but not on port {port} (add {with_port} to MEDIA_ALLOWED_HOSTS "
                           "if you trust it)", say("media_error.port_not_allowed", host=host, port=port,
                                                   host_port=with_port))
        raise _refused(f"{host} is not an allowed media host (add it to MEDIA_ALLOWED_HOSTS if you trust it)",
                       say("media_error.host_not_allowed", host=host))
    may_be_private = (any(entry.configured for entry in matching)
                      and not any(_host_matches(host, domain) for domain in PUBLIC_SERVICE_DOMAINS))
    return Target(prepared_url, scheme, host, port, may_be_private)


def _prepare(request: requests.Request) -> requests.PreparedRequest:
    try:
        return session().prepare_request(request)
    except (requests.RequestException, LocationParseError, ValueError, UnicodeError):
        raise _refused(f"{shown_url(request.url)!r} is not a valid URL") from None


def check_url(url: str, allowed: Allowed) -> Target:
    """Refuse ``url`` unless it is an http(s) URL to an allowed host and port; where it really goes.

    The URL is read the way the HTTP client will read it (prepared by
    requests); the addresses are checked later, when connecting.
    """
    _check_raw(url)
    prepared = _prepare(requests.Request("GET", url))
    return _check_prepared(prepared.url, _as_entries(allowed))


def url_allowed(url: str, allowed: Allowed) -> bool:
    try:
        check_url(url, allowed)
    except DownloadError:
        return False
    return True


# --- checking the address connected to ------------------------------------------

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def is_public_address(text: str) -> bool:
    """Whether an address (as getaddrinfo gives it) is a public one.

    IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d, NAT64,
    6to4, Teredo) are judged by that IPv4 address too.
    """
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(str(address.ipv4_mapped))
        if any(address in network for network in _NAT64):
            return is_public_address(str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (address.is_private or address.is_loopback or address.is_link_local
                                      or address.is_multicast or address.is_reserved or address.is_unspecified)


class _CheckedConnection:
    """Mixin for urllib3's connections: resolve with :func:`resolve`, connect only to an acceptable address.

    TLS (SNI and certificate checks) still uses the host name: only the
    socket's address is chosen here.
    """

    may_be_private = False

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            answers = resolve(name, self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = [info[4][:2] for info in answers]
        acceptable = [address for address in addresses if self.may_be_private or is_public_address(address[0])]
        if not acceptable:
            raise AddressRefused(self.host)
        failure: Optional[OSError] = None
        for address in acceptable:
            try:
                sock = create_connection(address, self.timeout, source_address=self.source_address,
                                         socket_options=self.socket_options)
            except OSError as exc:
                failure = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(failure, socket.timeout):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from failure
        raise NewConnectionError(self, f"Failed to establish a new connection: {failure}") from failure


def _pool_classes(may_be_private: bool) -> dict:
    kind = "Private" if may_be_private else "Public"
    classes = {}
    for scheme, pool_class, connection_class in (("http", HTTPConnectionPool, HTTPConnection),
                                                 ("https", HTTPSConnectionPool, HTTPSConnection)):
        checked = type(f"{kind}{connection_class.__name__}", (_CheckedConnection, connection_class),
                       {"may_be_private": may_be_private})
        classes[scheme] = type(f"{kind}{pool_class.__name__}", (pool_class,), {"ConnectionCls": checked})
    return classes


_POOL_CLASSES = {False: _pool_classes(False), True: _pool_classes(True)}


class GuardedAdapter(HTTPAdapter):
    """An adapter whose connections check the address they connect to; no proxies, always a timeout."""

    def __init__(self, may_be_private: bool) -> None:
        self.may_be_private = may_be_private
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES[self.may_be_private]

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # A proxy would connect for us, to addresses this adapter never sees.
        raise requests.exceptions.InvalidProxyURL("outbound requests go without a proxy")

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        return super().send(request, stream=stream, timeout=timeout or FALLBACK_TIMEOUT, verify=verify,
                            cert=cert, proxies={})


def session(may_be_private: bool = False) -> requests.Session:
    """This thread's session for public-only hosts, or for hosts the operator configured.

    One per thread (requests' sessions are not safe to share between threads)
    and per kind, so that a pooled connection is only ever reused for requests
    under the same address rule it was opened with.
    """
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    current = sessions.get(may_be_private)
    if current is None:
        current = sessions[may_be_private] = requests.Session()
        current.trust_env = False  # no proxy or .netrc from the environment: hosts are checked here
        adapter = GuardedAdapter(may_be_private)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
    return current


# --- sending ----------------------------------------------------------------------

CREDENTIAL_HEADERS = ("authorization", "apikey", "cookie", "proxy-authorization")


def open_stream(method: str, url: str, *, allowed: Allowed, limits: Limits,
                headers: Optional[dict] = None, json_body: Optional[dict] = None,
                data: Optional[bytes] = None, follow_redirects: bool = True) -> requests.Response:
    """Send a request and return the streaming response of the last hop, whatever its status.

    Every hop is checked by :func:`check_url` rules before anything is sent,
    and its addresses when connecting. Credentials in ``headers`` are only
    sent to the scheme, host and port they were meant for: a redirect
    elsewhere (even to an allowed host) goes without them. ``data`` is a body
    sent as it is (forwarding); ``follow_redirects=False`` returns a redirect
    as the answer (a webhook that is signed for one URL is not re-sent to another).
    """
    allowed = _as_entries(allowed)
    headers = dict(headers or {})
    first_origin = None
    for _hop in range(MAX_REDIRECTS + 1):
        _check_raw(url)
        prepared = _prepare(requests.Request(method, url, headers=headers, json=json_body, data=data))
        target = _check_prepared(prepared.url, allowed)
        first_origin = first_origin or target.origin
        if target.origin != first_origin:
            for name in list(prepared.headers):
                if name.lower() in CREDENTIAL_HEADERS or is_secret_key(name):  # X-Api-Key, Client-Token...
                    del prepared.headers[name]
        response = _send(prepared, target, limits)
        if response.status_code not in REDIRECTS or not follow_redirects:
            return response
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise DownloadError(say("media_error.redirect_without_location", host=target.host,
                                    status=response.status_code), status=response.status_code)
        url = urljoin(target.url, location)
        if response.status_code == 303 or (response.status_code in (301, 302) and method != "GET"):
            method, json_body, data = "GET", None, None
    raise DownloadError(say("media_error.too_many_redirects", count=MAX_REDIRECTS), kind="refused")


def _send(prepared: requests.PreparedRequest, target: Target, limits: Limits) -> requests.Response:
    """One hop; network trouble as a DownloadError that names the host only (never an answer's text)."""
    try:
        return session(target.may_be_private).send(prepared, stream=True, timeout=limits.timeout,
                                                   allow_redirects=False)
    except AddressRefused:
        raise _refused(f"{target.host} resolves to no public address (only hosts you configure may be "
                       "on a private network)", say("media_error.no_public_address", host=target.host)) from None
    except requests.Timeout:
        raise DownloadError(say("media_error.timeout", host=target.host), retryable=True, kind="timeout") from None
    except requests.ConnectionError as exc:
        raise DownloadError(say("media_error.connect_failed", host=target.host, error=type(exc).__name__),
                            retryable=True, kind="connection") from None
    except requests.RequestException as exc:
        raise DownloadError(say("media_error.request_failed", host=target.host, error=type(exc).__name__),
                            kind="error") from None


# --- reading ----------------------------------------------------------------------

def too_large(size: int, limit: int) -> DownloadError:
    return DownloadError(say("media_error.too_large", size_mb=f"{size / 1_000_000:.0f}",
                             limit_mb=f"{limit / 1_000_000:.0f}"), kind="too_large")


def read_chunks(response: requests.Response, limits: Limits,
                tick: Optional[Callable[[], None]] = None, allowance: int = 0) -> Iterator[bytes]:
    """The response body in chunks, stopping at ``limits.max_bytes`` (+ ``allowance``).

    ``tick`` runs between chunks (the worker renews its lease there and may
    abort). Connection trouble mid-body is a retryable DownloadError.
    """
    ceiling = limits.max_bytes + allowance
    claimed = response.headers.get("Content-Length", "")
    if claimed.isdigit() and int(claimed) > ceiling:
        response.close()
        raise too_large(int(claimed) - allowance, limits.max_bytes)
    received = 0
    try:
        for chunk in response.iter_content(CHUNK_SIZE):
            received += len(chunk)
            if received > ceiling:
                raise too_large(received - allowance, limits.max_bytes)
            yield chunk
            if tick is not None:
                tick()
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise DownloadError(say("media_error.stopped_mid_download", host=host_of(response.url),
                                error=type(exc).__name__), retryable=True, kind="timeout") from None
    except requests.RequestException as exc:
        raise DownloadError(say("media_error.broke_off", host=host_of(response.url), error=type(exc).__name__),
                            retryable=True, kind="connection") from None
    finally:
        response.close()


def read_json(response: requests.Response, limits: Limits, what: str, allowance: int = 0,
              tick: Optional[Callable[[], None]] = None):
    """A JSON answer (bounded like any download)."""
    body = b"".join(read_chunks(response, limits, tick, allowance))
    try:
        return json.loads(body)
    except ValueError:
        raise DownloadError(say("media_error.not_json", who=what), status=response.status_code) from None
