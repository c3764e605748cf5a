"""Re-sending dead letters: one row, many rows, edit and retry, hand to Celery.

Every re-send of a ``FailedMessage`` goes through this module (the admin's
actions, ``FailedMessage.resend()``), and all of them follow one locking rule:

1. One transaction on the database ``FailedMessage`` rows are written to.
2. The rows are locked before anything is read or sent: ``SELECT ... FOR
   UPDATE`` of the one row, or of every row of a bulk re-send, in primary-key
   order (so two bulk re-sends over overlapping rows wait for each other
   instead of deadlocking), and re-read under the lock: what the caller
   loaded may be stale.  SQLite has no row locks; there the lock is the
   database's write lock, taken when the transaction begins under
   ``"transaction_mode": "IMMEDIATE"`` (the reference project's setting).
   With SQLite's default deferred transactions a second re-send running at
   the same moment fails with "database is locked" after its send: a
   duplicate, as below.
3. Under the lock, a row already retried (or discarded meanwhile) is skipped
   (many rows) or refused with ``CannotResend`` (one row).
4. The content is sent (to the store, or published to Celery) and the row is
   marked retried (``retried_at``, ``retried_as``) in the same transaction;
   the commit comes after the send returned.  A send that raises rolls the
   transaction back: no row is marked, an edit is undone.
5. A re-send never deletes its row: the row stays, marked, as the record of
   what failed and what it became.  Deleting is the separate "discard"
   action; its ``DELETE`` waits for the row lock, so a discard racing a
   re-send deletes the row after the re-send committed (the message is sent).

So two re-sends of one row at once send it once: the second waits for the
first's lock, then finds the row retried.  A process that dies after the send
and before the commit leaves the message sent and the row unmarked: a later
retry sends it again, a duplicate and never a loss, as everywhere in taskchan
(``tests/admin/test_resend_locking.py`` races two re-sends on SQLite,
``tests/integration/test_resend_on_postgres.py`` on PostgreSQL's row locks).

Many rows (``resend_many``) share the round trips: every row's content is
checked exactly as ``send()`` checks it, the envelopes are built here and
handed to ``bulk.send_many_stored`` (on Redis one round trip per host, one
``send_many.lua`` call per run of a channel's messages, each stored as
``send.lua`` stores one), and the rows are marked with one ``executemany`` of
an UPDATE.

``FailedMessage.resend()`` calls into this module, so it does not import
``models``: it takes the model from the rows it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .bulk import send_many_stored
from .envelope import Envelope, encode_content, validate_channel
from .exceptions import CannotResend, TaskchanError
from .handoff.dead_letter import publish_dead_letter
from .priority import check_priority
from .producer import send
from .registry import get_consumer
from .sealed import is_sealed
from .stores.base import StoreBase
from .stores.configured import get_store

if TYPE_CHECKING:
    from .models import FailedMessage


@dataclass
class ResendResult:
    sent: list[FailedMessage] = field(default_factory=list)  # rows re-sent, ``retried_as`` set
    skipped: list[tuple[FailedMessage, str]] = field(default_factory=list)  # (row, why not)


# -- why a row cannot be re-sent ----------------------------------------------------


def already_retried(row: FailedMessage) -> str:
    """Why ``row`` cannot be re-sent in any form (edited or not), or ''."""
    if row.retried_as:
        return f"it was already retried as message {row.retried_as}"
    return ""


def cannot_retry(row: FailedMessage) -> str:
    """Why ``row`` cannot be re-sent as it is, or ''."""
    if why := already_retried(row):
        return why
    if row.content is None:
        return "it has no content (a malformed message): use edit and retry"
    if is_sealed(row.content):
        return "its content is sealed with a key that is no longer in the layer's symmetric_encryption_keys"
    return ""


# -- one row --------------------------------------------------------------------------


def _resend_locked(
    row: FailedMessage, why_not: Callable[[FailedMessage], str], send_row: Callable[[FailedMessage], str]
) -> str:
    """The locking rule for one row: lock, re-read, check, send, mark, commit.

    ``send_row(locked_row)`` sends and returns the new message id.  The
    caller's ``row`` gets the marks too.  Raises ``CannotResend`` with the
    reason, or what the send raised (nothing is marked then).
    """
    model = type(row)
    with transaction.atomic(using=router.db_for_write(model)):
        locked = model._default_manager.select_for_update().filter(pk=row.pk).first()
        if locked is None:
            raise CannotResend("it no longer exists (it was discarded)")
        if why := why_not(locked):
            raise CannotResend(why)
        locked.retried_as = send_row(locked)
        locked.retried_at = timezone.now()
        locked.save(update_fields=["retried_at", "retried_as"])
    row.retried_at, row.retried_as = locked.retried_at, locked.retried_as
    return locked.retried_as


def resend_one(row: FailedMessage, content: dict | None = None) -> str:
    """Send the row's content again on its channel as a fresh message; mark the row; return the new id.

    ``content``, when given, is sent instead of the row's own (which is left
    as it is; ``edit_and_resend`` stores an edit first).  Raises
    ``CannotResend`` for a row that cannot be re-sent, or what ``send()``
    raises.
    """
    if content is None:
        return _resend_locked(
            row, cannot_retry, lambda locked: send(locked.channel, locked.content, priority=locked.priority)
        )
    return _resend_locked(row, already_retried, lambda locked: send(locked.channel, content, priority=locked.priority))


def edit_and_resend(row: FailedMessage, content: dict) -> str:
    """Store ``content`` as the row's content (keeping what failed as
    ``original_content``) and send it as a fresh message; mark the row; return
    the new id.  A send that fails undoes the edit too."""

    def edit_and_send(locked: FailedMessage) -> str:
        if locked.original_content is None:
            locked.original_content = locked.content
        locked.content = content
        locked.save(update_fields=["content", "original_content"])
        return send(locked.channel, content, priority=locked.priority)

    return _resend_locked(row, already_retried, edit_and_send)


def hand_to_celery(row: FailedMessage, publish: Callable[[FailedMessage], str] | None = None) -> str:
    """Re-send the row's content through Celery as a new message, whatever its
    channel's own setting; mark the row; return the new id.

    ``publish`` publishes a row's content and returns the new id: by default
    ``taskchan.handoff.publish_dead_letter`` (the admin passes the one it found).
    Raises ``CannotResend``, or what the publish raises (ImproperlyConfigured
    without a Celery broker, UnknownChannel for a channel with no consumer).
    """
    return _resend_locked(row, cannot_retry, publish or publish_dead_letter)


# -- many rows ------------------------------------------------------------------------


def _mark_retried(rows: list[FailedMessage], when) -> None:
    """``UPDATE ... SET retried_at, retried_as WHERE id`` for every row, as one ``executemany``.

    Django's ``bulk_update`` builds a CASE expression per row and spent seconds
    on 10,000; one prepared statement run with 10,000 parameter rows takes
    milliseconds (SQLite) or one pipeline (psycopg 3).
    """
    if not rows:
        return
    model = type(rows[0])
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    column = model._meta.get_field
    sql = (
        f"UPDATE {quote(model._meta.db_table)} "  # noqa: S608 (names from the model, quoted)
        f"SET {quote(column('retried_at').column)} = %s, {quote(column('retried_as').column)} = %s "
        f"WHERE {quote(model._meta.pk.column)} = %s"
    )
    at = column("retried_at").get_db_prep_save(when, connection=connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(at, row.retried_as, row.pk) for row in rows])


def _as_queryset(rows: Iterable[FailedMessage]) -> QuerySet | None:
    """``rows`` as a queryset to lock (a list is looked up again by primary key), or None for no rows."""
    if isinstance(rows, QuerySet):
        return rows
    rows = list(rows)
    if not rows:
        return None
    return type(rows[0])._default_manager.filter(pk__in=[row.pk for row in rows])


def resend_many(rows: Iterable[FailedMessage], *, store: StoreBase | None = None) -> ResendResult:
    """Re-send each row's content on its channel as a fresh message; mark the rows retried.

    The rows are locked and re-read (the locking rule above).  Rows already
    retried, or whose content does not pass ``send()``'s checks (a malformed
    message has none), are skipped and returned with the reason.  A channel
    whose consumer hands off to Celery goes through ``send()`` (one publish
    each), as ``resend_one`` would.  Raises what the store raises when Redis is
    down; no row is marked then.
    """
    queryset = _as_queryset(rows)
    result = ResendResult()
    if queryset is None:
        return result
    store = store or get_store()
    try:
        with transaction.atomic(using=router.db_for_write(queryset.model)):
            locked = queryset.select_for_update().order_by("pk")
            batch, handed_off = _build_batch(locked, result, store)
            for row in handed_off:
                try:
                    row.retried_as = send(row.channel, row.content, store=store, priority=row.priority)
                except (TaskchanError, ValueError, TypeError, ImproperlyConfigured) as exc:
                    result.skipped.append((row, str(exc)))
                else:
                    result.sent.append(row)
            now = timezone.now()
            for row in result.sent:
                row.retried_at = now
            _mark_retried(result.sent, now)
            if batch:
                send_many_stored([(ch, raw, message_id, {"priority": p}) for ch, raw, message_id, p in batch], store)
    except BaseException:
        for row in result.sent:
            row.retried_as, row.retried_at = "", None
        raise
    return result


def _build_batch(rows, result: ResendResult, store) -> tuple[list[tuple[str, str, str, int]], list[FailedMessage]]:
    """Check each row as send() would and build its envelope; fill ``result``.

    Returns the ``(channel, envelope, id, priority)`` items to write, and the rows of
    channels that hand off to Celery (sent one by one through ``send()``).
    """
    batch, handed_off = [], []
    for row in rows:
        if why := cannot_retry(row):
            result.skipped.append((row, why))
            continue
        consumer = get_consumer(row.channel)
        if consumer is not None and consumer.handoff:
            handed_off.append(row)
            continue
        try:
            validate_channel(row.channel)
            check_priority(row.priority)
            content_json = encode_content(row.content)
        except (TaskchanError, ValueError, TypeError) as exc:
            result.skipped.append((row, str(exc)))
            continue
        envelope = Envelope.new(row.channel, row.content, message_id=store.new_message_id(row.channel))
        batch.append((row.channel, envelope.encode(content_json), envelope.id, row.priority))
        row.retried_as = envelope.id
        result.sent.append(row)
    return batch, handed_off
