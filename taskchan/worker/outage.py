"""A Redis host that does not answer, as one worker sees it: backoff and a quiet log.

Several loops of a worker call the same host (its fetcher, its upkeep, the
acker).  Each reports what happened to the host's ``Outage``; it answers how
long to wait before the next try and writes the log: one line when the host
stops answering, one per backoff step (the wait doubles, from ``first`` to
``cap`` seconds), then one a minute while it stays down, and one when it
answers again.  Not one line per failed call: a worker whose Redis is down for
an hour writes a few dozen lines, not tens of thousands.

The wait is the time the host has been down so far, between ``first`` and
``cap``: exponential while the outage is young, however many loops share it.
"""

from __future__ import annotations

import logging
import time

import tenacity
from redis.exceptions import RedisError

from ..stores.base import Partition
from .quarantine import Quarantine, is_wrong_type

logger = logging.getLogger("taskchan.worker")

#: seconds between "still down" lines once the backoff reached its cap
STILL_DOWN_EVERY = 60.0


class Outage:
    def __init__(self, where: str, *, first: float = 0.1, cap: float = 5.0, clock=time.monotonic):
        self.where = where
        self.first = first
        self.cap = cap
        self._clock = clock
        self.down_since: float | None = None
        self._step = 0.0  # the wait last logged
        self._next_still_down = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def delay(self) -> float:
        """Seconds to wait before the next try: 0 while the host answers."""
        if self.down_since is None:
            return 0.0
        return min(self.cap, max(self.first, self._clock() - self.down_since))

    def failed(self, what: str, exc: BaseException) -> float:
        """Record a failed call (``what``: e.g. "fetch"); log if this is news; return the wait."""
        now = self._clock()
        error = str(exc) or type(exc).__name__
        if self.down_since is None:
            self.down_since = now
            self._step = self.first
            self._next_still_down = now + STILL_DOWN_EVERY
            logger.warning(
                "Redis %s does not answer (%s: %s); retrying with backoff from %.1f s up to %.0f s",
                self.where, what, error, self.first, self.cap,
            )
            return self.first
        wait = self.delay()
        if wait >= 2 * self._step or (wait >= self.cap > self._step):
            self._step = wait
            logger.warning(
                "Redis %s still does not answer after %.1f s (%s: %s); next try in %.1f s",
                self.where, now - self.down_since, what, error, wait,
            )
        elif wait >= self.cap and now >= self._next_still_down:
            self._next_still_down = now + STILL_DOWN_EVERY
            logger.warning(
                "Redis %s still does not answer after %.0f s (%s: %s)", self.where, now - self.down_since, what, error
            )
        return wait

    def answered(self) -> None:
        """Record a call that worked; log once if the host was down."""
        if self.down_since is None:
            return
        logger.warning("Redis %s answers again after %.1f s", self.where, self._clock() - self.down_since)
        self.down_since = None


class RedisHealth:
    """What a worker knows of the Redis hosts it reads: each host's outage, and
    the channels set aside for a key of the wrong type (quarantine.py)."""

    def __init__(self):
        self.outages: dict[int, Outage] = {}  # partition index -> its host's outage
        self.quarantine = Quarantine()

    def usable(self, part) -> list[str]:
        """The channels of ``part`` (a ``stores.base.Partition``) to read and keep up now."""
        return self.quarantine.usable(part.index, part.channels)

    def delay(self, index: int) -> float:
        """Seconds the host of partition ``index`` asks a loop to wait (0 while it answers)."""
        outage = self.outages.get(index)
        return outage.delay() if outage else 0.0

    async def failed(self, what: str, part, channels: list[str], exc: BaseException) -> float:
        """A Redis call on ``part`` over ``channels`` failed: set aside the channels whose
        key has the wrong type, or count it towards the host's outage; the wait before
        trying again."""
        if is_wrong_type(exc):
            try:
                if await self.quarantine.inspect(part.index, part.store, channels):
                    return 0.0  # set aside: the others can be read again at once
            except (RedisError, OSError) as again:
                exc = again
        # A WRONGTYPE no channel key explains (another key of ours?) is backed off from like an outage.
        outage = self.outages.setdefault(part.index, Outage(repr(part.store)))
        return outage.failed(what, exc)

    def answered(self, part) -> None:
        """A Redis call on ``part`` worked."""
        if (outage := self.outages.get(part.index)) is not None:
            outage.answered()

    async def recheck(self, part) -> None:
        """Look again at ``part``'s channels set aside whose time has come (quarantine.py)."""
        await self.quarantine.recheck(part.index, part.store)

    async def guarded(self, what: str, part: Partition, step, *, always_calls: bool = True) -> None:
        """``step(part)`` over its usable channels, reporting Redis errors to the host's
        outage or quarantine instead of raising.

        Only a step that ``always_calls`` Redis can tell that the host answers
        again: one that may have had nothing to send proves nothing.

        No time limit of its own: every Redis call gives up after the store's
        socket timeout, and a step cut off half-way would starve the channels
        at the end of its list.
        """
        channels = self.usable(part)
        try:
            await step(Partition(part.index, part.store, channels))
        except (RedisError, OSError) as exc:
            await self.failed(what, part, channels, exc)  # the caller's loop backs off (``delay``)
        else:
            if always_calls:
                self.answered(part)


def redis_retrying(cls, attempts: int = 0):
    """The worker's one retry policy for Redis calls, as tenacity ``Retrying`` or ``AsyncRetrying``."""
    return cls(
        retry=tenacity.retry_if_exception_type((RedisError, OSError)),
        wait=tenacity.wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
        stop=tenacity.stop_after_attempt(attempts) if attempts else tenacity.stop_never,
        # A line per backoff step (attempts 1, 2, 4, 8, ...), not per attempt.
        before_sleep=lambda state: logger.log(
            logging.WARNING if state.attempt_number & (state.attempt_number - 1) == 0 else logging.DEBUG,
            "Redis error %s; retrying (attempt %d)", state.outcome.exception(), state.attempt_number,
        ),
        reraise=True,
    )


async def retry_redis(fn, *args, attempts: int = 0, **kwargs):
    """Await ``fn(*args, **kwargs)``, retrying Redis errors with backoff (forever when attempts is 0)."""
    return await redis_retrying(tenacity.AsyncRetrying, attempts)(fn, *args, **kwargs)
