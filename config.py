"""Settings: embedded defaults, then the environment (and `.env`), then a test override.

Every setting is parsed and checked here, so a bad value stops start-up with a
message that names the variable instead of failing later in a request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting has a value zaphook cannot use."""


def _text(value: str) -> str:
    return value.strip()


def _optional_secret(value: str) -> Optional[str]:
    value = value.strip()
    if not value:
        return None
    if value.lower() in ("change-me", "changeme"):
        raise ValueError("is still the placeholder 'change-me' from .env.example: set a real value or leave it empty")
    return value


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number
    return parse


def _positive_number(value: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return number


def _optional_positive_number(value: str) -> Optional[float]:
    return _positive_number(value) if str(value).strip() else None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _host(value: str) -> str:
    value = value.strip()
    if not value or any(char.isspace() or char in "/?#" for char in value):
        raise ValueError(f"must be an IP address or host name, got {value!r}")
    return value


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def _database_url(value: str) -> str:
    value = value.strip()
    if value and not value.startswith(("sqlite://", "postgres://", "postgresql://", "postgresql+pool://")):
        raise ValueError("must start with sqlite:/// or postgresql://")
    return value


def _public_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _host_list(value: str) -> tuple[str, ...]:
    """Host names (``.example.com`` for a domain and its subdomains), each with an optional ``:port``."""
    hosts = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    for host in hosts:
        if any(char.isspace() or char in "/?#@\\" for char in host):
            raise ValueError(f"must be host names separated by commas, got {host!r}")
        port = host.rsplit("]:", 1)[1] if host.startswith("[") and "]:" in host else (
            host.rsplit(":", 1)[1] if host.count(":") == 1 else None)
        if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"has a port that is not a number between 1 and 65535: {host!r}")
    return hosts


def _word_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(str(word).strip().upper() for word in value if str(word).strip())
    return tuple(word.strip().upper() for word in str(value).split(",") if word.strip())


def _tunnel_mode(value: Any) -> str:
    from tunnel import parse_tunnel_mode

    return parse_tunnel_mode(value)


def _forward_url(value: str) -> str:
    """A destination URL, kept as written (a trailing slash is part of the app's route)."""
    value = value.strip()
    if value and not value.lower().startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError("must not carry a user name or password (user:password@host)")
    return value


def _forward_format(value: str) -> str:
    value = value.strip().lower().replace("normalized", "normalised")
    if value not in ("raw", "normalised"):
        raise ValueError(f"must be raw or normalised, got {value!r}")
    return value


# name: (default, parser). Defaults are strings, parsed like environment values.
SETTINGS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "HOST": ("127.0.0.1", _host),
    "PORT": ("5000", _int_between(1, 65535)),
    "DATA_DIR": ("./data", _text),
    "DATABASE_URL": ("", _database_url),
    "WEBHOOK_TOKEN": ("", _optional_secret),
    "ADMIN_TOKEN": ("", _optional_secret),
    "MAX_BODY_MB": ("64", _positive_number),
    "LOG_LEVEL": ("INFO", _log_level),
    "ALLOW_UNKNOWN_INSTANCES": ("true", _bool),
    "PUBLIC_URL": ("", _public_url),
    "ALLOWED_HOSTS": ("", _host_list),
    "LOGIN_ATTEMPTS_PER_MIN": ("10", _int_between(1, 10000)),
    "AUTH_FAILURES_STORED_PER_MIN": ("30", _int_between(0, 100000)),
    "THREADS": ("8", _int_between(1, 256)),
    "ROLE_LEASE_SECONDS": ("6", _positive_number),
    # Media downloads
    "MEDIA_DIR": ("", _text),
    "MEDIA_WORKERS": ("4", _int_between(0, 64)),
    "MEDIA_MAX_MB": ("100", _positive_number),
    "MEDIA_MAX_ATTEMPTS": ("3", _int_between(1, 50)),
    "MEDIA_RETRY_SECONDS": ("5", _positive_number),
    "MEDIA_CONNECT_TIMEOUT": ("10", _positive_number),
    "MEDIA_READ_TIMEOUT": ("60", _positive_number),
    "MEDIA_LEASE_SECONDS": ("120", _positive_number),
    "MEDIA_ALLOWED_HOSTS": ("", _host_list),
    "WA_MEDIA_BASE_URL": ("https://mmg.whatsapp.net", _public_url),
    # Tunnel (ngrok)
    "TUNNEL": ("auto", _tunnel_mode),
    "TUNNEL_PORT": ("0", _int_between(0, 65535)),
    "NGROK_AUTHTOKEN": ("", _optional_secret),
    "NGROK_DOMAIN": ("", _text),
    "NGROK_PATH": ("", _text),
    "REGISTER_WEBHOOKS": ("off", _bool),
    # Campaigns
    "CAMPAIGN_SENDER": ("on", _bool),
    "CAMPAIGN_RATE_PER_MIN": ("20", _positive_number),
    "CAMPAIGN_RATE_PER_INSTANCE_PER_MIN": ("", _optional_positive_number),
    "CAMPAIGN_MAX_CONSECUTIVE_ERRORS": ("5", _int_between(1, 1000)),
    "CAMPAIGN_DELIVERY_TIMEOUT_HOURS": ("24", _positive_number),
    "CAMPAIGN_SEND_TIMEOUT": ("30", _positive_number),
    "CAMPAIGN_OPT_OUT_WORDS": ("SAIR,PARAR,STOP,CANCELAR", _word_list),
    # Forwarding every webhook to the app you are building (forwarding.py)
    "FORWARD_URL": ("", _forward_url),
    "FORWARD_FORMAT": ("raw", _forward_format),
    "FORWARD_SECRET": ("", _optional_secret),
    "FORWARD_WORKERS": ("4", _int_between(0, 64)),
    "FORWARD_TIMEOUT": ("10", _positive_number),
    "FORWARD_RETRY_SECONDS": ("5", _positive_number),
    "FORWARD_RETRY_MAX_SECONDS": ("600", _positive_number),
    "FORWARD_GIVE_UP_HOURS": ("24", _positive_number),
    "FORWARD_MEDIA_BASE_URL": ("", _public_url),
}

