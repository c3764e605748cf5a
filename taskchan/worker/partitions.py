"""What a worker reads: one partition per store, one per Redis host when sharded.

Learnt at start and again at each housekeeping: a sharded store may name more
over time (a channel whose home moved when the hosts list changed is read on
its old home too, for as long as that host lists it).  Partitions are only
ever added to, so a ``Partition.index`` stays valid for the worker's life.
"""

from __future__ import annotations

import asyncio

from ..stores.base import Partition, StoreBase
from .outage import RedisHealth


class Partitions:
    def __init__(self, store: StoreBase, channels: list[str]):
        self.store = store
        self.channels = channels
        self.by_index: dict[int, Partition] = {}
        self.health = RedisHealth()  # outages and channels set aside, per Redis host

    def __getitem__(self, index: int) -> Partition:
        return self.by_index[index]

    def __len__(self) -> int:
        return len(self.by_index)

    def __iter__(self):
        return iter(list(self.by_index.values()))

    async def refresh(self) -> list[int]:
        """Ask the store what to read; the indexes of the partitions new to this worker."""
        new = []
        for part in await self.store.partitions(self.channels):
            known = self.by_index.get(part.index)
            if known is None:
                self.by_index[part.index] = part
                new.append(part.index)
            elif set(part.channels) - set(known.channels):
                known.channels = [*known.channels, *(c for c in part.channels if c not in known.channels)]
        return new

    async def each(self, what: str, step) -> None:
        """``step(partition)`` on every partition side by side, each guarded (``RedisHealth.guarded``)."""
        await asyncio.gather(*(self.health.guarded(what, part, step) for part in self))
