"""A poison message (its consumer always raises) among good ones, on one worker process.

How this design handles it: a raising consumer is an ordinary failure, caught
by the worker: each attempt's error and traceback go into the envelope, the
retry is scheduled with backoff (``lua/reschedule.lua``) and, after
``max_attempts``, the message is written as a ``FailedMessage`` (reason
``exhausted``, every attempt's error) and acked.  The worker process never
stops for it, and the other messages are not held up.

How the test hits it: one ``taskchan.t.poison`` message (max_attempts 3,
backoff 0.05 s) sent in the middle of 50 ``taskchan.t.record`` ones, all
served by one long-running worker (not burst).  Then: the dead letter exists
with 3 errors, the 50 others are done exactly once, and the worker is still
running -- and still stops cleanly on SIGTERM.
"""

import signal

import pytest

from taskchan.models import FailedMessage
from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, counts, pending, scheduled_key, wait_exit

pytestmark = pytest.mark.django_db(transaction=True)


def test_poison_message_is_dead_lettered_and_the_worker_keeps_serving(
    use_redis_layer, redis_client, worker
):
    import taskchan

    good = [taskchan.send("taskchan.t.record", {"n": n}) for n in range(25)]
    poison_id = taskchan.send("taskchan.t.poison", {"bad": True})
    good += [taskchan.send("taskchan.t.record", {"n": n}) for n in range(25, 50)]

    proc = worker("taskchan.t.record", "taskchan.t.poison", args=["--concurrency", "2"])

    wait_for(lambda: redis_client.llen("t:done") >= 50, timeout=60, message="50 good messages done")
    failed = wait_for(
        lambda: FailedMessage.objects.filter(message_id=poison_id).first(),
        timeout=60,
        message="dead letter",
    )

    assert failed.reason == FailedMessage.Reason.EXHAUSTED
    assert failed.attempts == 3
    assert [e["attempt"] for e in failed.errors] == [1, 2, 3]
    assert {e["type"] for e in failed.errors} == {"builtins.ValueError"}
    assert "poison message always fails" in failed.traceback
    assert failed.content == {"bad": True}

    done = counts(done_records(redis_client))
    assert set(done) == set(good)
    assert all(n == 1 for n in done.values())
    assert proc.running, proc.output()
    for channel in ("taskchan.t.record", "taskchan.t.poison"):
        wait_for(
            lambda c=channel: not pending(redis_client, c), timeout=10, message=f"{channel} acked"
        )
        assert redis_client.xlen(KEYS.stream(channel)) == 0
        assert redis_client.zcard(scheduled_key(channel)) == 0

    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()
