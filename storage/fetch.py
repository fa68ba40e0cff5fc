"""Getting a media file's bytes, by the first way that works, verified, into its file.

The ways, in order: a copy of the same content already downloaded; the
base64 body a provider put in the webhook (written to a file by the core);
the WhatsApp CDN (encrypted, decrypted here with the message's mediaKey);
the provider's own API (its :class:`handlers.provider.MediaDownload`, which
uses the helpers below). Every way streams through a
verifier into a temporary file beside the target, renamed only when every
check passed, so a rejected download leaves nothing behind.

This module knows nothing of the database: :func:`fetch` takes a
:class:`MediaJob` and returns an :class:`Outcome` with every attempt.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional, Union

from codes import Text, say
from storage.decrypt import MediaDecryptor, PlainVerifier, VerificationError, decode_digest, derive_keys
from storage.files import AtomicFile
from storage.http import (
    CHUNK_SIZE,
    AllowedHost,
    DownloadError,
    Limits,
    configured_hosts,
    entries_for_urls,
    open_stream,
    read_chunks,
    too_large,
    url_allowed,
)

# WhatsApp's media CDN (mmg.whatsapp.net, media-*.cdn.whatsapp.net): always
# allowed, on https's (or http's) default port and only at public addresses.
WHATSAPP_HOSTS = (".whatsapp.net",)
WHATSAPP_ORIGIN = "https://web.whatsapp.com"
# The CDN file is the plaintext plus up to 16 bytes of padding and a 10-byte MAC.
ENCRYPTION_OVERHEAD = 26
# Small answers (a provider's file link or media info) never need more than this.
SMALL_ANSWER = 1024 * 1024

Tick = Optional[Callable[[], None]]


class Unavailable(Exception):
    """The source no longer has the media (403/404/410): another way may still have it.

    ``message`` as in :class:`storage.http.DownloadError`: a Text, or English with ``text`` beside it.
    """

    def __init__(self, message: Union[str, Text], status: Optional[int] = None, text: Optional[Text] = None) -> None:
        if isinstance(message, Text):
            text, message = message, message.english
        super().__init__(message)
        self.text = text or say("media_error.failed", reason=message)
        self.status = status


@dataclass(frozen=True)
class FetchConfig:
    wa_media_base_url: str
    extra_hosts: tuple[str, ...]  # MEDIA_ALLOWED_HOSTS
    limits: Limits
    api_base_urls: tuple[str, ...] = ()  # the providers' configured API base URLs
    public_hosts: tuple[str, ...] = ()  # the providers' own media hosts, allowed at public addresses

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], api_base_urls: tuple[str, ...] = (),
                      public_hosts: tuple[str, ...] = ()) -> "FetchConfig":
        return cls(
            wa_media_base_url=settings["WA_MEDIA_BASE_URL"],
            extra_hosts=tuple(settings["MEDIA_ALLOWED_HOSTS"]),
            api_base_urls=tuple(api_base_urls),
            public_hosts=tuple(public_hosts),
            limits=Limits(
                connect_timeout=float(settings["MEDIA_CONNECT_TIMEOUT"]),
                read_timeout=float(settings["MEDIA_READ_TIMEOUT"]),
                max_bytes=int(float(settings["MEDIA_MAX_MB"]) * 1_000_000),
            ),
        )

    def allowed_hosts(self, *more_urls: Optional[str]) -> tuple[Union[str, AllowedHost], ...]:
        """WhatsApp's and the providers' media hosts, MEDIA_ALLOWED_HOSTS, and the configured base URLs' hosts and ports.

        ``more_urls`` are configured too (an instance's api_base_url): their
        hosts, like MEDIA_ALLOWED_HOSTS', may be on a private network.
        """
        urls = (self.wa_media_base_url, *self.api_base_urls, *more_urls)
        return WHATSAPP_HOSTS + self.public_hosts + configured_hosts(self.extra_hosts) + entries_for_urls(urls)


@dataclass
class MediaJob:
    """What a worker knows about one media file when it sets out to fetch it."""

    provider: str
    instance_external_id: str
    media_type: str
    provider_message_id: str
    chat_jid: Optional[str] = None
    from_me: bool = False
    mimetype: Optional[str] = None
    file_length: Optional[int] = None
    media_key: Optional[str] = None  # base64, secret
    direct_path: Optional[str] = None
    url: Optional[str] = None
    file_sha256: Optional[str] = None
    file_enc_sha256: Optional[str] = None
    media_id: Optional[str] = None  # the provider's own id of the file (Meta's media id)
    inline_file: Optional[Path] = None
    copy_from: Optional[Path] = None
    copy_sha256: Optional[str] = None
    api_base_url: Optional[str] = None  # the provider API's base URL for this instance
    api_token: Optional[str] = None  # secret
    # The provider's own API way (handlers.provider.MediaDownload), its name and
    # the settings that give it credentials, for the message when none are set.
    api_way: Any = None
    api_way_name: Optional[str] = None
    api_settings_hint: Optional[str] = None


@dataclass
class Attempt:
    way: str
    outcome: str  # ok | next | retry | failed | expired
    started_at: datetime
    finished_at: datetime
    http_status: Optional[int] = None
    error: Optional[str] = None
    size: Optional[int] = None


@dataclass
class Outcome:
    state: str  # done | retry | failed | expired
    attempts: list[Attempt] = field(default_factory=list)
    way: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    error: Optional[str] = None
    failed_check: Optional[str] = None
    text: Optional[Text] = None  # the error as a code for the dashboard (codes.py)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def fetch(job: MediaJob, target: Path, config: FetchConfig, tick: Tick = None, temp_tag: str = "") -> Outcome:
    """Try each way in turn until one delivers verified bytes to ``target``.

    ``tick`` runs between chunks; whatever it raises (the worker stopping)
    propagates after the temporary file is removed. ``temp_tag`` names the
    temporary files, so whoever resumes the job can clear a dead worker's.
    """
    limits = config.limits
    if job.file_length and job.file_length > limits.max_bytes:
        refusal = too_large(job.file_length, limits.max_bytes)
        return Outcome("failed", error=str(refusal), text=refusal.text)
    ways = plan(job, config)
    if not ways:
        why = say("media_error.no_way", reasons=missing_means_texts(job, config))
        return Outcome("failed", error=why.english, text=why)

    attempts: list[Attempt] = []
    texts: list[Text] = []
    retryable: Optional[DownloadError] = None
    refused: Optional[Exception] = None
    rejected: Optional[VerificationError] = None
    gone: Optional[Unavailable] = None
    for name, way in ways:
        started = _now()
        try:
            with AtomicFile(target, temp_tag) as out:
                result = way(job, out.file, config, tick)
                out.commit()
        except VerificationError as exc:
            rejected = rejected or exc
            attempts.append(Attempt(name, "next", started, _now(), error=str(exc)))
            texts.append(exc.text)
        except Unavailable as exc:
            gone = gone or exc
            attempts.append(Attempt(name, "next", started, _now(), exc.status, str(exc)))
            texts.append(exc.text)
        except DownloadError as exc:
            attempts.append(Attempt(name, "next", started, _now(), exc.status, str(exc)))
            texts.append(exc.text)
            if exc.kind == "too_large":
                attempts[-1].outcome = "failed"
                return Outcome("failed", attempts, error=str(exc), text=exc.text)
            if exc.retryable:
                retryable = retryable or exc
            else:
                refused = refused or exc
        else:
            attempts.append(Attempt(name, "ok", started, _now(), size=result.size))
            return Outcome("done", attempts, way=name, size=result.size, sha256=result.sha256)

    errors = "; ".join(attempt.error for attempt in attempts if attempt.error)
    text = texts[0] if len(texts) == 1 else say("media_error.each_way", reasons=texts)
    if retryable is not None:
        outcome = Outcome("retry", attempts, error=errors, text=text)
    elif rejected is not None:
        outcome = Outcome("failed", attempts, error=errors, failed_check=rejected.checks[0] if rejected.checks else None,
                          text=text)
    elif refused is not None:
        outcome = Outcome("failed", attempts, error=errors, text=text)
    else:
        outcome = Outcome("expired", attempts, error=errors, text=text)
    attempts[-1].outcome = outcome.state
    return outcome


# --- choosing the ways -------------------------------------------------------

def cdn_url(job: MediaJob, config: FetchConfig) -> Optional[str]:
    if job.direct_path:
        return config.wa_media_base_url.rstrip("/") + "/" + job.direct_path.lstrip("/")
    if job.url and url_allowed(job.url, WHATSAPP_HOSTS):
        return job.url
    return None


def plan(job: MediaJob, config: FetchConfig) -> list[tuple[str, Callable]]:
    ways: list[tuple[str, Callable]] = []
    if job.copy_from is not None:
        ways.append(("copy", from_copy))
    if job.inline_file is not None:
        ways.append(("inline", from_inline))
    if job.media_key and cdn_url(job, config):
        ways.append(("cdn", from_cdn))
    if job.api_way is not None and _has_credentials(job) and job.api_way.needs(job) is None:
        ways.append((job.api_way_name or job.provider, job.api_way.fetch))
    return ways


def _has_credentials(job: MediaJob) -> bool:
    """Whether the provider's way can be tried: it needs none, or the instance has its API base URL and token."""
    return not job.api_way.credentials or bool(job.api_token and job.api_base_url)


def missing_means_texts(job: MediaJob, config: FetchConfig) -> list[Text]:
    """Why no way applies, in the words of the settings a person can change: one Text per reason
    (a provider's ``needs`` may answer a Text or English)."""
    reasons = []
    if not job.media_key:
        reasons.append(say("media_error.no_media_key"))
    elif not cdn_url(job, config):
        reasons.append(say("media_error.no_direct_path"))
    if job.api_way is not None:
        if not _has_credentials(job):
            reasons.append(say("media_error.no_credentials", provider=job.provider, settings=job.api_settings_hint))
        elif job.api_way.needs(job):
            need = job.api_way.needs(job)
            reasons.append(need if isinstance(need, Text) else say("media_error.provider_needs", reason=need))
    return reasons or [say("media_error.nothing_in_payload", media_type=job.media_type)]


# --- the ways ----------------------------------------------------------------

def _stream_file(path: Path, verifier, tick: Tick):
    try:
        source = open(path, "rb")
    except FileNotFoundError:
        raise DownloadError(say("media_error.file_gone", name=path.name)) from None
    with source:
        while True:
            chunk = source.read(CHUNK_SIZE)
            if not chunk:
                break
            verifier.feed(chunk)
            if tick is not None:
                tick()
    return verifier.finish()


def from_copy(job: MediaJob, out: BinaryIO, config: FetchConfig, tick: Tick):
    verifier = PlainVerifier(out, sha256_hex=job.copy_sha256)
    return _stream_file(job.copy_from, verifier, tick)


def from_inline(job: MediaJob, out: BinaryIO, config: FetchConfig, tick: Tick):
    verifier = PlainVerifier(out, file_sha256=decode_digest(job.file_sha256), file_length=job.file_length)
    return _stream_file(job.inline_file, verifier, tick)


def from_cdn(job: MediaJob, out: BinaryIO, config: FetchConfig, tick: Tick):
    url = cdn_url(job, config)
    try:
        media_key = base64.b64decode(job.media_key, validate=False)
    except (binascii.Error, ValueError):
        raise DownloadError(say("media_error.media_key_not_base64")) from None
    if len(media_key) != 32:
        raise DownloadError(say("media_error.media_key_size"))
    keys = derive_keys(media_key, job.media_type)
    response = open_stream("GET", url, allowed=config.allowed_hosts(job.api_base_url), limits=config.limits,
                           headers={"Origin": WHATSAPP_ORIGIN})
    status = response.status_code
    if status in (403, 404, 410):
        response.close()
        raise Unavailable(say("media_error.cdn_expired", status=status), status)
    _raise_for_status(response, say("media_error.who.cdn"))
    with MediaDecryptor(keys, out, file_enc_sha256=decode_digest(job.file_enc_sha256),
                        file_sha256=decode_digest(job.file_sha256), file_length=job.file_length) as decryptor:
        for chunk in read_chunks(response, config.limits, tick, allowance=ENCRYPTION_OVERHEAD):
            decryptor.feed(chunk)
        return decryptor.finish()


def stream_plain(response, out: BinaryIO, config: FetchConfig, tick: Tick, *,
                 file_sha256: Optional[bytes] = None, file_length: Optional[int] = None):
    """Stream a plain (not encrypted) file from ``response`` into ``out``, verified against what is known of it."""
    verifier = PlainVerifier(out, file_sha256=file_sha256, file_length=file_length)
    for chunk in read_chunks(response, config.limits, tick):
        verifier.feed(chunk)
    return verifier.finish()


# --- answers -----------------------------------------------------------------

def small_limits(config: FetchConfig) -> Limits:
    return Limits(config.limits.connect_timeout, config.limits.read_timeout, SMALL_ANSWER)


def _raise_for_status(response, who: Union[str, Text]) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    response.close()
    if status == 429 or status >= 500:
        raise DownloadError(say("media_error.retry_later", who=who, status=status), status=status, retryable=True)
    raise DownloadError(say("media_error.http_status", who=who, status=status), status=status)


def raise_for_provider(response, who: Union[str, Text], gone_hint: Union[str, Text] = "") -> None:
    """A provider's error answer as an exception; ``who`` names it (a label, or a Text such as its file link)."""
    status = response.status_code
    if status in (401, 403):
        response.close()
        raise DownloadError(say("media_error.credentials_refused", who=who, status=status), status=status)
    if status in (400, 404, 410):
        message = provider_message(_json_or_none(response))
        response.close()
        detail = f" ({message})" if message else ""
        hint = f"; {gone_hint}" if gone_hint else ""
        text = (say("media_error.provider_gone_hint", who=who, status=status, hint=gone_hint)
                if isinstance(gone_hint, Text) else say("media_error.provider_gone", who=who, status=status))
        raise Unavailable(f"{who} answered {status}: it does not have this media{detail}{hint}", status, text)
    _raise_for_status(response, who)


def _json_or_none(response) -> Any:
    try:
        return json.loads(response.raw.read(4096, decode_content=True))
    except (ValueError, OSError, AttributeError):
        return None


def provider_message(answer: Any) -> Optional[str]:
    """The human part of a provider's error answer, shortened (never the whole body)."""
    if not isinstance(answer, dict):
        return None
    for key in ("message", "error", "response"):
        value = answer.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("error_user_msg")
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value:
            return value[:200]
    return None
