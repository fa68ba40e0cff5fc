"""A stand-in for the ngrok agent v3, for tests that drive the real pyngrok.

Run as pyngrok runs the agent (``ngrok start --none --log stdout --config PATH
[--authtoken TOKEN]``), it prints start-up log lines in logfmt, as the real agent
does when its stdout is a pipe, and serves the agent's local API on 127.0.0.1
(a port chosen at run time, announced in the "starting web service" line).
Standard library only: it may run under any Python 3.

Environment:
  FAKE_NGROK_MODE        ok (default) | auth_error (ERR_NGROK_105) | too_many_sessions
                         (ERR_NGROK_108) | hang (goes silent before connecting) |
                         offline (logs a dial error every 0.2 s, never connects) |
                         domain_taken (POST /api/endpoints answers 502 ERR_NGROK_334)
  FAKE_NGROK_PUBLIC_URL  the URL a tunnel without a domain gets
  FAKE_NGROK_RECORD      a file to append one JSON line per event to (argv, API calls)
  FAKE_NGROK_MAX_SECONDS exit after this long whatever happens (default 60)

Each endpoint it starts carries traffic, as the ngrok edge and agent do: a real
reverse proxy on 127.0.0.1 (a port chosen at run time) forwards every request to
the upstream zaphook asked for, keeping the public Host header and adding
X-Forwarded-For (the client's address appended), X-Forwarded-Proto and
X-Forwarded-Host. Its address is in the endpoint's JSON as ``fake_edge_url`` and
recorded as a ``{"event": "edge", ...}`` line, since the public URL itself is not
reachable from a test.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MODE = os.environ.get("FAKE_NGROK_MODE", "ok")
RECORD = os.environ.get("FAKE_NGROK_RECORD")
PUBLIC_URL = os.environ.get("FAKE_NGROK_PUBLIC_URL", "https://fake-agent.ngrok-free.app")
DASHBOARD = "https://dashboard.ngrok.com/get-started/your-authtoken"

ENDPOINTS: dict[str, dict] = {}
LOCK = threading.Lock()


def record(event: dict) -> None:
    if RECORD:
        with LOCK, open(RECORD, "a", encoding="utf-8") as file:
            file.write(json.dumps(event) + "\n")


def logfmt(lvl: str, msg: str, **fields: str) -> None:
    """One log line as the agent writes it with --log stdout (logfmt, quoted values escaped)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
    parts = [f"t={stamp}", f"lvl={lvl}", f"msg={json.dumps(msg)}"]
    for key, value in fields.items():
        text = str(value)
        needs_quotes = not text or re.search(r'[\s"=\\]', text)
        parts.append(f"{key}={json.dumps(text) if needs_quotes else text}")
    try:
        print(" ".join(parts), flush=True)
    except BrokenPipeError:  # nobody reads the log any more: the real agent would stop too
        os._exit(1)


def fail_like_the_agent(message: str, code: str) -> None:
    """What the real agent does when ngrok refuses the session: log it, print it on stderr, exit 1."""
    err = f"{message}\r\n\r\n{code}\r\n"
    logfmt("eror", "failed to reconnect session", obj="tunnels.session", err=err)
    logfmt("eror", "session closing", obj="tunnels.session", err=err)
    for text in [*message.split("\n"), "", code, f"https://ngrok.com/docs/errors/{code.lower()}", ""]:
        print(f"ERROR:  {text}".rstrip(), file=sys.stderr, flush=True)
    sys.exit(1)


def parse_args(argv: list[str]) -> dict:
    args = {"command": argv[0] if argv else None, "config": None, "authtoken": None, "flags": []}
    index = 1
    while index < len(argv):
        flag = argv[index]
        if flag in ("--config", "--authtoken", "--log", "--region", "--log-format") and index + 1 < len(argv):
            args[flag[2:].replace("-", "_")] = argv[index + 1]
            index += 2
        else:
            args["flags"].append(flag)
            index += 1
    return args


def authtoken_from(args: dict) -> str | None:
    if args["authtoken"]:
        return args["authtoken"]
    if args["config"]:
        with open(args["config"], encoding="utf-8") as file:
            match = re.search(r"^\s*authtoken:\s*['\"]?([^'\"\s]+)", file.read(), re.MULTILINE)
        return match.group(1) if match else None
    return None


# Hop-by-hop headers a proxy does not forward (RFC 9110 7.6.1), plus the ones it sets itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
EDGES: dict[str, ThreadingHTTPServer] = {}


def start_edge(public_url: str, upstream: str) -> str:
    """A reverse proxy that forwards like the ngrok edge and agent; returns its local URL."""
    public = urlsplit(public_url)
    target = urlsplit(upstream if "://" in upstream else f"http://{upstream}")

    class Edge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
            headers = {name: value for name, value in headers.items() if name.lower() != "host"}
            headers["Host"] = public.netloc
            client = self.client_address[0]
            given = self.headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{given}, {client}" if given else client
            headers["X-Forwarded-Proto"] = public.scheme
            headers["X-Forwarded-Host"] = public.netloc
            connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            except OSError as exc:
                data = f"upstream unreachable: {exc}".encode()
                self.send_response(502)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            finally:
                connection.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Edge)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    EDGES[public_url] = server
    return f"http://127.0.0.1:{server.server_address[1]}"


