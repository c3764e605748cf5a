"""Encryption at rest with the layer's ``symmetric_encryption_keys`` (``taskchan/stores/codec.py``).

Real workers (``runworker`` subprocesses with the keys in their settings)
send, retry, hand back and run jobs; then every key in Redis is read and
nothing of the content may be readable.  Entries that do not unseal become
malformed dead letters and the worker goes on; keys rotate as channels_redis's
do; dead letters and outbox rows are sealed in the database unless
TASKCHAN_DEAD_LETTERS_DECRYPTED says otherwise.
"""

from __future__ import annotations

import signal

import pytest
import redis as redis_lib
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

import taskchan
from taskchan import deadletter
from taskchan.envelope import Envelope, decode
from taskchan.models import FailedMessage, OutboxMessage
from taskchan.resend import cannot_retry
from taskchan.stores.codec import codec_for
from taskchan.stores.configured import get_store
from tests.conftest import KEYS, done_records, layer_settings, lease_as, on_store, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

KEY, OLD_KEY, OTHER_KEY = "key-of-this-test", "key-before-rotation", "somebody-elses-key"
SECRET = "s3cret-payload-9f2c"  # noqa: S105 - what must not be readable anywhere
ENCRYPTED = {"DJANGO_SETTINGS_MODULE": "tests.encrypted_settings", "TASKCHAN_TEST_KEYS": KEY}


@pytest.fixture
def encrypted(redis_url, settings):
    settings.CHANNEL_LAYERS = layer_settings(redis_url, symmetric_encryption_keys=[KEY])
    return redis_url


def everything_in(url) -> list[bytes]:
    """Every key of the Redis and every value it holds, as bytes (channels_redis's are binary)."""
    client = redis_lib.Redis.from_url(url)
    out = []
    for key in client.scan_iter("*"):
        out.append(key)
        kind = client.type(key).decode()
        if kind == "string":
            out.append(client.get(key))
        elif kind == "stream":
            out += [field + b"=" + value for _id, fields in client.xrange(key) for field, value in fields.items()]
        elif kind == "zset":
            out += client.zrange(key, 0, -1)
        elif kind == "set":
            out += client.smembers(key)
        elif kind == "list":
            out += client.lrange(key, 0, -1)
        elif kind == "hash":
            out += [k + b"=" + v for k, v in client.hgetall(key).items()]
        else:
            raise AssertionError(f"{key} is a {kind}: read it too")
    client.close()
    return out


def sealed_entries(client, channel) -> list[str]:
    """What the stream and the scheduled set of ``channel`` hold."""
    stream = [fields["m"] for _id, fields in client.xrange(KEYS.stream(channel))]
    return stream + client.zrange(KEYS.scheduled(channel), 0, -1)


def test_nothing_readable_of_a_job_is_left_in_redis(encrypted, worker, redis_client):
    # Hand-back: a worker leases three slow jobs, starts one and is stopped.
    for _ in range(3):
        taskchan.send("taskchan.t.slow", {"seconds": 2, "secret": SECRET})
    slow = worker("taskchan.t.slow", **ENCRYPTED)
    wait_for(lambda: redis_client.llen("t:started") == 1, timeout=30, message="the first slow job to start")
    slow.signal(signal.SIGTERM)
    assert slow.wait(30) == 0, slow.output()
    assert "unstarted message(s) back" in slow.output()
    handed_back = redis_client.xlen(KEYS.stream("taskchan.t.slow"))
    assert handed_back >= 1
    # Retry: the first attempt fails and its retry is scheduled (2 s backoff).
    retried = taskchan.send("taskchan.fw.fail_once_slow_backoff", {"secret": SECRET})
    flaky = worker("taskchan.fw.fail_once_slow_backoff", **ENCRYPTED)
    wait_for(lambda: redis_client.zcard(KEYS.scheduled("taskchan.fw.fail_once_slow_backoff")) == 1,
             timeout=30, message="the retry to be scheduled")
    flaky.signal(signal.SIGTERM)
    assert flaky.wait(30) == 0, flaky.output()
    # A delayed send, one with an idempotency key, a send_on_commit, and a
    # plain channel (channels_redis's own encryption).
    taskchan.send("taskchan.t.poison", {"secret": SECRET}, delay=3600)
    taskchan.send("taskchan.t.record", {"secret": SECRET}, idempotency_key="order-42")  # a name, in a key name: not sealed
    with transaction.atomic():
        taskchan.send_on_commit("taskchan.t.record", {"secret": SECRET})
    async_to_sync(get_channel_layer().send)("plain.x", {"secret": SECRET})

    dump = everything_in(encrypted)
    assert len(dump) > 20
    assert not [value for value in dump if SECRET.encode() in value]
    held = [raw for channel in ("taskchan.t.slow", "taskchan.fw.fail_once_slow_backoff", "taskchan.t.poison",
                                "taskchan.t.record") for raw in sealed_entries(redis_client, channel)]
    assert len(held) == handed_back + 1 + 1 + 2  # handed back, retried, delayed, sent (key, outbox)
    assert all(raw.startswith("gAAAAA") for raw in held)  # Fernet tokens, every one

    # The same keys open them: a worker runs every one that is due.
    drain = worker("taskchan.t.slow", "taskchan.fw.fail_once_slow_backoff", "taskchan.t.record",
                   args=("--burst",), **ENCRYPTED)
    assert drain.wait(60) == 0, drain.output()
    done = done_records(redis_client)
    assert len(done) == 3 + 1 + 2
    assert (retried, 2) in {(message_id, attempt) for message_id, attempt, _pid in done}
    assert not FailedMessage.objects.exists()


