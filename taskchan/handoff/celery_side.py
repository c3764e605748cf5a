"""Running a handed-off message in a Celery worker: the body of ``taskchan.run_handed_off``.

The consumer gets the same ``Message`` as under a taskchan worker.  A failure
is retried with ``task.retry(countdown=...)`` following the consumer's
``max_attempts`` and ``backoff`` (``outcome.after_failure``: the taskchan
worker's decision too), the next attempt's envelope carrying every error so far; ``Reject`` or the last failure becomes a
FailedMessage marked ``ran_under_celery``.  An attempt whose worker died
(SIGKILL, OOM) comes back through the broker (``acks_late``) and counts as a
delivery: each start is counted in the store (``handoff_start``), so a
message that kills every worker is dead-lettered as *worker lost* after
``max_attempts``.
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from celery.exceptions import Reject as CeleryReject

from .. import deadletter, outcome
from ..conf import settings
from ..consumer_table import get_consumer
from ..envelope import Envelope, MalformedEnvelope, decode
from ..message import Message
from ..models import FailedMessage
from ..progress import direct
from ..registry import Consumer
from ..stores.configured import get_store
from .app import is_redis_store, visibility_timeout

logger = logging.getLogger("taskchan.handoff")

#: Seconds before a dead letter that could not be written is tried again.
DEAD_LETTER_RETRY_SECONDS = 5.0

Reason = FailedMessage.Reason


@dataclass(slots=True)
class _Attempt:
    """One start of a handed-off message in this Celery worker."""

    task: object  # the bound Celery task
    channel: str
    raw: str
    envelope: Envelope
    consumer: Consumer
    store: object  # the Redis store keeping the start counters, or None (see _store)
    number: int  # this attempt's number, 1-based
    max_attempts: int


def run(task, channel: str, raw: str, dead_letter: dict | None = None) -> None:
    """Run one handed-off message (see the module docstring)."""
    try:
        envelope = decode(raw, channel)
    except MalformedEnvelope as exc:
        _record(task, channel, str(raw), None, dead_letter or {"reason": Reason.MALFORMED, "error": str(exc)})
        return
    if dead_letter is not None:  # a dead letter the database refused earlier
        _record(task, channel, raw, envelope, dead_letter)
        return
    consumer = get_consumer(channel)
    if consumer is None:
        message = f"no consumer for {channel!r} is registered in this Celery worker"
        failed = envelope.failed(envelope.attempts_before + 1, "taskchan.NoConsumer", message, None)
        _record(task, channel, raw, failed, {"reason": Reason.NO_CONSUMER, "attempts": envelope.attempts_before})
        return
    store = _store()
    starts = _start(store, envelope)
    attempt = _Attempt(
        task, channel, raw, envelope, consumer, store,
        number=envelope.attempts_before + starts,
        max_attempts=envelope.max_attempts or consumer.max_attempts,
    )
    if starts > 1 and outcome.lost_too_often(attempt.number, attempt.max_attempts):
        _dead_letter_lost(attempt, starts)
        return
    try:
        with direct.reporting(envelope.id, attempt.number):  # message.progress(): to its watchers
            message = Message(envelope, attempt.number)
            if consumer.is_async:
                async_to_sync(consumer.func)(message)
            else:
                consumer.func(message)
    except Exception as exc:
        error, tb = exc, traceback_module.format_exc()
    else:
        _end(store, envelope, _window_ms())
        return
    # Handled outside the except block: a retry or a dead letter raised from
    # there would carry the consumer's error as its context.
    _failed(attempt, error, tb)


def _dead_letter_lost(attempt: _Attempt, starts: int) -> None:
    """The last allowed attempt's worker died too: a *worker lost* dead letter."""
    lost = outcome.lost_with_worker(attempt.envelope, attempt.number - 1, starts - 1, worker="Celery worker")
    _end(attempt.store, attempt.envelope, _window_ms())
    _record(
        attempt.task, attempt.channel, attempt.raw, lost,
        {
            "reason": outcome.WORKER_LOST,
            "consumer": attempt.consumer.name,
            "attempts": attempt.number - 1,
            "max_attempts": attempt.max_attempts,
        },
    )


