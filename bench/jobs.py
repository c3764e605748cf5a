"""The taskchan consumer for the benchmark: the same no-op as the other systems."""

from __future__ import annotations

import taskchan
from bench.common import SPREAD_CHANNELS, TASKCHAN_CHANNEL, TIME_LIMITED_CHANNEL, record_done


@taskchan.consumer(TASKCHAN_CHANNEL, max_attempts=3)
def noop(message) -> None:
    record_done(message.content)


# The "timelimit" row: the same job under a time limit it never reaches.
taskchan.consumer(TIME_LIMITED_CHANNEL, max_attempts=3, time_limit=60)(noop.func)

# The "multi" and "sharded" rows: the same job on four channels.
for _channel in SPREAD_CHANNELS:
    taskchan.consumer(_channel, max_attempts=3)(noop.func)
