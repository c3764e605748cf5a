"""Upkeep, one loop per partition: promote, renew leases, reclaim, heartbeat, forget dead names.

One loop per Redis host, so a host that is down or frozen (each call waits up
to the store's socket timeout) delays only its own upkeep: the renewal of
leases held on the others goes on.  Each step is guarded (``outage.py``): a
Redis error is reported to the host's outage or quarantine, and the loop backs
off with the host's fetcher.  While the worker stops, leases are still renewed
and the heartbeat goes on (a long job's lease stays ours while it finishes);
promoting, reclaiming and forgetting stop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from .. import metrics
from ..envelope import message_id_of
from ..stores.base import Delivery, Partition
from .leases import Leases
from .partitions import Partitions
from .running import Running

logger = logging.getLogger("taskchan.worker")

#: seconds between worker-registry heartbeats and outbox sweeps
HOUSEKEEPING_INTERVAL = 5.0
#: seconds between passes that forget the consumer names of dead workers, and
#: how long a name must have been idle (holding no lease) to be forgotten.  A
#: live worker reads every second unless it has no room; if its name on some
#: channel is forgotten meanwhile, its next read there recreates it
FORGET_INTERVAL = 300.0
FORGET_IDLE_SECONDS = 600.0


class Upkeep:
    def __init__(
        self,
        index: int,
        partitions: Partitions,
        leases: Leases,
        *,
        worker_id: str,
        consumer_name: str,
        visibility_timeouts: dict[str, float],
        poll_interval: float,
        stopping: asyncio.Event,
        reclaim_lock: asyncio.Lock,
        deliver: Callable[[list[Delivery], int], None],
        info: Callable[[], dict],
        running: Running | None = None,
    ):
        self.index = index
        self._partitions = partitions
        self._leases = leases
        self._worker_id = worker_id
        self._consumer_name = consumer_name
        self._vt = visibility_timeouts  # channel -> seconds a lease lasts
        self._poll_interval = poll_interval
        self._stopping = stopping
        self._reclaim_lock = reclaim_lock  # shared by every partition's upkeep
        self._deliver = deliver
        self._info = info
        self._running = running or Running()  # jobs running now: their time limits and cancel flags

    async def run(self) -> None:
        next_reclaim = next_extend = next_heartbeat = 0.0
        # Spread over workers (not security-relevant randomness).
        next_forget = time.monotonic() + FORGET_INTERVAL * random.uniform(0.5, 1.0)  # noqa: S311
        min_vt = min(self._vt.values())
        health = self._partitions.health
        while True:
            part = self._partitions[self.index]
            now = time.monotonic()
            if self._serving():
                await health.guarded("promote", part, self._promote)
                await health.guarded("checking unreadable channels", part, health.recheck, always_calls=False)
            if now >= next_extend:
                await health.guarded("lease renewal", part, self._extend_leases, always_calls=False)
                await health.guarded("cancel check", part, self._check_cancelled, always_calls=False)
                next_extend = now + min_vt / 3
            if now >= next_reclaim and self._serving():
                await health.guarded("reclaim", part, self._reclaim, always_calls=False)
                next_reclaim = now + min(1.0, min_vt / 4)
            if now >= next_heartbeat:
                await health.guarded("worker heartbeat", part, self._heartbeat)
                next_heartbeat = now + HOUSEKEEPING_INTERVAL
            if now >= next_forget and self._serving():
                await health.guarded("forgetting dead consumers", part, self._forget_dead_consumers, always_calls=False)
                next_forget = now + FORGET_INTERVAL
            # While the host does not answer, its upkeep backs off with its fetcher.
            await asyncio.sleep(max(self._poll_interval, health.delay(self.index)))

    def _serving(self) -> bool:
        """Not stopping: while the worker stops, only renewals and heartbeats go on."""
        return not self._stopping.is_set()

    async def _promote(self, part: Partition) -> None:
        await part.store.promote_all(part.channels)

    async def _extend_leases(self, part: Partition) -> None:
        # A job past its time limit is not renewed: were it stuck for good, its
        # lease lapses and the message runs again (time_limits.py).
        renewable = self._leases.leased_on(part.index, skip=self._running.past_limit)
        for channel, ids in renewable.items():
            lost = await part.store.extend(channel, self._consumer_name, ids)
            if lost:
                logger.warning("%d lease(s) on %s lapsed and were taken by another worker", len(lost), channel)

    async def _check_cancelled(self, part: Partition) -> None:
        """Tell the jobs running on this partition whose message was cancelled, and mark those
        leased but not started yet so they never start (one round trip, once per renewal)."""
        jobs = self._running.on_partition(part.index)
        waiting = {
            message_id_of(d.raw): d for d in self._leases.held_on(part.index) if not self._running.holds(d.key)
        }
        if not jobs and not waiting:
            return
        cancelled = await part.store.cancelled([*jobs, *waiting])
        for message_id in cancelled & waiting.keys():
            waiting[message_id].cancelled = True  # its job thread or runner acks it unrun (attempt.prepare)
        for message_id in cancelled & jobs.keys():
            if not jobs[message_id].result.cancel.is_set():
                logger.info("message %s was cancelled while it runs; message.cancelled is now true", message_id)
                jobs[message_id].result.cancel.set()

    async def _reclaim(self, part: Partition) -> None:
        # One host at a time: each reclaim sizes itself by the room left, which
        # the others' reclaims would otherwise fill at the same moment.
        async with self._reclaim_lock:
            for channel in part.channels:
                room = self._leases.reclaim_room()
                if room <= 0:
                    return
                vt_ms = int(self._vt[channel] * 1000)
                reclaimed = await part.store.reclaim(channel, self._consumer_name, vt_ms, room)
                if reclaimed:
                    # Cancelled while its lease lapsed: acked, not run (worker.py).
                    ids = {d: message_id_of(d.raw) for d in reclaimed if d.unreadable is None}
                    cancelled = await part.store.cancelled(ids.values())
                    for d, message_id in ids.items():
                        d.cancelled = message_id in cancelled
                    logger.warning("reclaimed %d message(s) on %s whose lease lapsed", len(reclaimed), channel)
                    metrics.redelivered(channel, len(reclaimed))
                    self._deliver(reclaimed, part.index)

    async def _forget_dead_consumers(self, part: Partition) -> None:
        for channel in part.channels:
            forgotten = await part.store.forget_idle_consumers(channel, int(FORGET_IDLE_SECONDS * 1000))
            if forgotten:
                logger.info("forgot %d idle consumer name(s) of dead workers on %s", forgotten, channel)

    async def _heartbeat(self, part: Partition) -> None:
        # Registered on every host the worker reads, so the registry of each
        # host lists who serves its channels.
        await part.store.heartbeat_worker(self._worker_id, self._info(), ttl=3 * HOUSEKEEPING_INTERVAL)
