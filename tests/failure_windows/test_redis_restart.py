"""Redis hiccup: redis-server SIGKILLed while a worker is busy, back 1 s later.

How this design rides it out: everything that matters is in Redis, and with
AOF (``appendfsync always``) Redis answers a write only once it is on disk, so
a restart keeps every message, lease and scheduled retry it acknowledged.  The
worker treats Redis errors as transient: the fetcher, acker, maintenance loop
and reschedule all back off and retry (they never exit the process); a job
whose own Redis call failed is retried like any failure; an ack that could
not be sent is kept and sent again (a duplicate at worst, never a loss).

How the test hits it: 500 ``taskchan.fw.work`` jobs (10 ms each, recording
into the same Redis) on one worker ``--concurrency 4``; once 50 are done,
SIGKILL redis-server, wait 1 s, restart it on the same port and data dir.
The worker, never restarted, finishes all 500: lost 0; it is still running
afterwards and stops cleanly on SIGTERM.
"""

import signal
import time

import pytest
import redis

from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, counts, pending, wait_exit

CHANNEL = "taskchan.fw.work"
JOBS = 500


@pytest.mark.timeout(180)
def test_worker_survives_redis_sigkill_and_restart(redis_server_factory, manage, settings):
    from tests.conftest import layer_settings

    server = redis_server_factory(appendonly=True)
    settings.CHANNEL_LAYERS = layer_settings(server.url)
    import taskchan

    sent = {taskchan.send(CHANNEL, {"ms": 10, "n": n}) for n in range(JOBS)}
    client = redis.Redis.from_url(server.url, decode_responses=True)

    proc = manage(["runworker", CHANNEL, "--concurrency", "4"], redis_url=server.url)
    wait_for(lambda: client.llen("t:done") >= 50, timeout=30, message="first 50 done")
    server.kill()
    time.sleep(1.0)
    assert proc.running, "the worker exited when Redis went away:\n" + proc.output()[-3000:]
    server.start()  # same port, same appendonly dir
    client = redis.Redis.from_url(server.url, decode_responses=True)
    done_at_restart = client.llen("t:done")
    assert 50 <= done_at_restart < JOBS, (
        "AOF lost acknowledged writes, or the kill came after the work"
    )

    def all_done():
        try:
            return (
                set(counts(done_records(client))) >= sent
                and client.xlen(KEYS.stream(CHANNEL)) == 0
            )
        except redis.RedisError:
            return False

    wait_for(all_done, timeout=90, message="all 500 done after the restart")

    done = counts(done_records(client))
    lost = sent - set(done)
    duplicates = sum(done.values()) - len(done)
    print(
        f"redis restart: sent={JOBS} processed={len(set(done) & sent)} duplicates={duplicates} lost={len(lost)}"
    )
    assert not lost
    assert set(done) == sent
    assert proc.running, "the worker must recover by itself, not exit"
    assert not pending(client, CHANNEL)

    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]
