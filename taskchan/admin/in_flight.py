"""The overview's in-flight list: one channel's leased messages, each with a "cancel" button.

Reached from the overview's "In flight" figure.  Viewing needs the overview's
permission; cancelling needs ``taskchan.cancel_message`` and writes one
admin-log entry per message (``cancel.py``, shared with the status lookup).
A cancel here is ``taskchan.cancel``: the running job sees
``message.cancelled`` within one lease renewal period
(``docs/time-limits-and-cancel.md``).
"""

from __future__ import annotations

import asyncio

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..envelope import CHANNEL_NAME_RE
from ..stores.configured import get_store
from ..text import duration
from .cancel import cancel_and_report, may_cancel
from .html import status_lookup_url

#: leased messages listed per channel (the oldest Redis lists first)
LIMIT = 100


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
    cancel_allowed = may_cancel(request)
    if request.method == "POST":
        if not cancel_allowed:
            raise PermissionDenied
        cancel_and_report(request, request.POST.get("message_id"), channel)
        return HttpResponseRedirect(request.path)
    rows = [
        {"message_id": m.message_id or "", "entry_id": m.entry_id, "worker": m.worker,
         "lookup_url": status_lookup_url(m.message_id) if m.message_id else "",
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
        "may_cancel": cancel_allowed,
        "overview_url": reverse("admin:taskchan_queueoverview_changelist"),
    }
    return TemplateResponse(request, "admin/taskchan/queueoverview/in_flight.html", context)
