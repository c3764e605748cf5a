"""Running a Django task in a taskchan worker: the consumer of every ``taskchan.tasks.*`` channel.

``register`` declares it for a queue's channel (the backend does, for each of
its QUEUES, in every process that loads the backend: ``apps.py`` loads the
configured ones at start-up, so ``runworker`` finds them).  ``run_task`` runs
one task: Django's signals ``task_started`` and ``task_finished``, the context
for ``takes_context`` tasks, an ``async def`` task handed to the worker's event
loop, and the return value kept as JSON in the status record
(``result_ttl``: TASKCHAN_RESULT_TTL).  A task that raises is retried by
taskchan as any consumer is, with the task's ``max_attempts`` (carried in the
message) and its ``backoff`` (``task_backoff``).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import traceback
from inspect import iscoroutinefunction

from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from ..conf import settings
from ..exceptions import ResultNotSerializable
from ..outcome import error_type
from ..registry import consumer
from ..retry import DEFAULT_BACKOFF
from ..worker.jobs import running_in
from .results import load_task, update

#: the path every taskchan backend in TASKS is named by
BACKEND_PATH = "taskchan.backend.TaskchanBackend"

#: (task, queue, priority, backend) combinations whose resolved task a worker keeps
RESOLVED_KEPT = 1024


def register(channel: str) -> None:
    """Declare ``run_task`` the consumer of ``channel`` (a queue's), keeping results TASKCHAN_RESULT_TTL."""
    consumer(channel, backoff=task_backoff, result_ttl=settings.RESULT_TTL)(run_task)


def register_configured() -> None:
    """Load every taskchan backend in TASKS, which registers its queues' consumers (``apps.py``)."""
    for alias, params in getattr(django_settings, "TASKS", {}).items():
        if isinstance(params, dict) and params.get("BACKEND") == BACKEND_PATH:
            task_backends[alias]


def task_backoff(state) -> float:
    """The wait before a retry: the task's ``backoff``, else its backend's OPTIONS, else taskchan's default.

    ``state.args[0]`` is the message's envelope (``retry.decide``).
    """
    wait = None
    if state.args:
        content = state.args[0].content
        try:
            task = load_task(content["task"])
            wait = getattr(task, "backoff", None) or task_backends[content["backend"]].backoff
        except Exception:  # the task or its backend is gone: taskchan's default wait
            wait = None
    return (wait or DEFAULT_BACKOFF)(state)


def _resolve(path, queue_name, priority, alias):
    """The task a message names, bound to its queue and priority, and its backend's class (the signals' sender)."""
    task = load_task(path).using(queue_name=queue_name, priority=priority)
    return task, type(task_backends[alias])


# ``using()`` copies and re-validates the task and the backend is looked up
# through a thread-local: about 15 µs an attempt, for an answer that changes
# only with the TASKS setting (``_forget_resolved``).  A failure is not cached;
# ``typed``: a priority of 1.0 or True is not the 1 a check passed.
_resolved = functools.lru_cache(maxsize=RESOLVED_KEPT, typed=True)(_resolve)


@receiver(setting_changed)
def _forget_resolved(*, setting, **kwargs):
    if setting == "TASKS":
        _resolved.cache_clear()


def resolved_task(content: dict):
    """``_resolve`` for a message's content, cached; a value JSON made unhashable (garbage) goes uncached,
    so its error is the one ``using()`` gives."""
    key = (content["task"], content.get("queue"), content.get("priority"), content["backend"])
    if any(isinstance(part, (list, dict)) for part in key):
        return _resolve(*key)
    return _resolved(*key)


def _now_from(timestamp: float) -> datetime.datetime:
    when = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return when if django_settings.USE_TZ else timezone.make_naive(when)


def _call(task, result: TaskResult, args, kwargs):
    if task.takes_context:
        args = [TaskContext(task_result=result), *args]
    if not iscoroutinefunction(task.func):
        return task.func(*args, **kwargs)
    where = running_in()
    if where is None:  # not in a worker's job thread (a test calling run_task): a loop of its own
        return async_to_sync(task.func)(*args, **kwargs)
    # On the worker's loop, as its async consumers run; this job thread waits for it.
    return asyncio.run_coroutine_threadsafe(task.func(*args, **kwargs), where[0]).result()


def run_task(message):
    """Run the task ``message`` carries; its JSON return value is the message's result."""
    content = message.content
    task, sender = resolved_task(content)
    where = running_in()
    started = timezone.now()
    result = TaskResult(
        task=task, id=message.id, status=TaskResultStatus.RUNNING, enqueued_at=_now_from(message.sent_at),
        started_at=started, last_attempted_at=started, finished_at=None,
        args=content["args"], kwargs=content["kwargs"], backend=content["backend"],
        errors=[], worker_ids=[where[1] if where else "local"] * message.attempt,
    )
    task_started.send(sender=sender, task_result=result)
    try:
        value = _call(task, result, content["args"], content["kwargs"])
        try:
            value = normalize_json(value)
        except TypeError as exc:
            raise ResultNotSerializable(
                f"task {task.module_path} returned a {type(value).__name__} that JSON cannot hold ({exc})"
            ) from None
    except Exception as exc:
        max_attempts = message.envelope.max_attempts or settings.MAX_ATTEMPTS
        if message.attempt >= max_attempts:  # no retry follows: the task has finished
            result.errors.append(TaskError(exception_class_path=error_type(exc), traceback=traceback.format_exc()))
            update(result, status=TaskResultStatus.FAILED, finished_at=timezone.now())
            task_finished.send(sender=sender, task_result=result)
        raise
    update(result, status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now(), _return_value=value)
    task_finished.send(sender=sender, task_result=result)
    return value
