"""Outbound HTTP for media: only to allowed hosts, always with timeouts, bounded in size.

Every download goes through :func:`open_stream`, which follows redirects itself
so that each hop's host is checked (a redirect to a host that is not allowed is
refused, not followed), and :func:`read_chunks`, which enforces the size limit
on the bytes actually received, whatever Content-Length claimed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional
from urllib.parse import urljoin, urlsplit

import requests

CHUNK_SIZE = 1024 * 1024
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)

_local = threading.local()


class DownloadError(Exception):
    """A download that did not work, with what a person needs to know about it.

    ``retryable`` marks passing trouble (timeouts, refused connections, 5xx,
    429) worth another try later; ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, retryable: bool = False,
                 kind: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    connect_timeout: float
    read_timeout: float
    max_bytes: int

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def session() -> requests.Session:
    """One session per thread: requests' sessions are not safe to share between threads."""
    current = getattr(_local, "session", None)
    if current is None:
        current = _local.session = requests.Session()
        current.trust_env = False  # no proxy or .netrc from the environment: hosts are checked here
    return current


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """``allowed`` holds exact host names, or ".suffix" entries for a domain and its subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def shown_url(url: str) -> str:
    """A URL for logs and error texts: signed query strings (oh=, oe=, tokens) left out."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def check_url(url: str, allowed: Iterable[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"refused: {shown_url(url)!r} is not an http(s) URL", kind="refused")
    if not host_allowed(parts.hostname, allowed):
        raise DownloadError(
            f"refused: {parts.hostname} is not an allowed media host (add it to MEDIA_ALLOWED_HOSTS if you trust it)",
            kind="refused",
        )


def open_stream(method: str, url: str, *, allowed: Iterable[str], limits: Limits,
                headers: Optional[dict] = None, json_body: Optional[dict] = None) -> requests.Response:
    """Send a request and return the streaming response of the last hop, whatever its status.

    Credentials in ``headers`` are only sent to the host they were meant for:
    a redirect to another (allowed) host goes without them.
    """
    allowed = tuple(allowed)
    headers = dict(headers or {})
    first_host = host_of(url)
    for _hop in range(MAX_REDIRECTS + 1):
        check_url(url, allowed)
        hop_headers = headers if host_of(url) == first_host else {
            name: value for name, value in headers.items() if name.lower() not in ("authorization", "apikey")
        }
        try:
            response = session().request(method, url, headers=hop_headers, json=json_body, stream=True,
                                         timeout=limits.timeout, allow_redirects=False)
        except requests.Timeout:
            raise DownloadError(f"{host_of(url)} did not answer in time", retryable=True, kind="timeout") from None
        except requests.ConnectionError as exc:
            raise DownloadError(f"could not connect to {host_of(url)}: {type(exc).__name__}",
                                retryable=True, kind="connection") from None
        except requests.RequestException as exc:
            raise DownloadError(f"request to {host_of(url)} failed: {type(exc).__name__}", kind="error") from None
        if response.status_code not in REDIRECTS:
            return response
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise DownloadError(f"{host_of(url)} answered {response.status_code} without a Location",
                                status=response.status_code)
        url = urljoin(url, location)
        if response.status_code == 303 or (response.status_code in (301, 302) and method != "GET"):
            method, json_body = "GET", None
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", kind="refused")


def too_large(size: int, limit: int) -> DownloadError:
    return DownloadError(f"too large: {size / 1_000_000:.0f} MB > MEDIA_MAX_MB {limit / 1_000_000:.0f}",
                         kind="too_large")


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
        raise DownloadError(f"{host_of(response.url)} stopped sending mid-download ({type(exc).__name__})",
                            retryable=True, kind="timeout") from None
    except requests.RequestException as exc:
        raise DownloadError(f"download from {host_of(response.url)} broke off: {type(exc).__name__}",
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
        raise DownloadError(f"{what} answered something that is not JSON", status=response.status_code) from None