def test_an_entry_that_does_not_unseal_is_a_malformed_dead_letter_and_the_worker_goes_on(
    redis_url, settings, worker, redis_client
):
    # Sent before the keys were set: plain JSON, still read.
    settings.CHANNEL_LAYERS = layer_settings(redis_url)
    before = taskchan.send("taskchan.t.record", {"n": 0})
    settings.CHANNEL_LAYERS = layer_settings(redis_url, symmetric_encryption_keys=[KEY])
    stream = KEYS.stream("taskchan.t.record")
    foreign = codec_for([OTHER_KEY]).seal('{"v": 1}')
    redis_client.xadd(stream, {"m": "not a token at all"})
    redis_client.xadd(stream, {"m": foreign})
    after = taskchan.send("taskchan.t.record", {"n": 1})

    proc = worker("taskchan.t.record", args=("--burst",), **ENCRYPTED)

    assert proc.wait(60) == 0, proc.output()
    assert {message_id for message_id, _a, _p in done_records(redis_client)} == {before, after}
    rows = FailedMessage.objects.order_by("id")
    assert [row.reason for row in rows] == ["malformed", "malformed"]
    assert [row.raw for row in rows] == ["not a token at all", foreign]
    for row in rows:
        assert "cannot be decrypted with the layer's symmetric_encryption_keys" in row.last_error


def test_keys_rotate_as_in_channels_redis(redis_url, settings):
    settings.CHANNEL_LAYERS = layer_settings(redis_url, symmetric_encryption_keys=[OLD_KEY])
    message_id = taskchan.send("taskchan.t.record", {"secret": SECRET})
    # The new key first: it seals from now on; the old one still unseals.
    settings.CHANNEL_LAYERS = layer_settings(redis_url, symmetric_encryption_keys=[KEY, OLD_KEY])
    store = get_store()

    (delivery,) = lease_as(store, "taskchan.t.record")
    assert decode(delivery.raw, "taskchan.t.record").id == message_id
    on_store(store, lambda: store.reschedule(delivery, delivery.raw, 60_000))

    (member,) = store.client.zrange(KEYS.scheduled("taskchan.t.record"), 0, -1)
    assert decode(codec_for([KEY]).unseal(member), "taskchan.t.record").content == {"secret": SECRET}
    with pytest.raises(ValueError, match="cannot be decrypted"):
        codec_for([OLD_KEY]).unseal(member)


def database_text(table: str, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")  # noqa: S608 - names from the test
        return "".join(str(value) for (value,) in cursor.fetchall())


def record_dead_letter() -> FailedMessage:
    envelope = Envelope.new("taskchan.t.poison", {"secret": SECRET})
    return deadletter.record(channel="taskchan.t.poison", entry_id="1-0", reason="exhausted", envelope=envelope)


def test_dead_letters_are_sealed_in_the_database_by_default(encrypted, settings):
    record_dead_letter()
    assert SECRET not in database_text("taskchan_failedmessage", "content")
    row = FailedMessage.objects.get()
    assert row.content == {"secret": SECRET}
    assert cannot_retry(row) == ""
    row.resend()  # what the admin's retry does: the content, unsealed, sent again

    # With another layer key the row stays sealed, and is not re-sent as it is.
    settings.CHANNEL_LAYERS = layer_settings(encrypted, symmetric_encryption_keys=[OTHER_KEY])
    row = FailedMessage.objects.get()
    row.retried_as = ""
    assert "no longer in the layer's symmetric_encryption_keys" in cannot_retry(row)


def test_dead_letters_are_stored_decrypted_when_the_setting_says_so(encrypted, settings):
    settings.TASKCHAN_DEAD_LETTERS_DECRYPTED = True
    record_dead_letter()
    assert SECRET in database_text("taskchan_failedmessage", "content")
    assert FailedMessage.objects.get().content == {"secret": SECRET}


def test_an_outbox_row_is_sealed_and_relayed_unsealed(encrypted, redis_client):
    with transaction.atomic():
        message_id = taskchan.send_on_commit("taskchan.t.record", {"secret": SECRET})
        assert SECRET not in database_text("taskchan_outboxmessage", "envelope")
        assert decode(OutboxMessage.objects.get().envelope, "taskchan.t.record").id == message_id

    (raw,) = sealed_entries(redis_client, "taskchan.t.record")
    assert decode(codec_for([KEY]).unseal(raw), "taskchan.t.record").id == message_id
    assert not OutboxMessage.objects.exists()
