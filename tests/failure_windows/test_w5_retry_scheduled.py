"""Window 5: while a retry is scheduled and no worker is running.

How this design closes it: a retry is not a timer in a worker's memory.  When
a consumer raises, the worker runs ``lua/reschedule.lua``, which in one atomic
step acks and deletes the failed delivery and adds the next attempt's envelope
(attempt count and errors included) to the sorted set
``taskchan:s:<channel>``, scored by its due time on Redis's clock.  Any worker
serving the channel, started at any later time, moves due entries back onto
the stream (``lua/promote.lua``) and runs them; a burst worker counts the
scheduled set as work still to do.

How the test hits the moment: ``taskchan.fw.fail_once_slow_backoff`` fails
its first attempt with a 2 s backoff.  As soon as the retry appears in the
scheduled set, the worker is stopped -- SIGTERM (graceful) in one test,
SIGKILL in the other.  The test checks the retry sits in the scheduled set
and nowhere else, waits until it is overdue with no worker running, then
starts a burst worker: attempt 2 runs exactly once.
"""

import json
import signal

import pytest

from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import pending, scheduled_key, stream_key, wait_exit

CHANNEL = "taskchan.fw.fail_once_slow_backoff"


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"]
)
def test_retry_scheduled_survives_the_worker_and_runs_once(
    use_redis_layer, redis_client, worker, stop_signal
):
    import taskchan

    message_id = taskchan.send(CHANNEL, {})
    first = worker(CHANNEL)
    wait_for(
        lambda: redis_client.zcard(scheduled_key(CHANNEL)) == 1,
        timeout=30,
        message="retry scheduled",
    )
    first.signal(stop_signal)
    code = wait_exit(first, 30)
    assert code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL), first.output()

    # The retry lives in Redis only: in the scheduled set, not on the stream, not leased.
    [(raw, due_ms)] = redis_client.zrange(scheduled_key(CHANNEL), 0, -1, withscores=True)
    envelope = json.loads(raw)
    assert envelope["id"] == message_id
    assert envelope["n"] == 1 and [e["attempt"] for e in envelope["e"]] == [1]
    assert redis_client.xlen(stream_key(CHANNEL)) == 0
    assert not pending(redis_client, CHANNEL)

    # No worker runs while it becomes due, and for a while after.
    def redis_now_ms():
        seconds, micros = redis_client.time()
        return seconds * 1000 + micros // 1000

    wait_for(lambda: redis_now_ms() > due_ms + 1000, timeout=10, message="retry overdue")
    assert redis_client.zcard(scheduled_key(CHANNEL)) == 1

    second = worker(CHANNEL, args=["--burst"])
    assert wait_exit(second, 60) == 0, second.output()

    assert done_records(redis_client, "t:started") == [
        (message_id, 1, first.pid),
        (message_id, 2, second.pid),
    ]
    assert done_records(redis_client) == [(message_id, 2, second.pid)]
    assert redis_client.zcard(scheduled_key(CHANNEL)) == 0
    assert redis_client.xlen(stream_key(CHANNEL)) == 0
