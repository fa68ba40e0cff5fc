"""An ngrok tunnel to zaphook's port, so providers on the internet reach the webhooks.

pyngrok drives the ngrok agent. This module decides whether to start it, makes
sure nothing is ever downloaded, turns every failure into one line that says
what happened and what to do, and builds the webhook URLs to paste into each
provider. A tunnel that cannot open never stops zaphook: it keeps serving
locally and /status reports why.

Choices, and why:

* The agent binary. ``NGROK_PATH``, when given, is the only candidate; it must
  exist, be an executable file and be the agent itself. Otherwise zaphook looks
  for ``ngrok`` on PATH, then at pyngrok's default location. It never downloads
  one: pyngrok would fetch an unpinned binary from the network and run it, at
  start-up, without asking. When none is found, the reason says how to install it.
  pyngrok's own ``ngrok`` command (the one pip puts in the virtualenv's bin) is a
  Python script that downloads the agent on first use, so it is refused as an agent.
* The agent config. zaphook writes its own ``DATA_DIR/ngrok.yml`` (mode 0600,
  rewritten at each start, holding only the authtoken) and never hands pyngrok the
  user's ``~/.config/ngrok/ngrok.yml``: that file may carry a "pyngrok-default"
  endpoint pyngrok would merge into this tunnel, log settings pyngrok rejects, or
  another account's token, and pyngrok writes to the config it is given. So
  ``NGROK_AUTHTOKEN`` is required even after ``ngrok config add-authtoken``.
* The authtoken travels in that file, not on the agent's command line (where
  pyngrok would put it, readable by any local user in ``ps``), and is masked in
  the agent's log lines (an ERR_NGROK_105 line echoes it).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

from handlers import REGISTRY
from handlers.provider import CATCH_ALL_PATH, token_query

log = logging.getLogger(__name__)

TUNNEL_MODES = ("auto", "on", "off")
WEBHOOK_TOKEN_FILE = "webhook_token"
NGROK_CONFIG_FILE = "ngrok.yml"
TUNNEL_NAME = "zaphook"
DEFAULT_STARTUP_TIMEOUT = 15.0  # pyngrok's default
DEFAULT_REQUEST_TIMEOUT = 4.0  # pyngrok's default
# Time beyond startup_timeout before zaphook stops an agent that went silent.
STARTUP_GRACE = 2.0

DOWNLOAD_PAGE = "https://ngrok.com/download"
AUTHTOKEN_PAGE = "https://dashboard.ngrok.com/get-started/your-authtoken"
DOMAINS_PAGE = "https://dashboard.ngrok.com/domains"

_ON = frozenset({"on", "true", "yes", "1"})
_OFF = frozenset({"off", "false", "no", "0"})
_ERROR_CODE = re.compile(r"ERR_NGROK_\d+")
_NETWORK_ERROR = re.compile(r"dial tcp|lookup |no such host|network is unreachable|i/o timeout|connection refused"
                            r"|connection reset|tls: |x509|proxy", re.IGNORECASE)

# --- settings --------------------------------------------------------------------


def _setting(settings: Mapping[str, Any], name: str) -> Optional[str]:
    """A setting as text, None when missing or empty."""
    value = settings.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_tunnel_mode(value: Any) -> str:
    """TUNNEL as "on", "off" or "auto" (empty means auto); usable as a config.py parser."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return "auto"
    if text in _ON:
        return "on"
    if text in _OFF:
        return "off"
    raise ValueError(f"must be on, off or auto, got {value!r}")


def tunnel_wanted(settings: Mapping[str, Any]) -> bool:
    """TUNNEL=on: yes; off: never; auto (the default): when NGROK_AUTHTOKEN is set."""
    mode = parse_tunnel_mode(settings.get("TUNNEL"))
    if mode == "auto":
        return _setting(settings, "NGROK_AUTHTOKEN") is not None
    return mode == "on"


def _normal_domain(value: Optional[str]) -> Optional[str]:
    """NGROK_DOMAIN as a bare host name, also when pasted as a URL."""
    if not value:
        return None
    domain = re.sub(r"^[a-z]+://", "", value.strip(), flags=re.IGNORECASE)
    return domain.split("/", 1)[0].strip().lower() or None


