"""Ingest benchmark: the real store-and-normalise path against a no-op endpoint.

Starts three servers on 127.0.0.1, all under waitress with the same threads:
zaphook itself (`python server.py`, SQLite in a temporary DATA_DIR); a Flask
app whose only route reads the body and answers (the no-op); and "store-only",
the no-op plus one INSERT of the raw body into SQLite and a COMMIT before it
answers: the least any design that commits each event first can cost. One
load generator drives all three with the same mix of real samples (every
request a new event) at 16 concurrent keep-alive connections, and prints
events/s, p50/p99 latency, the servers' CPU per event (Linux) and the ratio
against the targets:

    throughput >= 75% of the no-op's, p99 < 25 ms, every 200 committed.

Run by hand:  .venv/bin/python bench/ingest.py [--requests 6000] [--connections 16]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from processes import cpu_seconds  # bench/processes.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
THROUGHPUT_FLOOR = 0.75
P99_CEILING_MS = 25.0
MAX_SECONDS = 300  # the whole run stops by itself

# Real samples, each request made a new event by rewriting its message id.
MIX = [
    "evolution/v1_messages.upsert_text_incoming.json",
    "evolution/v1_messages.upsert_text_outgoing_fromMe.json",
    "evolution/v1_messages.upsert_image_no_base64.json",
    "evolution/v2_messages.upsert_text_DELIVERY_ACK_ephemeral_contextInfo.json",
    "wapi/webhookReceived_image_real.json",
    "wapi/webhookReceived_text_extendedTextMessage_docsummary.json",
    "meta/dashboard_test_webhook_text.json",
    "meta/status_delivered_captured.json",
    "seeds/campaign_messages_update_read.json",
    "seeds/endpoint_receive_message.json",
]

NOOP_SERVER = """
import sys
from flask import Flask, jsonify, request
from waitress import serve
app = Flask("noop")
@app.post("/webhook/")
def receive():
    request.get_data()
    return jsonify(ok=True)
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""


