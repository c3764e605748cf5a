"""django.tasks tasks the backend tests enqueue (queue ``t``; ``t-order`` for priority order).

Each records what it did in the test Redis (``REDIS_URL``), so the test
process sees what ran in a worker process.
"""

from __future__ import annotations

import asyncio
import os
import time

import tenacity
from django.tasks import task

from tests.jobs import rec


@task(queue_name="t")
def add(a, b):
    return a + b


@task(queue_name="t", max_attempts=2, backoff=tenacity.wait_fixed(0.05))
def always_fails(tag):
    raise ValueError(f"{tag} failed on its attempt in pid {os.getpid()}")


@task(queue_name="t", max_attempts=1)
def fixable(tag):
    """Fails until the test sets ``t:fixed`` (a bug fixed, then a retry from the admin)."""
    if not rec().get("t:fixed"):
        raise RuntimeError(f"{tag}: not fixed yet")
    return {"fixed": tag}


@task(queue_name="t")
def slow(seconds, tag):
    """Marks its start (``t:task-started``), sleeps, returns its tag."""
    rec().rpush("t:task-started", f"{tag}|{os.getpid()}")
    time.sleep(seconds)
    return tag


@task(queue_name="t")
async def async_add(a, b):
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    # The worker's own loop runs it: the one its fetchers and acker run on.
    return {"sum": a + b, "loop_tasks": len([t for t in asyncio.all_tasks(loop) if "taskchan" in t.get_name()])}


@task(queue_name="t", takes_context=True)
def attempt_of(context, tag):
    return {"tag": tag, "attempt": context.attempt, "id": context.task_result.id}


@task(queue_name="t-order")
def ordered(tag):
    rec().rpush("t:order", tag)


@task(queue_name="t", max_attempts=1)  # the same failure every attempt: one is enough
def not_json():
    return object()


@task(queue_name="t")
def at_time(tag):
    rec().rpush("t:at", f"{tag}|{time.time()!r}")
