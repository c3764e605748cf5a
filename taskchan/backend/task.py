"""The Task class of the taskchan backend: Django's ``Task`` plus retry options, and their checks.

On Django 6.1 ``@task(max_attempts=5, backoff=tenacity.wait_exponential())``
passes the extra keywords to the backend's ``task_class``; on 6.0 the same
defaults come from the backend's ``OPTIONS`` (``MAX_ATTEMPTS``, ``BACKOFF``).
Bad values are refused when the task is declared (``InvalidTask``), with
nothing enqueued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.tasks import Task
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend

from ..envelope import MAX_ATTEMPTS_LIMIT, MAX_NAME_LENGTH

#: the channel of queue Q is CHANNEL_PREFIX + Q
CHANNEL_PREFIX = "taskchan.tasks."
QUEUE_NAME_RE = re.compile(r"^[a-zA-Z0-9\-_.]+\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskchanTask(Task):
    """A Django task with taskchan's retry options (None: the backend's OPTIONS, then the settings)."""

    max_attempts: int | None = None  # attempts before the task reads FAILED (a dead letter)
    backoff: Any = None  # a tenacity wait strategy: the wait before each retry


def check_retry_options(max_attempts: Any, backoff: Any, where: str, error=InvalidTask) -> None:
    """``max_attempts`` None or 1..MAX_ATTEMPTS_LIMIT (not a bool); ``backoff`` None or callable."""
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
        or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT
    ):
        raise error(f"{where}max_attempts must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT:,}, got {max_attempts!r}")
    if backoff is not None and not callable(backoff):
        raise error(f"{where}backoff must be a tenacity wait strategy, e.g. tenacity.wait_exponential(), got {backoff!r}")


def channel_of(queue_name: str) -> str:
    return CHANNEL_PREFIX + queue_name


def check_queue_name(alias: str, queue_name: Any) -> str:
    """A queue name must make a taskchan channel name (``taskchan.tasks.Q``)."""
    longest = MAX_NAME_LENGTH - 1 - len(CHANNEL_PREFIX)
    if (
        not isinstance(queue_name, str) or not QUEUE_NAME_RE.match(queue_name)
        or ".." in queue_name or len(queue_name) > longest
    ):
        raise InvalidTaskBackend(
            f"TASKS[{alias!r}]['QUEUES'] holds {queue_name!r}: a taskchan queue name is 1 to {longest} "
            "ASCII letters, digits, '-', '_' and '.' (its tasks travel on the channel 'taskchan.tasks.<queue>')."
        )
    return queue_name
