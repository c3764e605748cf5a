"""``.ci/services`` on a machine without apt-get lists what to install, and why, instead of failing blindly."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import ROOT

#: what the script itself runs, besides the tools it looks for
SHELL_TOOLS = ("bash", "id", "mktemp", "rm", "cat", "ls", "sort", "tail", "seq", "sleep")


def test_without_apt_get_it_names_each_missing_tool_and_what_it_is_for(tmp_path):
    # A PATH with the shell's own tools only: no apt-get, redis-server, nginx,
    # supervisord, pg_isready or pyenv.
    for tool in SHELL_TOOLS:
        (tmp_path / tool).symlink_to(shutil.which(tool))

    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "services")], env={"PATH": str(tmp_path), "TASKCHAN_MATRIX": "1"},
        capture_output=True, text=True, timeout=30,
    )

    assert result.returncode == 1
    err = result.stderr
    assert "this machine has no apt-get, so nothing was installed. Install these yourself" in err, err
    for needed in (
        "redis-server (Redis 6.2 or newer) on PATH: the tests start their own servers",
        "nginx on PATH: tests/integration/test_worker_configs.py",
        "supervisor (supervisord) on PATH",
        "PostgreSQL (14 or newer) running on 127.0.0.1:5432, with a 'postgres' role",
        "Python 3.11 (python3.11 on PATH, or installed with pyenv)",
        "Python 3.13 (python3.13 on PATH, or installed with pyenv)",
    ):
        assert f"  - {needed}" in err, (needed, err)
    assert "installing" not in err  # it tried to install nothing
