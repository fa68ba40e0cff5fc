"""Ingest benchmark: zaphook's acknowledgement and its whole pipeline against a no-op endpoint.

Starts servers on 127.0.0.1 under waitress with the same threads: zaphook
itself (`python server.py`, SQLite in a temporary DATA_DIR), a Flask app whose
only route reads the body and answers (the no-op, the reference), and, with
--store-only, the no-op plus one INSERT and COMMIT of the raw body under
zaphook's waitress (the least any design that commits each event first can
cost: the ceiling of the acknowledgement ratio), and with --ack-only zaphook
with its applier never started (its acknowledgement alone: the most its own
acknowledgement ratio can be, wherever the applier runs). One load generator drives
them in rounds that alternate between the servers, each request a new event
from a mix of real samples, over 16 keep-alive connections, and prints per
round and as the median (with the spread) of the rounds:

- the acknowledgement rate (answers per second while the load runs) and the
  p50/p99 of every server's answers;
- zaphook's **full** rate: events acknowledged *and* applied per second,
  counting the time the applier takes to drain its backlog after the load
  stops;
- the applier's lag (stored -> applied) p50/p99, from the rows themselves;
- the ratios to the no-op of the same round, against the targets:

    acknowledgement >= 0.75, full >= 0.65, lag p99 <= 100 ms,
    zaphook p99 <= 2x the no-op's p99, every 200 applied.

Run by hand:  .venv/bin/python bench/ingest.py [--rounds 3] [--requests 4000] [--connections 16]
              [--store-only] [--ack-only]
              [--baseline ../zaphook-main]  (another checkout, measured in the same rounds)
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
# zaphook's settings (WAL, synchronous=NORMAL) and writers queued on one lock,
# under waitress as zaphook serves it (its loop does not spin while a task
# writes: serving._Channel.writable; stock waitress costs this server 20%).
STORE_ONLY_SERVER = """
import sqlite3, sys, threading
sys.path.insert(0, sys.argv[4])
import waitress.channel
from serving import _Channel
waitress.channel.HTTPChannel.writable = _Channel.writable
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


