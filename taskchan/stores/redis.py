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

from . import redis_bulk, replicas
from .base import Delivery, StoreBase
from .codec import PLAIN, Codec, Unreadable
from .hosts import CONNECTION_OPTIONS, client_options, sentinel_options, without_password
from .keys import FIELD, GROUP, STATS_TTL_SECONDS, Keys, entry_level, scheduled_member, stats_bucket
from .redis_cancels import RedisCancels
from .redis_flow import RedisFlow
from .redis_handoff import RedisHandoff
from .redis_leases import RedisLeases, by_level
from .redis_readings import RedisReadings
from .redis_status import RedisStatus
from .scripts import executed, load_scripts, queue_evalsha

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


class RedisStore(RedisLeases, RedisCancels, RedisReadings, RedisStatus, RedisHandoff, RedisFlow, StoreBase):
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
        self._sync_send_many = self.client.register_script(self._scripts["send_many"])
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

    def send_args(
        self, channel, raw, message_id, *, delay_ms=0, idempotency_key=None, idempotency_ms=0, status_ms=0,
        record=None, priority=0,
    ):
        keys = [
            self.keys.lane(channel, priority), self.keys.scheduled(channel), self.keys.channel_set(channel),
            self.keys.status(message_id), self.keys.levels(channel),
        ]
        if idempotency_key is not None:
            keys.append(self.keys.idempotency(channel, idempotency_key))
        sealed = self.codec.seal(raw)
        if delay_ms > 0:
            sealed = scheduled_member(sealed, priority)
        args = [sealed, message_id, int(delay_ms), int(idempotency_ms) + int(delay_ms), channel, int(status_ms)]
        return keys, [*args, int(priority), *(() if record is None else (self.codec.seal(record),))]

    def send(self, channel, raw, message_id, **options):
        keys, args = self.send_args(channel, raw, message_id, **options)
        if replicas.wanted():
            return replicas.send_waiting(self.client, self._sync_send, keys, args, self)
        return self._sync_send(keys=keys, args=args)

    async def asend(self, channel, raw, message_id, **options):
        keys, args = self.send_args(channel, raw, message_id, **options)
        client, scripts = self._aclient()
        if replicas.wanted():
            return await replicas.asend_waiting(client, scripts["send"], keys, args, self)
        return await scripts["send"](keys=keys, args=args)

    def send_many(self, items):
        # Bulk sends (send_many, the admin's bulk retry, the outbox sweep): one
        # round trip per 10,000, a script call per channel's batch (redis_bulk.py).
        return redis_bulk.send_many(self, self._sync_send, self._sync_send_many, items)

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
            for level, ids in by_level(d.entry_id for d in batch).items():
                stream = self.keys.lane(channel, level)  # each level's entries on its own stream
                pipe.xack(stream, GROUP, *ids)
                pipe.xdel(stream, *ids)
            counter = self.keys.counter(channel, outcome, bucket)
            pipe.incrby(counter, len(batch))
            pipe.expire(counter, STATS_TTL_SECONDS)
            for d in batch:
                if d.idempotency_key is not None:
                    pipe.pexpire(self.keys.idempotency(channel, d.idempotency_key), int(idempotency_ms))
        reruns: dict = {}
        await self.queue_status(pipe, scripts, [*notes, *(d.note for d in deliveries)], reruns)
        # A stream (or record) replaced by a key of another type holds nothing to
        # write (the worker sets that channel aside); any other error fails the batch.
        await executed(pipe, reruns, tolerated="WRONGTYPE")

    async def reschedule(self, delivery, raw, delay_ms, *, idempotency_ms=0, note=None):
        client, scripts = self._aclient()
        stream_id, level = entry_level(delivery.entry_id)  # the retry keeps its level
        keys = [self.keys.lane(delivery.channel, level), self.keys.scheduled(delivery.channel)]
        if delivery.idempotency_key is not None:
            keys.append(self.keys.idempotency(delivery.channel, delivery.idempotency_key))
        sealed = self.codec.seal(raw)
        sealed = scheduled_member(sealed, level) if delay_ms > 0 else sealed
        args = [GROUP, stream_id, sealed, int(delay_ms), int(idempotency_ms)]
        if note is None:
            return bool(await scripts["reschedule"](keys=keys, args=args))
        pipe = client.pipeline(transaction=False)  # the status update rides in the same round trip
        reruns: dict = {}
        queue_evalsha(pipe, scripts["reschedule"], keys, args, reruns)
        await self.queue_status(pipe, scripts, [note], reruns)
        moved, _noted = await executed(pipe, reruns)
        return bool(moved)

    def _promote_keys(self, channel) -> list[str]:
        return [self.keys.scheduled(channel), self.keys.stream(channel), self.keys.levels(channel)]

    async def promote(self, channel, limit=500):
        _, scripts = self._aclient()
        moved, next_due = await scripts["promote"](
            keys=self._promote_keys(channel), args=[limit]
        )
        return int(moved), (float(next_due) / 1000 if next_due else None)

    async def promote_all(self, channels):
        # Every worker does this every poll interval: one round trip for all
        # its channels, not one per channel.
        client, scripts = self._aclient()
        pipe, reruns = client.pipeline(transaction=False), {}
        for channel in channels:
            queue_evalsha(pipe, scripts["promote"], self._promote_keys(channel), [500], reruns)
        return sum(int(moved) for moved, _next_due in await executed(pipe, reruns))

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
            pipe, reruns = client.pipeline(transaction=False), {}
            for channel in channels:
                queue_evalsha(pipe, scripts["forget"], [self.keys.stream(channel)], [GROUP, 0, consumer], reruns)
            await executed(pipe, reruns)

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
