"""taskchan channels spread over several Redis hosts.

With several ``hosts`` (or ``taskchan_hosts``) in the layer's CONFIG, each
taskchan channel has one *home* host, picked from its name by a jump
consistent hash, and every key of that channel (stream, scheduled set,
idempotency keys, counters; see ``keys.py``) lives there.  So each channel
keeps every promise of a single store (one Lua script per multi-key step,
one host per channel), and channels share the hosts' load.

Changing the hosts list moves some channels' homes.  Nothing is stranded on
the old home: every host keeps the set of channels ever sent to it
(``P:channels``), and a worker reads each of its channels on its home *and* on
every host whose set names it (``partitions``).  Jump hashing moves as few
channels as it can when hosts are appended at the end of the list (about
1/N of them for the N-th host); reordering or removing hosts moves more.  What
a move does lose: idempotency keys still inside their window stay on the old
home, so a repeated key sent after the move is accepted once more.

Workers read a sharded store one shard at a time (``partitions()``): the
per-delivery and per-channel worker methods belong to each shard's own
store, and ``Delivery.shard`` says which.  This class serves producers
(``send``, ``send_many``), the Celery hand-off's keys (on each channel's home)
and readers of the whole (stats, the worker registry, burst idleness): the
ProducerStore and HandoffStore contracts of ``base.py``, not the WorkerStore one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging

from redis.exceptions import RedisError

from .base import ChannelStats, HandoffStore, Partition, ProducerStore, StoreBase, Survey

logger = logging.getLogger("taskchan.stores")

_MASK64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014): a bucket in ``range(buckets)``.

    Growing ``buckets`` by one moves only the keys that land in the new
    bucket, about 1/``buckets`` of them; no ring or table is kept.
    """
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * 2862933555777941757 + 1) & _MASK64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


@functools.lru_cache(maxsize=4096)
def shard_index(channel: str, shards: int) -> int:
    """The home shard of ``channel`` among ``shards`` hosts; stable across processes and Python versions."""
    # Not hash(): Python salts str hashes per process, and every producer and
    # worker must agree on a channel's home.
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), shards)


