"""The queue overview page: ``QueueOverviewAdmin`` (a page, not a table) and its JSON endpoint.

What it shows is gathered by ``overview_data.collect()``.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..conf import settings
from ..models import FailedMessage
from .html import status_lookup_url
from .in_flight import in_flight_view
from .lookup import lookup_view
from .overview_data import collect
from .pause import may_pause, pause_view


class QueueOverviewAdmin(admin.ModelAdmin):
    """The queue overview: a page, not a table (``QueueOverview`` has none)."""

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("taskchan.view_queue_overview")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.overview_view), name="taskchan_queueoverview_changelist"),
            path("data/", wrap(self.data_view), name="taskchan_queueoverview_data"),
            path(
                "in-flight/<str:channel>/", wrap(lambda request, channel: in_flight_view(self, request, channel)),
                name="taskchan_queueoverview_in_flight",
            ),
            path("pause/", wrap(lambda request: pause_view(self, request)), name="taskchan_queueoverview_pause"),
            path("lookup/", wrap(lambda request: lookup_view(self, request)), name="taskchan_queueoverview_lookup"),
        ]

    def overview_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        links = self.may_view_failed(request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Queue overview",
            "data": collect(failed_links=links),
            "data_url": reverse("admin:taskchan_queueoverview_data"),
            # Where workers' "changed" pushes arrive (taskchan/progress/); polling stays the fallback.
            "push_path": settings.PROGRESS_WEBSOCKET,
            # Links to pages this user may open, only.
            "failed_url": reverse("admin:taskchan_failedmessage_changelist") if links else "",
            "groups_url": reverse("admin:taskchan_failedmessage_groups") if links else "",
            # The pause and resume buttons, for users with their permission only.
            "pause_url": reverse("admin:taskchan_queueoverview_pause") if may_pause(request) else "",
            # The status lookup needs what this page needs: every viewer gets the link.
            "lookup_url": status_lookup_url(),
        }
        return TemplateResponse(request, "admin/taskchan/queueoverview/overview.html", context)

    def data_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(collect(failed_links=self.may_view_failed(request)))

    def may_view_failed(self, request) -> bool:
        """Whether the failed-message pages would open for this user (the admin's own check)."""
        return self.admin_site.get_model_admin(FailedMessage).has_view_permission(request)
