"""The Celery side's decisions (``handoff.celery_side.run``), with a stand-in for the bound task.

The real worker tests (``test_celery_worker.py``) show the whole path; these
pin down the bookkeeping that is hard to provoke there: attempt counting across
lost starts, a database that refuses the dead letter, a retry that cannot be
published, a backoff longer than the broker's visibility timeout.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.exceptions import Reject as CeleryReject
from celery.exceptions import Retry as CeleryRetry

from taskchan.envelope import decode
from taskchan.handoff import celery_side
from taskchan.models import FailedMessage
from taskchan.outgoing import build_outgoing
from taskchan.stores.configured import get_store
from tests.conftest import done_records

pytestmark = pytest.mark.django_db(transaction=True)


class FakeTask:
    """What ``run`` uses of a bound Celery task: request.id, app.conf, retry()."""

    def __init__(self, redis_url, visibility_timeout=3600.0, fail_publish=False):
        self.request = SimpleNamespace(id="task-id", delivery_info={})
        self.app = SimpleNamespace(
            conf=SimpleNamespace(
                broker_url=redis_url,
                broker_write_url=None,
                broker_transport_options={"visibility_timeout": visibility_timeout},
            )
        )
        self.fail_publish = fail_publish
        self.retries: list[dict] = []

    def retry(self, args=None, kwargs=None, countdown=None, max_retries=3, throw=True, **_):
        if self.fail_publish:
            raise ConnectionError("broker down (test)")
        self.retries.append(
            {"args": args, "kwargs": kwargs, "countdown": countdown, "max_retries": max_retries}
        )
        signal = CeleryRetry("retry", when=countdown)
        if throw:
            raise signal
        return signal


def envelope_for(channel, content, **options):
    envelope, _delay_ms, raw, _content_json = build_outgoing(
        channel, content, None, None, options.get("idempotency_key"), None
    )
    return envelope, raw


@pytest.fixture
def task(celery_settings):
    return FakeTask(celery_settings)


def counter_key(envelope):
    return f"{get_store().keys.prefix}:cel:{envelope.id}:{envelope.attempts_before}"


def test_success_runs_attempt_one_and_clears_the_start_counter(task, redis_client):
    envelope, raw = envelope_for("taskchan.cel.record", {"n": 1})
    celery_side.run(task, "taskchan.cel.record", raw)
    [(message_id, attempt, _pid)] = done_records(redis_client)
    assert (message_id, attempt) == (envelope.id, 1)
    assert not redis_client.exists(counter_key(envelope))
    assert task.retries == []


def test_failure_is_retried_with_the_next_envelope(task, redis_client):
    envelope, raw = envelope_for("taskchan.cel.flaky", {"succeed_on": 5})
    with pytest.raises(CeleryRetry):
        celery_side.run(task, "taskchan.cel.flaky", raw)
    [retry] = task.retries
    assert retry["countdown"] == pytest.approx(0.05)
    assert retry["max_retries"] is None  # taskchan's max_attempts decides, not Celery's
    assert retry["kwargs"] == {}
    channel, next_raw = retry["args"]
    following = decode(next_raw, channel)
    assert (following.id, following.attempts_before) == (envelope.id, 1)
    assert [(e["attempt"], e["type"]) for e in following.errors] == [(1, "builtins.RuntimeError")]
    assert "flaky failure on attempt 1" in following.traceback
    assert not redis_client.exists(counter_key(envelope))

    with pytest.raises(CeleryRetry):
        celery_side.run(task, channel, next_raw)
    assert decode(task.retries[-1]["args"][1], channel).attempts_before == 2


def test_a_start_whose_worker_died_counts_as_an_attempt(task, redis_client):
    envelope, raw = envelope_for("taskchan.cel.record", {"n": 1})
    redis_client.set(counter_key(envelope), 1)  # an earlier start of attempt 1 died with its worker
    celery_side.run(task, "taskchan.cel.record", raw)
    assert done_records(redis_client)[0][1] == 2


def test_a_crash_loop_is_dead_lettered_as_worker_lost(task, redis_client):
    envelope, raw = envelope_for("taskchan.cel.crash", {"n": 1})  # max_attempts=2
    redis_client.set(counter_key(envelope), 2)  # two starts died
    celery_side.run(task, "taskchan.cel.crash", raw)
    row = FailedMessage.objects.get(message_id=envelope.id)
    assert row.reason == FailedMessage.Reason.WORKER_LOST
    assert (row.attempts, row.max_attempts, row.ran_under_celery) == (2, 2, True)
    assert not redis_client.exists(counter_key(envelope))


def test_a_dead_letter_the_database_refuses_is_written_later(task, redis_client, monkeypatch):
    from taskchan import deadletter

    envelope, raw = envelope_for("taskchan.cel.reject", {"n": 1})
    real_record = deadletter.record

    def database_down(**kwargs):
        raise RuntimeError("database down (test)")

    monkeypatch.setattr(deadletter, "record", database_down)
    with pytest.raises(CeleryRetry):
        celery_side.run(task, "taskchan.cel.reject", raw)
    assert not FailedMessage.objects.exists()
    [retry] = task.retries
    assert retry["kwargs"]["dead_letter"]["reason"] == FailedMessage.Reason.REJECTED
    assert retry["countdown"] == celery_side.DEAD_LETTER_RETRY_SECONDS

    monkeypatch.setattr(deadletter, "record", real_record)
    celery_side.run(task, *retry["args"], **retry["kwargs"])
    row = FailedMessage.objects.get(message_id=envelope.id)
    assert (row.reason, row.attempts, row.ran_under_celery) == (
        FailedMessage.Reason.REJECTED,
        1,
        True,
    )
    assert len(done_records(redis_client, "t:started")) == 1  # the consumer did not run again


def test_a_retry_that_cannot_be_published_puts_the_delivery_back(celery_settings, redis_client):
    task = FakeTask(celery_settings, fail_publish=True)
    _envelope, raw = envelope_for("taskchan.cel.flaky", {"succeed_on": 5})
    with pytest.raises(CeleryReject) as info:
        celery_side.run(task, "taskchan.cel.flaky", raw)
    assert info.value.requeue  # not acked: the broker gives it out again
    assert not FailedMessage.objects.exists()


def test_backoff_is_kept_under_half_the_visibility_timeout(celery_settings):
    task = FakeTask(celery_settings, visibility_timeout=0.04)
    _envelope, raw = envelope_for("taskchan.cel.flaky", {"succeed_on": 5})  # backoff 0.05 s
    with pytest.raises(CeleryRetry):
        celery_side.run(task, "taskchan.cel.flaky", raw)
    assert task.retries[0]["countdown"] == pytest.approx(0.02)


def test_the_idempotency_key_is_kept_for_the_window_after_success(task, redis_client):
    from taskchan.conf import settings

    key = get_store().keys.idempotency("taskchan.cel.record", "k")
    redis_client.set(key, "someid", px=5_000)
    _envelope, raw = envelope_for("taskchan.cel.record", {"n": 1}, idempotency_key="k")
    celery_side.run(task, "taskchan.cel.record", raw)
    assert redis_client.pttl(key) > settings.IDEMPOTENCY_WINDOW * 1000 * 0.9


def test_a_channel_with_no_consumer_in_the_worker_is_dead_lettered(task):
    from taskchan.envelope import Envelope

    raw = Envelope.new("taskchan.cel.nobody", {"n": 1}).encode()
    celery_side.run(task, "taskchan.cel.nobody", raw)
    row = FailedMessage.objects.get(channel="taskchan.cel.nobody")
    assert (row.reason, row.ran_under_celery) == (FailedMessage.Reason.NO_CONSUMER, True)
    assert "no consumer" in row.last_error
