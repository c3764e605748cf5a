"""Delivery behaviour through an in-process burst ``Worker``, on every layer.

``layer_store`` configures the channel layer (the Redis layer on the test's
private redis-server, the in-memory layer, or the Redis layer sharded over two
servers), so ``taskchan.send`` and the
``Worker`` share its store.  Consumers live in ``tests.contract.consumers`` and
record every call in memory.  Dead letters are written by the worker's own
thread, so every test uses a real (transactional) test database.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time

import pytest
from channels.layers import get_channel_layer

import taskchan
from taskchan.exceptions import ContentNotSerializable, InvalidChannelName, TaskchanError
from taskchan.models import FailedMessage
from taskchan.stores.configured import get_store
from taskchan.stores.redis import RedisStore
from tests.conftest import on_store
from tests.contract import consumers
from tests.contract.conftest import arun_burst, run_burst

pytestmark = pytest.mark.django_db(transaction=True)


def stats(store, channel):
    [st] = on_store(store, lambda: store.stats([channel]))
    return st


def idle(store, *channels) -> bool:
    return on_store(store, lambda: store.is_idle(list(channels)))


def when(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def close_to(a: datetime.datetime, b: datetime.datetime) -> bool:
    return abs((a - b).total_seconds()) < 0.001


def inject(store, channel, raw) -> str:
    """Store ``raw`` on ``channel`` around taskchan's API; return its entry id (Redis) or ''."""
    store = store.home(channel)
    if isinstance(store, RedisStore):
        return store.client.xadd(store.keys.stream(channel), {"m": raw})
    store.send(channel, raw, "id")
    return ""


# -- success -------------------------------------------------------------------


def test_a_message_processed_successfully_is_acked(layer_store):
    message_id = taskchan.send("taskchan.c.ok", {"n": 1})

    worker = run_burst(["taskchan.c.ok"])

    [call] = consumers.events()
    assert (call["id"], call["attempt"], call["content"]) == (message_id, 1, {"n": 1})
    assert worker.processed == 1
    assert idle(layer_store, "taskchan.c.ok")
    assert stats(layer_store, "taskchan.c.ok").processed_last_hour == 1
    assert not FailedMessage.objects.exists()


def test_many_messages_each_run_exactly_once(layer_store):
    ids = {taskchan.send("taskchan.c.ok", {"n": n}) for n in range(30)}

    run_burst(["taskchan.c.ok"], concurrency=4)

    calls = consumers.events()
    assert sorted(c["id"] for c in calls) == sorted(ids)
    assert {c["attempt"] for c in calls} == {1}
    assert idle(layer_store, "taskchan.c.ok")


def test_async_consumers_run_on_the_worker_loop(layer_store):
    message_id = taskchan.send("taskchan.c.async", {"n": 1})

    run_burst(["taskchan.c.async"])

    [call] = consumers.events()
    assert (call["id"], call["attempt"], call["content"]) == (message_id, 1, {"n": 1})
    assert call["on_loop"] is True
    assert idle(layer_store, "taskchan.c.async")


# -- failures, retries, dead letters -------------------------------------------------


def test_a_consumer_that_raises_is_retried_with_backoff_then_dead_lettered(layer_store):
    t0 = time.time()
    message_id = taskchan.send("taskchan.c.fail", {"photo_id": 7})

    worker = run_burst(["taskchan.c.fail"])

    calls = consumers.events()
    assert [(c["id"], c["attempt"]) for c in calls] == [
        (message_id, 1),
        (message_id, 2),
        (message_id, 3),
    ]
    # The consumer's backoff was asked after attempts 1 and 2, not after the last.
    assert consumers.BACKOFF_CALLS == [1, 2]
    # Each retry waited (at least) the 50 ms the backoff gave.
    assert calls[1]["at"] - calls[0]["at"] >= 0.045
    assert calls[2]["at"] - calls[1]["at"] >= 0.045
    assert worker.failed == 3

    row = FailedMessage.objects.get(message_id=message_id)
    assert row.reason == FailedMessage.Reason.EXHAUSTED
    assert row.channel == "taskchan.c.fail"
    assert row.consumer == "tests.contract.consumers.fail"
    assert row.content == {"photo_id": 7}
    assert (row.attempts, row.max_attempts) == (3, 3)
    assert [(e["type"], e["message"], e["attempt"]) for e in row.errors] == [
        ("builtins.ValueError", "boom on attempt 1", 1),
        ("builtins.ValueError", "boom on attempt 2", 2),
        ("builtins.ValueError", "boom on attempt 3", 3),
    ]
    times = [e["at"] for e in row.errors]
    assert times == sorted(times) and times[0] >= t0
    assert (row.last_error_type, row.last_error) == ("builtins.ValueError", "boom on attempt 3")
    # The last attempt's traceback, pointing into the consumer.
    assert "Traceback" in row.traceback
    assert "ValueError: boom on attempt 3" in row.traceback
    assert 'raise ValueError(f"boom on attempt {message.attempt}")' in row.traceback
    assert "boom on attempt 2" not in row.traceback
    assert close_to(row.first_failed_at, when(times[0]))
    assert close_to(row.last_failed_at, when(times[-1]))
    assert row.first_failed_at < row.last_failed_at
    assert row.sent_at is not None and row.sent_at <= row.first_failed_at
    # Dead-lettered means finished: nothing left in the store.
    assert idle(layer_store, "taskchan.c.fail")
    assert stats(layer_store, "taskchan.c.fail").failed_last_hour == 1


