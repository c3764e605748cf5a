"""The worker: leases messages from taskchan channels and runs their consumers.

One process, one asyncio loop, plus ``concurrency`` job threads.  ``Worker``
is the life of a worker: it starts its collaborators, serves until asked to
stop, and stops them in order.  Each collaborator owns one concern and its
state:

- ``partitions.py``: what to read, one partition per Redis host, learnt over time;
- ``leases.py``: what is held, reserved by a fetch and awaiting its ack, and the
  room left under ``concurrency + prefetch``;
- ``fetcher.py``: one per partition, leasing while there is room;
- ``jobs.py`` and ``attempt.py``: job threads (plain consumers) and runner
  tasks (``async def`` ones), each attempt's outcome back to the loop;
- ``gate.py``: leased messages of rate- or concurrency-limited or paused
  channels wait there to start; ``ticker.py``: scheduled channels' slots fired;
- ``settle.py``: ack, retry or dead letter (the row before the ack), as
  ``taskchan/outcome.py`` decides;
- ``acker.py``: successes acknowledged in batches, one pipeline per host;
- ``upkeep.py``: one loop per partition: promote, renew leases, reclaim,
  heartbeat; ``maintenance.py``: housekeeping and the end of a burst run;
- ``outage.py``, ``quarantine.py``: a host that does not answer is backed off
  from; a channel whose key has the wrong type is set aside;
- ``lifeline.py``: a loop or thread that dies ends the process with status 70
  so that its supervisor restarts it: a worker never stays up unable to work.

Stopping (SIGTERM, SIGINT): stop leasing; let running jobs finish for up to
the grace period; hand the leased-but-unstarted messages back to the channel;
flush acks; deregister.  Heartbeats go on during the grace period, so a long
job's lease stays ours while it finishes.  A job still running after the grace
period keeps its lease, which lapses and is reclaimed by another worker: the
job runs again rather than being lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from redis.exceptions import RedisError

from .. import registry
from ..conf import settings
from ..progress.hub import ProgressHub
from ..registry import Consumer
from ..stores.base import Delivery, StoreBase
from ..stores.configured import get_store
from ..stores.replicas import short_of
from . import lifeline
from .acker import Acker
from .attempt import Outcome
from .fetcher import Fetcher
from .gate import Gate
from .handback import hand_back
from .jobs import Jobs
from .leases import Leases
from .maintenance import Maintenance
from .outage import retry_redis
from .partitions import Partitions
from .settle import Settler, Tally
from .ticker import Ticker
from .upkeep import Upkeep

logger = logging.getLogger("taskchan.worker")


class Worker:
    #: called with (what, exception) when a loop or thread dies; ends the process (lifeline.py)
    on_fatal = staticmethod(lifeline.exit_process)

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
        self._consumers = _consumers_of(channels)
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
        self.tally = Tally()  # processed, failed, last finished
        self._abandon = False  # a second stop request: stop waiting for running jobs
        self._stopping: asyncio.Event | None = None  # made by arun(): set once the worker is to stop
        #: too many job threads stuck past their time limit: the worker stopped to be restarted
        #: (runworker exits with time_limits.EXIT_STUCK)
        self.stuck = False

    @property
    def processed(self) -> int:
        return self.tally.processed

    @property
    def failed(self) -> int:
        return self.tally.failed

    @property
    def last_finished(self) -> float | None:
        """Unix time the worker last finished a job (any outcome), shown in its registry entry."""
        return self.tally.last_finished

    # -- the life of a worker -------------------------------------------------

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
        loop = asyncio.get_running_loop()
        self._assemble()
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        await retry_redis(self._refresh_partitions)
        await self._check_replicas()
        logger.info(
            "worker %s serving %s (concurrency %d, prefetch %d%s)",
            self.id, ", ".join(self.channels), self.concurrency, self.prefetch, ", burst" if self.burst else "",
        )
        self._start()
        clean = True
        try:
            await self._stopping.wait()
            logger.info("worker %s stopping", self.id)
            clean = await self._stop()
        finally:
            await self._close(clean)
            if in_main_thread:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        logger.info("worker %s stopped: %d processed, %d failed", self.id, self.processed, self.failed)
        return clean

    def _assemble(self) -> None:
        """The collaborators, made on the worker's loop."""
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._partitions = Partitions(self.store, self.channels)
        self._acker = Acker(self._partitions.by_index)
        self._leases = Leases(self.concurrency, self.prefetch, self._acker)
        # Dead letters and outbox sweeps touch the database; they get their own
        # thread so they never wait behind long jobs.
        self._bookkeeping = ThreadPoolExecutor(1, thread_name_prefix="taskchan-db")
        self._settler = Settler(self._partitions, self._leases, self._bookkeeping, self.tally)
        self._jobs = Jobs(
            self._consumers, self.concurrency, self._partitions, self.consumer_name, self._settled,
            self._stopping, self._acker.note, too_many_stuck=self._too_many_stuck,
        )
        self._gate = Gate(
            self._consumers, self.store, self.consumer_name, self._jobs.submit,
            stopping=self._stopping, poll_interval=self.poll_interval,
        )
        self.tickers = [
            Ticker(c, self.store, stopping=self._stopping) for c in self._consumers.values() if c.flow.schedule
        ]
        self._maintenance = Maintenance(
            self._partitions, self._leases, self._bookkeeping, refresh=self._refresh_partitions,
            burst=self.burst, poll_interval=self.poll_interval, stopping=self._stopping,
        )
        self._progress = ProgressHub(self._acker.note)  # progress reports and outcome pushes
        self._settler.progress = self._jobs.progress = self._progress
        self._acker.on_acked = self._progress.acked
        self._reclaim_lock = asyncio.Lock()  # one partition's reclaim at a time (upkeep.py)
        self._fetchers: dict[int, asyncio.Task] = {}
        self._upkeep: dict[int, asyncio.Task] = {}

    def _start(self) -> None:
        """Job threads, runner tasks, the acker and maintenance, each watched (lifeline.py).

        The fetcher and upkeep of each partition started as it was learnt (``_refresh_partitions``).
        """
        self._runner_tasks = self._jobs.start(self._watched, self._died)
        self._acker_task = self._watched(self._acker.run(), "taskchan-ack")
        self._maintenance_task = self._watched(self._maintenance.run(), "taskchan-maintenance")
        self._flow_tasks = [
            self._watched(self._gate.run(), "taskchan-gate"),
            *(self._watched(t.run(), f"taskchan-tick-{t.channel}") for t in self.tickers),
        ]
        self._progress_task = self._watched(self._progress.run(), "taskchan-progress")

    async def _stop(self) -> bool:
        """The stop order; False if running jobs were left to lapse."""
        # 1. Stop leasing: each fetcher sees the stop after its current read.
        await asyncio.gather(*self._fetchers.values())
        # 2. Let running jobs finish and settle, up to the grace period; upkeep
        #    goes on renewing their leases meanwhile.
        clean = await self._jobs.finish(self.grace, lambda: self._abandon, self._settler.busy)
        # 3. Hand what was leased but never started back to its channel.
        await hand_back([*self._jobs.unstarted(), *self._gate.unstarted()], self._partitions, self._leases)
        await self._gate.close(clean)
        # 4. The acker may be half-way through a batch: stop it (it puts the
        #    batch back) so the final flush sees every ack.
        self._acker_task.cancel()
        await asyncio.gather(self._acker_task, return_exceptions=True)
        await self._acker.flush(lambda: self._abandon)
        await self._progress.close()  # the outcomes those acks settled, to their watchers
        return clean

    async def _close(self, clean: bool) -> None:
        """After the stop (or a failure during it): end every loop, deregister, wait for the database thread."""
        tasks = (
            *self._fetchers.values(), *self._upkeep.values(), self._acker_task, self._maintenance_task,
            self._progress_task, *self._runner_tasks, *self._flow_tasks,
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # After a clean stop our consumer name holds nothing: it goes too.
        await self._partitions.each(
            "deregistration",
            lambda part: part.store.remove_worker(self.id, self.consumer_name if clean else None, part.channels),
        )
        self._bookkeeping.shutdown(wait=True)

    async def _check_replicas(self) -> None:
        """Say at start if a master has fewer replicas than TASKCHAN_SEND_REPLICAS (its consumers'
        sends would raise SendNotReplicated); ``manage.py check`` says so too when it can connect."""
        if not (wanted := settings.SEND_REPLICAS):
            return
        try:
            per_master = await self.store.replicas_per_master()
        except NotImplementedError:  # the in-memory store: nothing to wait for
            return
        except (RedisError, OSError) as exc:
            logger.warning("could not count the Redis replicas for TASKCHAN_SEND_REPLICAS: %s", exc)
            return
        for where, count in short_of(per_master, wanted).items():
            logger.error(
                "TASKCHAN_SEND_REPLICAS = %d but %s has %d connected replica(s): sends to its channels "
                "will raise SendNotReplicated until it has more", wanted, where, count,
            )

    # -- partitions, as they are learnt -----------------------------------------

    async def _refresh_partitions(self) -> None:
        """Learn what to read (at start, then at housekeeping); a fetcher and upkeep per new partition."""
        for index in await self._partitions.refresh():
            if not self._stopping.is_set():
                self._start_partition(index)

    def _start_partition(self, index: int) -> None:
        fetcher = Fetcher(
            index, self._partitions, self._leases, self.consumer_name, self._deliver,
            burst=self.burst, stopping=self._stopping, readable=self._gate.readable,
        )
        upkeep = Upkeep(
            index, self._partitions, self._leases, worker_id=self.id, consumer_name=self.consumer_name,
            visibility_timeouts={c: consumer.visibility_timeout for c, consumer in self._consumers.items()},
            poll_interval=self.poll_interval, stopping=self._stopping, reclaim_lock=self._reclaim_lock,
            deliver=self._deliver, info=self._info, running=self._jobs.running,
        )
        self._fetchers[index] = self._watched(fetcher.run(), f"taskchan-fetch-{index}")
        self._upkeep[index] = self._watched(upkeep.run(), f"taskchan-upkeep-{index}")

    def _deliver(self, deliveries: list[Delivery], index: int) -> None:
        """Fetched or reclaimed on partition ``index``: held from now on, and queued to run."""
        self._leases.hold(deliveries, index)
        waiting = []
        for d in deliveries:
            if d.cancelled:  # cancelled before it started: acked, never run (never admitted by the gate)
                self._settler.settle(Outcome(d, cancelled=True))
            else:
                waiting.append(d)
        self._gate.admit(waiting)

    def _settled(self, result) -> None:
        """A job's outcome: its concurrency slot goes back (``gate.py``), then it is settled."""
        self._gate.done(result.delivery)
        self._settler.settle(result)

    # -- watching and reporting -------------------------------------------------

    def _watched(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        return lifeline.watch(task, f"loop {name}", self._stopping.is_set, self._died)

    def _too_many_stuck(self, stuck: int) -> None:
        """From the time-limit watchdog: stuck threads cannot be killed, so stop for a fresh process."""
        logger.critical(
            "%d job thread(s) are stuck past their time limit; stopping so that the supervisor restarts "
            "this worker", stuck,
        )
        self.stuck = True
        self._loop.call_soon_threadsafe(self.request_stop)

    def _died(self, what: str, exc: BaseException | None) -> None:
        self.on_fatal(f"worker {self.id}: {what}", exc)

    def _info(self) -> dict:
        """The worker's registry entry (``taskchan_status``, the admin overview)."""
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
            "unreadable": self._partitions.health.quarantine.report(),
        }


def _consumers_of(channels: list[str]) -> dict[str, Consumer]:
    """channel -> its registered consumer; refuses an empty list or a channel no consumer serves."""
    if not channels:
        raise ValueError("a worker needs at least one taskchan channel")
    consumers = {}
    for channel in channels:
        consumer = registry.get_consumer(channel)
        if consumer is None:
            raise registry.UnknownPattern(f"no consumer is registered for {channel!r}")
        consumers[channel] = consumer
    return consumers
