"""Prometheus metrics: ``/metrics`` in the web process and ``runworker --metrics-port``."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import taskchan
from taskchan.models import FailedMessage
from taskchan.stores.configured import get_store
from tests.conftest import accepts, done_records, free_port, lease_as, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def samples(text: str) -> dict[tuple[str, str], float]:
    """{(sample name, channel label): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, sample.labels.get("channel", ""))] = sample.value
    return out


def scrape_view(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def test_metrics_view_counts_sends_and_reads_queue_gauges(use_redis_layer, client):
    before = scrape_view(client).get(("taskchan_messages_sent_total", "taskchan.t.slow"), 0)
    for n in range(3):
        taskchan.send("taskchan.t.slow", {"n": n})
    taskchan.send("taskchan.t.slow", {"n": 9}, delay=600)

    after = scrape_view(client)
    assert after[("taskchan_messages_sent_total", "taskchan.t.slow")] == before + 4
    assert after[("taskchan_store_up", "")] == 1
    assert after[("taskchan_queue_depth", "taskchan.t.slow")] == 3
    assert after[("taskchan_in_flight", "taskchan.t.slow")] == 0
    assert after[("taskchan_scheduled", "taskchan.t.slow")] == 1
    assert after[("taskchan_queue_depth", "taskchan.t.record")] == 0  # registered, nothing sent


def test_metrics_view_reports_a_store_that_is_down(settings, client):
    from tests.conftest import layer_settings

    settings.CHANNEL_LAYERS = layer_settings(f"redis://127.0.0.1:{free_port()}/0")
    found = scrape_view(client)
    assert found[("taskchan_store_up", "")] == 0
    assert not any(name == "taskchan_queue_depth" for name, _ in found)


def test_runworker_metrics_port_serves_the_workers_counters(use_redis_layer, redis_client, worker):
    port = free_port()
    for n in range(5):
        taskchan.send("taskchan.t.record", {"n": n})
    taskchan.send("taskchan.t.flaky", {"succeed_on": 2})
    taskchan.send("taskchan.t.poison", {})
    proc = worker("taskchan.t.record", "taskchan.t.flaky", "taskchan.t.poison", args=["--metrics-port", str(port)])

    wait_for(lambda: len(done_records(redis_client)) == 6, timeout=30, message="record and flaky jobs done")
    wait_for(lambda: FailedMessage.objects.filter(channel="taskchan.t.poison").exists(), timeout=30,
             message="poison dead-lettered")

    def scrape():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return samples(response.read().decode())
        except OSError:
            assert proc.running, proc.output()
            return None

    def settled():
        found = scrape()
        return found if found and found.get(("taskchan_messages_dead_lettered_total", "taskchan.t.poison")) else None

    found = wait_for(settled, timeout=15, message="worker metrics")
    assert found[("taskchan_messages_processed_total", "taskchan.t.record")] == 5
    assert found[("taskchan_messages_processed_total", "taskchan.t.flaky")] == 1
    assert found[("taskchan_messages_retried_total", "taskchan.t.flaky")] == 1
    assert found[("taskchan_messages_retried_total", "taskchan.t.poison")] == 2
    assert found[("taskchan_messages_dead_lettered_total", "taskchan.t.poison")] == 1
    assert found[("taskchan_messages_redelivered_total", "taskchan.t.record")] == 0
    # one duration and one send-to-start observation per attempt
    assert found[("taskchan_job_duration_seconds_count", "taskchan.t.record")] == 5
    assert found[("taskchan_job_duration_seconds_count", "taskchan.t.flaky")] == 2
    assert found[("taskchan_job_duration_seconds_count", "taskchan.t.poison")] == 3
    assert found[("taskchan_job_start_delay_seconds_count", "taskchan.t.record")] == 5
    assert found[("taskchan_job_start_delay_seconds_sum", "taskchan.t.record")] > 0
    # sent in this test process, not the worker
    assert found.get(("taskchan_messages_sent_total", "taskchan.t.record"), 0) == 0
    # gauges from the store, at scrape time
    assert found[("taskchan_store_up", "")] == 1
    assert found[("taskchan_queue_depth", "taskchan.t.record")] == 0
    assert found[("taskchan_in_flight", "taskchan.t.record")] == 0


def test_redelivered_counts_reclaimed_leases(use_redis_layer, redis_client, worker):
    # A "dead worker" (a consumer name that never renews) leases the message;
    # taskchan.fw.crash_if has a 1 s visibility timeout, so a live worker reclaims it.
    channel = "taskchan.fw.crash_if"
    store = get_store()
    message_id = taskchan.send(channel, {"crash": False})

    assert len(lease_as(store, channel)) == 1
    port = free_port()
    proc = worker(channel, args=["--metrics-port", str(port)])
    wait_for(lambda: [r[0] for r in done_records(redis_client)] == [message_id], timeout=20, message="rerun")

    def scrape():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                found = samples(response.read().decode())
        except OSError:
            assert proc.running, proc.output()
            return None
        return found if found.get(("taskchan_messages_processed_total", channel)) else None

    found = wait_for(scrape, timeout=10, message="worker metrics")
    assert found[("taskchan_messages_redelivered_total", channel)] == 1
    assert found[("taskchan_messages_processed_total", channel)] == 1


def test_runworker_metrics_listen_on_loopback_unless_told_otherwise(use_redis_layer, worker):
    port, other = free_port(), free_port()
    local = worker("taskchan.t.record", args=["--metrics-port", str(port)])
    wide = worker("taskchan.t.record", args=["--metrics-port", str(other), "--metrics-addr", "0.0.0.0"])  # noqa: S104

    wait_for(lambda: accepts(port) and accepts(other), timeout=30, message="both metrics servers")
    # 127.0.0.2 is loopback too, but not the address 127.0.0.1: a server bound to
    # every interface answers there, one bound to 127.0.0.1 does not.
    assert not accepts_on("127.0.0.2", port)
    assert accepts_on("127.0.0.2", other)
    assert local.running and wide.running


def accepts_on(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False
