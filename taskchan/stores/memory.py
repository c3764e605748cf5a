"""The reliable store in process memory, for development with no services.

Same contract as ``redis.py`` (``tests/contract/`` runs on both), kept in one
process: producers and workers must share it, which is what ``runserver``'s
in-process workers do.  Any thread or event loop may call it; a lock guards the
state and waiting fetches are woken through their own loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import OrderedDict

from ..envelope import message_id_of
from .base import ChannelStats, Delivery, InFlight, StoreBase
from .keys import BUCKETS_PER_HOUR, BUCKETS_PER_MINUTE, entry_level, stats_bucket
from .memory_flow import FlowState, MemoryFlow
from .notes import merged_notes


class _Channel:
    __slots__ = ("entries", "unread", "pending", "scheduled")

    def __init__(self):
        self.entries: OrderedDict[str, str] = OrderedDict()  # entry id -> envelope, until acked
        # Heap of (-priority, seq, entry id) never delivered: the highest priority first, FIFO among equals.
        self.unread: list[tuple[int, int, str]] = []
        self.pending: dict[str, list] = {}  # entry id -> [consumer, leased at (monotonic), deliveries]
        self.scheduled: list[tuple[float, int, str, int]] = []  # heap of (due, seq, envelope, priority)


class MemoryStore(MemoryFlow, StoreBase):
    def __init__(self):
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._idempotency: dict[tuple[str, str], tuple[str, float]] = {}
        self._counters: dict[tuple[str, str, int], int] = {}
        self._workers: dict[str, tuple[float, dict, float]] = {}
        self._celery_starts: dict[tuple[str, int], int] = {}  # (message id, attempts before) -> starts
        self._cancelled: dict[str, float] = {}  # message id -> unix time its cancel marker lapses
        self._status: dict[str, tuple[dict[str, str], float]] = {}  # message id -> (record, expires at)
        self._ids = itertools.count(1)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.flow = FlowState()  # memory_flow.py

    def __repr__(self):
        return "<MemoryStore>"

    def _channel(self, name) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel()
        return ch

    def _add(self, ch: _Channel, raw: str, level: int = 0) -> None:
        seq = next(self._ids)
        entry_id = f"{seq}-0~{level}" if level else f"{seq}-0"  # named as on Redis (keys.entry_level)
        ch.entries[entry_id] = raw
        heapq.heappush(ch.unread, (-level, seq, entry_id))

    def _wake(self) -> None:
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                self._waiters.discard((loop, event))

    # -- producer -----------------------------------------------------------

    def send(
        self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0, status_ms=0,
        record=None, priority=0,
    ):
        now = time.time()
        with self._lock:
            if idempotency_key is not None:
                held = self._idempotency.get((channel, idempotency_key))
                if held and held[1] > now:
                    return held[0]
                self._idempotency[(channel, idempotency_key)] = (
                    message_id,
                    now + (idempotency_ms + delay_ms) / 1000,
                )
            ch = self._channel(channel)
            if delay_ms > 0:
                heapq.heappush(ch.scheduled, (now + delay_ms / 1000, next(self._ids), raw, priority))
            else:
                self._add(ch, raw, priority)
            if status_ms > 0:  # the fields send.lua writes
                now_ms = int(now * 1000)
                fields = {"ch": channel, "q": str(now_ms), "due": str(now_ms + int(delay_ms))}
                if record is not None:
                    fields["x"] = record
                self._status[message_id] = (fields, now + status_ms / 1000)
        self._wake()
        return message_id

    def _write_notes(self, notes) -> None:
        """Merge status notes into their records (under the lock)."""
        now = time.time()
        for note in merged_notes(notes):
            record, expires = self._status.get(note.message_id, ({}, 0.0))
            record = {**record, **note.fields} if expires > now else dict(note.fields)
            self._status[note.message_id] = (record, now + note.ttl_ms / 1000)

    async def status_record(self, message_id):
        with self._lock:
            record, expires = self._status.get(message_id, (None, 0.0))
            return dict(record) if record and expires > time.time() else None

    async def asend(self, channel, raw, message_id, **options):
        return self.send(channel, raw, message_id, **options)

    # -- Celery hand-off: the same keys as on Redis (stores/keys.py), in memory --

    def handoff_claim(self, channel, idempotency_key, claim, ttl_ms):
        now = time.time()
        with self._lock:
            held = self._idempotency.get((channel, idempotency_key))
            if held and held[1] > now:
                return held[0]
            self._idempotency[(channel, idempotency_key)] = (claim, now + ttl_ms / 1000)
            return None

    def handoff_release(self, channel, idempotency_key, claim):
        with self._lock:
            held = self._idempotency.get((channel, idempotency_key))
            if held and held[0] == claim:
                del self._idempotency[(channel, idempotency_key)]

    def handoff_record(self, channel, idempotency_key, message_id, ttl_ms):
        with self._lock:
            self._idempotency[(channel, idempotency_key)] = (message_id, time.time() + ttl_ms / 1000)

    def handoff_start(self, channel, message_id, attempts_before):
        with self._lock:
            starts = self._celery_starts[(message_id, attempts_before)] = (
                self._celery_starts.get((message_id, attempts_before), 0) + 1
            )
            return starts

    def handoff_end(self, channel, message_id, attempts_before, *, idempotency_key=None, idempotency_ms=None):
        with self._lock:
            self._celery_starts.pop((message_id, attempts_before), None)
            if idempotency_ms is not None:
                self._keep_key(channel, idempotency_key, idempotency_ms)

    # -- worker -------------------------------------------------------------

    async def prepare(self, channels):
        with self._lock:
            for name in channels:
                self._channel(name)

    def _take(self, channels, consumer, count) -> list[Delivery]:
        now = time.monotonic()
        out = []
        with self._lock:
            for name in channels:
                ch = self._channel(name)
                for _ in range(min(count, len(ch.unread))):
                    entry_id = heapq.heappop(ch.unread)[2]
                    ch.pending[entry_id] = [consumer, now, 1]
                    delivery = Delivery(name, entry_id, ch.entries[entry_id])
                    delivery.cancelled = self._is_cancelled(message_id_of(delivery.raw))
                    out.append(delivery)
        return out

    def _is_cancelled(self, message_id) -> bool:
        return message_id is not None and self._cancelled.get(message_id, 0) > time.time()

    def cancel(self, message_id, ttl_ms):
        now = time.time()
        with self._lock:
            self._cancelled = {i: until for i, until in self._cancelled.items() if until > now}
            self._cancelled[message_id] = max(self._cancelled.get(message_id, 0), now + ttl_ms / 1000)

    async def acancel(self, message_id, ttl_ms):
        self.cancel(message_id, ttl_ms)

    def is_cancelled(self, message_id):
        with self._lock:
            return self._is_cancelled(message_id)

    async def cancelled(self, message_ids):
        with self._lock:
            return {i for i in message_ids if self._is_cancelled(i)}

    async def fetch(self, channels, consumer, count, block_ms):
        deliveries = self._take(channels, consumer, count)
        if deliveries or not block_ms:
            return deliveries
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        self._waiters.add(waiter)
        try:
            deadline = time.monotonic() + block_ms / 1000
            while not deliveries and (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(event.wait(), left)
                except TimeoutError:
                    pass
                event.clear()
                deliveries = self._take(channels, consumer, count)
        finally:
            self._waiters.discard(waiter)
        return deliveries

    def _finish(self, ch: _Channel, entry_id: str) -> bool:
        """Ack one entry; False when it was not pending."""
        if ch.pending.pop(entry_id, None) is None:
            return False
        ch.entries.pop(entry_id, None)
        return True

    def _keep_key(self, channel, key, ms):
        if key is not None and (channel, key) in self._idempotency:
            message_id, _ = self._idempotency[(channel, key)]
            self._idempotency[(channel, key)] = (message_id, time.time() + ms / 1000)

    async def ack(self, deliveries, *, outcome="processed", idempotency_ms=0, notes=()):
        bucket = stats_bucket(time.time())
        with self._lock:
            self._write_notes([*notes, *(d.note for d in deliveries)])
            for d in deliveries:
                self._finish(self._channel(d.channel), d.entry_id)
                counter = (d.channel, outcome, bucket)
                self._counters[counter] = self._counters.get(counter, 0) + 1
                self._keep_key(d.channel, d.idempotency_key, idempotency_ms)

    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0, note=None):
        with self._lock:
            self._write_notes([note])
            ch = self._channel(delivery.channel)
            if not self._finish(ch, delivery.entry_id):
                return False
            level = entry_level(delivery.entry_id)[1]  # the retry keeps its priority
            if delay_ms > 0:
                heapq.heappush(ch.scheduled, (time.time() + delay_ms / 1000, next(self._ids), raw, level))
            else:
                self._add(ch, raw, level)
            self._keep_key(delivery.channel, delivery.idempotency_key, idempotency_ms + delay_ms)
        self._wake()
        return True

    async def hand_back(self, deliveries):
        returned = 0
        with self._lock:
            for d in deliveries:
                ch = self._channel(d.channel)
                if self._finish(ch, d.entry_id):
                    self._add(ch, d.raw, entry_level(d.entry_id)[1])
                    returned += 1
        self._wake()
        return returned

    async def extend(self, channel, consumer, entry_ids):
        lost = []
        now = time.monotonic()
        with self._lock:
            ch = self._channel(channel)
            for entry_id in entry_ids:
                lease = ch.pending.get(entry_id)
                if lease is None:
                    continue  # finished meanwhile
                if lease[0] == consumer:
                    lease[1] = now
                else:
                    lost.append(entry_id)
        return lost

    async def reclaim(self, channel, consumer, min_idle_ms, count):
        now = time.monotonic()
        out = []
        with self._lock:
            ch = self._channel(channel)
            for entry_id, lease in ch.pending.items():
                if len(out) >= count:
                    break
                if (now - lease[1]) * 1000 >= min_idle_ms:
                    # The count is not raised here: see charge() and lua/reclaim.lua.
                    lease[0], lease[1] = consumer, now
                    out.append(Delivery(channel, entry_id, ch.entries[entry_id], lease[2], reclaimed=True))
        return out

    def charge(self, delivery, consumer):
        with self._lock:
            lease = self._channel(delivery.channel).pending.get(delivery.entry_id)
            if lease is None or lease[0] != consumer:
                return False
            lease[2] = delivery.deliveries + 1
            return True

    async def acharge(self, delivery, consumer):
        return self.charge(delivery, consumer)

    async def promote(self, channel, limit=500):
        now = time.time()
        moved = 0
        with self._lock:
            ch = self._channel(channel)
            while ch.scheduled and ch.scheduled[0][0] <= now and moved < limit:
                _, _, raw, level = heapq.heappop(ch.scheduled)
                self._add(ch, raw, level)
                moved += 1
            next_due = ch.scheduled[0][0] if ch.scheduled else None
        if moved:
            self._wake()
        return moved, next_due

    async def is_idle(self, channels):
        with self._lock:
            return not any(
                self._channel(n).entries or self._channel(n).scheduled for n in channels
            )

    async def known_channels(self):
        with self._lock:
            return sorted(self._channels)

    async def stats(self, channels):
        now_mono = time.monotonic()
        bucket = stats_bucket(time.time())
        last_minute = range(bucket - BUCKETS_PER_MINUTE + 1, bucket + 1)
        last_hour = range(bucket - BUCKETS_PER_HOUR + 1, bucket + 1)
        result = []
        with self._lock:
            for name in channels:
                ch = self._channel(name)
                ages = [now_mono - lease[1] for lease in ch.pending.values()]

                def count(outcome, buckets):
                    return sum(self._counters.get((name, outcome, b), 0) for b in buckets)  # noqa: B023

                result.append(
                    ChannelStats(
                        channel=name,
                        queued=len(ch.unread),
                        in_flight=len(ch.pending),
                        oldest_lease_age=max(ages) if ages else None,
                        scheduled=len(ch.scheduled),
                        next_due=ch.scheduled[0][0] if ch.scheduled else None,
                        processed_last_minute=count("processed", last_minute),
                        processed_last_hour=count("processed", last_hour),
                        failed_last_minute=count("failed", last_minute),
                        failed_last_hour=count("failed", last_hour),
                    )
                )
        return result

    async def in_flight(self, channel, limit):
        now = time.monotonic()
        with self._lock:
            ch = self._channel(channel)
            return [
                InFlight(channel, entry_id, message_id_of(ch.entries[entry_id]), lease[0], now - lease[1], lease[2])
                for entry_id, lease in list(ch.pending.items())[:limit]
            ]

    async def lapsed_leases(self, channel, idle_ms, limit):
        cutoff = time.monotonic() - idle_ms / 1000
        with self._lock:
            pending = self._channel(channel).pending.values()
            return min(int(limit), sum(1 for lease in pending if lease[1] < cutoff))

    async def heartbeat_worker(self, worker_id, info, ttl):
        with self._lock:
            self._workers[worker_id] = (time.time(), info, ttl)

    async def remove_worker(self, worker_id, consumer=None, channels=()):
        with self._lock:
            self._workers.pop(worker_id, None)

    async def flush(self):
        self._cancelled.clear()
        with self._lock:
            self._channels.clear()
            self._idempotency.clear()
            self._counters.clear()
            self._workers.clear()
            self._celery_starts.clear()
            self.flow = FlowState()
            self._status.clear()

    async def workers(self):
        now = time.time()
        with self._lock:
            return [dict(info, id=i) for i, (seen, info, ttl) in self._workers.items() if now - seen < ttl]
