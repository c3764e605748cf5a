"""The failed-message list: its columns, its search, and the pieces that keep it fast on a big table.

A dead-letter table can hold millions of rows after an outage.  Django's
changelist would count them all (``COUNT(*)`` twice: the filtered and the full
total) and run ``SELECT DISTINCT`` over whole columns for each value filter;
both grow with the table.  Here every query the list page runs is bounded
(``tests/admin/test_failed_list.py`` checks the query plans):

* ``LimitedCountPaginator`` counts at most a few pages past the one shown,
  inside a ``LIMIT``ed subquery, and says "more than N" beyond that;
* ``IndexedValuesFilter`` lists a column's distinct values by walking its
  index (a recursive "loose index scan": one index probe per distinct value);
* a message id is searched through the unique index (``get_search_results``);
* the page itself is ``ORDER BY last_failed_at DESC, id DESC LIMIT 100`` on
  the ``last_failed_at`` index.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.filters import AllValuesFieldListFilter
from django.core.paginator import Paginator
from django.db import connections, router
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince

from ..text import printable
from .html import message_filter_url

#: pages past the requested one that the paginator counts before it stops
LOOKAHEAD_PAGES = 10
#: most values a value filter lists (e.g. error types); more are rare, and reachable by
#: putting the value in the URL (?channel=...)
MAX_FILTER_VALUES = 100


class LimitedCountPaginator(Paginator):
    """A paginator whose ``count`` stops a few pages past ``page_hint``.

    ``count_limited`` is True when there are more rows than counted; templates
    then say "more than N" and the last page link is the last counted one.
    """

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, page_hint=1):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.page_hint = max(1, page_hint)
        self.count_limited = False

    @cached_property
    def count(self) -> int:
        limit = (self.page_hint + LOOKAHEAD_PAGES) * self.per_page
        # COUNT(*) over "SELECT ... LIMIT limit + 1": never reads more than that.
        counted = self.object_list.order_by()[: limit + 1].count()
        if counted > limit:
            self.count_limited = True
            return limit
        return counted


def distinct_values(model, column_name: str, limit: int = MAX_FILTER_VALUES) -> list:
    """Distinct non-null values of an indexed column, smallest first, with one index probe each.

    A recursive CTE (SQLite, PostgreSQL, MySQL 8, MariaDB): start at MIN(col),
    then repeatedly take the smallest value greater than the last one.
    """
    db = router.db_for_read(model)
    connection = connections[db]
    quote = connection.ops.quote_name
    table, column = quote(model._meta.db_table), quote(column_name)
    sql = (
        f"WITH RECURSIVE walk(val, n) AS ("  # noqa: S608 (names come from the model, quoted)
        f" SELECT MIN({column}), 1 FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > walk.val), n + 1"
        f" FROM walk WHERE walk.val IS NOT NULL AND n < %s"
        f") SELECT val FROM walk WHERE val IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


class IndexedValuesFilter(AllValuesFieldListFilter):
    """Django's all-values filter, with its choices read by ``distinct_values`` (blank values left out)."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = [v for v in distinct_values(model, field.column) if v != ""]


class RetriedFilter(admin.SimpleListFilter):
    title = "retried"
    parameter_name = "retried"

    def lookups(self, request, model_admin):
        return [("no", "Not retried"), ("yes", "Retried")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.unretried()
        if self.value() == "yes":
            return queryset.exclude(retried_as="")
        return queryset


MESSAGE_ID_HEX = frozenset("0123456789abcdef")


class FailedMessageList:
    """The list page's part of ``FailedMessageAdmin`` (a mixin): paginator, search and columns."""

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
                message_filter_url(obj.retried_as),
                Truncator(obj.retried_as).chars(9),
                attempts,
            )
        return format_html("{}{}", obj.get_reason_display(), attempts)
