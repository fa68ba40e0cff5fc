"""What every provider's webhook registration shares: pure network, no database.

A provider's ``register`` (in its module under ``handlers/``) sets the URLs
through the provider's API and returns one result per URL set (``ok``, the
HTTP status, the provider's answer), so the caller can print exactly what
happened; nothing here raises on a network error.
"""

from __future__ import annotations

import json
from typing import Optional

from storage.http import DownloadError, Limits, entries_for_urls, open_stream, read_chunks

LIMITS = Limits(connect_timeout=10, read_timeout=30, max_bytes=256 * 1024)  # an answer, not a download


def call(method: str, url: str, headers: dict, body: dict) -> tuple[Optional[int], str]:
    """(HTTP status, the answer's text, shortened) or (None, what went wrong).

    ``url`` is built on the instance's configured API base URL: its host and
    port are the only ones allowed (a redirect elsewhere is refused).
    """
    try:
        response = open_stream(method, url, allowed=entries_for_urls([url]), limits=LIMITS, headers=headers,
                               json_body=body)
        status = response.status_code
        text = b"".join(read_chunks(response, LIMITS)).decode("utf-8", "replace")
    except DownloadError as exc:
        return None, str(exc)
    text = text.strip().replace("\n", " ")
    return status, text[:300] + ("…" if len(text) > 300 else "")


def refused_in_body(text: str) -> bool:
    """Whether a 200 answer says it failed anyway, as {"error": true} (W-API does that)."""
    try:
        answer = json.loads(text)
    except ValueError:
        return False
    return isinstance(answer, dict) and bool(answer.get("error"))
