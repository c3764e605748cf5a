"""What the readers of the whole (admin overview, ``taskchan_status``, metrics) read from one Redis.

Mixed into ``RedisStore`` (``redis.py``), whose clients and key names it uses:
per channel, queued and leased counts, the oldest lease, the schedule, the
outcome counters of the last minute and hour, and lapsed leases; the channels
and workers a host lists; the channels whose keys hold the wrong Redis type.
"""

from __future__ import annotations

import json
import time

from redis.exceptions import ResponseError

from ..envelope import CHANNEL_NAME_RE
from .base import ChannelStats
from .keys import BUCKETS_PER_HOUR, BUCKETS_PER_MINUTE, GROUP, listed_levels, stats_bucket


def _worker_info(text: str | None) -> dict | None:
    """A registry entry's JSON; None for one that is missing or not a JSON object (written by hand)."""
    try:
        info = json.loads(text) if text else None
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


class RedisReadings:
    async def known_channels(self):
        client, _ = self._aclient()
        # Only names send() could have written: a member added by hand is no channel.
        return sorted(c for c in await client.smembers(self.keys.channels) if CHANNEL_NAME_RE.match(c))

    async def wrong_type_channels(self, channels):
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        expected = [(c, key, kind) for c in channels
                    for key, kind in ((self.keys.stream(c), "stream"), (self.keys.scheduled(c), "zset"))]
        for _channel, key, _kind in expected:
            pipe.type(key)
        found = {}
        for (channel, key, kind), actual in zip(expected, await pipe.execute(), strict=True):
            if actual not in (kind, "none"):
                found.setdefault(channel, f"the Redis key {key!r} holds a {actual}, not a {kind}")
        return found

    async def stats(self, channels):
        client, _ = self._aclient()
        now = time.time()
        bucket = stats_bucket(now)
        last_hour = range(bucket - BUCKETS_PER_HOUR + 1, bucket + 1)
        pipe = client.pipeline(transaction=False)
        for channel in channels:
            stream = self.keys.stream(channel)
            pipe.xlen(stream)
            # redis-py's own methods: execute_command("XPENDING", ...) would run
            # the summary parser on the range form too and fail on its reply.
            pipe.xpending(stream, GROUP)
            pipe.xpending_range(stream, GROUP, min="-", max="+", count=200)
            pipe.zcard(self.keys.scheduled(channel))
            pipe.zrange(self.keys.scheduled(channel), 0, 0, withscores=True)
            for outcome in ("processed", "failed"):
                # MGET as a plain command: a cluster pipeline refuses redis-py's mget()
                # (its keys, one channel's, share one slot: see keys.py).
                pipe.execute_command("MGET", *(self.keys.counter(channel, outcome, b) for b in last_hour))
            pipe.zrange(self.keys.levels(channel), 0, -1)
        replies = await pipe.execute(raise_on_error=False)
        levels = await self._level_figures(channels, [replies[i * 8 + 7] for i in range(len(channels))])
        result = []
        for i, channel in enumerate(channels):
            length, summary, detail, scheduled, first, processed, failed = replies[i * 8 : i * 8 + 7]
            in_flight = summary["pending"] if isinstance(summary, dict) else 0
            idles = [row["time_since_delivered"] for row in detail] if isinstance(detail, list) else []
            length = length if isinstance(length, int) else 0
            for level_length, level_pending, level_idles in levels.get(channel, ()):
                length, in_flight, idles = length + level_length, in_flight + level_pending, idles + level_idles
            result.append(
                ChannelStats(
                    channel=channel,
                    queued=max(0, length - in_flight),
                    in_flight=in_flight,
                    oldest_lease_age=max(idles) / 1000 if idles else None,
                    scheduled=scheduled or 0,
                    next_due=first[0][1] / 1000 if first else None,
                    processed_last_minute=sum(int(v or 0) for v in processed[-BUCKETS_PER_MINUTE:]),
                    processed_last_hour=sum(int(v or 0) for v in processed),
                    failed_last_minute=sum(int(v or 0) for v in failed[-BUCKETS_PER_MINUTE:]),
                    failed_last_hour=sum(int(v or 0) for v in failed),
                )
            )
        return result

    async def _level_figures(self, channels, listings) -> dict[str, list[tuple[int, int, list[int]]]]:
        """(length, leased, lease idles) of each priority level's stream, by channel: a second
        round trip, only when some channel uses priority (``stats`` reads the listings)."""
        lanes = [(c, self.keys.lane(c, level)) for c, found in zip(channels, listings, strict=True)
                 for level in listed_levels(found)]
        if not lanes:
            return {}
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        for _channel, lane in lanes:
            pipe.xlen(lane)
            pipe.xpending(lane, GROUP)
            pipe.xpending_range(lane, GROUP, min="-", max="+", count=200)
        replies = await pipe.execute(raise_on_error=False)
        out: dict[str, list[tuple[int, int, list[int]]]] = {}
        for i, (channel, _lane) in enumerate(lanes):
            length, summary, detail = replies[i * 3 : i * 3 + 3]
            out.setdefault(channel, []).append((
                length if isinstance(length, int) else 0,
                summary["pending"] if isinstance(summary, dict) else 0,
                [row["time_since_delivered"] for row in detail] if isinstance(detail, list) else [],
            ))
        return out

    async def replicas_per_master(self) -> dict[str, int]:
        """The master's connected replicas, by its name (compared with TASKCHAN_SEND_REPLICAS)."""
        client, _ = self._aclient()
        info = await client.info("replication")
        return {repr(self): int(info.get("connected_slaves", 0))}

    async def lapsed_leases(self, channel, idle_ms, limit):
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)  # the channel's own stream and its levels' listing
        pipe.xpending_range(self.keys.stream(channel), GROUP, min="-", max="+", count=int(limit), idle=int(idle_ms))
        pipe.zrange(self.keys.levels(channel), 0, -1)
        rows, levels = await pipe.execute(raise_on_error=False)
        if isinstance(rows, ResponseError) and "NOGROUP" not in str(rows):
            raise rows
        lapsed = len(rows) if isinstance(rows, list) else 0
        for level in listed_levels(levels):
            if lapsed >= limit:
                break
            try:
                lapsed += len(await client.xpending_range(
                    self.keys.lane(channel, level), GROUP, min="-", max="+", count=int(limit) - lapsed,
                    idle=int(idle_ms),
                ))
            except ResponseError:
                pass  # a level's stream gone or written around taskchan: fetch.lua clears its listing
        return lapsed

    async def workers(self):
        client, _ = self._aclient()
        ids = await client.zrange(self.keys.workers, 0, -1)
        if not ids:
            return []
        infos = await client.mget([self.keys.worker(i) for i in ids])
        return [dict(info, id=i) for i, info in zip(ids, map(_worker_info, infos), strict=True) if info]
