"""What a worker holds: the bound on leased work, and the room a fetch may fill.

A worker keeps at most ``concurrency + prefetch`` unfinished messages leased
(*held*), so it cannot drain a channel into memory.  A fetch in progress
*reserves* the messages it may bring, so two partitions' reads cannot both
fill the same room.  A finished message no longer counts against the bound,
but stays leased until its batched ack lands (*awaiting ack*, ``acker.py``):
heartbeats renew those leases too.

Everything here runs on the worker's loop: fetchers and reclaims add, jobs
settling and hand-backs release, and each release wakes the fetchers waiting
for room.
"""

from __future__ import annotations

import asyncio
import collections

from ..stores.base import Delivery
from .acker import Acker
from .waits import wait_either


class Leases:
    def __init__(self, concurrency: int, prefetch: int, acker: Acker):
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.capacity = concurrency + prefetch
        self._acker = acker  # the finished ones, awaiting their ack
        self._held: dict[tuple, Delivery] = {}  # Delivery.key -> unfinished delivery leased to us
        self._held_per_part: collections.Counter[int] = collections.Counter()
        self._reserved: dict[int, int] = {}  # partition -> messages its fetch in progress may bring
        self._room = asyncio.Event()  # set whenever a lease is released or a reservation ends

    # -- what is held -------------------------------------------------------

    def hold(self, deliveries: list[Delivery], index: int) -> None:
        """``deliveries`` were leased to us on partition ``index`` (fetched or reclaimed)."""
        for d in deliveries:
            d.shard = index
            if d.key not in self._held:
                self._held_per_part[index] += 1
            self._held[d.key] = d

    def release(self, delivery: Delivery) -> None:
        """It no longer counts against concurrency + prefetch (finished, handed back, or taken elsewhere)."""
        if self._held.pop(delivery.key, None) is not None:
            self._held_per_part[delivery.shard] -= 1
        self._room.set()

    def finished(self, delivery: Delivery) -> None:
        """A success: released from the bound, but leased until its batched ack lands (at most ACK_DELAY later)."""
        self.release(delivery)
        self._acker.add(delivery)

    @property
    def idle(self) -> bool:
        """Nothing held and nothing awaiting its ack (burst mode ends only then)."""
        return not self._held and not self._acker.pending

    def leased_on(self, index: int, skip=None) -> dict[str, list[str]]:
        """channel -> entry ids leased to us on partition ``index``, held or awaiting ack: the leases to
        renew, less those whose ``Delivery.key`` ``skip(key)`` is true for."""
        by_channel: dict[str, list[str]] = {}
        for d in [*self._held.values(), *self._acker.pending]:
            if d.shard == index and not (skip is not None and skip(d.key)):
                by_channel.setdefault(d.channel, []).append(d.entry_id)
        return by_channel

    def held_on(self, index: int) -> list[Delivery]:
        """The unfinished deliveries leased to us on partition ``index`` (queued to run, or running)."""
        return [d for d in self._held.values() if d.shard == index]

    # -- room ---------------------------------------------------------------

    def reclaim_room(self) -> int:
        """How many lapsed leases a reclaim may take now."""
        return self.capacity - len(self._held)

    def fetch_size(self, index: int, partitions: int) -> int:
        """How many messages partition ``index`` (of ``partitions``) may fetch now; 0: wait for room."""
        held = len(self._held)
        room = self.capacity - held - sum(self._reserved.values())
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
            return 0
        # Each partition reads at most its share of the free room, so an
        # idle host's blocking read leaves room for the others.
        return min(room, max(1, -(-(self.capacity - held) // partitions)))

    def reserve(self, index: int, count: int) -> None:
        """A fetch on partition ``index`` may bring ``count`` messages: keep room for them."""
        self._reserved[index] = count

    def unreserve(self, index: int) -> None:
        """The fetch on partition ``index`` ended (what it brought is held now)."""
        self._reserved[index] = 0
        self._room.set()

    async def wait_for_room(self, stopping: asyncio.Event) -> None:
        """Until a lease is released or a reservation ends, or the worker stops."""
        self._room.clear()
        await wait_either(self._room, stopping)
