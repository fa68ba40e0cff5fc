"""The serving loop: when waitress's loop polls a connection, and that big answers still flow."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import requests

from serving import _Channel, build_listeners

WATERMARK = 64 * 1024


def _channel(*, buffered: int, tasks: int, closing: bool = False) -> SimpleNamespace:
    return SimpleNamespace(will_close=closing, close_when_flushed=False, total_outbufs_len=buffered,
                           requests=[object()] * tasks, adj=SimpleNamespace(outbuf_high_watermark=WATERMARK))


# (bytes buffered, tasks running, closing) -> whether the loop polls the socket for writing
@pytest.mark.parametrize("buffered, tasks, closing, polled", [
    (0, 0, False, False),            # nothing to send
    (0, 1, False, False),
    (100, 0, False, True),           # the task is done: the loop sends the rest
    (100, 1, False, False),          # a task is writing: it sends its own bytes, the loop keeps away
    (WATERMARK, 1, False, False),
    (WATERMARK + 1, 1, False, True),  # the task waits for the loop to drain the buffer
    (0, 1, True, True),              # closing: the loop must run handle_write to close
    (100, 1, True, True),
])
def test_the_loop_polls_a_connection_for_writing_only_when_it_has_work_there(buffered, tasks, closing, polled):
    assert bool(_Channel.writable(_channel(buffered=buffered, tasks=tasks, closing=closing))) is polled


def _streaming_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(80):  # 5 MiB in 64 KiB pieces, far past the buffer's watermark
        yield b"x" * (64 * 1024)


def test_an_answer_far_bigger_than_the_buffer_still_reaches_a_slow_reader():
    listeners = build_listeners(_streaming_app, {"HOST": "127.0.0.1", "PORT": 0, "THREADS": 2},
                                outbuf_high_watermark=WATERMARK, asyncore_loop_timeout=0.05)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            listeners.run_once(timeout=0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        received = 0
        with requests.get(listeners.local_url + "/", stream=True, timeout=10) as response:
            for piece in response.iter_content(256 * 1024):
                received += len(piece)
                time.sleep(0.005)  # a reader slower than the writer: the buffer fills up
    finally:
        stop.set()
        thread.join(timeout=5)
        listeners.close()
    assert received == 80 * 64 * 1024
