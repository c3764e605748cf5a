"""Fixtures for the failure-window tests.

Every test here kills or stalls a real process (a ``runworker`` subprocess,
``redis-server`` or a producer subprocess) and then counts every message.
Shared fixtures (``redis_url``, ``worker``, ``manage`` ...) come from
``tests/conftest.py``; helpers are in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from tests.conftest import subprocess_env
from tests.failure_windows.helpers import Script


@pytest.fixture
def script(request):
    """Factory: ``script("tests.failure_windows.producer", [...], redis_url=...)`` -> Script.

    Every script still running at the end of the test is SIGKILLed.
    """
    started: list[Script] = []

    def start(module, args=(), redis_url=None, **env) -> Script:
        proc = Script(module, args, subprocess_env(redis_url, **env), request.node.name[:50])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()
