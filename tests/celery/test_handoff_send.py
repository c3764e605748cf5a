"""The producer side of the Celery hand-off, with no Celery worker running.

What ``send()`` puts in the Celery queue (and nothing in taskchan's stream),
idempotency keys, delays, bad input refused at the door, a broker that is down,
``send_on_commit``, the in-memory layer's fallback, and Celery kept out of
processes that do not hand off.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

import taskchan
from taskchan import handoff, outbox, resend
from taskchan.envelope import decode
from taskchan.exceptions import StoreUnavailable
from taskchan.handoff import celery_side, publish
from taskchan.models import OutboxMessage
from taskchan.stores.configured import get_store
from tests.celery.conftest import queued_tasks
from tests.conftest import ROOT, free_port, layer_settings, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

CH = "taskchan.cel.record"


def stream_len(client, channel=CH) -> int:
    return client.xlen(get_store().keys.stream(channel))


def test_send_publishes_one_task_and_stores_nothing_in_taskchan(celery_settings, redis_client):
    message_id = taskchan.send(CH, {"n": 1})
    [task] = queued_tasks(redis_client)
    assert task["task"] == handoff.TASK_NAME
    assert task["id"] == message_id  # the Celery task id is the taskchan message id
    channel, raw = task["args"]
    assert channel == CH
    envelope = decode(raw, CH)
    assert (envelope.id, envelope.content, envelope.attempts_before) == (message_id, {"n": 1}, 0)
    assert stream_len(redis_client) == 0
    assert handoff.celery_configured()


def test_plain_channels_are_untouched(celery_settings, redis_client):
    taskchan.send("taskchan.t.record", {"n": 1})
    assert queued_tasks(redis_client) == []
    assert stream_len(redis_client, "taskchan.t.record") == 1


async def test_asend_and_layer_send_hand_off_too(celery_settings, redis_client):
    from channels.layers import get_channel_layer

    first = await taskchan.asend(CH, {"via": "asend"})
    await get_channel_layer().send(CH, {"via": "layer"})
    tasks = queued_tasks(redis_client)
    assert len(tasks) == 2
    assert first in {t["id"] for t in tasks}
    assert {decode(t["args"][1], CH).content["via"] for t in tasks} == {"asend", "layer"}
    assert stream_len(redis_client) == 0


def test_delay_becomes_a_countdown(celery_settings, redis_client):
    before = time.time()
    taskchan.send(CH, {}, delay=30)
    [task] = queued_tasks(redis_client)
    from datetime import datetime

    eta = datetime.fromisoformat(task["eta"]).timestamp()
    assert before + 29 < eta < time.time() + 31


def test_idempotency_key_publishes_once(celery_settings, redis_client):
    from taskchan.conf import settings

    first = taskchan.send(CH, {"n": 1}, idempotency_key="order-7")
    again = taskchan.send(CH, {"n": 2}, idempotency_key="order-7")
    other = taskchan.send(CH, {"n": 3}, idempotency_key="order-8")
    assert again == first != other
    assert sorted(t["id"] for t in queued_tasks(redis_client)) == sorted([first, other])
    key = get_store().keys.idempotency(CH, "order-7")  # the store's own key layout
    assert redis_client.get(key) == first
    window_ms = settings.IDEMPOTENCY_WINDOW * 1000
    assert 0.9 * window_ms < redis_client.pttl(key) <= window_ms


def test_idempotency_waits_for_a_send_in_flight(celery_settings, redis_client):
    """A key claimed by a send that is still publishing: the repeat waits for it and returns its id."""
    key = get_store().keys.idempotency(CH, "k")
    redis_client.set(key, publish.PENDING + "firstid", px=10_000)
    threading.Timer(0.3, lambda: redis_client.set(key, "firstid")).start()
    started = time.monotonic()
    assert taskchan.send(CH, {}, idempotency_key="k") == "firstid"
    assert time.monotonic() - started >= 0.25
    assert queued_tasks(redis_client) == []


def test_idempotency_takes_over_a_claim_whose_sender_died(celery_settings, redis_client):
    key = get_store().keys.idempotency(CH, "k")
    redis_client.set(key, publish.PENDING + "deadsender", px=300)
    message_id = taskchan.send(CH, {}, idempotency_key="k")
    assert message_id != "deadsender"
    assert [t["id"] for t in queued_tasks(redis_client)] == [message_id]
    assert redis_client.get(key) == message_id


@pytest.mark.parametrize(
    "channel, content, options, error",
    [
        (CH, {"when": object()}, {}, taskchan.ContentNotSerializable),
        (CH, {1: "int key"}, {}, taskchan.ContentNotSerializable),
        (CH, ["not", "a", "dict"], {}, taskchan.ContentNotSerializable),
        (CH, {"blob": "x" * 300_000}, {}, taskchan.MessageTooLarge),
        ("taskchan.cel.record\n", {}, {}, taskchan.InvalidChannelName),
        (CH, {}, {"delay": -1}, ValueError),
        (CH, {}, {"max_attempts": 0}, ValueError),
        # The Redis broker would hand a task held this long to a second worker.
        (CH, {}, {"delay": 1801}, ValueError),
    ],
)
def test_bad_input_is_refused_at_the_door(
    celery_settings, redis_client, channel, content, options, error
):
    with pytest.raises(error):
        taskchan.send(channel, content, **options)
    with pytest.raises(error), transaction.atomic():
        taskchan.send_on_commit(channel, content, **options)
    assert queued_tasks(redis_client) == []
    assert stream_len(redis_client) == 0
    assert not OutboxMessage.objects.exists()


def test_delay_limit_follows_the_visibility_timeout(celery_settings, redis_client, settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
    with pytest.raises(ValueError, match="visibility_timeout"):
        taskchan.send(CH, {}, delay=31)
    taskchan.send(CH, {}, delay=30)
    assert len(queued_tasks(redis_client)) == 1


def test_send_many_publishes_each_and_checks_the_delay_first(celery_settings, redis_client, settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
    with pytest.raises(ValueError, match="visibility_timeout"):
        taskchan.send_many(CH, [{"n": 1}, {"n": 2}], delay=31)
    assert queued_tasks(redis_client) == []  # refused before any was published
    ids = taskchan.send_many(CH, [{"n": 1}, {"n": 2}])
    tasks = {t["id"]: decode(t["args"][1], CH).content for t in queued_tasks(redis_client)}
    assert tasks == {ids[0]: {"n": 1}, ids[1]: {"n": 2}}
    assert stream_len(redis_client) == 0


def test_redis_layer_without_a_broker_is_refused(use_redis_layer, redis_client, settings):
    settings.CELERY_BROKER_URL = "memory://"
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL"):
        taskchan.send(CH, {})
    assert stream_len(redis_client) == 0
    assert not handoff.celery_configured()


def test_broker_down_raises_and_stores_nothing(celery_settings, redis_client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Nothing was sent"):
        taskchan.send(CH, {}, idempotency_key="k")
    assert time.monotonic() - started < settings.TASKCHAN_SEND_RETRY_SECONDS + 5
    # The idempotency claim is released: a later send is not told "already sent".
    assert redis_client.get(get_store().keys.idempotency(CH, "k")) is None
    assert stream_len(redis_client) == 0


def test_send_on_commit_sends_nothing_on_rollback_and_one_task_on_commit(
    celery_settings, redis_client
):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        taskchan.send_on_commit(CH, {"n": "rolled back"})
        raise Rollback
    assert queued_tasks(redis_client) == []
    assert not OutboxMessage.objects.exists()

    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"n": "committed"})
        assert queued_tasks(redis_client) == []  # not before the commit
    [task] = queued_tasks(redis_client)
    assert task["id"] == message_id
    assert decode(task["args"][1], CH).content == {"n": "committed"}
    assert not OutboxMessage.objects.exists()
    assert stream_len(redis_client) == 0


def test_outbox_sweep_publishes_a_row_whose_relay_failed_once(
    celery_settings, redis_client, monkeypatch
):
    real_send_task = publish.send_task

    def broker_down(*args, **kwargs):
        raise StoreUnavailable("broker down (test)")

    monkeypatch.setattr(publish, "send_task", broker_down)
    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"n": 1})
    assert OutboxMessage.objects.filter(pk=message_id).exists()  # the relay failed: the row stays
    assert queued_tasks(redis_client) == []

    monkeypatch.setattr(publish, "send_task", real_send_task)
    time.sleep(0.6)  # TASKCHAN_OUTBOX_RELAY_AFTER in tests/settings.py
    assert outbox.sweep() == 1
    assert outbox.sweep() == 0
    # A relay repeated after all (its row read twice) publishes nothing more.
    raw = decode(queued_tasks(redis_client)[0]["args"][1], CH).encode()
    from taskchan.producer import send_stored

    assert send_stored(CH, raw, "another-id", idempotency_key=f"outbox:{message_id}") == message_id
    assert [t["id"] for t in queued_tasks(redis_client)] == [message_id]


def test_in_memory_layer_runs_handed_off_channels_on_taskchan_workers(
    use_memory_layer, settings, monkeypatch
):
    """Development with no services: no broker a Celery worker could share, so
    taskchan's (in-process) workers run the channel, with a warning."""
    from tests import jobs
    from tests.contract.conftest import run_burst

    settings.CELERY_BROKER_URL = "memory://"
    assert not handoff.celery_configured()
    calls = []
    monkeypatch.setattr(
        jobs, "_mark", lambda key, message: calls.append((key, message.id, message.attempt))
    )
    message_id = taskchan.send("taskchan.cel.flaky", {"succeed_on": 2})
    run_burst(["taskchan.cel.flaky"], store=get_store())
    assert ("t:done", message_id, 2) in calls