# --- the webhook token ----------------------------------------------------------


def ensure_webhook_token(data_dir: Path) -> str:
    """The token kept in DATA_DIR/webhook_token, generated on first use.

    A tunnel puts the webhooks on the internet; without WEBHOOK_TOKEN anyone who
    finds the URL could post events. The file (0600 where the OS has modes) keeps
    the token stable across restarts, so the URLs pasted into providers keep
    working. Raises OSError when DATA_DIR cannot be written.
    """
    path = Path(data_dir) / WEBHOOK_TOKEN_FILE
    token = _read_token(path)
    if token:
        _make_private(path)
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_private(draft, token + "\n")
    try:
        try:
            # A hard link creates the file with its content at once, and fails if
            # another zaphook got there first: both then use the same token.
            os.link(draft, path)
        except FileExistsError:
            existing = _read_token(path)
            if existing:
                return existing
            os.replace(draft, path)  # an empty leftover file
        except OSError:
            os.replace(draft, path)  # a file system without hard links
    finally:
        if draft.exists():
            draft.unlink()
    log.info("generated a webhook token in %s; providers must send it (it is in the tunnel's URLs)", path)
    return token


def resolve_webhook_token(settings: Mapping[str, Any]) -> Optional[str]:
    """WEBHOOK_TOKEN, or the one in DATA_DIR when a tunnel is wanted and none is set."""
    configured = _setting(settings, "WEBHOOK_TOKEN")
    if configured or not tunnel_wanted(settings):
        return configured
    return ensure_webhook_token(Path(_setting(settings, "DATA_DIR") or "data"))


def share_generated_webhook_token(settings: Mapping[str, Any]) -> Optional[str]:
    """A generated webhook token becomes the deployment's: the first process's, kept in the database.

    Each process generates its token in its own DATA_DIR; several processes on
    one database behind one URL must accept the same one, or the URLs the
    tunnel owner printed would be refused by the others. A token the user set
    in WEBHOOK_TOKEN is left alone (it is not the one in DATA_DIR). Call with
    a database connection open.
    """
    from models import DeploymentFact

    token = _setting(settings, "WEBHOOK_TOKEN")
    path = Path(_setting(settings, "DATA_DIR") or "data") / WEBHOOK_TOKEN_FILE
    if not token or _read_token(path) != token:
        return token
    shared = DeploymentFact.adopt(DeploymentFact.WEBHOOK_TOKEN, token)
    if shared != token:
        _write_private(path, shared + "\n")
        log.info("using this deployment's generated webhook token (another process made it first): "
                 "the URLs printed by any process work on every one")
    return shared


def _read_token(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (on POSIX), even if it existed with wider modes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if os.name == "posix":
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _make_private(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
        log.warning("%s was readable by other users (mode %o): made it private (600)", path, mode)


# --- the URLs to paste -----------------------------------------------------------


def webhook_url_table(base_url: str, token: Optional[str]) -> list[tuple[str, str, str]]:
    """(provider, event, URL) for every webhook a provider is told to post to, from the registry.

    With a token the URLs carry ``?token=...``: this table is meant for stdout,
    ready to paste, and is the one place zaphook shows the webhook token; never
    log it (the log filter would mask it anyway). The catch-all URL comes last,
    for any provider.
    """
    query = token_query(token)
    rows = [(provider.label, url.label, full) for provider, url, full in REGISTRY.url_rows(base_url, query)]
    return rows + [("any provider", "all events", f"{base_url.rstrip('/')}{CATCH_ALL_PATH}{query}")]


def format_url_table(rows: list[tuple[str, str, str]]) -> str:
    """The table as aligned text columns, for printing."""
    header = ("provider", "event", "URL")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    lines = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]}",
             f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 3}"]
    lines += [f"{provider:<{widths[0]}}  {event:<{widths[1]}}  {url}" for provider, event, url in rows]
    return "\n".join(lines)


# --- the tunnel ------------------------------------------------------------------


