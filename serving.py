"""How `python server.py` serves the app: two listeners on one waitress loop.

- The **local listener** (``HOST:PORT``) serves everything: the dashboard, the
  API, ``/status``, the webhooks. It is for this machine (and the LAN when
  ``HOST`` says so).
- The **tunnel listener** (``127.0.0.1:TUNNEL_PORT``, a free port by default)
  is the only address the ngrok agent forwards to. Every request it serves is
  marked in the WSGI environ as having come from the internet, under a key no
  HTTP header can produce (waitress turns headers into ``HTTP_*`` keys), so
  the request hooks let it reach the webhooks and ``/health`` only, whatever
  headers it carries or lacks, unless it proves it knows ``ADMIN_TOKEN``.

Why not one listener and the ``X-Forwarded-*`` headers the agent adds: waitress
removes them from every request whose peer is not a trusted proxy, and the
agent connects from 127.0.0.1, so the request looked local (issue 11).

Both listeners share waitress's one loop and one thread pool, and both refuse
bodies over ``MAX_BODY_MB`` in a way the provider can read: see
:class:`BoundedBodyParser`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Callable, Mapping, Optional

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import FixedStreamReceiver
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import RequestEntityTooLarge

log = logging.getLogger(__name__)

# The WSGI environ key that says which listener a request came through.
ENTRANCE = "zaphook.entrance"
LOCAL = "local"
TUNNEL = "tunnel"

# A body over MAX_BODY_MB is read and thrown away (so the client can read the
# 413 instead of a connection reset) up to this many bytes; beyond that the
# connection is closed after the 413, as waitress itself would do.
DRAIN_LIMIT_BYTES = 1024 * 1024 * 1024

# The agent is the tunnel listener's only client; it says who the real client
# was and that it came over https. One hop: a client's own X-Forwarded-For
# entries are ignored (the agent appends the real address last).
TUNNEL_PROXY_HEADERS = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}


class Entrance:
    """A WSGI app that tags each request with the listener it came through."""

    def __init__(self, app: Callable, name: str) -> None:
        self.app = app
        self.name = name

    def __call__(self, environ: dict, start_response: Callable):
        environ[ENTRANCE] = self.name
        return self.app(environ, start_response)


class _DiscardedBody:
    """A request body buffer that keeps nothing and only counts.

    Used for a body already known to be over the limit: the app answers 413
    from the headers alone, and the bytes only need to be read off the socket.
    """

    def __init__(self, already: int = 0) -> None:
        self.length = already

    def append(self, data: bytes) -> None:
        self.length += len(data)

    def __len__(self) -> int:
        return self.length

    def getfile(self) -> BytesIO:
        return BytesIO()

    def close(self) -> None:
        pass


class BoundedBodyParser(HTTPRequestParser):
    """waitress's request parser, with bodies over the app's limit handed to the app, not refused.

    Stock waitress answers a body over ``max_request_body_size`` itself, with
    a text page, before the app is called (so the request is never recorded),
    and closes the connection while the client is still sending, which resets
    it: the client usually never reads the 413. Here the app is called with
    the declared size and an empty body (it answers its own JSON 413 and
    records the request), and the body is drained and discarded so the
    connection stays healthy. Past :data:`DRAIN_LIMIT_BYTES` nothing more is
    read: the app still answers and records, then the connection is closed.
    """

    def __init__(self, adj: Adjustments, body_limit: Optional[int]) -> None:
        super().__init__(adj)
        self.body_limit = body_limit
        self.body_discarded = False

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if (self.body_limit is not None and not self.chunked
                and self.body_limit < self.content_length < DRAIN_LIMIT_BYTES):
            self.body_rcv = FixedStreamReceiver(self.content_length, _DiscardedBody())
            self.body_discarded = True

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if isinstance(self.error, RequestEntityTooLarge):
            # Past the drain limit: let the app answer (and record) from the headers, then close.
            self.error = None
            self.body_rcv = None
            self.completed = True
            self.headers["CONNECTION"] = "close"
            if self.chunked:
                self.headers["CONTENT_LENGTH"] = str(self.body_bytes_received)
        elif (self.chunked and not self.body_discarded and self.body_limit is not None
              and self.body_rcv is not None and self.body_bytes_received > self.body_limit):
            kept = self.body_rcv.buf
            self.body_rcv.buf = _DiscardedBody(len(kept))
            kept.close()
            self.body_discarded = True
        return consumed


class _Channel(HTTPChannel):
    def parser_class(self, adj: Adjustments) -> BoundedBodyParser:  # called by waitress as self.parser_class(adj)
        return BoundedBodyParser(adj, self.server.body_limit)

    def writable(self) -> bool:
        """Poll the socket for writing only when the loop has something to do there.

        While a task runs, waitress 3.0.2's HTTPChannel.writable() says yes
        whenever the buffer holds bytes, but the task itself sends what it
        writes (write_soon flushes at ``send_bytes``, 1 by default) under the
        buffer's lock, and handle_write skips a locked buffer. So while a task
        writes, select() returns at once and the loop spins, holding the GIL
        that the task's thread (and the SQLite writer) needs. Here the loop
        leaves a running task's socket alone, except when the task waits for
        it (past ``outbuf_high_watermark``, write_soon waits for the loop to
        drain the buffer) or the channel is closing; service() pulls the
        trigger when the task ends, and the loop sends whatever is left.
        """
        if self.will_close or self.close_when_flushed:
            return True
        if not self.total_outbufs_len:
            return False
        if self.requests:
            return self.total_outbufs_len > self.adj.outbuf_high_watermark
        return True


class _Listener(TcpWSGIServer):
    channel_class = _Channel

    def __init__(self, application: Callable, *, socket_map: dict, dispatcher: ThreadedTaskDispatcher,
                 adj: Adjustments, body_limit: Optional[int]) -> None:
        self.body_limit = body_limit
        super().__init__(application, map=socket_map, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])


@dataclass
class Listeners:
    """The local and tunnel listeners, served by one waitress loop and thread pool."""

    local: _Listener
    tunnel: _Listener
    socket_map: dict = field(repr=False)
    dispatcher: ThreadedTaskDispatcher = field(repr=False)

    @property
    def local_url(self) -> str:
        return _url(self.local.effective_host, self.local.effective_port)

    @property
    def tunnel_url(self) -> str:
        return _url(self.tunnel.effective_host, self.tunnel.effective_port)

    def run(self) -> None:
        """Serve until KeyboardInterrupt (or SystemExit) reaches the loop."""
        self.local.run()

    def run_once(self, timeout: float) -> None:
        """One pass of the loop (for a loop driven by a test's thread)."""
        self.local.asyncore.loop(timeout=timeout, map=self.socket_map, count=1)

    def close(self) -> None:
        self.dispatcher.shutdown()
        self.local.asyncore.close_all(self.socket_map)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_listeners(app: Callable, settings: Mapping[str, Any], **adjustments: Any) -> Listeners:
    """Bind both listeners (OSError when a port is taken) without serving yet."""
    body_limit = int(settings["MAX_CONTENT_LENGTH"]) if settings.get("MAX_CONTENT_LENGTH") else None
    common = dict(threads=settings["THREADS"], ident="zaphook", max_request_body_size=DRAIN_LIMIT_BYTES,
                  **adjustments)
    socket_map: dict = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(common["threads"])
    # Proxy headers stay visible on the local listener: a request that came
    # through some proxy of the user's own is then not taken for a local one.
    local_adj = Adjustments(host=settings["HOST"], port=settings["PORT"], clear_untrusted_proxy_headers=False,
                            **common)
    tunnel_adj = Adjustments(host="127.0.0.1", port=settings.get("TUNNEL_PORT") or 0,
                             trusted_proxy="127.0.0.1", trusted_proxy_count=1,
                             trusted_proxy_headers=TUNNEL_PROXY_HEADERS, clear_untrusted_proxy_headers=True,
                             **common)
    local = _Listener(Entrance(app, LOCAL), socket_map=socket_map, dispatcher=dispatcher, adj=local_adj,
                      body_limit=body_limit)
    try:
        tunnel = _Listener(Entrance(app, TUNNEL), socket_map=socket_map, dispatcher=dispatcher, adj=tunnel_adj,
                           body_limit=body_limit)
    except OSError:
        dispatcher.shutdown()
        local.asyncore.close_all(socket_map)
        raise
    return Listeners(local, tunnel, socket_map, dispatcher)


_STOPPED = threading.Event()
_CONSOLE_HANDLERS: list = []


def stop_like_ctrl_c() -> None:
    """Make the ways a service manager or a console stops a process end the server as Ctrl+C does.

    SIGTERM is what systemd, Docker and most service managers send; on Windows
    CTRL_BREAK arrives as SIGBREAK, and closing the console window sends
    CTRL_CLOSE_EVENT, which Windows follows with a kill after about 5 s. Each
    one raises KeyboardInterrupt in the main thread, where the waitress loop
    runs, so the serving code's ``finally`` stops accepting, gives downloads in
    flight back, closes the tunnel and logs "stopping" / "stopped". Call from
    the main thread.
    """
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, interrupt)
    if sys.platform == "win32":
        _stop_on_console_close()


def _stop_on_console_close() -> None:  # pragma: no cover - Windows only
    import _thread
    import ctypes

    close_events = {2, 5, 6}  # CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT

    @ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint)
    def handler(event: int) -> int:
        if event not in close_events:
            return 0  # Ctrl+C and Ctrl+Break: Python's own handlers
        _thread.interrupt_main()
        _STOPPED.wait(4.5)  # returning lets Windows end the process: give the cleanup its seconds first
        return 1

    _CONSOLE_HANDLERS.append(handler)  # keep the callback alive
    ctypes.windll.kernel32.SetConsoleCtrlHandler(handler, True)


def mark_stopped() -> None:
    """The serving code has cleaned up: a console-close handler waiting for it may let Windows go on."""
    _STOPPED.set()
