"""send_on_commit: the transactional outbox, on the real Redis layer.

The message exists in Redis exactly when the caller's transaction committed;
a relay that fails at commit time (Redis down) leaves its outbox row, and a
sweep (or a worker's housekeeping) relays it once Redis is back, exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
import redis as redis_lib
from django.contrib.auth import get_user_model
from django.db import connection, transaction

import taskchan
from taskchan import outbox
from taskchan.envelope import decode
from taskchan.models import OutboxMessage
from taskchan.stores.configured import get_store
from taskchan.worker import Worker
from tests.conftest import layer_settings, wait_for
from tests.contract import consumers
from tests.contract.conftest import run_burst

pytestmark = pytest.mark.django_db(transaction=True)

CH = "taskchan.c.ok"


@pytest.fixture(autouse=True)
def _reset_records():
    consumers.reset()
    yield
    consumers.reset()


def stored(client, channel=CH) -> list:
    """Envelopes on the channel's stream."""
    return [
        decode(fields["m"], channel)
        for _id, fields in client.xrange(get_store().keys.stream(channel))
    ]


class BackgroundWorker:
    """A non-burst Worker on its own thread and loop, stopped gracefully by stop()."""

    def __init__(self, channels, **options):
        self.worker = Worker(list(channels), poll_interval=0.02, **options)
        self.loop = None
        self.clean = None
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)

    def _run(self):
        async def main():
            self.loop = asyncio.get_running_loop()
            try:
                self.clean = await self.worker.arun()
            finally:
                await self.worker.store.aclose()

        asyncio.run(main())

    def start(self):
        self.thread.start()
        wait_for(
            lambda: self.loop is not None and self.worker._stopping is not None,
            message="worker start",
        )

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.worker.request_stop)
            self.thread.join(30)
        assert not self.thread.is_alive(), "worker did not stop"


# -- commit and rollback -------------------------------------------------------------


def test_nothing_is_in_redis_until_commit_then_exactly_one_message(use_redis_layer, redis_client):
    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"photo_id": 1})
        with transaction.atomic():  # a savepoint releasing is not a commit
            pass
        assert redis_client.dbsize() == 0
        assert OutboxMessage.objects.filter(pk=message_id).exists()

    [envelope] = stored(redis_client)
    assert (envelope.id, envelope.content) == (message_id, {"photo_id": 1})
    assert not OutboxMessage.objects.exists()


def test_rollback_sends_nothing_and_leaves_no_outbox_row(use_redis_layer, redis_client, settings):
    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0

    with pytest.raises(RuntimeError), transaction.atomic():
        taskchan.send_on_commit(CH, {"photo_id": 1})
        raise RuntimeError("the view failed")

    assert not OutboxMessage.objects.exists()
    assert outbox.sweep() == 0
    assert redis_client.dbsize() == 0


def test_a_rolled_back_savepoint_drops_its_message_only(use_redis_layer, redis_client):
    with transaction.atomic():
        kept = taskchan.send_on_commit(CH, {"kept": True})
        try:
            with transaction.atomic():
                taskchan.send_on_commit(CH, {"kept": False})
                raise RuntimeError("inner step failed")
        except RuntimeError:
            pass

    assert [e.id for e in stored(redis_client)] == [kept]
    assert not OutboxMessage.objects.exists()


def test_options_survive_the_outbox(use_redis_layer, redis_client):
    with transaction.atomic():
        message_id = taskchan.send_on_commit(
            CH,
            {"n": 1},
            delay=60,
            max_attempts=2,
            idempotency_key="order-7",
            reply_channel="specific.x!y",
        )

    store = get_store()
    assert redis_client.xlen(store.keys.stream(CH)) == 0
    [raw] = redis_client.zrange(store.keys.scheduled(CH), 0, -1)
    envelope = decode(raw, CH)
    assert (
        envelope.id,
        envelope.max_attempts,
        envelope.idempotency_key,
        envelope.reply_channel,
    ) == (
        message_id,
        2,
        "order-7",
        "specific.x!y",
    )


