"""Helpers the tests share: the real provider samples under tests/samples, and the app served over HTTP."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from flask.testing import FlaskClient

SAMPLES = Path(__file__).parent / "samples"


def sample_path(name: str) -> Path:
    return SAMPLES / name


def load_sample(name: str) -> dict:
    """A real provider payload from tests/samples, e.g. "meta/fixture_image.json"."""
    return json.loads(sample_path(name).read_text(encoding="utf-8"))


def all_samples() -> list[str]:
    return sorted(
        str(path.relative_to(SAMPLES)).replace(os.sep, "/")
        for path in SAMPLES.rglob("*.json")
    )


WEBHOOK_PREFIXES = ("/webhook", "/api/webhooks/")


def wait_until(check, what: str, timeout: float = 20.0):
    """Poll ``check`` until it returns something true, and return that (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


class AppliedWebhooksClient(FlaskClient):
    """Flask's test client, whose webhook posts wait until their event is applied (``?wait=1``).

    A webhook is acknowledged once its raw row is stored; the applier makes
    its chats and messages a moment later. Tests that read those right after
    posting ask to wait, with a bound (views/webhooks.WAIT_SECONDS); a test
    of the acknowledgement itself passes ``wait=0``.
    """

    def open(self, *args, **kwargs):
        path = args[0] if args and isinstance(args[0], str) else kwargs.get("path", "")
        method = kwargs.get("method", "GET")
        if method == "POST" and path.startswith(WEBHOOK_PREFIXES) and "wait=" not in path:
            query = kwargs.get("query_string")
            if query is None and "?" in path:
                path = wait_applied(path)
                args = (path, *args[1:]) if args else args
                kwargs.update({} if args else {"path": path})
            elif query is None:
                kwargs["query_string"] = {"wait": "1"}
            elif isinstance(query, dict) and "wait" not in query:
                kwargs["query_string"] = {"wait": "1", **query}
            elif isinstance(query, (str, bytes)) and b"wait=" not in (query if isinstance(query, bytes) else query.encode()):
                kwargs["query_string"] = ("wait=1&" if isinstance(query, str) else b"wait=1&") + query
        return super().open(*args, **kwargs)


def wait_applied(url: str) -> str:
    """A webhook URL (served app) whose answer comes once the event is applied: ``?wait=1`` added."""
    return url + ("&" if "?" in url else "?") + "wait=1"


class ServedApp:
    """An app served as `python server.py` serves it (serving.build_listeners), in a thread.

    ``url`` is the local listener, ``tunnel_url`` the one the ngrok agent forwards to.

    waitress 3.0.2's ``close()`` from another thread races with the loop's
    select() (EBADF kills the loop thread: Pylons/waitress#468, fixed after
    that release). So the loop runs one short pass at a time and stops on a
    flag; the sockets are closed only once it has stopped.
    """

    def __init__(self, app, threads: int = 16) -> None:
        from serving import build_listeners

        self.app = app
        settings = dict(app.config, HOST="127.0.0.1", PORT=0, THREADS=threads)
        self.listeners = build_listeners(app, settings, asyncore_loop_timeout=0.05)
        self.url = self.listeners.local_url
        self.tunnel_url = self.listeners.tunnel_url
        self.applier = app.extensions["zaphook.applier"]
        self.applier.start()  # as server.serve() does
        self.forwarder = app.extensions["zaphook.forwarding"]
        self.forwarder.start(self.url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="served-app", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.listeners.run_once(timeout=0.05)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self.listeners.close()
        self.applier.stop()
        self.forwarder.stop()
