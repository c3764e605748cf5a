"""The taskchan consumer for the benchmark: the same no-op as the other systems."""

from __future__ import annotations

import os

import taskchan
from bench.common import (
    LIMITED_CHANNEL,
    RATED_CHANNEL,
    SPREAD_CHANNELS,
    TASKCHAN_CHANNEL,
    TIME_LIMITED_CHANNEL,
    record_done,
)

#: the "progress" row: each job reports this many times (message.progress) before it is done
PROGRESS_CALLS = int(os.environ.get("BENCH_PROGRESS_CALLS", "0"))


@taskchan.consumer(TASKCHAN_CHANNEL, max_attempts=3)
def noop(message) -> None:
    for i in range(1, PROGRESS_CALLS + 1):
        message.progress(i, PROGRESS_CALLS)
    record_done(message.content)


# The "timelimit" row: the same job under a time limit it never reaches.
taskchan.consumer(TIME_LIMITED_CHANNEL, max_attempts=3, time_limit=60)(noop.func)

# The "multi" and "sharded" rows: the same job on four channels.
for _channel in SPREAD_CHANNELS:
    taskchan.consumer(_channel, max_attempts=3)(noop.func)

# The "rated" and "limited" rows: flow control's bookkeeping, with limits that do not bind.
taskchan.consumer(RATED_CHANNEL, max_attempts=3, rate_limit="1000000/s")(noop.func)
taskchan.consumer(
    LIMITED_CHANNEL, max_attempts=3, concurrency_limit=1000, concurrency_key=lambda message: message.content["i"] % 8
)(noop.func)
