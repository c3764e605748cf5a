"""``Task.priority`` through Django's task API: a single-threaded worker process runs the
higher-priority tasks first, though they were enqueued after the lower ones."""

from __future__ import annotations

import pytest
from django.tasks import task_backends

from tests.jobs import rec
from tests.servers import wait_for
from tests.tasks import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backend_supports_priority():
    assert task_backends["default"].supports_priority


def test_higher_priority_tasks_enqueued_later_run_first(use_redis_layer, worker):
    sent = [
        ("low-1", -10),
        ("zero-1", 0),
        ("low-2", -10),
        ("zero-2", 0),
        ("top-1", 50),
        ("mid", 10),
        ("top-2", 50),
    ]
    results = [jobs.ordered.using(priority=priority).enqueue(tag) for tag, priority in sent]
    assert [r.task.priority for r in results] == [p for _, p in sent]

    worker("taskchan.tasks.t-order", args=["--concurrency", "1"])

    wait_for(lambda: rec().llen("t:order") == len(sent), timeout=30, message="every task to run")
    ran = rec().lrange("t:order", 0, -1)
    assert ran == ["top-1", "top-2", "mid", "zero-1", "zero-2", "low-1", "low-2"]


async def test_aenqueue_keeps_the_priority(use_redis_layer, redis_client):
    await jobs.ordered.using(priority=0).aenqueue("plain")
    await jobs.ordered.using(priority=-7).aenqueue("low")
    levels = redis_client.zrange("taskchan:lv:taskchan.tasks.t-order", 0, -1)
    assert levels == ["-7"]
    assert redis_client.xlen("taskchan:q:taskchan.tasks.t-order:p-7") == 1
