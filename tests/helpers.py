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
    """An app served by waitress on a free port of 127.0.0.1, in a thread, as `python server.py` serves it.

    waitress 3.0.2's ``close()`` from another thread races with the loop's
    select() (EBADF kills the loop thread: Pylons/waitress#468, fixed after
    that release). So the loop runs one short pass at a time and stops on a
    flag; the sockets are closed only once it has stopped.
    """

    def __init__(self, app, threads: int = 16) -> None:
        from waitress import create_server

        self.app = app
        self.server = create_server(app, host="127.0.0.1", port=0, threads=threads, asyncore_loop_timeout=0.05)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="served-app", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        server = self.server
        while not self._stop.is_set():
            server.asyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=server._map, count=1)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self.server.task_dispatcher.shutdown()
        self.server.asyncore.close_all(self.server._map)
