"""Where a downloaded media file goes, and a name for it that every filesystem accepts.

Files land in
``<media_dir>/cliente_<client id>/instance_<the provider's instance id>/<media type>/<name>``,
as the original MultiChat system filed them (e.g.
``cliente_2/instance_3B6XIW-ZTS923-GEAY6V/audio/wapi_<message id>_<YYYYmmdd_HHMMSS>.ogg``),
the name being ``<provider>_<message id>_<YYYYmmdd_HHMMSS><ext>`` or, for a
document that came with its own file name, ``<provider>_<message id>_<name>``.
The instance's folder is named after the provider's id for it (a W-API
instance id, an Evolution instance name, a Meta phone_number_id), not after
zaphook's row id: see :func:`instance_folder_name`.
Everything in a name comes from a webhook payload, that is from a stranger, so
each piece goes through :func:`safe_component` and :func:`media_path` checks
that the result cannot leave ``media_dir``. The names are valid on Linux,
macOS and Windows, so a media folder can be copied to any of them.

Where a file was stored is kept on its row (``MediaFile.local_path``): a file
is never looked for again by recomputing its path, so files filed under an
older layout (``instance_<row id>``) stay where their rows say.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})

# Used when neither the mimetype table nor the standard library knows the type.
DEFAULT_EXTENSIONS = {
    "image": ".jpg",
    "video": ".mp4",
    "audio": ".ogg",
    "sticker": ".webp",
    "document": ".bin",
}
FALLBACK_EXTENSION = ".bin"

# The mimetypes WhatsApp and its providers send. Checked before the standard
# library, whose answers differ between Python versions and machines (it maps
# audio/ogg to ".oga" and may read /etc/mime.types) and which knows nothing of
# audio/amr or APKs.
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/svg+xml": ".svg",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
    "video/3gpp2": ".3g2",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/mpeg": ".mpeg",
    "video/x-msvideo": ".avi",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/x-aac": ".aac",
    "audio/amr": ".amr",
    "audio/3gpp": ".3gp",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/webm": ".webm",
    "audio/flac": ".flac",
    "application/pdf": ".pdf",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow": ".ppsx",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.oasis.opendocument.presentation": ".odp",
    "application/vnd.oasis.opendocument.graphics": ".odg",
    "application/rtf": ".rtf",
    "text/rtf": ".rtf",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "text/vcard": ".vcf",
    "text/x-vcard": ".vcf",
    "application/json": ".json",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/vnd.rar": ".rar",
    "application/x-rar-compressed": ".rar",
    "application/x-7z-compressed": ".7z",
    "application/gzip": ".gz",
    "application/x-tar": ".tar",
    "application/epub+zip": ".epub",
    "application/vnd.android.package-archive": ".apk",
}

# Say nothing about the content: the media type's default is a better guess.
UNINFORMATIVE_MIMETYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/unknown"})

# Only the types built into this Python: no /etc/mime.types, no Windows registry.
_BUILTIN_TYPES = mimetypes.MimeTypes(filenames=())

_MIMETYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_SANE_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")

# Windows refuses these, and the device names below, in any file name.
WINDOWS_FORBIDDEN = frozenset('<>:"/\\|?*')
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{device}{digit}" for device in ("COM", "LPT") for digit in "0123456789¹²³"}
)
# Characters stripped from both ends of a name: Windows drops trailing dots
# and spaces, a leading dot hides a file, and underscores there are leftovers.
_STRIP = ". _"

# A name's limit in UTF-8 bytes: Linux allows 255, Windows and macOS 255 UTF-16
# units (never more than the UTF-8 bytes); the margin covers macOS storing
# names decomposed (NFD).
MAX_NAME_BYTES = 200

PROVIDER_LIMIT = 32
MESSAGE_ID_LIMIT = 80
INSTANCE_PREFIX = "instance_"
INSTANCE_FOLDER_LIMIT = len(INSTANCE_PREFIX) + 80  # the prefix and up to 80 characters of the id
# "-" and 8 hex digits of a SHA-256: what tells apart ids that sanitise alike.
HASH_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
DOCUMENT_NAME_LIMIT = 100
UNKNOWN_TIME = "unknown-time"
TIME_FORMAT = "%Y%m%d_%H%M%S"


def extension_for(mimetype: Optional[str], media_type: str) -> str:
    """The extension (with its dot) for a file of ``mimetype``; the media type's default when unknown."""
    essence = _mimetype_essence(mimetype)
    if essence is not None and essence not in UNINFORMATIVE_MIMETYPES:
        known = EXTENSIONS.get(essence)
        if known is not None:
            return known
        guessed = _BUILTIN_TYPES.guess_extension(essence, strict=False)
        if guessed is not None and _SANE_EXTENSION.fullmatch(guessed):
            return guessed.lower()
    return DEFAULT_EXTENSIONS.get(media_type, FALLBACK_EXTENSION)


