"""Values at and past every bound of send(), on real Redis: the documented error, nothing stored.

The bounds (docs/delivery.md): max_attempts 1 to 10,000; delay 0 to 10 years;
idempotency keys 1 to 200 characters of valid Unicode without NUL; reply
channels a Channels name (ASCII, shorter than 100); channel names ASCII;
content a dict JSON can carry, nested at most 100 levels.  Every refusal is a
``TaskchanError`` that is also a ``ValueError`` or ``TypeError``, and a store
that refuses the write raises ``StoreRefused`` (a ``StoreUnavailable``).
"""

from __future__ import annotations

import logging
import time

import pytest
import redis as redis_lib
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

import taskchan
from taskchan.envelope import MAX_ATTEMPTS_LIMIT, MAX_CONTENT_DEPTH, MAX_DELAY_SECONDS, decode
from taskchan.exceptions import ContentNotSerializable, InvalidChannelName, InvalidOption
from taskchan.models import OutboxMessage
from tests.conftest import KEYS, free_port, layer_settings

GOOD = "taskchan.c.bounds"


@pytest.fixture
def empty_redis(use_redis_layer, redis_client):
    assert redis_client.dbsize() == 0
    return redis_client


def refused(redis_client, exc_class, call, phrase=""):
    with pytest.raises(exc_class) as caught:
        call()
    error = caught.value
    assert isinstance(error, taskchan.TaskchanError), repr(error)
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    assert phrase in str(error), str(error)
    assert redis_client.dbsize() == 0, "a refused send stored something"
    return error


def nested(depth: int) -> dict:
    """A content dict nested ``depth`` levels: {"a": {"a": ... {}}}."""
    content: dict = {}
    for _ in range(depth - 1):
        content = {"a": content}
    return content


# -- max_attempts ------------------------------------------------------------------


def test_max_attempts_at_the_limit_is_stored(empty_redis):
    message_id = taskchan.send(GOOD, {}, max_attempts=MAX_ATTEMPTS_LIMIT)

    [(_entry, fields)] = empty_redis.xrange(KEYS.stream(GOOD))
    envelope = decode(fields["m"], GOOD)
    assert (envelope.id, envelope.max_attempts) == (message_id, MAX_ATTEMPTS_LIMIT)


@pytest.mark.parametrize("value", [MAX_ATTEMPTS_LIMIT + 1, 2**31, 10**20], ids=["limit+1", "2**31", "10**20"])
def test_max_attempts_past_the_limit_is_refused(empty_redis, value):
    refused(empty_redis, InvalidOption, lambda: taskchan.send(GOOD, {}, max_attempts=value), "at most 10,000")


def test_a_consumer_with_max_attempts_past_the_limit_is_refused():
    with pytest.raises(InvalidOption, match="at most 10,000"):
        taskchan.consumer("taskchan.c.bounds.consumer", max_attempts=MAX_ATTEMPTS_LIMIT + 1)


# -- delay -------------------------------------------------------------------------


def test_the_longest_delay_is_scheduled(empty_redis):
    taskchan.send(GOOD, {}, delay=MAX_DELAY_SECONDS, idempotency_key="far")

    [(_raw, due_ms)] = empty_redis.zrange(KEYS.scheduled(GOOD), 0, -1, withscores=True)
    assert due_ms / 1000 - MAX_DELAY_SECONDS == pytest.approx(time.time(), abs=60)


@pytest.mark.parametrize(
    ("delay", "key"),
    [(MAX_DELAY_SECONDS + 1, None), (1e12, None), (1e300, "k"), (1e308, None), (2**70, None)],
    ids=["limit+1", "1e12", "1e300-with-key", "1e308", "2**70"],
)
def test_a_delay_past_the_limit_is_refused(empty_redis, delay, key):
    refused(
        empty_redis, InvalidOption, lambda: taskchan.send(GOOD, {}, delay=delay, idempotency_key=key), "10 years"
    )


# -- idempotency keys, reply channels, channel names ---------------------------------


@pytest.mark.parametrize("key", ["a\x00b", "\ud800", "k\udcff"], ids=["nul", "lone-surrogate", "escaped-byte"])
def test_an_idempotency_key_that_no_store_can_hold_is_refused(empty_redis, key):
    refused(empty_redis, InvalidOption, lambda: taskchan.send(GOOD, {}, idempotency_key=key), "no NUL")


@pytest.mark.parametrize("name", ["specific.a1b2!c3D4", "demo-replies", "a" * 99])
def test_a_channels_name_is_a_valid_reply_channel(empty_redis, name):
    taskchan.send(GOOD, {}, reply_channel=name)

    [(_entry, fields)] = empty_redis.xrange(KEYS.stream(GOOD))
    assert decode(fields["m"], GOOD).reply_channel == name


@pytest.mark.parametrize(
    "name",
    ["a" * 100, "r" * 300, "r" * 1_000_000, "reply.é", "specific.x!y!z", "a b", "", "x\n", "\ud800", "١٢"],
    ids=["100", "300", "1MB", "non-ascii", "two-bangs", "space", "empty", "newline", "surrogate", "arabic-digits"],
)
def test_a_reply_channel_that_is_no_channel_name_is_refused(empty_redis, name):
    error = refused(
        empty_redis, InvalidChannelName, lambda: taskchan.send(GOOD, {}, reply_channel=name), "reply_channel must be"
    )
    assert len(str(error)) < 1000  # a 1 MB name is not repeated in the error


