"""Window 2: after a worker popped the message, before it recorded a lease.

How this design closes it: popping *is* leasing.  The worker takes messages
with ``XREADGROUP`` on the channel's stream (``taskchan:q:<channel>``, group
``workers``); Redis moves each entry into the group's pending-entries list,
owned by this worker, in the same command that hands it over.  There is no
instant at which a message has left the channel but is not leased.  A worker
that dies holding leases -- running or merely prefetched -- leaves them in the
pending list, where another worker reclaims them (``lua/reclaim.lua``, XCLAIM)
once they are idle for the visibility timeout.

How the test hits the moment: a worker with ``--concurrency 1 --prefetch 10``
on 20 ``taskchan.t.slow`` jobs leases 11 at once and starts one.  As soon as
the pending list shows more entries leased to it than the one running, i.e.
popped messages that sit in the worker's memory only, it is SIGKILLed.  A
second worker (visibility timeout 1 s, ``--burst``) must run all 20: none
lost, and only a message the first worker had started may run twice.
"""

import signal

from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, counts, pending, wait_exit

CHANNEL = "taskchan.t.slow"
JOBS = 20


def test_worker_killed_holding_prefetched_messages_loses_none(
    use_redis_layer, redis_client, worker
):
    import taskchan

    sent = [taskchan.send(CHANNEL, {"seconds": 0.3, "n": n}) for n in range(JOBS)]
    first = worker(CHANNEL, args=["--concurrency", "1", "--prefetch", "10"])

    def leased_beyond_running():
        leases = pending(redis_client, CHANNEL)
        started = redis_client.llen("t:started")
        return leases if started >= 1 and len(leases) > started else None

    leases = wait_for(
        leased_beyond_running, timeout=30, message="messages leased beyond the running one"
    )
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    started_by_first = {r[0] for r in done_records(redis_client, "t:started")}
    done_by_first = {r[0] for r in done_records(redis_client)}

    # The dead worker's leases stay in the pending list, prefetched ones included.
    left = pending(redis_client, CHANNEL)
    assert len(left) >= 2, left
    assert {e["consumer"] for e in left} == {e["consumer"] for e in leases}, (
        "one worker held them all"
    )
    assert len(left) + len(done_by_first) >= len(leases) - 1

    second = worker(CHANNEL, args=["--burst", "--concurrency", "4"], TASKCHAN_VISIBILITY_TIMEOUT=1)
    assert wait_exit(second, 90) == 0, second.output()

    done = counts(done_records(redis_client))
    assert set(done) == set(sent), f"lost: {set(sent) - set(done)}"
    duplicates = {m for m, n in done.items() if n > 1}
    assert duplicates <= started_by_first, "a message the dead worker never started ran twice"
    # concurrency 1: at most the running job plus one whose ack was on its way
    assert len(duplicates) <= 2
    assert not pending(redis_client, CHANNEL)
    assert redis_client.xlen(KEYS.stream(CHANNEL)) == 0