@pytest.mark.parametrize("relayed_by", ["commit", "sweep"])
def test_priority_survives_the_outbox(use_redis_layer, redis_client, settings, relayed_by):
    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0
    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"n": 1}, priority=7)
        row = OutboxMessage.objects.filter(pk=message_id).values().get()
    assert row["priority"] == 7
    if relayed_by == "sweep":  # as if the commit's relay never happened
        redis_client.flushdb()
        OutboxMessage.objects.create(**row)
        assert outbox.sweep() == 1

    keys = get_store().keys
    assert redis_client.xlen(keys.stream(CH)) == 0  # not on level 0's stream...
    assert [decode(f["m"], CH).id for _, f in redis_client.xrange(keys.lane(CH, 7))] == [message_id]  # ...on 7's
    assert not OutboxMessage.objects.exists()


@pytest.mark.parametrize("priority", [101, -101, True, 1.5, "1"])
def test_a_bad_priority_is_refused_before_any_row_is_written(use_redis_layer, redis_client, priority):
    with transaction.atomic(), pytest.raises(taskchan.InvalidOption, match="priority must be"):
        taskchan.send_on_commit(CH, {"n": 1}, priority=priority)
    assert not OutboxMessage.objects.exists()
    assert redis_client.dbsize() == 0


def test_a_consumer_never_sees_the_row_its_sender_wrote_missing(use_redis_layer, redis_client):
    background = BackgroundWorker(["taskchan.c.user"])
    background.start()
    try:
        # The worker is running and leasing before the transaction begins.
        wait_for(
            lambda: redis_client.zcard(f"{get_store().keys.prefix}:w") == 1,
            message="worker heartbeat",
        )
        with transaction.atomic():
            user = get_user_model().objects.create(username="alice")
            message_id = taskchan.send_on_commit("taskchan.c.user", {"user_id": user.pk})
            # Time enough for a worker to run a message sent too early.
            time.sleep(0.3)
            assert consumers.events() == []
        wait_for(lambda: consumers.events(), timeout=15, message="the consumer to run")
    finally:
        background.stop()

    [call] = consumers.events()
    assert call["id"] == message_id
    assert call["found"] is True


# -- Redis down at commit time -----------------------------------------------------------


@pytest.fixture
def flaky_redis(redis_server_factory, settings):
    """A Redis of this test's own, as the layer's, that the test can kill and restart."""
    server = redis_server_factory()
    settings.CHANNEL_LAYERS = layer_settings(server.url)
    settings.TASKCHAN_SEND_RETRY_SECONDS = 0.3
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    yield server, client
    client.close()


def commit_while_redis_is_down(server) -> str:
    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"photo_id": 9})
        server.kill()
    # The commit succeeded although its relay could not reach Redis.
    return message_id


def test_a_relay_that_fails_leaves_the_row_and_a_sweep_relays_it_once(flaky_redis, settings):
    server, client = flaky_redis
    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 60

    message_id = commit_while_redis_is_down(server)

    assert OutboxMessage.objects.filter(pk=message_id).exists()
    server.start()
    assert client.dbsize() == 0
    # A fresh row may still be relayed by its own commit hook: not swept yet.
    assert outbox.sweep() == 0
    assert OutboxMessage.objects.filter(pk=message_id).exists()

    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0
    assert outbox.sweep() == 1

    assert [(e.id, e.content) for e in stored(client)] == [(message_id, {"photo_id": 9})]
    assert not OutboxMessage.objects.exists()
    assert outbox.sweep() == 0
    assert len(stored(client)) == 1


def test_a_sweep_while_redis_is_still_down_keeps_the_row(flaky_redis, settings):
    server, client = flaky_redis
    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0
    message_id = commit_while_redis_is_down(server)

    assert outbox.sweep() == 0

    assert OutboxMessage.objects.filter(pk=message_id).exists()
    server.start()
    assert outbox.sweep() == 1
    assert [e.id for e in stored(client)] == [message_id]


