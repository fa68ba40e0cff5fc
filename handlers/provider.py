"""What a provider unit declares, and the registry the rest of zaphook reads.

Each provider module under ``handlers/`` ends with one ``PROVIDER =
Provider(...)``: how its webhooks are recognised and parsed (pure), its status
vocabulary, its settings and API credentials, the URLs a person pastes into
it, how its webhooks are authenticated, and, when its API allows them, how to
send a text, how to fetch a media file and how to register the webhook URLs
(network, through ``storage``'s guarded HTTP client). The route table,
``/status``, ``register``, campaigns, media downloads, the settings and the
dashboard all ask the :class:`Registry`; none of them names a provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Optional
from urllib.parse import quote

from .base import Normalised, RouteHint

if TYPE_CHECKING:  # only for the annotations: storage never imports handlers
    from storage.fetch import FetchConfig, MediaJob
    from storage.send import SendTarget

# The route every provider may post to, and the path prefix of its event-suffixed form.
CATCH_ALL_PATH = "/webhook/"
CATCH_ALL_ROUTE = "any"


@dataclass(frozen=True)
class Setting:
    """One setting a provider needs (a .env variable); ``kind`` picks the parser in config.py."""

    name: str
    default: str = ""
    kind: str = "text"  # text | url | secret


@dataclass(frozen=True)
class ApiAccess:
    """The settings that give an instance without credentials of its own its API base URL and credential."""

    base_url_setting: str
    token_setting: str


@dataclass(frozen=True)
class WebhookUrl:
    """One URL a person pastes into the provider.

    ``key`` names it in ``/status`` and for ``register``; ``label`` is printed
    beside it. Requests on ``path`` get ``RouteHint(route)``. With
    ``event_suffix`` the provider may append ``/<event>`` to it (Evolution's
    "webhook by events"). The catch-all path is served anyway: a provider that
    posts there (Meta) lists it only to say so.
    """

    key: str
    label: str
    path: str
    route: str = CATCH_ALL_ROUTE
    event_suffix: bool = False


@dataclass(frozen=True)
class Signature:
    """A signature the provider puts on its webhooks, checked instead of WEBHOOK_TOKEN when present.

    ``verify(secret, header value, raw body)`` returns None or an
    AuthFailure. When the secret is set, a request this provider's ``detect``
    recognises must carry the header.
    """

    header: str
    secret_setting: str
    verify: Callable[[str, Optional[str], bytes], Any]  # -> None or security.AuthFailure
    sign: Callable[[str, bytes], str]  # (secret, raw body) -> the header's value (simulate, import)


@dataclass(frozen=True)
class MediaDownload:
    """Fetching an attachment through the provider's own API (after the inline copy and the CDN).

    ``needs(job)`` says what the job lacks for this way (None when it can be
    tried); ``fetch(job, out, config, tick)`` streams verified bytes into ``out``.
    """

    fetch: Callable[["MediaJob", BinaryIO, "FetchConfig", Any], Any]
    needs: Callable[["MediaJob"], Optional[Any]] = lambda job: None  # a codes.Text (or English) or None
    # False when the way needs no API base URL nor token (Z-API's direct file URLs).
    credentials: bool = True


@dataclass(frozen=True)
class Provider:
    name: str  # stored on rows: WebhookEvent.provider, Instance.provider
    label: str  # for people: "W-API"
    detect: Callable[[dict, RouteHint], bool]
    parse: Callable[[dict, RouteHint], Normalised]
    # Its status words or codes -> zaphook's statuses (what its payloads mean by them).
    statuses: Mapping[Any, str] = field(default_factory=dict)
    settings: tuple[Setting, ...] = ()
    api: Optional[ApiAccess] = None
    webhook_urls: tuple[WebhookUrl, ...] = ()
    signature: Optional[Signature] = None
    # A header its webhooks carry the instance's API token in (Z-API's z-api-token): when the
    # instance has a stored api_token, a request without it is refused (401), a different one too
    # (403). Never stored.
    instance_token_header: Optional[str] = None
    # GET handshake on the webhook URL (Meta's hub.challenge): (query, settings) ->
    # None when the query is not this provider's, else (status, text body or error).
    subscription: Optional[Callable[[Mapping[str, str], Mapping[str, Any]], Optional[tuple[int, str]]]] = None
    send_text: Optional[Callable[["SendTarget", str, str], str]] = None
    media: Optional[MediaDownload] = None
    media_hosts: tuple[str, ...] = ()  # public hosts its media links point to (always allowed)
    # register(api_base, token, instance id, {key: url}, **options) -> one result dict per URL set.
    # Options: with_base64 (media in the webhook), signing_secret (the Signature's secret, when set).
    register: Optional[Callable[..., list[dict]]] = None
    # When the provider is configured by hand instead: (urls by key, settings) -> lines to print.
    register_by_hand: Optional[Callable[[Mapping[str, str], Mapping[str, Any]], list[str]]] = None
    # Problems with its settings, for /status and /test: settings -> [codes.Message] (text is accepted).
    check_settings: Callable[[Mapping[str, Any]], list[Any]] = lambda settings: []

    @property
    def secret_settings(self) -> tuple[str, ...]:
        return tuple(setting.name for setting in self.settings if setting.kind == "secret")

    def api_defaults(self, settings: Mapping[str, Any]) -> tuple[Optional[str], Optional[str]]:
        """The settings' default API base URL and credential; (None, None) for a provider without an API."""
        if self.api is None:
            return None, None
        return settings.get(self.api.base_url_setting) or None, settings.get(self.api.token_setting) or None


