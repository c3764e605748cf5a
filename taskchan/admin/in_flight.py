"""The overview's in-flight list: one channel's leased messages, each with a "cancel" button.

Reached from the overview's "In flight" figure.  Viewing needs the overview's
permission; cancelling needs ``taskchan.cancel_message`` and writes one
admin-log entry per message (on the ``QueueOverview`` content type, the
message id as the object).  A cancel here is ``taskchan.cancel``: the running
job sees ``message.cancelled`` within one lease renewal period
(``docs/time-limits-and-cancel.md``).
"""

from __future__ import annotations

import asyncio

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..cancels import cancel, check_message_id
from ..envelope import CHANNEL_NAME_RE
from ..exceptions import InvalidOption, StoreUnavailable
from ..models import QueueOverview
from ..stores.configured import get_store
from ..text import duration

#: leased messages listed per channel (the oldest Redis lists first)
LIMIT = 100
CANCEL_PERMISSION = "taskchan.cancel_message"


def read_in_flight(channel: str) -> list:
    store = get_store()

    async def read():
        try:
            return await store.in_flight(channel, LIMIT)
        finally:
            await store.aclose()

    return asyncio.run(read())


def in_flight_view(model_admin, request, channel: str):
    """GET: the list; POST ``message_id``: cancel that message (with the permission)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if not CHANNEL_NAME_RE.match(channel):
        raise Http404("no such channel")
    may_cancel = request.user.has_perm(CANCEL_PERMISSION)
    if request.method == "POST":
        if not may_cancel:
            raise PermissionDenied
        cancel_and_report(request, request.POST.get("message_id"), channel)
        return HttpResponseRedirect(request.path)
    rows = [
        {"message_id": m.message_id or "", "entry_id": m.entry_id, "worker": m.worker,
         "lease_age": duration(m.lease_age), "deliveries": m.deliveries}
        for m in read_in_flight(channel)
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"In flight on {channel}",
        "channel": channel,
        "rows": rows,
        "limit": LIMIT,
        "may_cancel": may_cancel,
        "overview_url": reverse("admin:taskchan_queueoverview_changelist"),
    }
    return TemplateResponse(request, "admin/taskchan/queueoverview/in_flight.html", context)


def cancel_and_report(request, message_id, channel: str) -> None:
    """Cancel one message, log it in the admin log and tell the user how it went."""
    try:
        cancel(check_message_id(message_id))
    except (InvalidOption, StoreUnavailable) as exc:
        messages.error(request, f"Nothing was cancelled: {exc}")
        return
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type_id=ContentType.objects.get_for_model(QueueOverview).pk,
        object_id=message_id,
        object_repr=f"message {message_id} on {channel}"[:200],
        action_flag=CHANGE,
        change_message=f"Cancelled message {message_id} on {channel}.",
    )
    messages.success(
        request, f"Message {message_id} is cancelled: it stops at its next check of message.cancelled, "
        "or never starts if it has not yet.",
    )
