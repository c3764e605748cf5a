"""The reliable store on Redis Streams consumer groups.

Why streams: a consumer group gives the lease for free.  XREADGROUP moves an
entry into the group's pending list in the same step that hands it to a worker,
so there is no moment after a pop and before a lease is recorded (failure
window 2); XPENDING/XCLAIM give lapsed leases and delivery counts; and a job
costs one round trip to send plus a share of a batched read and a batched ack.
See ``keys.py`` for every key and ``lua/`` for every multi-key step.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from . import replicas
from .base import Delivery, StoreBase
from .codec import PLAIN, Codec, Unreadable
from .hosts import CONNECTION_OPTIONS, client_options, sentinel_options, without_password
from .keys import (
    FIELD,
    GROUP,
    STATS_TTL_SECONDS,
    Keys,
    stats_bucket,
)
from .redis_cancels import RedisCancels
from .redis_flow import RedisFlow
from .redis_handoff import RedisHandoff
from .redis_readings import RedisReadings
from .redis_status import RedisStatus, queue_notes
from .scripts import load_scripts

_shared: dict[str, RedisStore] = {}


def shared_store(host: Any, prefix: str, codec: Codec = PLAIN) -> RedisStore:
    """One RedisStore (one connection pool) per Redis, prefix and keys in a process,
    shared by ``get_store()`` and the channel layer's ``taskchan_store``."""
    # Codecs are one per list of keys (codec_for), so id() names the keys.
    key = json.dumps([host, prefix, id(codec)], sort_keys=True, default=str)
    store = _shared.get(key)
    if store is None:
        store = _shared[key] = RedisStore(host, prefix=prefix, codec=codec)
    return store


def _entry(channel: str, entry_id: str, fields: Any, deliveries: int = 1, reclaimed: bool = False) -> Delivery:
    """A stream entry as a Delivery; one that is not a taskchan entry (sent around taskchan) is
    marked ``unreadable``, its fields kept as JSON for the dead letter."""
    if isinstance(fields, list):  # Lua replies give a flat [field, value, ...]
        fields = dict(zip(fields[::2], fields[1::2], strict=False))
    if isinstance(fields, dict) and len(fields) == 1 and FIELD in fields:
        return Delivery(channel, entry_id, fields[FIELD], deliveries, reclaimed)
    raw = json.dumps({"unexpected stream fields": fields}, default=str, ensure_ascii=False)
    why = f"a stream entry must have one field, {FIELD!r} (the envelope); this one has other fields"
    return Delivery(channel, entry_id, raw, deliveries, reclaimed, unreadable=why)


