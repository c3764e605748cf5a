"""Handing a dead letter to Celery: the admin's "hand to Celery" action."""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction
from django.utils import timezone

from ..consumer_table import get_consumer
from ..exceptions import UnknownChannel
from ..outgoing import build_outgoing
from .app import celery_configured
from .publish import send_task

logger = logging.getLogger("taskchan.handoff")


def hand_to_celery(failed_message) -> str:
    """Re-send a dead letter's content through Celery, whatever its channel's own
    setting; mark the row retried (``retried_at``, ``retried_as``) and return
    the new message id.  For the admin's "hand to Celery" action."""
    if not celery_configured():
        raise ImproperlyConfigured(
            "Cannot hand to Celery: no Celery broker is configured (CELERY_BROKER_URL) or the "
            "channel layer is not taskchan's Redis layer."
        )
    if failed_message.content is None:
        raise ValueError(
            f"Dead letter {failed_message.message_id} has no content to re-send (it arrived malformed)."
        )
    channel = failed_message.channel
    consumer = get_consumer(channel)
    if consumer is None:
        raise UnknownChannel(
            f"No consumer is registered for {channel!r} in this process, so a Celery worker would "
            "have nothing to run it with. Is its module installed (consumers.py / TASKCHAN_CONSUMER_MODULES)?"
        )
    envelope, _delay_ms, raw = build_outgoing(channel, failed_message.content)
    # The row's own model (FailedMessage): this module is loaded with the
    # producer, which must not load the models.
    model = type(failed_message)
    # Two people handing (or retrying) the same row at once: the second waits
    # for the first's row lock, then finds it retried and sends nothing.
    with transaction.atomic(using=router.db_for_write(model)):
        row = model.objects.select_for_update().get(pk=failed_message.pk)
        if row.retried_as:
            raise ValueError(f"Dead letter {row.message_id} was already retried as message {row.retried_as}.")
        send_task(channel, raw, envelope.id, 0, consumer.name)
        row.retried_at = timezone.now()
        row.retried_as = envelope.id
        row.save(update_fields=["retried_at", "retried_as"])
    failed_message.retried_at, failed_message.retried_as = row.retried_at, row.retried_as
    logger.info("handed dead letter %s to Celery as %s", failed_message.message_id, envelope.id)
    return envelope.id
