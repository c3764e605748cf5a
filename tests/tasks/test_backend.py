"""taskchan as a django.tasks backend, through Django's own API, with real worker processes.

Tasks live in ``tests/tasks/jobs.py`` (queues ``t`` and ``t-order``); a worker
subprocess (``runworker 'taskchan.tasks.*'``) runs them, and this process
reads their results, as a web process would.
"""

from __future__ import annotations

import datetime
import signal
import time

import pytest
from django.contrib.auth import get_user_model
from django.tasks import TaskResultStatus, task_backends
from django.tasks.exceptions import TaskResultDoesNotExist
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskchan.models import FailedMessage
from tests.servers import wait_for
from tests.tasks import jobs

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = "taskchan.tasks.*"


def finished(result, timeout=30):
    wait_for(lambda: result.refresh() or result.is_finished, timeout=timeout, message=f"task {result.id} to finish")
    return result


@pytest.fixture(params=["redis", "cluster"])
def layout(request, worker):
    """The Redis layer, or taskchan's channels on a Redis Cluster (results are kept on both:
    docs/status.md); a factory that starts a worker process on the same one."""
    if request.param == "redis":
        request.getfixturevalue("use_redis_layer")
        return worker
    cluster = request.getfixturevalue("use_cluster_layer")
    return lambda *channels: worker(*channels, TASKCHAN_REDIS_CLUSTER_URL=cluster.url)


def test_capability_flags():
    backend = task_backends["default"]
    assert type(backend).__module__ == "taskchan.backend.backend"
    assert backend.supports_defer and backend.supports_async_task and backend.supports_get_result
    assert backend.supports_priority


def test_enqueued_task_runs_in_a_worker_and_its_result_is_read_here(layout):
    worker = layout
    result = jobs.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and result.attempts == 0
    proc = worker(TASKS)
    finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.attempts == 1 and len(result.worker_ids) == 1 and str(proc.proc.pid) in result.worker_ids[0]
    assert result.enqueued_at <= result.started_at <= result.finished_at
    again = jobs.add.get_result(result.id)  # a fresh read, as another process would
    assert (again.status, again.return_value, again.args) == (TaskResultStatus.SUCCESSFUL, 5, [2, 3])


def test_transitions_ready_running_successful_seen_from_here(use_redis_layer, worker):
    result = jobs.slow.enqueue(1.5, "watched")
    assert jobs.slow.get_result(result.id).status == TaskResultStatus.READY
    worker(TASKS)
    wait_for(lambda: jobs.slow.get_result(result.id).status == TaskResultStatus.RUNNING, timeout=20,
             message="RUNNING")
    running = jobs.slow.get_result(result.id)
    assert running.started_at is not None and running.finished_at is None
    finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "watched"


def test_retries_then_failed_with_both_errors(layout):
    worker = layout
    result = jobs.always_fails.enqueue("doomed")
    worker(TASKS)
    finished(result)
    assert result.status == TaskResultStatus.FAILED and result.attempts == 2
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 2
    assert result.errors[0].exception_class is ValueError
    assert all("doomed failed" in e.traceback and "Traceback" in e.traceback for e in result.errors)
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert FailedMessage.objects.filter(message_id=result.id, channel="taskchan.tasks.t").exists()


def test_a_dead_lettered_task_retried_from_the_admin_ends_successful(layout, redis_client):
    worker = layout
    result = jobs.fixable.enqueue("admin")
    worker(TASKS)
    finished(result)
    assert result.status == TaskResultStatus.FAILED
    row = wait_for(lambda: FailedMessage.objects.filter(message_id=result.id).first(), message="dead letter")
    redis_client.set("t:fixed", "1")
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    response = client.post(
        reverse("admin:taskchan_failedmessage_changelist"),
        {"action": "retry_selected", "_selected_action": [row.pk]},
    )
    assert response.status_code == 302
    wait_for(lambda: jobs.fixable.get_result(result.id).status == TaskResultStatus.SUCCESSFUL, timeout=30,
             message="SUCCESSFUL after the admin's retry")
    done = jobs.fixable.get_result(result.id)
    assert done.return_value == {"fixed": "admin"}
    assert done.attempts == 2 and [e.exception_class_path for e in done.errors] == ["builtins.RuntimeError"]


