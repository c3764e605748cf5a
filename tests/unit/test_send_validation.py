"""Bad input is refused at the door: the right exception, a message that says
what to do, and nothing stored (the test's Redis stays empty)."""

from __future__ import annotations

import datetime
import decimal
import math
import re

import pytest
import tenacity
from django.core.exceptions import ImproperlyConfigured

import taskchan
from taskchan import registry
from taskchan.exceptions import (
    ContentNotSerializable,
    InvalidChannelName,
    MessageTooLarge,
    NotATaskchanLayer,
)
from taskchan.models import OutboxMessage
from taskchan.stores.configured import get_store

GOOD = "taskchan.c.validation"


@pytest.fixture
def empty_redis(use_redis_layer, redis_client):
    """The Redis layer on an empty Redis: a refused send must leave it empty."""
    assert redis_client.dbsize() == 0
    return redis_client


def refused(redis_client, exc_class, call, *phrases):
    with pytest.raises(exc_class) as caught:
        call()
    text = str(caught.value)
    for phrase in phrases:
        assert phrase in text, text
    assert redis_client.dbsize() == 0, "a refused send stored something"
    return caught.value


# -- channel names -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "foo",
        "taskchan.",
        "taskchan",
        "taskchan.a b",
        "taskchan..x",
        "taskchan." + "a" * 91,  # 100 characters: channels' limit is < 100
        "taskchan.é",
        "taskchan.a!b",  # channels' process-local marker
        "specific.taskchan.x",
        " taskchan.x",
        "taskchan.x\n",
    ],
)
def test_an_invalid_channel_name_is_refused(empty_redis, name):
    error = refused(
        empty_redis,
        InvalidChannelName,
        lambda: taskchan.send(name, {"n": 1}),
        "must start with 'taskchan.'",
        "e.g. 'taskchan.thumbnails'",
    )
    assert isinstance(error, ValueError)
    assert isinstance(error, taskchan.TaskchanError)
    assert repr(name) in str(error)


@pytest.mark.parametrize(
    "name", [123, None, b"taskchan.x", ["taskchan.x"]], ids=["int", "None", "bytes", "list"]
)
def test_a_channel_name_that_is_not_a_str_is_refused(empty_redis, name):
    error = refused(
        empty_redis,
        InvalidChannelName,
        lambda: taskchan.send(name, {"n": 1}),
        "must be a str",
        "e.g. 'taskchan.thumbnails'",
    )
    assert isinstance(error, ValueError)


def test_the_longest_valid_name_is_accepted(use_redis_layer, redis_client):
    name = "taskchan." + "a" * 90  # 99 characters

    assert taskchan.send(name, {"n": 1})

    assert redis_client.xlen(get_store().keys.stream(name)) == 1


# -- content ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [[1, 2], "text", None, 5, ("a", 1)], ids=["list", "str", "None", "int", "tuple"]
)
def test_content_that_is_not_a_dict_is_refused(empty_redis, content):
    error = refused(
        empty_redis,
        ContentNotSerializable,
        lambda: taskchan.send(GOOD, content),
        "must be a dict",
        "wrap it",
    )
    assert isinstance(error, TypeError)


@pytest.mark.parametrize(
    "content",
    [
        {"when": datetime.datetime(2024, 1, 1)},
        {"obj": object()},
        {"s": {1, 2}},
        {"b": b"bytes"},
        {"d": decimal.Decimal("1.5")},
        {"nested": {"deep": [object()]}},
        {(1, 2): "tuple key"},
    ],
    ids=["datetime", "object", "set", "bytes", "decimal", "nested-object", "tuple-key"],
)
def test_content_that_is_not_json_serialisable_is_refused(empty_redis, content):
    error = refused(
        empty_redis,
        ContentNotSerializable,
        lambda: taskchan.send(GOOD, content),
        "not JSON-serialisable",
        "send ids and plain values",
    )
    assert isinstance(error, TypeError)


@pytest.mark.parametrize(
    "content",
    [
        {1: "a"},
        {"nested": {2: "b"}},
        {None: 1},
        {True: 1},
        {1.5: 1},
        {"t": (1, 2)},
        {"l": [("a", "b")]},
    ],
    ids=[
        "int-key",
        "nested-int-key",
        "None-key",
        "bool-key",
        "float-key",
        "tuple",
        "tuple-in-list",
    ],
)
def test_content_that_does_not_survive_json_unchanged_is_refused(empty_redis, content):
    error = refused(
        empty_redis,
        ContentNotSerializable,
        lambda: taskchan.send(GOOD, content),
        "does not survive JSON unchanged",
        "use str keys and lists",
    )
    assert isinstance(error, TypeError)


