"""Fixtures for the Celery hand-off tests: a real ``celery -A project worker``.

The worker is a subprocess on this test's Redis (the broker is ``REDIS_URL``)
and database (``subprocess_env``), consuming the queue ``QUEUE`` with the
threads pool, so a test can SIGKILL it mid-task.  Its Redis broker hands an
unacknowledged task to another worker ``CELERY_VISIBILITY_TIMEOUT`` seconds
after delivery (read by ``project/celery.py``): a few seconds here, an hour
by default.
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from tests.conftest import subprocess_env, wait_for
from tests.failure_windows.helpers import Script

QUEUE = "taskchan-test"
#: Seconds before a task held by a dead worker goes to another (Redis broker).
VISIBILITY_TIMEOUT = 3


class CeleryWorker(Script):
    """``python -m celery -A project worker`` on the test's Redis and database."""

    def __init__(self, env: dict, name: str, concurrency: int = 2):
        self.hostname = f"{name[:30]}-{uuid.uuid4().hex[:8]}@%h"
        args = [
            "-A", "project", "worker", "--pool", "threads", "-c", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-Q", QUEUE, "-n", self.hostname, "--loglevel", "INFO",
        ]  # fmt: skip
        super().__init__("celery", args, env, f"celery-{name[:40]}")

    def wait_ready(self, timeout: float = 30.0) -> CeleryWorker:
        def ready():
            if " ready." in self.output():
                return True  # (it may have died since, by a job's own doing)
            if not self.running:
                raise AssertionError(
                    f"celery worker exited before it was ready:\n{self.output()[-4000:]}"
                )
            return False

        wait_for(ready, timeout=timeout, interval=0.05, message="the celery worker to be ready")
        return self


@pytest.fixture
def celery_settings(use_redis_layer, settings):
    """This process publishes hand-offs to the test Redis, on the test queue."""
    settings.CELERY_BROKER_URL = use_redis_layer
    settings.CELERY_TASK_DEFAULT_QUEUE = QUEUE
    return use_redis_layer


@pytest.fixture
def celery_worker(request, celery_settings):
    """Factory: ``celery_worker()`` starts a Celery worker and waits until it is ready.

    Every worker still running at the end of the test is SIGKILLed.
    """
    started: list[CeleryWorker] = []

    def start(wait: bool = True, **env) -> CeleryWorker:
        env.setdefault("CELERY_VISIBILITY_TIMEOUT", VISIBILITY_TIMEOUT)
        proc = CeleryWorker(subprocess_env(celery_settings, **env), request.node.name)
        started.append(proc)
        return proc.wait_ready() if wait else proc

    yield start
    for proc in started:
        proc.close()


def queued_tasks(client, queue: str = QUEUE) -> list[dict]:
    """The task messages waiting in the Celery queue: ``{"id", "task", "args", "kwargs", "eta"}``."""
    out = []
    for item in client.lrange(queue, 0, -1):
        message = json.loads(item)
        headers = message["headers"]
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _embed = json.loads(body)
        out.append(
            {
                "id": headers["id"],
                "task": headers["task"],
                "args": args,
                "kwargs": kwargs,
                "eta": headers.get("eta"),
            }
        )
    return out


def pid_of_test_process() -> int:
    return os.getpid()
