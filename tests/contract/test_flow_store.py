"""The flow-control contract (``FlowStore`` in ``taskchan.stores.flow_base``), run on every store.

Token buckets, concurrency slots, schedule slots and pauses behave alike on
Redis (``rate.lua``, ``slots.lua``, ``fire.lua``) and in memory; pause and
resume through the public API reach the channel's home store on every layer
(sharded too).
"""

from __future__ import annotations

import asyncio

import pytest

import taskchan
from taskchan.envelope import Envelope, decode
from taskchan.stores.configured import get_store
from tests.conftest import on_store

CH = "taskchan.c.flow"

pytestmark = pytest.mark.django_db


async def test_a_bucket_starts_full_gives_what_it_holds_and_says_when_the_next_token_is_due(store):
    # 10 tokens a second (0.01 per ms), holding at most 3.
    granted, wait = await store.take_tokens(CH, 0.01, 3, 5)
    assert (granted, 0.05 <= wait <= 0.1) == (3, True)
    assert (await store.take_tokens(CH, 0.01, 3, 1))[0] == 0
    await asyncio.sleep(wait + 0.05)
    granted, wait = await store.take_tokens(CH, 0.01, 3, 1)
    assert (granted, wait) == (1, 0)


async def test_slots_are_limited_per_key_kept_by_their_holder_and_freed_by_release(store):
    taken = await store.take_slots(CH, 2, 30_000, [("a", "m1"), ("a", "m2"), ("a", "m3"), ("b", "m4")])
    assert taken == [True, True, False, True]
    assert await store.take_slots(CH, 2, 30_000, [("a", "m1")]) == [True]  # already held
    await store.release_slots(CH, [("a", "m1")])
    assert await store.take_slots(CH, 2, 30_000, [("a", "m3")]) == [True]
    assert await store.take_slots(CH, 2, 30_000, [("a", "m5")]) == [False]


async def test_a_slot_not_renewed_lapses_and_a_renewed_one_does_not(store):
    assert await store.take_slots(CH, 1, 300, [("a", "dead"), ("b", "alive")]) == [True, True]
    for _ in range(4):
        await asyncio.sleep(0.1)
        await store.renew_slots(CH, 300, [("b", "alive")])
    # "dead" lapsed: its slot is free; "alive" still holds its key.
    assert await store.take_slots(CH, 1, 300, [("a", "new"), ("b", "other")]) == [True, False]
    await store.renew_slots(CH, 300, [("a", "dead")])  # a lapsed holding is not taken again
    assert await store.take_slots(CH, 1, 300, [("a", "new")]) == [True]


async def read_slots(store) -> list[str]:
    got = await store.fetch([CH], "reader", 100, 0)
    return [decode(d.raw, CH).content["slot"] for d in got]


def raw_for(slot: str) -> tuple[str, str]:
    env = Envelope.new(CH, {"slot": slot})
    return env.encode(), env.id


async def test_each_schedule_slot_fires_once_and_a_catch_up_needs_an_earlier_firing(store):
    await store.prepare([CH])
    assert not await store.fire_slot(CH, *raw_for("s1"), 1_000, catch_up=True)  # never fired: no catch-up
    assert await store.last_slots([CH]) == {}
    assert await store.fire_slot(CH, *raw_for("s1"), 1_000)
    assert not await store.fire_slot(CH, *raw_for("s1 again"), 1_000)
    assert not await store.fire_slot(CH, *raw_for("s0"), 500)  # earlier than the last one fired
    assert await store.fire_slot(CH, *raw_for("s3"), 3_000, catch_up=True)
    assert await read_slots(store) == ["s1", "s3"]
    assert await store.last_slots([CH, "taskchan.c.other"]) == {CH: 3.0}


async def test_pause_state_is_kept_until_resumed(store):
    assert await store.paused([CH]) == {}
    store.set_paused(CH, {"since": 1.5, "by": "ops"})
    assert await store.paused([CH, "taskchan.c.other"]) == {CH: {"since": 1.5, "by": "ops"}}
    store.set_paused(CH, None)
    assert await store.paused([CH]) == {}


def test_pause_and_resume_reach_the_channels_home_on_every_layer(layer_kind):
    taskchan.pause(CH, by="admin")
    store = get_store()

    def read():
        return on_store(store, lambda: store.home(CH).paused([CH]))

    assert read()[CH]["by"] == "admin"
    taskchan.resume(CH)
    assert read() == {}


@pytest.mark.parametrize("bad", ["", "taskchan", "other.channel", 3, None])
def test_pause_refuses_what_is_not_a_taskchan_channel(bad, use_memory_layer):
    with pytest.raises((taskchan.InvalidChannelName, TypeError)):
        taskchan.pause(bad)
