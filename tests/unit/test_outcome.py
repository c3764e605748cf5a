"""How a failed attempt ends (``taskchan.outcome``): the decision the worker and the Celery side share."""

from __future__ import annotations

import taskchan
from taskchan import outcome
from taskchan.envelope import Envelope
from taskchan.models import FailedMessage

CH = "taskchan.t.record"


def envelope() -> Envelope:
    return Envelope.new(CH, {"n": 1})


class PaymentDeclined(Exception):
    pass


def test_a_failure_before_the_last_attempt_is_retried_with_the_error_recorded():
    failure = outcome.after_failure(envelope(), 1, 3, PaymentDeclined("card expired"), "Traceback ...", None)

    assert not failure.dead_letter
    assert failure.reason == ""
    assert 1 <= failure.delay <= 2  # the default backoff after attempt 1
    assert failure.error_type == "tests.unit.test_outcome.PaymentDeclined"
    assert failure.envelope.attempts_before == 1
    assert failure.envelope.errors[-1]["type"] == failure.error_type
    assert failure.envelope.errors[-1]["message"] == "card expired"
    assert failure.envelope.traceback == "Traceback ..."


def test_the_last_attempt_is_exhausted_and_reject_is_rejected():
    exhausted = outcome.after_failure(envelope(), 3, 3, PaymentDeclined(), None, None)
    rejected = outcome.after_failure(envelope(), 1, 3, taskchan.Reject("no"), None, None)

    assert (exhausted.dead_letter, exhausted.reason) == (True, outcome.EXHAUSTED)
    assert (rejected.dead_letter, rejected.reason) == (True, outcome.REJECTED)
    # An exception with no message is recorded under its name.
    assert exhausted.envelope.errors[-1]["message"] == exhausted.error_type


def test_retry_with_a_delay_is_kept():
    failure = outcome.after_failure(envelope(), 1, 3, taskchan.Retry(delay=42), None, None)

    assert failure.delay == 42


def test_the_reasons_are_the_dead_letter_rows_reasons():
    assert outcome.REJECTED == FailedMessage.Reason.REJECTED
    assert outcome.EXHAUSTED == FailedMessage.Reason.EXHAUSTED
    assert outcome.WORKER_LOST == FailedMessage.Reason.WORKER_LOST


def test_deliveries_lost_with_their_worker_count_as_attempts():
    assert not outcome.lost_too_often(3, 3)
    assert outcome.lost_too_often(4, 3)

    lost = outcome.lost_with_worker(envelope(), 3, 2, worker="Celery worker")

    assert lost.attempts_before == 3
    assert lost.errors[-1]["type"] == "taskchan.WorkerLost"
    assert lost.errors[-1]["message"] == "the Celery worker running it was lost 2 time(s)"
