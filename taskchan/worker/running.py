"""The jobs running now: when each must end (its time limit) and whether its message was cancelled.

Job threads and runner tasks (``jobs.py``) enter a job here when it starts
and take it out when it ends.  The watchdog (``time_limits.py``) reads the
deadlines; upkeep (``upkeep.py``) renews no lease past its job's deadline and
tells running jobs their message was cancelled.  A lock guards the table: the
watchdog raises a job's time-limit exception only while the job is still in
it, so the exception can never land in a thread that has moved on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .attempt import Outcome


@dataclass(eq=False)
class Job:
    result: Outcome
    deadline: float | None  # time.monotonic() by which it must end; None: no limit
    thread: threading.Thread | None  # the job thread running it; None for a runner task
    interrupted_at: float | None = None  # when the time-limit exception was raised in its thread
    abandoned: bool = False  # stuck past the limit: its outcome was reported for it, its thread replaced
    ended: bool = field(default=False, repr=False)

    @property
    def message_id(self) -> str:
        return self.result.envelope.id


class Running:
    def __init__(self):
        self.lock = threading.Lock()
        self._jobs: dict[tuple, Job] = {}  # Delivery.key -> job

    def start(self, result: Outcome, time_limit: float | None, thread: threading.Thread | None = None) -> Job:
        deadline = None if time_limit is None else time.monotonic() + time_limit
        job = Job(result, deadline, thread)
        with self.lock:
            self._jobs[result.delivery.key] = job
        return job

    def end(self, job: Job) -> bool:
        """The job returned; False when it had been abandoned (its outcome is no longer its thread's to report)."""
        with self.lock:
            job.ended = True
            if self._jobs.get(job.result.delivery.key) is job:
                del self._jobs[job.result.delivery.key]
            return not job.abandoned

    def jobs(self) -> list[Job]:
        with self.lock:
            return list(self._jobs.values())

    def holds(self, key: tuple) -> bool:
        """Whether delivery ``key`` is running now."""
        return key in self._jobs

    def past_limit(self, key: tuple) -> bool:
        """Whether the job holding delivery ``key`` ran past its deadline (its lease is not renewed)."""
        job = self._jobs.get(key)
        return job is not None and job.deadline is not None and time.monotonic() >= job.deadline

    def on_partition(self, index: int) -> dict[str, Job]:
        """message id -> running job, for the deliveries leased on partition ``index``."""
        with self.lock:
            return {job.message_id: job for key, job in self._jobs.items() if key[0] == index}

    def abandon(self, job: Job) -> bool:
        """Take a stuck job out of the table; False if it ended meanwhile."""
        with self.lock:
            if job.ended:
                return False
            job.abandoned = True
            self._jobs.pop(job.result.delivery.key, None)
            return True
