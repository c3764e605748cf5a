"""Flow-control options checked at decoration time (hypothesis): rate strings, schedules, limits.

Every value is either accepted and parsed to what it says, or refused with
``taskchan.InvalidOption`` naming the rule, with nothing registered.  Schedules'
slots are checked against their definition, across daylight-saving changes too.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import taskchan
from taskchan.consumer_table import get_consumer, unregister
from taskchan.flow.options import (
    MAX_CONCURRENCY_KEY_CHARS,
    MAX_CONCURRENCY_LIMIT,
    concurrency_key_of,
    flow_options,
)
from taskchan.flow.rate import MAX_COUNT, parse_rate
from taskchan.flow.schedule import MAX_INTERVAL, Crontab, Interval, parse_schedule, slot_iso

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.binary(max_size=10),
    st.lists(st.integers(), max_size=3), st.timedeltas(),
)


@settings(deadline=None)
@given(st.integers(min_value=-10, max_value=MAX_COUNT + 10), st.sampled_from("smhdx/ "))
@example(1, "s")
@example(MAX_COUNT, "h")
@example(MAX_COUNT + 1, "s")
@example(0, "m")
def test_a_rate_string_parses_to_its_count_and_period_or_is_refused(count, unit):
    text = f"{count}/{unit}"
    if 1 <= count <= MAX_COUNT and unit in "smh" and unit.strip():
        rate = parse_rate(text)
        assert (rate.count, rate.period, str(rate)) == (count, {"s": 1, "m": 60, "h": 3600}[unit], text)
        # a tenth of a second's worth, at least one token
        assert rate.capacity == max(1, math.ceil(rate.per_second / 10))
    else:
        with pytest.raises(taskchan.InvalidOption, match="rate_limit must be"):
            parse_rate(text)


@settings(deadline=None)
@given(anything)
@example(" 10/s")
@example("10/s\n")
@example("\u0661\u0660/s")  # digits of another script
def test_anything_else_as_a_rate_is_refused(value):
    if isinstance(value, str) and value.isascii() and value[:-2].isdigit() and value[-2:] in ("/s", "/m", "/h"):
        return
    with pytest.raises(taskchan.InvalidOption):
        parse_rate(value)


@settings(deadline=None)
@given(st.integers(min_value=-5, max_value=MAX_INTERVAL + 5))
@example(0)
@example(1)
@example(MAX_INTERVAL)
@example(MAX_INTERVAL + 1)
def test_an_interval_is_whole_seconds_within_bounds_and_its_slots_are_its_multiples(seconds):
    if 1 <= seconds <= MAX_INTERVAL:
        schedule = parse_schedule(seconds)
        assert parse_schedule(timedelta(seconds=seconds)).seconds == seconds
        t = 1_796_000_000.25
        assert schedule.at_or_before(t) <= t < schedule.after(t) == schedule.at_or_before(t) + seconds
        assert schedule.after(t) % seconds == 0
    else:
        with pytest.raises(taskchan.InvalidOption, match="schedule must be"):
            parse_schedule(seconds)


@settings(deadline=None)
@given(anything)
@example(timedelta(seconds=1.5))
@example(True)
@example(2.0)
@example("61 * * * *")
@example("* * 31 2 *")
@example("* * * *")
@example("*/5 * * * * * *")
def test_a_schedule_is_a_crontab_whole_seconds_or_a_timedelta_else_refused(value):
    try:
        parsed = parse_schedule(value)
    except taskchan.InvalidOption as exc:
        assert "schedule" in str(exc)
        return
    assert isinstance(parsed, (Interval, Crontab))
    assert not isinstance(value, (bool, float, bytes, list))


@pytest.mark.parametrize(
    ("expression", "start", "slots"),
    [
        # 02:30 does not exist on 29 March 2026 in Berlin: fired at 03:00 CEST (01:00 UTC).
        ("30 2 * * *", "2026-03-28T12:00", ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
        # 02:30 happens twice on 25 October 2026: fired once, the first time (00:30 UTC).
        ("30 2 * * *", "2026-10-24T12:00", ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
        ("*/30 * * * *", "2026-01-01T00:10", ["2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"]),
    ],
)
def test_a_crontab_follows_the_time_zone_across_daylight_saving(settings, expression, start, slots):
    settings.TIME_ZONE = "Europe/Berlin" if "*/30" not in expression else "UTC"
    schedule = parse_schedule(expression)
    t = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(settings.TIME_ZONE)).timestamp()
    first = schedule.after(t)
    assert [slot_iso(first), slot_iso(schedule.after(first))] == slots
    assert schedule.at_or_before(first) == first
    assert schedule.at_or_before(first - 1) < first


def test_a_slot_is_iso_8601_utc():
    assert slot_iso(datetime(2026, 12, 1, 7, 5, tzinfo=UTC).timestamp()) == "2026-12-01T07:05:00Z"


@settings(deadline=None)
@given(anything)
@example(0)
@example(1)
@example(MAX_CONCURRENCY_LIMIT)
@example(MAX_CONCURRENCY_LIMIT + 1)
def test_a_concurrency_limit_is_a_whole_number_within_bounds(value):
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONCURRENCY_LIMIT:
        assert flow_options(concurrency_limit=value).concurrency_limit == value
    elif value is None:
        assert not flow_options(concurrency_limit=value).gated
    else:
        with pytest.raises(taskchan.InvalidOption, match="concurrency_limit must be"):
            flow_options(concurrency_limit=value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency_key": lambda m: m.content["tenant"]}, "needs concurrency_limit"),
        ({"concurrency_limit": 2, "concurrency_key": "tenant"}, "concurrency_key must be a function"),
        ({"catch_up": "no"}, "catch_up must be True or False"),
        ({"schedule": 30, "handoff": "celery"}, "do not apply with handoff"),
        ({"rate_limit": "5/s", "handoff": "celery"}, "do not apply with handoff"),
    ],
)
def test_bad_combinations_are_refused_at_decoration_and_nothing_is_registered(options, match):
    with pytest.raises(taskchan.InvalidOption, match=match):
        taskchan.consumer("taskchan.c.refused", **options)(lambda message: None)
    assert get_consumer("taskchan.c.refused") is None


def test_a_consumer_keeps_its_flow_options():
    try:
        entry = taskchan.consumer(
            "taskchan.c.flowing", schedule="*/5 * * * *", catch_up=False, rate_limit="100/m",
            concurrency_limit=2, concurrency_key=lambda message: message.content["tenant"],
        )(lambda message: None)
        assert (str(entry.flow.schedule), entry.flow.catch_up, str(entry.flow.rate_limit)) == (
            "*/5 * * * *", False, "100/m"
        )
        assert entry.flow.gated and entry.flow.concurrency_limit == 2
    finally:
        unregister("taskchan.c.flowing")


@settings(deadline=None)
@given(st.one_of(st.text(max_size=MAX_CONCURRENCY_KEY_CHARS + 2), st.integers(), st.booleans(), st.none(), st.floats()))
@example("x" * MAX_CONCURRENCY_KEY_CHARS)
@example("x" * (MAX_CONCURRENCY_KEY_CHARS + 1))
def test_a_concurrency_key_is_text_or_a_whole_number_of_bounded_length(key):
    flow = flow_options(concurrency_limit=1, concurrency_key=lambda message: key)
    ok = isinstance(key, (str, int)) and not isinstance(key, bool) and len(str(key)) <= MAX_CONCURRENCY_KEY_CHARS
    if ok:
        assert concurrency_key_of(flow, None) == str(key)
    else:
        with pytest.raises(taskchan.InvalidOption, match="concurrency_key must return"):
            concurrency_key_of(flow, None)
