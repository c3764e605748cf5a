"""``TaskchanBackend``: enqueueing Django tasks as taskchan messages, and reading their results.

Every capability flag is true, and means here:

- ``supports_defer``: ``run_after`` becomes the message's delay (its channel's
  scheduled set); a time already past runs now.
- ``supports_async_task``: an ``async def`` task runs on the worker's event
  loop (``runner.py``).
- ``supports_get_result``: the message's status record (``taskchan/tracking.py``)
  is the result, readable from any process for TASKCHAN_RESULT_TTL.
- ``supports_priority``: ``task.priority`` (-100 to 100, Django's bounds and
  taskchan's) is the message's priority: a task waiting on its queue runs
  before every one of lower priority (``taskchan/priority.py``).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from django.tasks.signals import task_enqueued
from django.utils import timezone

from .. import tracking
from ..exceptions import NotATaskchanLayer, TaskchanError
from ..producer import asend_stored, checked_outgoing, send_stored
from . import results, runner
from .task import TaskchanTask, channel_of, check_queue_name, check_retry_options

#: what a backend's OPTIONS may hold
OPTION_NAMES = ("MAX_ATTEMPTS", "BACKOFF")


class TaskchanBackend(BaseTaskBackend):
    task_class = TaskchanTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        if not self.queues:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['QUEUES'] is empty: list the queues, each is a channel workers serve by name."
            )
        for queue_name in self.queues:
            check_queue_name(alias, queue_name)
        unknown = sorted(set(self.options) - set(OPTION_NAMES))
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown option(s) {', '.join(unknown)}; "
                f"the taskchan backend reads {', '.join(OPTION_NAMES)}."
            )
        self.max_attempts = self.options.get("MAX_ATTEMPTS")
        self.backoff = self.options.get("BACKOFF")
        check_retry_options(self.max_attempts, self.backoff, f"TASKS[{alias!r}]['OPTIONS'] ", InvalidTaskBackend)
        for queue_name in sorted(self.queues):
            runner.register(channel_of(queue_name))

    def validate_task(self, task):
        super().validate_task(task)
        check_retry_options(
            getattr(task, "max_attempts", None), getattr(task, "backoff", None), f"Task {task.module_path}: "
        )

    # -- enqueueing -------------------------------------------------------------

    def _prepare(self, task, args, kwargs):
        """Every check, before anything is stored: (the outgoing message, the result it will be).

        The result normalises args and kwargs itself (``TaskResult.__post_init__``),
        which is also the check that they are JSON values: the message carries
        what it made of them.  Its id and enqueue time are set once the message is
        stored (``_enqueued``).
        """
        self.validate_task(task)
        try:
            result = TaskResult(
                task=task, id="", status=TaskResultStatus.READY, enqueued_at=None, started_at=None,
                finished_at=None, last_attempted_at=None, args=list(args), kwargs=dict(kwargs),
                backend=self.alias, errors=[], worker_ids=[],
            )
        except (TypeError, ValueError) as exc:
            raise InvalidTask(f"Task arguments must be JSON values: {exc}") from None
        content = {
            "task": task.module_path, "args": result.args, "kwargs": result.kwargs, "backend": self.alias,
            "queue": task.queue_name, "priority": task.priority,
        }
        delay = None
        if task.run_after is not None:
            delay = max(0.0, (task.run_after - timezone.now()).total_seconds())
        try:
            outgoing = checked_outgoing(
                channel_of(task.queue_name), content, delay,
                getattr(task, "max_attempts", None) or self.max_attempts,
            )
        except NotATaskchanLayer:  # the store, asked for the task's id: not the task's fault
            raise
        except (TaskchanError, ValueError, TypeError) as exc:
            raise InvalidTask(str(exc)) from exc
        return outgoing, result

    def _enqueued(self, result: TaskResult, message_id: str) -> TaskResult:
        results.update(result, id=message_id, enqueued_at=timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue(self, task, args, kwargs):
        outgoing, result = self._prepare(task, args, kwargs)
        message_id = send_stored(
            outgoing.envelope.channel, outgoing.raw, outgoing.envelope.id, delay_ms=outgoing.delay_ms,
            record=outgoing.content_json, priority=task.priority,
        )
        return self._enqueued(result, message_id)

    async def aenqueue(self, task, args, kwargs):
        outgoing, result = self._prepare(task, args, kwargs)
        message_id = await asend_stored(
            outgoing.envelope.channel, outgoing.raw, outgoing.envelope.id, delay_ms=outgoing.delay_ms,
            record=outgoing.content_json, priority=task.priority,
        )
        return self._enqueued(result, message_id)

    # -- results ------------------------------------------------------------------

    def get_result(self, result_id):
        found = tracking.status(str(result_id))
        for _ in range(results.MAX_RESENDS_FOLLOWED):  # retried from the admin: the result goes on there
            if not (later := results.resent_as(found)):
                break
            found = results.continued(found, tracking.status(later))
        return results.task_result(found)

    async def aget_result(self, result_id):
        found = await tracking.astatus(str(result_id))
        for _ in range(results.MAX_RESENDS_FOLLOWED):
            if not (later := await sync_to_async(results.resent_as)(found)):
                break
            found = results.continued(found, await tracking.astatus(later))
        return results.task_result(found)