class Registry:
    """The providers, in detection order: the first whose ``detect`` says yes parses the payload."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers: list[Provider] = list(providers)
        names = [provider.name for provider in self._providers]
        if len(set(names)) != len(names):
            raise ValueError(f"two providers share a name: {names}")

    def __iter__(self) -> Iterator[Provider]:
        return iter(tuple(self._providers))

    def __len__(self) -> int:
        return len(self._providers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(provider.name for provider in self._providers)

    def get(self, name: Optional[str]) -> Optional[Provider]:
        return next((provider for provider in self._providers if provider.name == name), None)

    def add(self, provider: Provider, before: Optional[str] = None) -> None:
        """Add a provider (before the one named, for detection order; else last)."""
        if self.get(provider.name) is not None:
            raise ValueError(f"provider {provider.name!r} is already registered")
        names = self.names
        self._providers.insert(names.index(before) if before in names else len(names), provider)

    def remove(self, name: str) -> None:
        self._providers = [provider for provider in self._providers if provider.name != name]

    # --- receiving -------------------------------------------------------------

    def detection_order(self, hint: RouteHint) -> tuple[Provider, ...]:
        """Every provider, the one whose own URL the request came on first."""
        own = self.get(hint.route)
        return ((own,) if own else ()) + tuple(p for p in self._providers if p is not own)

    def routes(self) -> dict[str, str]:
        """Webhook path -> route name, the catch-all included."""
        table = {CATCH_ALL_PATH: CATCH_ALL_ROUTE}
        for provider in self._providers:
            for url in provider.webhook_urls:
                table.setdefault(url.path, url.route)
        return table

    def event_suffix_prefixes(self) -> dict[str, str]:
        """Path prefix -> route name for URLs the provider may append ``/<event>`` to; the catch-all last."""
        prefixes = {url.path: url.route for provider in self._providers for url in provider.webhook_urls
                    if url.event_suffix and url.path != CATCH_ALL_PATH}
        prefixes[CATCH_ALL_PATH] = CATCH_ALL_ROUTE
        return prefixes

    def hint_for_path(self, path: str) -> RouteHint:
        """The RouteHint for a request path (also used to replay a stored request)."""
        normal = "/" + path.strip("/") + "/"
        routes = self.routes()
        if normal in routes:
            return RouteHint(routes[normal])
        for prefix, route in self.event_suffix_prefixes().items():
            if normal.startswith(prefix):
                return RouteHint(route, normal[len(prefix):].strip("/") or None)
        return RouteHint(CATCH_ALL_ROUTE)

    def instance_token_headers(self) -> frozenset[str]:
        """The (lower-case) headers providers put an instance token in: never stored."""
        return frozenset(p.instance_token_header.lower() for p in self._providers if p.instance_token_header)

    def signatures(self) -> tuple[tuple[Provider, Signature], ...]:
        return tuple((p, p.signature) for p in self._providers if p.signature is not None)

    def subscription_answer(self, query: Mapping[str, str], settings: Mapping[str, Any]) -> Optional[tuple[str, int, str]]:
        """(provider name, status, body) of the provider whose GET handshake this query is; None otherwise."""
        for provider in self._providers:
            if provider.subscription is not None:
                answer = provider.subscription(query, settings)
                if answer is not None:
                    return (provider.name, *answer)
        return None

    # --- the URLs to paste -------------------------------------------------------

    def url_rows(self, base_url: str, token_query: str = "") -> list[tuple[Provider, WebhookUrl, str]]:
        """(provider, webhook URL, full URL) for every URL a person pastes, in registry order."""
        base = base_url.rstrip("/")
        return [(provider, url, f"{base}{url.path}{token_query}")
                for provider in self._providers for url in provider.webhook_urls]

    def urls_by_provider(self, base_url: str, token_query: str = "") -> dict:
        """{"any": url, provider: url, or {key: url} when it has several}: the shape /status answers."""
        table: dict = {CATCH_ALL_ROUTE: f"{base_url.rstrip('/')}{CATCH_ALL_PATH}{token_query}"}
        for provider in self._providers:
            rows = [(url.key, full) for p, url, full in self.url_rows(base_url, token_query) if p is provider]
            if len(rows) == 1:
                table[provider.name] = rows[0][1]
            elif rows:
                table[provider.name] = dict(rows)
        return table

    def urls_for(self, provider: Provider, base_url: str, token: Optional[str]) -> dict[str, str]:
        """{key: full URL with ?token=} of one provider, as register sets them."""
        return {url.key: full for p, url, full in self.url_rows(base_url, token_query(token)) if p is provider}

    # --- what the providers' APIs can do --------------------------------------------

    def senders(self) -> tuple[Provider, ...]:
        return tuple(p for p in self._providers if p.send_text is not None)

    def registrars(self) -> tuple[Provider, ...]:
        """Providers whose webhooks zaphook can set through their API."""
        return tuple(p for p in self._providers if p.register is not None)

    def settings(self) -> tuple[Setting, ...]:
        return tuple(setting for provider in self._providers for setting in provider.settings)

    def secret_settings(self) -> tuple[str, ...]:
        return tuple(name for provider in self._providers for name in provider.secret_settings)

    def api_base_urls(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Every provider's configured default API base URL (their hosts are allowed for media)."""
        return tuple(settings.get(p.api.base_url_setting) or "" for p in self._providers if p.api is not None)

    def media_hosts(self) -> tuple[str, ...]:
        return tuple(host for provider in self._providers for host in provider.media_hosts)

    def describe(self) -> list[dict]:
        """What the dashboard needs to know about each provider (no settings' values)."""
        return [{
            "name": p.name,
            "label": p.label,
            "can_send": p.send_text is not None,
            "can_register": p.register is not None,
            "registered_by_hand": p.register_by_hand is not None,
            "downloads_media": p.media is not None,
            "webhook_paths": [url.path for url in p.webhook_urls],
        } for p in self._providers]


def token_query(token: Optional[str]) -> str:
    """``?token=<token>`` (quoted) or nothing."""
    return f"?token={quote(token, safe='')}" if token else ""
