"""Consumers for the in-process delivery tests (channels ``taskchan.c.*``).

They record what they saw in this process's memory (``EVENTS``): the tests run
``taskchan.worker.Worker`` in-process, so nothing has to cross a process
boundary.  Each xdist worker is its own process, so the records are private to
the tests of that process; ``reset()`` empties them before every test.
"""

from __future__ import annotations

import asyncio
import threading
import time

import taskchan

_lock = threading.Lock()
EVENTS: list[dict] = []  # one per consumer call, in call order
BACKOFF_CALLS: list[int] = []  # attempt numbers the recording backoff was asked about
STATE = {"fixed": False}


def reset() -> None:
    with _lock:
        EVENTS.clear()
        BACKOFF_CALLS.clear()
        STATE["fixed"] = False


def record(message, **extra) -> None:
    reply = message.reply_channel
    with _lock:
        EVENTS.append(
            {
                "channel": message.channel,
                "id": message.id,
                "attempt": message.attempt,
                "content": message.content,
                "reply_channel": reply.name if reply else None,
                "at": time.time(),
                "thread": threading.current_thread().name,
                **extra,
            }
        )


def events(channel: str | None = None) -> list[dict]:
    with _lock:
        return [e for e in EVENTS if channel is None or e["channel"] == channel]


def recording_backoff(state) -> float:
    """A tenacity-style wait strategy: 50 ms, and remember which attempt asked."""
    with _lock:
        BACKOFF_CALLS.append(state.attempt_number)
    return 0.05


@taskchan.consumer("taskchan.c.ok")
def ok(message):
    record(message)
    if message.content.get("reply") and message.reply_channel is not None:
        message.reply_channel.send({"echo": message.content["reply"], "attempt": message.attempt})


@taskchan.consumer("taskchan.c.fail", max_attempts=3, backoff=recording_backoff)
def fail(message):
    record(message)
    raise ValueError(f"boom on attempt {message.attempt}")


@taskchan.consumer("taskchan.c.flaky", max_attempts=3, backoff=recording_backoff)
def flaky(message):
    record(message)
    if message.attempt < message.content.get("succeed_on", 2):
        raise RuntimeError(f"flaky failure on attempt {message.attempt}")


@taskchan.consumer("taskchan.c.retry", max_attempts=3)
def explicit_retry(message):
    record(message)
    if message.attempt == 1:
        raise taskchan.Retry(delay=float(message.content.get("delay", 0.2)))


@taskchan.consumer("taskchan.c.retry_always", max_attempts=2)
def retry_always(message):
    record(message)
    raise taskchan.Retry(delay=0.01)


@taskchan.consumer("taskchan.c.reject", max_attempts=5)
def reject(message):
    record(message)
    raise taskchan.Reject("not for us")


@taskchan.consumer("taskchan.c.reject_short_lease", max_attempts=5, visibility_timeout=0.5)
def reject_short_lease(message):
    """Rejects, with a lease short enough that a message left leased comes back within the test."""
    record(message)
    raise taskchan.Reject("not for us")


@taskchan.consumer("taskchan.c.many", max_attempts=5, backoff=lambda state: 0.01)
def many(message):
    """Fails every time; lives long (5 attempts) unless send(max_attempts=...) says otherwise."""
    record(message)
    raise RuntimeError(f"failure {message.attempt}")


@taskchan.consumer("taskchan.c.poison", max_attempts=3, backoff=lambda state: 0.05)
def poison(message):
    record(message)
    raise RuntimeError("poison message always fails")


@taskchan.consumer("taskchan.c.async")
async def async_ok(message):
    await asyncio.sleep(0.01)
    record(message, on_loop=_on_running_loop())


def _on_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@taskchan.consumer("taskchan.c.fixable")
def fixable(message):
    """Rejects its messages until a test sets STATE["fixed"] (a bug fixed, a resend)."""
    record(message)
    if not STATE["fixed"]:
        raise taskchan.Reject("not fixed yet")


@taskchan.consumer("taskchan.c.user")
def user_lookup(message):
    """Looks up the row the sender wrote in the same transaction as send_on_commit."""
    from django.contrib.auth import get_user_model

    found = get_user_model().objects.filter(pk=message.content["user_id"]).exists()
    record(message, found=found)


@taskchan.consumer("taskchan.c.cancel_aware", max_attempts=3, visibility_timeout=0.6)
def cancel_aware(message):
    """Waits (at most 10 s) until its message is cancelled, records it, then ends through check_cancelled()."""
    record(message, phase="started")
    deadline = time.monotonic() + 10
    while not message.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    record(message, phase="saw cancel" if message.cancelled else "timed out")
    message.check_cancelled()


@taskchan.consumer("taskchan.c.near_limit", max_attempts=1, time_limit=0.2)
def near_limit(message):
    """Runs content["ms"] milliseconds in short steps: under, at or past its 200 ms limit."""
    deadline = time.monotonic() + message.content["ms"] / 1000
    while time.monotonic() < deadline:
        time.sleep(0.002)
    record(message)


@taskchan.consumer("taskchan.c.result", result_ttl=600)
def keeps_result(message):
    """Keeps its return value: the content's numbers added up, or an object JSON cannot hold."""
    record(message)
    if message.content.get("unserializable"):
        return {"when": object()}
    return {"sum": sum(message.content.get("numbers", []))}


GATE = threading.Event()  # a test sets it to let taskchan.c.gated finish


@taskchan.consumer("taskchan.c.gated")
def gated(message):
    """Runs until a test opens GATE (so the test can see it running)."""
    record(message)
    GATE.wait(20)
