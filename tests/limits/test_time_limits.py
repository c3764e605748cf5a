"""Time limits in real worker processes: interrupted, retried, cancelled (async), stuck threads, leases.

Consumers are in ``tests/limits_jobs.py``; each runs far past its limit
(30 s) unless interrupted, so a dead letter within a few seconds is the
interruption.
"""

from __future__ import annotations

import time

import pytest

import taskchan
from taskchan.models import FailedMessage
from taskchan.worker.time_limits import EXIT_STUCK
from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import counts, pending, wait_exit

pytestmark = pytest.mark.django_db(transaction=True)

TLE = "taskchan.exceptions.TimeLimitExceeded"


def started(client) -> list[tuple[str, int, int]]:
    return done_records(client, "t:started")


def dead_letter(message_id: str, timeout: float = 15) -> FailedMessage:
    return wait_for(
        lambda: FailedMessage.objects.filter(message_id=message_id).first(), timeout=timeout,
        message=f"dead letter of {message_id}",
    )


def test_a_job_past_its_limit_is_interrupted_and_dead_lettered_while_the_same_worker_runs_others(
    use_redis_layer, redis_client, worker
):
    # One job thread: the others can only run once the runaway job is interrupted.
    proc = worker("taskchan.tl.loop", "taskchan.t.record", args=["--concurrency", "1"])
    runaway = taskchan.send("taskchan.tl.loop", {})
    wait_for(lambda: started(redis_client), timeout=30, message="the runaway job started")
    good = [taskchan.send("taskchan.t.record", {"n": n}) for n in range(10)]

    failed = dead_letter(runaway)
    assert failed.reason == FailedMessage.Reason.EXHAUSTED
    assert failed.attempts == 1
    assert [e["type"] for e in failed.errors] == [TLE]
    assert "abandoned" not in failed.errors[0]["message"]  # interrupted, not left stuck and replaced
    wait_for(lambda: len(done_records(redis_client)) >= 10, timeout=15, message="the other jobs done")
    assert set(counts(done_records(redis_client))) == set(good)  # the runaway never got to its end
    assert proc.running, proc.output()
    assert "ran past 0.5s; interrupting it" in proc.output()
    # A quick job of the same channel runs to its end on the same (interrupted) thread.
    quick = taskchan.send("taskchan.tl.loop", {"quick": True})
    wait_for(lambda: quick in counts(done_records(redis_client)), timeout=15, message="a quick job done")


def test_a_job_past_its_limit_is_retried_by_the_usual_rules(use_redis_layer, redis_client, worker):
    proc = worker("taskchan.tl.retried")
    message_id = taskchan.send("taskchan.tl.retried", {})
    wait_for(lambda: done_records(redis_client), timeout=30, message="the retry done")
    assert done_records(redis_client)[0][:2] == (message_id, 2)
    assert [r[1] for r in started(redis_client)] == [1, 2]
    assert not FailedMessage.objects.filter(message_id=message_id).exists()
    assert "abandoning" not in proc.output()  # the first attempt was interrupted, not abandoned


def test_an_async_job_past_its_limit_is_cancelled_and_dead_lettered(use_redis_layer, redis_client, worker):
    proc = worker("taskchan.tl.async")
    message_id = taskchan.send("taskchan.tl.async", {})
    failed = dead_letter(message_id, timeout=30)
    assert [e["type"] for e in failed.errors] == [TLE]
    assert not done_records(redis_client)
    assert proc.running, proc.output()


def test_a_thread_stuck_in_c_is_abandoned_and_replaced_and_too_many_stop_the_worker(
    use_redis_layer, redis_client, worker
):
    proc = worker(
        "taskchan.tl.stuck", "taskchan.t.record", args=["--concurrency", "1"],
        TASKCHAN_STUCK_AFTER="0.5", TASKCHAN_MAX_STUCK_THREADS="2",
    )
    first = taskchan.send("taskchan.tl.stuck", {})
    wait_for(lambda: started(redis_client), timeout=30, message="the stuck job started")
    good = [taskchan.send("taskchan.t.record", {"n": n}) for n in range(5)]

    # The worker's only thread is stuck for good: the others run on its replacement.
    wait_for(lambda: len(done_records(redis_client)) >= 5, timeout=15, message="jobs done by the fresh thread")
    assert set(counts(done_records(redis_client))) == set(good)
    failed = dead_letter(first)
    assert [e["type"] for e in failed.errors] == [TLE]
    assert "its thread was abandoned" in failed.errors[0]["message"]
    assert "abandoning thread" in proc.output()
    assert proc.running, proc.output()

    # A second stuck thread reaches TASKCHAN_MAX_STUCK_THREADS: a graceful stop, status 75.
    second = taskchan.send("taskchan.tl.stuck", {})
    assert wait_exit(proc, timeout=30) == EXIT_STUCK, proc.output()
    assert "stuck past their time limit; stopping" in proc.output()
    dead_letter(second)
    wait_for(lambda: not pending(redis_client, "taskchan.tl.stuck"), timeout=10, message="stuck messages acked")


def test_a_lease_is_not_renewed_past_the_time_limit(use_redis_layer, redis_client, worker):
    # tl.swallow catches its time-limit exception and runs 4 s more; its lease
    # (1 s) must lapse about 1 s after the 0.5 s limit, and the message run again.
    worker("taskchan.tl.swallow", args=["--concurrency", "2"])
    message_id = taskchan.send("taskchan.tl.swallow", {})
    wait_for(lambda: started(redis_client), timeout=30, message="the first run started")
    first_seen = time.monotonic()
    wait_for(lambda: len(started(redis_client)) >= 2, timeout=3.5, message="a second run after the lease lapsed")
    assert time.monotonic() - first_seen < 4.0  # long before the first run returned
    assert [(r[0], r[1]) for r in started(redis_client)] == [(message_id, 1), (message_id, 2)]
