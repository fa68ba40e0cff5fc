"""Helpers the tests share: the real provider samples under tests/samples, and the app served over HTTP."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

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
