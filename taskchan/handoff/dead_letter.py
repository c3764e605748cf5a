"""Publishing a dead letter to Celery: the send half of the admin's "hand to Celery"
(``taskchan.resend.hand_to_celery`` owns the row and its lock)."""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured

from ..consumer_table import get_consumer
from ..exceptions import UnknownChannel
from ..outgoing import build_outgoing
from .app import celery_configured
from .publish import send_task

logger = logging.getLogger("taskchan.handoff")


def publish_dead_letter(failed_message) -> str:
    """Publish a dead letter's content to Celery as a new message, whatever its
    channel's own setting, and return the new message id.  Touches no row:
    ``taskchan.resend.hand_to_celery`` locks the row, calls this, and marks it."""
    if not celery_configured():
        raise ImproperlyConfigured(
            "Cannot hand to Celery: no Celery broker is configured (CELERY_BROKER_URL) or the "
            "channel layer is not taskchan's Redis layer."
        )
    channel = failed_message.channel
    consumer = get_consumer(channel)
    if consumer is None:
        raise UnknownChannel(
            f"No consumer is registered for {channel!r} in this process, so a Celery worker would "
            "have nothing to run it with. Is its module installed (consumers.py / TASKCHAN_CONSUMER_MODULES)?"
        )
    envelope, _delay_ms, raw, _content_json = build_outgoing(channel, failed_message.content)
    send_task(channel, raw, envelope.id, 0, consumer.name)
    logger.info("handed dead letter %s to Celery as %s", failed_message.message_id, envelope.id)
    return envelope.id
