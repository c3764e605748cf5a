"""Every message's status (``taskchan.status``), on every layer, through an in-process worker.

The record is written inside steps taken anyway (send.lua, the batched ack, a
retry's reschedule): these tests read it back after each of them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import taskchan
from taskchan.conf import settings as taskchan_settings
from taskchan.outgoing import build_outgoing
from taskchan.producer import send_stored
from taskchan.stores.cluster import ClusterStore
from taskchan.stores.configured import get_store
from taskchan.stores.memory import MemoryStore
from taskchan.stores.notes import StatusNote
from taskchan.stores.redis import RedisStore
from taskchan.stores.slot_tags import slot_of, tagged_id
from taskchan.worker import Worker
from tests.conftest import on_store
from tests.contract import consumers
from tests.contract.conftest import STATUS_LAYOUTS, configure_layer, run_burst

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=STATUS_LAYOUTS)
def layer_kind(request):
    """Every layout: each keeps status records (the cluster's own tests are below)."""
    return configure_layer(request)


def test_unknown_id_reads_unknown(layer_store):
    found = taskchan.status("0" * 32)
    assert found.state == "unknown" and found.channel is None and found.attempts == 0


def test_queued_then_succeeded_with_worker_and_times(layer_store):
    before = time.time()
    message_id = taskchan.send("taskchan.c.ok", {"n": 1})
    queued = taskchan.status(message_id)
    assert (queued.state, queued.channel, queued.attempts) == ("queued", "taskchan.c.ok", 0)
    assert before - 1 <= queued.enqueued_at.timestamp() <= time.time() + 1
    assert queued.started_at is None and queued.finished_at is None
    worker = run_burst(["taskchan.c.ok"])
    done = taskchan.status(message_id)
    assert (done.state, done.attempts, done.worker_ids) == ("succeeded", 1, [worker.id])
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.last_attempted_at == done.started_at
    assert done.errors == [] and not done.has_result


def test_delayed_send_reads_scheduled(layer_store):
    message_id = taskchan.send("taskchan.c.ok", {"n": 1}, delay=60)
    found = taskchan.status(message_id)
    assert found.state == "scheduled"
    assert 55 < found.due_at.timestamp() - time.time() <= 61


def test_retries_then_failed_with_every_error(layer_store):
    message_id = taskchan.send("taskchan.c.fail", {"n": 1})
    run_burst(["taskchan.c.fail"])
    found = taskchan.status(message_id)
    assert (found.state, found.attempts, len(found.worker_ids)) == ("failed", 3, 3)
    assert [e["attempt"] for e in found.errors] == [1, 2, 3]
    assert {e["type"] for e in found.errors} == {"builtins.ValueError"}
    assert found.errors[1]["message"] == "boom on attempt 2"
    assert all("Traceback" in e["traceback"] and "ValueError" in e["traceback"] for e in found.errors)
    assert found.finished_at is not None


def test_retried_then_succeeded(layer_store):
    message_id = taskchan.send("taskchan.c.flaky", {"succeed_on": 2})
    run_burst(["taskchan.c.flaky"])
    found = taskchan.status(message_id)
    assert (found.state, found.attempts, [e["attempt"] for e in found.errors]) == ("succeeded", 2, [1])
    assert found.started_at < found.last_attempted_at


def test_result_kept_where_the_consumer_asks(layer_store):
    message_id = taskchan.send("taskchan.c.result", {"numbers": [1, 2, 3]})
    run_burst(["taskchan.c.result"])
    found = taskchan.status(message_id)
    assert found.state == "succeeded" and found.has_result and found.result == {"sum": 6}


def test_a_result_json_cannot_hold_fails_the_attempt(layer_store):
    # One attempt: the failure is the same on every attempt, and retries' backoff only adds time.
    message_id = taskchan.send("taskchan.c.result", {"unserializable": True}, max_attempts=1)
    run_burst(["taskchan.c.result"])
    found = taskchan.status(message_id)
    assert found.state == "failed" and not found.has_result
    assert found.errors[-1]["type"] == "taskchan.exceptions.ResultNotSerializable"
    assert "JSON cannot hold" in found.errors[-1]["message"]


def test_running_is_seen_while_the_job_runs(layer_store):
    consumers.GATE.clear()

    async def main():
        worker = Worker(["taskchan.c.gated"], store=get_store(), poll_interval=0.02, grace=5)
        message_id = await taskchan.asend("taskchan.c.gated", {"n": 1})
        task = asyncio.ensure_future(worker.arun())
        try:
            deadline = time.monotonic() + 10
            while (found := await taskchan.astatus(message_id)).state != "running":
                assert time.monotonic() < deadline, found
                await asyncio.sleep(0.02)
            assert found.worker_ids == [worker.id] and found.finished_at is None
        finally:
            consumers.GATE.set()
            await asyncio.sleep(0.2)
            worker.request_stop()
            await asyncio.wait_for(task, 10)
            await get_store().aclose()
        return message_id

    message_id = asyncio.run(main())
    assert taskchan.status(message_id).state == "succeeded"


def test_status_off_keeps_no_record_but_results_still_kept(layer_store, settings):
    settings.TASKCHAN_STATUS_TTL = 0
    plain = taskchan.send("taskchan.c.ok", {"n": 1})
    kept = taskchan.send("taskchan.c.result", {"numbers": [2]})
    run_burst(["taskchan.c.ok", "taskchan.c.result"])
    assert taskchan.status(plain).state == "unknown"
    assert taskchan.status(kept).result == {"sum": 2}


def test_record_lives_status_ttl_after_its_last_write(use_redis_layer, settings):
    settings.TASKCHAN_STATUS_TTL = 120
    message_id = taskchan.send("taskchan.c.ok", {"n": 1})
    store = get_store()
    assert isinstance(store, RedisStore)
    assert 110_000 < store.client.pttl(store.keys.status(message_id)) <= 120_000
    kept = taskchan.send("taskchan.c.result", {"numbers": [2]})
    run_burst(["taskchan.c.ok", "taskchan.c.result"])
    assert 590_000 < store.client.pttl(store.keys.status(kept)) <= 600_000


def test_the_ack_retry_and_upkeep_pipelines_ask_redis_no_script_exists(use_redis_layer, redis_client):
    """Their scripts ride as bare EVALSHA (stores/scripts.py): a Script call on a redis-py
    pipeline would ask SCRIPT EXISTS, a round trip of its own, before every batched ack."""
    ok = [taskchan.send("taskchan.c.ok", {"n": n}) for n in range(20)]
    flaky = taskchan.send("taskchan.c.flaky", {"succeed_on": 2})
    redis_client.config_resetstat()
    run_burst(["taskchan.c.ok", "taskchan.c.flaky"])
    assert {taskchan.status(message_id).state for message_id in ok} == {"succeeded"}
    assert (taskchan.status(flaky).state, taskchan.status(flaky).attempts) == ("succeeded", 2)
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] >= 4  # fetch, status, reschedule, promote
    assert "cmdstat_script|exists" not in stats, stats["cmdstat_script|exists"]


