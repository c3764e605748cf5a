"""Spare job threads: of a worker's ``concurrency`` threads, only as many take work as it needs.

Every job thread that finds the queue empty would otherwise block on it, and
each job put there would wake one of them.  Four threads then take turns at
the GIL for jobs that take microseconds: each hand-over is a futex wake and a
context switch, and on two cores they crowd out the producer and Redis.  With
``--concurrency 4`` the benchmark's worker used a fifth more CPU per job than
with 1, for the same jobs.

So one idle thread at a time waits on the queue; the others park.  A parked
thread is woken when work waits: the loop checks every ``WAKE_AFTER`` seconds
while jobs are queued and threads are parked, and wakes one when a job that
was queued at the last check has still not been taken.  Jobs that block (a
query, an HTTP call, ``time.sleep``) so get every thread within a few checks;
jobs one thread keeps up with run on that thread.  A stop wakes them all.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

#: seconds a queued job may wait behind busy threads before a parked one is woken
WAKE_AFTER = 0.005


class Spares:
    """Which idle job thread waits on the queue, the parked ones, and when one is woken."""

    def __init__(self, queued: Callable[[], int]):
        self._queued = queued  # jobs waiting in the queue now (its qsize)
        self._lock = threading.Lock()
        self._waiting = False  # an idle thread is blocked on the queue
        self._parked: list[threading.Event] = []
        self._stopping = False
        self.taken = 0  # jobs taken from the queue so far (a lost increment only wakes a thread early)
        self._seen = (0, 0)  # (taken, queued) at the last check
        self._timer: asyncio.TimerHandle | None = None

    # -- from job threads ---------------------------------------------------------

    def idle(self, wake: threading.Event) -> bool:
        """The calling thread found the queue empty.  True: it is the one to block on the queue
        (and calls ``got`` when that returns); False: look again (it was parked on ``wake``
        and woken, or a job has come)."""
        with self._lock:
            if self._stopping or not self._waiting:
                self._waiting = True
                return True
            # Park first, then look at the queue.  The loop queues a job and then reads
            # ``_parked`` (without this lock): a job queued before this look is seen here,
            # and one queued after it finds this thread parked and arms a wake.  Looking
            # first would let a job queued between the look and the parking arm nothing.
            wake.clear()
            self._parked.append(wake)
            if self._queued():
                self._parked.remove(wake)
                return False
        wake.wait()
        return False

    def got(self) -> None:
        """The thread that blocked on the queue has a job: the next idle thread takes its place."""
        with self._lock:
            self._waiting = False

    # -- from the loop ------------------------------------------------------------

    def submitted(self, loop: asyncio.AbstractEventLoop) -> None:
        """A job was queued: watch it while threads are parked."""
        if self._timer is None and self._parked:
            self._seen = (self.taken, self._queued())
            self._timer = loop.call_later(WAKE_AFTER, self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        taken, queued = self.taken, self._queued()
        taken_before, queued_before = self._seen
        if queued and taken - taken_before < queued_before:  # a job queued at the last check still waits
            self._wake_one()
        if queued and self._parked:
            self._seen = (taken, queued)
            self._timer = loop.call_later(WAKE_AFTER, self._check, loop)

    def _wake_one(self) -> None:
        with self._lock:
            wake = self._parked.pop() if self._parked else None
        if wake is not None:
            wake.set()

    def stop(self) -> None:
        """Wake every parked thread; from now on each idle thread blocks on the queue (for its stop)."""
        with self._lock:
            self._stopping = True
            parked, self._parked = self._parked, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for wake in parked:
            wake.set()
