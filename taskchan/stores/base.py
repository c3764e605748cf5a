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
    raw: str  # envelope JSON, as stored
    # Deliveries of this entry charged as attempts.  A fresh read counts itself
    # (1).  A reclaimed entry (``reclaimed``) carries the count it had: the
    # worker charges one more (``charge``) just before starting it.
    deliveries: int = 1
    reclaimed: bool = False
    idempotency_key: str | None = None  # set by the worker once decoded


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


class StoreBase:
    """Methods the producer and the worker use; see each implementation."""

    # producer side, sync and async
    def send(self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0) -> str:
        raise NotImplementedError

    async def asend(self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0) -> str:
        raise NotImplementedError

    # worker side
    async def prepare(self, channels: list[str]) -> None: ...
    async def fetch(self, channels, consumer, count, block_ms) -> list[Delivery]: ...
    async def ack(self, deliveries: list[Delivery], *, outcome: str = "processed", idempotency_ms: int = 0): ...
    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0) -> bool: ...
    async def hand_back(self, deliveries: list[Delivery]) -> int:
        """Re-queue unstarted deliveries as fresh entries holding ``delivery.raw``."""
    async def extend(self, channel, consumer, entry_ids) -> list[str]: ...
    def charge(self, delivery, consumer) -> bool: ...
    async def acharge(self, delivery, consumer) -> bool: ...
    async def reclaim(self, channel, consumer, min_idle_ms, count) -> list[Delivery]: ...
    async def promote(self, channel, limit=500) -> tuple[int, float | None]: ...
    async def is_idle(self, channels) -> bool: ...
    async def stats(self, channels) -> list[ChannelStats]: ...
    async def known_channels(self) -> list[str]: ...
    async def heartbeat_worker(self, worker_id, info: dict, ttl: float) -> None: ...
    async def remove_worker(self, worker_id, consumer) -> None: ...
    async def workers(self) -> list[dict]: ...
