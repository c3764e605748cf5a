"""``@consumer``: declaring a consumer, and expanding runworker's channel patterns.

The table itself (channel -> consumer) is ``consumer_table.py``, which the
producer reads without importing this module (a Consumer's ``send`` shortcut
calls the producer); its lookups are importable from here too.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import producer
from .conf import settings
from .consumer_table import add, all_consumers, get_consumer, unregister
from .envelope import check_max_attempts, check_seconds, validate_channel
from .flow.options import Flow, flow_options
from .time_limits import check_time_limit
from .tracking import record_ms

__all__ = ["Consumer", "UnknownPattern", "all_consumers", "consumer", "expand", "get_consumer", "unregister"]

HANDOFFS = (None, "celery")


@dataclass(eq=False)
class Consumer:
    """A registered consumer: the function plus its delivery options.

    Options left as None follow the TASKCHAN_* settings at the time of use.
    """

    channel: str
    func: Callable[..., Any]
    max_attempts_option: int | None = None
    backoff: Any = None  # a tenacity wait strategy; None means retry.DEFAULT_BACKOFF
    visibility_timeout_option: float | None = None
    handoff: str | None = None
    time_limit_option: float | None = None
    result_ttl: float | None = None  # seconds the return value (JSON) is kept in the status record
    flow: Flow = field(default_factory=Flow)  # schedule, rate and concurrency limits (taskchan/flow/)

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    @functools.cached_property
    def is_async(self) -> bool:
        # Asked for every delivery the worker queues; the function never changes.
        return inspect.iscoroutinefunction(self.func)

    @property
    def max_attempts(self) -> int:
        return self.max_attempts_option or settings.MAX_ATTEMPTS

    @property
    def visibility_timeout(self) -> float:
        return float(self.visibility_timeout_option or settings.VISIBILITY_TIMEOUT)

    @property
    def time_limit(self) -> float | None:
        """Seconds a job may run before it is interrupted (the option, else TASKCHAN_TIME_LIMIT), or None."""
        limit = self.time_limit_option if self.time_limit_option is not None else settings.TIME_LIMIT
        return None if limit is None else float(limit)

    @property
    def status_ms(self) -> int:
        """Milliseconds its messages' status records live (0: none kept)."""
        return record_ms(self.result_ttl)

    def __call__(self, message):
        return self.func(message)

    def send(self, content: dict, **options) -> str:
        """Shortcut: ``make_thumbnail.send({...})`` is ``taskchan.send(channel, {...})``."""
        return producer.send(self.channel, content, **options)

    async def asend(self, content: dict, **options) -> str:
        return await producer.asend(self.channel, content, **options)


def consumer(
    channel: str,
    *,
    max_attempts: int | None = None,
    backoff: Any = None,
    visibility_timeout: float | None = None,
    handoff: str | None = None,
    time_limit: float | None = None,
    schedule: Any = None,
    catch_up: bool = True,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[Any], Any] | None = None,
    result_ttl: float | None = None,
) -> Callable[[Callable[..., Any]], Consumer]:
    """Register the decorated function (plain or ``async def``) as the consumer of ``channel``.

    Flow control (``docs/flow-control.md``): ``schedule`` (a crontab in
    TIME_ZONE, whole seconds or a timedelta) sends ``{"slot": ...}`` once per
    slot, ``catch_up=False`` skips the slots missed while no worker ran;
    ``rate_limit`` ("100/s", "/m", "/h") and ``concurrency_limit`` (per
    ``concurrency_key(message)``, else for the channel) hold across every
    worker.  Bad values raise ``taskchan.InvalidOption`` here.

    ``result_ttl`` (seconds) keeps each message's JSON return value in its
    status record (``taskchan.status(id).result``) that long; a return value
    JSON cannot hold then fails the attempt (ResultNotSerializable).
    """
    validate_channel(channel)
    check_max_attempts(max_attempts)
    if visibility_timeout is not None and (
        isinstance(visibility_timeout, bool)
        or not isinstance(visibility_timeout, (int, float))
        or not 0 < visibility_timeout < math.inf
    ):
        raise ValueError(f"visibility_timeout must be a positive number of seconds, got {visibility_timeout!r}")
    check_seconds("result_ttl", result_ttl)
    if backoff is not None and not callable(backoff):
        raise TypeError("backoff must be a tenacity wait strategy, e.g. tenacity.wait_exponential_jitter()")
    if handoff not in HANDOFFS:
        raise ValueError(f"handoff must be one of {HANDOFFS}, got {handoff!r}")
    check_time_limit(time_limit)
    flow = flow_options(
        schedule=schedule, catch_up=catch_up, rate_limit=rate_limit, concurrency_limit=concurrency_limit,
        concurrency_key=concurrency_key, handoff=handoff,
    )

    def register(func: Callable[..., Any]) -> Consumer:
        return add(Consumer(
            channel, func, max_attempts, backoff, visibility_timeout, handoff, time_limit, result_ttl, flow=flow
        ))

    return register


def expand(patterns: list[str]) -> tuple[list[str], list[str]]:
    """Split runworker's arguments into (taskchan channels, other channels).

    ``taskchan.*`` and other shell patterns are matched against the registered
    consumers; a pattern or taskchan name that matches none is an error that
    lists the channels that exist.  Names outside ``taskchan.`` are passed
    through for channels' own worker.
    """
    known = sorted(all_consumers())
    taskchan_channels: list[str] = []
    others: list[str] = []
    for pattern in patterns:
        if not pattern.startswith("taskchan.") and not any(c in pattern for c in "*?["):
            others.append(pattern)
            continue
        matched = fnmatch.filter(known, pattern)
        if not matched:
            listing = ", ".join(known) if known else "none (no @taskchan.consumer was imported)"
            raise UnknownPattern(
                f"{pattern!r} matches no registered consumer. Known taskchan channels: {listing}."
            )
        taskchan_channels.extend(c for c in matched if c not in taskchan_channels)
    return taskchan_channels, others


class UnknownPattern(LookupError):
    pass
