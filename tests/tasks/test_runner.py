"""The worker side's resolving of a message's task: cached per (task, queue, priority, backend), checked as uncached."""

from __future__ import annotations

import pytest
from django.tasks.exceptions import InvalidTask

from taskchan.backend import TaskchanBackend
from taskchan.backend.runner import resolved_task
from tests.tasks import jobs

PATH = "tests.tasks.jobs.add"


def content(queue="t", priority=0, task=PATH, backend="default"):
    return {"task": task, "args": [1, 2], "kwargs": {}, "backend": backend, "queue": queue, "priority": priority}


def test_a_task_is_resolved_once_bound_to_its_queue_and_priority():
    task, sender = resolved_task(content(priority=7))
    assert (task.func, task.queue_name, task.priority) == (jobs.add.func, "t", 7)
    assert sender is TaskchanBackend
    assert resolved_task(content(priority=7))[0] is task  # kept, not copied again
    assert resolved_task(content(priority=8))[0].priority == 8
    assert resolved_task(content(queue="default"))[0].queue_name == "default"


@pytest.mark.parametrize("priority", [1.0, True, [1], {"p": 1}, "1", 101])
def test_a_priority_resolves_as_using_would_even_after_an_equal_one(priority):
    """1.0 and True hash as 1 does: a cache keyed loosely would hand them the task made for 1."""
    assert type(resolved_task(content(priority=1))[0].priority) is int
    try:
        expected = jobs.add.using(queue_name="t", priority=priority)
    except Exception as exc:  # whatever using() raises, resolving raises too
        with pytest.raises(type(exc)):
            resolved_task(content(priority=priority))
        return
    task = resolved_task(content(priority=priority))[0]
    assert (type(task.priority), task.priority) == (type(expected.priority), expected.priority)


def test_a_change_of_tasks_setting_is_seen(settings):
    assert resolved_task(content(queue="t-order"))[0].queue_name == "t-order"
    settings.TASKS = {"default": {"BACKEND": "taskchan.backend.TaskchanBackend", "QUEUES": ["t"]}}
    with pytest.raises(InvalidTask, match="Queue 't-order' is not valid"):
        resolved_task(content(queue="t-order"))


def test_a_task_that_cannot_be_imported_is_an_error_each_time():
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot be imported here"):
            resolved_task(content(task="tests.tasks.jobs.no_such_task"))
