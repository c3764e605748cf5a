"""Settling: how a delivery's outcome reaches Redis (and the database).

- a success is released from the bound on held work and goes to the batched
  acker (``acker.py``);
- a failure is retried (``reschedule.lua``, the next envelope carrying the
  error) or dead-lettered, as ``taskchan/outcome.py`` decides;
- a message that cannot be read is dead-lettered as malformed, and the worker
  goes on;
- a cancelled message (``taskchan.cancel``: before it started, or it raised
  ``Cancelled``) is acked and counted as cancelled: never retried nor dead-lettered;
- a reclaimed delivery another worker took before it started is only released.

A dead letter's row is written before its ack, never after: if the row cannot
be written the message stays leased, its lease lapses, and the next delivery
tries again.  A crash between the two leaves a row and a redelivery that
updates the same row (``deadletter.record`` is keyed on the message id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from redis.exceptions import RedisError

from .. import deadletter, metrics, outcome, tracking
from ..conf import settings
from ..envelope import message_id_of
from ..models import FailedMessage
from ..stores.base import Delivery
from ..stores.keys import entry_level
from .attempt import Outcome
from .leases import Leases
from .outage import retry_redis
from .partitions import Partitions

logger = logging.getLogger("taskchan.worker")
#: one DEBUG line per attempt that ran: turn it on with ``runworker -v 2`` or LOGGING
job_logger = logging.getLogger("taskchan.jobs")


@dataclass(slots=True)
class Tally:
    """What the worker reports in its registry entry and its last log line."""

    processed: int = 0
    failed: int = 0
    last_finished: float | None = None  # unix time the worker last finished a job (any outcome)


class Settler:
    progress = None  # the worker's ProgressHub (taskchan/progress/hub.py): last progress, outcome pushes

    def __init__(self, partitions: Partitions, leases: Leases, bookkeeping: Executor, tally: Tally):
        self._partitions = partitions
        self._leases = leases
        self._bookkeeping = bookkeeping  # the database thread: dead-letter rows never wait behind jobs
        self._tally = tally
        self._failures: set[asyncio.Task] = set()  # failures being retried or dead-lettered

    def busy(self) -> bool:
        """Whether failures are still being settled."""
        return bool(self._failures)

    def settle(self, result: Outcome) -> None:
        """On the loop: ack a success now (batched); retry or dead-letter a failure."""
        delivery = result.delivery
        if result.skipped:
            # Taken by another worker before it started here: not ours to settle.
            self._leases.release(delivery)
            return
        self._tally.last_finished = time.time()
        if (result.ok or result.exc is not None) and job_logger.isEnabledFor(logging.DEBUG):
            job_logger.debug(
                "%s channel=%s message=%s attempt=%d duration=%.2fms",
                "done" if result.ok else f"failed ({type(result.exc).__name__})",
                delivery.channel, result.envelope.id, result.attempt, result.duration * 1000,
            )
        if result.ok:
            self._tally.processed += 1
            metrics.processed(delivery.channel)
            last, reported = self._last_progress(result)
            if ttl_ms := result.consumer.status_ms:  # written with the ack
                delivery.note = _with_start(result, tracking.end_note(
                    result.envelope.id, tracking.SUCCEEDED, ttl_ms, attempt=result.attempt, result=result.result
                ))
                delivery.note.fields.update(last)
                if result.start is not None:  # the ack writes it with this note, or retries until it does
                    result.start.carried = True
            if reported:  # pushed to its watchers once acked
                self.progress.succeeded(delivery, result.envelope.id, result.result)
            self._leases.finished(delivery)
            return
        task = asyncio.ensure_future(self._settle_failure(result))
        self._failures.add(task)

        def done(task):
            self._failures.discard(task)
            self._leases.release(delivery)
            if not task.cancelled() and task.exception():
                logger.error("could not settle %s", delivery.entry_id, exc_info=task.exception())

        task.add_done_callback(done)

    async def _settle_failure(self, result: Outcome) -> None:
        try:
            await self._failure(result)
        except (RedisError, OSError):
            raise  # still leased: the lease lapses and the next delivery settles it
        except Exception as exc:
            # A failure that cannot be retried (say its next envelope cannot be
            # written) must not come back forever: it becomes a dead letter.
            logger.exception("could not settle %s; dead-lettering it as malformed", result.delivery.entry_id)
            await self.dead_letter(
                result.delivery, None, FailedMessage.Reason.MALFORMED,
                error=f"could not be retried ({type(exc).__name__}: {exc})",
            )

    def _last_progress(self, result: Outcome) -> tuple[dict, bool]:
        """The attempt's last progress (status fields), taken before its outcome is written."""
        if self.progress is None or result.envelope is None:
            return {}, False
        return self.progress.finish(result.envelope.id)

    def _with(self, note, fields: dict):
        if note is not None:
            note.fields.update(fields)
        return note

    async def _failure(self, result: Outcome) -> None:
        delivery, envelope = result.delivery, result.envelope
        last, _ = self._last_progress(result)
        if result.cancelled:
            await self._cancelled(result, last)
            return
        if result.malformed is not None:
            await self.dead_letter(delivery, None, FailedMessage.Reason.MALFORMED, error=result.malformed)
            return
        if result.worker_lost:
            lost = outcome.lost_with_worker(envelope, result.attempt - 1, delivery.deliveries)
            error = (lost.errors[-1]["type"], lost.errors[-1]["message"], None)
            delivery.note = _failed_note(result, result.attempt - 1, error)
            if await self.dead_letter(
                delivery, lost, outcome.WORKER_LOST, consumer=result.consumer.name,
                attempts=result.attempt - 1, max_attempts=result.max_attempts,
            ):
                self._pushed("failed", envelope.id, result.attempt - 1, *error[:2])
            return
        self._tally.failed += 1
        failure = outcome.after_failure(
            envelope, result.attempt, result.max_attempts, result.exc, result.traceback, result.consumer.backoff
        )
        error = (failure.error_type, str(result.exc) or failure.error_type, result.traceback)
        if failure.dead_letter:
            delivery.note = self._with(_failed_note(result, result.attempt, error), last)
            if await self.dead_letter(
                delivery, failure.envelope, failure.reason, consumer=result.consumer.name,
                attempts=result.attempt, max_attempts=result.max_attempts,
            ):
                self._pushed("failed", envelope.id, result.attempt, *error[:2])
            return
        logger.info(
            "retrying channel=%s message=%s attempt=%d/%d in %.2fs error=%s",
            delivery.channel, envelope.id, result.attempt, result.max_attempts, failure.delay, failure.error_type,
        )
        await retry_redis(
            self._partitions[delivery.shard].store.reschedule,
            delivery,
            failure.envelope.encode(),
            int(failure.delay * 1000),
            idempotency_ms=int(settings.IDEMPOTENCY_WINDOW * 1000),
            note=self._with(
                _with_start(result, tracking.retry_note(envelope.id, result.attempt, *error, failure.delay, ttl_ms)), last
            )
            if (ttl_ms := result.consumer.status_ms) else None,
            attempts=20,
        )
        metrics.retried(delivery.channel)
        self._pushed("retrying", envelope.id, result.attempt, *error[:2], failure.delay)

    async def _cancelled(self, result: Outcome, last: dict) -> None:
        """Cancelled before it started, or it raised Cancelled: acked (never retried), its record
        reading ``cancelled`` (written with the ack)."""
        delivery, envelope = result.delivery, result.envelope
        message_id = envelope.id if envelope is not None else message_id_of(delivery.raw)
        logger.info("cancelled channel=%s message=%s", delivery.channel, message_id or "?")
        ttl_ms = tracking.record_ms(result.consumer.result_ttl if result.consumer is not None else None)
        if message_id and ttl_ms:
            delivery.note = self._with(tracking.end_note(message_id, tracking.CANCELLED, ttl_ms), last)
        store = self._partitions[delivery.shard].store
        ms = int(settings.IDEMPOTENCY_WINDOW * 1000)  # a re-send with its key still finds it
        await retry_redis(store.ack, [delivery], outcome="cancelled", idempotency_ms=ms, attempts=20)
        metrics.cancelled(delivery.channel)

    def _pushed(self, what: str, *args) -> None:
        """Tell the message's watchers how the attempt ended, now that its status is written."""
        if self.progress is not None:
            getattr(self.progress, what)(*args)

    async def dead_letter(
        self, delivery: Delivery, envelope, reason: str, *, error="", consumer="", attempts=0, max_attempts=None
    ) -> bool:
        """Write the FailedMessage row, then (only then) ack the message; False when the row was not written."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._bookkeeping,
                lambda: deadletter.record(
                    channel=delivery.channel, entry_id=delivery.entry_id, reason=reason, envelope=envelope,
                    raw=delivery.raw, consumer=consumer, attempts=attempts, max_attempts=max_attempts, error=error,
                    priority=entry_level(delivery.entry_id)[1],
                ),
            )
        except Exception:
            # The row is not written, so the message must not be acked: its
            # lease lapses and the next delivery tries to dead-letter it again.
            logger.exception("could not record dead letter for %s; leaving it leased", delivery.entry_id)
            return False
        store = self._partitions[delivery.shard].store
        await retry_redis(store.ack, [delivery], outcome="failed", attempts=20)
        metrics.dead_lettered(delivery.channel)
        return True


def _failed_note(result: Outcome, attempt: int, error):
    """The status note of a dead letter: ``failed``, with the ``error`` of the attempt that ended it."""
    ttl_ms = result.consumer.status_ms
    if not ttl_ms:
        return None
    return _with_start(result, tracking.end_note(result.envelope.id, tracking.FAILED, ttl_ms, attempt=attempt, error=error))


def _with_start(result: Outcome, note):
    """``note`` carrying the attempt's start too (the same fields as its start note: writing both is
    harmless).  A retry's or dead letter's note may never be written (Redis down, the row not
    saved), so the start note still goes on its own; a success's marks it carried (``settle``)."""
    if result.start is not None:
        note.fields.update(result.start.fields)
    return note
