"""The queue overview's pause and resume buttons: their own permission, logged in the admin log.

``taskchan.pause_channel`` lets a user pause and resume channels (the view
permission alone does not); each press writes a CHANGE entry in the admin log
against the queue overview, naming the channel.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse

from ..envelope import validate_channel
from ..exceptions import InvalidChannelName
from ..flow.pause import pause, resume
from ..models import QueueOverview

PERMISSION = "taskchan.pause_channel"


def may_pause(request) -> bool:
    return request.user.has_perm(PERMISSION)


def pause_view(model_admin, request):
    """POST channel + action (pause or resume); back to the overview with a message."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not may_pause(request):
        raise PermissionDenied
    channel, action = request.POST.get("channel", ""), request.POST.get("action", "")
    back = HttpResponseRedirect(reverse("admin:taskchan_queueoverview_changelist"))
    try:
        validate_channel(channel)
    except InvalidChannelName as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return back
    if action not in ("pause", "resume"):
        model_admin.message_user(request, f"Unknown action {action!r}.", messages.ERROR)
        return back
    try:
        if action == "pause":
            pause(channel, by=request.user.get_username())
        else:
            resume(channel)
    except Exception as exc:  # Redis did not answer: say so, change nothing in the log
        model_admin.message_user(request, f"Could not {action} {channel}: {exc}", messages.ERROR)
        return back
    verb = "Paused" if action == "pause" else "Resumed"
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type_id=ContentType.objects.get_for_model(QueueOverview).pk,
        object_id=channel,
        object_repr=channel[:200],
        action_flag=CHANGE,
        change_message=f"{verb} {channel}.",
    )
    model_admin.message_user(request, f"{verb} {channel}. Workers notice within about a second.", messages.SUCCESS)
    return back