class RedisStore(RedisCancels, RedisReadings, RedisStatus, RedisHandoff, RedisFlow, StoreBase):
    #: whether status records are written (``tracking.py``); not on a cluster (``cluster.py``)
    keeps_status = True

    def __init__(self, host: Any, prefix: str = "taskchan", codec: Codec = PLAIN):
        # Every envelope is sealed on its way in and unsealed on its way out
        # (codec.py): above this class, text is always plain.
        self.codec = codec
        self.sentinel = sentinel_options(host)
        if self.sentinel:
            self.url = None
            self.master_name, self.sentinels, self.sentinel_kwargs, options = self.sentinel
        else:
            self.url, options = client_options(host)
        options = {**CONNECTION_OPTIONS, **options}
        self.options = options
        self.keys = Keys(prefix)
        self._scripts = load_scripts()
        sync_options = {**options, "retry": redis.retry.Retry(NoBackoff(), 0)}
        if self.sentinel:
            sentinel = redis.sentinel.Sentinel(
                self.sentinels, sentinel_kwargs=self._sentinel_kwargs(redis.retry.Retry), **sync_options
            )
            self.client = sentinel.master_for(self.master_name)
        elif self.url:
            self.client = redis.Redis.from_url(self.url, **sync_options)
        else:
            self.client = redis.Redis(**sync_options)
        self._sync_send = self.client.register_script(self._scripts["send"])
        self._sync_charge = self.client.register_script(self._scripts["charge"])
        # redis.asyncio connections belong to the event loop that opened them.
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        # Shown in logs, the admin and taskchan_status: never the password.
        where = without_password(self.url) if self.url else self.options.get("host")
        if self.sentinel:
            where = f"sentinel master {self.master_name!r} via {self.sentinels}"
        return f"<RedisStore {where} prefix={self.keys.prefix!r}>"

    def _sentinel_kwargs(self, retry_class) -> dict:
        """Options for the connections to the sentinels: CONFIG's, else redis-py's default, without retries."""
        if self.sentinel_kwargs is not None:
            return dict(self.sentinel_kwargs)
        kwargs = {k: v for k, v in self.options.items() if k.startswith("socket_")}
        return {**kwargs, "retry": retry_class(NoBackoff(), 0)}

    # -- clients ------------------------------------------------------------

    def _aclient(self) -> tuple[redis.asyncio.Redis, dict]:
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is None:
            options = {**self.options, "retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
            sentinel = None
            if self.sentinel:
                sentinel = redis.asyncio.sentinel.Sentinel(
                    self.sentinels, sentinel_kwargs=self._sentinel_kwargs(redis.asyncio.retry.Retry), **options
                )
                client = sentinel.master_for(self.master_name)
            elif self.url:
                client = redis.asyncio.Redis.from_url(self.url, **options)
            else:
                client = redis.asyncio.Redis(**options)
            scripts = {name: client.register_script(text) for name, text in self._scripts.items()}
            # The Sentinel is kept alongside so aclose() can close its connections too.
            entry = (client, scripts, sentinel)
            self._async[loop] = entry
        return entry[0], entry[1]

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._async.pop(loop, None)
        if entry:
            await entry[0].aclose()
            if entry[2] is not None:
                await entry[2].aclose()

    # -- producer -----------------------------------------------------------

    def _send_args(
        self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0, status_ms=0,
        record=None,
    ):
        keys = [
            self.keys.stream(channel), self.keys.scheduled(channel), self.keys.channel_set(channel),
            self.keys.status(message_id),
        ]
        if idempotency_key is not None:
            keys.append(self.keys.idempotency(channel, idempotency_key))
        args = [self.codec.seal(raw), message_id, int(delay_ms), int(idempotency_ms) + int(delay_ms), channel]
        return keys, [*args, int(status_ms), *(() if record is None else (self.codec.seal(record),))]

    def send(self, channel, raw, message_id, **options):
        keys, args = self._send_args(channel, raw, message_id, **options)
        if replicas.wanted():
            return replicas.send_waiting(self.client, self._sync_send, keys, args, self)
        return self._sync_send(keys=keys, args=args)

    async def asend(self, channel, raw, message_id, **options):
        keys, args = self._send_args(channel, raw, message_id, **options)
        client, scripts = self._aclient()
        if replicas.wanted():
            return await replicas.asend_waiting(client, scripts["send"], keys, args, self)
        return await scripts["send"](keys=keys, args=args)

    #: sends per pipeline in ``send_many``; 10,000 envelopes of a few hundred
    #: bytes are a few MB, well within what one pipeline should carry
    SEND_MANY_PIPELINE = 10_000

    def send_many(self, items):
        # Bulk sends (send_many, the admin's bulk retry, the outbox sweep):
        # one pipelined round trip per SEND_MANY_PIPELINE instead of one each.
        ids = []
        for start in range(0, len(items), self.SEND_MANY_PIPELINE):
            pipe = self.client.pipeline(transaction=False)
            for channel, raw, message_id, options in items[start : start + self.SEND_MANY_PIPELINE]:
                keys, args = self._send_args(channel, raw, message_id, **options)
                self._sync_send(keys=keys, args=args, client=pipe)
            if replicas.wanted():  # one WAIT covers every send before it on this connection
                pipe.execute_command(*replicas.wait_args())
                replies = pipe.execute()
                replicas.check_acknowledged(int(replies[-1]), self)
                ids += replies[:-1]
            else:
                ids += pipe.execute()
        return ids

    # -- worker -------------------------------------------------------------

    def _delivery(self, channel, entry_id, fields, deliveries=1, reclaimed=False) -> Delivery:
        """A read entry as a Delivery holding its plain envelope, or, if it does not
        unseal, what was stored and why (the worker dead-letters it as malformed)."""
        delivery = _entry(channel, entry_id, fields, deliveries, reclaimed)
        if delivery.unreadable is None:
            try:
                delivery.raw = self.codec.unseal(delivery.raw)
            except Unreadable as exc:
                delivery.unreadable = str(exc)  # raw keeps what was stored
        return delivery

    async def prepare(self, channels):
        client, _ = self._aclient()
        for channel in channels:
            try:
                # From id 0: messages sent before any worker ever ran are delivered too.
                await client.xgroup_create(self.keys.stream(channel), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def fetch(self, channels, consumer, count, block_ms):
        client, _ = self._aclient()
        streams = {self.keys.stream(channel): ">" for channel in channels}
        pipe = client.pipeline(transaction=False)  # the read and the cancel markers: one round trip
        pipe.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms or None)
        self._live_markers_read(pipe)
        try:
            reply, live = await pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream (and its group) was deleted, e.g. by FLUSHDB: recreate.
            await self.prepare(channels)
            return []
        deliveries = []
        for stream, entries in reply or ():
            channel = self.keys.channel_of_stream(stream)
            for entry_id, fields in entries:
                deliveries.append(self._delivery(channel, entry_id, fields))
        return await self._marked(deliveries, live)

    async def ack(self, deliveries, *, outcome="processed", idempotency_ms=0, notes=()):
        if not deliveries and not notes:
            return
        client, scripts = self._aclient()
        by_channel: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        bucket = stats_bucket(time.time())
        pipe = client.pipeline(transaction=False)
        for channel, batch in by_channel.items():
            stream = self.keys.stream(channel)
            ids = [d.entry_id for d in batch]
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
            counter = self.keys.counter(channel, outcome, bucket)
            pipe.incrby(counter, len(ids))
            pipe.expire(counter, STATS_TTL_SECONDS)
            for d in batch:
                if d.idempotency_key is not None:
                    pipe.pexpire(self.keys.idempotency(channel, d.idempotency_key), int(idempotency_ms))
        if self.keeps_status:
            await queue_notes(pipe, scripts["status"], self.keys, [*notes, *(d.note for d in deliveries)])
        for reply in await pipe.execute(raise_on_error=False):
            # A stream replaced by a key of another type holds nothing to ack
            # (the worker sets that channel aside); any other error fails the batch.
            if isinstance(reply, Exception) and "WRONGTYPE" not in str(reply):
                raise reply

    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0, note=None):
        client, scripts = self._aclient()
        keys = [self.keys.stream(delivery.channel), self.keys.scheduled(delivery.channel)]
        if delivery.idempotency_key is not None:
            keys.append(self.keys.idempotency(delivery.channel, delivery.idempotency_key))
        args = [GROUP, delivery.entry_id, self.codec.seal(raw), int(delay_ms), int(idempotency_ms)]
        if note is None or not self.keeps_status:
            return bool(await scripts["reschedule"](keys=keys, args=args))
        pipe = client.pipeline(transaction=False)  # the status update rides in the same round trip
        await scripts["reschedule"](keys=keys, args=args, client=pipe)
        await queue_notes(pipe, scripts["status"], self.keys, [note])
        return bool((await pipe.execute())[0])

    async def hand_back(self, deliveries):
        _, scripts = self._aclient()
        returned = 0
        by_channel: dict[str, list[str]] = {}
        for d in deliveries:
            # An entry that could not be unsealed goes back exactly as it was stored.
            stored = d.raw if d.unreadable else self.codec.seal(d.raw)
            by_channel.setdefault(d.channel, []).extend((d.entry_id, stored))
        for channel, pairs in by_channel.items():
            returned += await scripts["handback"](keys=[self.keys.stream(channel)], args=[GROUP, *pairs])
        return returned

    async def extend(self, channel, consumer, entry_ids):
        if not entry_ids:
            return []
        _, scripts = self._aclient()
        return await scripts["extend"](keys=[self.keys.stream(channel)], args=[GROUP, consumer, *entry_ids])

    async def reclaim(self, channel, consumer, min_idle_ms, count):
        _, scripts = self._aclient()
        try:
            reply = await scripts["reclaim"](
                keys=[self.keys.stream(channel)], args=[GROUP, consumer, int(min_idle_ms), int(count)]
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise
        return [
            self._delivery(channel, entry_id, fields, int(n), reclaimed=True) for entry_id, fields, n in reply
        ]

    def charge(self, delivery, consumer):
        # Sync: called by a job thread right before it starts the job.
        keys = [self.keys.stream(delivery.channel)]
        return bool(self._sync_charge(keys=keys, args=[GROUP, consumer, delivery.entry_id, delivery.deliveries + 1]))

    async def acharge(self, delivery, consumer):
        _, scripts = self._aclient()
        keys = [self.keys.stream(delivery.channel)]
        args = [GROUP, consumer, delivery.entry_id, delivery.deliveries + 1]
        return bool(await scripts["charge"](keys=keys, args=args))

    async def promote(self, channel, limit=500):
        _, scripts = self._aclient()
        moved, next_due = await scripts["promote"](
            keys=[self.keys.scheduled(channel), self.keys.stream(channel)], args=[limit]
        )
        return int(moved), (float(next_due) / 1000 if next_due else None)

    async def promote_all(self, channels):
        # Every worker does this every poll interval: one round trip for all
        # its channels, not one per channel.
        client, scripts = self._aclient()
        pipe = client.pipeline(transaction=False)
        for channel in channels:
            await scripts["promote"](keys=[self.keys.scheduled(channel), self.keys.stream(channel)], args=[500], client=pipe)
        return sum(int(moved) for moved, _next_due in await pipe.execute())

    async def is_idle(self, channels):
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        for channel in channels:
            # Acked entries are deleted, so the stream's length counts both the
            # queued and the leased messages.
            pipe.xlen(self.keys.stream(channel))
            pipe.zcard(self.keys.scheduled(channel))
        return not any(await pipe.execute())

    async def forget_idle_consumers(self, channel, min_idle_ms):
        _, scripts = self._aclient()
        return int(await scripts["forget"](keys=[self.keys.stream(channel)], args=[GROUP, int(min_idle_ms)]))

    async def heartbeat_worker(self, worker_id, info, ttl):
        client, _ = self._aclient()
        now_ms = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {worker_id: now_ms})
        pipe.set(self.keys.worker(worker_id), json.dumps(info), ex=max(1, int(ttl)))
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms - int(ttl * 1000))
        await pipe.execute()

    async def remove_worker(self, worker_id, consumer=None, channels=()):
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self.keys.workers, worker_id)
        pipe.delete(self.keys.worker(worker_id))
        await pipe.execute()
        if consumer and channels:
            # Our consumer name leaves each group unless it still holds leases
            # (see forget.lua): one pipelined round trip for all channels.
            _, scripts = self._aclient()
            pipe = client.pipeline(transaction=False)
            for channel in channels:
                await scripts["forget"](keys=[self.keys.stream(channel)], args=[GROUP, 0, consumer], client=pipe)
            await pipe.execute()

    async def flush(self):
        client, _ = self._aclient()
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.keys.prefix) + ":*"
        batch = []
        # SCAN, not channels_redis's KEYS: it never blocks a Redis holding millions of keys.
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)
