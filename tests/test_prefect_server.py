"""Prefect's own CLI against a real server started the README's way (`prefect server start`).

The server runs on a free 127.0.0.1 port with its own PREFECT_HOME under tmp. Under the pinned
fastapi / starlette / prefect set the list commands succeed (with fastapi >= 0.151 they fail
with `422 Unprocessable Entity`: the CLI sends `limit: null`).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.prefect_support import PREFECT, prefect_env, prefect_server


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
