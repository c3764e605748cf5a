"""Chaos soak: workers SIGKILLed, Redis restarted and garbage injected, all in one run.

How this design keeps the count: every message is a stream entry until the
ack after its consumer returned, and with ``appendonly yes`` /
``appendfsync always`` a Redis restart keeps every entry, lease and schedule.
A killed worker's leases lapse (visibility timeout 1 s) and are reclaimed; a
worker whose Redis goes away backs off and resumes (``outage.py``); garbage in
a stream becomes a malformed dead letter and the worker goes on; a channel
key of the wrong type stops only that channel (``quarantine.py``).

How the test does it: TASKCHAN_CHAOS_JOBS (CI default 1,500; the figure in
the closing note is from 10,000) ``taskchan.fw.work`` jobs of 20 ms, two
``runworker`` processes (``--concurrency 4 --prefetch 4``) that also serve
``taskchan.t.retry``, whose stream key is overwritten with a string half-way.
While they run: one worker is SIGKILLed and replaced every ~2 s, Redis is
SIGKILLed and restarted on the same AOF every ~8 s, and a piece of garbage (each
kind of ``test_garbage``, in turn) is XADDed to the channel every ~0.7 s; each
happens at least a few times whatever the machine's speed, and a kill or a
restart waits for 4% of the jobs to be done since the last one (at most 25).  Records go to a
second Redis that stays up (``TASKCHAN_RECORD_URL``).  It prints and writes
(test-artifacts/chaos-soak.txt) ``chaos soak: sent=N processed=N
duplicates=D lost=0 ...``.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import redis as redis_lib

import taskchan
from taskchan.deadletter import malformed_id
from taskchan.models import FailedMessage
from tests.conftest import ARTIFACTS, done_records, layer_settings, wait_for
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
from tests.failure_windows.test_garbage import garbage_for

pytestmark = pytest.mark.django_db(transaction=True)

CHANNEL = "taskchan.fw.work"
BROKEN = "taskchan.t.retry"  # served too; its stream key is overwritten with a string half-way
JOBS = int(os.environ.get("TASKCHAN_CHAOS_JOBS", "1500"))
JOB_MS = 20
#: at least this many of each, spread over the run by progress (time alone could miss them on a fast run)
MIN_KILLS, MIN_RESTARTS, MIN_GARBAGE = 4, 2, 9


class Chaos:
    def __init__(self, server, client, start_worker, record_client):
        self.server, self.client, self.record = server, client, record_client
        self.start_worker = start_worker
        self.workers = [start_worker(), start_worker()]
        self.kills = self.restarts = 0
        self.victim = 0
        self.garbage: dict[str, str] = {}  # entry id -> kind
        self.kinds = list(garbage_for(CHANNEL).items())
        self.rng = random.Random()
        now = time.monotonic()
        self.next = {"kill": now + 2, "restart": now + 5, "garbage": now + 0.5}
        # Records at the last kill and restart: each waits for some work done since, so on a
        # loaded machine (a worker takes seconds to start) the chaos never outpaces the work.
        self.done_at = {"kill": 0, "restart": 0}
        self.broken = False

    def done(self) -> int:
        return self.record.llen("t:done")

    def due(self, what: str, count: int, minimum: int) -> bool:
        # By time, or by progress: the k-th of the minimum is due by k/(minimum+1) of the jobs.
        done = self.done()
        if what in self.done_at and done - self.done_at[what] < JOBS * KILL_EVERY_SHARE:
            return False  # no work since the last one: let the workers catch up
        return time.monotonic() >= self.next[what] or (count < minimum and done >= (count + 1) * JOBS / (minimum + 1))

    def step(self) -> None:
        for w in self.workers:
            assert w.running, f"a worker died on its own:\n{w.output()[-3000:]}"
        if self.due("kill", self.kills, MIN_KILLS):
            self.kill_a_worker()
        if self.due("restart", self.restarts, MIN_RESTARTS):
            self.restart_redis()
        if self.due("garbage", len(self.garbage), MIN_GARBAGE):
            self.inject_garbage()
        if not self.broken and self.done() >= JOBS / 2:
            self.broken = self._redis(lambda: self.client.set(KEYS.stream(BROKEN), "not a stream")) is not None

    def kill_a_worker(self) -> None:
        if "serving" not in self.workers[self.victim].output():
            return  # still starting: killing it now would only test Django's start-up
        self.done_at["kill"] = self.done()
        self.workers[self.victim].kill()
        self.kills += 1
        self.workers[self.victim] = self.start_worker()
        self.victim = 1 - self.victim
        self.next["kill"] = time.monotonic() + self.rng.uniform(1.5, 2.5)

    def restart_redis(self) -> None:
        self.done_at["restart"] = self.done()
        self.server.kill()
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.server.start()  # same port, same AOF
        self.restarts += 1
        self.next["restart"] = time.monotonic() + self.rng.uniform(6, 10)

    def inject_garbage(self) -> None:
        kind, (fields, _phrase) = self.kinds[len(self.garbage) % len(self.kinds)]  # each kind in turn
        raw = redis_lib.Redis(port=self.server.port)
        try:
            entry_id = raw.xadd(KEYS.stream(CHANNEL), fields)
        except redis_lib.ConnectionError:
            return  # Redis is restarting: nothing was injected
        finally:
            raw.close()
        self.garbage[entry_id.decode()] = kind
        self.next["garbage"] = time.monotonic() + self.rng.uniform(0.4, 1.0)

    def _redis(self, call):
        try:
            return call()
        except redis_lib.ConnectionError:
            return None


@SOAK_GROUP
@pytest.mark.timeout(max(600, JOBS // 5))
def test_chaos_soak_loses_nothing_and_dead_letters_every_garbage_entry(
    redis_server_factory, redis_url, redis_client, settings, manage
):
    server = redis_server_factory(appendonly=True)
    settings.CHANNEL_LAYERS = layer_settings(server.url)
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    sent = {taskchan.send(CHANNEL, {"ms": JOB_MS, "n": n}) for n in range(JOBS)}
    assert len(sent) == JOBS

    def start():
        return manage(
            ["runworker", CHANNEL, BROKEN, "--concurrency", "4", "--prefetch", "4"], redis_url=server.url,
            TASKCHAN_VISIBILITY_TIMEOUT=1, TASKCHAN_RECORD_URL=redis_url,
        )

    chaos = Chaos(server, client, start, redis_client)
    progress = Progress(chaos.done)
    while chaos.done() < JOBS or {r[0] for r in done_records(redis_client)} < sent:
        progress.check(f"chaos soak of {JOBS} jobs, {chaos.kills} kills, {chaos.restarts} restarts")
        chaos.step()
        time.sleep(0.05)

    # Let the last garbage be dead-lettered, then stop the workers cleanly.
    rows = wait_for(
        lambda: (found := set(FailedMessage.objects.filter(
            message_id__in=[malformed_id(CHANNEL, e) for e in chaos.garbage]
        ).values_list("message_id", flat=True))) and len(found) == len(chaos.garbage) and found,
        timeout=60, message="every garbage entry dead-lettered",
    )
    wait_drained([client], [CHANNEL])
    for w in chaos.workers:
        wait_for(lambda w=w: w.running and "serving" in w.output(), timeout=30, message="worker started")
        w.signal(signal.SIGTERM)
    for w in chaos.workers:
        assert wait_exit(w, 60) == 0, w.output()[-3000:]

    done = counts(done_records(redis_client))
    good_dead = set(FailedMessage.objects.filter(message_id__in=sent).values_list("message_id", flat=True))
    lost = len(sent - set(done) - good_dead)
    duplicates = sum(done.values()) - len(done)
    line = (
        f"chaos soak: sent={JOBS} processed={len(set(done) & sent)} duplicates={duplicates} lost={lost} "
        f"dead_lettered_good={len(good_dead)} kills={chaos.kills} redis_restarts={chaos.restarts} "
        f"garbage={len(chaos.garbage)} garbage_dead_lettered={len(rows)} wrong_type_key={chaos.broken}"
    )
    print(line)
    (ARTIFACTS / "chaos-soak.txt").write_text(line + "\n")

    assert lost == 0, line
    assert set(done) <= sent, "a job nobody sent was run"
    assert len(rows) == len(chaos.garbage) >= MIN_GARBAGE, line
    assert set(chaos.garbage.values()) == set(garbage_for(CHANNEL)), "every kind of garbage was injected"
    assert chaos.kills >= MIN_KILLS and chaos.restarts >= MIN_RESTARTS, line
    assert FailedMessage.objects.filter(reason=FailedMessage.Reason.MALFORMED).count() == len(chaos.garbage)
    assert not pending(client, CHANNEL) and client.xlen(KEYS.stream(CHANNEL)) == 0
    client.close()
