"""The taskchan admin: dead letters, the queue overview, and send_on_commit rows waiting.

``FailedMessageAdmin`` is read-only (no add, no editing of what was stored):
its actions re-send (``retry``), delete (``discard``), edit the content and
re-send (``edit and retry``) or hand to Celery.  Permissions:

==============================  =============================================
view the list and a message     ``taskchan.view_failedmessage``
retry (one, selected, group)    ``taskchan.retry_failedmessage``
hand to Celery                  ``taskchan.retry_failedmessage``
discard                         ``taskchan.delete_failedmessage``
edit and retry                  ``taskchan.change_failedmessage`` and retry
queue overview                  ``taskchan.view_queue_overview``
send_on_commit rows waiting     ``taskchan.view_outboxmessage``
relay them now                  ``taskchan.change_outboxmessage``
==============================  =============================================
Every failed-message action needs the view permission as well.

Every query of the list page is bounded (see ``admin_lists``): it opens as fast
with 100,000 rows as with 100 (``tests/admin/test_failed_list.py`` measures it).
"""

from __future__ import annotations

import datetime
import json

from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.template.defaultfilters import pluralize
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timesince

from . import admin_views as views
from . import compat
from .admin_lists import IndexedValuesFilter, LimitedCountPaginator, RetriedFilter
from .conf import settings as taskchan_settings
from .models import FailedMessage, OutboxMessage, QueueOverview
from .text import json_for_people, printable

MESSAGE_ID_HEX = frozenset("0123456789abcdef")


def _pre(text: str, css: str = "taskchan-pre"):
    # printable(): JSON in a row can hold lone surrogates, which no page can encode
    return format_html('<pre class="{}">{}</pre>', css, printable(str(text)))


def _when(timestamp) -> str:
    try:
        moment = timezone.localtime(datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC))
    except (TypeError, ValueError, OverflowError, OSError):  # not a time, or past year 9999
        return "-"
    return date_format(moment, "Y-m-d H:i:s")


