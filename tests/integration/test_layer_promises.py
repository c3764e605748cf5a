"""The layers keep Channels' contract on ``taskchan.*`` names too, the same way on both.

Group sends reach the store (channels_redis's own group_send writes straight
into keys of its own and never calls send()), what a member refuses is
logged as Channels' group_send logs trouble, and the edges where taskchan
once differed for nobody's benefit (exception types, ``new_channel`` with a
taskchan prefix, ``flush``, a server listed twice) behave as in channels_redis.
Each test runs on the in-memory and the Redis layer, with a real worker:
``runworker`` on Redis, the in-process worker (what ``runserver`` runs) in memory.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.layers import get_channel_layer

from taskchan.exceptions import InvalidChannelName, StoreUnavailable
from taskchan.stores.configured import get_store
from taskchan.stores.redis import RedisStore
from taskchan.worker import Worker
from tests.conftest import KEYS, done_records, free_port, layer_settings, on_store

pytestmark = pytest.mark.django_db(transaction=True)

JOB = "taskchan.t.record"
PLAIN = "plain.listener"


@pytest.fixture(params=["memory", "redis"])
def layer(request, redis_url, settings):
    """Each taskchan layer in turn; the test consumers record to ``redis_url`` either way."""
    if request.param == "memory":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}
    else:
        settings.CHANNEL_LAYERS = layer_settings(redis_url)
    return get_channel_layer()


def run(coro):
    return asyncio.run(coro)


def stored(layer) -> int:
    """Messages queued or scheduled on JOB in the layer's store."""
    store = layer.taskchan_store
    (stats,) = on_store(store, lambda: store.stats([JOB]))
    return stats.queued + stats.in_flight + stats.scheduled


def work_off(layer, worker) -> None:
    """Run JOB's queue to empty with a real worker: runworker on Redis, the in-process one in memory."""
    if isinstance(layer.taskchan_store, RedisStore):
        proc = worker(JOB, args=("--burst",))
        assert proc.wait(60) == 0, proc.output()
    else:
        Worker([JOB], store=layer.taskchan_store, burst=True, poll_interval=0.01).run()


async def group_send_and_listen(layer, group, message) -> dict:
    """group_send to ``group`` (one plain member, one taskchan member); what the plain member got."""
    await layer.group_add(group, PLAIN)
    await layer.group_add(group, JOB)
    await layer.group_send(group, message)
    return await asyncio.wait_for(layer.receive(PLAIN), 5)


def test_a_group_send_to_a_taskchan_member_is_a_job_a_worker_runs(layer, worker, redis_client):
    got = run(group_send_and_listen(layer, "watchers", {"type": "photo.added", "photo_id": 7}))

    assert got == {"type": "photo.added", "photo_id": 7}
    assert stored(layer) == 1
    work_off(layer, worker)
    assert len(done_records(redis_client)) == 1
    assert stored(layer) == 0


def test_a_member_that_refuses_the_message_is_logged_and_the_others_get_it(layer, caplog):
    # bytes: fine for channels_redis's msgpack and channels' in-memory layer,
    # not JSON, so no job can hold it.
    message = {"type": "blob", "data": b"\x00\x01"}
    caplog.set_level(logging.ERROR, logger="taskchan.layers")

    got = run(group_send_and_listen(layer, "blobs", message))

    assert got == message
    assert stored(layer) == 0
    (record,) = [r for r in caplog.records if r.name == "taskchan.layers"]
    assert "group_send('blobs')" in record.getMessage() and JOB in record.getMessage()
    assert "JSON" in record.getMessage()


def test_a_store_that_does_not_answer_is_raised_after_the_other_members_got_it(redis_url, settings):
    settings.CHANNEL_LAYERS = layer_settings(redis_url, taskchan_host=f"redis://127.0.0.1:{free_port()}/0")
    layer = get_channel_layer()

    async def main():
        await layer.group_add("g", PLAIN)
        await layer.group_add("g", JOB)
        with pytest.raises(StoreUnavailable):
            await layer.group_send("g", {"n": 1})
        return await asyncio.wait_for(layer.receive(PLAIN), 5)

    assert run(main()) == {"n": 1}


@pytest.mark.parametrize("name", ["taskchan.bad name", "taskchan.x!y", "taskchan."])
def test_an_invalid_taskchan_name_raises_what_channels_raises(layer, name):
    # channels' layers raise TypeError for a name they refuse; taskchan's own
    # API has always raised ValueError: InvalidChannelName is both.
    with pytest.raises(TypeError):
        run(layer.send(name, {"n": 1}))
    with pytest.raises(TypeError):
        run(layer.group_add("g", name))
    with pytest.raises(ValueError):
        run(layer.send(name, {"n": 1}))


@pytest.mark.parametrize("prefix", ["taskchan", "taskchan.replies"])
def test_new_channel_refuses_a_taskchan_prefix_and_says_why(layer, prefix):
    with pytest.raises(InvalidChannelName, match=r"outside 'taskchan\.'"):
        run(layer.new_channel(prefix))
    with pytest.raises(InvalidChannelName):
        run(layer.new_channel(prefix=prefix))
    assert not run(layer.new_channel()).startswith("taskchan.")


def test_flush_empties_taskchan_channels_too(layer):
    async def main():
        await layer.send(JOB, {"n": 1})
        await layer.send(PLAIN, {"n": 1})
        await layer.flush()

    run(main())

    assert stored(layer) == 0
    if isinstance(layer.taskchan_store, RedisStore):
        client = layer.taskchan_store.client
        assert not client.keys(f"{KEYS.prefix}:*")
        assert not client.keys("asgi*")


def test_a_server_listed_twice_is_one_store_as_in_channels_redis(redis_url, settings, worker, redis_client):
    settings.CHANNEL_LAYERS = layer_settings(redis_url, redis_url)
    layer = get_channel_layer()
    assert isinstance(layer.taskchan_store, RedisStore)
    assert get_store() is layer.taskchan_store

    run(layer.send(JOB, {"n": 1}))
    work_off(layer, worker)

    assert len(done_records(redis_client)) == 1
