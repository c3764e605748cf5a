"""One attempt: a leased delivery read and checked before it runs, the consumer's call, and how it ended.

Job threads and runner tasks (``jobs.py``) both go through ``prepare`` and
then ``call`` or ``acall``; the ``Outcome`` goes to settling (``settle.py``).
"""

from __future__ import annotations

import asyncio
import threading
import traceback as traceback_module
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from .. import metrics, outcome
from ..envelope import Envelope, MalformedEnvelope, decode
from ..exceptions import Cancelled, ResultNotSerializable, TimeLimitExceeded
from ..message import Message
from ..registry import Consumer
from ..stores.base import Delivery
from ..stores.notes import Note
from ..text import compact_json


@dataclass(slots=True)
class Outcome:
    """How one delivery ended, reported by a job thread or runner to the loop."""

    delivery: Delivery
    ok: bool = False
    envelope: Envelope | None = None
    consumer: Consumer | None = None
    attempt: int = 0
    max_attempts: int = 0
    exc: BaseException | None = None
    traceback: str | None = None
    malformed: str | None = None  # why the message could not be read
    worker_lost: bool = False  # earlier deliveries died with their worker
    skipped: bool = False  # a reclaimed delivery another worker took before it started
    duration: float = 0.0  # seconds the consumer ran
    cancelled: bool = False  # cancelled before it started, or it raised Cancelled: acked, not retried
    cancel: threading.Event | None = None  # set while it runs if its message is cancelled (Message.cancelled)
    result: str | None = None  # the return value's JSON, when the consumer keeps it (result_ttl)
    # the status note of this attempt's start (jobs.py), repeated in the note that ends it: a
    # retry or dead letter is written at once, maybe before the acker carried the start
    start: Note | None = None

    @property
    def runnable(self) -> bool:
        return self.malformed is None and not self.worker_lost and not self.skipped and not self.cancelled


def prepare(delivery: Delivery, consumer: Consumer) -> Outcome:
    """Decode a delivery and check it may run; a non-None ``malformed`` or
    ``worker_lost`` on the outcome means it must not."""
    result = Outcome(delivery, cancelled=delivery.cancelled)
    if delivery.unreadable is not None:  # the store could not read it (stores/base.py)
        result.malformed = delivery.unreadable
        return result
    try:
        envelope = decode(delivery.raw, delivery.channel)
    except MalformedEnvelope as exc:
        result.malformed = str(exc)
        return result
    except Exception as exc:  # decode() raises nothing else; should it, the message is still unreadable
        result.malformed = f"could not be read ({type(exc).__name__}: {exc})"
        return result
    delivery.idempotency_key = envelope.idempotency_key
    result.envelope = envelope
    result.consumer = consumer
    result.max_attempts = envelope.max_attempts or consumer.max_attempts
    result.cancel = threading.Event()
    if not delivery.reclaimed:
        result.attempt = envelope.attempts_before + delivery.deliveries
        return result
    # A reclaimed copy's earlier deliveries ended with no outcome at all:
    # the worker died (SIGKILL, out of memory, segfault) while holding it.
    # Counting those deliveries, not only exceptions, stops a crash loop.
    result.attempt = envelope.attempts_before + delivery.deliveries + 1
    result.worker_lost = outcome.lost_too_often(result.attempt, result.max_attempts)
    return result


def kept(result: Outcome, value: Any) -> None:
    """Keep the consumer's return value as JSON where it asked to (``result_ttl``); one JSON
    cannot hold raises ResultNotSerializable, which fails the attempt like any exception."""
    if not result.consumer.result_ttl:
        return
    try:
        result.result = compact_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotSerializable(
            f"{result.consumer.name} returned a {type(value).__name__} that JSON cannot hold ({exc}); "
            "return plain values (str, int, float, bool, None, list, dict with str keys)."
        ) from None


def call(result: Outcome) -> None:
    """In a job thread: run a plain consumer; its exception is its outcome."""
    channel = result.delivery.channel
    started = metrics.job_started(channel, result.envelope.sent_at)
    try:
        kept(result, result.consumer.func(Message(result.envelope, result.attempt, result.cancel)))
        result.ok = True
    except (Exception, TimeLimitExceeded) as exc:  # the time limit's exception (worker/time_limits.py) too
        failed(result, exc)
    finally:
        result.duration = metrics.job_finished(channel, started)
        # Django's request hygiene, once per job rather than before and after
        # (it costs a thread-local lookup per call): drop connections that
        # broke or passed CONN_MAX_AGE, so the next job on this thread starts
        # with a usable one.
        close_old_connections()


def failed(result: Outcome, exc: BaseException) -> None:
    """Record the exception an attempt ended with; ``Cancelled`` ends it as cancelled."""
    result.ok = False
    result.exc = exc
    result.traceback = traceback_module.format_exc()
    result.cancelled = isinstance(exc, Cancelled)


async def acall(result: Outcome, time_limit: float | None = None) -> None:
    """On the loop: run an ``async def`` consumer, cancelled past ``time_limit`` seconds; its exception is its outcome."""
    channel = result.delivery.channel
    started = metrics.job_started(channel, result.envelope.sent_at)
    limit = asyncio.timeout(time_limit)
    try:
        async with limit:
            kept(result, await result.consumer.func(Message(result.envelope, result.attempt, result.cancel)))
        result.ok = True
    except TimeoutError as exc:
        # The limit's own timeout, not one the consumer raised itself.
        failed(result, TimeLimitExceeded() if limit.expired() else exc)
    except Exception as exc:
        failed(result, exc)
    result.duration = metrics.job_finished(channel, started)
