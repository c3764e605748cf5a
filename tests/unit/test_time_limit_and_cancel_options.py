"""Validation of ``time_limit`` (the option and TASKCHAN_TIME_LIMIT), the stuck-thread
settings and ``cancel()``'s message id, over arbitrary values (hypothesis) and at every bound."""

from __future__ import annotations

import asyncio
import math

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import example, given
from hypothesis import strategies as st

import taskchan
from taskchan.conf import settings as taskchan_settings
from taskchan.registry import consumer, unregister
from taskchan.time_limits import MAX_TIME_LIMIT

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.sampled_from([math.inf, -math.inf, math.nan, 0, 0.0, -0.0, 1e-300, MAX_TIME_LIMIT, MAX_TIME_LIMIT + 1e-6]),
)


def valid_limit(value) -> bool:
    return value is None or (
        not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value <= MAX_TIME_LIMIT
    )


@given(anything)
@example(MAX_TIME_LIMIT)
@example(MAX_TIME_LIMIT + 1)
@example(0)
@example(math.nan)
@example(True)
def test_time_limit_option_is_accepted_exactly_within_its_bounds(value):
    channel = "taskchan.c.time_limit_prop"
    try:
        if valid_limit(value):
            registered = consumer(channel, time_limit=value)(lambda message: None)
            assert registered.time_limit == (None if value is None else float(value))
        else:
            with pytest.raises(taskchan.InvalidOption, match="time_limit"):
                consumer(channel, time_limit=value)(lambda message: None)
    finally:
        unregister(channel)


@given(anything)
@example(MAX_TIME_LIMIT + 1)
def test_the_time_limit_setting_is_checked_when_read(value):
    from django.test import override_settings

    with override_settings(TASKCHAN_TIME_LIMIT=value):
        if valid_limit(value):
            assert value == taskchan_settings.TIME_LIMIT
        else:
            with pytest.raises(ImproperlyConfigured, match="TASKCHAN_TIME_LIMIT"):
                taskchan_settings.TIME_LIMIT  # noqa: B018


def test_a_consumer_without_time_limit_follows_the_setting(settings):
    registered = consumer("taskchan.c.time_limit_default")(lambda message: None)
    try:
        assert registered.time_limit is None
        settings.TASKCHAN_TIME_LIMIT = 5
        assert registered.time_limit == 5.0
        assert consumer("taskchan.c.time_limit_default", time_limit=1)(lambda m: None).time_limit == 1.0
    finally:
        unregister("taskchan.c.time_limit_default")


@pytest.mark.parametrize(
    ("name", "value"),
    [("STUCK_AFTER", 0), ("STUCK_AFTER", -1), ("STUCK_AFTER", math.inf), ("STUCK_AFTER", math.nan),
     ("MAX_STUCK_THREADS", 0), ("MAX_STUCK_THREADS", 1.5), ("CANCEL_TTL", 0), ("CANCEL_TTL", "1")],
)
def test_stuck_thread_and_cancel_settings_refuse_values_out_of_bounds(settings, name, value):
    setattr(settings, f"TASKCHAN_{name}", value)
    with pytest.raises(ImproperlyConfigured, match=f"TASKCHAN_{name}"):
        getattr(taskchan_settings, name)


@given(st.one_of(st.none(), st.integers(), st.text(max_size=120), st.binary(max_size=8), st.lists(st.text())))
@example("")
@example("a" * 101)
@example("abc def")
@example("a\x00")
def test_cancel_refuses_what_cannot_be_a_message_id_and_stores_nothing(value):
    from django.test import override_settings

    from taskchan.cancels import MESSAGE_ID, is_cancelled
    from taskchan.stores.configured import get_store

    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}):
        if isinstance(value, str) and MESSAGE_ID.fullmatch(value):
            taskchan.cancel(value)
            assert is_cancelled(value)
            return
        with pytest.raises(taskchan.InvalidOption, match="message_id"):
            taskchan.cancel(value)
        with pytest.raises(taskchan.InvalidOption):
            asyncio.run(taskchan.acancel(value))
        if isinstance(value, str):  # nothing was stored under it
            assert not asyncio.run(get_store().cancelled([value]))


def test_cancel_accepts_an_id_at_its_longest(use_memory_layer):
    from taskchan.cancels import is_cancelled

    taskchan.cancel("a" * 100)
    asyncio.run(taskchan.acancel("b" * 100))
    assert is_cancelled("a" * 100) and is_cancelled("b" * 100)


@given(st.one_of(st.text(max_size=50), st.just("[" * 100_000), st.just('{"id": 7}'), st.just('{"id": "abc"}')))
def test_message_id_of_reads_any_text_without_raising(raw):
    from taskchan.envelope import message_id_of

    message_id = message_id_of(raw)
    assert message_id is None or isinstance(message_id, str)
    if raw == '{"id": "abc"}':
        assert message_id == "abc"
