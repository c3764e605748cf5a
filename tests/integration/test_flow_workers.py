"""Flow control with real worker processes on real Redis: schedules, rate and concurrency limits, pause.

The consumers are in ``tests/flow_jobs.py``; each run records its message id,
content and start/end times, so the assertions read what really ran, when.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import defaultdict
from datetime import datetime

import pytest

import taskchan
from tests.conftest import wait_for
from tests.servers import STARTUP_TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = {"TASKCHAN_TEST_FLOW": "1"}


def both_ready(client) -> None:
    """Both workers registered: a slow start would leave all the work to the other."""
    wait_for(lambda: client.zcard("taskchan:w") == 2, timeout=STARTUP_TIMEOUT, message="two workers registered")


def runs(client, channel: str) -> list[tuple[str, dict, float, float, int]]:
    return [tuple(json.loads(item)) for item in client.lrange(f"f:{channel}", 0, -1)]


def test_a_one_second_schedule_fires_every_slot_once_across_three_workers_and_a_kill(use_redis_layer, redis_client, worker):
    workers = [worker("taskchan.flow.tick", **FLOW) for _ in range(3)]
    wait_for(lambda: len(runs(redis_client, "taskchan.flow.tick")) >= 5, timeout=STARTUP_TIMEOUT, message="five slots")
    workers[0].signal(signal.SIGKILL)  # mid-run: the other two go on firing every slot
    killed_at = time.time()
    wait_for(lambda: max(r[2] for r in runs(redis_client, "taskchan.flow.tick")) > killed_at + 5, timeout=30,
             message="five more seconds of slots after the kill")
    for proc in workers[1:]:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.output()

    messages_per_slot = defaultdict(set)
    for message_id, content, *_ in runs(redis_client, "taskchan.flow.tick"):
        messages_per_slot[content["slot"]].add(message_id)
    slots = sorted(datetime.fromisoformat(s).timestamp() for s in messages_per_slot)
    # Every second from the first slot to the last, each sent as exactly one message.
    assert slots == [slots[0] + i for i in range(len(slots))], slots
    assert len(slots) >= 10
    assert all(len(ids) == 1 for ids in messages_per_slot.values()), messages_per_slot
    assert all(s.endswith("Z") and s.count(":") == 2 for s in messages_per_slot)


def test_a_rate_limit_holds_across_two_workers(use_redis_layer, redis_client, worker):
    workers = [worker("taskchan.flow.rated", args=["--concurrency", "4"], **FLOW) for _ in range(2)]
    both_ready(redis_client)
    for n in range(40):
        taskchan.send("taskchan.flow.rated", {"n": n})
    wait_for(lambda: len(runs(redis_client, "taskchan.flow.rated")) == 40, timeout=60, message="40 runs")

    starts = sorted(r[2] for r in runs(redis_client, "taskchan.flow.rated"))
    assert len({r[4] for r in runs(redis_client, "taskchan.flow.rated")}) == 2  # both workers took part
    # "10/s" holds at most 1 token: any one-second window sees at most 10 + 1
    # starts (the window is shortened by 50 ms for the jitter between the
    # token and the job's clock reading).
    busiest = max(sum(1 for s in starts if t <= s < t + 0.95) for t in starts)
    assert busiest <= 11, busiest
    # 40 starts need at least (40 - 1) / 10 s.
    assert starts[-1] - starts[0] >= 3.8
    for proc in workers:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.output()


def test_a_concurrency_limit_of_one_per_key_never_overlaps_across_two_workers(use_redis_layer, redis_client, worker):
    # --prefetch 1: one worker holds at most 5 of the 24 (the default 16 let the first
    # to read lease 20 and, on a loaded machine, run them all before the other read).
    args = ["--concurrency", "4", "--prefetch", "1"]
    workers = [worker("taskchan.flow.tenant", args=args, **FLOW) for _ in range(2)]
    both_ready(redis_client)
    for n in range(24):
        taskchan.send("taskchan.flow.tenant", {"tenant": f"t{n % 3}", "n": n})
    wait_for(lambda: len(runs(redis_client, "taskchan.flow.tenant")) == 24, timeout=60, message="24 runs")

    by_tenant = defaultdict(list)
    for _id, content, start, end, _pid in runs(redis_client, "taskchan.flow.tenant"):
        by_tenant[content["tenant"]].append((start, end))
    for tenant, spans in by_tenant.items():
        spans.sort()
        overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
        assert not overlaps, (tenant, overlaps)
    # ...while different tenants did run side by side (the limit is per key).
    everything = sorted((s, e) for spans in by_tenant.values() for s, e in spans)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(everything))
    assert len({r[4] for r in runs(redis_client, "taskchan.flow.tenant")}) == 2
    for proc in workers:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.output()


def test_pause_holds_messages_across_a_worker_start_and_resume_releases_them(use_redis_layer, redis_client, worker):
    taskchan.pause("taskchan.flow.plain", by="test")
    ids = {taskchan.send("taskchan.flow.plain", {"n": n}) for n in range(5)}  # sends are accepted
    proc = worker("taskchan.flow.plain", **FLOW)
    wait_for(lambda: redis_client.zcard("taskchan:w") == 1, timeout=STARTUP_TIMEOUT, message="the worker registered")
    time.sleep(2.5)
    assert runs(redis_client, "taskchan.flow.plain") == []

    taskchan.resume("taskchan.flow.plain")

    wait_for(lambda: len(runs(redis_client, "taskchan.flow.plain")) == 5, timeout=20, message="5 runs after resume")
    assert {r[0] for r in runs(redis_client, "taskchan.flow.plain")} == ids
    # Paused again while it runs: new sends wait, the worker keeps running.
    taskchan.pause("taskchan.flow.plain")
    time.sleep(1.5)
    later = taskchan.send("taskchan.flow.plain", {"n": "later"})
    time.sleep(2.5)
    assert later not in {r[0] for r in runs(redis_client, "taskchan.flow.plain")}
    taskchan.resume("taskchan.flow.plain")
    wait_for(lambda: len(runs(redis_client, "taskchan.flow.plain")) == 6, timeout=20, message="the later one runs")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


def test_a_killed_workers_concurrency_slot_frees_itself_when_its_lease_lapses(use_redis_layer, redis_client, worker):
    short = {**FLOW, "TASKCHAN_VISIBILITY_TIMEOUT": "2"}
    first = worker("taskchan.flow.hold", **short)
    stuck = taskchan.send("taskchan.flow.hold", {"seconds": 60})
    wait_for(lambda: redis_client.llen("f:hold:started") == 1, timeout=STARTUP_TIMEOUT, message="the first job started")
    first.signal(signal.SIGKILL)  # holding the channel's only slot
    waiting = taskchan.send("taskchan.flow.hold", {"seconds": 0})

    second = worker("taskchan.flow.hold", **short)

    # Its slot lapsed with its lease: the second worker runs both (the killed
    # job again, as attempt 2, and the one that waited for the slot).
    wait_for(lambda: len(runs(redis_client, "taskchan.flow.hold")) == 2, timeout=STARTUP_TIMEOUT, message="both ran")
    assert {r[0] for r in runs(redis_client, "taskchan.flow.hold")} == {stuck, waiting}
    spans = sorted((r[2], r[3]) for r in runs(redis_client, "taskchan.flow.hold"))
    assert spans[0][1] <= spans[1][0]  # one at a time still
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.output()
