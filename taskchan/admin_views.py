"""The pages the taskchan admin adds to Django's: failures grouped by channel
and error, one-row retry, edit and retry, hand to Celery, and the queue
overview with its JSON endpoint.

Each view is a function of ``(model_admin, request, ...)`` that ``admin.py``
mounts through ``admin_site.admin_view`` (staff only, CSRF, no caching) and
checks its own permission.  Every state change is a POST and is written to
Django's admin log.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections import Counter
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import BadRequest, ImproperlyConfigured, PermissionDenied
from django.db.models import Count, Max, Q
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext
from redis.exceptions import RedisError

from .admin_overview import collect
from .envelope import encode_content
from .exceptions import CannotResend, TaskchanError
from .models import FailedMessage
from .resend import ResendResult, edit_and_resend, hand_to_celery, resend_many
from .text import json_for_people

logger = logging.getLogger("taskchan.admin")

#: errors a re-send reports to the user instead of a 500: bad content, Redis
#: down, a channel that hands off to Celery with no broker configured
SEND_ERRORS = (TaskchanError, ValueError, TypeError, OSError, RedisError, ImproperlyConfigured)


# -- shared -------------------------------------------------------------------


def celery_handoff():
    """``taskchan.handoff.publish_dead_letter`` when the Celery hand-off exists and is configured, else None."""
    try:
        handoff = importlib.import_module("taskchan.handoff")
    except ImportError:
        return None
    configured = getattr(handoff, "celery_configured", None)
    hand = getattr(handoff, "publish_dead_letter", None)
    if not callable(configured) or not callable(hand):
        return None
    try:
        return hand if configured() else None
    except Exception:
        logger.exception("taskchan.handoff.celery_configured() failed: 'hand to Celery' is hidden")
        return None


def message_filter_url(message_id: str) -> str:
    """The failed-message list filtered to one message id."""
    return reverse("admin:taskchan_failedmessage_changelist") + "?" + urlencode({"message_id": message_id})


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


def _skipped_summary(skipped) -> str:
    reasons = Counter(reason for _row, reason in skipped)
    return "; ".join(f"{reason} ({n})" if n > 1 else reason for reason, n in reasons.most_common(3))


def report_resend(model_admin, request, result: ResendResult) -> None:
    sent = len(result.sent)
    if sent:
        log_changes(request, result.sent, lambda row: f"Retried as message {row.retried_as}.")
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d failed message was re-sent on its channel.",
                "%(count)d failed messages were re-sent on their channels.",
                sent,
            )
            % {"count": sent},
            messages.SUCCESS,
        )
    if result.skipped:
        skipped = len(result.skipped)
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d failed message was not re-sent: %(why)s.",
                "%(count)d failed messages were not re-sent: %(why)s.",
                skipped,
            )
            % {"count": skipped, "why": _skipped_summary(result.skipped)},
            messages.WARNING,
        )
    if not sent and not result.skipped:
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
    """Hand each row to Celery (``resend.hand_to_celery``, one row lock each) and report."""
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
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d failed message was handed to Celery.",
                "%(count)d failed messages were handed to Celery.",
                len(handed),
            )
            % {"count": len(handed)},
            messages.SUCCESS,
        )
    for bucket, level, text in (
        (skipped, messages.WARNING, "skipped"),
        (failed, messages.ERROR, "not handed over"),
    ):
        if bucket:
            model_admin.message_user(
                request,
                ngettext(
                    "%(count)d failed message was %(what)s: %(why)s.",
                    "%(count)d failed messages were %(what)s: %(why)s.",
                    len(bucket),
                )
                % {"count": len(bucket), "what": text, "why": _skipped_summary(bucket)},
                level,
            )


def _require_post(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


def _get_row(model_admin, request, object_id) -> FailedMessage:
    row = model_admin.get_object(request, unquote(object_id))
    if row is None:
        raise Http404("No failed message with that id.")
    if not model_admin.has_view_permission(request, row):
        raise PermissionDenied
    return row


def _change_url(row) -> str:
    return reverse("admin:taskchan_failedmessage_change", args=[row.pk])


# -- one row ------------------------------------------------------------------


def retry_view(model_admin, request, object_id):
    """POST: re-send one failed message with ``FailedMessage.resend()`` (which takes the row's lock)."""
    if refused := _require_post(request):
        return refused
    row = _get_row(model_admin, request, object_id)
    if not model_admin.has_retry_permission(request, row):
        raise PermissionDenied
    new_id = ""
    try:
        new_id = row.resend()
    except CannotResend as exc:
        model_admin.message_user(request, f"Not re-sent: {exc}.", messages.WARNING)
    except SEND_ERRORS as exc:
        model_admin.message_user(request, f"Not re-sent: {exc}", messages.ERROR)
    if new_id:
        model_admin.log_change(request, row, f"Retried as message {new_id}.")
        model_admin.message_user(
            request,
            format_html(
                'Re-sent as message <a href="{}">{}</a>.', message_filter_url(new_id), new_id
            ),
            messages.SUCCESS,
        )
    return HttpResponseRedirect(_change_url(row))


class EditRetryForm(forms.Form):
    content = forms.CharField(
        label="Content (JSON)",
        widget=forms.Textarea(
            attrs={"rows": 18, "class": "vLargeTextField taskchan-json", "spellcheck": "false"}
        ),
        help_text="A JSON object. It is checked exactly as send() checks content, then sent as a new message.",
    )

    def clean_content(self):
        text = self.cleaned_data["content"]
        try:
            content = json.loads(text)
        except RecursionError:
            raise forms.ValidationError("Nested too deeply to read.") from None
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
        try:
            encode_content(content)  # the same checks as taskchan.send()
        except TaskchanError as exc:
            raise forms.ValidationError(str(exc)) from None
        return content


def _edit_and_resend(row: FailedMessage, content: dict) -> tuple[str, str]:
    """Store the edited content (keeping the original) and re-send it: (new id, '') or ('', why not)."""
    try:
        return edit_and_resend(row, content), ""  # a failed send rolls the edit back too
    except CannotResend as exc:
        return "", f"Not re-sent: {exc}."
    except SEND_ERRORS as exc:
        return "", f"Not re-sent: {exc}"


def edit_retry_view(model_admin, request, object_id):
    """GET: the content in a JSON editor.  POST: validate as send() does, keep the original, re-send."""
    row = _get_row(model_admin, request, object_id)
    if not model_admin.has_edit_retry_permission(request, row):
        raise PermissionDenied
    initial = json_for_people(row.content if row.content is not None else {})
    form = EditRetryForm(
        request.POST if request.method == "POST" else None, initial={"content": initial}
    )
    if request.method == "POST" and form.is_valid():
        new_id, why_not = _edit_and_resend(row, form.cleaned_data["content"])
        if new_id:
            model_admin.log_change(
                request, row, f"Edited the content and retried as message {new_id}."
            )
            model_admin.message_user(
                request,
                format_html(
                    'Edited and re-sent as message <a href="{}">{}</a>.',
                    message_filter_url(new_id),
                    new_id,
                ),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(_change_url(row))
        form.add_error(None, why_not)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": row,
        "title": "Edit and retry",
        "subtitle": str(row),
        "form": form,
        "already_retried": row.retried_as,
    }
    return TemplateResponse(request, "admin/taskchan/failedmessage/edit_retry.html", context)


def celery_view(model_admin, request, object_id):
    """POST: hand one failed message to Celery (only when the hand-off is configured)."""
    if refused := _require_post(request):
        return refused
    hand = celery_handoff()
    if hand is None:
        raise Http404("The Celery hand-off is not configured.")
    row = _get_row(model_admin, request, object_id)
    if not model_admin.has_retry_permission(request, row):
        raise PermissionDenied
    hand_to_celery_and_report(model_admin, request, [row], hand)
    return HttpResponseRedirect(_change_url(row))


# -- groups -------------------------------------------------------------------


def groups_view(model_admin, request):
    """Failures grouped by channel and exception type, with counts and a retry-all / discard-all per group."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    groups = (
        FailedMessage.objects.values("channel", "last_error_type")
        .annotate(
            total=Count("id"),
            open=Count("id", filter=Q(retried_as="")),
            latest=Max("last_failed_at"),
            upto=Max("id"),
        )
        .order_by("-total", "channel", "last_error_type")
    )
    changelist = reverse("admin:taskchan_failedmessage_changelist")
    rows = []
    for group in groups:
        params = {
            "channel": group["channel"],
            "error_type": group["last_error_type"],
            "upto": group["upto"],
        }
        list_params = {"channel": group["channel"]}
        if group["last_error_type"]:
            list_params["last_error_type"] = group["last_error_type"]
        rows.append(
            {
                **group,
                "list_url": f"{changelist}?{urlencode(list_params)}",
                "retry_url": reverse("admin:taskchan_failedmessage_group_retry")
                + "?"
                + urlencode(params),
                "discard_url": reverse("admin:taskchan_failedmessage_group_discard")
                + "?"
                + urlencode(params),
            }
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Failed messages by channel and error",
        "groups": rows,
        "can_retry": model_admin.has_retry_permission(request),
        "can_discard": model_admin.has_delete_permission(request),
    }
    return TemplateResponse(request, "admin/taskchan/failedmessage/groups.html", context)


def _group_queryset(request):
    """The rows of one group as the groups page showed it (``upto``: rows that failed later are left alone)."""
    try:
        channel = request.GET["channel"]
        error_type = request.GET.get("error_type", "")
        upto = int(request.GET["upto"])
    except (KeyError, ValueError):
        raise BadRequest("channel and upto are required") from None
    return FailedMessage.objects.filter(channel=channel, last_error_type=error_type, pk__lte=upto)


def group_retry_view(model_admin, request):
    if refused := _require_post(request):
        return refused
    if not (model_admin.has_view_permission(request) and model_admin.has_retry_permission(request)):
        raise PermissionDenied
    resend_and_report(model_admin, request, _group_queryset(request).unretried())
    return HttpResponseRedirect(reverse("admin:taskchan_failedmessage_groups"))


def group_discard_view(model_admin, request):
    """POST: Django's delete confirmation for the group; its "Yes" POSTs back here and deletes."""
    if refused := _require_post(request):
        return refused
    if not (model_admin.has_view_permission(request) and model_admin.has_delete_permission(request)):
        raise PermissionDenied
    response = delete_selected(model_admin, request, _group_queryset(request))
    return response or HttpResponseRedirect(reverse("admin:taskchan_failedmessage_groups"))


# -- queue overview -----------------------------------------------------------


def overview_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    links = _may_view_failed(model_admin, request)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Queue overview",
        "data": collect(failed_links=links),
        "data_url": reverse("admin:taskchan_queueoverview_data"),
        # Links to pages this user may open, only.
        "failed_url": reverse("admin:taskchan_failedmessage_changelist") if links else "",
        "groups_url": reverse("admin:taskchan_failedmessage_groups") if links else "",
    }
    return TemplateResponse(request, "admin/taskchan/queueoverview/overview.html", context)


def overview_data_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    return JsonResponse(collect(failed_links=_may_view_failed(model_admin, request)))


def _may_view_failed(model_admin, request) -> bool:
    """Whether the failed-message pages would open for this user (the admin's own check)."""
    return model_admin.admin_site.get_model_admin(FailedMessage).has_view_permission(request)
