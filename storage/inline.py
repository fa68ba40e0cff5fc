"""Media that arrives inside the webhook body (Evolution's webhook_base64 mode).

A voice note or video in base64 can be megabytes; keeping it in the event row
would bloat the database and every listing. It is written once to a blob file
named by its SHA-256 under ``DATA_DIR/inbox`` and the payload keeps a small
placeholder ``{"$blob": "inbox/<sha256>.bin", "size": n, "sha256": hex}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

from storage.files import write_atomically

BLOB_FOLDER = "inbox"
BLOB_KEY = "$blob"
# Below this size a base64 value is left in the payload (it costs nothing).
MIN_INLINE_BYTES = 1024


def extract_inline_media(payload: Any, data_dir: Path) -> list[dict]:
    """Move every ``message.base64`` body out of ``payload`` into a blob file.

    Mutates ``payload`` in place and returns the placeholders written. Values
    that are not valid base64 are left where they are.
    """
    placeholders: list[dict] = []
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            message = node.get("message")
            if isinstance(message, dict) and isinstance(message.get("base64"), str):
                placeholder = _store_blob(message["base64"], data_dir)
                if placeholder is not None:
                    message["base64"] = placeholder
                    placeholders.append(placeholder)
            stack.extend(value for value in node.values() if isinstance(value, (dict, list)))
        elif isinstance(node, list):
            stack.extend(value for value in node if isinstance(value, (dict, list)))
    return placeholders


def _store_blob(text: str, data_dir: Path) -> dict | None:
    if len(text) < MIN_INLINE_BYTES:
        return None
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None
    if not data:
        return None
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{BLOB_FOLDER}/{digest}.bin"
    target = data_dir / relative
    if not target.exists():
        write_atomically(target, data)
    return {BLOB_KEY: relative, "size": len(data), "sha256": digest}


def blob_path(data_dir: Path, placeholder: dict) -> Path | None:
    """The file behind a placeholder, only if it stays inside DATA_DIR/inbox."""
    relative = placeholder.get(BLOB_KEY) if isinstance(placeholder, dict) else None
    if not isinstance(relative, str):
        return None
    folder = (data_dir / BLOB_FOLDER).resolve()
    candidate = (data_dir / relative).resolve()
    if candidate.parent != folder:
        return None
    return candidate
