"""What every benchmarked system shares: the Redis URL, the keys, the no-op job.

Each system's job body is one of :func:`record_done` / :func:`arecord_done`, so
the work per job is identical everywhere: one ``INCR`` (plus one ``SET`` on the
very last job, plus one ``RPUSH`` per job in the latency phase only).

The message content is ``{"i": i, "n": target}`` (and ``"sent_at"`` in the
latency phase): ``n`` tells the job which ``INCR`` result is the last one, so
no job needs an extra round trip to learn the target.
"""

from __future__ import annotations

import os
import time

#: Environment variable holding the URL of the bench's own Redis. It is always
#: set by the orchestrator (``python -m bench``); nothing here falls back to a default Redis, so the
#: bench can never write to a Redis it did not start.
REDIS_URL_ENV = "BENCH_REDIS_URL"

#: INCR counter: jobs done in the current phase.
DONE_KEY = "bench:done"
#: ``time.time()`` (float seconds) when the counter reached the phase's target.
LAST_DONE_KEY = "bench:last_done"
#: List of latencies in seconds (``time.time() - content["sent_at"]``).
LATENCY_KEY = "bench:lat"

#: Every per-phase key, deleted between phases.
PHASE_KEYS = (DONE_KEY, LAST_DONE_KEY, LATENCY_KEY)

RAW_CHANNEL = "bench.raw"
#: The ceiling row's stream and consumer group: bare Redis Streams, no taskchan code
#: (bench/streams_worker.py, and the "ceiling" producer in bench/produce.py).
CEILING_STREAM = "bench:ceiling"
CEILING_GROUP = "bench"
#: The ceiling worker's XREADGROUP COUNT: entries read, run and acked per round.
CEILING_BATCH = 100
TASKCHAN_CHANNEL = "taskchan.bench"
#: The same no-op with a time_limit that never binds: the cost of watching it (bench/jobs.py).
TIME_LIMITED_CHANNEL = "taskchan.bench-time-limited"
#: the same job with flow control that does not bind: a rate limit far above
#: the rate reached, and a concurrency limit above the worker's concurrency
RATED_CHANNEL = "taskchan.bench-rated"
LIMITED_CHANNEL = "taskchan.bench-limited"
CELERY_QUEUE = "bench"
#: the django.tasks rows' queue (taskchan's backend: the channel taskchan.tasks.bench)
DTASKS_QUEUE = "bench"
#: A taskchan channel with handoff="celery": send() publishes to Celery (bench/jobs_handoff.py).
HANDOFF_CHANNEL = "taskchan.bench-handoff"
#: The other design, for comparison: a taskchan worker relays each message to Celery.
RELAY_CHANNEL = "taskchan.bench-relay"

#: Four channels for the "multi" and "sharded" rows: with two Redis hosts, the
#: first two are homed on the first host and the last two on the second
#: (taskchan.stores.sharded.shard_index; bench/cli.py checks it).
SPREAD_CHANNELS = (
    "taskchan.bench-sh.0",
    "taskchan.bench-sh.1",
    "taskchan.bench-sh.5",
    "taskchan.bench-sh.7",
)
#: Environment variable with the comma-separated Redis URLs of the "sharded" row's store.
SHARD_URLS_ENV = "BENCH_SHARD_URLS"

#: channels_redis options for the raw baseline. The capacity must hold a whole
#: run (the default of 100 would raise ChannelFull as soon as the producer is
#: 100 jobs ahead), and the expiry must outlast the slowest drain (the default
#: 60 s would silently drop jobs and hang the count).
RAW_LAYER_CONFIG = {"capacity": 10_000_000, "expiry": 3600}


def redis_url() -> str:
    try:
        return os.environ[REDIS_URL_ENV]
    except KeyError:
        raise RuntimeError(
            f"{REDIS_URL_ENV} is not set; run the benchmark through 'python -m bench', "
            "which starts its own redis-server."
        ) from None


def make_content(i: int, target: int, latency: bool) -> dict:
    content = {"i": i, "n": target}
    if latency:
        # Stamped right before the send() call: latency = send start -> job start.
        content["sent_at"] = time.time()
    return content


_sync_client = None


def sync_client():
    """One redis-py client per process (thread-safe; its pool serves all threads)."""
    global _sync_client
    if _sync_client is None:
        import redis

        _sync_client = redis.Redis.from_url(redis_url())
    return _sync_client


def record_done(content: dict) -> None:
    """The no-op job, for synchronous workers (Celery threads, taskchan)."""
    started = time.time()
    r = sync_client()
    if "sent_at" in content:
        r.rpush(LATENCY_KEY, started - content["sent_at"])
    if r.incr(DONE_KEY) == content["n"]:
        r.set(LAST_DONE_KEY, repr(time.time()))


async def arecord_done(r, content: dict) -> None:
    """The same no-op job for an asyncio worker; ``r`` is a redis.asyncio client."""
    started = time.time()
    if "sent_at" in content:
        await r.rpush(LATENCY_KEY, started - content["sent_at"])
    if await r.incr(DONE_KEY) == content["n"]:
        await r.set(LAST_DONE_KEY, repr(time.time()))
