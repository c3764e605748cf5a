"""A message that kills every worker that runs it ends as a dead letter, not a crash loop.

How this design stops it: a worker that dies never records an outcome, so
exceptions cannot be counted -- deliveries are.  The stream's pending list
counts how often an entry was handed out; ``lua/reclaim.lua`` returns that
count with each reclaimed entry, and the worker computes attempt =
attempts before + deliveries.  Once that exceeds ``max_attempts`` the worker
does not run the message again: it writes a ``FailedMessage`` with reason
``worker_lost`` (content and a WorkerLost error) and acks it.

How the test hits it: ``taskchan.t.crash`` (max_attempts=2, visibility
timeout 1 s) SIGKILLs its own worker every time it runs.  The test starts
burst workers one after another -- each one dies, until one dead-letters the
message and exits cleanly.  The message ran at most max_attempts times, and a
normal message sent behind it on another channel served by the same workers
is processed.

The second test covers a good message that sat unstarted in the prefetch
buffer of each crashing worker: reclaiming does not raise the delivery count
(only starting does, ``lua/charge.lua``), so it is charged at most once for a
crash it had no part in, and on the same channel with max_attempts=2 it still
runs instead of being dead-lettered as ``worker_lost``.
"""

import pytest

from taskchan.models import FailedMessage
from tests.conftest import done_records
from tests.failure_windows.helpers import KEYS, counts, pending, wait_exit

pytestmark = pytest.mark.django_db(transaction=True)

CHANNELS = ("taskchan.t.crash", "taskchan.t.record")


def test_crash_loop_ends_as_worker_lost_dead_letter(use_redis_layer, redis_client, worker):
    import taskchan

    crash_id = taskchan.send("taskchan.t.crash", {"boom": True})
    normal_id = taskchan.send("taskchan.t.record", {"n": 1})

    exits = []
    for _ in range(8):
        proc = worker(*CHANNELS, args=["--burst"], TASKCHAN_VISIBILITY_TIMEOUT=1)
        code = wait_exit(proc, 60)
        exits.append(code)
        if code == 0:
            break
        assert code == -9, proc.output()  # killed by the crash consumer
    assert exits[-1] == 0, f"still crash-looping after {len(exits)} workers: {exits}"

    crash_runs = counts(done_records(redis_client, "t:started"))[crash_id]
    assert 1 <= crash_runs <= 2, f"ran {crash_runs} times with max_attempts=2"
    assert exits.count(-9) == crash_runs

    failed = FailedMessage.objects.get(message_id=crash_id)
    assert failed.reason == FailedMessage.Reason.WORKER_LOST
    assert failed.channel == "taskchan.t.crash"
    assert failed.content == {"boom": True}
    assert failed.max_attempts == 2
    assert failed.errors and failed.errors[-1]["type"] == "taskchan.WorkerLost"

    assert normal_id in counts(done_records(redis_client))
    assert not FailedMessage.objects.filter(message_id=normal_id).exists()
    for channel in CHANNELS:
        assert not pending(redis_client, channel)
        assert redis_client.xlen(KEYS.stream(channel)) == 0


def test_message_prefetched_behind_a_crash_loop_is_not_charged_for_it(
    use_redis_layer, redis_client, worker
):
    import taskchan

    channel = "taskchan.fw.crash_if"  # max_attempts=2, visibility timeout 1 s
    crash_id = taskchan.send(channel, {"crash": True})
    good_id = taskchan.send(channel, {"crash": False})

    for _ in range(8):
        proc = worker(channel, args=["--burst"])
        if wait_exit(proc, 60) == 0:
            break

    started = counts(done_records(redis_client, "t:started"))
    assert 1 <= started[crash_id] <= 2
    assert FailedMessage.objects.get(message_id=crash_id).reason == FailedMessage.Reason.WORKER_LOST
    # The good message never ran before and never failed: it must run now, not be dead-lettered.
    assert not FailedMessage.objects.filter(message_id=good_id).exists()
    assert counts(done_records(redis_client))[good_id] >= 1
