"""Handed-off channels run in a real Celery worker process (``celery -A project worker``).

Each test starts the worker as a subprocess on the test's Redis (the broker)
and database, sends with ``taskchan.send`` from this process, and counts what
the consumers in ``tests/jobs.py`` recorded (``"<message id>|<attempt>|<pid>"``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

import taskchan
from taskchan import handoff, resend
from taskchan.models import FailedMessage
from taskchan.progress.events import group_name
from taskchan.stores.configured import get_store
from tests.celery.conftest import VISIBILITY_TIMEOUT, queued_tasks
from tests.conftest import done_records, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def records(client, key, message_id):
    return [r for r in done_records(client, key) if r[0] == message_id]


def failed(message_id, timeout=20.0) -> FailedMessage:
    return wait_for(
        lambda: FailedMessage.objects.filter(message_id=message_id).first(),
        timeout=timeout,
        message=f"dead letter {message_id}",
    )


def test_handed_off_jobs_run_in_the_celery_worker(celery_worker, worker, redis_client):
    taskchan_worker = worker("taskchan.*")  # serves every registered channel, hand-off ones too
    celery = celery_worker()
    plain = taskchan.send("taskchan.t.record", {"n": 1})
    sync_id = taskchan.send("taskchan.cel.record", {"n": 2})
    async_id = taskchan.send("taskchan.cel.async", {"n": 3})
    sent_at = time.time()
    delayed = taskchan.send("taskchan.cel.record", {"n": 4}, delay=1.0)

    wait_for(lambda: len(done_records(redis_client)) == 4, timeout=30, message="4 jobs done")
    by_id = {r[0]: r for r in done_records(redis_client)}
    assert by_id[plain][2] == taskchan_worker.pid
    assert celery.pid not in (taskchan_worker.pid, os.getpid())
    for message_id in (sync_id, async_id, delayed):
        assert by_id[message_id][1:] == (1, celery.pid)
    # The delayed one ran no earlier than asked (Celery countdown).
    done_order = [r[0] for r in done_records(redis_client)]
    assert done_order.index(delayed) == 3
    assert time.time() - sent_at >= 1.0
    # Nothing went through taskchan's own stream.
    for channel in ("taskchan.cel.record", "taskchan.cel.async"):
        assert redis_client.xlen(get_store().keys.stream(channel)) == 0
    time.sleep(0.5)
    assert len(done_records(redis_client)) == 4  # once each


def test_retries_then_dead_letter_marked_as_run_under_celery(celery_worker, redis_client):
    celery = celery_worker()
    flaky = taskchan.send("taskchan.cel.flaky", {"succeed_on": 3})
    poison = taskchan.send("taskchan.cel.poison", {"n": 1})
    rejected = taskchan.send("taskchan.cel.reject", {"n": 1})
    # Published around taskchan.send with arguments that are not an envelope.
    handoff.celery_app().send_task(
        handoff.TASK_NAME, args=["taskchan.cel.record", "not json"], task_id="bad-1"
    )

    wait_for(lambda: records(redis_client, "t:done", flaky), timeout=30, message="flaky succeeds")
    assert [r[1] for r in records(redis_client, "t:started", flaky)] == [1, 2, 3]
    assert records(redis_client, "t:done", flaky) == [(flaky, 3, celery.pid)]
    assert not FailedMessage.objects.filter(message_id=flaky).exists()

    row = failed(poison)
    assert row.ran_under_celery
    assert row.reason == FailedMessage.Reason.EXHAUSTED
    assert (row.attempts, row.max_attempts) == (3, 3)
    assert row.consumer == "tests.jobs.cel_poison"
    assert row.content == {"n": 1}
    assert [(e["attempt"], e["type"]) for e in row.errors] == [
        (a, "builtins.ValueError") for a in (1, 2, 3)
    ]
    assert [e["message"] for e in row.errors] == [
        f"poison under Celery, attempt {a}" for a in (1, 2, 3)
    ]
    assert "poison under Celery, attempt 3" in row.traceback
    assert "Traceback" in row.traceback
    assert [r[1] for r in records(redis_client, "t:started", poison)] == [1, 2, 3]

    row = failed(rejected)
    assert row.ran_under_celery
    assert row.reason == FailedMessage.Reason.REJECTED
    assert row.attempts == 1
    assert row.errors[0]["type"] == "taskchan.exceptions.Reject"
    assert len(records(redis_client, "t:started", rejected)) == 1

    row = failed("malformed:taskchan.cel.record:bad-1")
    assert row.ran_under_celery
    assert row.reason == FailedMessage.Reason.MALFORMED
    assert row.raw == "not json"
    assert celery.running  # the worker keeps running


def test_task_of_a_sigkilled_worker_runs_again_on_another(celery_worker, redis_client):
    first = celery_worker()
    message_id = taskchan.send("taskchan.cel.slow", {"seconds": 2})
    wait_for(
        lambda: records(redis_client, "t:started", message_id), timeout=20, message="job start"
    )
    assert records(redis_client, "t:started", message_id) == [(message_id, 1, first.pid)]
    first.kill()  # SIGKILL mid-task: the task is neither acked nor finished
    killed_at = time.monotonic()
    assert first.proc.returncode == -signal.SIGKILL

    second = celery_worker()
    wait_for(
        lambda: records(redis_client, "t:done", message_id),
        timeout=VISIBILITY_TIMEOUT + 30,
        message="the job to run again on the second worker",
    )
    # It came back once the broker's visibility timeout lapsed; the lost start counts as attempt 1.
    assert time.monotonic() - killed_at >= VISIBILITY_TIMEOUT - 2.5
    assert records(redis_client, "t:started", message_id) == [
        (message_id, 1, first.pid),
        (message_id, 2, second.pid),
    ]
    assert records(redis_client, "t:done", message_id) == [(message_id, 2, second.pid)]
    assert not FailedMessage.objects.filter(message_id=message_id).exists()


def test_a_job_that_kills_every_worker_is_dead_lettered_as_worker_lost(celery_worker, redis_client):
    message_id = taskchan.send("taskchan.cel.crash", {"n": 1})  # max_attempts=2
    pids = []
    deadline = time.monotonic() + 90
    while not FailedMessage.objects.filter(message_id=message_id).exists():
        assert time.monotonic() < deadline, (
            f"not dead-lettered; starts: {records(redis_client, 't:started', message_id)}"
        )
        proc = celery_worker()
        pids.append(proc.pid)
        wait_for(
            lambda proc=proc: (
                not proc.running or FailedMessage.objects.filter(message_id=message_id).exists()
            ),
            timeout=VISIBILITY_TIMEOUT + 30,
            message="the job to kill its worker or be dead-lettered",
        )
    row = FailedMessage.objects.get(message_id=message_id)
    assert row.ran_under_celery
    assert row.reason == FailedMessage.Reason.WORKER_LOST
    assert (row.attempts, row.max_attempts) == (2, 2)
    assert row.errors[-1]["type"] == "taskchan.WorkerLost"
    starts = records(redis_client, "t:started", message_id)
    assert [s[1] for s in starts] == [1, 2]
    assert [s[2] for s in starts] == pids[:2]
    assert len(pids) == 3  # two workers killed by the job, the third dead-lettered it


def test_hand_to_celery_runs_a_real_dead_letter_in_the_celery_worker(
    celery_worker, manage, redis_client, redis_url
):
    # A plain taskchan channel fails under a taskchan worker and is dead-lettered ...
    redis_client.set("t:fail", "1")
    message_id = taskchan.send("taskchan.cel.toggle", {"order": 7})
    burst = manage(["runworker", "taskchan.cel.toggle", "--burst"], redis_url=redis_url)
    assert burst.wait(60) == 0, burst.output()
    row = FailedMessage.objects.get(message_id=message_id)
    assert not row.ran_under_celery and row.retried_at is None

    # ... the cause is fixed, and the admin hands it to Celery.
    redis_client.delete("t:fail")
    celery = celery_worker()
    assert handoff.celery_configured()
    new_id = resend.hand_to_celery(row)
    assert new_id != message_id
    row.refresh_from_db()
    assert row.retried_as == new_id
    assert row.retried_at is not None

    wait_for(lambda: records(redis_client, "t:done", new_id), timeout=30, message="the re-sent job")
    assert records(redis_client, "t:done", new_id) == [(new_id, 1, celery.pid)]
    assert celery.pid != burst.pid
    assert (
        redis_client.xlen(get_store().keys.stream("taskchan.cel.toggle")) == 0
    )  # not via taskchan


def test_send_on_commit_runs_once_in_celery_and_not_on_rollback(celery_worker, redis_client):
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = taskchan.send_on_commit("taskchan.cel.record", {"n": "rolled back"})
        raise RuntimeError("roll back")
    with transaction.atomic():
        committed = taskchan.send_on_commit("taskchan.cel.record", {"n": "committed"})
    assert [t["id"] for t in queued_tasks(redis_client)] == [committed]

    celery = celery_worker()
    wait_for(
        lambda: records(redis_client, "t:done", committed), timeout=30, message="the committed job"
    )
    time.sleep(1.0)
    assert [r[0] for r in done_records(redis_client)] == [committed]
    assert records(redis_client, "t:done", committed) == [(committed, 1, celery.pid)]
    assert not records(redis_client, "t:done", rolled_back)


def test_the_worker_refuses_pickle(celery_worker, redis_client):
    celery = celery_worker()
    probe = taskchan.send("taskchan.cel.record", {"n": "json"})
    wait_for(lambda: records(redis_client, "t:done", probe), timeout=30, message="the JSON job")
    [_, _, pid] = records(redis_client, "t:done", probe)[0]
    assert pid == celery.pid

    # The same task, pickled: the worker (accept_content = json) must not run it.
    from taskchan.outgoing import build_outgoing

    envelope, _, raw, _ = build_outgoing("taskchan.cel.record", {"n": "pickle"}, None, None, None, None)
    envelope_args = ["taskchan.cel.record", raw]
    handoff.celery_app().send_task(
        handoff.TASK_NAME, args=envelope_args, task_id=envelope.id, serializer="pickle"
    )
    after = taskchan.send("taskchan.cel.record", {"n": "json after"})
    wait_for(
        lambda: records(redis_client, "t:done", after), timeout=30, message="the JSON job after"
    )
    time.sleep(0.5)
    assert not records(redis_client, "t:done", envelope.id)
    assert "Refusing to deserialize untrusted content of type pickle" in celery.output()


def test_a_handed_off_consumer_reports_progress_from_the_celery_worker(celery_worker, redis_client):
    """Progress from a real Celery worker reaches a watcher through the channel layer:
    throttled, the last value always sent (tests/celery/test_handoff_progress.py runs
    the same code in this process)."""
    celery = celery_worker()
    message_id = taskchan.send("taskchan.cel.reports", {})

    async def watch_then_collect():
        layer = get_channel_layer()
        me = await layer.new_channel("watcher.")
        await layer.group_add(group_name(message_id), me)
        redis_client.set(f"t:go:{message_id}", 1)  # the consumer starts reporting now
        seen = []
        while not seen or seen[-1].get("note") is None:
            seen.append((await asyncio.wait_for(layer.receive(me), 20))["event"])
        return seen

    seen = asyncio.run(watch_then_collect())
    assert 1 <= len(seen) <= 20, len(seen)  # throttled: not 2,001 pushes
    assert all(e["type"] == "progress" and e["id"] == message_id for e in seen)
    assert (seen[-1]["current"], seen[-1]["total"], seen[-1]["note"]) == (2000, 2000, f"done in {celery.pid}")
    currents = [e["current"] for e in seen]
    assert currents == sorted(currents)
    wait_for(lambda: records(redis_client, "t:done", message_id), timeout=20, message="the job to finish")
