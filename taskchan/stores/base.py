"""The reliable-store contracts taskchan's stores implement.

Three contracts, by who calls them: ``ProducerStore`` (sending, routing,
reading the whole: every store, a ShardedStore over several hosts included),
``HandoffStore`` (the Celery hand-off's keys) and ``WorkerStore`` (what a
worker does with the messages of one store it reads).  ``StoreBase`` is a
store of one Redis host or of process memory, which offers all three.

A store holds taskchan channels' messages with leases: a worker ``fetch``es
deliveries (each leased to it), and every delivery ends in exactly one of
``ack`` (done), ``reschedule`` (retry later) or ``hand_back`` (unstarted, at
shutdown).  A lease not renewed with ``extend`` lapses after the channel's
visibility timeout and ``reclaim`` hands the entry to another worker; that
worker ``charge``s it one more delivery right before starting it, so only
deliveries that may have started count as attempts.  ``tests/contract/`` runs the same tests on every store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .flow_base import FlowStore
from .notes import StatusNote


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
    # Its message was cancelled (``taskchan.cancel``) when it was fetched: the
    # worker acks it as cancelled instead of running it.
    cancelled: bool = False
    # The status record's update written with this delivery's ack (its success
    # or dead letter), or None (``taskchan/tracking.py`` builds it).
    note: StatusNote | None = None

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
class InFlight:
    """One leased message, as the admin's in-flight list shows it."""

    channel: str
    entry_id: str
    message_id: str | None  # None when the entry cannot be read
    worker: str  # the consumer name (worker id) holding the lease
    lease_age: float  # seconds since the lease was taken or renewed
    deliveries: int


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


class ProducerStore:
    """What every store offers, a ``ShardedStore`` over several hosts included.

    Producers (``send``, the outbox relay, the admin's re-send) send through
    it; the readers of the whole (admin overview, ``taskchan_status``,
    metrics) read it; a worker asks it only which ``partitions`` to read, and
    then works on each partition's own store (``WorkerStore``).
    """

    # -- sending --------------------------------------------------------------

    def new_message_id(self, channel: str) -> str:
        """A fresh id for a message to ``channel``: 32 hex digits (a cluster's name its slot too)."""
        return uuid.uuid4().hex

    def send(
        self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0, status_ms=0,
        record=None,
    ) -> str:
        """Store one envelope (``raw``, plain JSON) atomically; return its id.

        ``delay_ms`` > 0 schedules it instead of queueing it.  With an
        ``idempotency_key`` already held for ``channel``, nothing is stored and
        the earlier message's id is returned; otherwise the key is held for
        ``delay_ms + idempotency_ms``.  ``status_ms`` > 0 starts the message's
        status record (channel, enqueued, due) in the same step, kept that long,
        with ``record`` (text, sealed like the envelope) in its ``x`` field.
        """
        raise NotImplementedError

    async def asend(
        self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0, status_ms=0,
        record=None,
    ) -> str:
        """``send`` from async code: same arguments, same result."""
        raise NotImplementedError

    def send_many(self, items: list[tuple[str, str, str, dict]]) -> list[str]:
        """Store ``(channel, envelope JSON, message id, send options)`` items, each as ``send`` would
        (the same atomic step), in as few round trips as the store can; return their ids in order."""
        return [self.send(channel, raw, message_id, **options) for channel, raw, message_id, options in items]

    async def status_record(self, message_id: str) -> dict[str, str] | None:
        """Message ``message_id``'s status record (its fields as written, ``x`` unsealed), or None when there is none.

        A sharded store asks every host: the record lives with the message, on
        its channel's home (``keys.py``), and the caller knows no channel.
        """
        raise NotImplementedError

    # -- cancel markers (``taskchan.cancel``) ------------------------------------

    def cancel(self, message_id: str, ttl_ms: int) -> None:
        """Mark ``message_id`` cancelled for ``ttl_ms``: a worker acks it unrun when it fetches it,
        and a running job's ``message.cancelled`` turns true.  Wherever its channel lives."""
        raise NotImplementedError

    async def acancel(self, message_id: str, ttl_ms: int) -> None:
        """``cancel`` from async code."""
        raise NotImplementedError

    def is_cancelled(self, message_id: str) -> bool:
        """Whether ``message_id`` holds a live cancel marker."""
        raise NotImplementedError

    # -- routing: one store holds every channel unless it is sharded -------------

    def home(self, channel: str) -> StoreBase:
        """The store that new messages for ``channel`` go to (this one, unless sharded)."""
        return self

    async def partitions(self, channels: list[str]) -> list[Partition]:
        """What a worker serving ``channels`` reads, one Partition per store it must read."""
        return [Partition(0, self, list(channels))]

    # -- reading the whole ------------------------------------------------------

    async def known_channels(self) -> list[str]:
        """Every channel ever sent to, sorted."""
        raise NotImplementedError

    async def stats(self, channels) -> list[ChannelStats]:
        """One ChannelStats per channel of ``channels``, in that order."""
        raise NotImplementedError

    async def is_idle(self, channels) -> bool:
        """True when ``channels`` hold nothing: none queued, leased or scheduled (a burst worker's end)."""
        raise NotImplementedError

    async def in_flight(self, channel: str, limit: int) -> list[InFlight]:
        """Up to ``limit`` of ``channel``'s leased messages (on every host, when sharded)."""
        raise NotImplementedError

    async def workers(self) -> list[dict]:
        """The live workers' registrations (``heartbeat_worker``'s info plus ``id``)."""
        raise NotImplementedError

    async def survey(self, extra_channels=(), lapse_after=None) -> Survey:
        """Stats of every channel the store knows plus ``extra_channels``, and the live workers.

        With ``lapse_after`` (channel -> visibility timeout, seconds), also how
        many leases of each channel have lapsed, counted up to LAPSED_SCAN.
        """
        raise NotImplementedError

    async def replicas_per_master(self) -> dict[str, int]:
        """Each Redis master's connected replicas, by name (TASKCHAN_SEND_REPLICAS is checked
        against them); NotImplementedError for a store that has no replicas (in memory)."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Delete every message, schedule, idempotency key, counter and worker registration (the layer's ``flush()``)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the connections this event loop opened (stores without any: nothing to do)."""


