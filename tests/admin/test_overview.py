"""The queue overview: every known channel's queue, leases, schedule, failures
and rates from the store, the live workers, and the JSON the page refreshes from."""

from __future__ import annotations

import os
import re
import time

import pytest
from django.utils import timezone

import taskchan
from taskchan import registry
from taskchan.stores.configured import get_store
from taskchan.text import duration
from tests.admin.conftest import OVERVIEW, OVERVIEW_DATA, make_failed
from tests.conftest import free_port, layer_settings, lease_as, on_store

pytestmark = pytest.mark.django_db


def _run(coro_factory):
    store = get_store()
    return on_store(store, lambda: coro_factory(store))


def _by_channel(data) -> dict:
    return {row["channel"]: row for row in data["channels"]}


def test_overview_reports_queues_leases_schedule_failures_rates_and_workers(client_with, use_redis_layer, worker):
    # 3 processed by a real worker, then 2 queued, 1 leased, 1 scheduled, 2 dead letters
    for n in range(3):
        taskchan.send("taskchan.t.record", {"n": n})
    burst = worker("taskchan.t.record", args=["--burst"])
    assert burst.wait(60) == 0, burst.output()
    for n in range(3):
        taskchan.send("taskchan.t.slow", {"n": n})
    taskchan.send("taskchan.t.slow", {"later": True}, delay=3600)
    leased = lease_as(get_store(), "taskchan.t.slow", "overview-test", 1)
    assert len(leased) == 1
    make_failed(1, channel="taskchan.t.slow")
    make_failed(2, channel="taskchan.t.slow")
    make_failed(3, channel="taskchan.t.slow", retried_as="e" * 32, retried_at=timezone.now())  # dealt with
    _run(lambda store: store.heartbeat_worker(
        "host-1-42", {"pid": 42, "host": "host-1", "channels": ["taskchan.t.slow"], "concurrency": 4,
                      "started": time.time() - 120, "processed": 7, "failed": 1}, ttl=30))

    client = client_with("overview", "view")
    response = client.get(OVERVIEW_DATA)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert data["error"] == ""
    channels = _by_channel(data)
    assert set(registry.all_consumers()) <= set(channels)  # every registered channel, sent to or not

    record = channels["taskchan.t.record"]
    assert (record["queued"], record["in_flight"], record["scheduled"], record["failed"]) == (0, 0, 0, 0)
    assert record["processed_last_minute"] == 3 and record["processed_last_hour"] == 3
    assert record["consumer"] == "tests.jobs.record"

    slow = channels["taskchan.t.slow"]
    assert (slow["queued"], slow["in_flight"], slow["scheduled"], slow["failed"]) == (2, 1, 1, 2)
    assert slow["oldest_lease_age"] is not None and slow["oldest_lease_age"] < 60
    assert 3500 < slow["next_due"] - time.time() <= 3600
    texts = [cell["text"] for cell in slow["cells"]]
    assert texts[:5] == ["taskchan.t.slow", "2", texts[2], texts[3], "2"]
    assert slow["cells"][0]["detail"] == "tests.jobs.slow"
    assert texts[2].startswith("1 (oldest ") and texts[3].startswith("1 (next in 59 min")
    assert slow["cells"][4]["href"] == "/admin/taskchan/failedmessage/?channel=taskchan.t.slow&retried=no"

    [w] = data["workers"]
    assert (w["id"], w["pid"], w["host"], w["channels"]) == ("host-1-42", 42, "host-1", ["taskchan.t.slow"])
    assert [c["text"] for c in w["cells"]][3:6] == ["taskchan.t.slow", "4", "2 min ago"]

    page = client.get(OVERVIEW).content.decode()
    assert '<tr data-key="taskchan.t.slow" data-idle="0">' in page
    assert '<tr data-key="taskchan.t.crash" data-idle="1">' in page
    assert "1 (next in 59 min" in page and "host-1-42" in page
    assert 'data-url="/admin/taskchan/queueoverview/data/"' in page
    # The page's one script is taskchan's own static file, served from this site (nothing external).
    assert re.findall(r'<script[^>]*src="([^"]*)"', page.split('<div id="content-main"')[1]) == [
        "/static/taskchan/overview.js"
    ]


def test_a_running_worker_is_listed_with_what_it_serves(client_with, use_redis_layer, worker):
    from tests.conftest import wait_for

    proc = worker("taskchan.t.record", "taskchan.t.flaky")
    client = client_with("overview")

    def listed():
        workers = client.get(OVERVIEW_DATA).json()["workers"]
        return [w for w in workers if w["pid"] == proc.pid]

    [w] = wait_for(listed, timeout=30, message="the worker in the overview")
    assert sorted(w["channels"]) == ["taskchan.t.flaky", "taskchan.t.record"]
    assert w["host"] == os.uname().nodename


def test_overview_on_the_memory_layer(client_with, use_memory_layer):
    taskchan.send("taskchan.t.record", {"n": 1})
    make_failed(channel="taskchan.gone")  # a channel only the dead letters remember
    data = client_with("overview").get(OVERVIEW_DATA).json()
    channels = _by_channel(data)
    assert channels["taskchan.t.record"]["queued"] == 1
    assert channels["taskchan.gone"]["failed"] == 1
    assert data["workers"] == []


def test_overview_says_when_redis_does_not_answer(client_with, settings):
    settings.CHANNEL_LAYERS = layer_settings(f"redis://127.0.0.1:{free_port()}/0")
    make_failed(channel="taskchan.t.poison")
    client = client_with("overview")
    data = client.get(OVERVIEW_DATA).json()
    assert data["error"].startswith("Could not read the queues from <RedisStore")
    poison = _by_channel(data)["taskchan.t.poison"]
    assert poison["failed"] == 1  # from the database
    # What only Redis knows is unknown, not zero.
    assert poison["queued"] is None and poison["processed_last_hour"] is None
    assert [c["text"] for c in poison["cells"]][1:] == ["?", "?", "?", "1", "?", "?", "?", "?", "?"]
    page = client.get(OVERVIEW)
    assert page.status_code == 200
    assert "Could not read the queues" in page.content.decode()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"), (5400, "1 h 30 min"), (90000, "1 d"), (-5, "0 s")],
)
def test_durations_read_short(seconds, text):
    assert duration(seconds) == text


def test_dead_letters_and_failed_attempts_have_distinct_names(client_with, use_memory_layer):
    """A failed attempt that is retried is not a dead letter: the page never calls both "Failed"."""
    page = client_with("overview").get(OVERVIEW).content.decode()
    headers = re.findall(r"<th(?: class=\"num\")?>([^<]+)</th>", page)

    assert headers[:10] == [
        "Channel / consumer", "Queued", "In flight", "Scheduled", "Dead letters",
        "Processed (1 min)", "Processed (1 h)", "Dead-lettered (1 min)", "Dead-lettered (1 h)", "Flow control",
    ]
    assert headers[10:] == [
        "Worker", "Host", "PID", "Serves", "Concurrency", "Started", "Last finished", "Processed",
        "Failed attempts",
    ]
    assert not any(header.startswith("Failed (") or header == "Failed" for header in headers)