def test_a_message_that_succeeds_on_a_retry_is_not_dead_lettered(layer_store):
    message_id = taskchan.send("taskchan.c.flaky", {"succeed_on": 3})

    run_burst(["taskchan.c.flaky"])

    assert [(c["id"], c["attempt"]) for c in consumers.events()] == [
        (message_id, 1),
        (message_id, 2),
        (message_id, 3),
    ]
    assert not FailedMessage.objects.exists()
    assert idle(layer_store, "taskchan.c.flaky")


def test_retry_with_a_delay_runs_again_after_that_delay(layer_store):
    message_id = taskchan.send("taskchan.c.retry", {"delay": 0.3})

    run_burst(["taskchan.c.retry"])

    first, second = consumers.events()
    assert (first["id"], first["attempt"]) == (message_id, 1)
    assert (second["id"], second["attempt"]) == (message_id, 2)
    assert second["at"] - first["at"] >= 0.29
    assert not FailedMessage.objects.exists()


def test_retry_counts_towards_max_attempts(layer_store):
    message_id = taskchan.send("taskchan.c.retry_always", {})

    run_burst(["taskchan.c.retry_always"])

    assert [c["attempt"] for c in consumers.events()] == [1, 2]
    row = FailedMessage.objects.get(message_id=message_id)
    assert row.reason == FailedMessage.Reason.EXHAUSTED
    assert row.attempts == 2
    assert [e["type"] for e in row.errors] == ["taskchan.exceptions.Retry"] * 2


def test_reject_dead_letters_at_once(layer_store):
    message_id = taskchan.send("taskchan.c.reject", {"x": 1})

    run_burst(["taskchan.c.reject"])

    assert [c["attempt"] for c in consumers.events()] == [1]
    row = FailedMessage.objects.get(message_id=message_id)
    assert row.reason == FailedMessage.Reason.REJECTED
    assert (row.attempts, row.max_attempts) == (1, 5)
    assert row.content == {"x": 1}
    assert [(e["type"], e["message"]) for e in row.errors] == [
        ("taskchan.exceptions.Reject", "not for us")
    ]
    assert "Reject: not for us" in row.traceback
    assert idle(layer_store, "taskchan.c.reject")


def test_a_dead_letter_whose_row_cannot_be_written_is_not_acked(layer_store, monkeypatch):
    from taskchan import deadletter

    real_record, refusals = deadletter.record, []

    def record_once_refused(**fields):
        if not refusals:
            refusals.append(fields["entry_id"])
            raise ConnectionError("the database is down")
        return real_record(**fields)

    monkeypatch.setattr(deadletter, "record", record_once_refused)
    message_id = taskchan.send("taskchan.c.reject_short_lease", {"x": 1})

    run_burst(["taskchan.c.reject_short_lease"])

    # The row was refused, so the message stayed leased: its lease lapsed and
    # it ran again, and this time the row was written and the message acked.
    assert refusals
    assert [c["id"] for c in consumers.events()] == [message_id, message_id]
    row = FailedMessage.objects.get(message_id=message_id)
    assert row.reason == FailedMessage.Reason.REJECTED
    assert idle(layer_store, "taskchan.c.reject_short_lease")