class HandoffStore:
    """The Celery hand-off's keys (``taskchan/handoff/``): idempotency claims and start counters.

    Sync: a publish runs in the sending thread, the Celery side in a Celery
    worker's.  Every key lives with ``channel``'s other keys (its home host).
    """

    def handoff_claim(self, channel, idempotency_key, claim, ttl_ms) -> str | None:
        """Hold ``idempotency_key`` with ``claim`` for ``ttl_ms`` while a publish is in flight.

        None when the key was free and is now claimed; otherwise the value it
        holds (an earlier message's id, or another send's claim), left as it is.
        """
        raise NotImplementedError

    def handoff_release(self, channel, idempotency_key, claim) -> None:
        """Free the key if it still holds ``claim`` (the publish failed); a key taken over is left alone."""
        raise NotImplementedError

    def handoff_record(self, channel, idempotency_key, message_id, ttl_ms) -> None:
        """The publish succeeded: the key holds ``message_id`` for ``ttl_ms``."""
        raise NotImplementedError

    def handoff_start(self, channel, message_id, attempts_before) -> int:
        """Count one start of attempt ``attempts_before + 1`` in a Celery worker; return the starts so far."""
        raise NotImplementedError

    def handoff_end(self, channel, message_id, attempts_before, *, idempotency_key=None, idempotency_ms=None) -> None:
        """Forget that attempt's start counter; with both given, keep the idempotency key ``idempotency_ms`` more."""
        raise NotImplementedError


