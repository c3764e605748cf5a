"""Consumers that report progress (channels ``taskchan.p.*``), for tests/contract/test_progress.py."""

from __future__ import annotations

import asyncio
import threading

import tenacity

import taskchan

#: progress calls the tight loop makes
CALLS = 10_000


@taskchan.consumer("taskchan.p.loop", result_ttl=600)
def tight_loop(message):
    """``content["calls"]`` progress reports in a tight loop (0: none, the same job without them)."""
    calls = message.content.get("calls", CALLS)
    for i in range(1, calls + 1):
        message.progress(i, calls, "looping")
    return {"calls": calls}


@taskchan.consumer("taskchan.p.async")
async def async_steps(message):
    for i in range(1, 4):
        message.progress(i, 3)
        await asyncio.sleep(0.01)


def helper_deep_down(step: int) -> bool:
    """Code with no ``message``: reports through the context variable."""
    return taskchan.report_progress(step, note=f"helper step {step}")


@taskchan.consumer("taskchan.p.helper", result_ttl=600)
def via_helper(message):
    reported = [helper_deep_down(i) for i in (1, 2)]
    # ... and from a thread the consumer starts, handed the message
    box = []
    thread = threading.Thread(target=lambda: box.append(message.progress(3, 3, "from a thread")))
    thread.start()
    thread.join()
    return {"reported": [*reported, *box]}


@taskchan.consumer("taskchan.p.fails", max_attempts=2, backoff=tenacity.wait_fixed(0.05))
def fails_after_progress(message):
    message.progress(message.attempt, 10, f"attempt {message.attempt}")
    raise ValueError(f"boom on attempt {message.attempt}")
