"""Fixtures for the failure-window tests.

Every test here kills or stalls a real process (a ``runworker`` subprocess,
``redis-server`` or a producer subprocess) and then counts every message.
Shared fixtures (``redis_url``, ``worker``, ``manage`` ...) come from
``tests/conftest.py``; helpers are in ``helpers.py``.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import ARTIFACTS, subprocess_env
from tests.failure_windows.helpers import Script


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database file of this run's own.

    The shared settings put every run's SQLite test database at one path;
    several suites running at once in one checkout would then create and
    delete each other's file.  Worker subprocesses find the file through
    ``subprocess_env`` (TASKCHAN_TEST_DB), so any name works.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        test = db.setdefault("TEST", {})
        name = str(test.get("NAME") or ARTIFACTS / "test-db.sqlite3")
        test["NAME"] = f"{name}.fw{os.getpid()}"


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
        if proc.running:
            proc.kill()
        proc._log.close()
