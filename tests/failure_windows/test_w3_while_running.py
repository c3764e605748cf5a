"""Window 3: while the consumer runs.

How this design closes it: a running message is an entry in the stream's
pending list, leased to the worker running it; the lease is only dropped by
the ack (XACK+XDEL) after the consumer returned.

(a) Crash mid-job: the dead worker's lease is no longer renewed, so it lapses
    after the channel's visibility timeout and another worker reclaims it
    (``lua/reclaim.lua``: XPENDING IDLE + XCLAIM, counting one more delivery)
    and runs it again as attempt 2.
(b) A job longer than the lease: the worker's heartbeat (``lua/extend.lua``,
    every visibility_timeout / 3) renews the leases of everything it holds, so
    the entry never looks idle for a full timeout and no other worker takes
    it: the job runs exactly once.

(c) A worker stalled past its lease (SIGSTOP: a paused VM, swapping): to
    everyone else it looks dead, so its lease lapses and another worker runs
    the job; when the stalled one resumes it finishes too.  A duplicate, never
    a loss, and nothing is left pending.

How the tests hit the moment: (a) SIGKILL the worker once the job's
``t:started`` record appears (the consumer is sleeping inside the job), then
start a second worker with a 1 s visibility timeout; (b) two workers with a
1 s visibility timeout both run while one job of 4 s runs on one of them; the
other polls for lapsed leases 4 times a second throughout; (c) SIGSTOP the
worker running a 3 s job, start a second worker (1 s visibility timeout),
SIGCONT the first once the second has started the job.
"""

import signal
import time

from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, pending, wait_exit

CHANNEL = "taskchan.t.slow"


def test_worker_killed_mid_job_the_job_is_reclaimed_and_run_again(
    use_redis_layer, redis_client, worker
):
    import taskchan

    message_id = taskchan.send(CHANNEL, {"seconds": 3})
    first = worker(CHANNEL)
    wait_for(lambda: redis_client.llen("t:started") == 1, timeout=30, message="job start")
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    [lease] = pending(redis_client, CHANNEL)
    assert lease["times_delivered"] == 1

    second = worker(CHANNEL, args=["--burst"], TASKCHAN_VISIBILITY_TIMEOUT=1)
    assert wait_exit(second, 60) == 0, second.output()

    started = done_records(redis_client, "t:started")
    assert started == [(message_id, 1, first.pid), (message_id, 2, second.pid)]
    assert done_records(redis_client) == [(message_id, 2, second.pid)]
    assert not pending(redis_client, CHANNEL)


def test_job_longer_than_the_lease_is_not_redelivered_while_it_runs(
    use_redis_layer, redis_client, worker
):
    import taskchan

    workers = [worker(CHANNEL, TASKCHAN_VISIBILITY_TIMEOUT=1) for _ in range(2)]
    # Both are up (registered by their first heartbeat) before the job exists.
    wait_for(
        lambda: redis_client.zcard(KEYS.workers) == 2, timeout=30, message="two workers registered"
    )

    message_id = taskchan.send(CHANNEL, {"seconds": 4})
    wait_for(lambda: redis_client.llen("t:started") == 1, timeout=10, message="job start")
    idle_seen = []
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:  # while the job runs, its lease stays fresh
        idle_seen += [p["time_since_delivered"] for p in pending(redis_client, CHANNEL)]
        time.sleep(0.05)
    wait_for(lambda: redis_client.llen("t:done") == 1, timeout=10, message="job done")
    time.sleep(1.5)  # a redelivery, had there been one, would show by now

    assert [r[0] for r in done_records(redis_client, "t:started")] == [message_id]
    assert [r[:2] for r in done_records(redis_client)] == [(message_id, 1)]
    assert idle_seen and max(idle_seen) < 1000, f"lease went idle for {max(idle_seen)} ms"
    assert all(w.running for w in workers), "both workers keep serving"
    assert not pending(redis_client, CHANNEL)
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert wait_exit(w, 30) == 0, w.output()


def test_worker_stalled_past_its_lease_the_job_runs_elsewhere_too(
    use_redis_layer, redis_client, worker
):
    import taskchan

    first = worker(CHANNEL, TASKCHAN_VISIBILITY_TIMEOUT=1)
    message_id = taskchan.send(CHANNEL, {"seconds": 3})
    wait_for(lambda: redis_client.llen("t:started") == 1, timeout=30, message="job start")
    first.signal(signal.SIGSTOP)  # a stall: paused VM, swap storm, stop-the-world pause
    try:
        second = worker(CHANNEL, TASKCHAN_VISIBILITY_TIMEOUT=1)
        wait_for(
            lambda: redis_client.llen("t:started") == 2,
            timeout=30,
            message="lapsed lease taken over",
        )
    finally:
        first.signal(signal.SIGCONT)

    # Both finish: a duplicate (at-least-once), never a loss, and both keep serving.
    wait_for(lambda: redis_client.llen("t:done") == 2, timeout=30, message="both runs done")
    wait_for(lambda: not pending(redis_client, CHANNEL), timeout=10, message="acked")
    assert redis_client.xlen(KEYS.stream(CHANNEL)) == 0
    assert done_records(redis_client, "t:started") == [
        (message_id, 1, first.pid),
        (message_id, 2, second.pid),
    ]
    assert sorted(done_records(redis_client)) == sorted(
        [(message_id, 1, first.pid), (message_id, 2, second.pid)]
    )
    for w in (first, second):
        assert w.running, w.output()
        w.signal(signal.SIGTERM)
    for w in (first, second):
        assert wait_exit(w, 30) == 0, w.output()