# Each provider's own settings (its API's base URL and credentials, its webhook
# secrets) are declared in its module under handlers/; this is how they are parsed.
_PARSERS_BY_KIND = {"text": _text, "url": _public_url, "secret": _optional_secret}


def settings_table() -> dict[str, tuple[Any, Callable[[Any], Any]]]:
    """SETTINGS and every registered provider's settings: what load_settings parses."""
    from handlers import REGISTRY

    table = dict(SETTINGS)
    for setting in REGISTRY.settings():
        table.setdefault(setting.name, (setting.default, _PARSERS_BY_KIND[setting.kind]))
    return table


SETTINGS.update(settings_table())

# Settings whose values never appear in logs or API answers.
SECRET_SETTINGS = tuple(name for name, (_default, parse) in SETTINGS.items() if parse is _optional_secret)


def _problems_text(problems: Mapping[str, list[str]]) -> str:
    """Every bad setting in one message, so a copied .env.example is not fixed one start-up at a time."""
    parts = []
    for problem, names in problems.items():
        if len(names) == 1:
            parts.append(f"{names[0]} {problem}")
        else:
            parts.append(f"{', '.join(names)}: each {problem}")
    return "; ".join(parts)


def load_settings(override: Optional[Mapping[str, Any]] = None, environ: Optional[Mapping[str, str]] = None) -> dict:
    """Return the parsed settings.

    With ``override`` (tests), the environment is not read: what the override
    does not name keeps its embedded default. Without it, values come from
    ``environ`` (default: ``os.environ`` after loading ``.env``).
    """
    if override is None:
        if environ is None:
            from dotenv import find_dotenv, load_dotenv

            # The .env of the folder zaphook is started from; the environment wins.
            load_dotenv(find_dotenv(usecwd=True), override=False)
            environ = os.environ
        source: Mapping[str, Any] = environ
    else:
        source = override

    settings: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}  # what is wrong -> the settings it is wrong with
    for name, (default, parse) in settings_table().items():
        raw = source.get(name)
        if raw is None:
            raw = default
        if isinstance(raw, str) or parse in (_bool, _word_list):
            try:
                settings[name] = parse(raw)
            except ValueError as exc:
                problems.setdefault(str(exc), []).append(name)
        else:
            settings[name] = raw  # already typed by a test override
    if problems:
        raise ConfigError(_problems_text(problems))
    settings["DATA_DIR"] = str(Path(settings["DATA_DIR"]).expanduser().resolve())
    settings["MEDIA_DIR"] = str(Path(settings["MEDIA_DIR"] or Path(settings["DATA_DIR"]) / "media_storage")
                                .expanduser().resolve())
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = "sqlite:///" + str(Path(settings["DATA_DIR"]) / "zaphook.db")
    # Anything else in a test override (e.g. TESTING) is passed through as is.
    if override is not None:
        for name, value in override.items():
            settings.setdefault(name, value)
    return settings
