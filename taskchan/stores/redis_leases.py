"""A worker's leases on one Redis: fetch, reclaim, renew, charge and hand back, level by level.

Mixed into ``RedisStore`` (``redis.py``), whose clients, key names and
``_delivery`` it uses.  A channel's messages of priority N != 0 wait in a
stream of their own (``P:q:CH:pN``, ``keys.py``); a Delivery's ``entry_id``
names its level (``keys.entry_level``), so every later step on it works on the
stream it came from.  A channel that never used priority has only its own
stream: every step is one call on it, as before.
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from .base import Delivery
from .keys import GROUP, entry_level, leveled, listed_levels
from .scripts import queue_evalsha, rerun_unloaded


def by_level(entry_ids) -> dict[int, list[str]]:
    """Delivery entry ids grouped by priority level, as stream entry ids."""
    out: dict[int, list[str]] = {}
    for entry_id in entry_ids:
        stream_id, level = entry_level(entry_id)
        out.setdefault(level, []).append(stream_id)
    return out


class RedisLeases:
    def _fetch_keys(self, channel: str) -> list[str]:
        return [self.keys.stream(channel), self.keys.levels(channel)]

    def _fetched(self, channel, reply) -> list[Delivery]:
        """fetch.lua's (or reclaim.lua's) reply for ``channel`` as Deliveries."""
        return [
            self._delivery(channel, leveled(entry_id, int(level)), fields)
            for level, entry_id, fields in reply
        ]

    async def fetch(self, channels, consumer, count, block_ms):
        client, scripts = self._aclient()
        # One round trip: each channel's fetch.lua (highest level first) and the
        # cancel markers; the scripts as bare EVALSHA (scripts.queue_evalsha).
        pipe, reruns = client.pipeline(transaction=False), {}
        for channel in channels:
            queue_evalsha(pipe, scripts["fetch"], self._fetch_keys(channel), [GROUP, consumer, int(count)], reruns)
        self._live_markers_read(pipe)
        *replies, live = await rerun_unloaded(await pipe.execute(raise_on_error=False), reruns)
        deliveries, missing, error = self._sorted_fetches(channels, replies)
        if missing:
            await self.prepare(missing)
        if error is not None:
            raise error  # what was leased comes back by reclaim once its lease lapses
        if deliveries or not block_ms or missing:
            return await self._marked(deliveries, live)
        return await self._wait_read(channels, consumer, count, block_ms)

    def _sorted_fetches(self, channels, replies) -> tuple[list[Delivery], list[str], BaseException | None]:
        """fetch.lua's reply per channel, sorted: what was leased, the channels whose group is
        gone (a FLUSHDB: the caller recreates it), and the first other error."""
        deliveries, missing, error = [], [], None
        for channel, reply in zip(channels, replies, strict=True):
            if isinstance(reply, ResponseError) and "NOGROUP" in str(reply):
                missing.append(channel)
            elif isinstance(reply, BaseException):
                error = error or reply
            else:
                deliveries += self._fetched(channel, reply)
        return deliveries, missing, error

    async def _wait_read(self, channels, consumer, count, block_ms) -> list[Delivery]:
        """Nothing was waiting: block on the channels' own streams until a message comes.

        A message of priority N != 0 sent meanwhile is read by the next fetch
        (its stream is not waited on): at most ``block_ms`` later."""
        client, _ = self._aclient()
        streams = {self.keys.stream(channel): ">" for channel in channels}
        pipe = client.pipeline(transaction=False)  # the read and the cancel markers: one round trip
        pipe.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms or None)
        self._live_markers_read(pipe)
        reply, live = await pipe.execute(raise_on_error=False)  # garbage at the markers: _marked
        if isinstance(reply, BaseException):
            if "NOGROUP" not in str(reply):
                raise reply
            # The stream (and its group) was deleted, e.g. by FLUSHDB: recreate.
            await self.prepare(channels)
            return []
        deliveries = []
        for stream, entries in reply or ():
            channel = self.keys.channel_of_stream(stream)
            for entry_id, fields in entries:
                deliveries.append(self._delivery(channel, entry_id, fields))
        return await self._marked(deliveries, live)

    async def is_idle(self, channels):
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        for channel in channels:
            # Acked entries are deleted, so a stream's length counts both the
            # queued and the leased messages.
            pipe.xlen(self.keys.stream(channel))
            pipe.zcard(self.keys.scheduled(channel))
            pipe.zrange(self.keys.levels(channel), 0, -1)
        replies = await pipe.execute(raise_on_error=False)
        lanes = []
        for i, channel in enumerate(channels):
            length, scheduled, levels = replies[3 * i : 3 * i + 3]
            for reply in (length, scheduled):
                if isinstance(reply, Exception):
                    raise reply
            if length or scheduled:
                return False
            lanes += [self.keys.lane(channel, level) for level in listed_levels(levels)]
        if not lanes:
            return True
        # A level stays listed until a fetch finds its stream empty: read the
        # streams themselves (a second round trip, for channels using priority only).
        pipe = client.pipeline(transaction=False)
        for lane in lanes:
            pipe.xlen(lane)
        return not any(
            r for r in await pipe.execute(raise_on_error=False) if not isinstance(r, Exception)
        )

    async def reclaim(self, channel, consumer, min_idle_ms, count):
        _, scripts = self._aclient()
        try:
            reply = await scripts["reclaim"](
                keys=self._fetch_keys(channel), args=[GROUP, consumer, int(min_idle_ms), int(count)]
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise
        return [
            self._delivery(channel, leveled(entry_id, int(level)), fields, int(n), reclaimed=True)
            for level, entry_id, fields, n in reply
        ]

    async def hand_back(self, deliveries):
        _, scripts = self._aclient()
        returned = 0
        by_stream: dict[str, list[str]] = {}
        for d in deliveries:
            # An entry that could not be unsealed goes back exactly as it was stored.
            stored = d.raw if d.unreadable else self.codec.seal(d.raw)
            stream_id, level = entry_level(d.entry_id)
            by_stream.setdefault(self.keys.lane(d.channel, level), []).extend((stream_id, stored))
        for stream, pairs in by_stream.items():
            returned += await scripts["handback"](keys=[stream], args=[GROUP, *pairs])
        return returned

    async def extend(self, channel, consumer, entry_ids):
        _, scripts = self._aclient()
        lost = []
        for level, ids in by_level(entry_ids).items():
            reply = await scripts["extend"](
                keys=[self.keys.lane(channel, level)], args=[GROUP, consumer, *ids]
            )
            lost += [leveled(i if isinstance(i, str) else i.decode(), level) for i in reply]
        return lost

    def _charge_call(self, delivery, consumer) -> tuple[list[str], list]:
        stream_id, level = entry_level(delivery.entry_id)
        keys = [self.keys.lane(delivery.channel, level)]
        return keys, [GROUP, consumer, stream_id, delivery.deliveries + 1]

    def charge(self, delivery, consumer):
        # Sync: called by a job thread right before it starts the job.
        keys, args = self._charge_call(delivery, consumer)
        return bool(self._sync_charge(keys=keys, args=args))

    async def acharge(self, delivery, consumer):
        _, scripts = self._aclient()
        keys, args = self._charge_call(delivery, consumer)
        return bool(await scripts["charge"](keys=keys, args=args))
