"""A fetcher: leases messages from one partition (one Redis host) while the worker has room.

One per partition, so a host that is down or slow holds back only its own
reads.  Each reads all of its channels with one XREADGROUP, at most its share
of the room left (``Leases.fetch_size``), and hands what it leased to the
worker's ``deliver``.  A host that does not answer is backed off from
(``outage.py``); while it is, its share of the room is free for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.exceptions import RedisError

from ..stores.base import Delivery, Partition
from .leases import Leases
from .partitions import Partitions
from .waits import sleep_unless

#: seconds a fetch blocks in Redis waiting for new messages; bounds how long a
#: stop request waits for the fetcher to notice
FETCH_BLOCK_SECONDS = 1.0
#: the same in burst mode, which must notice quickly that nothing is left
BURST_FETCH_BLOCK_SECONDS = 0.1


class Fetcher:
    def __init__(
        self,
        index: int,
        partitions: Partitions,
        leases: Leases,
        consumer_name: str,
        deliver: Callable[[list[Delivery], int], None],
        *,
        burst: bool,
        stopping: asyncio.Event,
        readable: Callable[[list[str]], list[str]] = list,
    ):
        self.index = index
        self._partitions = partitions
        self._leases = leases
        self._consumer_name = consumer_name
        self._deliver = deliver
        self._block_ms = int((BURST_FETCH_BLOCK_SECONDS if burst else FETCH_BLOCK_SECONDS) * 1000)
        self._stopping = stopping
        self._readable = readable  # channels not paused or waiting on a rate limit (gate.py)
        self._prepared: set[str] = set()  # channels whose consumer group exists on this partition

    async def run(self) -> None:
        """Lease and deliver until the worker stops."""
        index, leases, health = self.index, self._leases, self._partitions.health
        while not self._stopping.is_set():
            part = self._partitions[index]
            count = leases.fetch_size(index, len(self._partitions))
            if not count:
                await leases.wait_for_room(self._stopping)
                continue
            channels = self._readable(health.usable(part))
            leases.reserve(index, count)
            try:
                if not channels:  # every channel here is set aside or paused: nothing to read for now
                    await sleep_unless(self._stopping, FETCH_BLOCK_SECONDS)
                    continue
                deliveries = await self._fetch(part, channels, count)
            except (RedisError, OSError) as exc:
                # Free this host's share of the room while it backs off.
                leases.unreserve(index)
                await sleep_unless(self._stopping, await health.failed("fetch", part, channels, exc))
                continue
            finally:
                leases.unreserve(index)
            health.answered(part)
            self._deliver(deliveries, index)

    async def _fetch(self, part: Partition, channels: list[str], count: int) -> list[Delivery]:
        new = [c for c in channels if c not in self._prepared]
        if new:
            await part.store.prepare(new)
            self._prepared.update(new)
        # Redis applies COUNT per stream: split it between the channels so a
        # multi-channel worker stays near its bound.
        per_stream = max(1, count // len(channels))
        return await part.store.fetch(channels, self._consumer_name, per_stream, self._block_ms)
