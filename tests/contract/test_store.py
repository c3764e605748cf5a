"""The reliable-store contract (``taskchan.stores.base``), run on every store.

Each test runs twice through the parametrised ``store`` fixture: on a
``RedisStore`` against the test's private redis-server, and on a
``MemoryStore``.  Lease ages are driven with short sleeps and a small
``min_idle_ms``; every such check leaves a wide margin either side, and no
test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from taskchan.envelope import Envelope, decode

CH = "taskchan.c.contract"
CH2 = "taskchan.c.contract2"


def make(content=None, channel=CH) -> tuple[str, str]:
    """A fresh (message id, envelope JSON)."""
    env = Envelope.new(channel, content if content is not None else {"n": 1})
    return env.id, env.encode()


async def put(store, content=None, channel=CH, **options) -> tuple[str, str]:
    message_id, raw = make(content, channel)
    assert await store.asend(channel, raw, message_id, **options) == message_id
    return message_id, raw


async def one(store, consumer="A", channel=CH):
    """Fetch exactly one delivery."""
    got = await store.fetch([channel], consumer, 10, 0)
    assert len(got) == 1, got
    return got[0]


async def stats(store, channel=CH):
    [st] = await store.stats([channel])
    assert st.channel == channel
    return st


async def eventually(make_call, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await make_call()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def next_attempt(raw: str, attempt: int = 1) -> str:
    return decode(raw, CH).failed(attempt, "builtins.ValueError", "boom", "Traceback ...").encode()


@pytest.fixture(params=["acharge", "charge"])
def charge(request, store):
    """``store.acharge``, or the sync ``store.charge`` called from a thread as a job thread does."""
    if request.param == "acharge":
        return store.acharge

    async def from_a_thread(delivery, consumer):
        return await asyncio.to_thread(store.charge, delivery, consumer)

    return from_a_thread


# -- send / fetch / ack --------------------------------------------------------


async def test_send_then_fetch_returns_it_once_with_one_delivery(store):
    message_id, raw = make({"photo_id": 7})
    # Sent before any worker prepared the channel: still delivered.
    assert store.send(CH, raw, message_id) == message_id
    await store.prepare([CH])

    [delivery] = await store.fetch([CH], "A", 10, 0)

    assert delivery.channel == CH
    assert delivery.raw == raw
    # A fresh read counts itself.
    assert (delivery.deliveries, delivery.reclaimed) == (1, False)
    assert delivery.entry_id
    assert decode(delivery.raw, CH).content == {"photo_id": 7}


async def test_fetch_keeps_send_order_and_respects_count(store):
    await store.prepare([CH])
    sent = [(await put(store, {"n": n}))[1] for n in range(3)]

    first = await store.fetch([CH], "A", 2, 0)
    rest = await store.fetch([CH], "A", 2, 0)

    assert [d.raw for d in first] == sent[:2]
    assert [d.raw for d in rest] == sent[2:]


async def test_fetch_serves_several_channels_and_names_each_delivery_channel(store):
    await store.prepare([CH, CH2])
    _, raw1 = await put(store, {"a": 1}, channel=CH)
    _, raw2 = await put(store, {"b": 2}, channel=CH2)

    got = await store.fetch([CH, CH2], "A", 10, 0)

    assert sorted((d.channel, d.raw) for d in got) == sorted([(CH, raw1), (CH2, raw2)])


async def test_a_fetched_entry_is_not_fetched_again(store):
    await store.prepare([CH])
    await put(store)
    await one(store, "A")

    assert await store.fetch([CH], "A", 10, 0) == []
    assert await store.fetch([CH], "B", 10, 0) == []


async def test_a_blocking_fetch_returns_a_message_sent_while_it_waits(store):
    await store.prepare([CH])
    waiting = asyncio.create_task(store.fetch([CH], "A", 10, 10_000))
    await asyncio.sleep(0.05)
    _, raw = await put(store)

    got = await asyncio.wait_for(waiting, 5)

    assert [d.raw for d in got] == [raw]


async def test_ack_removes_the_entry(store):
    await store.prepare([CH])
    await put(store)
    delivery = await one(store)
    assert not await store.is_idle([CH])

    await store.ack([delivery])

    assert await store.is_idle([CH])
    assert await store.fetch([CH], "B", 10, 0) == []
    # An acked entry has no lease left to lapse.
    assert await store.reclaim(CH, "B", 0, 10) == []
    st = await stats(store)
    assert (st.queued, st.in_flight, st.scheduled) == (0, 0, 0)


# -- leases --------------------------------------------------------------------


async def test_a_lease_not_extended_lapses_and_reclaim_takes_it_at_the_count_it_had(store):
    await store.prepare([CH])
    _, raw = await put(store)
    delivery = await one(store, "A")
    assert (delivery.deliveries, delivery.reclaimed) == (1, False)
    # A fresh lease is not taken.
    assert await store.reclaim(CH, "B", 60_000, 10) == []

    await asyncio.sleep(0.1)
    [reclaimed] = await store.reclaim(CH, "B", 50, 10)

    assert reclaimed.entry_id == delivery.entry_id
    assert reclaimed.raw == raw
    assert reclaimed.channel == CH
    # Reclaiming does not raise the count: B has not started it yet.
    assert (reclaimed.deliveries, reclaimed.reclaimed) == (1, True)
    # B holds it now, with a fresh lease.
    assert await store.reclaim(CH, "C", 60_000, 10) == []
    # B died with it unstarted (say, in its prefetch buffer): reclaiming it
    # again does not charge it for B's crash.
    await asyncio.sleep(0.1)
    [again] = await store.reclaim(CH, "C", 50, 10)
    assert (again.entry_id, again.deliveries, again.reclaimed) == (delivery.entry_id, 1, True)


async def test_each_lapse_that_followed_a_start_is_visible_in_the_delivery_count(store):
    # A crash loop: every holder charges its start, then dies with the job.
    await store.prepare([CH])
    await put(store)
    delivery = await one(store, "A")

    for holder, charged_so_far in [("B", 1), ("C", 2), ("D", 3)]:
        await asyncio.sleep(0.1)
        [reclaimed] = await store.reclaim(CH, holder, 50, 10)
        assert (reclaimed.entry_id, reclaimed.deliveries, reclaimed.reclaimed) == (
            delivery.entry_id,
            charged_so_far,
            True,
        )
        assert await store.acharge(reclaimed, holder) is True

    await asyncio.sleep(0.1)
    [last] = await store.reclaim(CH, "E", 50, 10)
    assert last.deliveries == 4


async def test_reclaim_takes_at_most_count(store):
    await store.prepare([CH])
    for n in range(3):
        await put(store, {"n": n})
    await store.fetch([CH], "A", 10, 0)
    await asyncio.sleep(0.1)

    first = await store.reclaim(CH, "B", 50, 2)
    second = await store.reclaim(CH, "B", 50, 2)

    assert len(first) == 2
    assert len(second) == 1
    assert len({d.entry_id for d in first + second}) == 3


async def test_extend_keeps_a_lease_alive_without_counting_a_delivery(store):
    await store.prepare([CH])
    await put(store)
    delivery = await one(store, "A")

    # Held for 3 x 150 ms against a 120 ms lease, renewed in between.
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await store.extend(CH, "A", [delivery.entry_id]) == []
        assert await store.reclaim(CH, "B", 120, 10) == []

    # Renewals stop: the lease lapses, and the renewals were not counted.
    await asyncio.sleep(0.15)
    [reclaimed] = await store.reclaim(CH, "B", 120, 10)
    assert (reclaimed.deliveries, reclaimed.reclaimed) == (1, True)

    # Renewing a charged delivery keeps the charged count (neither raised nor reset).
    assert await store.acharge(reclaimed, "B") is True
    for _ in range(2):
        await asyncio.sleep(0.15)
        assert await store.extend(CH, "B", [reclaimed.entry_id]) == []
        assert await store.reclaim(CH, "C", 120, 10) == []
    await asyncio.sleep(0.15)
    [again] = await store.reclaim(CH, "C", 120, 10)
    assert (again.entry_id, again.deliveries) == (reclaimed.entry_id, 2)


async def test_extend_reports_entries_another_consumer_reclaimed_as_lost(store):
    await store.prepare([CH])
    await put(store)
    await put(store)
    mine, lapsing = await store.fetch([CH], "A", 10, 0)
    await asyncio.sleep(0.1)
    await store.extend(CH, "A", [mine.entry_id])
    [taken] = await store.reclaim(CH, "B", 80, 10)
    assert taken.entry_id == lapsing.entry_id

    lost = await store.extend(CH, "A", [mine.entry_id, lapsing.entry_id])

    assert lost == [lapsing.entry_id]
    # The new holder's extend is fine, and A's failed extend did not take it back.
    assert await store.extend(CH, "B", [lapsing.entry_id]) == []
    assert await store.extend(CH, "A", [lapsing.entry_id]) == [lapsing.entry_id]


async def test_extend_does_not_report_an_entry_finished_meanwhile(store):
    # A job acked (or rescheduled) while a heartbeat was on its way is done,
    # not lost to another worker.
    await store.prepare([CH])
    await put(store)
    delivery = await one(store, "A")
    await store.ack([delivery])

    assert await store.extend(CH, "A", [delivery.entry_id]) == []
    assert await store.is_idle([CH])


# -- charge --------------------------------------------------------------------


async def test_charge_records_the_start_of_a_reclaimed_delivery(store, charge):
    await store.prepare([CH])
    await put(store)
    delivery = await one(store, "A")
    await asyncio.sleep(0.1)
    [taken] = await store.reclaim(CH, "B", 50, 10)
    assert taken.deliveries == 1

    assert await charge(taken, "B") is True
    # The same charge again (a call retried after its reply was lost) records
    # the same count, not one more.
    assert await charge(taken, "B") is True

    # B still holds it; once that lease lapses, the charged count shows.
    assert await store.extend(CH, "B", [taken.entry_id]) == []
    await asyncio.sleep(0.1)
    [again] = await store.reclaim(CH, "C", 50, 10)
    assert (again.entry_id, again.deliveries, again.reclaimed) == (delivery.entry_id, 2, True)


async def test_charge_refuses_an_entry_another_consumer_took_and_changes_nothing(store, charge):
    await store.prepare([CH])
    await put(store)
    delivery = await one(store, "A")
    await asyncio.sleep(0.1)
    [b_copy] = await store.reclaim(CH, "B", 50, 10)
    # B stalls before starting it; its lease lapses and C takes the entry over.
    await asyncio.sleep(0.1)
    [c_copy] = await store.reclaim(CH, "C", 50, 10)
    assert b_copy.entry_id == c_copy.entry_id == delivery.entry_id

    # B gets round to starting it: refused, so the job does not start there.
    assert await charge(b_copy, "B") is False

    # Nothing changed: C still holds it, at the count it had.
    assert await store.extend(CH, "B", [delivery.entry_id]) == [delivery.entry_id]
    assert await store.extend(CH, "C", [delivery.entry_id]) == []
    await asyncio.sleep(0.1)
    [d_copy] = await store.reclaim(CH, "D", 50, 10)
    assert (d_copy.entry_id, d_copy.deliveries) == (delivery.entry_id, 1)


async def test_charge_after_ack_returns_false(store, charge):
    await store.prepare([CH])
    await put(store)
    await one(store, "A")
    await asyncio.sleep(0.1)
    [taken] = await store.reclaim(CH, "B", 50, 10)
    await store.ack([taken])

    assert await charge(taken, "B") is False

    # Nothing came back to life.
    assert await store.is_idle([CH])
    assert await store.reclaim(CH, "C", 0, 10) == []
    st = await stats(store)
    assert (st.queued, st.in_flight, st.scheduled) == (0, 0, 0)


# -- retries: reschedule and promote -----------------------------------------------


async def test_reschedule_with_delay_schedules_it_and_promote_moves_it_once_due(store):
    await store.prepare([CH])
    _, raw = await put(store)
    delivery = await one(store, "A")
    retry_raw = next_attempt(raw)
    t0 = time.time()

    assert await store.reschedule(delivery, retry_raw, 300) is True

    st = await stats(store)
    assert (st.queued, st.in_flight, st.scheduled) == (0, 0, 1)
    assert st.next_due is not None and st.next_due >= t0 + 0.25
    assert not await store.is_idle([CH])
    moved, next_due = await store.promote(CH)
    assert moved == 0
    assert next_due is not None and next_due >= t0 + 0.25
    assert await store.fetch([CH], "A", 10, 0) == []

    async def promoted():
        return (await store.promote(CH))[0]

    assert await eventually(promoted, what="the retry to fall due") == 1
    assert time.time() >= t0 + 0.29
    assert await store.promote(CH) == (0, None)
    [retried] = await store.fetch([CH], "B", 10, 0)
    assert retried.raw == retry_raw
    assert retried.deliveries == 1
    assert decode(retried.raw, CH).attempts_before == 1


async def test_reschedule_without_delay_puts_it_straight_back(store):
    await store.prepare([CH])
    _, raw = await put(store)
    delivery = await one(store, "A")
    retry_raw = next_attempt(raw)

    assert await store.reschedule(delivery, retry_raw, 0) is True

    st = await stats(store)
    assert (st.queued, st.in_flight, st.scheduled) == (1, 0, 0)
    retried = await one(store, "A")
    assert retried.raw == retry_raw
    assert retried.entry_id != delivery.entry_id


@pytest.mark.parametrize("delay_ms", [0, 300])
async def test_reschedule_of_an_entry_already_acked_elsewhere_returns_false(store, delay_ms):
    await store.prepare([CH])
    _, raw = await put(store)
    slow = await one(store, "A")
    # A's lease lapses; B takes the message over and finishes it.
    await asyncio.sleep(0.1)
    [taken] = await store.reclaim(CH, "B", 50, 10)
    await store.ack([taken])

    # A's late failure must not turn that one delivery into a second retry.
    assert await store.reschedule(slow, next_attempt(raw), delay_ms) is False

    assert await store.is_idle([CH])
    st = await stats(store)
    assert (st.queued, st.in_flight, st.scheduled) == (0, 0, 0)


async def test_reschedule_twice_schedules_once(store):
    await store.prepare([CH])
    _, raw = await put(store)
    delivery = await one(store, "A")

    assert await store.reschedule(delivery, next_attempt(raw), 60_000) is True
    assert await store.reschedule(delivery, next_attempt(raw), 60_000) is False

    assert (await stats(store)).scheduled == 1


# -- hand back -----------------------------------------------------------------


async def test_hand_back_returns_unstarted_entries_unchanged_without_counting_a_delivery(store):
    await store.prepare([CH])
    _, raw1 = await put(store, {"n": 1})
    _, raw2 = await put(store, {"n": 2})
    held = await store.fetch([CH], "A", 10, 0)

    assert await store.hand_back(held) == 2

    st = await stats(store)
    assert (st.queued, st.in_flight) == (2, 0)
    again = await store.fetch([CH], "B", 10, 0)
    assert sorted(d.raw for d in again) == sorted([raw1, raw2])
    assert [(d.deliveries, d.reclaimed) for d in again] == [(1, False), (1, False)]
    # The handed-back delivery did not count: B's lapse leaves them at 1, and
    # once C starts them and lapses too they are at 2, not 3.
    await asyncio.sleep(0.1)
    reclaimed = await store.reclaim(CH, "C", 50, 10)
    assert [d.deliveries for d in reclaimed] == [1, 1]
    for d in reclaimed:
        assert await store.acharge(d, "C") is True
    await asyncio.sleep(0.1)
    reclaimed = await store.reclaim(CH, "D", 50, 10)
    assert [d.deliveries for d in reclaimed] == [2, 2]


async def test_hand_back_requeues_the_envelope_the_worker_gives(store):
    # A worker hands back a reclaimed delivery with the attempts lost with
    # earlier workers folded into its envelope; the store keeps that envelope.
    await store.prepare([CH])
    await put(store, {"n": 1})
    [held] = await store.fetch([CH], "A", 10, 0)
    held.raw = '{"replaced": true}'

    assert await store.hand_back([held]) == 1

    [again] = await store.fetch([CH], "B", 10, 0)
    assert again.raw == '{"replaced": true}'
    assert (again.deliveries, again.reclaimed) == (1, False)


async def test_hand_back_of_an_acked_entry_returns_nothing(store):
    await store.prepare([CH])
    await put(store)
    delivery = await one(store, "A")
    await store.ack([delivery])

    assert await store.hand_back([delivery]) == 0

    assert await store.is_idle([CH])


# -- idempotency ---------------------------------------------------------------


async def test_second_send_with_the_same_idempotency_key_returns_the_first_id_and_stores_nothing(
    store,
):
    await store.prepare([CH, CH2])
    id1, raw1 = make({"n": 1})
    id2, raw2 = make({"n": 2})

    assert await store.asend(CH, raw1, id1, idempotency_key="k", idempotency_ms=60_000) == id1
    assert await store.asend(CH, raw2, id2, idempotency_key="k", idempotency_ms=60_000) == id1
    assert store.send(CH, raw2, id2, idempotency_key="k", idempotency_ms=60_000) == id1

    assert (await stats(store)).queued == 1
    assert [d.raw for d in await store.fetch([CH], "A", 10, 0)] == [raw1]
    # Keys are per channel.
    id3, raw3 = make({"n": 3}, channel=CH2)
    assert await store.asend(CH2, raw3, id3, idempotency_key="k", idempotency_ms=60_000) == id3


async def test_after_ack_the_idempotency_key_lasts_only_the_window(store):
    await store.prepare([CH])
    id1, _ = await put(store, idempotency_key="k", idempotency_ms=60_000)
    delivery = await one(store)
    delivery.idempotency_key = "k"  # the worker sets it once it decoded the envelope

    await store.ack([delivery], idempotency_ms=500)

    id2, raw2 = make()
    assert await store.asend(CH, raw2, id2, idempotency_key="k", idempotency_ms=60_000) == id1
    assert (await stats(store)).queued == 0
    await asyncio.sleep(0.7)
    id3, raw3 = make()
    assert await store.asend(CH, raw3, id3, idempotency_key="k", idempotency_ms=60_000) == id3
    assert [d.raw for d in await store.fetch([CH], "A", 10, 0)] == [raw3]


async def test_a_rescheduled_message_keeps_its_idempotency_key(store):
    await store.prepare([CH])
    id1, raw = await put(store, idempotency_key="k", idempotency_ms=200)
    delivery = await one(store)
    delivery.idempotency_key = "k"

    # Pending again (as a retry) for longer than the original key lifetime.
    assert await store.reschedule(delivery, next_attempt(raw), 60_000, idempotency_ms=60_000)
    await asyncio.sleep(0.3)

    id2, raw2 = make()
    assert await store.asend(CH, raw2, id2, idempotency_key="k", idempotency_ms=60_000) == id1
    st = await stats(store)
    assert (st.queued, st.scheduled) == (0, 1)


# -- delayed sends -------------------------------------------------------------


async def test_a_delayed_send_is_not_fetched_before_it_is_due(store):
    await store.prepare([CH])
    t0 = time.time()
    _, raw = await put(store, delay_ms=300)

    st = await stats(store)
    assert (st.queued, st.scheduled) == (0, 1)
    assert st.next_due is not None and st.next_due >= t0 + 0.25
    assert not await store.is_idle([CH])
    assert (await store.promote(CH))[0] == 0
    assert await store.fetch([CH], "A", 10, 0) == []

    async def promoted():
        return (await store.promote(CH))[0]

    assert await eventually(promoted, what="the delayed message to fall due") == 1
    assert time.time() >= t0 + 0.29
    delivery = await one(store)
    assert delivery.raw == raw
    assert delivery.deliveries == 1


# -- stats, channels, workers ------------------------------------------------------


async def test_stats_counts_queued_in_flight_scheduled_and_processed(store):
    await store.prepare([CH])
    for n in range(4):
        await put(store, {"n": n})
    await put(store, {"later": True}, delay_ms=60_000)
    d1, d2 = await store.fetch([CH], "A", 2, 0)

    st = await stats(store)
    assert (st.queued, st.in_flight, st.scheduled) == (2, 2, 1)
    assert st.oldest_lease_age is not None and st.oldest_lease_age >= 0
    assert st.next_due is not None
    assert (st.processed_last_hour, st.failed_last_hour) == (0, 0)

    await store.ack([d1])
    await store.ack([d2], outcome="failed")
    st = await stats(store)

    assert (st.queued, st.in_flight, st.scheduled) == (2, 0, 1)
    assert st.oldest_lease_age is None
    assert (st.processed_last_hour, st.failed_last_hour) == (1, 1)
    # "The last minute" is the last six 10-second buckets: an outcome a moment
    # ago counts whatever the clock's minute did meanwhile.
    assert (st.processed_last_minute, st.failed_last_minute) == (1, 1)


async def test_stats_of_an_unused_channel_are_zero(store):
    st = await stats(store, "taskchan.c.never-used")

    assert (st.queued, st.in_flight, st.scheduled, st.processed_last_hour) == (0, 0, 0, 0)
    assert st.next_due is None and st.oldest_lease_age is None


async def test_known_channels_lists_every_channel_sent_to(store):
    await put(store, channel=CH)
    await put(store, channel=CH2, delay_ms=60_000)

    known = await store.known_channels()

    assert known == sorted(known)
    assert {CH, CH2} <= set(known)


async def test_worker_registry_heartbeat_workers_and_remove(store):
    await store.heartbeat_worker("w1", {"pid": 1, "channels": [CH], "processed": 0}, ttl=30)
    await store.heartbeat_worker("w2", {"pid": 2, "channels": [CH2], "processed": 0}, ttl=30)
    await store.heartbeat_worker("w1", {"pid": 1, "channels": [CH], "processed": 5}, ttl=30)

    by_id = {w["id"]: w for w in await store.workers()}
    assert by_id == {
        "w1": {"id": "w1", "pid": 1, "channels": [CH], "processed": 5},
        "w2": {"id": "w2", "pid": 2, "channels": [CH2], "processed": 0},
    }

    await store.remove_worker("w1", "w1", [CH])

    assert [w["id"] for w in await store.workers()] == ["w2"]


async def test_a_worker_that_stops_heartbeating_drops_out(store):
    await store.heartbeat_worker("gone", {"pid": 3}, ttl=1)
    assert [w["id"] for w in await store.workers()] == ["gone"]

    async def no_workers():
        return await store.workers() == []

    await eventually(no_workers, timeout=5, what="the silent worker to drop out")


async def test_removing_a_worker_keeps_the_leases_it_still_holds(store):
    await store.prepare([CH])
    _, raw = await put(store)
    await store.heartbeat_worker("wA", {"pid": 1}, ttl=30)
    delivery = await one(store, "A")

    # A job outlived the grace period: the worker deregisters while holding it.
    await store.remove_worker("wA", "A", [CH])

    await asyncio.sleep(0.1)
    [reclaimed] = await store.reclaim(CH, "B", 50, 10)
    assert (reclaimed.entry_id, reclaimed.raw) == (delivery.entry_id, raw)
    assert (reclaimed.deliveries, reclaimed.reclaimed) == (1, True)


def consumer_names(store, channel=CH) -> set[str]:
    """The consumer names the channel's group keeps (XINFO CONSUMERS), read with the store's own client."""
    from taskchan.stores.keys import GROUP

    return {c["name"] for c in store.client.xinfo_consumers(store.keys.stream(channel), GROUP)}


# Only a Redis store keeps consumer names (its consumer groups remember every
# reader until XGROUP DELCONSUMER); the memory store keeps none: a lease names
# its holder and nothing outlives the lease, so it has no name to drop.
@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_a_clean_stop_drops_only_its_own_consumer_name(store):
    await store.prepare([CH])
    await put(store)
    await put(store)
    for name in ("stopping", "other"):  # two live workers, each done with its job
        [done] = await store.fetch([CH], name, 1, 0)
        await store.ack([done])
    assert consumer_names(store) == {"stopping", "other"}

    await store.remove_worker("w-stopping", "stopping", [CH, CH2])  # CH2: never prepared

    assert consumer_names(store) == {"other"}


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # names: see above
async def test_forgetting_idle_consumers_drops_only_names_that_hold_no_lease(store):
    await store.prepare([CH])
    await put(store)
    await put(store)
    [finished] = await store.fetch([CH], "dead", 1, 0)  # a worker that finished its job, then was killed
    await store.ack([finished])
    await one(store, "busy")  # one that still holds a lease
    await asyncio.sleep(0.1)

    assert await store.forget_idle_consumers(CH, 60_000) == 0  # not idle long enough
    assert consumer_names(store) == {"dead", "busy"}
    assert await store.forget_idle_consumers(CH, 50) == 1
    assert consumer_names(store) == {"busy"}
    assert await store.forget_idle_consumers("taskchan.c.never-used", 0) == 0


async def test_forgetting_idle_consumers_never_loses_a_lease(store):
    await store.prepare([CH])
    await put(store)
    [held] = await store.fetch([CH], "busy", 1, 0)  # a worker that was killed holding it
    await asyncio.sleep(0.1)

    await store.forget_idle_consumers(CH, 0)

    # The lease survives: it lapses and is reclaimed as ever.
    reclaimed = await store.reclaim(CH, "other", 50, 10)
    assert [(d.entry_id, d.reclaimed) for d in reclaimed] == [(held.entry_id, True)]


async def test_promote_all_moves_the_due_messages_of_every_channel(store):
    await store.prepare([CH, CH2])
    for channel in (CH, CH2):
        await put(store, channel=channel, delay_ms=1)
    await put(store, channel=CH2, delay_ms=60_000)  # not due
    await asyncio.sleep(0.05)

    assert await store.promote_all([CH, CH2]) == 2
    assert [d.channel for d in await store.fetch([CH, CH2], "A", 10, 0)] == [CH, CH2]
    assert (await stats(store, CH2)).scheduled == 1