@admin.register(FailedMessage)
class FailedMessageAdmin(admin.ModelAdmin):
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
        return request.user.has_perms(
            ["taskchan.change_failedmessage", "taskchan.retry_failedmessage"]
        )

    # -- list -------------------------------------------------------------------

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page = int(request.GET.get("p", 1))
        except ValueError:
            page = 1
        return LimitedCountPaginator(
            queryset, per_page, orphans, allow_empty_first_page, page_hint=page
        )

    def get_search_results(self, request, queryset, search_term):
        """A message id (whole, or a prefix of 8+ hex digits) through the unique index; else the error text."""
        term = search_term.strip()
        if not term:
            return queryset, False
        lowered = term.lower()
        by_id = None
        if term.startswith("malformed:"):
            by_id = queryset.filter(message_id=term)
        elif 8 <= len(lowered) <= 32 and set(lowered) <= MESSAGE_ID_HEX:
            # A prefix as a range, so the unique index serves it on every database.
            by_id = queryset.filter(message_id__gte=lowered, message_id__lt=lowered + "g")
        if by_id is not None and by_id.exists():
            return by_id, False
        return queryset.filter(last_error__icontains=term), False

    @admin.display(description="message", ordering="message_id")
    def short_id(self, obj):
        return format_html(
            '<span title="{}">{}</span>', obj.message_id, Truncator(obj.message_id).chars(9)
        )

    @admin.display(description="channel / consumer", ordering="channel")
    def channel_and_consumer(self, obj):
        return format_html('{}<span class="taskchan-quiet">{}</span>', obj.channel, obj.consumer)

    @admin.display(description="last failed", ordering="last_failed_at")
    def last_failed(self, obj):
        moment = timezone.localtime(obj.last_failed_at)
        seconds = (timezone.now() - obj.last_failed_at).total_seconds()
        ago = f"{max(0, int(seconds))} s" if seconds < 60 else timesince(obj.last_failed_at, depth=1)
        return format_html(
            '<time datetime="{}" title="{}">{} ago</time>',
            moment.isoformat(),
            date_format(moment, "Y-m-d H:i:s T"),
            ago,
        )

    @admin.display(description="last error")
    def short_error(self, obj):
        kind = obj.last_error_type.rsplit(".", 1)[-1]
        text = printable(f"{kind}: {obj.last_error}" if kind and obj.last_error else kind or obj.last_error)
        return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(60))

    @admin.display(description="status", ordering="reason")
    def status(self, obj):
        attempts = format_html('<span class="taskchan-quiet">{} attempt{}</span>', obj.attempts, pluralize(obj.attempts))
        if obj.retried_as:
            return format_html(
                'retried as <a href="{}">{}</a>{}',
                views.message_filter_url(obj.retried_as),
                Truncator(obj.retried_as).chars(9),
                attempts,
            )
        return format_html("{}{}", obj.get_reason_display(), attempts)

    def get_actions(self, request, action_location=compat.CHANGE_LIST):
        # Django 6.1 passes action_location (and looks for it by name); 5.2 and 6.0 take none.
        actions = super().get_actions(request, **compat.location_kwargs(action_location))
        if views.celery_handoff() is None:
            actions.pop("hand_to_celery_selected", None)
        return actions

    @admin.action(permissions=["delete"], description="Discard selected %(verbose_name_plural)s")
    def delete_selected(self, request, queryset):
        return django_delete_selected(self, request, queryset)  # its confirmation page and log entries

    @admin.action(permissions=["retry"], description="Retry selected failed messages")
    def retry_selected(self, request, queryset):
        views.resend_and_report(self, request, queryset)

    @admin.action(permissions=["retry"], description="Hand selected failed messages to Celery")
    def hand_to_celery_selected(self, request, queryset):
        hand = views.celery_handoff()
        if hand is not None:
            views.hand_to_celery_and_report(self, request, queryset, hand)

    # -- detail -----------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        general = ["message_id", "channel", "consumer", "reason", "attempts_display", "sent_at"]
        if obj is not None and obj.ran_under_celery:
            general.append("ran_under_celery")
        if obj is not None and obj.reply_channel:
            general.append("reply_channel")
        content = ["content_display"]
        if obj is not None and obj.original_content is not None:
            content.append("original_content_display")
        if obj is not None and obj.raw:
            content.append("raw_display")
        failure = ["last_error_type", "last_error_display", "first_failed_at", "last_failed_at"]
        fieldsets = [(None, {"fields": general})]
        if obj is not None and obj.retried_at:
            fieldsets.append(("Retried", {"fields": ["retried_at", "retried_as_link"]}))
        return [
            *fieldsets,
            ("Content", {"fields": content}),
            ("Last failure", {"fields": failure}),
            ("Attempts", {"fields": ["errors_display"]}),
            ("Last traceback", {"fields": ["traceback_display"]}),
        ]

    @admin.display(description="attempts")
    def attempts_display(self, obj):
        if obj.max_attempts:
            return f"{obj.attempts} of {obj.max_attempts}"
        return str(obj.attempts)

    @admin.display(description="last error")
    def last_error_display(self, obj):
        return _pre(obj.last_error) if obj.last_error else "-"

    @admin.display(description="retried as")
    def retried_as_link(self, obj):
        if not obj.retried_as:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', views.message_filter_url(obj.retried_as), obj.retried_as
        )

    @admin.display(description="content")
    def content_display(self, obj):
        if obj.content is None:
            return "- (none: the message could not be read; see raw)"
        return _pre(json_for_people(obj.content), "taskchan-pre taskchan-json")

    @admin.display(description="original content (before edit and retry)")
    def original_content_display(self, obj):
        return _pre(json_for_people(obj.original_content), "taskchan-pre taskchan-json")

    @admin.display(description="raw (as received)")
    def raw_display(self, obj):
        return _pre(obj.raw)

    @admin.display(description="errors")
    def errors_display(self, obj):
        errors = obj.errors if isinstance(obj.errors, list) else []
        if not errors:
            return "-"
        rows = []
        for n, error in enumerate(errors, 1):
            error = error if isinstance(error, dict) else {"message": str(error)}
            rows.append(
                (
                    error.get("attempt", n),
                    _when(error.get("at")),
                    printable(str(error.get("type", ""))),
                    printable(str(error.get("message", ""))),
                )
            )
        return format_html(
            '<table class="taskchan-attempts"><thead><tr><th>attempt</th><th>time</th><th>error</th>'
            "<th>message</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                '<tr><td>{}</td><td>{}</td><td>{}</td><td><pre class="taskchan-pre">{}</pre></td></tr>',
                rows,
            ),
        )

    @admin.display(description="traceback")
    def traceback_display(self, obj):
        return _pre(obj.traceback) if obj.traceback else "-"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry": self.has_retry_permission(request),
            "can_edit_retry": self.has_edit_retry_permission(request),
            "can_hand_to_celery": self.has_retry_permission(request)
            and views.celery_handoff() is not None,
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
            path(
                "<path:object_id>/edit-retry/", wrap(self.edit_retry_view), name=name + "edit_retry"
            ),
            path("<path:object_id>/celery/", wrap(self.celery_view), name=name + "celery"),
            *super().get_urls(),
        ]

    def groups_view(self, request):
        return views.groups_view(self, request)

    def group_retry_view(self, request):
        return views.group_retry_view(self, request)

    def group_discard_view(self, request):
        return views.group_discard_view(self, request)

    def retry_view(self, request, object_id):
        return views.retry_view(self, request, object_id)

    def edit_retry_view(self, request, object_id):
        return views.edit_retry_view(self, request, object_id)

    def celery_view(self, request, object_id):
        return views.celery_view(self, request, object_id)