def _mimetype_essence(mimetype: Optional[str]) -> Optional[str]:
    """``type/subtype`` in lower case without parameters, or None for anything else."""
    if not isinstance(mimetype, str):
        return None
    essence = mimetype.split(";", 1)[0].strip().lower()
    return essence if _MIMETYPE.fullmatch(essence) else None


def safe_component(text: Optional[str], limit: int = 100, fallback: str = "file") -> str:
    """``text`` made into one path component valid on Linux, macOS and Windows.

    Keeps letters (any script), combining marks, digits, ``.``, ``-`` and
    ``_``; drops control and format characters (NUL, bidi overrides, zero
    width joiners); turns each run of whitespace or other characters into one
    ``_``. Only what follows the last ``/`` or ``\\`` is kept, so a path in a
    payload gives its file name. The result has at most ``limit`` characters
    and :data:`MAX_NAME_BYTES` UTF-8 bytes (a sane extension survives the
    cut), never starts or ends with a dot, space or underscore, and gets a
    ``_`` in front when Windows would take it for a device (``CON``,
    ``lpt1.pdf``). ``fallback`` is returned, unchecked, when nothing is left.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if not isinstance(text, str):
        return fallback
    text = unicodedata.normalize("NFC", text)
    text = re.split(r"[/\\]", text)[-1]
    name = _clean(text).strip(_STRIP)
    name = _cut(name, limit, MAX_NAME_BYTES)
    if _is_reserved(name):
        name = _cut("_" + name, limit, MAX_NAME_BYTES)
    return name or fallback


def _clean(text: str) -> str:
    """Keep the allowed characters, drop invisible ones, replace the rest (one ``_`` per run)."""
    kept: list[str] = []
    replacing = False
    for char in text:
        category = unicodedata.category(char)
        if char in "-._" or category[0] in "LMN":
            kept.append(char)
            replacing = False
        elif category[0] == "C" and not char.isspace():
            continue  # controls, bidi and other format characters, surrogates, unassigned
        elif not replacing:
            kept.append("_")
            replacing = True
    return "".join(kept)


def _cut(name: str, max_chars: int, max_bytes: int) -> str:
    """``name`` shortened to fit both limits, at the end of its stem so a sane extension stays."""
    if _fits(name, max_chars, max_bytes):
        return name
    stem, extension = _split_extension(name)
    if not stem or not _fits(extension, max_chars - 1, max_bytes - 1):
        stem, extension = name, ""
    while stem and not _fits(stem + extension, max_chars, max_bytes):
        stem = stem[:-1]
    stem = stem.rstrip(_STRIP)  # the start is never cut, so a "_" put before a device name stays
    return stem + extension if stem else ""


def _fits(name: str, max_chars: int, max_bytes: int) -> bool:
    return len(name) <= max_chars and len(name.encode("utf-8", "surrogatepass")) <= max_bytes


def _split_extension(name: str) -> tuple[str, str]:
    """``("report", ".pdf")`` when the name ends with a sane extension, else ``(name, "")``."""
    dot = name.rfind(".")
    if dot > 0 and _SANE_EXTENSION.fullmatch(name[dot:]):
        return name[:dot], name[dot:]
    return name, ""


def _is_reserved(name: str) -> bool:
    """Whether Windows takes ``name`` for a device: the part before the first dot, any case."""
    return name.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_RESERVED


def media_file_name(provider: str, message_id: str, media_type: str, mimetype: Optional[str],
                    timestamp: Optional[datetime], original_name: Optional[str] = None) -> str:
    """The file name for one media file of one message.

    ``<provider>_<message id>_<YYYYmmdd_HHMMSS><ext>``, the time in UTC (a
    naive ``timestamp`` is taken as UTC; without one the time part is
    ``unknown-time``). A document with an ``original_name`` is
    ``<provider>_<message id>_<its sanitised name>``, keeping the name's own
    extension when it is a sane one (1 to 10 ASCII letters or digits, even
    when it disagrees with the mimetype) and otherwise adding the mimetype's;
    a name with nothing usable left falls back to the timestamp form. A
    message id that sanitising changed (or cut) gets ``-`` and 8 hex digits of
    its SHA-256, so ids that sanitise alike still get different names.
    """
    provider_part = _cut(safe_component(provider, PROVIDER_LIMIT, fallback=""), PROVIDER_LIMIT, PROVIDER_LIMIT)
    prefix = f"{provider_part or 'provider'}_{_safe_message_id(message_id)}_"
    extension = extension_for(mimetype, media_type)
    if media_type == "document" and original_name:
        name = safe_component(original_name, DOCUMENT_NAME_LIMIT, fallback="")
        if name:
            if not _split_extension(name)[1]:
                name = _cut(name, DOCUMENT_NAME_LIMIT - len(extension), MAX_NAME_BYTES) + extension
            room = MAX_NAME_BYTES - len(prefix.encode("utf-8"))
            name = _cut(name, DOCUMENT_NAME_LIMIT, room)
            if name:
                return prefix + name
    return f"{prefix}{_time_part(timestamp)}{extension}"


def _safe_message_id(message_id: Optional[str]) -> str:
    """The id as a name part, with a hash of the original when sanitising changed it.

    Slashes are replaced rather than cut at: base64 ids may contain them.
    """
    raw = message_id if isinstance(message_id, str) else ""
    text = raw.replace("/", "_").replace("\\", "_")
    safe = safe_component(text, MESSAGE_ID_LIMIT, fallback="")
    safe = _cut(safe, MESSAGE_ID_LIMIT, MESSAGE_ID_LIMIT)  # ASCII-sized, whatever the script
    if safe == raw and safe:
        return safe
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else f"id-{digest}"


def instance_folder_name(external_id: str) -> str:
    """The folder of an instance's files: ``instance_<the provider's instance id>``.

    An id that is already one portable name is used as it is
    (``instance_3B6XIW-ZTS923-GEAY6V``, ``instance_CON``: the prefix keeps a
    device name from being one). Any other id is made portable by the
    :func:`safe_component` rules, slashes and backslashes replaced rather than
    cut at, at most :data:`INSTANCE_FOLDER_LIMIT` characters, and gets ``-``
    and 8 hex digits of the SHA-256 of the id as it came, so two ids never
    share a folder: ``minha/instância`` is ``instance_minha_instância-<hash>``
    while ``minha_instância`` is itself. An id with nothing usable left is
    ``instance-<hash>``. A safe id that already ends like such a hash is
    hashed too, so it cannot take the folder of an id that sanitised into it.

    Case is kept as the provider wrote it: two ids that differ only in case
    would share a folder on a filesystem that ignores case (Windows, macOS).
    """
    if not isinstance(external_id, str):
        raise ValueError(f"bad instance id {external_id!r}")
    as_is = INSTANCE_PREFIX + external_id
    flat = external_id.replace("/", "_").replace("\\", "_")
    safe = safe_component(INSTANCE_PREFIX + flat, INSTANCE_FOLDER_LIMIT, fallback="")
    if safe == as_is and not HASH_SUFFIX.search(external_id):
        return safe
    digest = hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    suffix = f"-{digest}"
    stem = _cut(safe, INSTANCE_FOLDER_LIMIT - len(suffix), MAX_NAME_BYTES - len(suffix))
    return stem.rstrip("-") + suffix


def _time_part(timestamp: Optional[datetime]) -> str:
    if timestamp is None:
        return UNKNOWN_TIME
    if timestamp.tzinfo is not None:
        timestamp = timestamp.astimezone(timezone.utc)
    return timestamp.strftime(TIME_FORMAT)


def media_path(media_dir: Path, client_id: int, instance_external_id: str, media_type: str,
               file_name: str) -> Path:
    """``media_dir/cliente_<client>/instance_<instance>/<media_type>/<file_name>``, proven to stay inside.

    ``instance_external_id`` is the provider's id for the instance
    (``Instance.external_id``); its folder is :func:`instance_folder_name`.
    Refuses (ValueError) an unknown media type, a client id that is not an
    integer, an instance id that is not text, a file name that is not one
    portable component, and a result that resolves (symbolic links followed)
    outside ``media_dir``. The path returned is built on ``media_dir`` as
    given, not resolved, so ``relative_to(media_dir)`` works on it.
    """
    if media_type not in MEDIA_TYPES:
        raise ValueError(f"unknown media type {media_type!r}")
    if isinstance(client_id, bool) or not isinstance(client_id, int) or client_id < 0:
        raise ValueError(f"bad client id {client_id!r}")
    instance_folder = instance_folder_name(instance_external_id)
    _check_component(instance_folder)
    _check_component(file_name)
    media_dir = Path(media_dir)
    path = media_dir / f"cliente_{client_id}" / instance_folder / media_type / file_name
    root = media_dir.resolve()
    resolved = path.resolve()
    if resolved == root or not resolved.is_relative_to(root) or os.path.commonpath([root, resolved]) != str(root):
        raise ValueError(f"{path} is not inside {media_dir}")
    return path


def _check_component(name: str) -> None:
    """Raise ValueError unless ``name`` is one file name valid on Linux, macOS and Windows."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise ValueError(f"bad file name {name!r}")
    bad = [char for char in name
           if char in WINDOWS_FORBIDDEN or unicodedata.category(char)[0] == "C"]
    if bad:
        raise ValueError(f"file name {name!r} has forbidden characters {''.join(sorted(set(bad)))!r}")
    if name[-1] in ". " or _is_reserved(name):
        raise ValueError(f"file name {name!r} is not valid on Windows")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"file name {name!r} is too long")