@pytest.mark.parametrize(
    "content",
    [{"x": math.nan}, {"x": math.inf}, {"x": [-math.inf]}],
    ids=["nan", "inf", "-inf-in-list"],
)
def test_nan_and_infinity_are_refused(empty_redis, content):
    refused(
        empty_redis,
        ContentNotSerializable,
        lambda: taskchan.send(GOOD, content),
        "not JSON-serialisable",
        "Out of range float values",
    )


def test_content_over_the_size_limit_is_refused(empty_redis, settings):
    settings.TASKCHAN_MAX_CONTENT_BYTES = 100
    content = {"s": "x" * 93}  # {"s":"xxx..."}: 101 bytes of JSON

    error = refused(
        empty_redis,
        MessageTooLarge,
        lambda: taskchan.send(GOOD, content),
        "101 bytes",
        "limit of 100",
        "TASKCHAN_MAX_CONTENT_BYTES",
        "store the data elsewhere",
    )
    assert isinstance(error, ValueError)


def test_the_size_limit_counts_bytes_not_characters(empty_redis, settings):
    settings.TASKCHAN_MAX_CONTENT_BYTES = 99
    content = {"s": "é" * 46}  # 54 characters, 100 bytes of UTF-8

    refused(empty_redis, MessageTooLarge, lambda: taskchan.send(GOOD, content), "100 bytes")


def test_content_exactly_at_the_size_limit_is_accepted(use_redis_layer, redis_client, settings):
    settings.TASKCHAN_MAX_CONTENT_BYTES = 100

    assert taskchan.send(GOOD, {"s": "x" * 92})  # 100 bytes of JSON

    assert redis_client.xlen(get_store().keys.stream(GOOD)) == 1


# -- options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "delay",
    [-1, -0.001, "5", True, [1], math.nan, math.inf],
    ids=["-1", "-1ms", "str", "bool", "list", "nan", "inf"],
)
def test_a_bad_delay_is_refused(empty_redis, delay):
    refused(
        empty_redis,
        ValueError,
        lambda: taskchan.send(GOOD, {}, delay=delay),
        "delay must be",
        "seconds >= 0",
    )


@pytest.mark.parametrize(
    "max_attempts", [0, -1, 1.5, "3", True], ids=["0", "-1", "float", "str", "bool"]
)
def test_a_bad_max_attempts_is_refused(empty_redis, max_attempts):
    refused(
        empty_redis,
        ValueError,
        lambda: taskchan.send(GOOD, {}, max_attempts=max_attempts),
        "max_attempts must be a positive integer",
    )


@pytest.mark.parametrize(
    "key", ["", "k" * 201, 5, b"key"], ids=["empty", "too-long", "int", "bytes"]
)
def test_a_bad_idempotency_key_is_refused(empty_redis, key):
    refused(
        empty_redis,
        ValueError,
        lambda: taskchan.send(GOOD, {}, idempotency_key=key),
        "idempotency_key must be a non-empty str of at most 200 characters",
    )


def test_a_bad_reply_channel_is_refused(empty_redis):
    refused(
        empty_redis,
        ValueError,
        lambda: taskchan.send(GOOD, {}, reply_channel=5),
        "reply_channel must be",
    )


def test_the_longest_idempotency_key_is_accepted(use_redis_layer, redis_client):
    assert taskchan.send(GOOD, {}, idempotency_key="k" * 200)

    assert redis_client.xlen(get_store().keys.stream(GOOD)) == 1


async def test_asend_refuses_the_same_input(empty_redis):
    with pytest.raises(InvalidChannelName):
        await taskchan.asend("foo", {})
    with pytest.raises(ContentNotSerializable):
        await taskchan.asend(GOOD, {"x": object()})
    with pytest.raises(ValueError, match="delay must be"):
        await taskchan.asend(GOOD, {}, delay=-1)

    assert empty_redis.dbsize() == 0


@pytest.mark.django_db
def test_send_on_commit_refuses_bad_input_before_writing_a_row(empty_redis):
    with pytest.raises(InvalidChannelName):
        taskchan.send_on_commit("foo", {})
    with pytest.raises(ContentNotSerializable):
        taskchan.send_on_commit(GOOD, {1: "x"})
    with pytest.raises(ValueError, match="max_attempts"):
        taskchan.send_on_commit(GOOD, {}, max_attempts=0)

    assert not OutboxMessage.objects.exists()
    assert empty_redis.dbsize() == 0


