"""A real Prefect server for the tests that need one (`prefect server start`, the README's way).

The server runs on a free 127.0.0.1 port with its own ``PREFECT_HOME``; subprocesses get
:func:`prefect_env`, and every process started here runs in its own session so that
:func:`stop` ends it with its children.
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

ROOT = Path(__file__).resolve().parents[1]
SERVER_WAIT_S = 120  # a server answers its health check 7-17 s after start on a small machine
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, url: str | None = None) -> dict[str, str]:
    """The environment of a Prefect process with its own home (and API ``url``, when given);
    the repository on ``PYTHONPATH`` so that served flows import its modules."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"), "PYTHONPATH": str(ROOT)}  # fmt: skip
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
    """`prefect server start` on a free loopback port (its UI's API there too); yields the API
    URL once ``/health`` answers, and stops the server afterwards (its log: ``home/server.log``).

    Raises:
        RuntimeError: the server exited or did not answer within ``SERVER_WAIT_S``, with its log.
    """
    port = free_port()
    log_path = home / "server.log"
    env = {**prefect_env(home), "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
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
