"""Jobs ending right at their time limit, many times over, in an in-process worker on every layer.

The watchdog raises the time-limit exception while the job may be ending:
whatever the timing, every message must end exactly once (done, or dead-lettered
with TimeLimitExceeded) and no job thread may die of a late exception.
"""

from __future__ import annotations

import asyncio

import pytest

import taskchan
from taskchan.models import FailedMessage
from taskchan.worker import Worker
from tests.contract import consumers

pytestmark = pytest.mark.django_db(transaction=True)

#: jobs of 0 to 400 ms (a 0 ms job ends under the limit even on a loaded machine, a
#: 400 ms one never does), every 10 ms in between, the limit 200 ms
JOBS = 41


def test_jobs_ending_at_their_limit_each_end_once_and_no_thread_dies(layer_store):
    ids = [taskchan.send("taskchan.c.near_limit", {"ms": 10 * n}) for n in range(JOBS)]
    worker = Worker(["taskchan.c.near_limit"], burst=True, concurrency=4, poll_interval=0.02, grace=5.0)
    fatal = []
    worker.on_fatal = lambda what, exc: fatal.append((what, exc))

    async def run():
        try:
            return await asyncio.wait_for(worker.arun(), 60)
        finally:
            await worker.store.aclose()

    assert asyncio.run(run())
    assert not fatal
    done = [e["id"] for e in consumers.events("taskchan.c.near_limit")]
    limited = list(FailedMessage.objects.values_list("message_id", flat=True))
    assert sorted(done + limited) == sorted(ids)  # each exactly once
    assert limited, "no job ran past its limit: the test did not test the race"
    assert done, "every job ran past its limit: the test did not test the race"
    assert set(FailedMessage.objects.values_list("last_error_type", flat=True)) == {
        "taskchan.exceptions.TimeLimitExceeded"
    }
