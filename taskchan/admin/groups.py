"""Failed messages grouped by channel and error type, with a retry-all and a discard-all per group."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.admin.actions import delete_selected
from django.core.exceptions import BadRequest, PermissionDenied
from django.db.models import Count, Max, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..models import FailedMessage
from .actions import resend_and_report
from .views import require_post


def group_row(group: dict, changelist: str) -> dict:
    """One line of the groups page: the counts, and its list, retry and discard links."""
    params = {"channel": group["channel"], "error_type": group["last_error_type"], "upto": group["upto"]}
    list_params = {"channel": group["channel"]}
    if group["last_error_type"]:
        list_params["last_error_type"] = group["last_error_type"]
    return {
        **group,
        "list_url": f"{changelist}?{urlencode(list_params)}",
        "retry_url": reverse("admin:taskchan_failedmessage_group_retry") + "?" + urlencode(params),
        "discard_url": reverse("admin:taskchan_failedmessage_group_discard") + "?" + urlencode(params),
    }


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
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Failed messages by channel and error",
        "groups": [group_row(group, changelist) for group in groups],
        "can_retry": model_admin.has_retry_permission(request),
        "can_discard": model_admin.has_delete_permission(request),
    }
    return TemplateResponse(request, "admin/taskchan/failedmessage/groups.html", context)


def group_queryset(request):
    """The rows of one group as the groups page showed it (``upto``: rows that failed later are left alone)."""
    try:
        channel = request.GET["channel"]
        error_type = request.GET.get("error_type", "")
        upto = int(request.GET["upto"])
    except (KeyError, ValueError):
        raise BadRequest("channel and upto are required") from None
    return FailedMessage.objects.filter(channel=channel, last_error_type=error_type, pk__lte=upto)


def group_retry_view(model_admin, request):
    if refused := require_post(request):
        return refused
    if not (model_admin.has_view_permission(request) and model_admin.has_retry_permission(request)):
        raise PermissionDenied
    resend_and_report(model_admin, request, group_queryset(request).unretried())
    return HttpResponseRedirect(reverse("admin:taskchan_failedmessage_groups"))


def group_discard_view(model_admin, request):
    """POST: Django's delete confirmation for the group; its "Yes" POSTs back here and deletes."""
    if refused := require_post(request):
        return refused
    if not (model_admin.has_view_permission(request) and model_admin.has_delete_permission(request)):
        raise PermissionDenied
    response = delete_selected(model_admin, request, group_queryset(request))
    return response or HttpResponseRedirect(reverse("admin:taskchan_failedmessage_groups"))
