"""Cancel in real worker processes: queued, delayed, retry-scheduled and running messages; unknown ids.

Consumers are in ``tests/jobs.py`` and ``tests/limits_jobs.py``.
"""

from __future__ import annotations

import time

import pytest

import taskchan
from taskchan.cancels import is_cancelled
from taskchan.models import FailedMessage
from tests.conftest import KEYS, done_records, wait_for
from tests.failure_windows.helpers import counts, pending, scheduled_key, stream_key

pytestmark = pytest.mark.django_db(transaction=True)


def cancelled_count(client, channel: str) -> int:
    """The worker's ack counters for OUTCOME ``cancelled`` on ``channel`` (keys.py)."""
    return sum(int(client.get(k)) for k in client.keys(KEYS.counter(channel, "cancelled", "*")))


def drained(client, channel: str) -> bool:
    return not pending(client, channel) and client.xlen(stream_key(channel)) == 0 and (
        client.zcard(scheduled_key(channel)) == 0
    )


def test_a_cancelled_queued_message_never_runs_and_is_acked(use_redis_layer, redis_client, worker):
    keep = taskchan.send("taskchan.t.record", {"n": 1})
    drop = taskchan.send("taskchan.t.record", {"n": 2})
    keep_too = taskchan.send("taskchan.t.record", {"n": 3})
    taskchan.cancel(drop)
    assert is_cancelled(drop) and not is_cancelled(keep)

    worker("taskchan.t.record")
    wait_for(lambda: len(done_records(redis_client)) >= 2, timeout=30, message="the two others done")
    wait_for(lambda: drained(redis_client, "taskchan.t.record"), timeout=10, message="every entry acked")
    assert set(counts(done_records(redis_client))) == {keep, keep_too}
    assert cancelled_count(redis_client, "taskchan.t.record") == 1
    assert not FailedMessage.objects.exists()


def test_a_cancelled_delayed_message_and_a_cancelled_retry_never_run(use_redis_layer, redis_client, worker):
    delayed = taskchan.send("taskchan.t.record", {"n": 1}, delay=1.0)
    taskchan.cancel(delayed)
    # Fails its first attempt; the retry is scheduled 2 s later and cancelled meanwhile.
    retried = taskchan.send("taskchan.fw.fail_once_slow_backoff", {})
    worker("taskchan.t.record", "taskchan.fw.fail_once_slow_backoff")
    wait_for(lambda: done_records(redis_client, "t:started"), timeout=30, message="the first attempt")
    wait_for(lambda: redis_client.zcard(scheduled_key("taskchan.fw.fail_once_slow_backoff")), timeout=10,
             message="the retry scheduled")
    taskchan.cancel(retried)

    for channel in ("taskchan.t.record", "taskchan.fw.fail_once_slow_backoff"):
        wait_for(lambda c=channel: drained(redis_client, c) and cancelled_count(redis_client, c) == 1,
                 timeout=15, message=f"{channel}: the cancelled message acked")
    assert not done_records(redis_client)
    assert [r[1] for r in done_records(redis_client, "t:started")] == [1]
    assert not FailedMessage.objects.exists()


def test_a_running_job_sees_message_cancelled_and_ends_as_cancelled(use_redis_layer, redis_client, worker):
    proc = worker("taskchan.tl.cancel_aware")
    message_id = taskchan.send("taskchan.tl.cancel_aware", {})
    wait_for(lambda: done_records(redis_client, "t:started"), timeout=30, message="the job started")
    cancelled_at = time.monotonic()
    taskchan.cancel(message_id)
    wait_for(lambda: done_records(redis_client, "t:cancel_seen"), timeout=5, message="message.cancelled true")
    # Learnt at the next lease renewal: a third of the 1 s visibility timeout, plus the poll.
    assert time.monotonic() - cancelled_at < 2.0
    wait_for(lambda: drained(redis_client, "taskchan.tl.cancel_aware"), timeout=10, message="acked")
    assert cancelled_count(redis_client, "taskchan.tl.cancel_aware") == 1
    assert not done_records(redis_client)  # check_cancelled() raised Cancelled
    assert len(done_records(redis_client, "t:started")) == 1  # not retried
    assert not FailedMessage.objects.exists()  # nor dead-lettered
    assert proc.running, proc.output()


@pytest.mark.parametrize("channel", ["taskchan.tl.progress_until_cancelled", "taskchan.tl.report_until_cancelled"])
def test_a_job_reporting_progress_stops_at_its_next_report_once_cancelled(channel, use_redis_layer, redis_client, worker):
    # message.progress() and report_progress() raise Cancelled: a job that reports
    # progress stops without looking at message.cancelled itself.
    proc = worker(channel)
    message_id = taskchan.send(channel, {})
    wait_for(lambda: done_records(redis_client, "t:started"), timeout=30, message="the job started")
    taskchan.cancel(message_id)
    wait_for(lambda: drained(redis_client, channel), timeout=10, message="acked, long before the job's 20 s")
    assert cancelled_count(redis_client, channel) == 1
    assert not done_records(redis_client)  # the report raised; the loop never finished
    assert len(done_records(redis_client, "t:started")) == 1  # not retried
    assert not FailedMessage.objects.exists()  # nor dead-lettered
    assert taskchan.status(message_id).state == "cancelled"
    assert proc.running, proc.output()


def test_cancel_of_an_unknown_id_only_leaves_a_marker_that_lapses(use_redis_layer, redis_client, settings):
    settings.TASKCHAN_CANCEL_TTL = 0.3
    unknown = "0" * 32
    assert taskchan.cancel(unknown) is None
    assert is_cancelled(unknown)
    assert redis_client.pttl(KEYS.cancelled) <= 300
    time.sleep(0.4)
    assert not is_cancelled(unknown)
    assert not redis_client.exists(KEYS.cancelled)  # the set went with its last marker


def test_a_cancelled_message_already_leased_by_a_busy_worker_never_starts(use_redis_layer, redis_client, worker):
    # One job thread, busy for 3 s; the next message waits in the worker's prefetch.
    worker("taskchan.t.slow", "taskchan.t.record", args=["--concurrency", "1"], TASKCHAN_VISIBILITY_TIMEOUT="1.5")
    busy = taskchan.send("taskchan.t.slow", {"seconds": 3})
    wait_for(lambda: done_records(redis_client, "t:started"), timeout=30, message="the busy job started")
    waiting = taskchan.send("taskchan.t.record", {"n": 1})
    wait_for(lambda: pending(redis_client, "taskchan.t.record"), timeout=5, message="the next one prefetched")
    taskchan.cancel(waiting)

    wait_for(lambda: busy in counts(done_records(redis_client)), timeout=15, message="the busy job done")
    wait_for(lambda: drained(redis_client, "taskchan.t.record"), timeout=10, message="the cancelled one acked")
    assert waiting not in counts(done_records(redis_client))
    assert cancelled_count(redis_client, "taskchan.t.record") == 1
