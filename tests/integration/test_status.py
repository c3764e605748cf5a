"""``manage.py taskchan_status``: the table, ``--json`` and its health-check exit codes, on real Redis.

Exit 2 is "not live" (Redis, workers alive and progressing, lapsed leases),
exit 1 "alerts" (dead letters, unreadable channels); ``--liveness`` and
``--alerts`` check one question each.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command
from django.test import override_settings

import taskchan
from taskchan.models import FailedMessage
from taskchan.stores.configured import get_store
from tests.conftest import KEYS, done_records, free_port, lease_as, on_store, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def status(manage, redis_url, *args, **settings):
    """Run the command in this process: (exit status, output).

    A subprocess per call cost up to ten seconds each on a loaded machine; the
    command line itself (``manage.py`` and the process's exit status) is run
    for real by ``status_cli``, in the first test.
    """
    out = io.StringIO()
    with override_settings(**settings):
        try:
            call_command("taskchan_status", *args, stdout=out, stderr=out)
        except SystemExit as exit:
            return exit.code, out.getvalue()
    return 0, out.getvalue()


def status_cli(manage, redis_url, *args, **env):
    proc = manage(["taskchan_status", *args], redis_url=redis_url, name="status", **env)
    code = proc.wait(60)
    return code, proc.output()


def test_healthy_table_and_json_with_a_live_worker(use_redis_layer, redis_client, worker, manage):
    ids = [taskchan.send("taskchan.t.record", {"n": n}) for n in range(3)]
    proc = worker("taskchan.t.record")
    wait_for(lambda: len(done_records(redis_client)) == 3, timeout=30, message="3 jobs done")
    wait_for(lambda: redis_client.zcard(KEYS.workers), timeout=10, message="worker registered")

    code, out = status_cli(manage, use_redis_layer)
    assert code == 0, out
    assert "Channel" in out and "Queued" in out and "In flight" in out
    assert "taskchan.t.record" in out
    assert f":{proc.pid}:" in out  # the live worker, with what it serves
    assert out.rstrip().endswith("OK")

    code, out = status_cli(manage, use_redis_layer, "--json", "taskchan.t.rec*")
    assert code == 0, out
    data = json.loads(out)
    assert data["healthy"] is True and data["problems"] == []
    assert [c["channel"] for c in data["channels"]] == ["taskchan.t.record"]
    row = data["channels"][0]
    for field in ("queued", "in_flight", "oldest_lease_age", "scheduled", "failed", "lapsed",
                  "processed_last_minute", "processed_last_hour", "failed_last_minute", "failed_last_hour"):
        assert field in row
    assert row["processed_last_minute"] == len(ids)
    assert row["queued"] == 0 and row["failed"] == 0 and row["lapsed"] == 0
    [live] = [w for w in data["workers"] if w["pid"] == proc.pid]
    assert live["channels"] == ["taskchan.t.record"]


def test_queued_messages_with_no_worker_to_serve_them_are_not_live(use_redis_layer, manage):
    for n in range(4):
        taskchan.send("taskchan.t.record", {"n": n})
    taskchan.send("taskchan.t.record", {"n": 9}, delay=600)

    code, out = status(manage, use_redis_layer, "--json", "taskchan.t.record")
    assert code == 2, out
    data = json.loads(out)
    [row] = data["channels"]
    assert (row["queued"], row["in_flight"], row["scheduled"]) == (4, 0, 1)
    assert data["workers"] == [] and data["live"] is False
    assert data["liveness"] == ["taskchan.t.record: 4 message(s) queued and no live worker serves it"]
    # Only scheduled, nothing queued: nothing waits for a worker yet.
    assert status(manage, use_redis_layer, "taskchan.t.slow")[0] == 0


def test_a_failed_message_exits_1_unless_allowed(use_redis_layer, worker, manage):
    worker("taskchan.t.poison")
    taskchan.send("taskchan.t.poison", {})
    wait_for(lambda: FailedMessage.objects.filter(channel="taskchan.t.poison").exists(), timeout=30,
             message="dead letter")

    code, out = status(manage, use_redis_layer)
    assert code == 1, out
    assert "ALERT taskchan.t.poison: 1 failed message(s)" in out
    assert "--max-failed 0" in out
    # A dead letter is an alert, not a dead worker: the liveness probe does not flap on it.
    code, out = status(manage, use_redis_layer, "--liveness")
    assert code == 0, out
    assert out.rstrip().endswith("OK") and "ALERT" not in out
    assert status(manage, use_redis_layer, "--alerts")[0] == 1

    code, out = status(manage, use_redis_layer, "--json")
    assert code == 1, out
    data = json.loads(out)
    assert data["healthy"] is False
    assert {c["channel"]: c["failed"] for c in data["channels"]}["taskchan.t.poison"] == 1

    assert status(manage, use_redis_layer, "--max-failed", "1")[0] == 0
    assert status(manage, use_redis_layer, "taskchan.t.record")[0] == 0  # filtered out
    FailedMessage.objects.update(retried_at="2024-01-01T00:00Z", retried_as="f" * 32)  # retried: no longer counts
    assert status(manage, use_redis_layer)[0] == 0


def test_a_lapsed_lease_is_not_live(use_redis_layer, manage):
    store = get_store()
    taskchan.send("taskchan.t.record", {"n": 1})
    taskchan.send("taskchan.t.record", {"n": 2})

    assert len(lease_as(store, "taskchan.t.record")) == 2
    # Held, but not for longer than the timeout: healthy.  (A 30 s timeout, so
    # the subprocess's own start-up time cannot make the lease lapse.)
    code, out = status(manage, use_redis_layer, TASKCHAN_VISIBILITY_TIMEOUT=30)
    assert code == 0, out
    time.sleep(1.3)

    code, out = status(manage, use_redis_layer, TASKCHAN_VISIBILITY_TIMEOUT=1)
    assert code == 2, out
    assert "NOT LIVE taskchan.t.record: 2 lease(s) older than the visibility timeout of 1 s" in out
    assert status(manage, use_redis_layer, "--alerts", TASKCHAN_VISIBILITY_TIMEOUT=1)[0] == 0

    code, out = status(manage, use_redis_layer, "--json", TASKCHAN_VISIBILITY_TIMEOUT=1)
    [row] = [c for c in json.loads(out)["channels"] if c["channel"] == "taskchan.t.record"]
    assert (row["in_flight"], row["lapsed"]) == (2, 2)
    assert row["oldest_lease_age"] >= 1

    assert status(manage, use_redis_layer, "--max-lapsed", "2", TASKCHAN_VISIBILITY_TIMEOUT=1)[0] == 0


def test_redis_down_exits_2(manage):
    code, out = status_cli(manage, f"redis://127.0.0.1:{free_port()}/0")
    assert code == 2, out
    assert "could not read the queues" in out
    assert "Traceback" not in out


def _register(store, worker_id, **info):
    on_store(store, lambda: store.heartbeat_worker(worker_id, {"host": "elsewhere", "pid": 1, **info}, ttl=60))


def test_a_worker_that_finishes_nothing_while_work_waits_is_not_live(use_redis_layer, manage):
    store = get_store()
    now = time.time()
    for n in range(3):
        taskchan.send("taskchan.t.slow", {"n": n})
    _register(store, "stuck", channels=["taskchan.t.slow"], started=now - 1000, last_finished=now - 900)

    code, out = status(manage, use_redis_layer)
    assert code == 2, out
    assert "NOT LIVE worker stuck: no job finished for 15 min while 3 message(s) wait on its channels" in out
    assert status(manage, use_redis_layer, "--stalled-after", "1200")[0] == 0
    # Idle, not stuck: with nothing queued on its channels it may finish nothing.
    _register(store, "idle", channels=["taskchan.t.record"], started=now - 1000, last_finished=None)
    code, out = status(manage, use_redis_layer, "--stalled-after", "1200", "--json")
    assert code == 0, out
    assert {w["id"]: w["last_finished"] for w in json.loads(out)["workers"]}["stuck"] == pytest.approx(now - 900)


def test_host_liveness_asks_for_a_live_worker_on_that_host(use_redis_layer, redis_client, worker, manage):
    proc = worker("taskchan.t.record")
    wait_for(lambda: redis_client.zcard(KEYS.workers), timeout=30, message="worker registered")
    host = json.loads(redis_client.get(KEYS.worker(redis_client.zrange(KEYS.workers, 0, -1)[0])))["host"]

    assert status(manage, use_redis_layer, "--liveness", "--host", host)[0] == 0
    code, out = status(manage, use_redis_layer, "--liveness", "--host", "no-such-host")
    assert code == 2, out
    assert "NOT LIVE no live worker on host 'no-such-host'" in out
    assert proc.running


def test_a_channel_a_worker_cannot_read_is_an_alert(use_redis_layer, manage):
    _register(get_store(), "w1", channels=["taskchan.t.retry"], started=time.time(),
              unreadable={"taskchan.t.retry": "the Redis key 'taskchan:q:taskchan.t.retry' holds a string, not a stream"})

    code, out = status(manage, use_redis_layer)
    assert code == 1, out
    assert "ALERT taskchan.t.retry: cannot be read: the Redis key 'taskchan:q:taskchan.t.retry' holds a string" in out
    assert status(manage, use_redis_layer, "--liveness")[0] == 0
