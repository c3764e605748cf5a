"""``OutboxMessageAdmin``: send_on_commit rows committed but not yet handed to the store."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from ..conf import settings as taskchan_settings
from ..outbox import relay
from ..text import json_for_people
from .html import pre


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
            return pre(json_for_people(json.loads(row.envelope)))
        except (ValueError, RecursionError):
            return pre(row.envelope)

    @admin.action(description="Relay selected messages to the store now", permissions=["relay"])
    def relay_now(self, request, queryset):
        rows = list(queryset)
        relayed = [row for row in rows if relay(row.pk)]
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