def _failed(attempt: _Attempt, error: Exception, tb: str) -> None:
    """The consumer raised: retry through Celery, or dead-letter (rejected, exhausted)."""
    # The same decision as the taskchan worker's (taskchan/outcome.py).
    failure = outcome.after_failure(
        attempt.envelope, attempt.number, attempt.max_attempts, error, tb, attempt.consumer.backoff
    )
    if not failure.dead_letter:
        _retry(attempt, failure.envelope, failure.delay, failure.error_type)
        return
    # The start counter goes first: if the row cannot be written, _record
    # schedules the dead-lettering again (and a crash here at worst runs
    # the attempt once more).
    _end(attempt.store, attempt.envelope, _window_ms())
    _record(
        attempt.task, attempt.channel, attempt.raw, failure.envelope,
        {
            "reason": failure.reason,
            "consumer": attempt.consumer.name,
            "attempts": attempt.number,
            "max_attempts": attempt.max_attempts,
        },
    )


def _retry(attempt: _Attempt, next_envelope: Envelope, countdown: float, exc_type: str) -> None:
    """Publish the next attempt with ``task.retry``, no later than half the broker's visibility timeout."""
    task, envelope = attempt.task, attempt.envelope
    vt = visibility_timeout(lambda name, default=None: getattr(task.app.conf, name, default))
    if vt and countdown > vt / 2:
        logger.warning(
            "retry of %s in %.0fs shortened to %.0fs: half the broker's visibility_timeout",
            envelope.id, countdown, vt / 2,
        )
        countdown = vt / 2
    logger.info(
        "retrying channel=%s message=%s attempt=%d/%d in %.2fs under Celery error=%s",
        attempt.channel, envelope.id, attempt.number, attempt.max_attempts, countdown, exc_type,
    )
    try:
        retry_signal = task.retry(
            args=[attempt.channel, next_envelope.encode()], kwargs={}, countdown=countdown,
            max_retries=None, throw=False,
        )
    except Exception as publish_error:
        # The retry could not be published: put this delivery back instead of
        # acking it (acks_late would ack a failed task), so it is not lost.
        _end(attempt.store, envelope, None)
        raise CeleryReject(f"could not schedule the retry: {publish_error}", requeue=True) from publish_error
    _end(attempt.store, envelope, _window_ms(countdown))
    raise retry_signal


def _store():
    """The Redis store keeping start counters and idempotency keys, or None (in-memory layer, or none)."""
    try:
        store = get_store()
    except Exception:
        return None
    return store if is_redis_store(store) else None


def _start(store, envelope: Envelope) -> int:
    """Count this start of the attempt (one round trip); 1 unless earlier starts died."""
    if store is None:
        return 1
    try:
        return store.handoff_start(envelope.channel, envelope.id, envelope.attempts_before)
    except Exception:
        logger.warning("could not count the start of %s; assuming its first", envelope.id, exc_info=True)
        return 1


def _end(store, envelope: Envelope, idempotency_ms: int | None) -> None:
    """Forget the start counter (and refresh the idempotency key): one round trip."""
    if store is None:
        return
    try:
        store.handoff_end(
            envelope.channel, envelope.id, envelope.attempts_before,
            idempotency_key=envelope.idempotency_key, idempotency_ms=idempotency_ms,
        )
    except Exception:
        logger.warning("could not clear the start counter of %s", envelope.id, exc_info=True)


def _window_ms(extra_seconds: float = 0) -> int:
    return int((settings.IDEMPOTENCY_WINDOW + extra_seconds) * 1000)


def _record(task, channel, raw, envelope, dead_letter: dict) -> None:
    """Write the FailedMessage (marked as run under Celery); if the database
    will not take it, try again later rather than lose the message."""
    try:
        deadletter.record(
            channel=channel,
            entry_id=task.request.id or "",
            envelope=envelope,
            raw=raw if envelope is None else "",
            ran_under_celery=True,
            **dead_letter,
        )
    except Exception:
        logger.exception(
            "could not record dead letter for %s; trying again in %gs", task.request.id, DEAD_LETTER_RETRY_SECONDS
        )
        raw_next = raw if envelope is None else envelope.encode()
        raise task.retry(
            args=[channel, raw_next],
            kwargs={"dead_letter": dead_letter},
            countdown=DEAD_LETTER_RETRY_SECONDS,
            max_retries=None,
        ) from None
