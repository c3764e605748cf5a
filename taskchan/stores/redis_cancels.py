"""Cancel markers on one Redis: ``P:x``, a sorted set of cancelled message ids.

Each member's score is the unix time (ms) its marker lapses (TASKCHAN_CANCEL_TTL
after the cancel), and the key itself expires with its newest member, so a
Redis where nothing was cancelled for a while holds no ``P:x`` at all.

Why one sorted set and not a key per id: a worker must learn, with no round
trip of its own, whether anything it fetched is cancelled.  Its fetch
pipelines the XREADGROUP with a read of the live members of ``P:x`` (at most
``CANCEL_SCAN``); when none are live, which is the common case, that read
answers an empty list and costs nothing more.  Only a larger set costs one
ZMSCORE per fetched batch (``cancelled``).
"""

from __future__ import annotations

import time

from redis.exceptions import ResponseError

from ..envelope import message_id_of
from .base import Delivery, InFlight
from .codec import Unreadable
from .keys import FIELD, GROUP

#: live markers read along with each fetch; more than this and the batch is
#: looked up with one ZMSCORE instead
CANCEL_SCAN = 100


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisCancels:
    """The cancel-marker methods of ``RedisStore`` (``stores/base.py`` documents them)."""

    def _cancel_pipeline(self, client, message_id: str, ttl_ms: int):
        now = _now_ms()
        pipe = client.pipeline(transaction=True)  # one key: MULTI keeps the set and its TTL together
        pipe.zremrangebyscore(self.keys.cancelled, "-inf", now)
        pipe.zadd(self.keys.cancelled, {message_id: now + ttl_ms})
        # The key lives as long as its newest marker (GT: a shorter TTL never shortens it).
        pipe.pexpire(self.keys.cancelled, ttl_ms, gt=True)
        pipe.pexpire(self.keys.cancelled, ttl_ms, nx=True)
        return pipe

    def cancel(self, message_id, ttl_ms):
        self._cancel_pipeline(self.client, message_id, int(ttl_ms)).execute()

    async def acancel(self, message_id, ttl_ms):
        client, _ = self._aclient()
        await self._cancel_pipeline(client, message_id, int(ttl_ms)).execute()

    def is_cancelled(self, message_id):
        score = self.client.zscore(self.keys.cancelled, message_id)
        return score is not None and score > _now_ms()

    async def cancelled(self, message_ids):
        ids = list(dict.fromkeys(i for i in message_ids if i))
        if not ids:
            return set()
        client, _ = self._aclient()
        now = _now_ms()
        scores = await client.zmscore(self.keys.cancelled, ids)
        return {i for i, score in zip(ids, scores, strict=True) if score is not None and score > now}

    def _live_markers_read(self, pipe) -> None:
        """Queue, on a fetch's pipeline, the read of the live markers (``_marked`` takes its answer)."""
        pipe.zrangebyscore(self.keys.cancelled, _now_ms(), "+inf", start=0, num=CANCEL_SCAN)

    async def _marked(self, deliveries: list[Delivery], live: list[str]) -> list[Delivery]:
        """Set ``cancelled`` on the deliveries whose message has a live marker."""
        if not live or not deliveries:
            return deliveries
        ids = {d: message_id_of(d.raw) for d in deliveries if d.unreadable is None}
        cancelled = set(live) if len(live) < CANCEL_SCAN else await self.cancelled(ids.values())
        for d, message_id in ids.items():
            d.cancelled = message_id in cancelled
        return deliveries

    async def in_flight(self, channel, limit):
        client, _ = self._aclient()
        try:
            leases = await client.xpending_range(self.keys.stream(channel), GROUP, min="-", max="+", count=limit)
        except ResponseError:  # no stream or group yet (or not a stream: nothing to list)
            return []
        pipe = client.pipeline(transaction=False)
        for lease in leases:
            pipe.xrange(self.keys.stream(channel), lease["message_id"], lease["message_id"])
        out = []
        for lease, entries in zip(leases, await pipe.execute(), strict=True):
            fields = entries[0][1] if entries else {}
            try:
                raw = self.codec.unseal(fields.get(FIELD, ""))
            except Unreadable:
                raw = ""
            out.append(InFlight(
                channel, lease["message_id"], message_id_of(raw), lease["consumer"],
                lease["time_since_delivered"] / 1000, lease["times_delivered"],
            ))
        return out
