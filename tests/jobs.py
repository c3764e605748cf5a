"""Consumers the tests use. Each records what it did in the test Redis
(``REDIS_URL``), so a test in another process can count every message.

Records: list ``t:done`` gets ``"<message id>|<attempt>|<pid>"`` per successful
run; ``t:started`` the same when a job starts.
"""

import asyncio
import os
import signal
import time

import redis

import taskchan

_client = None


def rec() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _client


def _mark(key: str, message) -> None:
    rec().rpush(key, f"{message.id}|{message.attempt}|{os.getpid()}")


@taskchan.consumer("taskchan.t.record", max_attempts=3)
def record(message):
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.slow", max_attempts=5)
def slow(message):
    """Sleeps content["seconds"]; marks start and end."""
    _mark("t:started", message)
    time.sleep(float(message.content.get("seconds", 1)))
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.flaky", max_attempts=4, backoff=lambda state: 0.05)
def flaky(message):
    """Fails until attempt content["succeed_on"]."""
    if message.attempt < message.content.get("succeed_on", 2):
        raise RuntimeError(f"flaky failure on attempt {message.attempt}")
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.poison", max_attempts=3, backoff=lambda state: 0.05)
def poison(message):
    raise ValueError("poison message always fails")


@taskchan.consumer("taskchan.t.reject")
def reject(message):
    raise taskchan.Reject("not for us")


@taskchan.consumer("taskchan.t.retry", max_attempts=3)
def explicit_retry(message):
    if message.attempt == 1:
        raise taskchan.Retry(delay=float(message.content.get("delay", 0.2)))
    _mark("t:done", message)


@taskchan.consumer("taskchan.t.crash", max_attempts=2, visibility_timeout=1)
def crash(message):
    """Kills its own worker process every time (a crash loop)."""
    _mark("t:started", message)
    os.kill(os.getpid(), signal.SIGKILL)


@taskchan.consumer("taskchan.t.async")
async def async_record(message):
    await asyncio.sleep(0)
    rec().rpush("t:done", f"{message.id}|{message.attempt}|{os.getpid()}")
