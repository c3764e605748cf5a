"""How an attempt that did not succeed ends: retried, dead-lettered, or lost with its worker.

Two places run consumers: the taskchan worker (``taskchan/worker/settle.py``)
and the Celery side of the hand-off (``handoff.run``).  Both turn a failure
into the same decision here, so a message fails the same way whichever ran it:

- ``after_failure``: the consumer raised.  The next envelope records the
  error (type, message, traceback) and ``retry.decide`` says whether it runs
  again after a delay, or becomes a dead letter: *rejected* (``Reject``) or
  *exhausted* (``max_attempts`` reached).
- ``lost_too_often`` and ``lost_with_worker``: earlier deliveries ended with
  no outcome at all (the process running them was SIGKILLed, ran out of
  memory, crashed).  Counting those, not only exceptions, stops a message
  that kills every worker from crash-looping: past ``max_attempts`` it is
  dead-lettered as *worker lost*.

Plain functions over the envelope: no store, no models, no worker.  What a
caller does with the decision (reschedule in Redis, ``task.retry`` under
Celery, write the dead-letter row before the ack) stays with the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import retry
from .envelope import Envelope

#: dead-letter reasons: the values of ``FailedMessage.Reason`` (models.py),
#: as plain strings so that this module needs no models
REJECTED = "rejected"
EXHAUSTED = "exhausted"
WORKER_LOST = "worker_lost"


def error_type(exc: BaseException) -> str:
    """The dotted name an error is recorded under (``"myapp.jobs.PaymentDeclined"``)."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


@dataclass(frozen=True, slots=True)
class Failure:
    """What follows attempt ``attempt`` that raised: a retry after ``delay``, or a dead letter for ``reason``."""

    envelope: Envelope  # the envelope for what comes next, this attempt's error recorded
    error_type: str
    attempt: int
    max_attempts: int
    delay: float | None  # seconds until the next attempt; None for a dead letter
    reason: str  # REJECTED or EXHAUSTED for a dead letter; "" for a retry

    @property
    def dead_letter(self) -> bool:
        return self.delay is None


def after_failure(
    envelope: Envelope, attempt: int, max_attempts: int, exc: BaseException, traceback: str | None, backoff=None
) -> Failure:
    """Attempt number ``attempt`` (1-based) of ``envelope`` raised ``exc``: retry or dead-letter.

    ``backoff`` is the consumer's tenacity wait strategy (None: ``retry.DEFAULT_BACKOFF``).
    """
    name = error_type(exc)
    next_envelope = envelope.failed(attempt, name, str(exc) or name, traceback)
    decision = retry.decide(exc, attempt, max_attempts, backoff, envelope)
    if decision.dead_letter:
        reason = REJECTED if decision.reason == "rejected" else EXHAUSTED
        return Failure(next_envelope, name, attempt, max_attempts, None, reason)
    return Failure(next_envelope, name, attempt, max_attempts, decision.delay, "")


def lost_too_often(attempt: int, max_attempts: int) -> bool:
    """Whether attempt number ``attempt``, which follows deliveries lost with their
    worker, must not run: the lost ones already used up ``max_attempts``."""
    return attempt > max_attempts


def lost_with_worker(envelope: Envelope, attempts: int, times: int, *, worker: str = "worker") -> Envelope:
    """``envelope`` with ``attempts`` made, the last lost with the ``worker`` that ran it (``times`` in a row).

    The envelope of a *worker lost* dead letter, and of a message handed back
    (or moved) after such losses, so that the count of attempts is kept.
    """
    return envelope.failed(
        attempts, "taskchan.WorkerLost", f"the {worker} running it was lost {times} time(s)", None
    )
