"""Soak: thousands of jobs while workers keep getting SIGKILLed.

How this design keeps the count: every message is a stream entry until the ack
after its consumer returned; a killed worker's leases (running, prefetched, or
done but not yet acked) lapse after the visibility timeout and the other
worker reclaims them.  So nothing is lost, and only what the dead worker had
running or finished-but-unacked runs twice -- at most concurrency + prefetch
per kill.

How the test does it: TASKCHAN_SOAK_JOBS (default 2000) ``taskchan.fw.work``
jobs of 20 ms; two ``runworker`` processes (``--concurrency 4 --prefetch 4``,
visibility timeout 1 s); one of them, alternately, is SIGKILLed every ~2 s
(once it serves, and once 4% of the jobs were done since the last kill, so a
loaded machine slows the soak down instead of killing workers before they
work; at most 25 kills) and a new one started in its place, until every job is done.  It prints
``soak: sent=N processed=N duplicates=D lost=0 kills=K`` and writes the same
line to test-artifacts/soak-LAYOUT.txt.  The same soak runs with the channel layer
sharding eight channels over two Redis servers (``two-redis``), where each
worker reads both hosts, and with those eight channels on a Redis Cluster of
three masters (``cluster``, 1000 jobs unless TASKCHAN_SOAK_JOBS says), where
each worker reads every master.
"""

import os
import random
import signal
import time

import pytest
import redis as redis_lib
import redis.cluster

from taskchan.stores.keys import ClusterKeys
from tests.conftest import ARTIFACTS, done_records, wait_for
from tests.failure_windows.helpers import (
    KEYS,
    KILL_EVERY_SHARE,
    SOAK_GROUP,
    Progress,
    counts,
    pending,
    wait_drained,
    wait_exit,
)
from tests.jobs import SHARDED_CHANNELS

CHANNEL = "taskchan.fw.work"
JOBS = int(os.environ.get("TASKCHAN_SOAK_JOBS", "2000"))
CLUSTER_JOBS = int(os.environ.get("TASKCHAN_SOAK_JOBS", "1000"))
CONCURRENCY = 4
PREFETCH = 4
JOB_MS = 20


@SOAK_GROUP
@pytest.mark.timeout(max(600, JOBS // 5))
@pytest.mark.parametrize("layout", ["one-redis", "two-redis", "cluster"])
def test_soak_with_workers_killed_every_two_seconds(layout, request, redis_url, redis_client, manage):
    import taskchan

    # The cluster runs six redis-servers beside the workers: a smaller default keeps CI's time.
    jobs = JOBS if layout != "cluster" else CLUSTER_JOBS

    args = ["--concurrency", str(CONCURRENCY), "--prefetch", str(PREFETCH)]
    keys, registry = KEYS, redis_client
    if layout == "one-redis":
        request.getfixturevalue("use_redis_layer")
        channels = [CHANNEL]
        env = {"TASKCHAN_VISIBILITY_TIMEOUT": 1}
        hosts = [redis_client]
    elif layout == "cluster":
        cluster = request.getfixturevalue("use_cluster_layer")
        channels = SHARDED_CHANNELS  # spread over the three masters
        env = {"TASKCHAN_REDIS_CLUSTER_URL": cluster.url}
        keys, registry = ClusterKeys("taskchan"), redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)
        hosts = [registry]
    else:
        urls = request.getfixturevalue("use_sharded_layer")
        channels = SHARDED_CHANNELS  # consumers with a 2 s visibility timeout
        env = {"DJANGO_SETTINGS_MODULE": "tests.sharded_settings", "TASKCHAN_SHARD_URLS": ",".join(urls)}
        hosts = [redis_lib.Redis.from_url(url, decode_responses=True) for url in urls]
    sent = {taskchan.send(channels[n % len(channels)], {"ms": JOB_MS, "n": n}) for n in range(jobs)}
    assert len(sent) == jobs

    def start():
        pattern = CHANNEL if layout == "one-redis" else "taskchan.sh.*"
        return manage(["runworker", pattern, *args], redis_url=redis_url, **env)

    def serving(proc):
        # Registered by its first heartbeat: startup is over and it holds or fetches work.
        return any(f":{proc.pid}:" in w for w in registry.zrange(keys.workers, 0, -1))

    def all_done():
        # LLEN first: parsing thousands of records on every poll would eat the workers' CPU.
        if redis_client.llen("t:done") < jobs:
            return False
        return {r[0] for r in done_records(redis_client)} >= sent

    workers = [start(), start()]
    rng = random.Random()
    kills = 0
    victim = 0
    next_kill = time.monotonic() + rng.uniform(1.5, 2.5)
    progress = Progress(lambda: redis_client.llen("t:done"))
    done_at_kill = 0
    while not all_done():
        progress.check(f"soak of {jobs} jobs, {kills} kills")
        for w in workers:
            assert w.running, f"a worker died on its own:\n{w.output()[-3000:]}"
        # Kill only a worker that is serving (one killed during startup holds nothing), and
        # only after some work since the last kill (a loaded machine slows the soak instead).
        worked = progress.since(done_at_kill) >= jobs * KILL_EVERY_SHARE
        if time.monotonic() >= next_kill and worked and serving(workers[victim]):
            done_at_kill = progress.seen
            workers[victim].kill()
            kills += 1
            workers[victim] = start()
            victim = 1 - victim
            next_kill = time.monotonic() + rng.uniform(1.5, 2.5)
        time.sleep(0.05)

    wait_drained(hosts, channels, keys=keys)
    for w in workers:
        # A worker still starting up has no SIGTERM handler yet: let it finish starting.
        wait_for(lambda w=w: serving(w), timeout=30, message="worker started")
        w.signal(signal.SIGTERM)
    for w in workers:
        assert wait_exit(w, 60) == 0, w.output()[-3000:]

    done = counts(done_records(redis_client))
    processed = len(set(done) & sent)
    lost = len(sent - set(done))
    duplicates = sum(done.values()) - len(done)
    line = (
        f"soak ({layout}): sent={jobs} processed={processed} duplicates={duplicates} lost={lost} kills={kills}"
    )
    print(line)
    (ARTIFACTS / f"soak-{layout}.txt").write_text(line + "\n")

    assert lost == 0
    assert set(done) == sent, "a job nobody sent was run"
    assert kills >= 2, "the soak ended before workers were killed: raise TASKCHAN_SOAK_JOBS"
    # What a killed worker held: concurrency + prefetch, plus, reading several
    # channels, up to one per channel more (Redis applies a read's COUNT per stream).
    held = CONCURRENCY + PREFETCH + (len(channels) if len(channels) > 1 else 0)
    assert duplicates <= kills * held, line
    for host in hosts:
        for channel in channels:
            assert not pending(host, channel, keys)
            assert host.xlen(keys.stream(channel)) == 0
