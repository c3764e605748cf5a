"""Turning a message that will not succeed into a ``FailedMessage`` row.

A dead letter is always recorded.  Every value is first fitted to its column
(numbers clamped, strings cut, text made printable: no NUL, no lone
surrogate), so the row fits every supported database.  Should the database
still refuse the row (PostgreSQL's ``jsonb`` refuses ``\\u0000`` in content,
for one), it is written again without the content, the whole envelope kept
as text in ``raw``: a dead letter is never left to be retried forever.  Only a
database that cannot be reached at all raises, and then the caller leaves the
message leased to try again.

``record_malformed`` is the one path for anything that cannot be read (not
JSON, not UTF-8, not an envelope, unexpected stream fields, undecryptable):
the row has no content, the reason ``malformed``, the error, and the raw
stored text shown safely (bytes that are not UTF-8 as ``\\xNN``).
"""

from __future__ import annotations

import datetime
import hashlib
import logging

from django.db import DataError, close_old_connections

from .envelope import Envelope
from .models import FailedMessage
from .text import printable

logger = logging.getLogger("taskchan.deadletter")

#: characters of the stored message kept in ``raw``
RAW_CHARS = 100_000
#: largest value of an integer column on every supported database (PostgreSQL ``integer``)
MAX_COLUMN_INT = 2**31 - 1
#: errors that mean "the database will not hold these values" (value too long or out of
#: range, NUL or ``\u0000`` in text, an int too large for SQLite); any other error (the
#: database is down, a racing writer won) is raised, and the caller tries again later
REFUSED = (DataError, ValueError, TypeError, OverflowError)


def _when(timestamp) -> datetime.datetime | None:
    if not timestamp:
        return None
    try:
        return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _count(value) -> int:
    """An attempts figure fitted to an integer column."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, MAX_COLUMN_INT))


def _text(value, limit: int | None = None) -> str:
    text = printable(value if isinstance(value, str) else str(value if value is not None else ""))
    return text[:limit] if limit is not None else text


def malformed_id(channel: str, entry_id: str) -> str:
    """The message id of a malformed entry's row: one row per stream entry, at most 64 characters."""
    message_id = f"malformed:{channel}:{entry_id}"
    if len(message_id) <= 64 and printable(message_id) == message_id:
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"malformed:{digest}"


def _errors(errors) -> list[dict]:
    """Each attempt's error with printable text and storable numbers."""
    return [
        {
            "type": _text(e.get("type", ""), 255),
            "message": _text(e.get("message", ""), 2000),
            "at": e.get("at") if _when(e.get("at")) else None,
            "attempt": _count(e.get("attempt")),
        }
        for e in (errors if isinstance(errors, list) else [])
        if isinstance(e, dict)
    ]


def _fields(channel, reason, envelope, raw, consumer, attempts, max_attempts, error) -> tuple[str, dict]:
    """(message id, column values) of the row, each value fitted to its column."""
    if envelope is None:
        message_id = ""  # set by the caller (malformed_id)
        errors = [{"type": "taskchan.MalformedMessage", "message": _text(error, 2000), "at": None, "attempt": 0}]
        fields = {"content": None, "raw": _text(raw)[:RAW_CHARS], "traceback": ""}
    else:
        message_id = _text(envelope.id, 64)
        errors = _errors(envelope.errors)
        fields = {
            "consumer": _text(consumer, 255),
            "content": envelope.content,
            "attempts": _count(attempts),
            "max_attempts": _count(max_attempts) or None,
            "sent_at": _when(envelope.sent_at),
            "reply_channel": _text(envelope.reply_channel, 255),
            "traceback": _text(envelope.traceback),
        }
    last = errors[-1] if errors else {}
    fields.update(
        channel=_text(channel, 100),
        reason=reason,
        errors=errors,
        last_error_type=last.get("type", ""),
        last_error=last.get("message", ""),
        last_failed_at=_when(last.get("at")) or datetime.datetime.now(tz=datetime.UTC),
    )
    fields["first_failed_at"] = (_when(errors[0].get("at")) if errors else None) or fields["last_failed_at"]
    return message_id, fields


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
    priority: int = 0,
):
    """Write (or update, for a repeated dead-lettering) the FailedMessage row.

    Keyed on the message id, so a worker that dies after writing the row but
    before acking the message, and a second worker that dead-letters the
    redelivery, leave one row.  Runs in a worker thread: it uses the ORM.
    Raises only when the database cannot be reached (see the module docstring).
    """
    message_id, fields = _fields(channel, reason, envelope, raw, consumer, attempts, max_attempts, error)
    if envelope is None:
        message_id = malformed_id(channel, entry_id)
    if ran_under_celery:  # the Celery hand-off's dead letters (handoff/celery_side.py)
        fields["ran_under_celery"] = True
    fields["priority"] = priority  # its level in the store: a retry from the admin sends it again at it
    close_old_connections()
    try:
        try:
            row = _write(message_id, fields)
        except REFUSED as exc:
            row = _write(message_id, _as_text(fields, envelope, exc))
        logger.error(
            "dead-lettered channel=%s message=%s reason=%s attempts=%s error=%s",
            fields["channel"], message_id, reason, fields.get("attempts", 0), fields["last_error_type"] or reason,
        )
        return row
    finally:
        close_old_connections()


def record_malformed(*, channel: str, entry_id: str, raw: str, error: str):
    """Dead-letter a stored entry that cannot be read: reason ``malformed``, the error, the raw text."""
    return record(
        channel=channel, entry_id=entry_id, reason=FailedMessage.Reason.MALFORMED, envelope=None, raw=raw,
        error=error,
    )


def _write(message_id: str, fields: dict):
    first = fields.pop("first_failed_at")
    try:
        row, _created = FailedMessage.objects.update_or_create(
            message_id=message_id, defaults=fields, create_defaults={**fields, "first_failed_at": first}
        )
    finally:
        fields["first_failed_at"] = first
    return row


def _as_text(fields: dict, envelope: Envelope | None, exc: BaseException) -> dict:
    """The row again with what the database refused left out: no content, the whole envelope as text."""
    logger.warning("the database refused a dead letter as it was (%s); keeping its envelope as text", exc)
    text = envelope.encode() if envelope is not None else fields.get("raw", "")
    note = f"taskchan: the database refused this row's values ({type(exc).__name__}); the stored message follows.\n"
    return {**fields, "content": None, "raw": (note + _text(text))[:RAW_CHARS]}
