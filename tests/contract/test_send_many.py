"""``taskchan.send_many``: every message checked first, then one pipeline per host, on every layer."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskchan
from taskchan.bulk import send_many_stored
from taskchan.envelope import decode
from taskchan.exceptions import ContentNotSerializable, InvalidOption, StoreRefused
from taskchan.outgoing import build_many
from taskchan.stores.configured import get_store
from tests.admin.test_bulk_retry import RoundTrips
from tests.conftest import done_records, on_store
from tests.contract import consumers
from tests.contract.conftest import STATUS_LAYOUTS, configure_layer, run_burst
from tests.servers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

#: JSON values that survive a round trip unchanged (what send() accepts)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(params=STATUS_LAYOUTS)
def layer_kind(request):
    """The layouts that keep status records: every one."""
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


def test_bulk_store_keeps_order_over_channels_and_honours_idempotency_keys(layer_store):
    """The outbox sweep's and the bulk retry's step: channels interleaved, keys held before and within the call."""
    held = taskchan.send("taskchan.c.ok", {"n": "first"}, idempotency_key="held")
    items = []
    for n, (channel, key) in enumerate(
        [("taskchan.c.ok", None), ("taskchan.c.other", "k1"), ("taskchan.c.ok", "held"),
         ("taskchan.c.ok", "k2"), ("taskchan.c.ok", "k2"), ("taskchan.c.other", None)]
    ):  # fmt: skip
        delay_ms, [(message_id, raw)] = build_many(channel, [{"n": n}])
        items.append((channel, raw, message_id, {"delay_ms": delay_ms, "idempotency_key": key}))
    ids = send_many_stored(items)
    mine = [item[2] for item in items]
    assert ids == [mine[0], mine[1], held, mine[3], mine[3], mine[5]]
    assert queued("taskchan.c.ok") == 3 and queued("taskchan.c.other") == 2
    assert taskchan.status(mine[4]).state == "unknown"  # never stored: its key was held by mine[3]


def test_a_batch_on_a_stream_key_of_the_wrong_type_is_refused(use_redis_layer, redis_client):
    """Garbage where a channel's stream should be: StoreRefused for that channel's messages, the others stored."""
    redis_client.set("taskchan:q:taskchan.c.bad", "not a stream")
    with pytest.raises(StoreRefused, match="WRONGTYPE"):
        taskchan.send_many("taskchan.c.bad", [{"n": 1}, {"n": 2}])
    assert redis_client.get("taskchan:q:taskchan.c.bad") == "not a stream"
    assert not redis_client.sismember("taskchan:channels", "taskchan.c.bad")
    assert len(taskchan.send_many("taskchan.c.ok", [{"n": 1}])) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    contents=st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=4), min_size=1, max_size=5),
    max_attempts=st.none() | st.integers(1, 10_000),
    reply_channel=st.none() | st.just("reply.here"),
)
def test_built_envelopes_decode_to_what_send_would_store(contents, max_attempts, reply_channel):
    """Each templated envelope decodes to its own id and content and the call's options."""
    before = time.time()
    _delay_ms, built = build_many("taskchan.c.ok", contents, None, max_attempts, reply_channel)
    assert len({message_id for message_id, _ in built}) == len(contents)
    for (message_id, raw), content in zip(built, contents, strict=True):
        envelope = decode(raw, "taskchan.c.ok")
        assert envelope.id == message_id and len(message_id) == 32
        assert envelope.content == content
        assert (envelope.max_attempts, envelope.reply_channel) == (max_attempts, reply_channel)
        assert envelope.attempts_before == 0 and envelope.errors == [] and before <= envelope.sent_at <= time.time()