# The least any design that commits each event before answering can do: the
# same no-op app plus one INSERT of the raw body and a COMMIT, on SQLite with
# zaphook's settings (WAL, synchronous=NORMAL) and writers queued on one lock.
STORE_ONLY_SERVER = """
import sqlite3, sys, threading
from flask import Flask, jsonify, request
from waitress import serve
connection = sqlite3.connect(sys.argv[3], check_same_thread=False, isolation_level=None)
connection.execute("PRAGMA journal_mode=wal")
connection.execute("PRAGMA synchronous=normal")
connection.execute("CREATE TABLE IF NOT EXISTS event (id INTEGER PRIMARY KEY, received_at TEXT, body TEXT)")
writer = threading.Lock()
app = Flask("store_only")
@app.post("/webhook/")
def receive():
    body = request.get_data()
    with writer:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO event (received_at, body) VALUES (datetime('now'), ?)",
                           (body.decode("utf-8"),))
        connection.execute("COMMIT")
    return jsonify(ok=True)
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""


def unique_bodies(count: int) -> list[bytes]:
    """``count`` request bodies cycling through MIX, each with its own message id."""
    templates = [(name, json.loads((SAMPLES / name).read_text(encoding="utf-8"))) for name in MIX]
    bodies = []
    for index in range(count):
        name, template = templates[index % len(templates)]
        payload = json.loads(json.dumps(template))
        new_id = f"BENCH{index:08d}"
        if name.startswith("evolution/"):
            payload["data"]["key"]["id"] = new_id
        elif name.startswith("wapi/"):
            payload["messageId"] = new_id
        elif name.startswith("meta/"):
            value = payload["entry"][0]["changes"][0]["value"]
            for item in value.get("messages", []) + value.get("statuses", []):
                item["id"] = f"wamid.{new_id}"
        elif name.startswith("seeds/campaign"):
            payload["data"]["key"]["id"] = new_id
        else:
            payload["messageId"] = new_id
        bodies.append(json.dumps(payload).encode("utf-8"))
    return bodies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited: {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not start")


def _drive_connection(port: int, bodies: list[bytes], latencies: list, statuses: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + MAX_SECONDS
    for body in bodies:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        connection.request("POST", "/webhook/", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        statuses.append(response.status)
    connection.close()


def _generator_process(port: int, chunks: list[list[bytes]], results) -> None:
    latencies: list = []
    statuses: list = []
    threads = [threading.Thread(target=_drive_connection, args=(port, chunk, latencies, statuses))
               for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((latencies, statuses))


def drive(port: int, bodies: list[bytes], connections: int, processes: int, server_pid: int | None = None) -> dict:
    """Send every body once over ``connections`` keep-alive connections; measure.

    With ``server_pid``, also the server's CPU time per request.
    """
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    per_connection = [bodies[i::connections] for i in range(connections)]
    groups = [per_connection[i::processes] for i in range(processes)]
    results = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_generator_process, args=(port, group, results)) for group in groups]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    latencies, statuses = [], []
    for _ in workers:
        part_latencies, part_statuses = results.get(timeout=MAX_SECONDS + 30)
        latencies += part_latencies
        statuses += part_statuses
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    latencies.sort()
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    return {
        "server_cpu_ms": None if cpu_before is None or cpu_after is None
        else (cpu_after - cpu_before) * 1000 / max(len(latencies), 1),
        "requests": len(latencies),
        "ok": sum(1 for status in statuses if status == 200),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests per server (default 6000)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of both servers")
    parser.add_argument("--generator-processes", type=int, default=2)
    parser.add_argument("--media-workers", type=int, default=None,
                        help="MEDIA_WORKERS of zaphook (default: its own default). Here the media downloads "
                             "cannot reach any CDN and fail and retry: 0 measures the webhook path alone")
    args = parser.parse_args()

    bodies = unique_bodies(args.requests)
    warmup = unique_bodies(args.requests + 300)[args.requests:]
    with tempfile.TemporaryDirectory(prefix="zaphook-bench-") as temp:
        data_dir = Path(temp) / "data"
        zaphook_port, noop_port, store_port = free_port(), free_port(), free_port()
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(zaphook_port), DATA_DIR=str(data_dir),
                   DATABASE_URL="", WEBHOOK_TOKEN="", ADMIN_TOKEN="", META_APP_SECRET="",
                   META_VERIFY_TOKEN="", THREADS=str(args.threads), LOG_LEVEL="INFO")
        if args.media_workers is not None:
            env["MEDIA_WORKERS"] = str(args.media_workers)
        with open(Path(temp) / "server.log", "w") as log:
            servers = {
                "zaphook": (zaphook_port, [str(ROOT / "server.py")]),
                "noop": (noop_port, ["-c", NOOP_SERVER, str(noop_port), str(args.threads)]),
                "store": (store_port, ["-c", STORE_ONLY_SERVER, str(store_port), str(args.threads),
                                       str(Path(temp) / "store-only.db")]),
            }
            processes = {name: subprocess.Popen([sys.executable, *argv], env=env, cwd=temp, stdout=log, stderr=log)
                         for name, (_port, argv) in servers.items()}
            results = {}
            try:
                for name, (port, _argv) in servers.items():
                    wait_until_up(port, processes[name])
                for port, _argv in servers.values():
                    drive(port, warmup, args.connections, args.generator_processes)
                for name in ("noop", "store", "zaphook"):
                    results[name] = drive(servers[name][0], bodies, args.connections, args.generator_processes,
                                          server_pid=processes[name].pid)
            finally:
                for process in processes.values():
                    process.terminate()
                    process.wait(timeout=30)
        database = sqlite3.connect(data_dir / "zaphook.db")
        committed = database.execute(
            "SELECT COUNT(*) FROM webhook_event WHERE message_id LIKE '%BENCH%' AND outcome = 'processed'"
        ).fetchone()[0] - len(warmup)
        database.close()

    noop_result, store_result, zaphook_result = results["noop"], results["store"], results["zaphook"]
    ratio = zaphook_result["per_second"] / noop_result["per_second"]
    store_ratio = store_result["per_second"] / noop_result["per_second"]
    print(f"load: {args.requests} requests per server, {args.connections} connections, "
          f"{args.threads} waitress threads, {os.cpu_count()} cores, "
          f"media workers {env.get('MEDIA_WORKERS') or 'default'}")
    for name, result in (("no-op endpoint", noop_result), ("store-only", store_result),
                         ("zaphook ingest", zaphook_result)):
        cpu = result["server_cpu_ms"]
        cpu_text = f"   server CPU {cpu:5.2f} ms/event" if cpu is not None else ""
        print(f"{name:15s} {result['per_second']:8.0f} events/s   p50 {result['p50_ms']:6.2f} ms   "
              f"p99 {result['p99_ms']:6.2f} ms   ({result['ok']}/{result['requests']} answered 200){cpu_text}")
    print(f"throughput ratio {ratio:.2f} (floor {THROUGHPUT_FLOOR:.2f}: {ratio / THROUGHPUT_FLOOR:.2f}x of it); "
          f"store-only reaches {store_ratio:.2f}")
    print(f"p99 {zaphook_result['p99_ms']:.2f} ms (ceiling {P99_CEILING_MS:.0f} ms: "
          f"{zaphook_result['p99_ms'] / P99_CEILING_MS:.2f} of it)")
    print(f"committed: {committed} of {zaphook_result['ok']} acknowledged events")
    met = ratio >= THROUGHPUT_FLOOR and zaphook_result["p99_ms"] < P99_CEILING_MS and committed == zaphook_result["ok"]
    print("targets met" if met else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
