"""Flow control's keys on one Redis: token buckets, concurrency slots, schedule slots, pauses.

Part of ``RedisStore`` (``redis.py``): the keys are ``P:rate:CH``,
``P:cc:CH:KEY``, ``P:sched:CH`` and ``P:paused:CH`` (``keys.py``); the
multi-step ones are ``rate.lua``, ``slots.lua`` and ``fire.lua``.  Each call
is one round trip whatever the number of items.
"""

from __future__ import annotations

import json


class RedisFlow:
    # Provided by RedisStore: client (sync), _aclient() (async client, scripts), keys, codec.

    async def take_tokens(self, channel, per_ms, capacity, wanted):
        _, scripts = self._aclient()
        granted, wait_ms = await scripts["rate"](
            keys=[self.keys.rate(channel)], args=[repr(float(per_ms)), int(capacity), int(wanted)]
        )
        return int(granted), int(wait_ms) / 1000

    async def take_slots(self, channel, limit, lease_ms, holdings):
        if not holdings:
            return []
        _, scripts = self._aclient()
        keys = [self.keys.concurrency(channel, key) for key, _member in holdings]
        reply = await scripts["slots"](keys=keys, args=[int(limit), int(lease_ms), *(m for _k, m in holdings)])
        return [bool(r) for r in reply]

    async def renew_slots(self, channel, lease_ms, holdings):
        # slots.lua with limit 0 renews existing holdings only: Redis' clock
        # decides every expiry, whatever the workers' clocks say.
        await self.take_slots(channel, 0, lease_ms, holdings)

    async def release_slots(self, channel, holdings):
        if not holdings:
            return
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        for key, member in holdings:
            pipe.zrem(self.keys.concurrency(channel, key), member)
        await pipe.execute()

    async def fire_slot(self, channel, raw, message_id, slot_ms, *, catch_up=False):
        _, scripts = self._aclient()
        keys = [self.keys.schedule(channel), self.keys.stream(channel), self.keys.channel_set(channel)]
        args = [int(slot_ms), self.codec.seal(raw), channel, "1" if catch_up else "0"]
        return bool(await scripts["fire"](keys=keys, args=args))

    async def values_of(self, keys: list[str]) -> list[str | None]:
        """GET of every key in one round trip: MGET here; a cluster store pipelines
        GETs instead (its keys sit in several slots, which MGET refuses)."""
        client, _ = self._aclient()
        return await client.mget(keys)

    async def last_slots(self, channels):
        channels = list(channels)
        if not channels:
            return {}
        values = await self.values_of([self.keys.schedule(c) for c in channels])
        return {c: int(v) / 1000 for c, v in zip(channels, values, strict=True) if v is not None}

    def set_paused(self, channel, info):
        if info is None:
            self.client.delete(self.keys.paused(channel))
        else:
            self.client.set(self.keys.paused(channel), json.dumps(info))

    async def paused(self, channels):
        channels = list(channels)
        if not channels:
            return {}
        values = await self.values_of([self.keys.paused(c) for c in channels])
        return {c: _info(v) for c, v in zip(channels, values, strict=True) if v is not None}


def _info(value: str) -> dict:
    try:
        info = json.loads(value)
    except ValueError:
        info = None
    # Written around taskchan: still a pause (the key's presence is what counts).
    return info if isinstance(info, dict) else {"value": value}
