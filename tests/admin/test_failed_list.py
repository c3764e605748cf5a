"""The failed-message list and detail page: columns, filters, search, order,
escaping, and a list whose queries never read the whole table."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskchan.models import FailedMessage
from tests.admin.conftest import CHANGELIST, GROUPS, bulk_failed, detail_url, make_failed

pytestmark = pytest.mark.django_db

XSS = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)>"


def _ids_on_page(html: str) -> list[str]:
    return re.findall(r'<span title="([0-9a-f]{32}|malformed:[^"]+)">', html)


def test_list_shows_the_columns_newest_first(client_with, use_memory_layer):
    old = make_failed(5, channel="taskchan.t.old", consumer="tests.jobs.old", attempts=4)
    new = make_failed(0, channel="taskchan.t.new", last_error_type="builtins.KeyError", last_error="'photo_id'")
    page = client_with("view").get(CHANGELIST).content.decode()
    assert _ids_on_page(page) == [new.message_id, old.message_id]
    for text in ("taskchan.t.old", "tests.jobs.old", "KeyError: &#x27;photo_id&#x27;", "ValueError: poison message always fails"):
        assert text in page
    assert '<td class="field-status">attempts exhausted<span class="taskchan-quiet">4 attempts</span></td>' in page
    assert re.search(r'<td class="field-last_failed"><time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">\d+ s ago</time></td>', page)
    assert "2 failed messages" in page


def test_long_errors_are_shortened_in_the_list(client_with, use_memory_layer):
    make_failed(last_error="x" * 500)
    page = client_with("view").get(CHANGELIST).content.decode()
    assert ">ValueError: " + "x" * 47 + "…</span>" in page  # 60 characters shown, the rest on hover


def test_filters_by_channel_consumer_reason_error_type_and_retried(client_with, use_memory_layer):
    a = make_failed(1, channel="taskchan.a", consumer="tests.jobs.a")
    b = make_failed(2, channel="taskchan.b", consumer="tests.jobs.b", reason="rejected", last_error_type="taskchan.Reject")
    c = make_failed(3, channel="taskchan.b", consumer="tests.jobs.b", retried_as="f" * 32)
    client = client_with("view")
    page = client.get(CHANGELIST).content.decode()
    for choice in ("?channel=taskchan.a", "?channel=taskchan.b", "?consumer=tests.jobs.a", "?reason__exact=rejected",
                   "?last_error_type=taskchan.Reject", "?retried=yes", "?retried=no"):
        assert f'href="{choice}"' in page, choice
    cases = {
        "channel=taskchan.b": {b, c},
        "consumer=tests.jobs.a": {a},
        "reason__exact=rejected": {b},
        "last_error_type=builtins.ValueError": {a, c},
        "retried=yes": {c},
        "retried=no": {a, b},
        "channel=taskchan.b&retried=no": {b},
        f"message_id={c.retried_as}": set(),
        f"message_id={a.message_id}": {a},
    }
    for query, expected in cases.items():
        html = client.get(f"{CHANGELIST}?{query}").content.decode()
        assert set(_ids_on_page(html)) == {r.message_id for r in expected}, query


def test_celery_runs_and_reply_channels_are_shown_and_filterable(client_with, use_memory_layer):
    plain = make_failed(1)
    celery = make_failed(2, ran_under_celery=True, reply_channel="specific.abc!def")
    client = client_with("view")

    only = client.get(f"{CHANGELIST}?ran_under_celery__exact=1").content.decode()
    assert set(_ids_on_page(only)) == {celery.message_id}
    page = client.get(detail_url(celery)).content.decode()
    assert "Ran under celery" in page and "specific.abc!def" in page
    assert "Ran under celery" not in client.get(detail_url(plain)).content.decode()


def test_search_by_message_id_prefix_and_error_text(client_with, use_memory_layer):
    a = make_failed(1, last_error="connection refused by db-primary")
    b = make_failed(2, last_error="timeout talking to s3")
    m = make_failed(3, message_id="malformed:taskchan.t.poison:1-0", content=None, raw="{oops")
    client = client_with("view")
    cases = {
        a.message_id: {a},
        a.message_id[:10]: {a},
        a.message_id.upper(): {a},
        "db-primary": {a},
        "S3": {b},
        m.message_id: {m},
        "nothing-like-this": set(),
    }
    for term, expected in cases.items():
        html = client.get(CHANGELIST, {"q": term}).content.decode()
        assert set(_ids_on_page(html)) == {r.message_id for r in expected}, term


def test_detail_shows_content_attempts_and_traceback(client_with, use_memory_layer):
    row = make_failed(content={"photo_id": 7, "sizes": [64, 128]})
    page = client_with("view").get(detail_url(row)).content.decode()
    # indented JSON (PostgreSQL's jsonb may store the keys in another order)
    assert "\n  &quot;photo_id&quot;: 7" in page
    assert "\n  &quot;sizes&quot;: [\n    64,\n    128\n  ]" in page
    for attempt in (1, 2, 3):
        assert f"poison message always fails ({attempt})" in page
    assert page.count("<td>builtins.ValueError</td>") == 3
    assert "Traceback (most recent call last):" in page
    assert "3 of 3" in page


def test_everything_from_a_payload_is_escaped(client_with, use_memory_layer):
    row = make_failed(
        channel="taskchan.t.poison",
        content={"html": XSS},
        last_error=XSS,
        last_error_type="<b>Bold</b>Error",
        errors=[{"type": "<i>T</i>", "message": XSS, "at": 1700000000.0, "attempt": 1}, "<u>odd entry</u>"],
        traceback=XSS,
        raw=XSS,
        original_content={"before": XSS},
    )
    client = client_with("view", "change", "retry", "delete")
    for url in (CHANGELIST, detail_url(row), GROUPS, f"{CHANGELIST}{row.pk}/edit-retry/"):
        page = client.get(url).content.decode()
        assert "<script>window.__pwned" not in page, url
        assert "<img src=x" not in page, url
        assert "<b>Bold</b>" not in page and "<i>T</i>" not in page and "<u>odd" not in page, url
    page = client.get(detail_url(row)).content.decode()
    assert page.count("&lt;script&gt;window.__pwned = 1&lt;/script&gt;") >= 5  # content, original, error, attempt, traceback, raw
    assert "&lt;u&gt;odd entry&lt;/u&gt;" in page


def test_detail_of_a_malformed_message_shows_its_raw_text(client_with, use_memory_layer):
    row = make_failed(message_id="malformed:taskchan.t.poison:5-0", content=None, raw='{"not": "an envelope"}',
                      reason="malformed", errors=[], last_error_type="taskchan.MalformedMessage")
    page = client_with("view").get(detail_url(row)).content.decode()
    assert "the message could not be read" in page
    assert "{&quot;not&quot;: &quot;an envelope&quot;}" in page


def _plans(queries) -> list[tuple[str, str]]:
    """(SQL, SQLite's query plan) of every SELECT on the failed-message table."""
    plans = []
    with connection.cursor() as cursor:
        for query in queries:
            sql = query["sql"]
            if sql.upper().startswith("SELECT") and "taskchan_failedmessage" in sql:
                cursor.execute("EXPLAIN QUERY PLAN " + sql)
                plans.append((sql, " | ".join(str(row[-1]) for row in cursor.fetchall())))
    return plans


@pytest.mark.parametrize("url", ["", "?channel=taskchan.big", "?p=2", "?reason__exact=exhausted"])
def test_the_list_never_reads_the_whole_table(client_with, use_memory_layer, url):
    """How long a page takes must not grow with the table: the count stops a few pages
    ahead, the page is an index range in the list's order, value filters walk their
    index. Checked on the query plans (times belong in benchmarks, not tests)."""
    if connection.vendor != "sqlite":
        pytest.fail("the query plans asserted here are SQLite's")
    client = client_with("view", "retry", "delete")
    bulk_failed(3_000, channel="taskchan.big")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST + url)
    assert response.status_code == 200
    page = response.content.decode()
    if not url.startswith("?reason"):  # the reason filter is a choice, not a counted value list
        assert re.search(r"more than 1[12]00 failed messages", page)  # counted a few pages ahead
    assert len(_ids_on_page(page)) == 100

    plans = _plans(queries.captured_queries)
    assert plans
    for sql, plan in plans:
        if "COUNT(" in sql.upper():
            assert "LIMIT" in sql.upper(), sql  # a bounded count, never the whole table
        assert "SELECT DISTINCT" not in sql.upper(), sql
        # Sorting every row in a temp B-tree reads the whole table; so does a bare
        # SCAN, unless a LIMIT stops it after that many rows.
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (sql, plan)
        if "LIMIT" not in sql.upper():
            assert not re.search(r"SCAN taskchan_failedmessage(?! USING)", plan), (sql, plan)


def test_pages_go_past_the_counted_ones(client_with, use_memory_layer):
    bulk_failed(30, channel="taskchan.x")
    client = client_with("view")
    from taskchan.admin import FailedMessageAdmin

    FailedMessageAdmin.list_per_page, saved = 2, FailedMessageAdmin.list_per_page
    try:
        first = client.get(CHANGELIST).content.decode()
        assert "more than 22 failed messages" in first
        last = client.get(CHANGELIST + "?p=15").content.decode()
        assert "30 failed messages" in last and "more than" not in last
        newest = FailedMessage.objects.order_by("-last_failed_at", "-id")
        assert _ids_on_page(last) == [r.message_id for r in newest[28:30]]
    finally:
        FailedMessageAdmin.list_per_page = saved
