"""Changelist pieces that keep the failed-message list fast on a big table.

A dead-letter table can hold millions of rows after an outage.  Django's
changelist would count them all (``COUNT(*)`` twice: the filtered and the full
total) and run ``SELECT DISTINCT`` over whole columns for each value filter;
both grow with the table.  Here every query the list page runs is bounded:

* ``LimitedCountPaginator`` counts at most a few pages past the one shown,
  inside a ``LIMIT``ed subquery, and says "more than N" beyond that;
* ``IndexedValuesFilter`` lists a column's distinct values by walking its
  index (a recursive "loose index scan": one index probe per distinct value);
* the page itself is ``ORDER BY last_failed_at DESC, id DESC LIMIT 100`` on
  the ``last_failed_at`` index.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.filters import AllValuesFieldListFilter
from django.core.paginator import Paginator
from django.db import connections, router
from django.utils.functional import cached_property

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
