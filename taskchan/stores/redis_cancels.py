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

import logging
import time

from redis.exceptions import ResponseError

from ..envelope import message_id_of
from .base import Delivery, InFlight
from .codec import Unreadable
from .keys import FIELD, GROUP, leveled, listed_levels

#: live markers read along with each fetch; more than this and the batch is
#: looked up with one ZMSCORE instead
CANCEL_SCAN = 100
#: seconds between the log lines saying ``P:x`` is not a sorted set
GARBAGE_LOG_EVERY = 60.0

logger = logging.getLogger("taskchan.worker")
_garbage_logged_at = {"at": float("-inf")}


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
        try:
            scores = await client.zmscore(self.keys.cancelled, ids)
        except ResponseError as exc:
            if self._markers_garbage(exc):
                return set()
            raise
        return {i for i, score in zip(ids, scores, strict=True) if score is not None and score > now}

    def _markers_garbage(self, exc: BaseException) -> bool:
        """Whether ``exc`` says ``P:x`` holds another type (garbage written into Redis): then
        no cancel can be read, and the worker works on without them, saying so once a minute.
        ``cancel()`` itself raises on such a key, so the sender learns of it too."""
        if not (isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")):
            return False
        if time.monotonic() - _garbage_logged_at["at"] >= GARBAGE_LOG_EVERY:
            _garbage_logged_at["at"] = time.monotonic()
            logger.error(
                "%s on %r is not a sorted set of cancel markers: cancels are not seen until it is "
                "deleted (redis-cli DEL %s)", self.keys.cancelled, self, self.keys.cancelled,
            )
        return True

    def _live_markers_read(self, pipe):
        """Queue, on a fetch's pipeline, the read of the live markers (``_marked`` takes its answer);
        given a client, the read itself (a coroutine)."""
        return pipe.zrangebyscore(self.keys.cancelled, _now_ms(), "+inf", start=0, num=CANCEL_SCAN)

    async def _marked(self, deliveries: list[Delivery], live) -> list[Delivery]:
        """Set ``cancelled`` on the deliveries whose message has a live marker.

        ``live`` is the pipelined read's answer: the live markers, or the error
        it met; garbage at ``P:x`` counts as none, any other error (a slot
        moving, on a cluster) has the batch looked up by id.
        """
        if isinstance(live, BaseException) and self._markers_garbage(live):
            live = []
        if not live or not deliveries:
            return deliveries
        ids = {d: message_id_of(d.raw) for d in deliveries if d.unreadable is None}
        if isinstance(live, list) and len(live) < CANCEL_SCAN:
            cancelled = set(live)
        else:
            cancelled = await self.cancelled(ids.values())
        for d, message_id in ids.items():
            d.cancelled = message_id in cancelled
        return deliveries

    async def in_flight(self, channel, limit):
        client, _ = self._aclient()
        try:
            found = await client.zrange(self.keys.levels(channel), 0, -1)
        except ResponseError:  # a listing written around taskchan lists nothing
            found = []
        # Every priority level's stream, highest first (the channel's own is level 0).
        levels = sorted({0, *listed_levels(found)}, reverse=True)
        out = []
        for level in levels:
            if len(out) < limit:
                out += await self._in_flight_of(channel, level, limit - len(out))
        return out

    async def _in_flight_of(self, channel, level, limit) -> list[InFlight]:
        client, _ = self._aclient()
        stream = self.keys.lane(channel, level)
        try:
            leases = await client.xpending_range(stream, GROUP, min="-", max="+", count=limit)
        except ResponseError:  # no stream or group yet (or not a stream: nothing to list)
            return []
        pipe = client.pipeline(transaction=False)
        for lease in leases:
            pipe.xrange(stream, lease["message_id"], lease["message_id"])
        out = []
        for lease, entries in zip(leases, await pipe.execute(), strict=True):
            fields = entries[0][1] if entries else {}
            try:
                raw = self.codec.unseal(fields.get(FIELD, ""))
            except Unreadable:
                raw = ""
            out.append(InFlight(
                channel, leveled(lease["message_id"], level), message_id_of(raw), lease["consumer"],
                lease["time_since_delivered"] / 1000, lease["times_delivered"],
            ))
        return out
