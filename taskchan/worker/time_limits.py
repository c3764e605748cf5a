"""Time limits: a job past its consumer's ``time_limit`` is interrupted, and a thread that will not stop is abandoned.

- An ``async def`` job is cancelled at its limit (``attempt.acall``, ``asyncio.timeout``).
- A plain job's thread gets ``TimeLimitExceeded`` raised in it by the
  watchdog thread (CPython's ``PyThreadState_SetAsyncExc``, as Dramatiq's
  time-limit middleware does).  The exception lands the next time the thread
  runs Python code: a thread blocked inside C (a ``recv`` on a silent socket,
  a lock that is never released, one long ``time.sleep``) only sees it when
  that call returns.
- A thread still in the job ``TASKCHAN_STUCK_AFTER`` seconds after the
  exception was raised is *abandoned*: the attempt is reported as failed with
  ``TimeLimitExceeded`` (retried or dead-lettered by the usual rules), and a
  fresh job thread takes its place, so the worker keeps its capacity.  If the
  stuck thread ever returns, its outcome is dropped and it exits.
- Once ``TASKCHAN_MAX_STUCK_THREADS`` abandoned threads are still stuck, the
  worker stops gracefully and ``runworker`` exits with ``EXIT_STUCK`` so that
  its supervisor starts a fresh process (stuck threads cannot be killed).

Why the abandoned attempt is settled as failed rather than left to its lease:
the worker knows exactly what happened, so the dead letter (or the retry's
recorded error) says "time limit" instead of "worker lost", the retry follows
the consumer's backoff instead of waiting for the lease to lapse, and the
lease, no longer renewed past the limit, would lapse anyway.  Either way the
stuck code may still finish later, beside the retry: at-least-once, as for
any job that outlives its lease.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable

from ..exceptions import TimeLimitExceeded
from . import attempt, lifeline
from .attempt import Outcome
from .running import Job, Running

logger = logging.getLogger("taskchan.worker")

#: seconds between the watchdog's looks at the running jobs: how late past its
#: limit a job may be interrupted
WATCH_INTERVAL = 0.1
#: runworker's exit status when too many job threads are stuck (EX_TEMPFAIL:
#: try again, in a fresh process)
EXIT_STUCK = 75


def interrupt(thread: threading.Thread) -> bool:
    """Raise ``TimeLimitExceeded`` in ``thread`` the next time it runs Python code; False if it is gone."""
    ident = ctypes.c_ulong(thread.ident)
    count = ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, ctypes.py_object(TimeLimitExceeded))
    if count > 1:  # cannot happen for one ident; CPython's documented way back if it ever does
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, None)
    return count == 1


def run_in_thread(running: Running, result: Outcome) -> bool:
    """In a job thread: the attempt under its time limit; False if it was abandoned meanwhile."""
    job = running.start(result, result.consumer.time_limit, threading.current_thread())
    try:
        try:
            attempt.call(result)
        finally:
            ours = running.end(job)
        # The watchdog may have raised the exception while this thread waited
        # for the table's lock in end(): it lands at the next Python call, which
        # must be this one, not one in the job thread's loop (that would end it).
        _checkpoint()
    except TimeLimitExceeded as exc:
        # Raised after the consumer returned, before the job left the table:
        # it did run past its limit.
        ours = running.end(job)
        attempt.failed(result, exc)
    return ours


def _checkpoint() -> None:
    """A Python call: CPython raises a pending asynchronous exception on entering one."""


async def run_on_loop(running: Running, result: Outcome) -> None:
    """On the loop: an ``async def`` attempt, cancelled at its time limit."""
    job = running.start(result, result.consumer.time_limit)
    try:
        await attempt.acall(result, result.consumer.time_limit)
    finally:
        running.end(job)


class Watchdog:
    """One thread: interrupts plain jobs at their deadline and abandons those that do not stop."""

    def __init__(
        self,
        running: Running,
        *,
        stuck_after: float,
        max_stuck: int,
        replace: Callable[[Job, Outcome], None],
        too_many_stuck: Callable[[int], None],
    ):
        self._running = running
        self._stuck_after = stuck_after
        self._max_stuck = max_stuck
        self._replace = replace  # starts a fresh job thread and reports the abandoned job's outcome
        self._too_many_stuck = too_many_stuck
        self._stuck: list[threading.Thread] = []
        self._gave_up = False
        self._stop = threading.Event()

    def start(self, on_death) -> None:
        target = lifeline.guarded_thread_target(self._main, "time-limit watchdog", on_death)
        threading.Thread(target=target, name="taskchan-time-limits", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stuck(self) -> int:
        """Abandoned threads still stuck in their job."""
        return sum(t.is_alive() for t in self._stuck)

    def _main(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        for job in self._running.jobs():
            if job.thread is None or job.deadline is None or now < job.deadline:
                continue
            if job.interrupted_at is None:
                self._interrupt(job, now)
            elif now >= job.interrupted_at + self._stuck_after and self._running.abandon(job):
                self._abandon(job)
        self._stuck = [t for t in self._stuck if t.is_alive()]
        if len(self._stuck) >= self._max_stuck and not self._gave_up:
            self._gave_up = True
            self._too_many_stuck(len(self._stuck))

    def _interrupt(self, job: Job, now: float) -> None:
        with self._running.lock:
            if job.ended:  # it returned meanwhile: the exception must not reach its next job
                return
            job.interrupted_at = now
            interrupt(job.thread)
        logger.warning(
            "time limit: channel=%s message=%s ran past %.3gs; interrupting it",
            job.result.delivery.channel, job.message_id, job.result.consumer.time_limit,
        )

    def _abandon(self, job: Job) -> None:
        self._stuck.append(job.thread)
        logger.error(
            "time limit: channel=%s message=%s is still running %.3gs after it was interrupted (blocked "
            "inside C?); abandoning thread %s and starting a fresh one (%d stuck, the worker stops at %d)",
            job.result.delivery.channel, job.message_id, self._stuck_after, job.thread.name,
            len(self._stuck), self._max_stuck,
        )
        exc = TimeLimitExceeded(
            f"the job ran past its time limit of {job.result.consumer.time_limit:g} s and did not stop "
            f"{self._stuck_after:g} s after it was interrupted (blocked inside C?): its thread was abandoned"
        )
        abandoned = Outcome(
            job.result.delivery, envelope=job.result.envelope, consumer=job.result.consumer,
            attempt=job.result.attempt, max_attempts=job.result.max_attempts, exc=exc,
            traceback=f"{type(exc).__name__}: {exc}",
        )
        self._replace(job, abandoned)
