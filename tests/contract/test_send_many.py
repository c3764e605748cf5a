"""``taskchan.send_many``: every message checked first, then one pipeline per host, on every layer."""

from __future__ import annotations

import time

import pytest

import taskchan
from taskchan.exceptions import ContentNotSerializable, InvalidOption
from taskchan.stores.configured import get_store
from tests.admin.test_bulk_retry import RoundTrips
from tests.conftest import done_records, on_store
from tests.contract import consumers
from tests.contract.conftest import STATUS_LAYOUTS, configure_layer, run_burst
from tests.servers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=STATUS_LAYOUTS)
def layer_kind(request):
    """The layouts that keep status records; the cluster's own test is test_status.py's last."""
    return configure_layer(request)


def queued(channel) -> int:
    store = get_store()
    [st] = on_store(store, lambda: store.stats([channel]))
    return st.queued + st.in_flight + st.scheduled


def test_all_stored_and_run_in_order_of_ids(layer_store):
    ids = taskchan.send_many("taskchan.c.ok", [{"n": i} for i in range(50)])
    assert len(set(ids)) == 50 and queued("taskchan.c.ok") == 50
    assert taskchan.status(ids[7]).state == "queued"
    run_burst(["taskchan.c.ok"])
    seen = {e["id"]: e["content"]["n"] for e in consumers.events("taskchan.c.ok")}
    assert seen == {message_id: n for n, message_id in enumerate(ids)}


def test_options_apply_to_every_message(layer_store):
    ids = taskchan.send_many("taskchan.c.ok", [{"n": 1}, {"n": 2}], delay=60, max_attempts=2)
    assert {taskchan.status(i).state for i in ids} == {"scheduled"}


@pytest.mark.parametrize(
    ("contents", "error", "match"),
    [
        ([{"n": 1}, {"n": 2}, ["not a dict"]], ContentNotSerializable, r"contents\[2\]"),
        ([{"n": 1}, {"bad": object()}], ContentNotSerializable, r"contents\[1\]"),
    ],
)
def test_one_bad_content_stores_nothing(layer_store, contents, error, match):
    with pytest.raises(error, match=match):
        taskchan.send_many("taskchan.c.ok", contents)
    assert queued("taskchan.c.ok") == 0


@pytest.mark.parametrize("options", [{"delay": -1}, {"max_attempts": 0}, {"delay": float("nan")}])
def test_bad_options_store_nothing(layer_store, options):
    with pytest.raises(InvalidOption):
        taskchan.send_many("taskchan.c.ok", [{"n": 1}], **options)
    assert queued("taskchan.c.ok") == 0


async def test_asend_many(layer_store):
    ids = await taskchan.asend_many("taskchan.c.ok", [{"n": 1}, {"n": 2}])
    assert len(ids) == 2 and (await taskchan.astatus(ids[1])).state == "queued"
    await get_store().aclose()


def test_ten_thousand_in_one_pipeline_run_by_a_worker_process(use_redis_layer, redis_client, worker, monkeypatch):
    trips = RoundTrips(monkeypatch)
    started = time.perf_counter()
    ids = taskchan.send_many("taskchan.t.record", [{"i": i} for i in range(10_000)])
    elapsed = time.perf_counter() - started
    monkeypatch.undo()
    print(f"\nsend_many of 10,000: {elapsed:.2f} s, {len(trips.commands)} round trips")
    assert sum(b"EVALSHA" in c for c in trips.commands) == 1  # all 10,000 in one write
    assert len(set(ids)) == 10_000
    worker("taskchan.t.record", args=["--concurrency", "4"])
    wait_for(lambda: redis_client.llen("t:done") >= 10_000, timeout=120, message="10,000 jobs done")
    assert {record[0] for record in done_records(redis_client)} == set(ids)
