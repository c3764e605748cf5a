"""Bulk retry on the real Redis: 10,000 rows in one pipeline, seconds not minutes,
and what it writes is what send() writes (a real worker runs it)."""

from __future__ import annotations

import time

import pytest
import redis.connection
from django.contrib.admin.models import CHANGE, LogEntry

from taskchan.envelope import decode
from taskchan.models import FailedMessage
from tests.admin.conftest import CHANGELIST, GROUPS, bulk_failed
from tests.conftest import KEYS, done_records

pytestmark = pytest.mark.django_db


class RoundTrips:
    """Counts writes to Redis sockets (one per command, one per pipeline), leaving
    out the handshake redis-py sends on a new connection (CLIENT SETINFO)."""

    def __init__(self, monkeypatch):
        self.commands: list[bytes] = []
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            first = command[0] if isinstance(command, list) else command
            head = bytes(first[:60])
            if b"SETINFO" not in head:
                self.commands.append(head)
            return original(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)

    @property
    def count(self) -> int:
        return len(self.commands)


def test_bulk_retry_of_10000_rows_is_one_pipeline(client_with, use_redis_layer, redis_client, monkeypatch):
    bulk_failed(10_000, channel="taskchan.adm.bulk", consumer="")
    bulk_failed(5, channel="taskchan.adm.other")
    client = client_with("view", "retry")
    trips = RoundTrips(monkeypatch)

    started = time.perf_counter()
    response = client.post(
        CHANGELIST + "?channel=taskchan.adm.bulk",
        {"action": "retry_selected", "select_across": "1", "index": 0, "_selected_action": ["0"]},
    )
    elapsed = time.perf_counter() - started
    print(f"\nbulk retry of 10,000 rows: {elapsed:.2f} s, {trips.count} Redis round trips")

    assert response.status_code == 302
    assert trips.count <= 3, trips.commands  # SCRIPT EXISTS, SCRIPT LOAD (first time), the pipeline
    assert sum(b"EVALSHA" in c for c in trips.commands) == 1  # all 10,000 in one write
    assert elapsed < 30  # seconds, not minutes; typically ~1-2 s
    assert redis_client.xlen(KEYS.stream("taskchan.adm.bulk")) == 10_000
    assert redis_client.sismember("taskchan:channels", "taskchan.adm.bulk")
    stored = {}
    for _entry_id, fields in redis_client.xrange(KEYS.stream("taskchan.adm.bulk")):
        envelope = decode(fields["m"], "taskchan.adm.bulk")
        stored[envelope.id] = envelope.content
    rows = FailedMessage.objects.filter(channel="taskchan.adm.bulk")
    assert {r.retried_as: r.content for r in rows} == stored
    assert not rows.filter(retried_at=None).exists()
    assert not FailedMessage.objects.filter(channel="taskchan.adm.other").exclude(retried_as="").exists()
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 10_000
    follow = client.get(response["Location"])
    assert "10000 failed messages were re-sent on their channels." in follow.content.decode()


def test_a_worker_runs_what_bulk_retry_sent(client_with, use_redis_layer, redis_client, worker):
    bulk_failed(50, channel="taskchan.t.record", consumer="tests.jobs.record")
    client = client_with("view", "retry")
    upto = FailedMessage.objects.order_by("-pk").values_list("pk", flat=True).first()
    response = client.post(f"{GROUPS}retry/?channel=taskchan.t.record&error_type=builtins.ValueError&upto={upto}")
    assert response.status_code == 302

    proc = worker("taskchan.t.record", args=["--burst"])
    assert proc.wait(60) == 0, proc.output()

    new_ids = set(FailedMessage.objects.values_list("retried_as", flat=True))
    done = done_records(redis_client)
    assert {message_id for message_id, _attempt, _pid in done} == new_ids
    assert len(done) == 50 and all(attempt == 1 for _id, attempt, _pid in done)


def test_redis_down_marks_nothing(client_with, settings, db):
    from tests.conftest import free_port, layer_settings

    settings.CHANNEL_LAYERS = layer_settings(f"redis://127.0.0.1:{free_port()}/0")
    bulk_failed(3, channel="taskchan.t.record")
    client = client_with("view", "retry")
    response = client.post(
        CHANGELIST, {"action": "retry_selected", "select_across": "1", "index": 0, "_selected_action": ["0"]}
    )
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Nothing was re-sent:" in page
    assert not FailedMessage.objects.exclude(retried_as="").exists()
    assert not LogEntry.objects.exists()
