"""A failed message's detail page: which fields it shows, and how each is shown."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from ..text import json_for_people, printable
from .html import message_filter_url, pre, when


class FailedMessageDetail:
    """The detail page's part of ``FailedMessageAdmin`` (a mixin): fieldsets and read-only fields."""

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
        return pre(obj.last_error) if obj.last_error else "-"

    @admin.display(description="retried as")
    def retried_as_link(self, obj):
        if not obj.retried_as:
            return "-"
        return format_html('<a href="{}">{}</a>', message_filter_url(obj.retried_as), obj.retried_as)

    @admin.display(description="content")
    def content_display(self, obj):
        if obj.content is None:
            return "- (none: the message could not be read; see raw)"
        return pre(json_for_people(obj.content), "taskchan-pre taskchan-json")

    @admin.display(description="original content (before edit and retry)")
    def original_content_display(self, obj):
        return pre(json_for_people(obj.original_content), "taskchan-pre taskchan-json")

    @admin.display(description="raw (as received)")
    def raw_display(self, obj):
        return pre(obj.raw)

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
                    when(error.get("at")),
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
        return pre(obj.traceback) if obj.traceback else "-"
