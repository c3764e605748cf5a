"""Progress from a consumer handed off to Celery (``handoff.celery_side.run``): pushed to its
watchers straight through the channel layer (no status record is kept for such messages),
throttled, with the last value always sent."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

import taskchan
from taskchan.handoff import celery_side
from taskchan.progress.events import group_name
from tests.celery.test_handoff_run import FakeTask, envelope_for

pytestmark = pytest.mark.django_db(transaction=True)


@taskchan.consumer("taskchan.cel.progress", handoff="celery")
def cel_progress(message):
    for i in range(1, 5001):
        message.progress(i, 5000)
    taskchan.report_progress(5000, 5000, "done looping")


def test_a_handed_off_consumer_reports_progress_to_its_watchers(celery_settings):
    envelope, raw = envelope_for("taskchan.cel.progress", {})

    async def watch():
        layer = get_channel_layer()
        me = await layer.new_channel("watcher.")
        await layer.group_add(group_name(envelope.id), me)
        return layer, me

    layer, me = asyncio.run(watch())
    celery_side.run(FakeTask(celery_settings), "taskchan.cel.progress", raw)

    async def received():
        seen = []
        while True:
            try:
                seen.append((await asyncio.wait_for(layer.receive(me), 1.0))["event"])
            except TimeoutError:
                return seen

    seen = asyncio.run(received())
    assert 1 <= len(seen) <= 20, len(seen)  # throttled, not 5,001 pushes
    assert all(e["type"] == "progress" and e["id"] == envelope.id for e in seen)
    assert (seen[-1]["current"], seen[-1]["note"], seen[-1]["attempt"]) == (5000, "done looping", 1)
