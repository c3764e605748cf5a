"""Raw channels_redis consumer: one process, one ``receive()`` at a time.

Run by the orchestrator as ``python -m bench.raw_worker``; stopped with SIGTERM.
This is the at-most-once baseline: no lease, no ack, no retry.
"""

from __future__ import annotations

import asyncio

import redis.asyncio
from channels_redis.core import RedisChannelLayer

from bench.common import RAW_CHANNEL, RAW_LAYER_CONFIG, arecord_done, redis_url


async def consume() -> None:
    layer = RedisChannelLayer(hosts=[redis_url()], **RAW_LAYER_CONFIG)
    r = redis.asyncio.Redis.from_url(redis_url())
    while True:
        message = await layer.receive(RAW_CHANNEL)
        await arecord_done(r, message)


if __name__ == "__main__":
    asyncio.run(consume())
