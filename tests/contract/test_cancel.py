"""Cancel markers on every store (the store contract), and cancel through an in-process worker on every layer."""

from __future__ import annotations

import asyncio
import threading

import pytest

import taskchan
from taskchan.cancels import is_cancelled
from taskchan.envelope import message_id_of
from taskchan.models import FailedMessage
from taskchan.stores.redis_cancels import CANCEL_SCAN
from tests.contract import consumers
from tests.contract.conftest import arun_burst, run_burst
from tests.contract.test_store import CH, CH2, put

DAY_MS = 24 * 3600 * 1000


async def test_fetch_marks_exactly_the_cancelled_deliveries(store):
    await store.prepare([CH])
    kept, _ = await put(store)
    dropped, _ = await put(store)
    await store.acancel(dropped, DAY_MS)
    got = await store.fetch([CH], "A", 10, 0)
    assert [d.cancelled for d in got] == [False, True]  # in send order
    assert await store.cancelled([kept, dropped, "unknown"]) == {dropped}
    assert store.is_cancelled(dropped) and not store.is_cancelled(kept)


async def test_a_fetch_of_several_channels_marks_the_cancelled_deliveries(store):
    """On a cluster this read is a pipeline of one XREADGROUP per channel: it reads the markers too."""
    await store.prepare([CH, CH2])
    kept, _ = await put(store)
    dropped, _ = await put(store)
    dropped2, _ = await put(store, channel=CH2)
    kept2, _ = await put(store, channel=CH2)
    await store.acancel(dropped, DAY_MS)
    await store.acancel(dropped2, DAY_MS)
    got = await store.fetch([CH, CH2], "A", 10, 0)
    marked = {message_id_of(d.raw): d.cancelled for d in got}
    assert marked == {kept: False, dropped: True, dropped2: True, kept2: False}


async def test_more_live_markers_than_one_fetch_reads_are_still_all_found(store):
    await store.prepare([CH])
    ids = [(await put(store))[0] for _ in range(3)]
    for n in range(CANCEL_SCAN + 5):
        await store.acancel(f"other-{n}", DAY_MS)
    await store.acancel(ids[1], DAY_MS)
    got = await store.fetch([CH], "A", 10, 0)
    assert [d.cancelled for d in got] == [False, True, False]


async def test_a_marker_lapses_after_its_ttl(store):
    await store.prepare([CH])
    message_id, _ = await put(store)
    store.cancel(message_id, 100)
    assert store.is_cancelled(message_id)
    await asyncio.sleep(0.2)
    assert not store.is_cancelled(message_id)
    assert await store.cancelled([message_id]) == set()
    [delivery] = await store.fetch([CH], "A", 10, 0)
    assert not delivery.cancelled


pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_a_cancelled_queued_message_is_acked_unrun_on_every_layer(layer_store):
    keep = taskchan.send("taskchan.c.ok", {"n": 1})
    drop = taskchan.send("taskchan.c.ok", {"n": 2})
    later = taskchan.send("taskchan.c.ok", {"n": 3}, delay=0.3)
    taskchan.cancel(drop)
    taskchan.cancel(later)
    assert is_cancelled(drop) and is_cancelled(later) and not is_cancelled(keep)
    run_burst(["taskchan.c.ok"])  # returns once nothing is queued, scheduled or leased
    assert [e["id"] for e in consumers.events("taskchan.c.ok")] == [keep]
    assert not FailedMessage.objects.exists()


@pytestmark_db
def test_a_running_job_sees_its_cancel_on_every_layer(layer_store):
    message_id = taskchan.send("taskchan.c.cancel_aware", {})

    def cancel_once_started():
        for _ in range(500):
            if consumers.events("taskchan.c.cancel_aware"):
                taskchan.cancel(message_id)
                return
            threading.Event().wait(0.01)

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    asyncio.run(arun_burst(["taskchan.c.cancel_aware"], timeout=20))
    canceller.join()
    phases = [e["phase"] for e in consumers.events("taskchan.c.cancel_aware")]
    assert phases == ["started", "saw cancel"]  # one attempt: not retried
    assert not FailedMessage.objects.exists()