class WorkerStore:
    """What a worker does with the messages of one store it reads (one Redis host, or memory).

    Every delivery ends in exactly one of ``ack``, ``reschedule`` or
    ``hand_back``; until then it is leased to the worker's consumer name.
    """

    async def prepare(self, channels: list[str]) -> None:
        """Make ``channels`` readable (on Redis: create each stream's consumer group, from the first entry)."""
        raise NotImplementedError

    async def fetch(self, channels, consumer, count, block_ms) -> list[Delivery]:
        """Lease up to ``count`` new messages per channel to ``consumer``, waiting up to ``block_ms`` for one.

        A delivery whose message holds a cancel marker comes with ``cancelled``
        set, learnt in the same round trip."""
        raise NotImplementedError

    async def ack(
        self, deliveries: list[Delivery], *, outcome: str = "processed", idempotency_ms: int = 0, notes=()
    ):
        """Finish ``deliveries``: delete them, count them under ``outcome`` (``processed`` or ``failed``),
        and keep their idempotency keys for ``idempotency_ms`` more.  In the same round trip, write
        each delivery's ``note`` and the ``notes`` (StatusNote: attempts that started) to the status
        records; with no deliveries, only the notes."""
        raise NotImplementedError

    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0, note=None) -> bool:
        """Replace a leased delivery by ``raw`` (its next attempt's envelope), due in ``delay_ms``, in
        one step; False when it was no longer leased (another worker holds it now).  ``note``
        (the failed attempt, for the status record) is written in the same round trip."""
        raise NotImplementedError

    async def hand_back(self, deliveries: list[Delivery]) -> int:
        """Re-queue unstarted deliveries as fresh entries holding ``delivery.raw``; how many went back."""
        raise NotImplementedError

    async def extend(self, channel, consumer, entry_ids) -> list[str]:
        """Renew ``consumer``'s leases on ``entry_ids``; return the ids it no longer holds."""
        raise NotImplementedError

    def charge(self, delivery, consumer) -> bool:
        """Count a reclaimed delivery as one more attempt, right before it starts (sync, from a job
        thread); False when it is no longer leased to ``consumer``: then it must not start."""
        raise NotImplementedError

    async def acharge(self, delivery, consumer) -> bool:
        """``charge`` from the worker's event loop (async consumers)."""
        raise NotImplementedError

    async def cancelled(self, message_ids) -> set[str]:
        """Which of ``message_ids`` hold a live cancel marker (one round trip)."""
        raise NotImplementedError

    async def reclaim(self, channel, consumer, min_idle_ms, count) -> list[Delivery]:
        """Lease to ``consumer`` up to ``count`` deliveries whose lease lapsed (idle ``min_idle_ms`` or more)."""
        raise NotImplementedError

    async def promote(self, channel, limit=500) -> tuple[int, float | None]:
        """Queue up to ``limit`` scheduled messages now due; (how many, when the next is due or None)."""
        raise NotImplementedError

    async def promote_all(self, channels) -> int:
        """``promote`` every channel (the worker does, every poll); how many messages moved."""
        moved = 0
        for channel in channels:
            moved += (await self.promote(channel))[0]
        return moved

    async def heartbeat_worker(self, worker_id, info: dict, ttl: float) -> None:
        """Register (or keep registered) a live worker with ``info`` for ``ttl`` seconds."""
        raise NotImplementedError

    async def remove_worker(self, worker_id, consumer=None, channels=()) -> None:
        """Drop the worker from the registry and, given ``consumer``, its consumer name from ``channels``' groups."""
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


class StoreBase(ProducerStore, HandoffStore, WorkerStore, FlowStore):
    """A store of one Redis host (``redis.py``) or of process memory (``memory.py``): every contract.

    A ``ShardedStore`` is a ProducerStore and a HandoffStore over several of
    these; a worker reads each of them as its own partition.
    """

    async def lapsed_leases(self, channel, idle_ms: int, limit: int) -> int:
        """How many leases on ``channel`` are idle longer than ``idle_ms`` (counted up to ``limit``)."""
        raise NotImplementedError

    async def survey(self, extra_channels=(), lapse_after=None) -> Survey:
        """One host's survey: ``read`` every channel it knows plus ``extra_channels``."""
        channels = sorted(set(extra_channels) | set(await self.known_channels()))
        stats, workers, lapsed = await self.read(channels, lapse_after)
        return Survey(stats, workers, lapsed=lapsed)

    async def read(self, channels, lapse_after=None) -> tuple[list[ChannelStats], list[dict], dict[str, int]]:
        """(stats, workers, lapsed) of ``channels`` on this store: what ``survey`` shows."""
        stats = await self.stats(channels) if channels else []
        lapsed = await count_lapsed(self, stats, lapse_after) if lapse_after else {}
        return stats, await self.workers(), lapsed


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
