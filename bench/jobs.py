"""The taskchan consumer for the benchmark: the same no-op as the other systems."""

from __future__ import annotations

import taskchan
from bench.common import TASKCHAN_CHANNEL, record_done


@taskchan.consumer(TASKCHAN_CHANNEL, max_attempts=3)
def noop(message) -> None:
    record_done(message.content)
