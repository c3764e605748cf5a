"""What concerns the whole worker rather than one Redis host: housekeeping and the end of a burst run.

Every HOUSEKEEPING_INTERVAL: learn what to read again (a sharded store may
name channels left on other hosts), and relay send_on_commit rows whose relay
never ran (``outbox.sweep``, on the worker's database thread).  In burst mode,
stop once nothing is queued, scheduled, held or awaiting its ack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from django.db import close_old_connections
from redis.exceptions import RedisError

from .. import outbox
from .leases import Leases
from .partitions import Partitions
from .upkeep import HOUSEKEEPING_INTERVAL

logger = logging.getLogger("taskchan.worker")


class Maintenance:
    def __init__(
        self,
        partitions: Partitions,
        leases: Leases,
        bookkeeping: Executor,
        *,
        refresh: Callable[[], Awaitable[None]],
        burst: bool,
        poll_interval: float,
        stopping: asyncio.Event,
    ):
        self._partitions = partitions
        self._leases = leases
        self._bookkeeping = bookkeeping
        self._refresh = refresh  # the worker's: learns partitions and starts their loops
        self._burst = burst
        self._poll_interval = poll_interval
        self._stopping = stopping

    async def run(self) -> None:
        next_housekeeping = 0.0
        while True:
            now = time.monotonic()
            if now >= next_housekeeping:
                await self._housekeeping()
                next_housekeeping = now + HOUSEKEEPING_INTERVAL
            if self._burst and not self._stopping.is_set():
                try:
                    if await self._burst_done():
                        logger.info("burst: nothing queued, scheduled or in flight; stopping")
                        self._stopping.set()
                except (RedisError, OSError) as exc:
                    logger.warning("maintenance: Redis error %s", exc)
            await asyncio.sleep(self._poll_interval)

    async def _housekeeping(self) -> None:
        if not self._stopping.is_set():
            try:
                await self._refresh()
            except (RedisError, OSError) as exc:
                logger.warning("could not refresh what to read: %s", exc)
        loop = asyncio.get_running_loop()
        try:
            relayed = await loop.run_in_executor(self._bookkeeping, sweep_outbox)
        except Exception as exc:  # no table yet, database down: not the worker's problem
            logger.debug("outbox sweep skipped: %s", exc)
        else:
            if relayed:
                logger.warning("relayed %d send_on_commit message(s) whose relay never ran", relayed)

    async def _burst_done(self) -> bool:
        if not self._leases.idle:
            return False
        health = self._partitions.health
        for part in self._partitions:
            channels = health.usable(part)
            if channels and not await part.store.is_idle(channels):
                return False
        return True


def sweep_outbox() -> int:
    """On the database thread: relay stale send_on_commit rows (``outbox.sweep``)."""
    close_old_connections()
    try:
        return outbox.sweep()
    finally:
        close_old_connections()
