"""The reliable-store contract every taskchan store implements.

A store holds taskchan channels' messages with leases: a worker ``fetch``es
deliveries (each leased to it), and every delivery ends in exactly one of
``ack`` (done), ``reschedule`` (retry later) or ``hand_back`` (unstarted, at
shutdown).  A lease not renewed with ``extend`` lapses after the channel's
visibility timeout and ``reclaim`` hands the entry to another worker; that
worker ``charge``s it one more delivery right before starting it, so only
deliveries that may have started count as attempts.  ``tests/contract/`` runs the same tests on every store.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Delivery:
    """One leased message as a worker holds it."""

    channel: str
    entry_id: str  # the store's id of this copy (a stream entry id on Redis)
    raw: str  # envelope JSON (plain: the store unseals what it read, ``codec.py``)
    # Deliveries of this entry charged as attempts.  A fresh read counts itself
    # (1).  A reclaimed entry (``reclaimed``) carries the count it had: the
    # worker charges one more (``charge``) just before starting it.
    deliveries: int = 1
    reclaimed: bool = False
    idempotency_key: str | None = None  # set by the worker once decoded
    # Which of a sharded store's Redis hosts leased it (``Partition.index``);
    # 0 for a store of one.  Stream entry ids are only unique per stream, so a
    # worker names a delivery by (shard, channel, entry id).
    shard: int = 0
    # Why the store could not read the entry as an envelope (unexpected
    # fields, cannot be decrypted, ...), or None.  The worker dead-letters such
    # a delivery as malformed, with ``raw`` as the text kept for the admin.
    unreadable: str | None = None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.shard, self.channel, self.entry_id)


@dataclass(slots=True)
class Partition:
    """Channels a worker reads from one store: the whole store, or one shard of a sharded store."""

    index: int  # the shard's position in the hosts list (0 for a store of one)
    store: StoreBase
    channels: list[str]


@dataclass(slots=True)
class ChannelStats:
    channel: str
    queued: int = 0  # waiting, not leased
    in_flight: int = 0  # leased to a worker
    oldest_lease_age: float | None = None  # seconds since the longest-held lease was taken or renewed
    scheduled: int = 0  # delayed sends and retries waiting for their time
    next_due: float | None = None  # unix seconds of the earliest scheduled one
    processed_last_minute: int = 0
    processed_last_hour: int = 0
    failed_last_minute: int = 0
    failed_last_hour: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(slots=True)
class Survey:
    """What the readers of the whole (admin overview, ``taskchan_status``, metrics) show."""

    stats: list[ChannelStats]
    workers: list[dict]
    # (store, error) per Redis host that could not be read; the figures leave
    # it out.  Empty for a store of one host (its errors are raised instead).
    unreachable: list[tuple[str, str]] = field(default_factory=list)
    # channel -> leases idle longer than its visibility timeout (when asked for)
    lapsed: dict[str, int] = field(default_factory=dict)


class StoreBase:
    """Methods the producer and the worker use; see each implementation.

    A worker calls the worker-side methods on each partition's own store
    (``partitions``), so a store of several hosts (``sharded.py``) provides
    only the routing, producer and reader methods; the others raise here.
    """

    # producer side, sync and async
    def send(self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0) -> str:
        raise NotImplementedError

    async def asend(self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0) -> str:
        raise NotImplementedError

    # worker side
    async def prepare(self, channels: list[str]) -> None:
        raise NotImplementedError
    async def fetch(self, channels, consumer, count, block_ms) -> list[Delivery]:
        raise NotImplementedError
    async def ack(self, deliveries: list[Delivery], *, outcome: str = "processed", idempotency_ms: int = 0):
        raise NotImplementedError
    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0) -> bool:
        raise NotImplementedError
    async def hand_back(self, deliveries: list[Delivery]) -> int:
        """Re-queue unstarted deliveries as fresh entries holding ``delivery.raw``."""
    async def extend(self, channel, consumer, entry_ids) -> list[str]:
        raise NotImplementedError
    def charge(self, delivery, consumer) -> bool:
        raise NotImplementedError
    async def acharge(self, delivery, consumer) -> bool:
        raise NotImplementedError
    async def reclaim(self, channel, consumer, min_idle_ms, count) -> list[Delivery]:
        raise NotImplementedError
    async def promote(self, channel, limit=500) -> tuple[int, float | None]:
        raise NotImplementedError
    async def promote_all(self, channels) -> int:
        """``promote`` every channel (the worker does, every poll); how many messages moved."""
        moved = 0
        for channel in channels:
            moved += (await self.promote(channel))[0]
        return moved

    async def is_idle(self, channels) -> bool:
        raise NotImplementedError
    async def stats(self, channels) -> list[ChannelStats]:
        raise NotImplementedError
    async def known_channels(self) -> list[str]:
        raise NotImplementedError
    async def heartbeat_worker(self, worker_id, info: dict, ttl: float) -> None:
        raise NotImplementedError
    async def remove_worker(self, worker_id, consumer=None, channels=()) -> None:
        """Drop the worker from the registry and, given ``consumer``, its consumer name from ``channels``' groups."""
    async def workers(self) -> list[dict]:
        raise NotImplementedError
    async def wrong_type_channels(self, channels) -> dict[str, str]:
        """Channels whose keys hold the wrong Redis type (written around taskchan), each with why.

        Only a store with typed keys (Redis) can have any.
        """
        return {}

    async def forget_idle_consumers(self, channel, min_idle_ms: int) -> int:
        """Forget consumer names idle ``min_idle_ms`` or more that hold no lease; how many.

        Only stores that keep names (Redis consumer groups) have any to forget.
        """
        return 0

    async def lapsed_leases(self, channel, idle_ms: int, limit: int) -> int:
        """How many leases on ``channel`` are idle longer than ``idle_ms`` (counted up to ``limit``)."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Delete every message, schedule, idempotency key, counter and worker registration (the layer's ``flush()``)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the connections this event loop opened (stores without any: nothing to do)."""

    async def survey(self, extra_channels=(), lapse_after=None) -> Survey:
        """Stats of every channel the store knows plus ``extra_channels``, and the live workers.

        With ``lapse_after`` (channel -> visibility timeout, seconds), also how
        many leases of each channel have lapsed, counted up to LAPSED_SCAN.
        """
        channels = sorted(set(extra_channels) | set(await self.known_channels()))
        stats, workers, lapsed = await self.read(channels, lapse_after)
        return Survey(stats, workers, lapsed=lapsed)

    async def read(self, channels, lapse_after=None) -> tuple[list[ChannelStats], list[dict], dict[str, int]]:
        """(stats, workers, lapsed) of ``channels`` on this store: what ``survey`` shows."""
        stats = await self.stats(channels) if channels else []
        lapsed = await count_lapsed(self, stats, lapse_after) if lapse_after else {}
        return stats, await self.workers(), lapsed

    # routing: one store holds every channel unless it is sharded (``sharded.py``)
    def home(self, channel: str) -> StoreBase:
        """The store that new messages for ``channel`` go to."""
        return self

    async def partitions(self, channels: list[str]) -> list[Partition]:
        """What a worker serving ``channels`` reads, one Partition per store it must read."""
        return [Partition(0, self, list(channels))]

    def send_many(self, items: list[tuple[str, str, str]]) -> None:
        """Store ``(channel, envelope JSON, message id)`` triples as plain sends (no delay, no key)."""
        for channel, raw, message_id in items:
            self.send(channel, raw, message_id)


async def survey_once(store: StoreBase, extra_channels, lapse_after=None) -> Survey:
    """``store.survey(...)`` from a short-lived event loop, closing the clients it opened."""
    try:
        return await store.survey(extra_channels, lapse_after)
    finally:
        await store.aclose()  # the clients belong to this call's event loop


#: pending entries read per channel to count lapsed leases
LAPSED_SCAN = 1000


async def count_lapsed(store: StoreBase, stats: list[ChannelStats], lapse_after) -> dict[str, int]:
    """Leases per channel idle longer than ``lapse_after(channel)`` seconds, from one store's ``stats``."""
    lapsed: dict[str, int] = {}
    for s in stats:
        vt = lapse_after(s.channel)
        if not s.in_flight or s.oldest_lease_age is None or s.oldest_lease_age <= vt:
            lapsed[s.channel] = 0  # the oldest lease is younger: none lapsed, no need to look
        else:
            lapsed[s.channel] = await store.lapsed_leases(s.channel, int(vt * 1000), LAPSED_SCAN)
    return lapsed
