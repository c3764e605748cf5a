"""Turning a message that will not succeed into a ``FailedMessage`` row."""

from __future__ import annotations

import datetime
import logging

from django.db import close_old_connections

from .envelope import Envelope

logger = logging.getLogger("taskchan.deadletter")


def _when(timestamp: float | None) -> datetime.datetime | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def record(
    *,
    channel: str,
    entry_id: str,
    reason: str,
    envelope: Envelope | None,
    raw: str = "",
    consumer: str = "",
    attempts: int = 0,
    max_attempts: int | None = None,
    error: str = "",
    ran_under_celery: bool = False,
):
    """Write (or update, for a repeated dead-lettering) the FailedMessage row.

    Keyed on the message id, so a worker that dies after writing the row but
    before acking the message, and a second worker that dead-letters the
    redelivery, leave one row.  Runs in a worker thread: it uses the ORM.
    """
    from .models import FailedMessage

    close_old_connections()
    try:
        if envelope is None:
            message_id = f"malformed:{channel}:{entry_id}"
            fields = {"channel": channel, "reason": reason, "raw": raw[:100_000], "content": None}
            errors = [{"type": "taskchan.MalformedMessage", "message": error, "at": None, "attempt": 0}]
            traceback = ""
        else:
            message_id = envelope.id
            errors = envelope.errors
            traceback = envelope.traceback or ""
            fields = {
                "channel": channel,
                "consumer": consumer,
                "content": envelope.content,
                "reason": reason,
                "attempts": attempts,
                "max_attempts": max_attempts,
                "sent_at": _when(envelope.sent_at),
                "reply_channel": envelope.reply_channel or "",
            }
        if ran_under_celery:  # the Celery hand-off's dead letters (handoff.py)
            fields["ran_under_celery"] = True
        last = errors[-1] if errors else {}
        fields.update(
            errors=errors,
            traceback=traceback,
            last_error_type=last.get("type", ""),
            last_error=last.get("message", ""),
            last_failed_at=_when(last.get("at")) or datetime.datetime.now(tz=datetime.UTC),
        )
        first = _when(errors[0].get("at")) if errors else None
        row, _created = FailedMessage.objects.update_or_create(
            message_id=message_id,
            defaults=fields,
            create_defaults={**fields, "first_failed_at": first or fields["last_failed_at"]},
        )
        logger.error(
            "dead-lettered channel=%s message=%s reason=%s attempts=%s error=%s",
            channel,
            message_id,
            reason,
            attempts,
            fields["last_error_type"] or reason,
        )
        return row
    finally:
        close_old_connections()
