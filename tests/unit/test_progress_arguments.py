"""What progress reporting and progress tokens accept (hypothesis), at and past every bound.

``message.progress``/``report_progress`` take a finite number ``current >= 0``,
an optional finite ``total > 0`` with ``current <= total`` and an optional
note of at most 200 characters, or raise ``InvalidOption``.  ``progress_token``
names 1 to 100 ids of 1 to 200 characters for 0 < ``max_age`` <= a week;
``read_token`` gives back exactly those ids, and refuses any change to a
token, another salt, another key, and a token past its time (``BadToken``).
"""

from __future__ import annotations

import functools
import math
import time

import pytest
from django.core import signing
from hypothesis import example, given, settings
from hypothesis import strategies as st

import taskchan
from taskchan.progress import token as tokens
from taskchan.progress.report import MAX_NOTE, Slot, checked
from taskchan.progress.token import BadToken, read_token

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.lists(st.integers(), max_size=2), st.decimals(allow_nan=False),
)


def valid(current, total, note) -> bool:
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))

    return (
        number(current) and current >= 0
        and (total is None or (number(total) and total > 0 and current <= total))
        and (note is None or (isinstance(note, str) and len(note) <= MAX_NOTE))
    )


@settings(max_examples=400)
@given(
    current=st.one_of(anything, st.integers(0, 10**6), st.floats(0, 1e6)),
    total=st.one_of(st.none(), anything, st.integers(1, 10**6)),
    note=st.one_of(st.none(), st.text(max_size=MAX_NOTE + 2), anything),
)
@example(0, None, None)
@example(5, 5, "x" * MAX_NOTE)  # at every bound
@example(0, 1e-300, None)
@example(10**400, 10**401, None)  # ints are finite however large
@example(10**400, 1e308, None)
@example(-1, None, None)  # past them
@example(5.0000001, 5, None)
@example(1, 0, None)
@example(True, None, None)
@example(1, True, None)
@example(float("nan"), None, None)
@example(1, float("inf"), None)
@example(1, 2, "x" * (MAX_NOTE + 1))
@example(1, 2, b"bytes")
def test_progress_arguments_are_checked(current, total, note):
    slot = Slot("m", 1, 0, 0)
    if valid(current, total, note):
        assert checked(current, total, note) == {"current": current, "total": total, "note": note}
        assert slot.put(current, total, note)
        assert slot.take()["current"] == current
    else:
        with pytest.raises(taskchan.InvalidOption):
            checked(current, total, note)
        with pytest.raises(taskchan.InvalidOption):
            taskchan.report_progress(current, total, note)


def test_a_settled_attempt_refuses_later_reports():
    slot = Slot("m", 1, 0, 0)
    slot.put(1, 2)
    assert slot.take(close=True)["current"] == 1
    assert slot.put(2, 2) is False and slot.take() is None


ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=tokens.MAX_ID_LENGTH)


@settings(max_examples=150)
@given(st.lists(ids, min_size=1, max_size=tokens.MAX_IDS), st.floats(0.5, tokens.MAX_AGE_CAP))
def test_a_token_names_exactly_its_messages(message_ids, max_age):
    assert read_token(taskchan.progress_token(*message_ids, max_age=max_age)) == list(dict.fromkeys(message_ids))


@functools.cache
def one_token() -> str:
    """One token for every example (hypothesis replays examples: the draws must not depend on the clock)."""
    return taskchan.progress_token("a" * 32, "b" * 32)


@settings(max_examples=150)
@given(st.data())
def test_any_change_to_a_token_is_refused(data):
    token = one_token()
    at = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from("AZaz09-_:x"))
    if token[at] == char:
        return
    changed = token[:at] + char + token[at + 1:]
    with pytest.raises(BadToken) as refused:
        read_token(changed)
    assert not refused.value.expired


@pytest.mark.parametrize(
    ("message_ids", "max_age"),
    [
        ((), 60),
        (tuple(str(i) for i in range(tokens.MAX_IDS + 1)), 60),
        (("",), 60),
        (("x" * (tokens.MAX_ID_LENGTH + 1),), 60),
        ((7,), 60),
        ((None,), 60),
        (("a",), 0),
        (("a",), -1),
        (("a",), tokens.MAX_AGE_CAP + 1),
        (("a",), float("inf")),
        (("a",), float("nan")),
        (("a",), True),
        (("a",), "60"),
    ],
)
def test_bad_token_arguments_are_refused(message_ids, max_age):
    with pytest.raises(taskchan.InvalidOption):
        taskchan.progress_token(*message_ids, max_age=max_age)


def test_bounds_accepted(monkeypatch):
    many = [str(i) for i in range(tokens.MAX_IDS)]
    assert read_token(taskchan.progress_token(*many, max_age=tokens.MAX_AGE_CAP)) == many
    now = time.time()
    monkeypatch.setattr(tokens.time, "time", lambda: now)  # a 1 ms token read within its 1 ms, however busy the machine
    assert read_token(taskchan.progress_token("x" * tokens.MAX_ID_LENGTH, max_age=0.001))


def test_foreign_and_expired_tokens_are_refused(monkeypatch):
    payload = {"ids": ["a"], "exp": time.time() + 60}
    for foreign in (
        signing.dumps(payload, salt="another.salt"),
        signing.dumps(payload, salt=tokens.SALT, key="another key"),
        signing.dumps(["a"], salt=tokens.SALT),  # signed right, not a taskchan payload
        None, 7, "", "x" * 30_000,
    ):
        with pytest.raises(BadToken) as refused:
            read_token(foreign)
        assert not refused.value.expired
    token = taskchan.progress_token("a", max_age=10)
    now = time.time()
    monkeypatch.setattr(tokens.time, "time", lambda: now + 10.5)
    with pytest.raises(BadToken, match="expired") as refused:
        read_token(token)
    assert refused.value.expired
    monkeypatch.setattr(tokens.time, "time", lambda: now + 9.5)
    assert read_token(token) == ["a"]
