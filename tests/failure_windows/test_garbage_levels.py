"""Garbage written straight into the priority keys never stops a worker.

The keys (``taskchan/stores/keys.py``): a level's stream ``P:q:CH:pN`` and the
listing of levels ``P:lv:CH``, plus a scheduled member ``pN:...``.  fetch.lua
drops members of ``P:lv:CH`` that are no level, or whose stream is missing or
of another type; promote.lua sends a member whose level is out of range to
the channel's own stream whole (dead-lettered as malformed); garbage entries
of a level's stream are dead-lettered like those of the channel's own.
"""

from __future__ import annotations

import signal
import time

import pytest

import taskchan
from taskchan.models import FailedMessage
from tests.conftest import done_records, wait_for
from tests.failure_windows.helpers import KEYS, wait_exit
from tests.failure_windows.test_garbage import CH, GARBAGE, serve_and_check

pytestmark = pytest.mark.django_db(transaction=True)


def test_garbage_in_the_priority_keys_is_dropped_or_dead_lettered_and_every_good_message_runs(
    use_redis_layer, redis_client, worker
):
    good = [taskchan.send(CH, {"n": n}, priority=p) for n, p in enumerate([0, 5, 0, 5, -2])]
    levels = KEYS.levels(CH)
    redis_client.zadd(levels, {"abc": 1, "999": 2, "1.5": 3, "-0": 4, "7": 7, "3": 3})
    redis_client.set(KEYS.lane(CH, 3), "not a stream")
    fields, _phrase = GARBAGE["unexpected-fields"]
    redis_client.xadd(KEYS.lane(CH, 5), {k: v.decode("latin-1") for k, v in fields.items()})
    now_ms = int(time.time() * 1000)
    redis_client.zadd(KEYS.scheduled(CH), {"p999:not an envelope": now_ms, "p5:not json": now_ms})

    proc = serve_and_check(worker, redis_client, good)

    malformed = wait_for(
        lambda: (
            (
                rows := FailedMessage.objects.filter(
                    channel=CH, reason=FailedMessage.Reason.MALFORMED
                )
            ).count()
            == 3
            and rows
        ),
        timeout=30,
        message="three dead letters",
    )
    assert sorted(r.raw for r in malformed if r.raw.startswith(("p999", "not"))) == [
        "not json",
        "p999:not an envelope",
    ]
    # Only real levels stay listed, and only while their stream holds entries.
    wait_for(
        lambda: redis_client.zrange(levels, 0, -1) == [], timeout=10, message="the listing emptied"
    )
    assert redis_client.get(KEYS.lane(CH, 3)) == "not a stream"  # left as it was, no longer read
    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]


def test_a_level_listing_of_the_wrong_type_stops_no_worker(use_redis_layer, redis_client, worker):
    redis_client.set(KEYS.levels(CH), "not a sorted set")
    good = [taskchan.send(CH, {"n": n}) for n in range(3)]
    with pytest.raises(taskchan.StoreRefused, match="not a zset"):
        taskchan.send(CH, {"n": "high"}, priority=9)  # refused whole: nothing half-written

    proc = serve_and_check(worker, redis_client, good)

    assert len(done_records(redis_client)) == len(good) + 3
    proc.signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, proc.output()[-3000:]
