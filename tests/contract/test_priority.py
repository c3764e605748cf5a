"""Message priority on every store: a higher-priority message waiting on a channel is leased
before every lower one, equals in the order they were sent, and a message keeps its
priority through reclaim, retry, a delayed send's promotion and hand-back.

The store-level tests run on the Redis store, the in-memory one and the Redis
Cluster (``store``); the ``taskchan.send`` tests on every layout, sharded
included (``layer_store``).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskchan
from taskchan.envelope import decode
from taskchan.exceptions import InvalidOption
from taskchan.priority import MAX_PRIORITY, MIN_PRIORITY
from taskchan.stores.cluster import ClusterStore
from taskchan.stores.configured import get_store
from taskchan.stores.redis import RedisStore
from tests.contract.test_store import CH, eventually, next_attempt, put


def numbers(deliveries) -> list:
    return [decode(d.raw, d.channel).content["n"] for d in deliveries]


async def send_levels(store, levels, channel=CH) -> None:
    """One message per level, in that order, its content ``{"n": position}``."""
    await store.prepare([channel])
    for n, level in enumerate(levels):
        await put(store, {"n": n}, channel, priority=level)


async def drain(store, count, consumer="A") -> list:
    """Fetch ``count`` at a time until nothing is left; every delivery, in order."""
    out = []
    while got := await store.fetch([CH], consumer, count, 0):
        out += got
    return out


LEVELS = [0, 0, 5, -3, 5, 100, -100, 1, 0, -3]
#: positions in LEVELS, highest level first, equal levels in sending order
EXPECTED = sorted(range(len(LEVELS)), key=lambda n: (-LEVELS[n], n))


@pytest.mark.parametrize("count", [1, 3, 50])
async def test_higher_levels_are_leased_first_and_equals_in_sending_order(store, count):
    await store.prepare([CH])
    await send_levels(store, LEVELS)

    assert numbers(await drain(store, count)) == EXPECTED


async def test_a_higher_message_sent_later_is_leased_before_every_lower_one_waiting(store):
    await send_levels(store, [0, 0, 0, -1])
    assert numbers(await store.fetch([CH], "A", 1, 0)) == [0]
    await put(store, {"n": 9}, priority=2)

    assert numbers(await store.fetch([CH], "A", 2, 0)) == [9, 1]


async def test_acked_priority_messages_leave_nothing_behind(store):
    await send_levels(store, [3, -2, 0])
    got = await drain(store, 10)
    assert not await store.is_idle([CH])  # leased, not finished

    await store.ack(got)

    assert await store.is_idle([CH])
    assert await store.fetch([CH], "A", 10, 0) == []


async def test_stats_count_every_level(store):
    await send_levels(store, [3, 0, -1, 3])
    await store.fetch([CH], "A", 1, 0)

    [st] = await store.stats([CH])

    assert (st.queued, st.in_flight) == (3, 1)
    assert st.oldest_lease_age is not None


async def test_in_flight_lists_the_leases_of_every_level(store):
    await send_levels(store, [5, 0, -5])
    got = await store.fetch([CH], "A", 10, 0)

    listed = await store.in_flight(CH, 10)

    assert sorted(m.entry_id for m in listed) == sorted(d.entry_id for d in got)
    assert {m.message_id for m in listed} == {decode(d.raw, CH).id for d in got}
    assert len(await store.in_flight(CH, 2)) == 2


async def test_lapsed_leases_count_every_level(store):
    await send_levels(store, [3, 0, -1, 3])
    await store.fetch([CH], "A", 3, 0)
    await asyncio.sleep(0.3)

    assert await store.lapsed_leases(CH, 200, 100) == 3
    assert await store.lapsed_leases(CH, 200, 2) == 2


async def test_a_reclaimed_message_keeps_its_priority(store):
    await store.prepare([CH])
    await put(store, {"n": "high"}, priority=7)
    await store.fetch([CH], "A", 1, 0)
    await send_levels(store, [0, 0, 1])  # waiting while A's lease lapses
    await asyncio.sleep(0.3)

    [reclaimed] = await store.reclaim(CH, "B", 200, 10)
    assert numbers([reclaimed]) == ["high"] and reclaimed.reclaimed
    assert await store.extend(CH, "B", [reclaimed.entry_id]) == []
    assert await store.acharge(reclaimed, "B")
    assert await store.hand_back([reclaimed]) == 1  # back onto its own level

    assert numbers(await drain(store, 2, "C")) == ["high", 2, 0, 1]


async def test_a_reclaimed_message_is_acked_on_its_level(store):
    await send_levels(store, [-4, 4])
    await store.fetch([CH], "A", 10, 0)
    await asyncio.sleep(0.3)

    reclaimed = await store.reclaim(CH, "B", 200, 10)
    assert numbers(reclaimed) == [1, 0]  # highest level first
    await store.ack(reclaimed)

    assert await store.is_idle([CH])


@pytest.mark.parametrize("delay_ms", [0, 100])
async def test_a_retry_keeps_its_priority(store, delay_ms):
    await send_levels(store, [9])
    [high] = await store.fetch([CH], "A", 1, 0)
    await send_levels(store, [0, 0])

    assert await store.reschedule(high, next_attempt(high.raw), delay_ms)
    if delay_ms:
        await asyncio.sleep(0.2)
        await eventually(lambda: store.promote_all([CH]), what="the retry to be promoted")

    got = await drain(store, 10, "B")
    assert numbers(got) == [0, 0, 1]
    assert decode(got[0].raw, CH).attempts_before == 1


async def test_a_delayed_message_promoted_when_due_keeps_its_priority(store):
    await put(store, {"n": "late"}, delay_ms=100, priority=50)
    await send_levels(store, [0, 10])
    await asyncio.sleep(0.2)
    await eventually(lambda: store.promote_all([CH]), what="the delayed message to be promoted")

    assert numbers(await drain(store, 1)) == ["late", 1, 0]


@pytest.fixture(params=["redis", "cluster"])
async def scripted_store(request):
    """The stores that run Lua scripts (the in-memory one runs none), empty."""
    if request.param == "redis":
        store = RedisStore(request.getfixturevalue("redis_url"))
    else:
        store = ClusterStore([request.getfixturevalue("cluster").url])
    yield store
    await store.aclose()
    store.client.close()


async def test_a_fetch_after_redis_lost_its_scripts_loads_them_again(scripted_store):
    await send_levels(scripted_store, [0, 4])
    scripted_store.client.script_flush()  # as after a Redis restart

    assert numbers(await drain(scripted_store, 10)) == [1, 0]


async def test_a_priority_message_wakes_no_waiting_fetch_but_the_next_one_reads_it(store):
    """A fetch waits on the channel's own stream; a level's message is read by the next fetch."""
    await store.prepare([CH])
    waiting = asyncio.create_task(store.fetch([CH], "A", 10, 300))
    await asyncio.sleep(0.05)
    await put(store, {"n": 1}, priority=3)
    got = await waiting
    if not got:  # Redis: read by the next fetch, at most one wait later
        got = await store.fetch([CH], "A", 10, 0)

    assert numbers(got) == [1]


# -- taskchan.send on every layout -----------------------------------------------------------


def test_send_send_many_and_priority_order_on_every_layout(layer_store, burst):
    channel = "taskchan.c.ok"
    taskchan.send(channel, {"n": "low"}, priority=-5)
    taskchan.send_many(channel, [{"n": "mid"}, {"n": "mid2"}])
    taskchan.send(channel, {"n": "top"}, priority=MAX_PRIORITY)

    async def read():
        store = get_store()
        part = (await store.partitions([channel]))[0]
        await part.store.prepare([channel])
        try:
            return numbers(await part.store.fetch([channel], "A", 10, 0))
        finally:
            await store.aclose()

    assert asyncio.run(read()) == ["top", "mid", "mid2", "low"]


priorities = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
    st.decimals(allow_nan=False),
    st.just(1.0),
    st.just("5"),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(priorities)
def test_priority_bounds_are_enforced_and_a_refused_send_stores_nothing(
    use_redis_layer, redis_client, value
):
    if type(value) is int and MIN_PRIORITY <= value <= MAX_PRIORITY:
        return  # accepted: stored in order (the tests above)
    for call in (
        lambda: taskchan.send("taskchan.c.bounds", {}, priority=value),
        lambda: taskchan.send_many("taskchan.c.bounds", [{}], priority=value),
        lambda: asyncio.run(taskchan.asend("taskchan.c.bounds", {}, priority=value)),
    ):
        with pytest.raises(InvalidOption, match="priority must be an integer from -100 to 100"):
            call()
    assert redis_client.dbsize() == 0, "a refused send stored something"


@pytest.mark.parametrize("value", [MIN_PRIORITY - 1, MAX_PRIORITY + 1, True, 1.0, "5", None])
def test_a_refused_priority_stores_nothing_on_any_layout(layer_store, value):
    with pytest.raises(InvalidOption):
        taskchan.send("taskchan.c.bounds", {}, priority=value)
    assert asyncio.run(_idle("taskchan.c.bounds"))


async def _idle(channel) -> bool:
    store = get_store()
    try:
        return await store.is_idle([channel])
    finally:
        await store.aclose()


@pytest.mark.parametrize("value", [MIN_PRIORITY, MAX_PRIORITY, 0, -1, 1])
def test_priority_at_the_bounds_is_accepted(layer_store, value):
    assert taskchan.send("taskchan.c.ok", {}, priority=value)
