"""Sending: ``send``, ``asend`` and ``send_on_commit``.

Every check happens before anything is stored, and the store writes a message
in one atomic step (``lua/send.lua``), so send() either returns an id for a
message that is safely stored or raises with nothing written.
"""

from __future__ import annotations

import logging
from typing import Any

import tenacity
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import metrics
from .conf import settings
from .envelope import Envelope, check_send_options, encode_content, validate_channel
from .exceptions import StoreRefused, StoreUnavailable
from .registry import get_consumer
from .stores.base import StoreBase
from .stores.configured import get_store

logger = logging.getLogger("taskchan.producer")

TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def _prepare(channel, content, delay, max_attempts, idempotency_key, reply_channel):
    validate_channel(channel)
    content_json = encode_content(content)
    check_send_options(delay, max_attempts, idempotency_key, reply_channel)
    if (consumer := _hands_off(channel)) is not None:
        from . import handoff  # Celery hand-off: imported only where a channel hands off

        handoff.check(consumer, delay)
    envelope = Envelope.new(
        channel,
        content,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        reply_channel=reply_channel,
    )
    return envelope, int((delay or 0) * 1000), envelope.encode(content_json)


def _hands_off(channel):
    """The consumer of ``channel`` if it hands its messages to Celery (taskchan/handoff.py), else None."""
    consumer = get_consumer(channel)
    return consumer if consumer is not None and consumer.handoff else None


def _unavailable(store, channel, exc) -> StoreUnavailable:
    """The one error send() raises when the store did not take the message (nothing was stored)."""
    where = store.home(channel)  # the Redis host tried (repr masks the password)
    if isinstance(exc, ResponseError):
        return StoreRefused(
            f"Could not store the message: {where!r} refused it ({type(exc).__name__}: {exc}). "
            "Nothing was sent. Out of memory (maxmemory), a read-only replica, or a key of the "
            "wrong type: see docs/troubleshooting.md."
        )
    return StoreUnavailable(
        f"Could not store the message: {where!r} did not answer for {settings.SEND_RETRY_SECONDS} s "
        f"({exc}). Nothing was sent. Check that Redis runs at that address (the channel layer "
        f"CHANNEL_LAYERS[{settings.LAYER!r}] CONFIG \"hosts\")."
    )


def _retrying(cls):
    return cls(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        stop=tenacity.stop_after_delay(settings.SEND_RETRY_SECONDS),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.05),
        reraise=True,
        # DEBUG: send() raises once when it gives up; each retry is no news to the caller.
        before_sleep=lambda state: logger.debug(
            "send: Redis error %s, retrying (attempt %d)", state.outcome.exception(), state.attempt_number
        ),
    )


def _store_options(delay_ms, idempotency_key) -> dict:
    return {
        "delay_ms": delay_ms,
        "idempotency_key": idempotency_key,
        "idempotency_ms": int(settings.IDEMPOTENCY_WINDOW * 1000),
    }


def send_stored(channel, raw, message_id, *, delay_ms=0, idempotency_key=None, store=None) -> str:
    """Store an already validated envelope, retrying a Redis that does not answer."""
    store = store or get_store()
    if (consumer := _hands_off(channel)) is not None:
        from . import handoff

        if handoff.active(store):
            return handoff.publish(
                consumer, raw, message_id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store
            )
    options = _store_options(delay_ms, idempotency_key)
    try:
        try:
            return metrics.sent(channel, store.send(channel, raw, message_id, **options))
        except TRANSIENT:
            pass  # the common case pays nothing for retry machinery
        return metrics.sent(channel, _retrying(tenacity.Retrying)(store.send, channel, raw, message_id, **options))
    except (*TRANSIENT, ResponseError) as exc:
        raise _unavailable(store, channel, exc) from exc


async def asend_stored(channel, raw, message_id, *, delay_ms=0, idempotency_key=None, store=None) -> str:
    store = store or get_store()
    if (consumer := _hands_off(channel)) is not None:
        from . import handoff

        if handoff.active(store):
            return await handoff.apublish(
                consumer, raw, message_id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store
            )
    options = _store_options(delay_ms, idempotency_key)
    try:
        try:
            return metrics.sent(channel, await store.asend(channel, raw, message_id, **options))
        except TRANSIENT:
            pass
        return metrics.sent(
            channel, await _retrying(tenacity.AsyncRetrying)(store.asend, channel, raw, message_id, **options)
        )
    except (*TRANSIENT, ResponseError) as exc:
        raise _unavailable(store, channel, exc) from exc


def send(
    channel: str,
    content: dict[str, Any],
    *,
    delay: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    reply_channel: str | None = None,
    store: StoreBase | None = None,
) -> str:
    """Send ``content`` to ``channel``; return the message id once it is safely stored.

    ``delay`` (seconds) runs it no earlier than that; ``max_attempts``
    overrides the consumer's; a second send with the same ``idempotency_key``
    while the first is pending or within TASKCHAN_IDEMPOTENCY_WINDOW after it
    returns the first id and stores nothing.  Raises taskchan's errors for bad
    input (InvalidChannelName, ContentNotSerializable, MessageTooLarge,
    InvalidOption: ValueError/TypeError subclasses), StoreUnavailable when Redis
    stays down and StoreRefused when it refuses the write; nothing is stored then.
    """
    envelope, delay_ms, raw = _prepare(channel, content, delay, max_attempts, idempotency_key, reply_channel)
    return send_stored(channel, raw, envelope.id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store)


async def asend(
    channel: str,
    content: dict[str, Any],
    *,
    delay: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    reply_channel: str | None = None,
    store: StoreBase | None = None,
) -> str:
    """``send`` for async code (consumers, views): same arguments, same guarantees."""
    envelope, delay_ms, raw = _prepare(channel, content, delay, max_attempts, idempotency_key, reply_channel)
    return await asend_stored(
        channel, raw, envelope.id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store
    )
