"""Every admin page and action handles every value a row or Redis can hold, and
group actions need the view permission as well as their own.

Extreme values: a schedule past year 9999 (a delay of 1e12 s, accepted before
the bounds) and an infinite one, worker registry entries of any JSON (or
none), text with NUL and lone surrogates, JSON nested to the limit, error
times past year 9999, numbers at the columns' limits.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest
import redis as redis_lib

from taskchan.envelope import MAX_CONTENT_DEPTH
from taskchan.models import FailedMessage
from tests.admin.conftest import (
    CHANGELIST,
    GROUPS,
    OVERVIEW,
    OVERVIEW_DATA,
    detail_url,
    make_failed,
)
from tests.conftest import KEYS

pytestmark = pytest.mark.django_db


def nested(depth: int) -> dict:
    value: dict = {"leaf": True}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# -- the overview ---------------------------------------------------------------


def test_the_overview_shows_extreme_schedules_and_garbage_registry_entries(client_with, use_redis_layer, redis_url):
    client = redis_lib.Redis.from_url(redis_url)  # bytes: garbage as it is
    scheduled = KEYS.scheduled("taskchan.t.slow")
    client.zadd(scheduled, {b"far": 1e15 * 1000, b"never": float("inf")})  # year 33715, and no year at all
    client.sadd(KEYS.channels, "taskchan.t.slow", b"\xff\xfe not a channel")
    now_ms = int(time.time() * 1000)
    entries = {
        "w-odd": json.dumps({"started": "yesterday", "last_finished": 1e20, "channels": "taskchan.t.slow",
                             "pid": "x", "unreadable": ["no"], "host": "h\udcff".encode("utf-8", "surrogateescape").decode("latin-1")}),
        "w-list": json.dumps([1, 2]),
        "w-broken": b"{not json \xff",
        "w-ok": json.dumps({"started": time.time() - 5, "last_finished": time.time() - 1, "pid": 7,
                            "channels": ["taskchan.t.slow"], "unreadable": {"taskchan.t.slow": "a string key"}}),
    }
    for worker_id, info in entries.items():
        client.zadd(KEYS.workers, {worker_id: now_ms})
        client.set(KEYS.worker(worker_id), info)

    admin = client_with("overview", "view")
    page = admin.get(OVERVIEW)
    data = admin.get(OVERVIEW_DATA)

    assert page.status_code == 200 and data.status_code == 200
    body = data.json()
    [slow] = [row for row in body["channels"] if row["channel"] == "taskchan.t.slow"]
    assert slow["scheduled"] == 2
    assert {w["id"] for w in body["workers"]} == {"w-odd", "w-ok"}  # entries that are not objects are left out
    [ok] = [w for w in body["workers"] if w["id"] == "w-ok"]
    assert "taskchan.t.slow (cannot be read)" in [cell["text"] for cell in ok["cells"]]
    assert ok["cells"][6]["text"].endswith(" s ago") and ok["cells"][6]["title"]  # last finished
    assert "not a channel" not in page.content.decode()
    client.close()


# -- edit and retry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"a": "\\ud800"}', "lone surrogate"),
        ("[" * 100_000 + "]" * 100_000, "Nested too deeply"),
        (json.dumps(nested(MAX_CONTENT_DEPTH + 1)), "nested deeper than 100"),
        ('{"n": 1e999}', "not JSON-serialisable"),
        ('{"\\u0000": "\\udcff"}', "lone surrogate"),
    ],
    ids=["surrogate", "deep-100000", "depth-101", "infinity", "nul-and-byte"],
)
def test_edit_and_retry_refuses_what_send_refuses_with_a_form_error(client_with, use_memory_layer, text, error):
    row = make_failed()
    admin = client_with("view", "change", "retry")

    response = admin.post(f"{CHANGELIST}{row.pk}/edit-retry/", {"content": text})

    assert response.status_code == 200
    assert error in response.content.decode()
    row.refresh_from_db()
    assert row.retried_as == "" and row.original_content is None


EXTREME_ROWS = {
    "surrogate-content": {"content": {"a": "\ud800", "\udcff": ["\x00"]}},
    "deep-content": {"content": nested(MAX_CONTENT_DEPTH)},
    "times-past-9999": {"errors": [{"type": "x", "message": "m", "at": 1e20, "attempt": 2**40}, "not a dict", 5]},
    "errors-not-a-list": {"errors": {"type": "x"}, "last_error": "\x00 nul", "traceback": "\x00"},
    "largest-numbers": {"attempts": 2**31 - 1, "max_attempts": 2**31 - 1},
    "malformed-raw": {
        "message_id": "malformed:taskchan.t.poison:1-0", "content": None, "reason": "malformed",
        "raw": "\\xff\\xfe garbage \x00", "errors": [], "last_error_type": "taskchan.MalformedMessage",
    },
}


@pytest.mark.parametrize("kind", list(EXTREME_ROWS))
def test_every_page_and_action_handles_a_row_with_extreme_values(client_with, use_memory_layer, kind):
    row = make_failed(**EXTREME_ROWS[kind])
    admin = client_with("view", "change", "retry", "delete")

    for url in (CHANGELIST, detail_url(row), GROUPS, f"{CHANGELIST}{row.pk}/edit-retry/", f"{CHANGELIST}?q=x"):
        response = admin.get(url)
        assert response.status_code == 200, (url, response.status_code)
        response.content.decode("utf-8")
    retried = admin.post(f"{CHANGELIST}{row.pk}/retry/")
    assert retried.status_code == 302
    bulk = admin.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [row.pk]})
    assert bulk.status_code == 302
    row.refresh_from_db()
    if kind in ("surrogate-content", "malformed-raw"):
        assert row.retried_as == ""  # refused as send() refuses it, with a message, not a 500


# -- group actions: the permission matrix ----------------------------------------


PERMISSIONS = ("view", "retry", "delete")


@pytest.mark.parametrize(
    "perms",
    [combo for n in range(len(PERMISSIONS) + 1) for combo in itertools.combinations(PERMISSIONS, n)],
    ids=lambda combo: "+".join(combo) or "none",
)
def test_group_actions_need_view_and_their_own_permission(client_with, use_memory_layer, perms):
    rows = [make_failed(n) for n in range(3)]
    query = f"?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={rows[-1].pk}"
    admin = client_with(*perms)

    retry = admin.post(f"{GROUPS}retry/{query}")
    discard = admin.post(f"{GROUPS}discard/{query}", {"post": "yes"})

    may_retry = {"view", "retry"} <= set(perms)
    may_discard = {"view", "delete"} <= set(perms)
    assert retry.status_code == (302 if may_retry else 403)
    assert discard.status_code == (302 if may_discard else 403)
    remaining = FailedMessage.objects.filter(pk__in=[r.pk for r in rows])
    assert remaining.count() == (0 if may_discard else 3)
    if not may_discard:
        assert all(bool(r.retried_as) == may_retry for r in remaining)
