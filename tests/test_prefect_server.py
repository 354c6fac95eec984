"""Prefect's own CLI against a real server started the README's way (`prefect server start`).

The server runs on a free 127.0.0.1 port with its own PREFECT_HOME under tmp. Under the pinned
fastapi / starlette / prefect set the list commands succeed (with fastapi >= 0.151 they fail
with `422 Unprocessable Entity`: the CLI sends `limit: null`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER_WAIT_S = 120
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage")}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    if url:
        env["PREFECT_API_URL"] = url
    return env


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its children."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """`prefect server start` on a free loopback port; yields its API URL once healthy."""
    port = free_port()
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env={**prefect_env(home), "PREFECT_SERVER_API_PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{port}/api"
        try:
            t0 = time.monotonic()
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() - t0 > SERVER_WAIT_S:
                    raise RuntimeError(
                        f"prefect server did not come up:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(1)
            yield url
        finally:
            stop(proc)


@pytest.mark.slow
def test_prefect_list_commands_succeed_against_the_server(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with prefect_server(home) as url:
        env = prefect_env(home, url)
        for cmd in (
            ["deployment", "ls"],
            ["flow-run", "ls"],
            ["flow", "ls"],
            ["artifact", "ls"],
            ["work-pool", "ls"],
        ):
            r = subprocess.run(
                [*PREFECT, *cmd], env=env, capture_output=True, text=True, timeout=120
            )
            assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
            assert "422" not in r.stdout + r.stderr, cmd