@pytest.mark.parametrize("name", ["taskchan.١٢", "taskchan.x\u0660", "taskchan.\uff11"])
def test_a_channel_name_with_non_ascii_digits_is_refused(empty_redis, name):
    refused(empty_redis, InvalidChannelName, lambda: taskchan.send(name, {}), "ASCII")


# -- content -----------------------------------------------------------------------


def test_content_nested_to_the_limit_is_stored(empty_redis):
    taskchan.send(GOOD, nested(MAX_CONTENT_DEPTH))

    [(_entry, fields)] = empty_redis.xrange(KEYS.stream(GOOD))
    assert decode(fields["m"], GOOD).content == nested(MAX_CONTENT_DEPTH)


def _circular():
    content: dict = {}
    content["self"] = content
    return content


def _deep_list(depth: int) -> dict:
    value: list = []
    for _ in range(depth):
        value = [value]
    return {"v": value}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (nested(MAX_CONTENT_DEPTH + 1), "nested deeper than 100"),
        (_deep_list(100_000), "nested deeper than 100"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({"\udcff": 1}, "lone surrogate"),
        (_circular(), "Circular reference"),
        ({"n": 10**5000}, "not JSON-serialisable"),
        ({"n": float("nan")}, "not JSON-serialisable"),
        ({"b": b"bytes"}, "not JSON-serialisable"),
    ],
    ids=["depth-101", "depth-100000", "surrogate-value", "surrogate-key", "circular", "huge-int", "nan", "bytes"],
)
def test_content_json_cannot_carry_is_content_not_serializable(empty_redis, content, phrase):
    refused(empty_redis, ContentNotSerializable, lambda: taskchan.send(GOOD, content), phrase)


def test_the_layer_send_and_send_on_commit_refuse_the_same(empty_redis, db):
    layer = get_channel_layer()
    for call in (
        lambda: async_to_sync(layer.send)(GOOD, {"a": "\ud800"}),
        lambda: async_to_sync(layer.send)(GOOD, _deep_list(100_000)),
        lambda: taskchan.send_on_commit(GOOD, {}, delay=1e12),
        lambda: taskchan.send_on_commit(GOOD, {}, reply_channel="r" * 300),
        lambda: taskchan.send_on_commit(GOOD, {}, max_attempts=2**31),
    ):
        with pytest.raises(taskchan.TaskchanError) as caught:
            call()
        assert isinstance(caught.value, (ValueError, TypeError))
    assert not OutboxMessage.objects.exists()
    assert empty_redis.dbsize() == 0


# -- a store that refuses the write ---------------------------------------------------


@pytest.fixture
def own_redis(redis_server_factory, settings):
    server = redis_server_factory()
    settings.CHANNEL_LAYERS = layer_settings(server.url)
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    yield server, client
    client.close()


@pytest.mark.parametrize("options", [{}, {"idempotency_key": "k"}, {"delay": 60}], ids=["plain", "key", "delay"])
def test_redis_out_of_memory_is_store_refused_with_nothing_stored(own_redis, options):
    _server, client = own_redis
    client.set("ballast", "x" * 2_000_000)
    client.config_set("maxmemory", "1mb")  # our own server: under maxmemory, writes are refused
    keys_before = set(client.keys("*"))

    with pytest.raises(taskchan.StoreRefused, match="refused it") as caught:
        taskchan.send(GOOD, {"n": 1}, **options)

    assert isinstance(caught.value, taskchan.StoreUnavailable)
    assert "OOM" in str(caught.value) or "OutOfMemory" in str(caught.value)
    assert set(client.keys("*")) == keys_before


def test_a_read_only_replica_is_store_refused(redis_server_factory, settings):
    primary = redis_server_factory()
    replica = redis_server_factory()
    client = redis_lib.Redis.from_url(replica.url, decode_responses=True)
    client.replicaof("127.0.0.1", primary.port)
    settings.CHANNEL_LAYERS = layer_settings(replica.url)

    with pytest.raises(taskchan.StoreRefused, match="ReadOnly"):
        taskchan.send(GOOD, {"n": 1}, idempotency_key="k")

    assert client.dbsize() == 0
    client.close()


def test_a_channel_key_of_the_wrong_type_is_store_refused_with_nothing_stored(empty_redis):
    empty_redis.set(KEYS.stream(GOOD), "not a stream")

    with pytest.raises(taskchan.StoreRefused, match="WRONGTYPE"):
        taskchan.send(GOOD, {}, idempotency_key="k")

    assert set(empty_redis.keys("*")) == {KEYS.stream(GOOD)}  # no idempotency key left behind


def test_a_channel_set_of_the_wrong_type_is_refused_before_anything_is_written(empty_redis):
    empty_redis.set(KEYS.channels, "not a set")

    with pytest.raises(taskchan.StoreRefused, match="WRONGTYPE"):
        taskchan.send(GOOD, {}, idempotency_key="k")

    assert set(empty_redis.keys("*")) == {KEYS.channels}


# -- Redis down: one error, naming the host, password masked ----------------------------


def test_send_with_redis_down_logs_retries_at_debug_and_names_the_host(settings, caplog):
    port = free_port()
    settings.CHANNEL_LAYERS = layer_settings(f"redis://:s3cret@127.0.0.1:{port}/0")
    settings.TASKCHAN_SEND_RETRY_SECONDS = 0.3

    with caplog.at_level(logging.DEBUG, logger="taskchan"), pytest.raises(taskchan.StoreUnavailable) as caught:
        taskchan.send(GOOD, {})

    text = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in text
    assert "s3cret" not in text
    assert "REDIS_URL" not in text
    assert "CONFIG" in text
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retries, "the retries are logged (at DEBUG)"
    assert all(r.levelno == logging.DEBUG for r in retries)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
