"""The failed-message list's actions (discard, retry, hand to Celery) and how
each reports what it did: one admin-log entry per row, one pluralised message
per outcome.  The re-sending itself, and its locking, is ``taskchan/resend.py``.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import ngettext
from redis.exceptions import RedisError

from .. import compat
from ..exceptions import CannotResend, TaskchanError
from ..models import FailedMessage
from ..resend import ResendResult, hand_to_celery, resend_many

logger = logging.getLogger("taskchan.admin")

#: errors a re-send reports to the user instead of a 500: bad content, Redis
#: down, a channel that hands off to Celery with no broker configured
SEND_ERRORS = (TaskchanError, ValueError, TypeError, OSError, RedisError, ImproperlyConfigured)


def celery_publisher():
    """``taskchan.handoff.publish_dead_letter`` when the Celery hand-off exists and is configured, else None.

    Looked up by name at each request: the "hand to Celery" action and button
    appear only where the hand-off can work.
    """
    try:
        handoff = importlib.import_module("taskchan.handoff")
    except ImportError:
        return None
    configured = getattr(handoff, "celery_configured", None)
    publish = getattr(handoff, "publish_dead_letter", None)
    if not callable(configured) or not callable(publish):
        return None
    try:
        return publish if configured() else None
    except Exception:
        logger.exception("taskchan.handoff.celery_configured() failed: 'hand to Celery' is hidden")
        return None


class FailedMessageActions:
    """The list actions of ``FailedMessageAdmin`` (a mixin), each behind its permission."""

    def get_actions(self, request, action_location=compat.CHANGE_LIST):
        # Django 6.1 passes action_location (and looks for it by name); 5.2 and 6.0 take none.
        actions = super().get_actions(request, **compat.location_kwargs(action_location))
        if celery_publisher() is None:
            actions.pop("hand_to_celery_selected", None)
        return actions

    @admin.action(permissions=["delete"], description="Discard selected %(verbose_name_plural)s")
    def delete_selected(self, request, queryset):
        return django_delete_selected(self, request, queryset)  # its confirmation page and log entries

    @admin.action(permissions=["retry"], description="Retry selected failed messages")
    def retry_selected(self, request, queryset):
        resend_and_report(self, request, queryset)

    @admin.action(permissions=["retry"], description="Hand selected failed messages to Celery")
    def hand_to_celery_selected(self, request, queryset):
        publish = celery_publisher()
        if publish is not None:
            hand_to_celery_and_report(self, request, queryset, publish)


# -- reporting ---------------------------------------------------------------------


def log_changes(request, rows, message_for) -> None:
    """One admin-log CHANGE entry per row, written in one statement per 1,000."""
    content_type = ContentType.objects.get_for_model(FailedMessage)
    entries = [
        LogEntry(
            user_id=request.user.pk,
            content_type_id=content_type.pk,
            object_id=str(row.pk),
            object_repr=str(row)[:200],
            action_flag=CHANGE,
            change_message=message_for(row),
        )
        for row in rows
    ]
    LogEntry.objects.bulk_create(entries, batch_size=1000)


def skipped_summary(skipped) -> str:
    """The three commonest reasons in ``[(row, reason), ...]``, with their counts."""
    reasons = Counter(reason for _row, reason in skipped)
    return "; ".join(f"{reason} ({n})" if n > 1 else reason for reason, n in reasons.most_common(3))


def report_count(model_admin, request, rows, level, singular: str, plural: str, **values) -> None:
    """One pluralised message about ``rows`` (``%(count)d`` and ``values`` filled in)."""
    text = ngettext(singular, plural, len(rows)) % {"count": len(rows), **values}
    model_admin.message_user(request, text, level)


def report_resend(model_admin, request, result: ResendResult) -> None:
    if result.sent:
        log_changes(request, result.sent, lambda row: f"Retried as message {row.retried_as}.")
        report_count(
            model_admin, request, result.sent, messages.SUCCESS,
            "%(count)d failed message was re-sent on its channel.",
            "%(count)d failed messages were re-sent on their channels.",
        )  # fmt: skip
    if result.skipped:
        report_count(
            model_admin, request, result.skipped, messages.WARNING,
            "%(count)d failed message was not re-sent: %(why)s.",
            "%(count)d failed messages were not re-sent: %(why)s.",
            why=skipped_summary(result.skipped),
        )  # fmt: skip
    if not result.sent and not result.skipped:
        model_admin.message_user(request, "No failed messages to re-send.", messages.WARNING)


def resend_and_report(model_admin, request, queryset) -> None:
    """Bulk retry (selection or group): one pipeline, one UPDATE pass, one log write."""
    try:
        result = resend_many(queryset)
    except SEND_ERRORS as exc:
        logger.exception("bulk retry failed")
        model_admin.message_user(request, f"Nothing was re-sent: {exc}", messages.ERROR)
        return
    report_resend(model_admin, request, result)


def hand_to_celery_and_report(model_admin, request, rows, publish) -> None:
    """Hand each row to Celery (``resend.hand_to_celery``: one row lock each) and report."""
    handed, skipped, failed = [], [], []
    for row in rows:
        try:
            new_id = hand_to_celery(row, publish)
        except CannotResend as exc:
            skipped.append((row, str(exc)))
        except Exception as exc:
            logger.exception("hand_to_celery failed for %s", row.message_id)
            failed.append((row, str(exc)))
        else:
            handed.append((row, new_id if isinstance(new_id, str) else ""))
    if handed:
        new_ids = {row.pk: new_id for row, new_id in handed}
        log_changes(
            request,
            [row for row, _ in handed],
            lambda row: f"Handed to Celery as message {new_ids[row.pk] or '(id not given)'}.",
        )
        report_count(
            model_admin, request, handed, messages.SUCCESS,
            "%(count)d failed message was handed to Celery.",
            "%(count)d failed messages were handed to Celery.",
        )  # fmt: skip
    for bucket, level, what in ((skipped, messages.WARNING, "skipped"), (failed, messages.ERROR, "not handed over")):
        if bucket:
            report_count(
                model_admin, request, bucket, level,
                "%(count)d failed message was %(what)s: %(why)s.",
                "%(count)d failed messages were %(what)s: %(why)s.",
                what=what, why=skipped_summary(bucket),
            )  # fmt: skip
