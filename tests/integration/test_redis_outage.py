"""send() while Redis is down: it retries for TASKCHAN_SEND_RETRY_SECONDS, then
raises StoreUnavailable with nothing stored; once Redis is back, sends work.

Each test has a redis-server of its own (``redis_server_factory``) with AOF on,
so a restart keeps what Redis had accepted: "nothing stored" is then a real
check, not an empty restarted server.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis as redis_lib

import taskchan
from taskchan.envelope import decode
from taskchan.stores.configured import get_store
from tests.conftest import layer_settings

CH = "taskchan.c.ok"
RETRY_SECONDS = 0.5


@pytest.fixture
def server(redis_server_factory, settings):
    server = redis_server_factory(appendonly=True)
    settings.CHANNEL_LAYERS = layer_settings(server.url)
    settings.TASKCHAN_SEND_RETRY_SECONDS = RETRY_SECONDS
    return server


@pytest.fixture
def client(server):
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


def stored_ids(client) -> list[str]:
    return [decode(f["m"], CH).id for _id, f in client.xrange(get_store().keys.stream(CH))]


def test_send_with_redis_down_raises_store_unavailable_and_stores_nothing(server, client):
    before = taskchan.send(CH, {"n": 1})
    server.kill()

    started = time.monotonic()
    with pytest.raises(taskchan.StoreUnavailable) as caught:
        taskchan.send(CH, {"n": 2})
    elapsed = time.monotonic() - started

    # It retried for (about) the configured time before giving up.
    assert elapsed >= RETRY_SECONDS * 0.9
    text = str(caught.value)
    assert f"did not answer for {RETRY_SECONDS} s" in text
    assert "Nothing was sent" in text
    assert f"<RedisStore redis://127.0.0.1:{server.port}/0" in text  # the host it tried
    assert "Check that Redis runs at that address" in text and "REDIS_URL" not in text
    assert isinstance(caught.value, taskchan.TaskchanError)
    assert isinstance(caught.value.__cause__, redis_lib.ConnectionError)

    server.start()  # same port, same AOF: what Redis had accepted is back
    assert stored_ids(client) == [before]


async def test_asend_with_redis_down_raises_store_unavailable(server, client):
    server.kill()

    with pytest.raises(taskchan.StoreUnavailable, match="Nothing was sent"):
        await taskchan.asend(CH, {"n": 1})

    server.start()
    assert client.dbsize() == 0
    await get_store().aclose()


def test_sends_succeed_again_after_redis_restarts(server, client):
    server.kill()
    with pytest.raises(taskchan.StoreUnavailable):
        taskchan.send(CH, {"n": 1})

    server.start()
    # The layer's client reconnects by itself: same store, no restart of ours.
    first = taskchan.send(CH, {"n": 2})
    second = taskchan.send(CH, {"n": 3})

    assert stored_ids(client) == [first, second]


def test_send_rides_out_an_outage_shorter_than_its_retry_time(server, client, settings):
    settings.TASKCHAN_SEND_RETRY_SECONDS = 20
    server.kill()
    restarter = threading.Timer(0.3, server.start)
    restarter.start()
    try:
        message_id = taskchan.send(CH, {"n": 1})
    finally:
        restarter.join()

    assert stored_ids(client) == [message_id]
