"""Consumers of the time-limit and cancel tests (``tests/failure_windows/test_time_limits.py``,
``test_cancel.py``), run by real worker processes.  Records go to the test
Redis as in ``tests/jobs.py``: ``t:started`` and ``t:done`` get
``"<message id>|<attempt>|<pid>"``; ``t:cancel_seen`` when a job saw
``message.cancelled`` turn true.
"""

import asyncio
import os
import threading
import time

import taskchan
from tests.jobs import rec

#: how long the looping jobs run when nothing stops them: far past every limit
RUNAWAY_SECONDS = 30.0


def _mark(key: str, message) -> None:
    rec().rpush(key, f"{message.id}|{message.attempt}|{os.getpid()}")


def _loop(message, seconds: float = RUNAWAY_SECONDS) -> None:
    """Python code that runs on (short sleeps: the time-limit exception lands between them)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)


@taskchan.consumer("taskchan.tl.loop", max_attempts=1, time_limit=0.5)
def tl_loop(message):
    """Runs far past its 0.5 s limit unless content["quick"]."""
    _mark("t:started", message)
    if not message.content.get("quick"):
        _loop(message)
    _mark("t:done", message)


@taskchan.consumer("taskchan.tl.retried", max_attempts=3, time_limit=0.5, backoff=lambda state: 0.05)
def tl_retried(message):
    """Runs past its limit on attempt 1; succeeds at once on attempt 2."""
    _mark("t:started", message)
    if message.attempt == 1:
        _loop(message)
    _mark("t:done", message)


@taskchan.consumer("taskchan.tl.async", max_attempts=1, time_limit=0.5)
async def tl_async(message):
    _mark("t:started", message)
    await asyncio.sleep(RUNAWAY_SECONDS)
    _mark("t:done", message)


@taskchan.consumer("taskchan.tl.stuck", max_attempts=1, time_limit=0.3)
def tl_stuck(message):
    """Blocks inside C for good: acquiring a lock it already holds ignores the time-limit exception."""
    _mark("t:started", message)
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()


@taskchan.consumer("taskchan.tl.swallow", max_attempts=2, time_limit=0.5, visibility_timeout=1)
def tl_swallow(message):
    """Catches its time-limit exception and runs on for 4 s (abandoned only after TASKCHAN_STUCK_AFTER)."""
    _mark("t:started", message)
    try:
        _loop(message)
    except taskchan.TimeLimitExceeded:
        _loop(message, 4.0)


@taskchan.consumer("taskchan.tl.cancel_aware", max_attempts=3, visibility_timeout=1)
def tl_cancel_aware(message):
    """Works until its message is cancelled (at most 20 s), then stops through check_cancelled()."""
    _mark("t:started", message)
    deadline = time.monotonic() + 20
    while not message.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    if message.cancelled:
        _mark("t:cancel_seen", message)
    message.check_cancelled()
    _mark("t:done", message)


@taskchan.consumer("taskchan.tl.progress_until_cancelled", max_attempts=3, visibility_timeout=1)
def tl_progress_until_cancelled(message):
    """Reports progress through ``message.progress()`` for at most 20 s: a cancel stops it there."""
    _report_for_a_while(message, message.progress)


@taskchan.consumer("taskchan.tl.report_until_cancelled", max_attempts=3, visibility_timeout=1)
def tl_report_until_cancelled(message):
    """The same through ``taskchan.report_progress()`` (the ``@task`` path: no ``message`` at hand)."""
    _report_for_a_while(message, taskchan.report_progress)


def _report_for_a_while(message, report) -> None:
    _mark("t:started", message)
    deadline = time.monotonic() + 20
    step = 0
    while time.monotonic() < deadline:
        report(step, 1000)  # raises taskchan.Cancelled once the message is cancelled
        step = min(step + 1, 1000)
        time.sleep(0.02)
    _mark("t:done", message)
