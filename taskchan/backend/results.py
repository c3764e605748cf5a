"""A task's ``TaskResult``, read from its message's status record (``taskchan/tracking.py``).

The record says the state; the task, its arguments and backend alias are what
``enqueue`` kept in it (its ``x`` field).  A retrying task reads READY with the
errors so far; a dead-lettered one FAILED.
"""

from __future__ import annotations

import dataclasses
import json

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils.module_loading import import_string

from .. import tracking
from ..models import FailedMessage

#: re-sends of one dead letter followed at most (each from the admin: a handful)
MAX_RESENDS_FOLLOWED = 20

#: message state -> task status; a state not listed (a message that ended some
#: other way, such as cancelled) reads FAILED: it will not run and gave no value
STATUSES = {
    tracking.QUEUED: TaskResultStatus.READY,
    tracking.SCHEDULED: TaskResultStatus.READY,
    tracking.RUNNING: TaskResultStatus.RUNNING,
    tracking.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
}


def update(result: TaskResult, **values) -> None:
    """Set fields of a TaskResult this backend is still building (Django's is frozen):
    its id once its message is stored, its status and times as it runs."""
    for name, value in values.items():
        object.__setattr__(result, name, value)


def kept_task(kept: str | None) -> dict | None:
    """What enqueue kept in the record, or None when it is not a task's."""
    try:
        content = json.loads(kept) if kept else None
    except ValueError:
        return None
    if not isinstance(content, dict) or not {"task", "args", "kwargs", "backend"} <= content.keys():
        return None
    return content


def load_task(path: str) -> Task:
    """The module-level task at ``path`` (what ``@task`` made)."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ValueError(f"the task {path!r} cannot be imported here ({exc})") from exc
    if not isinstance(found, Task):
        raise ValueError(f"{path!r} is not a task (decorate the function with @task)")
    return found


def resent_as(found: tracking.MessageStatus) -> str:
    """The id a dead-lettered task was re-sent as from the admin (``FailedMessage.retried_as``), or ''."""
    if found.state != tracking.FAILED:
        return ""
    row = FailedMessage.objects.filter(message_id=found.id).exclude(retried_as="").only("retried_as").first()
    return row.retried_as if row else ""


def continued(found: tracking.MessageStatus, later: tracking.MessageStatus) -> tracking.MessageStatus:
    """``found``, re-sent from the admin as ``later``: one task, whose attempts went on in ``later``.

    A task's result id stays the one ``enqueue`` returned: its state is the
    re-sent message's, its errors and workers are those of both.
    """
    if later.state == tracking.UNKNOWN:
        return found  # the re-sent message's record expired: what is known is the dead letter
    return dataclasses.replace(
        later, id=found.id, kept=found.kept, enqueued_at=found.enqueued_at,
        started_at=found.started_at or later.started_at, errors=[*found.errors, *later.errors],
        worker_ids=[*found.worker_ids, *later.worker_ids], attempts=found.attempts + later.attempts,
    )


def task_result(found: tracking.MessageStatus) -> TaskResult:
    """The TaskResult of the message ``found``; TaskResultDoesNotExist when it is no task's (or expired)."""
    content = kept_task(found.kept)
    if found.state == tracking.UNKNOWN or content is None:
        raise TaskResultDoesNotExist(
            f"no task result {found.id!r}: never enqueued, or kept longer ago than TASKCHAN_RESULT_TTL"
        )
    task = load_task(content["task"]).using(
        queue_name=content.get("queue"), priority=content.get("priority")
    )
    status = STATUSES.get(found.state, TaskResultStatus.FAILED)
    result = TaskResult(
        task=task, id=found.id, status=status,
        enqueued_at=found.enqueued_at, started_at=found.started_at, finished_at=found.finished_at,
        last_attempted_at=found.last_attempted_at, args=content["args"], kwargs=content["kwargs"],
        backend=content["backend"], worker_ids=list(found.worker_ids),
        errors=[
            TaskError(exception_class_path=e.get("type", ""), traceback=e.get("traceback") or e.get("message", ""))
            for e in found.errors
        ],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", found.result)
    return result
