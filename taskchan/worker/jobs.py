"""Where leased messages run: job threads for plain consumers, runner tasks for ``async def`` ones.

Plain consumers run in ``concurrency`` long-lived daemon threads that pull
from a queue (one channel's messages run side by side, unlike channels'
worker), as many at a time as the work needs (``spares.py``); ``async def`` consumers run in as many runner tasks on the loop.
Outcomes come back to the loop in batches (one cross-thread wake-up per
batch, not per job) and go to ``settle``.

A reclaimed delivery is charged as an attempt in Redis just before it starts
(``charge``): a job that kills its worker must still be counted, or it could
crash-loop forever.

When the worker stops, job threads finish the job in hand, then set aside
what is still queued; runner tasks stop before their next job (an idle one is
cancelled).  What was set aside is ``unstarted``: handed back to its channel.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import queue
import threading
import time
from collections.abc import Callable

import tenacity
from redis.exceptions import RedisError

from .. import tracking
from ..conf import settings
from ..registry import Consumer
from ..stores.base import Delivery
from ..stores.notes import Note
from . import attempt, lifeline, time_limits
from .attempt import Outcome
from .outage import redis_retrying, retry_redis
from .partitions import Partitions
from .running import Job, Running
from .spares import Spares

logger = logging.getLogger("taskchan.worker")

#: outcomes a job thread lets collect before waking the loop, while work is queued
OUTCOME_BATCH = 16

_STOP = object()  # tells a job thread to exit

_current = threading.local()  # in a job thread: the worker's loop and id (``running_in``)


def running_in() -> tuple[asyncio.AbstractEventLoop, str] | None:
    """In a job thread: (the worker's event loop, the worker's id); None anywhere else.

    A plain consumer that must run a coroutine on the worker's loop (the
    django.tasks backend's async tasks) hands it there and waits.
    """
    return getattr(_current, "worker", None)


class JobThreads:
    """Plain consumers' threads, and the outcome queue back to the loop."""

    def __init__(
        self,
        count: int,
        consumers: dict[str, Consumer],
        charge: Callable[[Delivery], bool],
        settle: Callable[[Outcome], None],
        running: Running,
        started: Callable[[Outcome], None],
        worker_id: str = "",
    ):
        self._count = count
        self._consumers = consumers
        self._charge = charge
        self._settle = settle
        self._running = running  # what runs now, under its time limit (time_limits.py)
        self._spawned = 0
        self._on_death = None
        self._started = started
        self._worker_id = worker_id
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._spares = Spares(self._queue.qsize)  # how many threads take work (spares.py)
        self._threads: list[threading.Thread] = []
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._notify_lock = threading.Lock()
        self._notify_pending = False
        self._stop_flag = threading.Event()
        self._unstarted: collections.deque[Delivery] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, on_death) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_death = on_death
        self._threads = [self._spawn() for _ in range(self._count)]

    def _spawn(self) -> threading.Thread:
        # Daemon threads: a job that outlives the grace period (or is stuck
        # past its time limit) must not keep the process alive.
        name = f"taskchan-job-{self._spawned}"
        self._spawned += 1
        target = lifeline.guarded_thread_target(self._main, f"job thread {name}", self._on_death)
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def replace(self, job: Job, outcome: Outcome) -> None:
        """From the watchdog: ``job``'s thread is stuck and abandoned; a fresh thread takes its
        place and the job's outcome is reported for it."""
        self._threads = [t for t in self._threads if t is not job.thread] + [self._spawn()]
        if self._stop_flag.is_set():
            self._queue.put(_STOP)  # stop() may have counted the threads before this one
        self._report(outcome)

    def submit(self, delivery: Delivery) -> None:
        self._queue.put(delivery)
        self._spares.submitted(self._loop)

    def _take(self, wake: threading.Event):
        """The next job (or _STOP) for this thread, which waits on the queue or parks meanwhile."""
        while True:
            try:
                item = self._queue.get_nowait()
                break
            except queue.Empty:
                if self._spares.idle(wake):
                    item = self._queue.get()
                    self._spares.got()
                    break
        self._spares.taken += 1
        return item

    def _main(self) -> None:
        _current.worker = (self._loop, self._worker_id)
        wake = threading.Event()
        while True:
            delivery = self._take(wake)
            if delivery is _STOP:
                return
            if self._stop_flag.is_set():
                self._unstarted.append(delivery)
                continue
            result = attempt.prepare(delivery, self._consumers[delivery.channel])
            if delivery.reclaimed and result.runnable:
                result.skipped = not self._charge(delivery)
            if result.runnable:
                self._started(result)
                # The consumer's exceptions are its outcome; anything that
                # escapes here ends the thread, and lifeline.py the process.
                if not time_limits.run_in_thread(self._running, result):
                    return  # abandoned past its time limit: replaced, its outcome reported for it
            self._report(result)

    def _report(self, result: Outcome) -> None:
        """From a job thread: queue the outcome, waking the loop once per batch.

        While the threads still have plenty queued, outcomes collect without
        waking the loop (each wake-up is a pipe write and a GIL hand-over);
        the loop is woken when a batch has built up or the queue runs low and
        needs refilling.
        """
        self._outcomes.append(result)
        if len(self._outcomes) < OUTCOME_BATCH and self._queue.qsize() > self._count:
            return
        with self._notify_lock:
            if self._notify_pending:
                return
            self._notify_pending = True
        try:
            self._loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is gone: the process is exiting
            pass

    def drain(self) -> None:
        """On the loop: settle every outcome reported so far."""
        with self._notify_lock:
            self._notify_pending = False
        while self._outcomes:
            self._settle(self._outcomes.popleft())

    def stop(self) -> None:
        """Each thread finishes the job in hand, sets aside what is queued, and exits."""
        self._stop_flag.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        self._spares.stop()

    @property
    def busy(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def unstarted(self) -> list[Delivery]:
        """After ``stop``: what was leased for these threads and never started."""
        unstarted = list(self._unstarted)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return unstarted
            if item is not _STOP:
                unstarted.append(item)


class AsyncRunners:
    """``async def`` consumers' runner tasks on the loop."""

    def __init__(
        self,
        count: int,
        consumers: dict[str, Consumer],
        charge,
        settle: Callable[[Outcome], None],
        stopping: asyncio.Event,
        running: Running,
        started: Callable[[Outcome], None],
    ):
        self._count = count
        self._consumers = consumers
        self._charge = charge  # async: whether a reclaimed delivery may start
        self._settle = settle
        self._started = started
        self._stopping = stopping
        self._running = running
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._idle: set[asyncio.Task] = set()  # runners waiting for a job: they hold none
        self._unstarted: list[Delivery] = []
        self.tasks: list[asyncio.Task] = []

    def start(self, watched) -> None:
        self.tasks = [watched(self._run(), f"taskchan-run-{i}") for i in range(self._count)]

    def submit(self, delivery: Delivery) -> None:
        self._queue.put_nowait(delivery)

    async def _run(self) -> None:
        me = asyncio.current_task()
        while not self._stopping.is_set():
            self._idle.add(me)
            try:
                delivery = await self._queue.get()
            finally:
                self._idle.discard(me)
            if self._stopping.is_set():
                self._unstarted.append(delivery)
                return
            result = attempt.prepare(delivery, self._consumers[delivery.channel])
            if delivery.reclaimed and result.runnable:
                result.skipped = not await self._charge(delivery)
            if result.runnable:
                self._started(result)
                await time_limits.run_on_loop(self._running, result)
            self._settle(result)

    def stop_idle(self) -> None:
        """Cancel the runners waiting for a job (they hold none); busy ones stop before their next."""
        for task in list(self._idle):
            task.cancel()

    @property
    def busy(self) -> int:
        return sum(not task.done() for task in self.tasks)

    def unstarted(self) -> list[Delivery]:
        unstarted = list(self._unstarted)
        while not self._queue.empty():
            unstarted.append(self._queue.get_nowait())
        return unstarted


class Jobs:
    """Both kinds of runners behind one door: submit, start, finish at a stop, what never started."""

    progress = None  # the worker's ProgressHub (taskchan/progress/hub.py): each attempt's slot

    def __init__(
        self,
        consumers: dict[str, Consumer],
        concurrency: int,
        partitions: Partitions,
        consumer_name: str,
        settle: Callable[[Outcome], None],
        stopping: asyncio.Event,
        note: Callable[[int, Note], None],
        too_many_stuck: Callable[[int], None] = lambda stuck: None,
    ):
        """``too_many_stuck(n)`` is called (from the watchdog's thread) once n job threads are stuck."""
        self._consumers = consumers
        self._partitions = partitions
        self._consumer_name = consumer_name
        self._note = note  # from any thread: a status note for the batched ack (acker.py)
        self._worker_json = json.dumps(consumer_name)  # our id in every start note (tracking.start_note)
        has_sync = any(not c.is_async for c in consumers.values())
        has_async = any(c.is_async for c in consumers.values())
        self.running = Running()
        self._threads = JobThreads(
            concurrency if has_sync else 0, consumers, self._charge, settle, self.running, self._started, consumer_name
        )
        self._runners = AsyncRunners(
            concurrency if has_async else 0, consumers, self._acharge, settle, stopping, self.running, self._started
        )
        self.watchdog: time_limits.Watchdog | None = None
        if any(not c.is_async and c.time_limit is not None for c in consumers.values()):
            self.watchdog = time_limits.Watchdog(
                self.running, stuck_after=settings.STUCK_AFTER, max_stuck=settings.MAX_STUCK_THREADS,
                replace=self._threads.replace, too_many_stuck=too_many_stuck,
            )

    def start(self, watched, on_death) -> list[asyncio.Task]:
        """Start the job threads and runner tasks (each watched: lifeline.py) and the time-limit
        watchdog; the runner tasks."""
        self._threads.start(on_death)
        self._runners.start(watched)
        if self.watchdog is not None:
            self.watchdog.start(on_death)
        return self._runners.tasks

    def submit(self, delivery: Delivery) -> None:
        if self._consumers[delivery.channel].is_async:
            self._runners.submit(delivery)
        else:
            self._threads.submit(delivery)

    async def finish(self, grace: float, abandoned: Callable[[], bool], settling: Callable[[], bool]) -> bool:
        """Let running jobs finish and their outcomes settle, for up to ``grace`` seconds.

        False when jobs were still running at the deadline (or ``abandoned()``):
        they keep their leases, which lapse, and another worker runs them again.
        """
        self._threads.stop()
        deadline = time.monotonic() + grace
        while True:
            self._runners.stop_idle()
            busy = self._threads.busy + self._runners.busy
            if not busy and not settling():
                self._threads.drain()
                if not settling():
                    return True
            if abandoned() or time.monotonic() > deadline:
                logger.warning(
                    "%d job(s) still running after %.0f s; leaving their leases to lapse so "
                    "another worker runs them again", busy, grace,
                )
                return False
            await asyncio.sleep(0.02)

    def unstarted(self) -> list[Delivery]:
        """After ``finish``: what was leased and never started, to hand back."""
        return [*self._threads.unstarted(), *self._runners.unstarted()]

    def _started(self, result: Outcome) -> None:
        """From a job thread or runner, as an attempt starts: its status note, sent with the next acks."""
        ttl_ms = result.consumer.status_ms
        if self.progress is not None:
            self.progress.start(
                result.envelope.id, result.attempt, result.delivery.shard, ttl_ms, cancel=result.cancel
            )
        if ttl_ms:
            result.start = tracking.start_note(result.envelope.id, result.attempt, self._worker_json, ttl_ms)
            self._note(result.delivery.shard, result.start)

    def _charge(self, delivery: Delivery) -> bool:
        """From a job thread: record that a reclaimed delivery starts (one round trip).

        It must be in Redis before the job runs, or a job that kills its
        worker would never be charged and could crash-loop forever.
        """
        retrying = redis_retrying(tenacity.Retrying, attempts=20)
        try:
            return retrying(self._partitions[delivery.shard].store.charge, delivery, self._consumer_name)
        except (RedisError, OSError) as exc:
            # Not started, not charged: skip it.  It stays leased to us until the
            # lease lapses; then it is reclaimed and charged again.
            logger.warning("could not charge %s before starting it (%s); leaving it to lapse", delivery.entry_id, exc)
            return False

    async def _acharge(self, delivery: Delivery) -> bool:
        """On the loop: ``_charge`` for a runner task."""
        store = self._partitions[delivery.shard].store
        try:
            return await retry_redis(store.acharge, delivery, self._consumer_name, attempts=20)
        except (RedisError, OSError) as exc:
            logger.warning("could not charge %s before starting it (%s)", delivery.entry_id, exc)
            return False