def test_status_retries_and_promotion_go_on_after_redis_lost_its_scripts(use_redis_layer, redis_client):
    """A NOSCRIPT reply in a pipeline (a Redis restart, SCRIPT FLUSH) runs that script again alone."""
    taskchan.send("taskchan.c.flaky", {"succeed_on": 2})
    run_burst(["taskchan.c.flaky"])  # every script the worker uses was loaded, and used
    kept = taskchan.send("taskchan.c.result", {"numbers": [1, 2]})
    flaky = taskchan.send("taskchan.c.flaky", {"succeed_on": 2})
    redis_client.script_flush()
    run_burst(["taskchan.c.result", "taskchan.c.flaky"])
    assert taskchan.status(kept).result == {"sum": 3}
    found = taskchan.status(flaky)
    assert (found.state, found.attempts, [e["attempt"] for e in found.errors]) == ("succeeded", 2, [1])


#: field names and values as text of any kind (quotes, backslashes, newlines, NUL, emoji);
#: not "x", which a record keeps sealed (the sender's text)
note_fields = st.dictionaries(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8).filter(lambda name: name != "x"),
    st.text(st.characters(codec="utf-8"), max_size=200),
    min_size=1, max_size=6,
)


@pytest.mark.parametrize("kind", ["redis", "memory", "cluster"])
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notes=st.lists(note_fields, min_size=1, max_size=20))
def test_status_notes_of_any_text_are_written_as_given(kind, request, notes):
    """The ack's notes reach each record field for field (on one Redis all of a batch's notes
    travel as one JSON argument of status.lua, which decodes it)."""
    store = {
        "redis": lambda: RedisStore(request.getfixturevalue("redis_url")),
        "memory": MemoryStore,
        "cluster": lambda: ClusterStore([request.getfixturevalue("cluster").url]),
    }[kind]()
    ids = [store.new_message_id("taskchan.c.ok") for _ in notes]

    async def write_then_read():
        await store.ack([], notes=[StatusNote(i, fields, 60_000) for i, fields in zip(ids, notes, strict=True)])
        return [await store.status_record(i) for i in ids]

    assert on_store(store, write_then_read) == notes


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), "3600", True, None])
def test_status_ttl_is_validated(settings, value):
    settings.TASKCHAN_STATUS_TTL = value
    with pytest.raises(ImproperlyConfigured, match="TASKCHAN_STATUS_TTL"):
        taskchan_settings.STATUS_TTL  # noqa: B018  (reading it is the check)


