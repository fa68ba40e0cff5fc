"""Real HTTP servers on 127.0.0.1 standing in for the WhatsApp CDN and the providers.

A route is a function from the recorded request to a :class:`Reply`; a reply's
body may be an iterator, so a test can stream slowly, stall, or cut a
download off half-way. Every request is recorded for the test to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Optional, Union
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    at: float

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Union[bytes, Iterable[bytes]] = b""
    headers: dict = field(default_factory=dict)
    # Announce this Content-Length (None: the length of a bytes body, or none for a stream).
    content_length: Optional[int] = None


def json_reply(data, status: int = 200) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


def file_reply(data: bytes, content_type: str = "application/octet-stream") -> Reply:
    return Reply(200, data, {"Content-Type": content_type})


def trickle(data: bytes, chunk: int, pause: float) -> Iterable[bytes]:
    """Send ``data`` in pieces with a pause before each one (a slow network)."""
    for start in range(0, len(data), chunk):
        time.sleep(pause)
        yield data[start:start + chunk]


def trickle_until_released(data: bytes, chunk: int, pause: float, released) -> Iterable[bytes]:
    """Like trickle, but the last piece waits for ``released`` (a threading.Event): a download
    that is still arriving for as long as the test needs it to be."""
    last = max(0, (len(data) - 1) // chunk * chunk)  # where the final piece starts
    for start in range(0, last, chunk):
        time.sleep(pause)
        yield data[start:start + chunk]
    released.wait(60)
    yield data[last:]


Route = Callable[[Recorded], Reply]


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 with routes a test sets."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Recorded] = []
        self.released = threading.Event()  # set at close: stalled replies give up then
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(self.command, parts.path, parse_qs(parts.query),
                                    {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                outer.requests.append(recorded)
                route = outer.routes.get((self.command, parts.path)) or outer.routes.get((self.command, "*"))
                reply = route(recorded) if route else Reply(404, b"not found")
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, (bytes, bytearray)):
                    length = reply.content_length if reply.content_length is not None else len(reply.body)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                if reply.content_length is not None:
                    self.send_header("Content-Length", str(reply.content_length))
                    self.end_headers()
                    for piece in reply.body:
                        self.wfile.write(piece)
                        self.wfile.flush()
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in reply.body:
                    if piece:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, handler: Route) -> None:
        self.routes[(method, path)] = handler

    def serve(self, method: str, path: str, reply: Reply) -> None:
        self.route(method, path, lambda _request: reply)

    def serve_sequence(self, method: str, path: str, replies: list[Callable[[], Reply]]) -> None:
        """Answer the n-th request with the n-th reply (the last one repeats)."""
        count = {"n": 0}

        def handler(_request: Recorded) -> Reply:
            index = min(count["n"], len(replies) - 1)
            count["n"] += 1
            return replies[index]()
        self.route(method, path, handler)

    def stalled(self, first: bytes = b"") -> Iterable[bytes]:
        """A body that sends ``first`` and then nothing more (until the server is closed)."""
        if first:
            yield first
        self.released.wait(60)

    def hits(self, method: str, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.method == method and request.path == path]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