# zaphook with its applier never started: what its acknowledgement alone costs (the most the
# acknowledgement ratio can be, wherever the applier runs). A benchmark-only way to start it:
# `python server.py` itself always starts the applier.
ACK_ONLY_SERVER = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
import applier
applier.Applier.start = lambda self: None
sys.argv = [sys.argv[1] + "/server.py"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def unique_bodies(count: int, prefix: str = "BENCH") -> list[bytes]:
    """``count`` request bodies cycling through MIX, each with its own message id (``prefix`` + number)."""
    templates = [(name, json.loads((SAMPLES / name).read_text(encoding="utf-8"))) for name in MIX]
    bodies = []
    for index in range(count):
        name, template = templates[index % len(templates)]
        payload = json.loads(json.dumps(template))
        new_id = f"{prefix}{index:08d}"
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


ACK_FLOOR = 0.75
FULL_FLOOR = 0.65
LAG_P99_CEILING_MS = 100.0
P99_FACTOR_CEILING = 2.0


def drain_seconds(port: int) -> float:
    """How long until zaphook's applier has nothing left (its /status backlog is 0)."""
    started = time.perf_counter()
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/status")
        pending = json.loads(connection.getresponse().read())["applier"]["pending"]
        connection.close()
        if pending == 0:
            return time.perf_counter() - started
        if time.perf_counter() - started > MAX_SECONDS:
            raise SystemExit(f"the applier still had {pending} events after {MAX_SECONDS} s")
        time.sleep(0.01)


def lag_of_round(database: Path, prefix: str) -> tuple[float, float, int, int]:
    """(lag p50 ms, lag p99 ms, rows applied, rows acknowledged) of one round's events, from the rows."""
    connection = sqlite3.connect(database)
    rows = connection.execute(
        "SELECT (julianday(processed_at) - julianday(received_at)) * 86400000.0, outcome FROM webhook_event "
        "WHERE message_id LIKE ?", (f"%{prefix}%",)).fetchall()
    connection.close()
    lags = sorted(lag for lag, outcome in rows if outcome == "processed" and lag is not None)
    if not lags:
        return float("nan"), float("nan"), 0, len(rows)
    return statistics.median(lags), lags[max(0, int(len(lags) * 0.99) - 1)], len(lags), len(rows)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000, help="requests per server and round (default 4000)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of every server")
    parser.add_argument("--generator-processes", type=int, default=2)
    parser.add_argument("--store-only", action="store_true", help="also measure the store-only server")
    parser.add_argument("--ack-only", action="store_true",
                        help="also measure zaphook with its applier stopped (its acknowledgement alone)")
    parser.add_argument("--media-workers", type=int, default=0,
                        help="MEDIA_WORKERS of zaphook (default 0: the samples' media cannot be fetched here, "
                             "and failing downloads would measure retries, not the webhook path)")
    parser.add_argument("--baseline", type=Path,
                        help="another zaphook checkout (a git worktree of an older commit) measured in the same "
                             "rounds: a before/after comparison that the machine's load affects alike")
    args = parser.parse_args()

    zaphooks = {"zaphook": ROOT}
    if args.baseline:
        zaphooks["baseline"] = args.baseline.resolve()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="zaphook-bench-") as temp:
        data_dirs = {name: Path(temp) / ("data" if name == "zaphook" else name) for name in zaphooks}
        ports = {name: free_port() for name in (*zaphooks, "noop", "store", "ack-only")}
        env = dict(os.environ, HOST="127.0.0.1", DATABASE_URL="", WEBHOOK_TOKEN="", ADMIN_TOKEN="", META_APP_SECRET="",
                   META_VERIFY_TOKEN="", THREADS=str(args.threads), LOG_LEVEL="WARNING", TUNNEL="off",
                   MEDIA_WORKERS=str(args.media_workers), CAMPAIGN_SENDER="off")
        servers = {"zaphook": [str(ROOT / "server.py")],
                   "noop": ["-c", NOOP_SERVER, str(ports["noop"]), str(args.threads)]}
        if args.store_only:
            servers["store"] = ["-c", STORE_ONLY_SERVER, str(ports["store"]), str(args.threads),
                                str(Path(temp) / "store-only.db"), str(ROOT)]
        if args.ack_only:
            servers["ack-only"] = ["-c", ACK_ONLY_SERVER, str(ROOT)]
            data_dirs["ack-only"] = Path(temp) / "ack-only"
        if args.baseline:
            servers["baseline"] = [str(zaphooks["baseline"] / "server.py")]
        envs = {name: dict(env, PORT=str(ports[name]), DATA_DIR=str(data_dirs[name])) if name in data_dirs else env
                for name in servers}
        rounds = []
        with open(Path(temp) / "server.log", "w") as log:
            processes = {name: subprocess.Popen([sys.executable, *argv], env=envs[name], cwd=temp, stdout=log,
                                                stderr=log)
                         for name, argv in servers.items()}
            try:
                for name in servers:
                    wait_until_up(ports[name], processes[name])
                warmup = unique_bodies(300, prefix="WARM")
                for name in servers:
                    drive(ports[name], warmup, args.connections, args.generator_processes)
                for name in zaphooks:
                    drain_seconds(ports[name])
                for number in range(1, args.rounds + 1):
                    prefix = f"R{number}X"
                    bodies = unique_bodies(args.requests, prefix=prefix)
                    result = {}
                    for name in servers:  # alternating in every round: the same machine state for each
                        result[name] = drive(ports[name], bodies, args.connections, args.generator_processes,
                                             server_pid=processes[name].pid)
                        if name in zaphooks:
                            result[name]["drain_seconds"] = drain_seconds(ports[name])
                    result["prefix"] = prefix
                    rounds.append(result)
            finally:
                for process in processes.values():
                    process.terminate()
                    process.wait(timeout=30)
        for result in rounds:
            for name in zaphooks:
                item = result[name]
                item["lag_p50"], item["lag_p99"], item["applied"], item["stored"] = lag_of_round(
                    data_dirs[name] / "zaphook.db", result["prefix"])

    print(f"load: {args.rounds} rounds of {args.requests} requests per server, {args.connections} connections, "
          f"{args.threads} waitress threads, {os.cpu_count()} cores, media workers {args.media_workers}; "
          f"the machine's load average {load_before} before, {load_average()} after")
    ratios = {name: {"ack": [], "full": [], "lag99": [], "p99": []} for name in zaphooks}
    all_applied = True
    for number, result in enumerate(rounds, 1):
        noop = result["noop"]
        print(f"round {number}:")
        for name in servers:
            item = result[name]
            cpu = item["server_cpu_ms"]
            cpu_text = f"   server CPU {cpu:5.2f} ms/event" if cpu is not None else ""
            print(f"  {name:8s} ack {item['per_second']:7.0f}/s   p50 {item['p50_ms']:6.2f} ms   "
                  f"p99 {item['p99_ms']:6.2f} ms   ({item['ok']}/{item['requests']} answered 200){cpu_text}")
        for name in zaphooks:
            item, mine = result[name], ratios[name]
            full_rate = item["requests"] / (item["seconds"] + item["drain_seconds"])
            mine["ack"].append(item["per_second"] / noop["per_second"])
            mine["full"].append(full_rate / noop["per_second"])
            mine["lag99"].append(item["lag_p99"])
            mine["p99"].append(item["p99_ms"] / noop["p99_ms"])
            if name == "zaphook":
                all_applied = all_applied and item["applied"] == item["ok"]
            print(f"  {name} full {full_rate:7.0f}/s (backlog drained {item['drain_seconds']:.2f} s after the load)   "
                  f"applier lag p50 {item['lag_p50']:.1f} ms p99 {item['lag_p99']:.1f} ms   "
                  f"applied {item['applied']} of {item['ok']} acknowledged")
            print(f"  {name} ratios to the no-op: acknowledgement {mine['ack'][-1]:.2f}, full {mine['full'][-1]:.2f}, "
                  f"p99 {mine['p99'][-1]:.2f}x")
    mine = ratios["zaphook"]
    print(f"median of {len(rounds)} rounds (spread):")
    print(f"  acknowledgement ratio {spread(mine['ack'])}   target >= {ACK_FLOOR}")
    print(f"  full pipeline ratio   {spread(mine['full'])}   target >= {FULL_FLOOR}")
    print(f"  applier lag p99 ms    {spread(mine['lag99'])}   target <= {LAG_P99_CEILING_MS:.0f}")
    print(f"  p99 / no-op p99       {spread(mine['p99'])}   target <= {P99_FACTOR_CEILING:.0f}")
    if args.ack_only:
        alone = [result["ack-only"]["per_second"] / result["noop"]["per_second"] for result in rounds]
        print(f"  ack-only / no-op      {spread(alone)}   "
              "(zaphook's acknowledgement with no applier: the most its acknowledgement ratio can be)")
    if args.store_only:
        ceiling = [result["store"]["per_second"] / result["noop"]["per_second"] for result in rounds]
        print(f"  store-only / no-op    {spread(ceiling)}   "
              "(the most a design that commits each event before answering reaches)")
    if args.baseline:
        other = ratios["baseline"]
        print(f"  baseline ({zaphooks['baseline']}): acknowledgement {spread(other['ack'])}, "
              f"full {spread(other['full'])}, lag p99 ms {spread(other['lag99'])}, p99 {spread(other['p99'])}")
    met = (statistics.median(mine["ack"]) >= ACK_FLOOR and statistics.median(mine["full"]) >= FULL_FLOOR
           and statistics.median(mine["lag99"]) <= LAG_P99_CEILING_MS
           and statistics.median(mine["p99"]) <= P99_FACTOR_CEILING and all_applied)
    print("targets met" if met else "targets NOT met")
    return 0


def load_average() -> str:
    """The 1-minute load average (other work on the machine skews every figure), where the OS tells it."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):  # Windows
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
