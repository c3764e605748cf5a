"""Sending many messages at once: ``send_many`` / ``asend_many``, and the bulk store step they share.

Every message is checked exactly as ``send()`` checks it, all of them before
anything is stored: one that fails its checks raises (naming its position)
and nothing is sent.  Then the store writes them with the same atomic step as
``send()`` (``send.lua``), pipelined: one round trip per Redis host (per
10,000 messages).  The admin's bulk retry (``resend.py``) and the outbox
sweep (``outbox.py``) store through ``send_many_stored`` too.  A Redis that
does not answer is tried again for TASKCHAN_SEND_RETRY_SECONDS, the whole
batch at once: a batch cut by a lost connection may store some messages
twice, a duplicate and never a loss, as everywhere in taskchan.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import tenacity
from asgiref.sync import sync_to_async
from redis.exceptions import ResponseError

from . import metrics
from .conf import settings
from .consumer_table import handed_off_consumer
from .handoff import app as handoff_app
from .outgoing import build_many
from .priority import check_priority
from .producer import send_stored, status_ms
from .stores.base import ProducerStore
from .stores.configured import get_store
from .transient import TRANSIENT, send_failure, send_retrying


def send_many_stored(items: list[tuple[str, str, str, dict]], store: ProducerStore | None = None) -> list[str]:
    """Store validated ``(channel, envelope JSON, message id, options)`` items; their ids, in order.

    ``options`` are the store's (``delay_ms``, ``idempotency_key``, ``priority``); the
    status record's lifetime and the idempotency window are added here.
    """
    store = store or get_store()
    window = int(settings.IDEMPOTENCY_WINDOW * 1000)
    lifetimes: dict[str, int] = {}
    full = []
    for channel, raw, message_id, options in items:
        if channel not in lifetimes:
            lifetimes[channel] = status_ms(channel)
        full.append((channel, raw, message_id, {"idempotency_ms": window, "status_ms": lifetimes[channel], **options}))
    if not full:
        return []
    try:
        try:
            ids = store.send_many(full)
        except TRANSIENT:
            ids = send_retrying(tenacity.Retrying)(store.send_many, full)
    except (*TRANSIENT, ResponseError) as exc:
        raise send_failure(store, full[0][0], exc) from exc
    for channel, count in Counter(item[0] for item in full).items():
        metrics.sent_many(channel, count)
    return ids


def send_many(
    channel: str,
    contents: list[dict[str, Any]],
    *,
    delay: float | None = None,
    max_attempts: int | None = None,
    reply_channel: str | None = None,
    store: ProducerStore | None = None,
    priority: int = 0,
) -> list[str]:
    """Send every dict of ``contents`` to ``channel`` with the same options; their ids, in order.

    All are checked first (as ``send()`` checks one); a bad one raises the
    error ``send()`` would, its message prefixed with its position, and
    nothing is stored.  No idempotency key: a key names one message.  ``priority``
    applies to every one (``send()``'s).
    """
    check_priority(priority)
    delay_ms, built = build_many(  # the ids are asked for after every check
        channel, contents, delay, max_attempts, reply_channel, lambda ch: (store or get_store()).new_message_id(ch)
    )
    if (consumer := handed_off_consumer(channel)) is not None:  # published to Celery, one by one, as send() does
        handoff_app.check(consumer, delay)
        return [send_stored(channel, raw, message_id, delay_ms=delay_ms, store=store) for message_id, raw in built]
    options = {"delay_ms": delay_ms, "priority": priority}
    return send_many_stored([(channel, raw, message_id, options) for message_id, raw in built], store)


async def asend_many(channel: str, contents: list[dict[str, Any]], **options) -> list[str]:
    """``send_many`` from async code: same arguments, same guarantees (the pipeline runs in a thread)."""
    return await sync_to_async(send_many, thread_sensitive=False)(channel, contents, **options)