def test_run_after_waits_for_its_time(use_redis_layer, worker, redis_client):
    worker(TASKS)
    at = timezone.now() + datetime.timedelta(seconds=2)
    result = jobs.at_time.using(run_after=at).enqueue("later")
    assert jobs.at_time.get_result(result.id).status == TaskResultStatus.READY
    finished(result)
    [record] = redis_client.lrange("t:at", 0, -1)
    assert float(record.split("|")[1]) >= at.timestamp()


def test_async_task_runs_on_the_worker_loop(use_redis_layer, worker):
    result = jobs.async_add.enqueue(4, 5)
    worker(TASKS)
    finished(result)
    value = result.return_value
    assert value["sum"] == 9
    assert value["loop_tasks"] > 0  # the fetcher, acker and upkeep tasks share its loop


def test_context_and_a_result_json_cannot_hold(use_redis_layer, worker):
    with_context = jobs.attempt_of.enqueue("ctx")
    bad = jobs.not_json.using().enqueue()
    worker(TASKS)
    finished(with_context)
    assert with_context.return_value == {"tag": "ctx", "attempt": 1, "id": with_context.id}
    finished(bad, timeout=60)
    assert bad.status == TaskResultStatus.FAILED
    assert bad.errors[-1].exception_class_path == "taskchan.exceptions.ResultNotSerializable"


def test_a_killed_workers_task_runs_again_with_two_worker_ids(use_redis_layer, worker, redis_client):
    result = jobs.slow.enqueue(3, "survivor")
    first = worker(TASKS, TASKCHAN_VISIBILITY_TIMEOUT="2")
    wait_for(lambda: redis_client.llen("t:task-started") == 1, timeout=20, message="the first start")
    wait_for(lambda: len(jobs.slow.get_result(result.id).worker_ids) == 1, message="the start recorded")
    first.signal(signal.SIGKILL)
    first.wait()
    second = worker(TASKS, TASKCHAN_VISIBILITY_TIMEOUT="2")
    finished(result, timeout=40)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "survivor"
    assert result.attempts == 2 and len(set(result.worker_ids)) == 2
    assert str(first.proc.pid) in result.worker_ids[0] and str(second.proc.pid) in result.worker_ids[1]


def test_enqueue_from_a_view_and_read_from_another(use_redis_layer, worker):
    client = Client()
    response = client.post(reverse("enqueue-task"), {"text": "three little words"})
    assert response.status_code == 202
    result_id = response.json()["id"]
    worker("taskchan.tasks.default")
    wait_for(lambda: client.get(reverse("task-result", args=[result_id])).json()["status"] == "SUCCESSFUL",
             timeout=30, message="the view's task")
    body = client.get(reverse("task-result", args=[result_id])).json()
    assert body["return_value"] == {"words": 3, "characters": 18} and body["attempts"] == 1


def test_enqueue_from_a_shell_and_read_here(use_redis_layer, manage, worker, redis_url):
    shell = manage(
        ["shell", "-c", "from tests.tasks import jobs; print('id=' + jobs.add.enqueue(20, 22).id)"],
        redis_url=redis_url,
    )
    assert shell.wait(60) == 0, shell.output()
    [result_id] = [line[3:] for line in shell.output().splitlines() if line.startswith("id=")]
    assert jobs.add.get_result(result_id).status == TaskResultStatus.READY
    worker(TASKS)
    result = finished(jobs.add.get_result(result_id))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


def test_unknown_and_expired_ids_do_not_exist(layout, settings):
    for never_sent in ("0" * 32, "0" * 32 + "-k2q", "not an id"):
        with pytest.raises(TaskResultDoesNotExist):
            jobs.add.get_result(never_sent)
    settings.TASKCHAN_RESULT_TTL = 1
    settings.TASKCHAN_STATUS_TTL = 0
    settings.TASKS = {**settings.TASKS}  # a new backend: its queues' consumers keep results 1 s
    result = jobs.add.enqueue(1, 1)
    assert jobs.add.get_result(result.id).status == TaskResultStatus.READY
    time.sleep(1.3)
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(result.id)
