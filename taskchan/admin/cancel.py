"""The admin's cancel: one function for every page with a *Cancel* button, and its permission.

The in-flight list (``in_flight.py``) and the status lookup (``lookup.py``)
both cancel through ``cancel_and_report``: ``taskchan.cancel``, then one
admin-log entry (on the ``QueueOverview`` content type, the message id as the
object) and a message to the user, so both pages log and report alike.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType

from ..cancels import cancel, check_message_id
from ..exceptions import InvalidOption, StoreUnavailable
from ..models import QueueOverview

PERMISSION = "taskchan.cancel_message"


def may_cancel(request) -> bool:
    return request.user.has_perm(PERMISSION)


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
        request,
        f"Message {message_id} is cancelled: it stops at its next check of message.cancelled, "
        "or never starts if it has not yet.",
    )
