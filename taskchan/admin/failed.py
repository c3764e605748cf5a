"""``FailedMessageAdmin``: dead letters, read-only, with their actions and pages.

The list page (columns, search, paginator) is ``changelist.py``, the detail
page's fields ``detail.py``, the actions ``actions.py``; the pages this admin
adds are ``views.py`` (one row) and ``groups.py`` (by channel and error).
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from . import groups, views
from .actions import FailedMessageActions, celery_publisher
from .changelist import FailedMessageList, IndexedValuesFilter, RetriedFilter
from .detail import FailedMessageDetail


class FailedMessageAdmin(FailedMessageList, FailedMessageDetail, FailedMessageActions, admin.ModelAdmin):
    list_display = ["short_id", "channel_and_consumer", "short_error", "last_failed", "status"]
    list_display_links = ["short_id"]
    list_filter = [
        ("channel", IndexedValuesFilter),
        ("consumer", IndexedValuesFilter),
        "reason",
        ("last_error_type", IndexedValuesFilter),
        RetriedFilter,
        "ran_under_celery",
    ]
    search_fields = ["message_id", "last_error"]  # see get_search_results
    search_help_text = "A message id (or its first 8+ characters), or words from the error."
    ordering = ["-last_failed_at", "-id"]
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    delete_confirmation_max_display = 100
    actions = ["delete_selected", "retry_selected", "hand_to_celery_selected"]
    readonly_fields = [
        "message_id", "channel", "consumer", "reason", "attempts_display", "sent_at", "reply_channel",
        "ran_under_celery",
        "last_error_type", "last_error_display", "first_failed_at", "last_failed_at",
        "retried_at", "retried_as_link", "content_display", "original_content_display", "raw_display",
        "errors_display", "traceback_display",
    ]  # fmt: skip

    # -- permissions: read-only, plus retry -----------------------------------

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # stored fields are never edited; "edit and retry" has its own check

    def has_retry_permission(self, request, obj=None):
        return request.user.has_perm("taskchan.retry_failedmessage")

    def has_edit_retry_permission(self, request, obj=None):
        return request.user.has_perms(["taskchan.change_failedmessage", "taskchan.retry_failedmessage"])

    # -- pages ------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry": self.has_retry_permission(request),
            "can_edit_retry": self.has_edit_retry_permission(request),
            "can_hand_to_celery": self.has_retry_permission(request) and celery_publisher() is not None,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_view_overview": request.user.has_perm("taskchan.view_queue_overview"),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        name = "taskchan_failedmessage_"
        return [
            path("groups/", wrap(self.groups_view), name=name + "groups"),
            path("groups/retry/", wrap(self.group_retry_view), name=name + "group_retry"),
            path("groups/discard/", wrap(self.group_discard_view), name=name + "group_discard"),
            path("<path:object_id>/retry/", wrap(self.retry_view), name=name + "retry"),
            path("<path:object_id>/edit-retry/", wrap(self.edit_retry_view), name=name + "edit_retry"),
            path("<path:object_id>/celery/", wrap(self.celery_view), name=name + "celery"),
            *super().get_urls(),
        ]

    def groups_view(self, request):
        return groups.groups_view(self, request)

    def group_retry_view(self, request):
        return groups.group_retry_view(self, request)

    def group_discard_view(self, request):
        return groups.group_discard_view(self, request)

    def retry_view(self, request, object_id):
        return views.retry_view(self, request, object_id)

    def edit_retry_view(self, request, object_id):
        return views.edit_retry_view(self, request, object_id)

    def celery_view(self, request, object_id):
        return views.celery_view(self, request, object_id)
