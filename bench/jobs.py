"""The taskchan consumer for the benchmark: the same no-op as the other systems."""

from __future__ import annotations

import os

import taskchan
from bench.common import SPREAD_CHANNELS, TASKCHAN_CHANNEL, record_done

#: the "progress" row: each job reports this many times (message.progress) before it is done
PROGRESS_CALLS = int(os.environ.get("BENCH_PROGRESS_CALLS", "0"))


@taskchan.consumer(TASKCHAN_CHANNEL, max_attempts=3)
def noop(message) -> None:
    for i in range(1, PROGRESS_CALLS + 1):
        message.progress(i, PROGRESS_CALLS)
    record_done(message.content)


# The "multi" and "sharded" rows: the same job on four channels.
for _channel in SPREAD_CHANNELS:
    taskchan.consumer(_channel, max_attempts=3)(noop.func)