# -- @taskchan.consumer -------------------------------------------------------------------


CONSUMER_CHANNEL = "taskchan.c.validation.consumer"


@pytest.fixture
def clean_registry():
    registry.unregister(CONSUMER_CHANNEL)
    yield
    registry.unregister(CONSUMER_CHANNEL)


def job(message):
    pass


def test_consumer_refuses_an_invalid_channel_name(clean_registry):
    with pytest.raises(InvalidChannelName, match=re.escape("e.g. 'taskchan.thumbnails'")):
        taskchan.consumer("thumbnails")


@pytest.mark.parametrize(
    ("options", "exc_class", "phrase"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be a positive integer"),
        ({"max_attempts": -2}, ValueError, "max_attempts must be a positive integer"),
        ({"max_attempts": 1.5}, ValueError, "max_attempts must be a positive integer"),
        ({"max_attempts": "3"}, ValueError, "max_attempts must be a positive integer"),
        ({"max_attempts": True}, ValueError, "max_attempts must be a positive integer"),
        (
            {"visibility_timeout": 0},
            ValueError,
            "visibility_timeout must be a positive number of seconds",
        ),
        (
            {"visibility_timeout": -1},
            ValueError,
            "visibility_timeout must be a positive number of seconds",
        ),
        (
            {"visibility_timeout": "30"},
            ValueError,
            "visibility_timeout must be a positive number of seconds",
        ),
        (
            {"visibility_timeout": True},
            ValueError,
            "visibility_timeout must be a positive number of seconds",
        ),
        (
            {"visibility_timeout": math.nan},
            ValueError,
            "visibility_timeout must be a positive number of seconds",
        ),
        (
            {"visibility_timeout": math.inf},
            ValueError,
            "visibility_timeout must be a positive number of seconds",
        ),
        ({"backoff": 5}, TypeError, "tenacity wait strategy"),
        ({"handoff": "rq"}, ValueError, "handoff must be one of"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__,
)
def test_consumer_refuses_bad_options(clean_registry, options, exc_class, phrase):
    with pytest.raises(exc_class, match=phrase):
        taskchan.consumer(CONSUMER_CHANNEL, **options)(job)

    assert registry.get_consumer(CONSUMER_CHANNEL) is None


def test_consumer_accepts_good_options(clean_registry):
    entry = taskchan.consumer(
        CONSUMER_CHANNEL,
        max_attempts=2,
        visibility_timeout=1.5,
        backoff=tenacity.wait_fixed(1),
        handoff=None,
    )(job)

    assert registry.get_consumer(CONSUMER_CHANNEL) is entry
    assert (entry.max_attempts, entry.visibility_timeout) == (2, 1.5)


def test_two_different_functions_on_one_channel_are_refused(clean_registry):
    def first(message):
        pass

    def second(message):
        pass

    registered = taskchan.consumer(CONSUMER_CHANNEL)(first)

    with pytest.raises(ImproperlyConfigured) as caught:
        taskchan.consumer(CONSUMER_CHANNEL)(second)

    text = str(caught.value)
    assert CONSUMER_CHANNEL in text
    assert first.__qualname__ in text and second.__qualname__ in text
    assert "Use a channel per consumer" in text
    assert registry.get_consumer(CONSUMER_CHANNEL) is registered


def test_registering_the_same_function_again_is_allowed(clean_registry):
    # What a re-import (autoreload, tests) does: same module, same name.
    def make():
        def handler(message):
            pass

        return handler

    taskchan.consumer(CONSUMER_CHANNEL)(make())
    again = taskchan.consumer(CONSUMER_CHANNEL)(make())

    assert registry.get_consumer(CONSUMER_CHANNEL) is again


def test_the_input_is_checked_before_the_store_is_asked_for_the_id(settings):
    """The id comes from the store (on a cluster it names the channel's slot), asked for once the
    message passed every check: bad input says so even where no taskchan layer is configured."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with pytest.raises(InvalidChannelName):
        taskchan.send("not-taskchan", {"n": 1})
    with pytest.raises(ContentNotSerializable):
        taskchan.send_many("taskchan.c.ok", [{"n": object()}])
    with pytest.raises(NotATaskchanLayer):
        taskchan.send("taskchan.c.ok", {"n": 1})