class ShardedStore(ProducerStore, HandoffStore):
    """Producers' and readers' store over several hosts; a worker reads each host as its own partition."""

    def __init__(self, shards: list[StoreBase], draining: list[StoreBase] = ()):
        """``shards``: the hosts channels are homed on; ``draining``: hosts being
        taken out, read (their leftovers) but never sent to."""
        if not shards or len(shards) + len(draining) < 2:
            raise ValueError("a sharded store needs at least one shard and two hosts in all")
        self.active = list(shards)
        self.shards = [*self.active, *draining]  # Partition.index is a position in this list

    def __repr__(self) -> str:
        draining = self.shards[len(self.active) :]
        return f"<ShardedStore {self.active!r}" + (f" draining {draining!r}>" if draining else ">")

    # -- routing ------------------------------------------------------------

    def home(self, channel):
        return self.active[shard_index(channel, len(self.active))]

    async def partitions(self, channels):
        wanted = list(channels)
        answered, unreachable = await self._per_host(lambda store: store.known_channels())
        # A host that is down still gets its home channels; the worker retries
        # it on its own while the other hosts are served, and asks again
        # (housekeeping) for channels left there by a move.
        for where, error in unreachable:
            logger.warning("cannot list the channels on %s (%s); serving its home channels", where, error)
        present = {id(store): set(names) for store, names in answered}
        parts = []
        for index, store in enumerate(self.shards):
            mine = [c for c in wanted if c in present.get(id(store), ()) or (
                index < len(self.active) and shard_index(c, len(self.active)) == index
            )]
            if mine:
                parts.append(Partition(index, store, mine))
        return parts

    async def _per_host(self, read, stores=None) -> tuple[list[tuple[StoreBase, object]], list[tuple[str, str]]]:
        """``read(store)`` on every host side by side: ([(store, result)], [(store repr, error)]).

        Redis errors mark a host unreachable; anything else is raised.
        """
        stores = self.shards if stores is None else stores
        results = await asyncio.gather(*(read(store) for store in stores), return_exceptions=True)
        answered, unreachable = [], []
        for store, result in zip(stores, results, strict=True):
            if isinstance(result, (RedisError, OSError)):
                unreachable.append((repr(store), str(result) or type(result).__name__))
            elif isinstance(result, BaseException):
                raise result
            else:
                answered.append((store, result))
        return answered, unreachable

    # -- producer -----------------------------------------------------------

    def send(self, channel, raw, message_id, **options):
        return self.home(channel).send(channel, raw, message_id, **options)

    async def asend(self, channel, raw, message_id, **options):
        return await self.home(channel).asend(channel, raw, message_id, **options)

    def send_many(self, items):
        by_home: dict[int, list[int]] = {}  # shard -> positions in items
        for position, item in enumerate(items):
            by_home.setdefault(shard_index(item[0], len(self.active)), []).append(position)
        ids = [""] * len(items)
        for index, positions in by_home.items():  # one pipeline per host
            for position, message_id in zip(
                positions, self.shards[index].send_many([items[p] for p in positions]), strict=True
            ):
                ids[position] = message_id
        return ids

    async def status_record(self, message_id):
        # The record lives with its message, on whichever host holds that (its
        # channel's home, or an old home being drained): ask them all at once.
        answered, unreachable = await self._per_host(lambda store: store.status_record(message_id))
        for _store, record in answered:
            if record:
                return record
        if unreachable:  # it may be on a host that does not answer: say so rather than "unknown"
            raise RedisError(f"cannot read status from {', '.join(where for where, _ in unreachable)}")
        return None

    # -- cancel markers: on every host ----------------------------------------
    # A message id does not name its channel, so its home is unknown here; and
    # a message may sit on a host being drained.  The marker goes to every
    # host (a cancel is rare: one round trip per host), and each worker learns
    # it from the host it reads the message from, in its usual round trips.

    def cancel(self, message_id, ttl_ms):
        for store in self.shards:
            store.cancel(message_id, ttl_ms)

    async def acancel(self, message_id, ttl_ms):
        await asyncio.gather(*(store.acancel(message_id, ttl_ms) for store in self.shards))

    def is_cancelled(self, message_id):
        return any(store.is_cancelled(message_id) for store in self.shards)

    async def in_flight(self, channel, limit):
        per_host = await asyncio.gather(*(store.in_flight(channel, limit) for store in self.shards))
        return [leased for host in per_host for leased in host][:limit]

    # -- Celery hand-off: each channel's keys live on its home host ----------

    def handoff_claim(self, channel, idempotency_key, claim, ttl_ms):
        return self.home(channel).handoff_claim(channel, idempotency_key, claim, ttl_ms)

    def handoff_release(self, channel, idempotency_key, claim):
        self.home(channel).handoff_release(channel, idempotency_key, claim)

    def handoff_record(self, channel, idempotency_key, message_id, ttl_ms):
        self.home(channel).handoff_record(channel, idempotency_key, message_id, ttl_ms)

    def handoff_start(self, channel, message_id, attempts_before):
        return self.home(channel).handoff_start(channel, message_id, attempts_before)

    def handoff_end(self, channel, message_id, attempts_before, **options):
        self.home(channel).handoff_end(channel, message_id, attempts_before, **options)

    # -- readers of the whole -----------------------------------------------

    async def _each(self, method: str, *args) -> list:
        return await asyncio.gather(*(getattr(s, method)(*args) for s in self.shards))

    async def known_channels(self):
        """Every channel any host was ever sent to (a moved channel is named by its old home too)."""
        return sorted(set().union(*await self._each("known_channels")))

    async def is_idle(self, channels):
        return all(await self._each("is_idle", channels))

    async def stats(self, channels):
        """Each channel's figures summed over every host (a moved channel may have messages on two)."""
        return _merge_stats(channels, await self._each("stats", list(channels)))

    async def survey(self, extra_channels=(), lapse_after=None):
        """As one store's, from the hosts that answer; the others are listed in ``unreachable``.

        A page or a scrape that goes blank because one host of several is down
        would hide the healthy ones; callers say which host is missing instead.
        A channel whose home did not answer, and which no answering host holds,
        is left out rather than shown as empty.  Raises when no host answers.
        """
        up, unreachable = await self._per_host(lambda store: store.known_channels())
        if not up:
            raise RedisError("; ".join(f"{where}: {error}" for where, error in unreachable))
        answering = {id(store) for store, _ in up}
        held = set().union(*(names for _, names in up))
        channels = sorted(held | {c for c in extra_channels if id(self.home(c)) in answering})
        readings, lost = await self._per_host(
            lambda store: store.read(channels, lapse_after), [store for store, _ in up]
        )
        unreachable += lost
        if not readings:
            raise RedisError("; ".join(f"{where}: {error}" for where, error in unreachable))
        workers: dict[str, dict] = {}
        lapsed: dict[str, int] = dict.fromkeys(channels, 0) if lapse_after else {}
        for _, (_, host_workers, host_lapsed) in readings:
            for info in host_workers:
                workers.setdefault(info["id"], info)  # registered on every host it reads
            for channel, n in host_lapsed.items():
                lapsed[channel] += n
        stats = _merge_stats(channels, [stats for _, (stats, _, _) in readings])
        return Survey(stats, list(workers.values()), unreachable, lapsed)

    async def workers(self):
        # A worker registers on every host it reads; list it once.
        seen: dict[str, dict] = {}
        for per_shard in await self._each("workers"):
            for info in per_shard:
                seen.setdefault(info["id"], info)
        return list(seen.values())

    async def replicas_per_master(self):
        return {name: n for per_host in await self._each("replicas_per_master") for name, n in per_host.items()}

    async def aclose(self):
        await self._each("aclose")

    async def flush(self):
        await self._each("flush")


def _merge_stats(channels, per_host: list[list[ChannelStats]]) -> list[ChannelStats]:
    """One ChannelStats per channel: counts summed over the hosts, the oldest lease, the earliest due."""
    merged = {c: ChannelStats(c) for c in channels}
    for stats in per_host:
        for s in stats:
            total = merged[s.channel]
            for name in (
                "queued", "in_flight", "scheduled", "processed_last_minute", "processed_last_hour",
                "failed_last_minute", "failed_last_hour",
            ):
                setattr(total, name, getattr(total, name) + getattr(s, name))
            if s.oldest_lease_age is not None:
                total.oldest_lease_age = max(total.oldest_lease_age or 0.0, s.oldest_lease_age)
            if s.next_due is not None:
                total.next_due = s.next_due if total.next_due is None else min(total.next_due, s.next_due)
    return [merged[c] for c in channels]