def test_a_workers_housekeeping_relays_a_row_left_behind(flaky_redis, settings):
    server, client = flaky_redis
    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0
    message_id = commit_while_redis_is_down(server)
    server.start()

    run_burst([CH])

    assert [(c["id"], c["attempt"]) for c in consumers.events()] == [(message_id, 1)]
    assert stored(client) == []  # run and acked
    assert not OutboxMessage.objects.exists()
    assert outbox.sweep() == 0


# -- idempotent relay ------------------------------------------------------------------


@pytest.mark.parametrize("idempotency_key", [None, "order-7"])
def test_relaying_the_same_row_twice_stores_one_message(
    use_redis_layer, redis_client, settings, idempotency_key
):
    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0
    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"n": 1}, idempotency_key=idempotency_key)
        row = OutboxMessage.objects.filter(pk=message_id).values().get()
    assert [e.id for e in stored(redis_client)] == [message_id]

    # The relay stored the message but its process died before deleting the
    # row: a sweep finds the row and relays it again.
    OutboxMessage.objects.create(**row)
    assert outbox.sweep() == 1
    # And once more, straight through relay().
    OutboxMessage.objects.create(**row)
    assert outbox.relay(message_id) is True

    assert [e.id for e in stored(redis_client)] == [message_id]
    assert not OutboxMessage.objects.exists()


def test_relay_of_a_row_already_gone_does_nothing(use_redis_layer, redis_client):
    assert outbox.relay("no-such-row") is False
    assert redis_client.dbsize() == 0


# -- rows written around send_on_commit ---------------------------------------------------


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"channel": "taskchan.١٢"}, "Invalid taskchan channel name"),
        ({"channel": "not-taskchan"}, "Invalid taskchan channel name"),
        ({"envelope": "{not json"}, "not JSON"),
        ({"envelope": '{"v": 1, "id": "x", "ch": "taskchan.c.ok", "c": {}}'}, "not the row's id"),
        ({"delay_ms": 10**15}, "past the limit"),
        ({"idempotency_key": "a\x00b"}, "no NUL"),
        ({"priority": 101}, "priority must be"),
    ],
    ids=["arabic-digits", "not-taskchan", "not-json", "other-id", "delay", "nul-key", "priority"],
)
def test_a_row_that_cannot_be_relayed_becomes_a_malformed_dead_letter(use_redis_layer, redis_client, settings, row, error):
    from taskchan.deadletter import malformed_id
    from taskchan.models import FailedMessage

    settings.TASKCHAN_OUTBOX_RELAY_AFTER = 0
    with transaction.atomic():
        message_id = taskchan.send_on_commit(CH, {"n": 1}, delay=60)
        fields = OutboxMessage.objects.filter(pk=message_id).values().get()
    redis_client.flushdb()
    OutboxMessage.objects.create(**{**fields, **row})

    assert outbox.sweep() == 0

    assert redis_client.dbsize() == 0  # nothing relayed
    assert not OutboxMessage.objects.exists()  # and no row left to be swept forever
    dead = FailedMessage.objects.get()
    assert dead.reason == FailedMessage.Reason.MALFORMED
    assert dead.message_id == malformed_id(fields["channel"] if "channel" not in row else row["channel"], f"outbox:{message_id}")
    assert error in dead.last_error
    assert dead.raw


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write lock; PostgreSQL's rows lock one by one")
def test_a_sweep_with_nothing_to_relay_never_waits_for_the_write_lock(use_redis_layer):
    # Another process holds SQLite's write lock (a web request's transaction);
    # every worker sweeps the outbox each heartbeat.  With nothing to relay the
    # sweep must not queue for the lock (up to the database's 20 s timeout).
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    swept: list = []
    sweeper = threading.Thread(target=lambda: swept.append(outbox.sweep()))
    try:
        sweeper.start()
        sweeper.join(10)
        assert swept == [0], "the sweep waited for the write lock"
    finally:
        other.execute("ROLLBACK")
        other.close()
        sweeper.join(30)
