"""The newcomer's path: a fresh clone, the README's run command, then `demo` shows the pipeline work.

pip runs offline (PIP_NO_INDEX) from the wheelhouse .ci/wheels, which .ci/run fills
before the tests: tests make no traffic beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".ci" / "wheels"


def readme_run_command(readme: Path) -> str:
    """The README's first shell block: the run command (the flow picture before it is a text block)."""
    match = re.search(r"^```sh\n(.*?)^```", readme.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    assert match, "README.md has no code block"
    return match.group(1).strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy


def get_json(url: str):
    with _LOCAL.open(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fresh_clone_runs_the_readme_command_and_the_demo(tmp_path):
    if not (WHEELS.is_dir() and any(WHEELS.iterdir())):
        if os.environ.get("CI"):
            pytest.fail(f"no wheelhouse at {WHEELS}: .ci/run fills it before the tests")
        pytest.skip(f"no wheelhouse at {WHEELS}: fill it with "
                    "`python3 -m pip download -r requirements.txt -d .ci/wheels` (.ci/run does)")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git repository")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)

    command = readme_run_command(clone / "README.md")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "data"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(WHEELS),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while True:
            if process.poll() is not None:
                pytest.fail(f"the README command exited with {process.returncode}:\n"
                            + (tmp_path / "server.log").read_text(errors="replace")[-3000:])
            try:
                # Our server (not another one that took the port): it said so in its log.
                if (f"listening on {base}" in (tmp_path / "server.log").read_text(errors="replace")
                        and get_json(base + "/health") == {"status": "ok"}):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("no /health after 400 s:\n" + (tmp_path / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)

        demo = subprocess.run([str(clone / ".venv" / "bin" / "python"), "server.py", "demo", "--url", base],
                              cwd=clone, env=env, capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr

        items = get_json(base + "/api/messages?limit=500")["items"]
        ids = {item["provider_message_id"] for item in items}
        assert {"SIMWAPI0001", "SIMEVO0001", "wamid.SIMMETA0001", "SIMPLAIN0001"} <= ids
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
