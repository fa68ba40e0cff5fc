"""On start, the log says where the dashboard is, and whether other machines need ADMIN_TOKEN (never the token)."""

from __future__ import annotations

import re

from server import dashboard_line
from tests.test_server_process import free_port, pytestmark, start_server, stop_with_ctrl_c  # noqa: F401

DASHBOARD_LINE = re.compile(r"INFO zaphook dashboard: (\S+) \((.+)\)$", re.MULTILINE)


def test_the_log_says_where_the_dashboard_is_in_one_line(tmp_path):
    port = free_port()
    process = start_server(tmp_path, port)
    log = stop_with_ctrl_c(process)
    lines = DASHBOARD_LINE.findall(log)
    assert lines == [(f"http://127.0.0.1:{port}/", "open it in a browser on this machine")], log
    assert "[redacted]" not in log  # with no secret set, nothing in the start-up lines looks like one


def test_from_elsewhere_the_line_says_to_sign_in_with_admin_token_and_never_shows_it(tmp_path):
    port = free_port()
    secret = "a-long-admin-token-nobody-sees"
    process = start_server(tmp_path, port, HOST="0.0.0.0", ADMIN_TOKEN=secret)
    log = stop_with_ctrl_c(process)
    assert DASHBOARD_LINE.findall(log) == [
        (f"http://127.0.0.1:{port}/", "no login on this machine; from elsewhere, sign in at /login with ADMIN_TOKEN")]
    assert secret not in log


def test_without_admin_token_the_line_says_other_machines_cannot_open_it():
    line = dashboard_line("http://[::]:5000", {"HOST": "::"}, tunnel_wanted=False)
    assert line == "dashboard: http://[::1]:5000/ (from this machine only: set ADMIN_TOKEN to open it from elsewhere)"
    tunnel = dashboard_line("http://127.0.0.1:5000", {"HOST": "127.0.0.1", "ADMIN_TOKEN": "x" * 20}, tunnel_wanted=True)
    assert tunnel.endswith("(no login on this machine; from elsewhere, sign in at /login with ADMIN_TOKEN)")
