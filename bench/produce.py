"""One producer process: send ``--count`` jobs to one system, print a JSON line.

Run by the orchestrator (``python -m bench``) as ``python -m bench.produce SYSTEM --count N --target T``.
``--rate R`` paces the sends at R per second (latency phase) and ``--latency``
stamps ``sent_at`` into each message. The timing window is from just before
the first send() call to just after the last one returns, so process start-up,
imports and django.setup() are not counted.

Output (stdout, one line): ``{"t_first": ..., "t_last": ..., "sent": N,
"send_per_s": ..., "cpu_s": ...}`` with wall-clock times (``time.time()``),
comparable with the ``bench:last_done`` time the workers record on the same
machine, the CPU time this process spent in the sending loop, and how long
it waited for a CPU meanwhile (``runq_wait_s``, Linux schedstat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.common import (
    CEILING_STREAM,
    HANDOFF_CHANNEL,
    LIMITED_CHANNEL,
    RATED_CHANNEL,
    RAW_CHANNEL,
    RAW_LAYER_CONFIG,
    RELAY_CHANNEL,
    SPREAD_CHANNELS,
    TASKCHAN_CHANNEL,
    TIME_LIMITED_CHANNEL,
    make_content,
    redis_url,
    sync_client,
)
from bench.processes import run_queue_wait
from bench.systems import DTASKS_SYSTEMS

#: The taskchan channel(s) each taskchan-based system sends to (several: in turn).
CHANNELS = {
    "taskchan": (TASKCHAN_CHANNEL,),
    "encrypted": (TASKCHAN_CHANNEL,),
    "timelimit": (TIME_LIMITED_CHANNEL,),
    "nostatus": (TASKCHAN_CHANNEL,),
    "progress": (TASKCHAN_CHANNEL,),
    "handoff": (HANDOFF_CHANNEL,),
    "relay": (RELAY_CHANNEL,),
    "multi": SPREAD_CHANNELS,
    "sharded": SPREAD_CHANNELS,
    "cluster": SPREAD_CHANNELS,
    "durable": SPREAD_CHANNELS,
    "rated": (RATED_CHANNEL,),
    "limited": (LIMITED_CHANNEL,),
}


class Pacer:
    """Sleep until job i is due, for a steady ``rate`` per second (0 = no pacing)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.perf_counter()

    def delay(self, i: int) -> float:
        if not self.rate:
            return 0.0
        return self.start + i / self.rate - time.perf_counter()


def result(t_first: float, t_last: float, sent: int, cpu_s: float, waited_s: float) -> dict:
    elapsed = max(t_last - t_first, 1e-9)
    return {
        "t_first": t_first,
        "t_last": t_last,
        "sent": sent,
        "send_per_s": sent / elapsed,
        "cpu_s": cpu_s,
        "runq_wait_s": waited_s,
    }


async def produce_raw(count: int, target: int, rate: float, latency: bool) -> dict:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_url()], **RAW_LAYER_CONFIG)
    pacer = Pacer(rate)
    waited, cpu, t_first = run_queue_wait(os.getpid()), time.process_time(), time.time()
    for i in range(count):
        if (wait := pacer.delay(i)) > 0:
            await asyncio.sleep(wait)
        content = make_content(i, target, latency)
        content["type"] = "bench.job"  # channels requires a "type" key
        await layer.send(RAW_CHANNEL, content)
    t_last, cpu, waited = (
        time.time(),
        time.process_time() - cpu,
        run_queue_wait(os.getpid()) - waited,
    )
    await layer.close_pools()
    return result(t_first, t_last, count, cpu, waited)


def produce_sync(send, count: int, target: int, rate: float, latency: bool) -> dict:
    pacer = Pacer(rate)
    waited, cpu, t_first = run_queue_wait(os.getpid()), time.process_time(), time.time()
    for i in range(count):
        if (wait := pacer.delay(i)) > 0:
            time.sleep(wait)
        send(make_content(i, target, latency))
    t_last, cpu, waited = (
        time.time(),
        time.process_time() - cpu,
        run_queue_wait(os.getpid()) - waited,
    )
    return result(t_first, t_last, count, cpu, waited)


def produce_ceiling(count: int, target: int, rate: float, latency: bool) -> dict:
    """One XADD per job from one redis-py client: no envelope, no script, no checks."""
    client = sync_client()
    dumps = json.JSONEncoder(separators=(",", ":")).encode

    def send(content: dict) -> None:
        client.xadd(CEILING_STREAM, {"m": dumps(content)})

    return produce_sync(send, count, target, rate, latency)


def produce_celery(count: int, target: int, rate: float, latency: bool) -> dict:
    from bench.celery_app import noop

    return produce_sync(noop.delay, count, target, rate, latency)


def produce_taskchan(
    count: int, target: int, rate: float, latency: bool, channels: tuple = (TASKCHAN_CHANNEL,)
) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import taskchan

    if len(channels) == 1:
        [channel] = channels

        def send(content: dict) -> None:
            taskchan.send(channel, content)

    else:

        def send(content: dict) -> None:
            taskchan.send(channels[content["i"] % len(channels)], content)

    return produce_sync(send, count, target, rate, latency)


#: messages per send_many() call in the "sendmany" row
SEND_MANY_CHUNK = 1000


def produce_send_many(count: int, target: int, rate: float, latency: bool) -> dict:
    """The taskchan row's jobs stored with ``send_many`` in chunks; paced per chunk in the latency run."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import taskchan

    pacer = Pacer(rate)
    waited, cpu, t_first = run_queue_wait(os.getpid()), time.process_time(), time.time()
    for start in range(0, count, SEND_MANY_CHUNK):
        if (wait := pacer.delay(start)) > 0:
            time.sleep(wait)
        end = min(start + SEND_MANY_CHUNK, count)
        taskchan.send_many(TASKCHAN_CHANNEL, [make_content(i, target, latency) for i in range(start, end)])
    t_last, cpu, waited = (
        time.time(),
        time.process_time() - cpu,
        run_queue_wait(os.getpid()) - waited,
    )
    return result(t_first, t_last, count, cpu, waited)


def produce_dtasks(count: int, target: int, rate: float, latency: bool) -> dict:
    """``noop.enqueue(content)`` per job: Django's task API, whichever backend TASKS names."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_dtasks")
    import django

    django.setup()
    from bench.dtasks import noop

    return produce_sync(noop.enqueue, count, target, rate, latency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["ceiling", "raw", "celery", "sendmany", *CHANNELS, *DTASKS_SYSTEMS])
    parser.add_argument("--count", type=int, required=True, help="jobs to send")
    parser.add_argument(
        "--target", type=int, required=True, help="the job count that ends the phase"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="jobs per second (0 = as fast as possible)"
    )
    parser.add_argument("--latency", action="store_true", help="stamp sent_at into each job")
    args = parser.parse_args()
    params = (args.count, args.target, args.rate, args.latency)
    if args.system == "ceiling":
        out = produce_ceiling(*params)
    elif args.system == "raw":
        out = asyncio.run(produce_raw(*params))
    elif args.system == "celery":
        out = produce_celery(*params)
    elif args.system == "sendmany":
        out = produce_send_many(*params)
    elif args.system in DTASKS_SYSTEMS:
        out = produce_dtasks(*params)
    else:
        out = produce_taskchan(*params, channels=CHANNELS[args.system])
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
