"""The status lookup: a message id in, what ``taskchan.status()`` says out, and *Cancel* for a live message.

``queueoverview/lookup/?message_id=ID`` is a GET (a lookup changes nothing,
so its address can be pasted or bookmarked) and needs the overview's view
permission.  A POST of ``message_id`` cancels through ``cancel.py`` (the
permission ``taskchan.cancel_message``, one admin-log entry), and only a
message whose status still reads queued, scheduled or running when the POST
arrives: the page may be older than the message's end.  A dead-lettered
message links to its failed-message page when a row is found and the user may
open that page.  A Redis that does not answer is said on the page, never a 500.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from redis.exceptions import RedisError

from ..cancels import check_message_id
from ..exceptions import InvalidOption, StoreUnavailable
from ..models import FailedMessage
from ..stores.configured import get_store
from ..text import json_for_people, printable
from ..tracking import FAILED, QUEUED, RUNNING, SCHEDULED, UNKNOWN, MessageStatus, status
from ..transient import TRANSIENT
from .cancel import cancel_and_report, may_cancel
from .html import change_url, pre, status_lookup_url, when

#: the states a cancel can still change (``taskchan.cancel``: later ones only leave a marker that lapses)
CANCELLABLE = (QUEUED, SCHEDULED, RUNNING)
#: what reading the record raises when Redis does not answer (a sharded store raises a
#: plain RedisError naming the hosts that did not answer)
READ_ERRORS = (*TRANSIENT, RedisError, OSError, StoreUnavailable)


class LookupForm(forms.Form):
    message_id = forms.CharField(
        label="Message id",
        help_text="As taskchan.send() returned it.",
        widget=forms.TextInput(attrs={"size": 40, "autofocus": True, "spellcheck": "false"}),
    )

    def clean_message_id(self):
        try:  # the same rule as taskchan.cancel(), so every id shown here can be cancelled
            return check_message_id(self.cleaned_data["message_id"])
        except InvalidOption as exc:
            raise forms.ValidationError(printable(str(exc))) from None


def look_up(message_id: str) -> tuple[MessageStatus | None, bool, str]:
    """(status, whether a cancel waits for a worker, '') or (None, False, why it could not be read)."""
    store = get_store()
    try:
        found = status(message_id, store=store)
        # A queued message cancelled reads "queued" until a worker fetches and acks it:
        # the marker says a cancel is on its way.
        pending = found.state in CANCELLABLE and store.is_cancelled(message_id)
    except READ_ERRORS as exc:
        return None, False, f"Could not read the status from {store!r}: {exc}"
    return found, pending, ""


def lookup_view(model_admin, request):
    """GET ``?message_id=``: the form and what the status says; POST ``message_id``: cancel it."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    cancel_allowed = may_cancel(request)
    if request.method == "POST":
        if not cancel_allowed:
            raise PermissionDenied
        return cancel_from_lookup(request, request.POST.get("message_id"))
    form = LookupForm(request.GET if "message_id" in request.GET else None)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Look up a message",
        "form": form,
        "may_cancel": cancel_allowed,
        "overview_url": reverse("admin:taskchan_queueoverview_changelist"),
    }
    if form.is_valid():
        context.update(describe(model_admin, request, form.cleaned_data["message_id"]))
    return TemplateResponse(request, "admin/taskchan/queueoverview/lookup.html", context)


def describe(model_admin, request, message_id: str) -> dict:
    """What the page shows of one message (text from Redis made printable; the template escapes it)."""
    found, cancel_pending, error = look_up(message_id)
    if found is None:
        return {"error": error}
    return {
        "found": found,
        "cancellable": found.state in CANCELLABLE,
        "cancel_pending": cancel_pending,
        "worker_ids": [printable(w) for w in found.worker_ids],
        "errors": [
            {
                "attempt": e.get("attempt"),
                "at": when(e.get("at")),
                "type": printable(str(e.get("type", ""))),
                "message": printable(str(e.get("message", ""))),
            }
            for e in found.errors
        ],
        "result": pre(json_for_people(found.result)) if found.has_result else "",
        "progress": progress_shown(found.progress),
        "dead_letter_url": dead_letter_url(model_admin, request, found),
    }


def progress_shown(progress) -> dict | None:
    """The last ``message.progress()`` report as the page shows it (None when there is none)."""
    if not isinstance(progress, dict):
        return None
    current, total = progress.get("current"), progress.get("total")
    return {
        "done": printable(str(current) if total is None else f"{current} of {total}"),
        "note": printable(str(progress.get("note") or "")),
        "attempt": progress.get("attempt"),
        "at": when(progress.get("at")),
    }


def dead_letter_url(model_admin, request, found: MessageStatus) -> str:
    """The failed-message page of a dead-lettered message, for users who may open it ('' otherwise).

    Looked for when the status reads failed, and when it reads unknown: a
    dead letter's row outlives its status record (TASKCHAN_STATUS_TTL).
    """
    if found.state not in (FAILED, UNKNOWN) or not model_admin.may_view_failed(request):
        return ""
    row = FailedMessage.objects.filter(message_id=found.id).only("pk").first()
    return change_url(row) if row is not None else ""


def cancel_from_lookup(request, raw) -> HttpResponseRedirect:
    """Cancel the message if its status still reads queued, scheduled or running; back to its lookup."""
    try:
        message_id = check_message_id(raw)
    except InvalidOption as exc:
        messages.error(request, f"Nothing was cancelled: {printable(str(exc))}")
        return HttpResponseRedirect(status_lookup_url())
    found, _, error = look_up(message_id)
    if found is None:
        messages.error(request, f"Nothing was cancelled: {error}")
    elif found.state not in CANCELLABLE:
        messages.warning(request, f"Nothing was cancelled: message {message_id} is {found.state}.")
    else:
        cancel_and_report(request, message_id, found.channel)
    return HttpResponseRedirect(status_lookup_url(message_id))
