"""The worker: leases messages from taskchan channels and runs their consumers.

One process, one asyncio loop, plus ``concurrency`` job threads:

- the *fetcher* (loop) leases messages with one XREADGROUP for all channels,
  keeping at most ``concurrency + prefetch`` unfinished ones (finished ones
  stay leased only until their batched ack lands), so a worker cannot drain a
  channel into memory; with taskchan channels sharded over several Redis
  hosts there is one fetcher per host (a *partition*), sharing that bound;
- plain consumers run in ``concurrency`` long-lived *job threads* that pull
  from a queue (one channel's messages run side by side, unlike channels'
  worker); ``async def`` consumers run in as many *runner tasks* on the loop;
- outcomes come back to the loop in batches (one cross-thread wake-up per
  batch, not per job); successes go to the *acker* (``acker.py``), which acks
  a whole batch in one pipelined round trip while the next batch collects;
  failures are retried (``reschedule.lua``) or dead-lettered; a message that
  cannot be read is dead-lettered as malformed and the worker goes on;
- *upkeep*, one loop per partition, promotes due delayed/retried messages,
  renews the leases this worker holds there (heartbeat), reclaims leases that
  lapsed elsewhere (a dead worker's) and registers the worker; each step has a
  time limit, so a Redis host that is down delays only its own partition;
- *maintenance* relays stale send_on_commit rows, looks for channels left on
  other hosts (``partitions``), and ends a burst run.

A Redis host that does not answer is backed off from, with a log line per
backoff step (``outage.py``); a channel whose key has the wrong type is set
aside while the others go on (``quarantine.py``).  A loop or thread that dies
anyway ends the process with status 70 so that its supervisor restarts it
(``lifeline.py``): a worker never stays up unable to work.

Stopping (SIGTERM, SIGINT): stop leasing; let running jobs finish for up to
the grace period; hand the leased-but-unstarted messages back to the channel;
flush acks; deregister.  Heartbeats go on during the grace period, so a long
job's lease stays ours while it finishes.  A job still running after the grace
period keeps its lease, which lapses and is reclaimed by another worker: the
job runs again rather than being lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import traceback as traceback_module
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tenacity
from django.db import close_old_connections
from redis.exceptions import RedisError

from .. import deadletter, metrics, outbox, registry, retry
from ..conf import settings
from ..envelope import Envelope, MalformedEnvelope, decode
from ..layers import get_store
from ..message import Message
from ..models import FailedMessage
from ..registry import Consumer
from ..stores.base import Delivery, Partition, StoreBase
from . import lifeline
from .acker import Acker
from .outage import RedisHealth, redis_retrying

logger = logging.getLogger("taskchan.worker")
#: one DEBUG line per attempt that ran: turn it on with ``runworker -v 2`` or LOGGING
job_logger = logging.getLogger("taskchan.jobs")

#: seconds a fetch blocks in Redis waiting for new messages; bounds how long a
#: stop request waits for the fetcher to notice
FETCH_BLOCK_SECONDS = 1.0
#: seconds between worker-registry heartbeats and outbox sweeps
HOUSEKEEPING_INTERVAL = 5.0
#: seconds between passes that forget the consumer names of dead workers, and
#: how long a name must have been idle (holding no lease) to be forgotten.  A
#: live worker reads every second unless it has no room; if its name on some
#: channel is forgotten meanwhile, its next read there recreates it
FORGET_INTERVAL = 300.0
FORGET_IDLE_SECONDS = 600.0

#: outcomes a job thread lets collect before waking the loop, while work is queued
OUTCOME_BATCH = 16

_STOP = object()  # tells a job thread to exit


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


class Worker:
    def __init__(
        self,
        channels: list[str],
        *,
        store: StoreBase | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        burst: bool = False,
        grace: float | None = None,
        poll_interval: float | None = None,
    ):
        if not channels:
            raise ValueError("a worker needs at least one taskchan channel")
        for channel in channels:
            if registry.get_consumer(channel) is None:
                raise registry.UnknownPattern(f"no consumer is registered for {channel!r}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.channels = list(channels)
        self.store = store or get_store()
        self.concurrency = concurrency
        self.prefetch = settings.PREFETCH if prefetch is None else prefetch
        self.burst = burst
        self.grace = settings.SHUTDOWN_GRACE if grace is None else grace
        self.poll_interval = settings.POLL_INTERVAL if poll_interval is None else poll_interval
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.consumer_name = self.id  # our name in each stream's consumer group
        self.started_at = time.time()
        self.processed = 0
        self.failed = 0
        self._consumers = {c: registry.get_consumer(c) for c in self.channels}
        self._vt = {c: self._consumers[c].visibility_timeout for c in self.channels}
        self._has_sync = any(not c.is_async for c in self._consumers.values())
        self._has_async = any(c.is_async for c in self._consumers.values())

        # What this worker reads: one partition per store (one per Redis host
        # when sharded), keyed by Partition.index; only ever added to.
        self._parts: dict[int, Partition] = {}
        self._prepared: set[tuple[int, str]] = set()  # (partition, channel) whose consumer group exists
        self._fetchers: dict[int, asyncio.Task] = {}
        self._upkeep: dict[int, asyncio.Task] = {}  # partition -> its maintenance loop
        self._reclaim_lock = asyncio.Lock()
        self._reserved: dict[int, int] = {}  # partition -> messages its fetch in progress may bring
        self._held: dict[tuple, Delivery] = {}  # Delivery.key -> delivery leased to us (loop thread only)
        self._held_per_part: collections.Counter[int] = collections.Counter()
        self._acker = Acker(self._parts)  # successes waiting for their ack (acker.py)
        self._settling: set[asyncio.Task] = set()
        # job threads <-> loop
        self._thread_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._unstarted: collections.deque[Delivery] = collections.deque()
        self._notify_lock = threading.Lock()
        self._notify_pending = False
        self._stop_flag = threading.Event()
        # Dead letters and outbox sweeps touch the database; they get their own
        # thread so they never wait behind long jobs.
        self._bookkeeping = ThreadPoolExecutor(1, thread_name_prefix="taskchan-db")
        self._abandon = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_queue: asyncio.Queue[Delivery] | None = None
        self._room: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None

    # -- entry points -------------------------------------------------------

    def run(self) -> bool:
        """Run until stopped (or idle, in burst mode). Returns False if jobs were abandoned."""
        return asyncio.run(self.arun())

    def request_stop(self) -> None:
        """Begin a graceful stop; a second call stops waiting for running jobs. Call on the worker's loop."""
        if self._stopping is None:
            return
        if self._stopping.is_set():
            self._abandon = True
            logger.warning("second stop request: not waiting for running jobs")
        self._stopping.set()

    async def arun(self) -> bool:
        self._loop = loop = asyncio.get_running_loop()
        self._async_queue = asyncio.Queue()
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._health = RedisHealth()  # outages and channels set aside, per Redis host
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        await self._retry_redis(self._refresh_partitions)
        logger.info(
            "worker %s serving %s (concurrency %d, prefetch %d%s)",
            self.id, ", ".join(self.channels), self.concurrency, self.prefetch, ", burst" if self.burst else "",
        )
        runners, acker, maintenance = self._start_loops()
        clean = True
        try:
            await self._stopping.wait()
            logger.info("worker %s stopping", self.id)
            await asyncio.gather(*self._fetchers.values())
            clean = await self._finish_running(runners)
            await self._hand_back_unstarted()
            # The acker may be half-way through a batch: stop it (it puts the
            # batch back) so the final flush sees every ack.
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
            await self._acker.flush(lambda: self._abandon)
        finally:
            tasks = (*self._fetchers.values(), *self._upkeep.values(), acker, maintenance, *runners)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._each_partition(
                "deregistration",
                lambda part: part.store.remove_worker(self.id, self.consumer_name if clean else None, part.channels),
            )
            self._bookkeeping.shutdown(wait=True)
            if in_main_thread:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        logger.info("worker %s stopped: %d processed, %d failed", self.id, self.processed, self.failed)
        return clean

    #: unix time the worker last finished a job (any outcome), shown in its registry entry
    last_finished: float | None = None
    #: called with (what, exception) when a loop or thread dies; ends the process (lifeline.py)
    on_fatal = staticmethod(lifeline.exit_process)

    def _start_loops(self) -> tuple[list[asyncio.Task], asyncio.Task, asyncio.Task]:
        """Job threads, async runners, the acker and maintenance, each watched (lifeline.py)."""
        if self._has_sync:
            for i in range(self.concurrency):
                # Daemon threads: a job that outlives the grace period must not
                # keep the process alive; its lease lapses and it runs elsewhere.
                name = f"taskchan-job-{i}"
                target = lifeline.guarded_thread_target(self._thread_main, f"job thread {name}", self._died)
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        runners = [self._watched(self._runner(), f"taskchan-run-{i}") for i in range(self.concurrency if self._has_async else 0)]
        return runners, self._watched(self._acker.run(), "taskchan-ack"), self._watched(
            self._maintenance_loop(), "taskchan-maintenance"
        )

    def _watched(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        return lifeline.watch(task, f"loop {name}", self._stopping.is_set, self._died)

    def _died(self, what: str, exc: BaseException | None) -> None:
        self.on_fatal(f"worker {self.id}: {what}", exc)

    # -- stopping -----------------------------------------------------------

    async def _finish_running(self, runners) -> bool:
        # Job threads finish the job in hand, then move whatever is still
        # queued to the unstarted list; runner tasks stop before the next one.
        self._stop_flag.set()
        for _ in self._threads:
            self._thread_queue.put(_STOP)
        deadline = time.monotonic() + self.grace
        while True:
            for r in runners:
                if not r.done() and getattr(r, "idle", False):
                    r.cancel()  # waiting on an empty queue: holds no job
            busy = sum(t.is_alive() for t in self._threads) + sum(not r.done() for r in runners)
            if not busy and not self._settling:
                self._drain_outcomes()
                if not self._settling:
                    return True
            if self._abandon or time.monotonic() > deadline:
                logger.warning(
                    "%d job(s) still running after %.0f s; leaving their leases to lapse so "
                    "another worker runs them again", busy, self.grace,
                )
                return False
            await asyncio.sleep(0.02)

    async def _hand_back_unstarted(self) -> None:
        unstarted = list(self._unstarted)
        while not self._async_queue.empty():
            unstarted.append(self._async_queue.get_nowait())
        while True:
            try:
                item = self._thread_queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                unstarted.append(item)
        for d in unstarted:
            if d.reclaimed:
                d.raw = _with_lost_attempts(d)
        by_part: dict[int, list[Delivery]] = {}
        for d in unstarted:
            by_part.setdefault(d.shard, []).append(d)
        for index, batch in by_part.items():
            store = self._parts[index].store
            try:
                returned = await self._retry_redis(store.hand_back, batch, attempts=5)
            except (RedisError, OSError) as exc:
                # Still leased to us: they lapse and are reclaimed, as after a crash.
                logger.warning("could not hand %d message(s) back to %r: %s", len(batch), store, exc)
                continue
            logger.info("handed %s unstarted message(s) back", returned)
            for d in batch:
                self._release(d)

    # -- leasing ------------------------------------------------------------

    async def _refresh_partitions(self) -> None:
        """Learn what to read (at start, then at housekeeping); start a fetcher per new partition.

        A sharded store may name more over time: a channel whose home moved
        (the hosts list changed) is read on its old home too, for as long as
        that host lists it.
        """
        for part in await self.store.partitions(self.channels):
            known = self._parts.get(part.index)
            if known is None:
                self._parts[part.index] = part
                if self._stopping is not None and not self._stopping.is_set():
                    self._fetchers[part.index] = self._watched(
                        self._fetch_loop(part.index), f"taskchan-fetch-{part.index}"
                    )
                    self._upkeep[part.index] = self._watched(
                        self._upkeep_loop(part.index), f"taskchan-upkeep-{part.index}"
                    )
            elif set(part.channels) - set(known.channels):
                known.channels = [*known.channels, *(c for c in part.channels if c not in known.channels)]

    async def _fetch_loop(self, index: int) -> None:
        block_ms = int(FETCH_BLOCK_SECONDS * 1000 if not self.burst else 100)
        capacity = self.concurrency + self.prefetch
        while not self._stopping.is_set():
            part = self._parts[index]
            held = len(self._held)
            room = capacity - held - sum(self._reserved.values())
            # Refill in batches: while every job slot still has work queued,
            # wait until half the prefetch is free, so one read brings many
            # messages instead of one read per finished job.
            starving = held <= self.concurrency
            # With several partitions, one that holds nothing may always read
            # one message: another partition's blocking read must not starve it
            # (the bound grows by at most one per extra Redis host).
            if self._held_per_part[index] == 0 and room <= 0:
                room = 1
            if room <= 0 or (not starving and room < max(1, self.prefetch // 2)):
                self._room.clear()
                await self._wait_either(self._room, self._stopping)
                continue
            # Each partition reads at most its share of the free room, so an
            # idle host's blocking read leaves room for the others.
            count = min(room, max(1, -(-(capacity - held) // len(self._parts))))
            channels = self._health.usable(part)
            self._reserved[index] = count
            try:
                if not channels:  # every channel here is set aside: nothing to read for now
                    await self._sleep_unless_stopping(FETCH_BLOCK_SECONDS)
                    continue
                await self._prepare_partition(part, channels)
                # Redis applies COUNT per stream: split it between the channels
                # so a multi-channel worker stays near its bound.
                per_stream = max(1, count // len(channels))
                deliveries = await part.store.fetch(channels, self.consumer_name, per_stream, block_ms)
            except (RedisError, OSError) as exc:
                # Free this host's share of the room while it backs off.
                self._reserved[index] = 0
                self._room.set()
                await self._sleep_unless_stopping(await self._health.failed("fetch", part, channels, exc))
                continue
            finally:
                self._reserved[index] = 0
                self._room.set()
            self._health.answered(part)
            self._enqueue(deliveries, index)

    async def _prepare_partition(self, part: Partition, channels: list[str]) -> None:
        new = [c for c in channels if (part.index, c) not in self._prepared]
        if new:
            await part.store.prepare(new)
            self._prepared.update((part.index, c) for c in new)

    def _enqueue(self, deliveries, index: int) -> None:
        for d in deliveries:
            d.shard = index
            if d.key not in self._held:
                self._held_per_part[index] += 1
            self._held[d.key] = d
            if self._consumers[d.channel].is_async:
                self._async_queue.put_nowait(d)
            else:
                self._thread_queue.put(d)

    def _release(self, delivery: Delivery) -> None:
        """It no longer counts against concurrency + prefetch (finished, handed back, or taken elsewhere)."""
        if self._held.pop(delivery.key, None) is not None:
            self._held_per_part[delivery.shard] -= 1

    # -- running ------------------------------------------------------------

    def _prepare(self, delivery: Delivery) -> Outcome:
        """Decode a delivery and check it may run; a non-None ``malformed`` or
        ``worker_lost`` on the outcome means it must not."""
        outcome = Outcome(delivery)
        if delivery.unreadable is not None:  # the store could not read it (stores/base.py)
            outcome.malformed = delivery.unreadable
            return outcome
        try:
            envelope = decode(delivery.raw, delivery.channel)
        except MalformedEnvelope as exc:
            outcome.malformed = str(exc)
            return outcome
        except Exception as exc:  # decode() raises nothing else; should it, the message is still unreadable
            outcome.malformed = f"could not be read ({type(exc).__name__}: {exc})"
            return outcome
        consumer = self._consumers[delivery.channel]
        delivery.idempotency_key = envelope.idempotency_key
        outcome.envelope = envelope
        outcome.consumer = consumer
        outcome.max_attempts = envelope.max_attempts or consumer.max_attempts
        if not delivery.reclaimed:
            outcome.attempt = envelope.attempts_before + delivery.deliveries
            return outcome
        # A reclaimed copy's earlier deliveries ended with no outcome at all:
        # the worker died (SIGKILL, out of memory, segfault) while holding it.
        # Counting those deliveries, not only exceptions, stops a crash loop.
        outcome.attempt = envelope.attempts_before + delivery.deliveries + 1
        outcome.worker_lost = outcome.attempt > outcome.max_attempts
        return outcome

    def _runnable(self, outcome: Outcome) -> bool:
        return outcome.malformed is None and not outcome.worker_lost and not outcome.skipped

    def _thread_main(self) -> None:
        while True:
            delivery = self._thread_queue.get()
            if delivery is _STOP:
                return
            if self._stop_flag.is_set():
                self._unstarted.append(delivery)
                continue
            outcome = self._prepare(delivery)
            if delivery.reclaimed and self._runnable(outcome):
                outcome.skipped = not self._charge_sync(delivery)
            if self._runnable(outcome):
                # The consumer's exceptions are its outcome; anything that
                # escapes here ends the thread, and lifeline.py the process.
                started = metrics.job_started(delivery.channel, outcome.envelope.sent_at)
                try:
                    outcome.consumer.func(Message(outcome.envelope, outcome.attempt))
                    outcome.ok = True
                except Exception as exc:
                    outcome.exc = exc
                    outcome.traceback = traceback_module.format_exc()
                finally:
                    outcome.duration = metrics.job_finished(delivery.channel, started)
                    # Django's request hygiene, once per job rather than before
                    # and after (it costs a thread-local lookup per call): drop
                    # connections that broke or passed CONN_MAX_AGE, so the next
                    # job on this thread starts with a usable one.
                    close_old_connections()
            self._report(outcome)

    def _charge_sync(self, delivery: Delivery) -> bool:
        """From a job thread: record that a reclaimed delivery starts (one round trip).

        It must be in Redis before the job runs, or a job that kills its
        worker would never be charged and could crash-loop forever.
        """
        retrying = redis_retrying(tenacity.Retrying, attempts=20)
        try:
            return retrying(self._parts[delivery.shard].store.charge, delivery, self.consumer_name)
        except (RedisError, OSError) as exc:
            # Not started, not charged: skip it.  It stays leased to us until the
            # lease lapses; then it is reclaimed and charged again.
            logger.warning("could not charge %s before starting it (%s); leaving it to lapse", delivery.entry_id, exc)
            return False

    def _report(self, outcome: Outcome) -> None:
        """From a job thread: queue the outcome, waking the loop once per batch.

        While the threads still have plenty queued, outcomes collect without
        waking the loop (each wake-up is a pipe write and a GIL hand-over);
        the loop is woken when a batch has built up or the queue runs low and
        needs refilling.
        """
        self._outcomes.append(outcome)
        if len(self._outcomes) < OUTCOME_BATCH and self._thread_queue.qsize() > self.concurrency:
            return
        with self._notify_lock:
            if self._notify_pending:
                return
            self._notify_pending = True
        try:
            self._loop.call_soon_threadsafe(self._drain_outcomes)
        except RuntimeError:  # the loop is gone: the process is exiting
            pass

    def _drain_outcomes(self) -> None:
        with self._notify_lock:
            self._notify_pending = False
        while self._outcomes:
            self._settle(self._outcomes.popleft())

    async def _runner(self) -> None:
        task = asyncio.current_task()
        while not self._stopping.is_set():
            task.idle = True
            delivery = await self._async_queue.get()
            task.idle = False
            if self._stopping.is_set():
                self._unstarted.append(delivery)
                return
            outcome = self._prepare(delivery)
            if delivery.reclaimed and self._runnable(outcome):
                store = self._parts[delivery.shard].store
                try:
                    outcome.skipped = not await self._retry_redis(
                        store.acharge, delivery, self.consumer_name, attempts=20
                    )
                except (RedisError, OSError) as exc:  # as in _charge_sync
                    logger.warning("could not charge %s before starting it (%s)", delivery.entry_id, exc)
                    outcome.skipped = True
            if self._runnable(outcome):
                started = metrics.job_started(delivery.channel, outcome.envelope.sent_at)
                try:
                    await outcome.consumer.func(Message(outcome.envelope, outcome.attempt))
                    outcome.ok = True
                except Exception as exc:
                    outcome.exc = exc
                    outcome.traceback = traceback_module.format_exc()
                outcome.duration = metrics.job_finished(delivery.channel, started)
            self._settle(outcome)

    def _settle(self, outcome: Outcome) -> None:
        """On the loop: ack a success now (batched); retry or dead-letter a failure."""
        delivery = outcome.delivery
        if outcome.skipped:
            # Taken by another worker before it started here: not ours to settle.
            self._release(delivery)
            self._room.set()
            return
        self.last_finished = time.time()
        if (outcome.ok or outcome.exc is not None) and job_logger.isEnabledFor(logging.DEBUG):
            job_logger.debug(
                "%s channel=%s message=%s attempt=%d duration=%.2fms",
                "done" if outcome.ok else f"failed ({type(outcome.exc).__name__})",
                delivery.channel, outcome.envelope.id, outcome.attempt, outcome.duration * 1000,
            )
        if outcome.ok:
            self.processed += 1
            metrics.processed(delivery.channel)
            # Finished: it no longer counts against concurrency + prefetch (the
            # bound on work held), though it stays leased until its ack lands,
            # at most ACK_DELAY later; heartbeats cover it meanwhile.
            self._release(delivery)
            self._acker.add(delivery)
            self._room.set()
            return
        task = asyncio.ensure_future(self._settle_failure(outcome))
        self._settling.add(task)

        def done(task):
            self._settling.discard(task)
            self._release(delivery)
            self._room.set()
            if not task.cancelled() and task.exception():
                logger.error("could not settle %s", delivery.entry_id, exc_info=task.exception())

        task.add_done_callback(done)

    async def _settle_failure(self, outcome: Outcome) -> None:
        try:
            await self._settle_failure_of(outcome)
        except (RedisError, OSError):
            raise  # still leased: the lease lapses and the next delivery settles it
        except Exception as exc:
            # A failure that cannot be retried (say its next envelope cannot be
            # written) must not come back forever: it becomes a dead letter.
            logger.exception("could not settle %s; dead-lettering it as malformed", outcome.delivery.entry_id)
            await self._dead_letter(
                outcome.delivery, None, FailedMessage.Reason.MALFORMED,
                error=f"could not be retried ({type(exc).__name__}: {exc})",
            )

    async def _settle_failure_of(self, outcome: Outcome) -> None:
        delivery, envelope = outcome.delivery, outcome.envelope
        if outcome.malformed is not None:
            await self._dead_letter(delivery, None, FailedMessage.Reason.MALFORMED, error=outcome.malformed)
            return
        if outcome.worker_lost:
            lost = _lost_to_dead_workers(envelope, outcome.attempt - 1, delivery)
            await self._dead_letter(
                delivery, lost, FailedMessage.Reason.WORKER_LOST, consumer=outcome.consumer.name,
                attempts=outcome.attempt - 1, max_attempts=outcome.max_attempts,
            )
            return
        self.failed += 1
        exc = outcome.exc
        exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        next_envelope = envelope.failed(outcome.attempt, exc_type, str(exc) or exc_type, outcome.traceback)
        decision = retry.decide(exc, outcome.attempt, outcome.max_attempts, outcome.consumer.backoff)
        if decision.dead_letter:
            reason = (
                FailedMessage.Reason.REJECTED if decision.reason == "rejected" else FailedMessage.Reason.EXHAUSTED
            )
            await self._dead_letter(
                delivery, next_envelope, reason, consumer=outcome.consumer.name,
                attempts=outcome.attempt, max_attempts=outcome.max_attempts,
            )
            return
        logger.info(
            "retrying channel=%s message=%s attempt=%d/%d in %.2fs error=%s",
            delivery.channel, envelope.id, outcome.attempt, outcome.max_attempts, decision.delay, exc_type,
        )
        await self._retry_redis(
            self._parts[delivery.shard].store.reschedule,
            delivery,
            next_envelope.encode(),
            int(decision.delay * 1000),
            idempotency_ms=int(settings.IDEMPOTENCY_WINDOW * 1000),
            attempts=20,
        )
        metrics.retried(delivery.channel)

    async def _dead_letter(self, delivery, envelope, reason, *, error="", consumer="", attempts=0, max_attempts=None):
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._bookkeeping,
                lambda: deadletter.record(
                    channel=delivery.channel, entry_id=delivery.entry_id, reason=reason, envelope=envelope,
                    raw=delivery.raw, consumer=consumer, attempts=attempts, max_attempts=max_attempts, error=error,
                ),
            )
        except Exception:
            # The row is not written, so the message must not be acked: its
            # lease lapses and the next delivery tries to dead-letter it again.
            logger.exception("could not record dead letter for %s; leaving it leased", delivery.entry_id)
            return
        store = self._parts[delivery.shard].store
        await self._retry_redis(store.ack, [delivery], outcome="failed", attempts=20)
        metrics.dead_lettered(delivery.channel)

    # -- maintenance --------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        """What concerns the whole worker: housekeeping, and the burst-mode end."""
        next_housekeeping = 0.0
        while True:
            now = time.monotonic()
            if now >= next_housekeeping:
                await self._housekeeping()
                next_housekeeping = now + HOUSEKEEPING_INTERVAL
            if self.burst and not self._stopping.is_set():
                try:
                    if await self._burst_done():
                        logger.info("burst: nothing queued, scheduled or in flight; stopping")
                        self._stopping.set()
                except (RedisError, OSError) as exc:
                    logger.warning("maintenance: Redis error %s", exc)
            await asyncio.sleep(self.poll_interval)

    async def _upkeep_loop(self, index: int) -> None:
        """One partition's maintenance: promote, renew leases, reclaim, heartbeat.

        One loop per Redis host, so a host that is down or frozen (each call
        waits up to the store's socket timeout) delays only its own upkeep:
        the renewal of leases held on the others goes on.
        """
        next_reclaim = next_extend = next_heartbeat = 0.0
        # Spread over workers (not security-relevant randomness).
        next_forget = time.monotonic() + FORGET_INTERVAL * random.uniform(0.5, 1.0)  # noqa: S311
        min_vt = min(self._vt.values())
        while True:
            part = self._parts[index]
            now = time.monotonic()
            if not self._stopping.is_set():
                await self._guarded("promote", part, self._promote)
                await self._guarded("checking unreadable channels", part, self._health.recheck, always_calls=False)
            if now >= next_extend:
                await self._guarded("lease renewal", part, self._extend_leases, always_calls=False)
                next_extend = now + min_vt / 3
            if now >= next_reclaim and not self._stopping.is_set():
                await self._guarded("reclaim", part, self._reclaim, always_calls=False)
                next_reclaim = now + min(1.0, min_vt / 4)
            if now >= next_heartbeat:
                await self._guarded("worker heartbeat", part, self._heartbeat)
                next_heartbeat = now + HOUSEKEEPING_INTERVAL
            if now >= next_forget and not self._stopping.is_set():
                await self._guarded("forgetting dead consumers", part, self._forget_dead_consumers, always_calls=False)
                next_forget = now + FORGET_INTERVAL
            # While the host does not answer, its upkeep backs off with its fetcher.
            await asyncio.sleep(max(self.poll_interval, self._health.delay(index)))

    async def _guarded(self, what: str, part: Partition, step, *, always_calls: bool = True) -> None:
        """``step(part)``, reporting Redis errors to the host's outage or quarantine instead of raising.

        Only a step that ``always_calls`` Redis can tell that the host answers
        again: one that may have had nothing to send proves nothing.

        No time limit of its own: every Redis call gives up after the store's
        socket timeout, and a step cut off half-way would starve the channels
        at the end of its list.
        """
        channels = self._health.usable(part)
        try:
            await step(Partition(part.index, part.store, channels))
        except (RedisError, OSError) as exc:
            await self._health.failed(what, part, channels, exc)  # the upkeep loop backs off
        else:
            if always_calls:
                self._health.answered(part)

    async def _each_partition(self, what: str, step) -> None:
        """``step`` on every partition side by side (each guarded)."""
        await asyncio.gather(*(self._guarded(what, part, step) for part in list(self._parts.values())))

    async def _promote(self, part: Partition) -> None:
        await part.store.promote_all(part.channels)

    async def _burst_done(self) -> bool:
        if self._held or self._acker.pending:
            return False
        for part in self._parts.values():
            channels = self._health.usable(part)
            if channels and not await part.store.is_idle(channels):
                return False
        return True

    async def _extend_leases(self, part: Partition) -> None:
        by_channel: dict[str, list[str]] = {}
        for d in [*self._held.values(), *self._acker.pending]:
            if d.shard == part.index:
                by_channel.setdefault(d.channel, []).append(d.entry_id)
        for channel, ids in by_channel.items():
            lost = await part.store.extend(channel, self.consumer_name, ids)
            if lost:
                logger.warning("%d lease(s) on %s lapsed and were taken by another worker", len(lost), channel)

    async def _reclaim(self, part: Partition) -> None:
        # One host at a time: each reclaim sizes itself by the room left, which
        # the others' reclaims would otherwise fill at the same moment.
        async with self._reclaim_lock:
            for channel in part.channels:
                room = self.concurrency + self.prefetch - len(self._held)
                if room <= 0:
                    return
                vt_ms = int(self._vt[channel] * 1000)
                reclaimed = await part.store.reclaim(channel, self.consumer_name, vt_ms, room)
                if reclaimed:
                    logger.warning("reclaimed %d message(s) on %s whose lease lapsed", len(reclaimed), channel)
                    metrics.redelivered(channel, len(reclaimed))
                    self._enqueue(reclaimed, part.index)

    async def _forget_dead_consumers(self, part: Partition) -> None:
        for channel in part.channels:
            forgotten = await part.store.forget_idle_consumers(channel, int(FORGET_IDLE_SECONDS * 1000))
            if forgotten:
                logger.info("forgot %d idle consumer name(s) of dead workers on %s", forgotten, channel)

    async def _heartbeat(self, part: Partition) -> None:
        # Registered on every host the worker reads, so the registry of each
        # host lists who serves its channels.
        await part.store.heartbeat_worker(self.id, self._info(), ttl=3 * HOUSEKEEPING_INTERVAL)

    def _info(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "channels": self.channels,
            "concurrency": self.concurrency,
            "started": self.started_at,
            "processed": self.processed,
            "failed": self.failed,
            "last_finished": self.last_finished,
            # channels it cannot read (a key of the wrong type) -> why
            "unreadable": self._health.quarantine.report(),
        }

    async def _housekeeping(self) -> None:
        if not self._stopping.is_set():
            try:
                await self._refresh_partitions()
            except (RedisError, OSError) as exc:
                logger.warning("could not refresh what to read: %s", exc)
        loop = asyncio.get_running_loop()
        try:
            relayed = await loop.run_in_executor(self._bookkeeping, _sweep_outbox)
        except Exception as exc:  # no table yet, database down: not the worker's problem
            logger.debug("outbox sweep skipped: %s", exc)
        else:
            if relayed:
                logger.warning("relayed %d send_on_commit message(s) whose relay never ran", relayed)

    # -- helpers ------------------------------------------------------------

    async def _retry_redis(self, fn, *args, attempts: int = 0, **kwargs):
        """Await ``fn(*args, **kwargs)``, retrying Redis errors with backoff (forever when attempts is 0)."""
        return await redis_retrying(tenacity.AsyncRetrying, attempts)(fn, *args, **kwargs)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    @staticmethod
    async def _wait_either(*events: asyncio.Event) -> None:
        waits = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


def _with_lost_attempts(delivery: Delivery) -> str:
    """The envelope of a reclaimed, unstarted delivery with the attempts lost
    with earlier workers folded in, so a hand-back keeps the crash count."""
    try:
        envelope = decode(delivery.raw, delivery.channel)
    except MalformedEnvelope:
        return delivery.raw  # dead-lettered as malformed wherever it is read next
    return _lost_to_dead_workers(envelope, envelope.attempts_before + delivery.deliveries, delivery).encode()


def _lost_to_dead_workers(envelope: Envelope, attempts: int, delivery: Delivery) -> Envelope:
    """``envelope`` with ``attempts`` made, the last lost with the worker(s) that held ``delivery``."""
    return envelope.failed(
        attempts, "taskchan.WorkerLost", f"the worker running it was lost {delivery.deliveries} time(s)", None
    )


def _sweep_outbox() -> int:
    close_old_connections()
    try:
        return outbox.sweep()
    finally:
        close_old_connections()