def test_a_cluster_names_each_record_in_its_channels_slot_by_the_id(use_cluster_layer):
    """On a Redis Cluster an id carries a tag of its channel's slot (``slot_tags.py``), so the
    record sits with the channel's keys, send.lua writes it, and ``status(id)`` finds it from
    the id alone; send_many (one send each there) and send_on_commit make such ids too."""
    store = get_store()
    ids = taskchan.send_many("taskchan.c.result", [{"numbers": [1, 2]}, {"numbers": [3]}])
    ids.append(taskchan.send("taskchan.c.result", {"numbers": [0, 3]}))
    with transaction.atomic():  # the outbox row keeps the id it was given; the relay sends it
        ids.append(taskchan.send_on_commit("taskchan.c.result", {"numbers": [1, 1, 1]}))
    channel_slot = slot_of(store.keys.stream("taskchan.c.result"))
    assert {slot_of(store.keys.status(i)) for i in ids} == {channel_slot}
    assert {taskchan.status(i).state for i in ids} == {"queued"}
    run_burst(["taskchan.c.result"])
    assert [taskchan.status(i).result for i in ids] == [{"sum": 3}] * 4
    records = set(store.client.scan_iter(match=f"{store.keys.prefix}:st:*"))
    assert records == {store.keys.status(i) for i in ids}


@pytest.mark.parametrize("kind", ["untagged", "tagged for another slot"])
def test_a_cluster_message_whose_id_names_no_slot_of_its_channel_is_stored_without_a_record(
    use_cluster_layer, kind
):
    """An id made before (32 hex digits), or for another channel: the message is stored without
    a record (send.lua stays on the channel's slot) and runs.  An untagged id names no record
    and reads unknown throughout; one tagged for another slot gets what the worker writes (in
    its ack pipeline, plain commands each sent to their slot): no channel, no enqueue time."""
    store = get_store()
    other_slot = (slot_of(store.keys.stream("taskchan.c.result")) + 1) % 16_384
    message_id = "0123456789abcdef" * 2 if kind == "untagged" else tagged_id(other_slot)
    outgoing = build_outgoing("taskchan.c.result", {"numbers": [5]}, new_id=lambda channel: message_id)
    assert send_stored("taskchan.c.result", outgoing.raw, message_id) == message_id
    assert taskchan.status(message_id).state == "unknown"
    run_burst(["taskchan.c.result"])
    assert {e["id"] for e in consumers.events("taskchan.c.result")} == {message_id}
    found = taskchan.status(message_id)
    records = list(store.client.scan_iter(match=f"{store.keys.prefix}:st:*"))
    if kind == "untagged":
        assert found.state == "unknown" and records == []
    else:
        assert (found.state, found.channel, found.enqueued_at, found.result) == ("succeeded", None, None, {"sum": 5})
        assert records == [store.keys.status(message_id)]


def test_a_cancelled_message_never_runs_and_reads_cancelled(layer_store):
    message_id = taskchan.send("taskchan.c.ok", {"n": 1})
    kept = taskchan.send("taskchan.c.ok", {"n": 2})
    taskchan.cancel(message_id)
    run_burst(["taskchan.c.ok"])
    assert {e["id"] for e in consumers.events("taskchan.c.ok")} == {kept}
    assert taskchan.status(message_id).state == "cancelled"
    assert taskchan.status(kept).state == "succeeded"
