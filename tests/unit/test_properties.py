"""Property-based attacks (hypothesis) on what parses or validates.

- ``send()`` over arbitrary Python values (content, channel and every option):
  it returns an id for a message that is stored exactly as sent, or raises one
  of taskchan's documented errors (a ``ValueError``/``TypeError`` subclass)
  with nothing stored; never anything else.  On the in-memory store with many
  examples, and on real Redis with fewer.
- ``decode()`` over arbitrary bytes and over arbitrary envelopes: it raises
  only ``MalformedEnvelope``, and whatever it accepts, everything downstream
  handles: the retry's envelope encodes and decodes back, metrics observe it,
  and its dead-letter row fits every supported database's columns.
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
import redis as redis_lib
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import taskchan
from taskchan import deadletter, metrics
from taskchan.envelope import MalformedEnvelope, decode
from taskchan.message import Message
from taskchan.models import FailedMessage
from taskchan.stores.memory import MemoryStore
from taskchan.stores.redis import RedisStore
from taskchan.text import printable

CH = "taskchan.c.prop"

# Characters hypothesis leaves out by default, and the ones JSON and databases trip on.
chars = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from('\x00\n"\\[]{}!.-_٢'),
)
text = st.text(alphabet=chars, max_size=30)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(), text, st.binary(max_size=10), st.decimals(allow_nan=True), st.datetimes(),
    st.builds(object), st.complex_numbers(),
)


def containers(children):
    return st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(text, st.integers(), st.booleans(), st.none()), children, max_size=4),
        st.frozensets(st.one_of(st.integers(), text), max_size=3),
    )


python_values = st.recursive(scalars, containers, max_leaves=25)
contents = st.one_of(
    st.dictionaries(text, python_values, max_size=5),
    python_values,
    st.integers(1, 400).map(lambda depth: _deep(depth)),
)
channels = st.one_of(st.just(CH), text.map(lambda t: "taskchan." + t), text, st.integers(), st.none())
delays = st.one_of(st.none(), st.floats(), st.integers(min_value=-5, max_value=2**70), text, st.booleans())
attempts = st.one_of(st.none(), st.integers(min_value=-5, max_value=2**64), st.floats(), text, st.booleans())
keys = st.one_of(st.none(), text, st.text(min_size=195, max_size=205), st.integers(), st.binary(max_size=5))
replies = st.one_of(
    st.none(), text, st.from_regex(r"\A[a-z.]{1,20}(![a-zA-Z]{0,10})?\Z"), st.text(min_size=95, max_size=105),
    st.integers(),
)


def _deep(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def check_send(store, stored_channels, channel, content, delay, max_attempts, key, reply):
    """One send() of arbitrary input: an id for an exact copy, or a documented error with nothing stored."""
    try:
        message_id = taskchan.send(
            channel, content, delay=delay, max_attempts=max_attempts, idempotency_key=key,
            reply_channel=reply, store=store,
        )
    except taskchan.TaskchanError as exc:
        assert isinstance(exc, (ValueError, TypeError)), repr(exc)
        assert not isinstance(exc, taskchan.StoreUnavailable), repr(exc)
        assert stored_channels() == [], "a refused send stored something"
        return
    assert stored_channels() == [channel]
    if delay:  # scheduled: counted, not yet readable
        [stats] = asyncio.run(store.stats([channel]))
        assert stats.scheduled == 1
        return
    deliveries = asyncio.run(_read(store, channel))
    [delivery] = deliveries
    envelope = decode(delivery.raw, channel)
    assert (envelope.id, envelope.content) == (message_id, content)
    assert (envelope.max_attempts, envelope.idempotency_key, envelope.reply_channel) == (max_attempts, key, reply)


async def _read(store, channel):
    try:
        await store.prepare([channel])
        return await store.fetch([channel], "prop", 10, 10)
    finally:
        await store.aclose()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channels, contents, delays, attempts, keys, replies)
def test_send_of_anything_stores_an_exact_copy_or_raises_a_documented_error(
    channel, content, delay, max_attempts, key, reply
):
    store = MemoryStore()
    check_send(
        store, lambda: asyncio.run(store.known_channels()), channel, content, delay, max_attempts, key, reply
    )


@pytest.fixture
def redis_store(redis_url):
    store = RedisStore(redis_url)
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    yield store, client
    store.client.close()
    client.close()


@settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.one_of(st.just(CH), channels), contents, delays, attempts, keys, replies)
def test_send_of_anything_on_redis(redis_store, channel, content, delay, max_attempts, key, reply):
    store, client = redis_store
    client.flushdb()  # this test's own Redis server (conftest), emptied per example

    def stored_channels():
        return sorted(client.smembers(store.keys.channels)) if client.dbsize() else []

    check_send(store, stored_channels, channel, content, delay, max_attempts, key, reply)


# -- the decoder ------------------------------------------------------------------------


def check_downstream(envelope) -> None:
    """What the worker does with an envelope that decoded, none of which may raise."""
    attempt = envelope.attempts_before + 1
    Message(envelope, attempt).content  # noqa: B018 - the consumer's view
    metrics.job_finished(CH, metrics.job_started(CH, envelope.sent_at))
    retry = envelope.failed(attempt, "builtins.ValueError", "boom", "Traceback ...")
    raw = retry.encode()
    raw.encode("utf-8")  # Redis and the database take UTF-8 only
    assert decode(raw, CH).content == envelope.content


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)),
    max_leaves=12,
)
errors = st.lists(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {}, optional={"type": json_values, "message": json_values, "at": json_values, "attempt": json_values}
        ),
    ),
    max_size=3,
)
envelopes = st.fixed_dictionaries(
    {
        "v": st.one_of(st.just(1), json_values),
        "id": st.one_of(st.text(min_size=1, max_size=70), json_values),
        "ch": st.one_of(st.just(CH), json_values),
        "c": st.one_of(st.dictionaries(text, json_values, max_size=4), json_values),
    },
    optional={
        "n": st.one_of(st.integers(min_value=-3, max_value=2**64), json_values),
        "ma": st.one_of(st.integers(min_value=-3, max_value=2**64), json_values),
        "ik": st.one_of(text, json_values),
        "rc": st.one_of(text, st.text(min_size=99, max_size=300), json_values),
        "t": st.one_of(st.floats(), st.integers(min_value=-(2**70), max_value=2**70), json_values),
        "e": st.one_of(errors, json_values),
        "tb": json_values,
    },
)


def _dump(data, ensure_ascii):
    try:
        return json.dumps(data, ensure_ascii=ensure_ascii)
    except (ValueError, RecursionError):
        return "{}"


# The entries that killed workers before, always tried besides the random ones.
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"v":1,"id":"x","ch":"taskchan.c.prop","c":{},"t":"yesterday"}')
@example(b'{"v":1,"id":"x","ch":"taskchan.c.prop","c":{"a":"\\ud800"}}')
@example(b'{"v":1,"id":"x","ch":"taskchan.c.prop","c":{},"ma":100000000000000000000}')
@example(b'{"v":1,"id":"x","ch":"taskchan.c.prop","c":{},"e":[1]}')
@example(b"\xff\xfe{\x80")
@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=3000))
def test_decode_of_any_bytes_raises_only_malformed_envelope(data):
    for raw in (data, data.decode("utf-8", "surrogateescape"), b'{"v":1,"id":"x","ch":"' + data + b'"}'):
        try:
            envelope = decode(raw, CH)
        except MalformedEnvelope:
            continue
        check_downstream(envelope)


@example({"v": 1, "id": "0", "ch": CH, "c": {"": math.inf}}, False)  # found by this test: Infinity
@settings(max_examples=500, deadline=None)
@given(envelopes, st.booleans())
def test_decode_of_any_envelope_gives_one_everything_downstream_handles(data, ensure_ascii):
    raw = _dump(data, ensure_ascii)
    try:
        envelope = decode(raw, CH)
    except MalformedEnvelope as exc:
        assert str(exc)
        return
    check_downstream(envelope)


#: (field, max_length) of FailedMessage's bounded columns
BOUNDED = [(f.name, f.max_length) for f in FailedMessage._meta.fields if getattr(f, "max_length", None)]


def assert_row_fits_every_database(row: FailedMessage) -> None:
    for name, limit in BOUNDED:
        value = getattr(row, name)
        assert len(value) <= limit, (name, len(value))
        assert printable(value) == value, name  # no NUL, no lone surrogate
    for name in ("attempts", "max_attempts"):
        value = getattr(row, name)
        assert value is None or 0 <= value <= 2**31 - 1, (name, value)
    for name in ("raw", "traceback", "last_error"):
        assert printable(getattr(row, name)) == getattr(row, name), name
    assert all(printable(json.dumps(e, ensure_ascii=False)) for e in row.errors)


@pytest.mark.django_db(transaction=True)  # record() closes connections, as a worker thread must
@settings(
    max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(envelopes, st.binary(max_size=200), st.integers(min_value=-5, max_value=2**70), text)
def test_any_stored_entry_becomes_a_dead_letter_row_that_fits(data, garbage, attempts, consumer):
    raw = _dump(data, ensure_ascii=False)
    try:
        envelope = decode(raw, CH)
    except MalformedEnvelope as exc:
        row = deadletter.record_malformed(
            channel=CH, entry_id="1-0", raw=garbage.decode("utf-8", "surrogateescape") + raw, error=str(exc)
        )
        assert row.reason == FailedMessage.Reason.MALFORMED and row.content is None
    else:
        row = deadletter.record(
            channel=CH, entry_id="1-0", reason=FailedMessage.Reason.EXHAUSTED, envelope=envelope,
            consumer=consumer, attempts=attempts, max_attempts=attempts,
        )
        assert row.message_id == envelope.id[:64] or row.message_id == printable(envelope.id)[:64]
    row.refresh_from_db()
    assert_row_fits_every_database(row)
    assert math.isfinite(row.last_failed_at.timestamp())