class _Failure(Exception):
    """Why the tunnel did not open: the one line for the log and /status."""

    def __init__(self, reason: str, code: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _AgentLogFilter(logging.Filter):
    """Masks the authtoken in the agent's log lines, and holds them back while it starts.

    At start-up zaphook logs one line of its own instead (the agent's lines are
    kept in pyngrok's logs and shown at DEBUG). Afterwards the agent's warnings
    (lost connection, reconnecting) pass through.
    """

    def __init__(self, secret: Optional[str]):
        super().__init__()
        self.secret = secret
        self.starting = True

    def filter(self, record: logging.LogRecord) -> bool:
        if self.starting and not log.isEnabledFor(logging.DEBUG):
            return False
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg, record.args = message.replace(self.secret, "[redacted]"), None
        return True


class Tunnel:
    """The ngrok tunnel to zaphook's port, as /status and /test report it.

    ``state``: off (not wanted, or not started yet) | starting | open | failed | closed |
    elsewhere (another process of the deployment owns the tunnel: roles.py).
    ``open()`` never raises (except KeyboardInterrupt, after stopping the agent);
    ``close()`` is idempotent. Both may be called from different threads.
    """

    def __init__(self, settings: Mapping[str, Any], *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT, config_path: Optional[Path] = None):
        self.mode = parse_tunnel_mode(settings.get("TUNNEL"))
        self.wanted = tunnel_wanted(settings)
        self.domain = _normal_domain(_setting(settings, "NGROK_DOMAIN"))
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        data_dir = Path(_setting(settings, "DATA_DIR") or "data").expanduser()
        self.config_path = Path(config_path) if config_path else data_dir / NGROK_CONFIG_FILE
        self._authtoken = _setting(settings, "NGROK_AUTHTOKEN")
        self._ngrok_path_setting = _setting(settings, "NGROK_PATH")

        self.state = "off"
        self.public_url: Optional[str] = None
        self.reason: Optional[str] = None if self.wanted else self._off_reason()
        self.error_code: Optional[str] = None
        self.ngrok_path: Optional[str] = None
        self.opened_at: Optional[float] = None

        self._lock = threading.Lock()
        self._closing = False
        self._pyngrok_config: Any = None
        self._process: Any = None  # pyngrok's NgrokProcess once the agent is up
        self._spawned: Any = None  # the same, as soon as the agent says anything
        self._ngrok_tunnel: Any = None
        self._log_filter: Optional[_AgentLogFilter] = None
        self._started = False
        self._timed_out = False

    # --- public -----------------------------------------------------------------

    def open(self, port: int, host: str = "127.0.0.1") -> bool:
        """Start the agent and the tunnel to ``host:port``; True when it is open.

        ``host`` is the address zaphook listens on (0.0.0.0 and :: are reached on
        the loopback). On failure the state is "failed", ``reason`` says what to
        do, one line is logged, and nothing is left running.
        """
        with self._lock:
            if self.state in ("starting", "open", "closed") or self._closing:
                return self.state == "open"
            if not self.wanted:
                self.reason = self._off_reason()
                return False
            self.state, self.public_url, self.reason, self.error_code = "starting", None, None, None
            self._process = self._spawned = self._ngrok_tunnel = None
        began = time.monotonic()
        try:
            self._open(port, host, began)
        except KeyboardInterrupt:
            self.close()
            raise
        except _Failure as failure:
            self._fail(failure.reason, failure.code)
            return False
        except Exception as exc:  # noqa: BLE001 - a tunnel problem must not stop the server
            self._fail(f"unexpected error while starting ngrok ({type(exc).__name__}: {self._redact(str(exc))})",
                       None)
            return False
        return True

    def close(self) -> None:
        """Remove the tunnel and stop the agent. Safe when never opened, and twice."""
        with self._lock:
            self._closing = True
            config = self._pyngrok_config
            if self.state in ("starting", "open"):
                self.state = "closed"
        if config is not None:
            self._teardown(config)

    def leave_to_another_process(self, reason: str) -> None:
        """Another process owns the deployment's tunnel: close ours if it is open, and be ready to open later.

        Unlike :meth:`close` (zaphook is stopping), :meth:`open` may be called
        again: when the owner dies, this process may take the role over.
        """
        self.close()
        with self._lock:
            self._closing = False
            self.state, self.public_url, self.reason, self.error_code = "elsewhere", None, reason, None

    def as_json(self) -> dict:
        """What /status shows; never the authtoken."""
        self._notice_dead_agent()
        return {
            "state": self.state,
            "public_url": self.public_url,
            "domain": self.domain,
            "reason": self.reason,
            "error_code": self.error_code,
            "mode": self.mode,
            "agent_path": self.ngrok_path,
            "opened_at": (datetime.fromtimestamp(self.opened_at, timezone.utc).isoformat(timespec="seconds")
                          if self.opened_at else None),
        }

    # --- opening ----------------------------------------------------------------

    def _open(self, port: int, host: str, began: float) -> None:
        if not self._authtoken:
            raise _Failure(f"TUNNEL=on but NGROK_AUTHTOKEN is not set: copy your authtoken from {AUTHTOKEN_PAGE}"
                           " into NGROK_AUTHTOKEN (zaphook does not read ngrok's own config file)", "ERR_NGROK_4018")
        self.ngrok_path = self._find_agent()
        self._write_config()

        from pyngrok import conf, ngrok, process

        # monitor_thread: without a reader the agent's log fills the pipe and the agent blocks.
        config = conf.PyngrokConfig(ngrok_path=self.ngrok_path, config_path=str(self.config_path),
                                    startup_timeout=self.startup_timeout, request_timeout=self.request_timeout,
                                    monitor_thread=True, log_event_callback=self._agent_logged)
        # PyngrokConfig falls back to the environment's NGROK_AUTHTOKEN and would pass it as
        # --authtoken (process.py, _start_process): the 0600 config file carries it instead.
        config.auth_token = None
        config.api_key = None
        if process.is_process_running(config.ngrok_path):
            raise _Failure(f"an ngrok agent started by this process from {self.ngrok_path} is already running:"
                           " close the other tunnel first")
        with self._lock:
            if self._closing:
                raise _Failure("closed while starting")
            self._pyngrok_config = config
        self._quiet_pyngrok()

        self._start_agent(config, began)
        upstream = f"http://{_upstream_host(host)}:{port}"
        options = {"url": f"https://{self.domain}"} if self.domain else {}
        with self._lock:
            if self._closing:
                raise _Failure("closed while starting")
            try:
                # The agent runs and the binary exists, so connect()'s install_ngrok() is a no-op.
                tunnel = ngrok.connect(upstream, "http", name=TUNNEL_NAME, pyngrok_config=config, **options)
            except Exception as exc:  # noqa: BLE001 - every pyngrok error becomes a reason
                raise self._explain_connect_error(exc) from None
            self._ngrok_tunnel = tunnel
            self.public_url = tunnel.public_url
            self.opened_at = time.time()
            self.state = "open"
            if self._log_filter:
                self._log_filter.starting = False
        log.info("ngrok tunnel open: %s -> %s", self.public_url, upstream)

    def _start_agent(self, config: Any, began: float) -> None:
        """Start the agent through pyngrok, within startup_timeout.

        pyngrok reads the agent's output line by line and checks startup_timeout
        only between lines (process.py, _start_process): an agent that goes silent
        would block it forever. A timer kills such an agent, which ends the read.
        pyngrok pipes only the agent's stdout: the agent's own "ERROR:" block on
        stderr reaches zaphook's stderr as is.
        """
        from pyngrok import process
        from pyngrok.exception import PyngrokError

        self._started = self._timed_out = False
        watchdog = threading.Timer(self.startup_timeout + STARTUP_GRACE, self._kill_stuck_agent,
                                   args=(config.ngrok_path,))
        watchdog.daemon = True
        watchdog.start()
        try:
            agent = process.get_process(config)
        except PyngrokError as exc:
            raise self._explain_start_error(exc, time.monotonic() - began) from None
        except OSError as exc:
            raise _Failure(f"cannot run the ngrok agent at {self.ngrok_path} ({exc.strerror or exc}): check it is"
                           f" the ngrok agent for this system ({DOWNLOAD_PAGE})") from None
        finally:
            watchdog.cancel()
            watchdog.join()
        with self._lock:
            self._started = True
            timed_out = self._timed_out
        self._process = agent
        if timed_out:
            raise _Failure(self._timeout_reason([]))

    def _agent_logged(self, _line: Any) -> None:
        """Keep hold of the agent process: when it fails to start, pyngrok forgets it
        without closing its stdout pipe (process.py, _start_process)."""
        if self._spawned is None and self._pyngrok_config is not None:
            from pyngrok import process

            self._spawned = process._current_processes.get(self._pyngrok_config.ngrok_path)

    def _kill_stuck_agent(self, ngrok_path: str) -> None:
        from pyngrok import process

        with self._lock:
            if self._started:
                return
            # Not through process.kill_process(): it waits for the lock get_process() holds.
            running = process._current_processes.get(ngrok_path)
            if running is None or running.proc.poll() is not None:
                return
            self._spawned = self._spawned or running
            self._timed_out = True
            try:
                running.proc.kill()
            except OSError:
                pass

    def _find_agent(self) -> str:
        """The agent binary to run; never a download."""
        if self._ngrok_path_setting:
            path = Path(self._ngrok_path_setting).expanduser()
            problem = _agent_problem(path)
            if problem:
                raise _Failure(f"NGROK_PATH={path} {problem}")
            return str(path)
        from pyngrok import conf

        default = Path(conf.DEFAULT_NGROK_PATH)
        skipped = []
        # Every "ngrok" on PATH, not just the first: an activated virtualenv puts pyngrok's
        # downloader script first.
        on_path = [shutil.which("ngrok", path=folder) for folder in os.environ.get("PATH", "").split(os.pathsep)
                   if folder]
        for candidate in [*dict.fromkeys(found for found in on_path if found), default]:
            problem = _agent_problem(Path(candidate))
            if problem is None:
                return str(candidate)
            if Path(candidate).exists():
                skipped.append(f"{candidate} {problem.split(':')[0]}")
        note = f" ({'; '.join(skipped)})" if skipped else ""
        raise _Failure(f"no ngrok agent found on PATH or at {default}{note}: install it from {DOWNLOAD_PAGE} and"
                       " set NGROK_PATH to it (zaphook never downloads it)")

    def _write_config(self) -> None:
        import yaml

        text = yaml.safe_dump({"version": "3", "agent": {"authtoken": self._authtoken}}, default_flow_style=False)
        try:
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(self.config_path, text)
        except OSError as exc:
            raise _Failure(f"cannot write the ngrok config {self.config_path} ({exc.strerror or exc}):"
                           " check DATA_DIR is writable") from None

    # --- failures ---------------------------------------------------------------

    def _fail(self, reason: str, code: Optional[str]) -> None:
        with self._lock:
            closing = self._closing
            config = self._pyngrok_config
            if not closing:
                self.state, self.reason, self.error_code, self.public_url = "failed", reason, code, None
        if config is not None:
            self._teardown(config)
        if closing:
            log.debug("tunnel start abandoned: zaphook is stopping")
        else:
            log.error("ngrok tunnel not opened: %s (zaphook keeps serving locally)", reason)

    def _explain_start_error(self, exc: Exception, elapsed: float) -> _Failure:
        err = getattr(exc, "ngrok_error", None) or ""
        logs = getattr(exc, "ngrok_logs", None) or []
        for line in logs:
            log.debug("ngrok agent: %s", self._redact(line.line))
        code = getattr(exc, "ngrok_error_code", None) or _error_code(err)
        if code:
            return _Failure(self._advice(code, err), code)
        if err and _NETWORK_ERROR.search(err):
            return _Failure(f"the ngrok agent cannot reach ngrok's servers ({self._first_line(err)}): check this"
                            " machine's internet connection, proxy or firewall, then restart zaphook")
        if self._timed_out or elapsed >= self.startup_timeout:
            return _Failure(self._timeout_reason(logs))
        if err:
            return _Failure(f"the ngrok agent failed to start: {self._first_line(err)}")
        last = self._redact(logs[-1].line) if logs else ""
        return _Failure(f"the ngrok agent at {self.ngrok_path} exited while starting{': ' + last if last else ''}"
                        f" - check `{self.ngrok_path} version` runs and prints ngrok version 3")

    def _timeout_reason(self, logs: list) -> str:
        messages = " ".join(line.msg or "" for line in logs)
        hint = ""
        if "client session established" in messages and "starting web service" in messages:
            # pyngrok 9 probes /api/endpoints, which older agents do not have.
            hint = " (it connected, but its local API did not answer: update it with `ngrok update`)"
        return (f"the ngrok agent at {self.ngrok_path} did not become ready within {self.startup_timeout:g} s{hint}:"
                " check this machine can reach ngrok and that the agent runs on its own, then restart zaphook")

    def _explain_connect_error(self, exc: Exception) -> _Failure:
        from pyngrok.exception import PyngrokNgrokHTTPError, PyngrokNgrokURLError

        if isinstance(exc, PyngrokNgrokHTTPError):
            body = exc.body or ""
            detail = _api_error_detail(body)
            code = _error_code(body)
            if code:
                return _Failure(self._advice(code, detail), code)
            if exc.status_code == 404 and "/api/endpoints" in (exc.url or ""):
                return _Failure(f"the ngrok agent at {self.ngrok_path} is too old for pyngrok (no /api/endpoints):"
                                " update it with `ngrok update`")
            if self.domain:
                return _Failure(f"ngrok refused the tunnel on NGROK_DOMAIN={self.domain}"
                                f" ({self._first_line(detail) or exc.status_code}): check the domain is reserved on"
                                f" this account ({DOMAINS_PAGE})")
            return _Failure(f"ngrok refused the tunnel ({self._first_line(detail) or exc.status_code})")
        if isinstance(exc, PyngrokNgrokURLError):
            return _Failure(f"the ngrok agent's local API did not answer ({exc.reason}): the agent stopped or is"
                            " stuck; restart zaphook")
        return _Failure(f"pyngrok could not open the tunnel ({type(exc).__name__}: {self._redact(str(exc))})")

    def _advice(self, code: str, err: str) -> str:
        what = {
            "ERR_NGROK_105": f"ngrok rejected NGROK_AUTHTOKEN (not a valid authtoken): copy it again from"
                             f" {AUTHTOKEN_PAGE}",
            "ERR_NGROK_107": f"ngrok rejected NGROK_AUTHTOKEN (it was reset or revoked): copy the current one from"
                             f" {AUTHTOKEN_PAGE}",
            "ERR_NGROK_108": "ngrok refused a second agent session for this account (the plan allows one): stop"
                             " the other ngrok agent or zaphook using this authtoken"
                             " (see https://dashboard.ngrok.com/agents), then restart zaphook",
            "ERR_NGROK_4018": f"ngrok needs an authtoken: set NGROK_AUTHTOKEN (copy it from {AUTHTOKEN_PAGE})",
            "ERR_NGROK_334": f"the address {self.domain or 'requested'} is already online in another ngrok agent:"
                             " stop that agent or set another NGROK_DOMAIN",
        }.get(code)
        if what is None:
            first = self._first_line(err)
            what = f"ngrok refused: {first}" if first else "ngrok refused the tunnel"
            if self.domain:
                what += f" - if it is about NGROK_DOMAIN={self.domain}, check it is reserved on {DOMAINS_PAGE}"
        return f"{what} [{code}, https://ngrok.com/docs/errors/{code.lower()}]"

    def _first_line(self, text: str) -> str:
        """ngrok's first sentence: its errors are multi-line, escaped in the logfmt line."""
        first = re.split(r"\\r|\\n|[\r\n]", text or "", maxsplit=1)[0]
        return self._redact(first.strip())

    def _redact(self, text: str) -> str:
        if self._authtoken and self._authtoken in text:
            text = text.replace(self._authtoken, "[redacted]")
        return text

    def _off_reason(self) -> str:
        if self.mode == "off":
            return "TUNNEL=off"
        return "NGROK_AUTHTOKEN is not set (TUNNEL=auto)"

    # --- stopping ---------------------------------------------------------------

    def _teardown(self, config: Any) -> None:
        """Remove the tunnel, stop the agent, end pyngrok's reader thread and close its pipe.

        Not ngrok.disconnect(): like most of pyngrok's ngrok module it calls
        install_ngrok(), which downloads the agent if the binary has gone.
        """
        from pyngrok import ngrok, process
        from pyngrok.exception import PyngrokError

        running = process._current_processes.get(config.ngrok_path)
        tunnel, self._ngrok_tunnel = self._ngrok_tunnel, None
        if tunnel is not None and tunnel.uri and running is not None and running.proc.poll() is None:
            try:
                ngrok.api_request(f"{tunnel.api_url}{tunnel.uri}", method="DELETE", timeout=self.request_timeout)
            except PyngrokError as exc:
                log.debug("could not remove the tunnel before stopping the agent: %s", type(exc).__name__)
        if running is not None:
            try:
                running.proc.kill()  # now, even while another thread is inside get_process()
            except OSError:
                pass
        ngrok.kill(config)  # pyngrok's bookkeeping: waits for the process and forgets it
        agent = running or self._process or self._spawned
        if agent is not None:
            if agent.proc.poll() is None:  # only when pyngrok had already forgotten it
                agent.proc.kill()
                agent.proc.wait(timeout=5)
            monitor = agent._monitor_thread
            if monitor is not None:
                monitor.join(timeout=5)
            # pyngrok never closes the agent's stdout pipe.
            if agent.proc.stdout is not None and (monitor is None or not monitor.is_alive()):
                agent.proc.stdout.close()
        if self._log_filter is not None:
            logging.getLogger("pyngrok.process.ngrok").removeFilter(self._log_filter)
            self._log_filter = None

    def _notice_dead_agent(self) -> None:
        """An open tunnel whose agent died (killed, crashed) is reported as failed."""
        agent = self._process
        if self.state != "open" or agent is None or agent.proc.poll() is None:
            return
        errors = [line for line in agent.logs if line.lvl in ("ERROR", "CRITICAL")]
        last = self._first_line(errors[-1].err or errors[-1].msg or "") if errors else ""
        with self._lock:
            if self.state != "open":
                return
            self.state, self.public_url = "failed", None
            self.reason = (f"the ngrok agent stopped (exit code {agent.proc.returncode}"
                           f"{', last error: ' + last if last else ''}): restart zaphook to open the tunnel again")
            self.error_code = _error_code(last)
        log.error("ngrok tunnel lost: %s", self.reason)

    def _quiet_pyngrok(self) -> None:
        """pyngrok logs every agent line (one per connection) at INFO: keep zaphook's log readable."""
        pyngrok_log = logging.getLogger("pyngrok")
        if pyngrok_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
            pyngrok_log.setLevel(logging.WARNING)
        if self._log_filter is None:
            self._log_filter = _AgentLogFilter(self._authtoken)
            logging.getLogger("pyngrok.process.ngrok").addFilter(self._log_filter)


def _agent_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be used as the ngrok agent, or None."""
    fix = f"install the ngrok agent ({DOWNLOAD_PAGE}) and point NGROK_PATH at it"
    if not path.exists():
        return f"does not exist: {fix}; zaphook never downloads it"
    if path.is_dir():
        return "is a folder: point NGROK_PATH at the ngrok executable"
    if os.name == "posix" and not os.access(path, os.X_OK):
        return f"is not executable: run chmod +x {path}"
    if _is_pyngrok_script(path):
        return f"is pyngrok's `ngrok` command, which downloads the agent on first use, not the agent: {fix}"
    return None


def _is_pyngrok_script(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"pyngrok" in head


def _upstream_host(host: str) -> str:
    """Where the agent reaches zaphook: the loopback when it listens on every address."""
    host = (host or "").strip()
    if host in ("", "0.0.0.0", "localhost", "127.0.0.1"):
        return "127.0.0.1"
    if host in ("::", "::1", "[::]", "[::1]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _error_code(text: Optional[str]) -> Optional[str]:
    match = _ERROR_CODE.search(text or "")
    return match.group(0) if match else None


def _api_error_detail(body: str) -> str:
    """The agent API's error text: details.err, else msg, else the body."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    return str(details.get("err") or data.get("msg") or body)
