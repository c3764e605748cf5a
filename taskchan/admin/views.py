"""The failed-message pages for one row: retry, edit and retry, hand to Celery.

Each view is a function of ``(model_admin, request, object_id)`` that
``FailedMessageAdmin.get_urls`` mounts through ``admin_site.admin_view``
(staff only, CSRF, no caching) and that checks its own permission.  Every
state change is a POST and is written to Django's admin log; the re-sending
and its row lock are ``taskchan/resend.py``.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html

from ..envelope import encode_content
from ..exceptions import CannotResend, TaskchanError
from ..models import FailedMessage
from ..resend import edit_and_resend
from ..text import json_for_people
from .actions import SEND_ERRORS, celery_publisher, hand_to_celery_and_report
from .html import change_url, message_filter_url


def require_post(request):
    """A 405 response for anything but a POST, else None."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


def get_row(model_admin, request, object_id) -> FailedMessage:
    """The row, if it exists and this user may view it (404 / 403 otherwise)."""
    row = model_admin.get_object(request, unquote(object_id))
    if row is None:
        raise Http404("No failed message with that id.")
    if not model_admin.has_view_permission(request, row):
        raise PermissionDenied
    return row


def retry_view(model_admin, request, object_id):
    """POST: re-send one failed message with ``FailedMessage.resend()`` (which takes the row's lock)."""
    if refused := require_post(request):
        return refused
    row = get_row(model_admin, request, object_id)
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
            format_html('Re-sent as message <a href="{}">{}</a>.', message_filter_url(new_id), new_id),
            messages.SUCCESS,
        )
    return HttpResponseRedirect(change_url(row))


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


def edit_and_resend_or_why(row: FailedMessage, content: dict) -> tuple[str, str]:
    """Store the edited content (keeping the original) and re-send it: (new id, '') or ('', why not)."""
    try:
        return edit_and_resend(row, content), ""  # a failed send rolls the edit back too
    except CannotResend as exc:
        return "", f"Not re-sent: {exc}."
    except SEND_ERRORS as exc:
        return "", f"Not re-sent: {exc}"


def edit_retry_view(model_admin, request, object_id):
    """GET: the content in a JSON editor.  POST: validate as send() does, keep the original, re-send."""
    row = get_row(model_admin, request, object_id)
    if not model_admin.has_edit_retry_permission(request, row):
        raise PermissionDenied
    initial = json_for_people(row.content if row.content is not None else {})
    form = EditRetryForm(request.POST if request.method == "POST" else None, initial={"content": initial})
    if request.method == "POST" and form.is_valid():
        new_id, why_not = edit_and_resend_or_why(row, form.cleaned_data["content"])
        if new_id:
            model_admin.log_change(request, row, f"Edited the content and retried as message {new_id}.")
            model_admin.message_user(
                request,
                format_html(
                    'Edited and re-sent as message <a href="{}">{}</a>.', message_filter_url(new_id), new_id
                ),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(change_url(row))
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
    if refused := require_post(request):
        return refused
    publish = celery_publisher()
    if publish is None:
        raise Http404("The Celery hand-off is not configured.")
    row = get_row(model_admin, request, object_id)
    if not model_admin.has_retry_permission(request, row):
        raise PermissionDenied
    hand_to_celery_and_report(model_admin, request, [row], publish)
    return HttpResponseRedirect(change_url(row))