@pytest.mark.parametrize(
    ("channel", "max_attempts"),
    [("taskchan.c.many", 2), ("taskchan.c.fail", 4)],
    ids=["fewer-than-the-consumer", "more-than-the-consumer"],
)
def test_send_max_attempts_overrides_the_consumer(layer_store, channel, max_attempts):
    message_id = taskchan.send(channel, {}, max_attempts=max_attempts)

    run_burst([channel])

    assert [c["attempt"] for c in consumers.events()] == list(range(1, max_attempts + 1))
    row = FailedMessage.objects.get(message_id=message_id)
    assert row.reason == FailedMessage.Reason.EXHAUSTED
    assert (row.attempts, row.max_attempts) == (max_attempts, max_attempts)


def test_a_delayed_send_does_not_run_before_its_delay(layer_store):
    t0 = time.time()
    message_id = taskchan.send("taskchan.c.ok", {"n": 1}, delay=0.5)

    run_burst(["taskchan.c.ok"])

    [call] = consumers.events()
    assert call["id"] == message_id
    # 5 ms of slack for the store clock's millisecond rounding.
    assert call["at"] - t0 >= 0.495


def test_a_poison_message_does_not_block_the_messages_behind_it(layer_store):
    poison_id = taskchan.send("taskchan.c.flaky", {"succeed_on": 99})
    good_ids = [taskchan.send("taskchan.c.flaky", {"succeed_on": 1, "n": n}) for n in range(5)]

    # One job at a time and nothing leased ahead: the strictest queue.
    run_burst(["taskchan.c.flaky"], concurrency=1, prefetch=0)

    calls = [(c["id"], c["attempt"]) for c in consumers.events()]
    assert sorted(calls) == sorted(
        [(poison_id, 1), (poison_id, 2), (poison_id, 3)] + [(g, 1) for g in good_ids]
    )
    # Every good message ran before the poison message's first retry.
    assert calls.index((poison_id, 2)) > max(calls.index((g, 1)) for g in good_ids)
    row = FailedMessage.objects.get()
    assert (row.message_id, row.reason, row.attempts) == (
        poison_id,
        FailedMessage.Reason.EXHAUSTED,
        3,
    )


# -- malformed messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("not-json", "not JSON"),
        ("[1, 2]", "not a taskchan envelope"),
        ('{"v": 1, "ch": "taskchan.c.ok", "c": {}}', "no 'id' field"),
        ('{"v": 1, "id": "x", "ch": "taskchan.c.other", "c": {}}', "arrived on 'taskchan.c.ok'"),
        ('{"v": 1, "id": "x", "ch": "taskchan.c.ok", "c": [1]}', "content is not a JSON object"),
    ],
    ids=["not-json", "not-an-envelope", "no-id", "wrong-channel", "content-not-a-dict"],
)
def test_a_malformed_message_is_dead_lettered_and_the_worker_goes_on(layer_store, raw, error):
    entry_id = inject(layer_store, "taskchan.c.ok", raw)
    good_id = taskchan.send("taskchan.c.ok", {"good": True})

    run_burst(["taskchan.c.ok"])

    assert [c["id"] for c in consumers.events()] == [good_id]
    row = FailedMessage.objects.get()
    assert row.reason == FailedMessage.Reason.MALFORMED
    assert row.channel == "taskchan.c.ok"
    assert row.raw == raw
    assert row.content is None
    assert error in row.last_error
    assert row.message_id.startswith("malformed:taskchan.c.ok:")
    if entry_id:
        assert row.message_id == f"malformed:taskchan.c.ok:{entry_id}"
    assert idle(layer_store, "taskchan.c.ok")


def test_a_stream_entry_with_unexpected_fields_is_dead_lettered_as_malformed(use_redis_layer):
    layer_store = get_store()
    stream = layer_store.keys.stream("taskchan.c.ok")
    odd_id = layer_store.client.xadd(stream, {"payload": "x", "m": "{}"})
    bare_id = layer_store.client.xadd(stream, {"data": "hello"})
    good_id = taskchan.send("taskchan.c.ok", {"good": True})

    run_burst(["taskchan.c.ok"])

    assert [c["id"] for c in consumers.events()] == [good_id]
    rows = {r.message_id: r for r in FailedMessage.objects.all()}
    assert set(rows) == {f"malformed:taskchan.c.ok:{odd_id}", f"malformed:taskchan.c.ok:{bare_id}"}
    for row in rows.values():
        assert row.reason == FailedMessage.Reason.MALFORMED
        assert "unexpected stream fields" in row.raw
    assert '"data": "hello"' in rows[f"malformed:taskchan.c.ok:{bare_id}"].raw
    assert idle(layer_store, "taskchan.c.ok")


# -- resend ----------------------------------------------------------------------------


