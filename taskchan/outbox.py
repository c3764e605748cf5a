"""``send_on_commit``: a transactional outbox.

The message is written as an ``OutboxMessage`` row inside the caller's
database transaction, so it exists exactly when the caller's own rows do.
After commit it is relayed to the store and the row deleted.  A process that
dies (or a Redis that is down) between the commit and the relay leaves the row
behind, and every worker sweeps rows older than TASKCHAN_OUTBOX_RELAY_AFTER.
A relay uses an idempotency key (the caller's, or one derived from the message
id), so a row relayed twice - by the commit hook and a sweep - is stored once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .bulk import send_many_stored
from .conf import settings
from .consumer_table import handed_off_consumer
from .envelope import (
    MAX_DELAY_SECONDS,
    MalformedEnvelope,
    check_send_options,
    decode,
    validate_channel,
)
from .exceptions import TaskchanError
from .priority import check_priority
from .producer import checked_outgoing, send_stored

logger = logging.getLogger("taskchan.outbox")


def send_on_commit(
    channel, content, *, delay=None, max_attempts=None, idempotency_key=None, reply_channel=None, using=None,
    priority=0,
) -> str:
    """Like ``send``, but only once the current transaction commits; nothing if it rolls back.
    ``priority`` as ``send``'s: the row keeps it, and the relay sends at that priority."""
    from .models import OutboxMessage

    check_priority(priority)
    envelope, delay_ms, raw, _content_json = checked_outgoing(channel, content, delay, max_attempts, idempotency_key, reply_channel)
    OutboxMessage.objects.using(using).create(
        id=envelope.id,
        channel=channel,
        envelope=raw,
        delay_ms=delay_ms,
        idempotency_key=idempotency_key or "",
        priority=priority,
    )
    transaction.on_commit(lambda: relay(envelope.id, using=using), using=using, robust=True)
    return envelope.id


def relay(message_id: str, using=None) -> bool:
    """Store one outbox row's message and delete the row. False if it is gone or Redis is down."""
    from .models import OutboxMessage

    row = OutboxMessage.objects.using(using).filter(pk=message_id).first()
    if row is None:
        return False
    if problem := unrelayable(row):
        # Written around send_on_commit (a hand-edit, an old version): it can
        # never be stored as it is, so it becomes a malformed dead letter.
        from . import deadletter

        deadletter.record_malformed(
            channel=row.channel, entry_id=f"outbox:{row.pk}", raw=row.envelope,
            error=f"a send_on_commit row that cannot be relayed: {problem}",
        )
        OutboxMessage.objects.using(using).filter(pk=row.pk).delete()
        return False
    try:
        send_stored(
            row.channel,
            row.envelope,
            row.id,
            delay_ms=row.delay_ms,
            idempotency_key=row.idempotency_key or f"outbox:{row.id}",
            priority=row.priority,
        )
    except Exception:
        logger.exception("outbox: relay of %s to %s failed; a worker will retry it", row.id, row.channel)
        return False
    OutboxMessage.objects.using(using).filter(pk=row.pk).delete()
    return True


def unrelayable(row) -> str:
    """Why an outbox row cannot be stored as it is (checked as send() checks), or ''."""
    try:
        validate_channel(row.channel)
        envelope = decode(row.envelope, row.channel)
        check_send_options(None, None, row.idempotency_key or None, None)
        check_priority(row.priority)
    except (TaskchanError, MalformedEnvelope) as exc:
        return str(exc)
    if envelope.id != row.pk:
        return f"its envelope's id {envelope.id!r} is not the row's id"
    if not 0 <= row.delay_ms <= MAX_DELAY_SECONDS * 1000:
        return f"its delay of {row.delay_ms} ms is past the limit of {MAX_DELAY_SECONDS} s"
    return ""


def sweep(limit: int = 200, using=None) -> int:
    """Relay rows whose commit-time relay never happened, in one bulk send. Returns how many were relayed."""
    from .models import OutboxMessage

    cutoff = timezone.now() - timedelta(seconds=settings.OUTBOX_RELAY_AFTER)
    rows = list(OutboxMessage.objects.using(using).filter(created_at__lt=cutoff)[:limit])
    if not rows:
        # Nothing to relay: no delete either.  Its transaction would wait for the
        # write lock on SQLite (up to the database's timeout) while anything else writes.
        return 0
    relayable, one_by_one = [], 0
    for row in rows:
        if unrelayable(row) or handed_off_consumer(row.channel) is not None:
            one_by_one += relay(row.pk, using=using)  # dead-lettered, or published to Celery, one by one
        else:
            relayable.append(row)
    items = [
        (row.channel, row.envelope, row.id,
         {"delay_ms": row.delay_ms, "idempotency_key": row.idempotency_key or f"outbox:{row.id}",
          "priority": row.priority})
        for row in relayable
    ]
    try:
        send_many_stored(items)  # the same keys as relay(): a row relayed twice is stored once
    except Exception:
        logger.exception("outbox: relay of %d row(s) failed; a worker will retry them", len(items))
        return one_by_one
    if relayable:
        OutboxMessage.objects.using(using).filter(pk__in=[row.pk for row in relayable]).delete()
    return one_by_one + len(relayable)
