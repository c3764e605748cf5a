"""Window 4: after the consumer succeeded, before the ack is recorded.

How this design closes it: it is a duplicate, never a loss.  The entry stays
in the pending list until the ack (XACK + XDEL, batched by the worker's
acker) lands in Redis.  A worker that dies in between leaves the lease to
lapse; another worker reclaims the entry and runs it again (at-least-once;
an ``idempotency_key`` or an idempotent consumer absorbs the repeat).

How the test hits the moment deterministically: the consumer
``taskchan.fw.pause_before_ack`` records its run, then issues ``CLIENT PAUSE
5000 WRITE`` on the test Redis and creates a marker file.  The worker's ack
that follows is now held inside Redis: the test waits until Redis shows the
worker's client blocked (on XACK), SIGKILLs the worker (Redis drops the held
command with the dead client), unpauses, and checks the entry is still
pending.  A second
worker (visibility timeout 1 s, burst) runs it again: two done records for
the one message id, nothing lost, and it finishes acked.
"""

import signal
import time

from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, blocked_clients, pending, wait_exit, wait_unblocked

CHANNEL = "taskchan.fw.pause_before_ack"


def test_worker_killed_after_success_before_ack_runs_it_again(
    use_redis_layer, redis_client, worker, tmp_path
):
    import taskchan

    marker = tmp_path / "paused"
    message_id = taskchan.send(CHANNEL, {"marker": str(marker), "pause_ms": 5000})
    first = worker(CHANNEL)
    try:
        wait_for(marker.exists, timeout=30, message="consumer finished and paused Redis writes")
        # The ack follows the consumer's return, so it is sent after the pause
        # and held in Redis (XACK today; any write would be held the same).
        wait_for(lambda: blocked_clients(redis_client), timeout=5, message="worker's ack held")
        time.sleep(0.3)
        held = {c["cmd"] for c in blocked_clients(redis_client)}
        first.kill()
        assert first.proc.returncode == -signal.SIGKILL
        wait_unblocked(redis_client, "dead worker's client dropped", timeout=5)
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")

    assert held, "the worker's writes were held by CLIENT PAUSE"
    assert done_records(redis_client) == [(message_id, 1, first.pid)]
    assert len(pending(redis_client, CHANNEL)) == 1  # the ack never landed
    assert redis_client.xlen(KEYS.stream(CHANNEL)) == 1

    second = worker(CHANNEL, args=["--burst"], TASKCHAN_VISIBILITY_TIMEOUT=1)
    assert wait_exit(second, 60) == 0, second.output()

    assert done_records(redis_client) == [(message_id, 1, first.pid), (message_id, 2, second.pid)]
    assert not pending(redis_client, CHANNEL)
    assert redis_client.xlen(KEYS.stream(CHANNEL)) == 0
