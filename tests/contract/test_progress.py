"""Progress reports on every layer (Redis, in-memory, sharded, cluster), through an in-process worker.

A watcher joins the message's group on the configured channel layer before the
worker runs, then reads what was pushed; the status record keeps the last value.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
from channels.layers import get_channel_layer

import taskchan
from taskchan.progress.events import LAYER_TYPE, group_name
from tests.contract import progress_consumers  # noqa: F401  (registers taskchan.p.*)
from tests.contract.conftest import STATUS_LAYOUTS, arun_burst, configure_layer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=STATUS_LAYOUTS)
def layer_kind(request):
    """The layouts that keep status records (every one), where the last progress is kept too."""
    return configure_layer(request)


async def watched_run(channel: str, content: dict, **burst) -> tuple[str, list[dict]]:
    """Send one message, watch its group while a burst worker runs it; (id, events in order)."""
    layer = get_channel_layer()
    me = await layer.new_channel("watcher.")
    message_id = await taskchan.asend(channel, content)
    await layer.group_add(group_name(message_id), me)
    await arun_burst([channel], **burst)
    seen = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(me), 1.0)
        except TimeoutError:
            break
        assert message["type"] == LAYER_TYPE
        event = message["event"]
        if "progress" in event:  # an outcome carries the last value when it was not pushed yet
            seen.append(event["progress"])
            event = {k: v for k, v in event.items() if k != "progress"}
        seen.append(event)
        if message["event"]["type"] in ("succeeded", "failed"):
            break
    await layer.group_discard(group_name(message_id), me)
    return message_id, seen


def test_tight_loop_keeps_the_last_value_and_pushes_it_before_the_outcome(layer_store):
    message_id, seen = asyncio.run(watched_run("taskchan.p.loop", {}))
    kinds = [e["type"] for e in seen]
    assert kinds[-1] == "succeeded" and seen[-1]["result"] == {"calls": 10_000}
    progress = [e for e in seen if e["type"] == "progress"]
    # Coalesced: a handful of pushes, not 10,000; the last one is the last value.
    assert 1 <= len(progress) <= 20, len(progress)
    assert progress[-1]["current"] == progress[-1]["total"] == 10_000
    assert progress[-1]["note"] == "looping" and progress[-1]["attempt"] == 1
    assert [e["current"] for e in progress] == sorted(e["current"] for e in progress)
    found = taskchan.status(message_id)
    assert found.state == "succeeded"
    assert {k: found.progress[k] for k in ("current", "total", "note", "attempt")} == {
        "current": 10_000, "total": 10_000, "note": "looping", "attempt": 1,
    }


def test_async_consumer_reports(layer_store):
    message_id, seen = asyncio.run(watched_run("taskchan.p.async", {}))
    assert [e["type"] for e in seen][-2:] == ["progress", "succeeded"]
    assert seen[-2]["current"] == 3 and seen[-1]["has_result"] is False
    assert taskchan.status(message_id).progress["current"] == 3


def test_report_progress_without_a_message_and_from_a_thread(layer_store):
    message_id, seen = asyncio.run(watched_run("taskchan.p.helper", {}))
    assert seen[-1]["result"] == {"reported": [True, True, True]}
    assert seen[-2]["note"] == "from a thread" and seen[-2]["current"] == 3
    assert taskchan.status(message_id).progress["note"] == "from a thread"


def test_outside_a_job_reporting_is_a_checked_no_op():
    assert taskchan.report_progress(1, 2, "nobody listens") is False
    with pytest.raises(taskchan.InvalidOption):
        taskchan.report_progress(3, 2)


def test_retry_then_failure_are_pushed_with_short_errors(layer_store):
    message_id, seen = asyncio.run(watched_run("taskchan.p.fails", {}))
    kinds = [e["type"] for e in seen]
    assert kinds == ["progress", "retrying", "started", "progress", "failed"], seen
    retrying, started, failed = seen[1], seen[2], seen[4]
    assert retrying["attempt"] == 1 and retrying["error"] == "ValueError: boom on attempt 1"
    assert retrying["next_at"] > seen[0]["at"]
    assert started["attempt"] == 2
    assert failed == {"type": "failed", "id": message_id, "attempt": 2, "error": "ValueError: boom on attempt 2"}
    assert "Traceback" not in str(seen)
    found = taskchan.status(message_id)
    assert found.state == "failed" and found.progress["note"] == "attempt 2"


def commands(client) -> int:
    return sum(int(stats["calls"]) for stats in client.info("commandstats").values())


def run_counted(client, content: dict) -> int:
    before = commands(client)
    asyncio.run(watched_run("taskchan.p.loop", content))
    return commands(client) - before - 1  # INFO itself


def test_ten_thousand_progress_calls_cost_a_bounded_number_of_redis_commands(use_redis_layer):
    """Counted on the test's own Redis (INFO commandstats): the job with 10,000 reports
    against the same job without any, both watched."""
    client = redis.Redis.from_url(use_redis_layer)
    try:
        without = run_counted(client, {"calls": 0})
        with_progress = run_counted(client, {"calls": 10_000})
    finally:
        client.close()
    # Each flush (one per TASKCHAN_PROGRESS_INTERVAL while the loop runs, and the
    # last with the outcome) costs a status.lua call in the ack pipeline and a
    # group_send (a few commands): tens of commands, never thousands.
    assert with_progress - without <= 60, (without, with_progress)