class AgentApi(BaseHTTPRequestHandler):
    """The parts of the agent's local API pyngrok uses (v3 endpoints, and the older tunnels)."""

    def log_message(self, *args) -> None:  # the agent's API does not log to stdout
        pass

    def answer(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        record({"request": f"GET {self.path}"})
        with LOCK:
            endpoints = list(ENDPOINTS.values())
        if self.path == "/api/endpoints":
            self.answer(200, {"endpoints": endpoints, "uri": "/api/endpoints"})
        elif self.path == "/api/tunnels":
            tunnels = [dict(e, public_url=e["url"], uri=e["uri"].replace("endpoints", "tunnels")) for e in endpoints]
            self.answer(200, {"tunnels": tunnels, "uri": "/api/tunnels"})
        else:
            self.answer(404, {"error_code": 100, "status_code": 404, "msg": "Not Found", "details": {}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        record({"request": f"POST {self.path}", "body": body})
        if self.path not in ("/api/endpoints", "/api/tunnels"):
            self.answer(404, {"error_code": 100, "status_code": 404, "msg": "Not Found", "details": {}})
            return
        url = body.get("url") or (f"https://{body['domain']}" if body.get("domain") else PUBLIC_URL)
        if MODE == "domain_taken":
            err = (f"failed to start tunnel: The endpoint '{url}' is already online. Either\n"
                   "1. stop your existing endpoint first, or\n2. start both endpoints with `--pooling-enabled`"
                   "\r\n\r\nERR_NGROK_334\r\n")
            self.answer(502, {"error_code": 103, "status_code": 502, "msg": "failed to start tunnel",
                              "details": {"err": err}})
            return
        name = body.get("name") or "endpoint"
        segment = self.path.rsplit("/", 1)[1]
        endpoint = {"id": f"ep_{os.getpid()}_{name}", "name": name, "uri": f"/api/{segment}/{name}", "url": url,
                    "upstream": body.get("upstream") or {"url": body.get("addr")}}
        if segment == "tunnels":
            endpoint["public_url"] = url
        edge = start_edge(url, endpoint["upstream"].get("url") or "")
        endpoint["fake_edge_url"] = edge
        record({"event": "edge", "name": name, "url": url, "edge": edge, "upstream": endpoint["upstream"]})
        with LOCK:
            ENDPOINTS[name] = endpoint
        logfmt("info", "started tunnel", obj="tunnels", name=name, addr=endpoint["upstream"].get("url") or "",
               url=url)
        self.answer(201, endpoint)

    def do_DELETE(self) -> None:
        record({"request": f"DELETE {self.path}"})
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
        with LOCK:
            found = ENDPOINTS.pop(name, None)
        if found is None:
            self.answer(404, {"error_code": 101, "status_code": 404, "msg": "Tunnel not found", "details": {}})
        else:
            self.answer(204)


def watch_parent(parent: int, limit: float) -> None:
    """Never outlive the test that started it."""
    deadline = time.monotonic() + limit
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.2)
    os._exit(3)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    record({"event": "start", "pid": os.getpid(), "argv": argv, "mode": MODE})
    threading.Thread(target=watch_parent, args=(os.getppid(), float(os.environ.get("FAKE_NGROK_MAX_SECONDS", "60"))),
                     daemon=True).start()
    if args["command"] != "start":
        print(f"ERROR:  unknown command {args['command']!r} (the fake only knows 'start')", file=sys.stderr)
        sys.exit(1)
    if args["config"]:
        logfmt("info", "open config file", path=args["config"], err="nil")
    token = authtoken_from(args)

    if MODE == "hang":
        while True:  # the agent is stuck: no more output, never exits by itself
            time.sleep(1)

    server = ThreadingHTTPServer(("127.0.0.1", 0), AgentApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    logfmt("info", "starting web service", obj="web", addr=f"127.0.0.1:{server.server_address[1]}",
           allow_hosts="[]")

    if not token:
        fail_like_the_agent("authentication failed: Usage of ngrok requires a verified account and authtoken.\n\n"
                            "Sign up for an account: https://dashboard.ngrok.com/signup\n"
                            f"Install your authtoken: {DASHBOARD}", "ERR_NGROK_4018")
    if MODE == "auth_error":
        fail_like_the_agent("authentication failed: The authtoken you specified does not look like a proper ngrok "
                            f"tunnel authtoken.\nYour authtoken: {token}\nInstructions to install your authtoken "
                            f"are on your ngrok dashboard:\n{DASHBOARD}", "ERR_NGROK_105")
    if MODE == "too_many_sessions":
        fail_like_the_agent("authentication failed: Your account is limited to 1 simultaneous ngrok agent sessions.\n"
                            "You can run multiple simultaneous tunnels from a single agent session by defining the "
                            "tunnels in your agent configuration file and starting them with the command "
                            "`ngrok start --all`.\nRead more about the agent configuration file: "
                            "https://ngrok.com/docs/secure-tunnels/ngrok-agent/reference/config\n"
                            "You can view your current agent sessions in the dashboard:\n"
                            "https://dashboard.ngrok.com/agents", "ERR_NGROK_108")
    if MODE == "offline":
        while True:  # the real agent keeps retrying with back-off; pyngrok's startup_timeout ends it
            logfmt("eror", "failed to reconnect session", obj="tunnels.session",
                   err='failed to dial ngrok server with address "connect.ngrok-agent.com:443": '
                       "dial tcp: lookup connect.ngrok-agent.com: no such host")
            time.sleep(0.2)

    logfmt("info", "client session established", obj="tunnels.session")
    logfmt("info", "tunnel session started", obj="tunnels.session")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