def test_hand_to_celery_refuses_without_celery(use_memory_layer, settings):
    from taskchan.models import FailedMessage

    row = FailedMessage.objects.create(message_id="m1", channel=CH, content={}, reason="exhausted")
    with pytest.raises(ImproperlyConfigured):
        resend.hand_to_celery(row)
    row.refresh_from_db()
    assert row.retried_at is None


def test_hand_to_celery_refuses_what_cannot_run(celery_settings, redis_client):
    from taskchan.models import FailedMessage

    malformed = FailedMessage.objects.create(
        message_id="m1", channel=CH, content=None, reason="malformed"
    )
    with pytest.raises(ValueError, match="no content"):
        resend.hand_to_celery(malformed)
    unknown = FailedMessage.objects.create(
        message_id="m2", channel="taskchan.gone", content={}, reason="exhausted"
    )
    with pytest.raises(LookupError, match="No consumer"):
        resend.hand_to_celery(unknown)
    assert queued_tasks(redis_client) == []


def test_a_row_handed_over_twice_is_published_once(celery_settings, redis_client):
    # Two admins with the same page open: the second finds the row retried.
    from taskchan.models import FailedMessage

    FailedMessage.objects.create(message_id="d1", channel=CH, content={"n": 1}, reason="exhausted")
    first_view = FailedMessage.objects.get(message_id="d1")
    second_view = FailedMessage.objects.get(message_id="d1")  # loaded before the first hand-over

    new_id = resend.hand_to_celery(first_view)
    with pytest.raises(ValueError, match=f"already retried as message {new_id}"):
        resend.hand_to_celery(second_view)

    assert [t["id"] for t in queued_tasks(redis_client)] == [new_id]
    assert FailedMessage.objects.get(message_id="d1").retried_as == new_id