@admin.register(QueueOverview)
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
        ]

    def overview_view(self, request):
        return views.overview_view(self, request)

    def data_view(self, request):
        return views.overview_data_view(self, request)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """``send_on_commit`` messages committed but not yet handed to the store.

    A row normally lives for the moment between a commit and its relay; one
    that stays is waiting for Redis (or for a worker's sweep, after
    TASKCHAN_OUTBOX_RELAY_AFTER).  Read-only, and never deletable: deleting a
    row would lose a message whose transaction committed.  "Relay now" stores
    the selected ones at once; a relay is idempotent, so one that races a
    worker's sweep is stored once.
    """

    list_display = ["id", "channel", "created_at", "waiting", "delayed"]
    list_filter = ["channel"]
    search_fields = ["id"]
    ordering = ["created_at"]
    actions = ["relay_now"]
    readonly_fields = ["id", "channel", "created_at", "delay_ms", "idempotency_key", "envelope_display"]
    exclude = ["envelope"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # what was committed is never edited; "relay now" has its own check

    def has_delete_permission(self, request, obj=None):
        return False

    def has_relay_permission(self, request):
        return request.user.has_perm("taskchan.change_outboxmessage")

    @admin.display(description="waiting")
    def waiting(self, row):
        seconds = (timezone.now() - row.created_at).total_seconds()
        late = seconds > taskchan_settings.OUTBOX_RELAY_AFTER
        return format_html(
            '<span class="{}">{}</span>', "errornote" if late else "", timesince(row.created_at) or "0 minutes"
        )

    @admin.display(description="delay", boolean=True)
    def delayed(self, row):
        return bool(row.delay_ms)

    @admin.display(description="envelope")
    def envelope_display(self, row):
        try:
            return _pre(json_for_people(json.loads(row.envelope)))
        except (ValueError, RecursionError):
            return _pre(row.envelope)

    @admin.action(description="Relay selected messages to the store now", permissions=["relay"])
    def relay_now(self, request, queryset):
        from django.contrib import messages

        from . import outbox

        rows = list(queryset)
        relayed = [row for row in rows if outbox.relay(row.pk)]
        for row in relayed:
            self.log_change(request, row, "Relayed to the store from the admin.")
        if len(relayed) == len(rows):
            self.message_user(request, f"Relayed {len(relayed)} message(s) to the store.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                f"Relayed {len(relayed)} of {len(rows)} message(s); the others could not be stored "
                "(see the log) or were relayed meanwhile. Workers keep trying.",
                messages.WARNING,
            )