def test_failed_message_resend_starts_it_afresh_under_a_new_id(layer_store):
    message_id = taskchan.send("taskchan.c.fixable", {"photo_id": 3})
    run_burst(["taskchan.c.fixable"])
    row = FailedMessage.objects.get(message_id=message_id)
    assert row.reason == FailedMessage.Reason.REJECTED
    consumers.STATE["fixed"] = True

    new_id = row.resend()

    assert new_id != message_id
    row.refresh_from_db()
    assert row.retried_as == new_id
    assert row.retried_at is not None
    run_burst(["taskchan.c.fixable"])
    calls = [(c["id"], c["attempt"], c["content"]) for c in consumers.events()]
    assert calls == [(message_id, 1, {"photo_id": 3}), (new_id, 1, {"photo_id": 3})]
    assert list(FailedMessage.objects.values_list("message_id", flat=True)) == [message_id]
    assert idle(layer_store, "taskchan.c.fixable")


# -- through the channel layer -------------------------------------------------------------


async def test_layer_send_to_a_taskchan_channel_is_validated_and_delivered(layer_store):
    layer = get_channel_layer()
    assert layer.taskchan_store is layer_store

    await layer.send("taskchan.c.ok", {"via": "layer"})
    with pytest.raises(ContentNotSerializable):
        await layer.send("taskchan.c.ok", {"when": object()})
    with pytest.raises(InvalidChannelName):
        await layer.send("taskchan.c.bad name", {"x": 1})

    await arun_burst(["taskchan.c.ok"])

    calls = consumers.events()
    assert [(c["content"], c["attempt"], c["channel"]) for c in calls] == [
        ({"via": "layer"}, 1, "taskchan.c.ok")
    ]
    # a taskchan message id (on a cluster with its slot's tag): it went through taskchan's envelope
    assert re.fullmatch(r"[0-9a-f]{32}(-[0-9a-z]{1,4})?", calls[0]["id"])


async def test_layer_receive_on_a_taskchan_channel_raises_a_clear_error(layer_store):
    layer = get_channel_layer()

    with pytest.raises(TaskchanError, match="runworker") as caught:
        await layer.receive("taskchan.c.ok")

    assert "taskchan.c.ok" in str(caught.value)


async def test_message_attributes_and_reply_channel(layer_store):
    layer = get_channel_layer()
    reply_to = await layer.new_channel()

    message_id = await taskchan.asend("taskchan.c.ok", {"reply": "hi"}, reply_channel=reply_to)
    plain_id = await taskchan.asend("taskchan.c.ok", {"n": 2})
    await arun_burst(["taskchan.c.ok"], concurrency=1)

    by_id = {c["id"]: c for c in consumers.events()}
    assert by_id[message_id]["content"] == {"reply": "hi"}
    assert by_id[message_id]["channel"] == "taskchan.c.ok"
    assert by_id[message_id]["attempt"] == 1
    assert by_id[message_id]["reply_channel"] == reply_to
    assert by_id[plain_id]["reply_channel"] is None
    # The consumer answered on the reply channel, through the channel layer.
    answer = await asyncio.wait_for(layer.receive(reply_to), 10)
    assert answer == {"echo": "hi", "attempt": 1}


def test_a_worker_forgets_the_consumer_names_of_dead_workers(use_redis_layer, monkeypatch):
    from taskchan.stores.keys import GROUP
    from taskchan.worker import Worker
    from taskchan.worker import upkeep as upkeep_module

    # Production waits minutes before a name counts as dead; here a fraction of a second.
    monkeypatch.setattr(upkeep_module, "FORGET_INTERVAL", 0.2)
    monkeypatch.setattr(upkeep_module, "FORGET_IDLE_SECONDS", 0.1)
    store = get_store()
    taskchan.send("taskchan.c.ok", {"n": 1})

    async def main():
        client, _ = store._aclient()
        stream = store.keys.stream("taskchan.c.ok")
        await store.prepare(["taskchan.c.ok"])
        [delivery] = await store.fetch(["taskchan.c.ok"], "killed-worker", 1, 0)
        await store.ack([delivery])  # it finished its job, then was SIGKILLed: its name stays
        worker = Worker(["taskchan.c.ok"], store=store, poll_interval=0.02)
        running = asyncio.create_task(worker.arun())
        try:
            deadline = time.monotonic() + 10
            while "killed-worker" in {c["name"] for c in await client.xinfo_consumers(stream, GROUP)}:
                assert time.monotonic() < deadline, "the dead worker's name was never forgotten"
                await asyncio.sleep(0.05)
        finally:
            worker.request_stop()
            await running
            await store.aclose()

    asyncio.run(main())
