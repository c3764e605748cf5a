"""Sending: ``send`` and ``asend`` (``send_on_commit`` is ``outbox.py``).

Every check happens before anything is stored (``outgoing.py``, plus the
hand-off's for a channel that hands off to Celery), and the store writes a
message in one atomic step (``lua/send.lua``), so send() either returns an id
for a message that is safely stored or raises with nothing written.  A Redis
that does not answer is tried again for TASKCHAN_SEND_RETRY_SECONDS
(``transient.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import tenacity
from redis.exceptions import ResponseError

from . import metrics
from .conf import settings
from .consumer_table import get_consumer, handed_off_consumer
from .handoff import app as handoff_app
from .handoff import publish as handoff_publish
from .outgoing import Outgoing, build_outgoing
from .priority import check_priority
from .stores.base import ProducerStore
from .stores.configured import get_store
from .tracking import record_ms
from .transient import TRANSIENT, send_failure, send_retrying

logger = logging.getLogger("taskchan.producer")


def checked_outgoing(
    channel, content, delay=None, max_attempts=None, idempotency_key=None, reply_channel=None, store=None
) -> Outgoing:
    """``build_outgoing``, plus the hand-off's door checks for a channel that hands off to Celery.
    The id is ``store``'s (the configured one's by default): on a cluster it names the channel's slot."""

    def new_id(channel):  # after the input checks: a bad message is refused as such first
        return (store or get_store()).new_message_id(channel)

    outgoing = build_outgoing(channel, content, delay, max_attempts, idempotency_key, reply_channel, new_id)
    if (consumer := handed_off_consumer(channel)) is not None:
        handoff_app.check(consumer, delay)
    return outgoing


def status_ms(channel: str) -> int:
    """How long ``channel``'s messages keep a status record: its consumer's, where this process has it."""
    consumer = get_consumer(channel)
    return consumer.status_ms if consumer is not None else record_ms()


def _store_options(channel, delay_ms, idempotency_key, record, priority=0) -> dict:
    options = {
        "priority": priority,
        "delay_ms": delay_ms,
        "idempotency_key": idempotency_key,
        "idempotency_ms": int(settings.IDEMPOTENCY_WINDOW * 1000),
        "status_ms": status_ms(channel),
    }
    if record is not None:
        options["record"] = record
    return options


def send_stored(
    channel, raw, message_id, *, delay_ms=0, idempotency_key=None, store=None, record=None, priority=0
) -> str:
    """Store an already validated envelope, retrying a Redis that does not answer.

    ``record``: text kept in the message's status record (``tracking.py``, field ``x``);
    ``priority``: its level (checked by ``priority.check_priority``).  A channel handed off
    to Celery has no levels: Celery's broker orders its messages.
    """
    store = store or get_store()
    if (consumer := handed_off_consumer(channel)) is not None and handoff_app.active(store):
        return handoff_publish.publish(
            consumer, raw, message_id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store
        )
    options = _store_options(channel, delay_ms, idempotency_key, record, priority)
    try:
        try:
            return metrics.sent(channel, store.send(channel, raw, message_id, **options))
        except TRANSIENT:
            pass  # the common case pays nothing for retry machinery
        return metrics.sent(channel, send_retrying(tenacity.Retrying)(store.send, channel, raw, message_id, **options))
    except (*TRANSIENT, ResponseError) as exc:
        raise send_failure(store, channel, exc) from exc


async def asend_stored(
    channel, raw, message_id, *, delay_ms=0, idempotency_key=None, store=None, record=None, priority=0
) -> str:
    store = store or get_store()
    if (consumer := handed_off_consumer(channel)) is not None and handoff_app.active(store):
        return await handoff_publish.apublish(
            consumer, raw, message_id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store
        )
    options = _store_options(channel, delay_ms, idempotency_key, record, priority)
    try:
        try:
            return metrics.sent(channel, await store.asend(channel, raw, message_id, **options))
        except TRANSIENT:
            pass
        return metrics.sent(
            channel, await send_retrying(tenacity.AsyncRetrying)(store.asend, channel, raw, message_id, **options)
        )
    except (*TRANSIENT, ResponseError) as exc:
        raise send_failure(store, channel, exc) from exc


def send(
    channel: str,
    content: dict[str, Any],
    *,
    delay: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    reply_channel: str | None = None,
    store: ProducerStore | None = None,
    priority: int = 0,
) -> str:
    """Send ``content`` to ``channel``; return the message id once it is safely stored.

    ``priority`` (-100 to 100, default 0): a message waiting on ``channel`` is
    leased before every one of lower priority (``docs/sending.md``).
    ``delay`` (seconds) runs it no earlier than that; ``max_attempts``
    overrides the consumer's; a second send with the same ``idempotency_key``
    while the first is pending or within TASKCHAN_IDEMPOTENCY_WINDOW after it
    returns the first id and stores nothing.  Raises taskchan's errors for bad
    input (InvalidChannelName, ContentNotSerializable, MessageTooLarge,
    InvalidOption: ValueError/TypeError subclasses), StoreUnavailable when Redis
    stays down and StoreRefused when it refuses the write; nothing is stored then.
    """
    check_priority(priority)
    envelope, delay_ms, raw, _content_json = checked_outgoing(
        channel, content, delay, max_attempts, idempotency_key, reply_channel, store
    )
    return send_stored(
        channel, raw, envelope.id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store, priority=priority
    )


async def asend(
    channel: str,
    content: dict[str, Any],
    *,
    delay: float | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    reply_channel: str | None = None,
    store: ProducerStore | None = None,
    priority: int = 0,
) -> str:
    """``send`` for async code (consumers, views): same arguments, same guarantees."""
    check_priority(priority)
    envelope, delay_ms, raw, _content_json = checked_outgoing(
        channel, content, delay, max_attempts, idempotency_key, reply_channel, store
    )
    return await asend_stored(
        channel, raw, envelope.id, delay_ms=delay_ms, idempotency_key=idempotency_key, store=store, priority=priority
    )
