"""Settings for the test suite: the reference project plus the test consumers.

The test runner itself starts with the in-memory layer (no REDIS_URL); tests
that need Redis get a per-test server from ``conftest.redis_url`` and switch
layers with ``use_redis_layer``.  Worker subprocesses started by tests read
``REDIS_URL`` and ``TASKCHAN_TEST_DB`` (the test database file the runner
created) from their environment.
"""

import faulthandler
import os
import signal

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR, DATABASES

# A test that waits too long for a subprocess sends it SIGUSR2 to have every
# thread's stack written to its log (conftest.Process.wait) before it fails.
faulthandler.register(signal.SIGUSR2, all_threads=True)

TASKCHAN_CONSUMER_MODULES = ["tests.jobs", "tests.limits_jobs"]
if os.environ.get("TASKCHAN_TEST_FLOW"):
    # Flow control's consumers (a one-second schedule among them) only where a
    # test asks: a worker serving "taskchan.*" elsewhere must not fire it.
    TASKCHAN_CONSUMER_MODULES.append("tests.flow_jobs")

# Short timings so redelivery and retries happen within a test's time.
TASKCHAN_VISIBILITY_TIMEOUT = float(os.environ.get("TASKCHAN_VISIBILITY_TIMEOUT", "30"))
TASKCHAN_OUTBOX_RELAY_AFTER = 0.5
TASKCHAN_STUCK_AFTER = float(os.environ.get("TASKCHAN_STUCK_AFTER", "10"))
TASKCHAN_MAX_STUCK_THREADS = int(os.environ.get("TASKCHAN_MAX_STUCK_THREADS", "4"))
TASKCHAN_SEND_RETRY_SECONDS = 1.0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so worker subprocesses share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-artifacts" / "test-db.sqlite3")}
    if os.environ.get("TASKCHAN_TEST_DB"):
        DATABASES["default"]["NAME"] = os.environ["TASKCHAN_TEST_DB"]
elif os.environ.get("TASKCHAN_TEST_DB"):
    DATABASES["default"]["NAME"] = os.environ["TASKCHAN_TEST_DB"]

if HAS_DJANGO_TASKS:  # noqa: F405  (project.settings imports it)
    # The django.tasks tests' tasks (tests/tasks/jobs.py): queue "t" is theirs.
    TASKS = {"default": {"BACKEND": "taskchan.backend.TaskchanBackend", "QUEUES": ["default", "t", "t-order"]}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