CHECK_IMPORTS = """
import sys
import django
django.setup()
import taskchan, taskchan.worker, taskchan.outbox
taskchan.send("taskchan.t.record", {"n": 1})
print("after plain send:", "celery" in sys.modules, "kombu" in sys.modules)
taskchan.send("taskchan.cel.record", {"n": 1})
print("after hand-off:", "celery" in sys.modules)
"""


def test_celery_is_imported_only_where_a_channel_hands_off(celery_settings):
    env = subprocess_env(celery_settings)
    out = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "after plain send: False False" in out.stdout
    assert "after hand-off: True" in out.stdout


def test_sharded_hand_off_keeps_its_keys_on_the_channels_home_host(celery_settings, shard_urls, settings):
    # The broker stays on the first Redis; taskchan channels shard over both.
    import redis as redis_lib

    from taskchan.stores.keys import Keys
    from taskchan.stores.sharded import shard_index

    settings.CHANNEL_LAYERS = layer_settings(*shard_urls)
    home = shard_index(CH, 2)
    servers = [redis_lib.Redis.from_url(url, decode_responses=True) for url in shard_urls]
    keys = Keys("taskchan")

    first = taskchan.send(CH, {"n": 1}, idempotency_key="order-7")
    assert taskchan.send(CH, {"n": 2}, idempotency_key="order-7") == first
    assert len(queued_tasks(servers[0])) == 1
    assert servers[home].get(keys.idempotency(CH, "order-7")) == first
    assert servers[1 - home].keys("taskchan:i:*") == []

    # The Celery side counts a start of the message on the same host.
    [task] = queued_tasks(servers[0])
    envelope = decode(task["args"][1], CH)
    assert celery_side._start(celery_side._store(), envelope) == 1
    assert servers[home].get(keys.celery_starts(envelope.id, 0)) == "1"
    assert servers[1 - home].keys("taskchan:cel:*") == []
