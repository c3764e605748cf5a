"""Consumers of the flow-control tests (tests/integration/test_flow_workers.py), loaded only in worker
processes started with TASKCHAN_TEST_FLOW=1 (tests/settings.py).

Each records JSON ``[message id, content, start, end, pid]`` (unix times) in list
``f:CHANNEL`` of the test Redis, so a test can check slots, windows and overlaps.
"""

import json
import os
import time

import taskchan
from tests.jobs import rec


def _run(message, seconds: float = 0.0) -> None:
    start = time.time()
    if seconds:
        time.sleep(seconds)
    record = [message.id, message.content, start, time.time(), os.getpid()]
    rec().rpush(f"f:{message.channel}", json.dumps(record))


@taskchan.consumer("taskchan.flow.tick", schedule=1)
def tick(message):
    _run(message)


@taskchan.consumer("taskchan.flow.rated", rate_limit="10/s")
def rated(message):
    _run(message)


@taskchan.consumer(
    "taskchan.flow.tenant", concurrency_limit=1, concurrency_key=lambda message: message.content["tenant"]
)
def tenant(message):
    _run(message, 0.15)


@taskchan.consumer("taskchan.flow.plain")
def plain(message):
    _run(message)


@taskchan.consumer("taskchan.flow.hold", concurrency_limit=1)
def hold(message):
    """One at a time; the first attempt sleeps content["seconds"] (a worker is killed meanwhile)."""
    rec().rpush("f:hold:started", message.id)
    _run(message, message.content["seconds"] if message.attempt == 1 else 0)
