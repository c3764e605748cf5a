"""A send to a Redis (or a Celery broker) that does not answer: the one retry policy for sending.

``send()`` to the store and the Celery hand-off's publish both try again for
about TASKCHAN_SEND_RETRY_SECONDS, waiting 50 ms at first and at most 0.5 s
between tries, then raise ``StoreUnavailable`` (or ``StoreRefused``) with
nothing stored.  The policy is written once here, as tenacity's ``Retrying``
for Redis calls (``send_retrying``) and as kombu's ``retry_policy`` for the
broker publish (``broker_retry_policy``).  The worker's own policy for Redis
calls (much longer: a worker waits out an outage) is ``taskchan/outage.py``.
"""

from __future__ import annotations

import logging

import tenacity
from redis.exceptions import (
    AskError,
    ClusterError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .conf import settings
from .exceptions import StoreRefused, StoreUnavailable

logger = logging.getLogger("taskchan.producer")

#: errors worth another try: the connection, not the command, failed; or a
#: Redis Cluster is failing over (CLUSTERDOWN, MASTERDOWN, a slot not covered
#: yet) or moving the channel's slot (TRYAGAIN, redirections that kept coming)
TRANSIENT = (
    RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError,
    ClusterError, TryAgainError, AskError, SlotNotCoveredError,
)
#: seconds between the first tries; the wait doubles from here
FIRST_WAIT = 0.05
#: the longest wait between two tries, in seconds
MAX_WAIT = 0.5


def send_retrying(cls=tenacity.Retrying):
    """The sending policy as a tenacity ``cls`` (``Retrying`` or ``AsyncRetrying``): call it with the function."""
    return cls(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        stop=tenacity.stop_after_delay(settings.SEND_RETRY_SECONDS),
        wait=tenacity.wait_exponential_jitter(multiplier=FIRST_WAIT, max=MAX_WAIT, jitter=FIRST_WAIT),
        reraise=True,
        # DEBUG: send() raises once when it gives up; each retry is no news to the caller.
        before_sleep=lambda state: logger.debug(
            "send: Redis error %s, retrying (attempt %d)", state.outcome.exception(), state.attempt_number
        ),
    )


def broker_retry_policy() -> dict:
    """The sending policy as kombu's ``retry_policy`` for a Celery publish: tries spread over about
    TASKCHAN_SEND_RETRY_SECONDS, at most MAX_WAIT apart."""
    return {
        "max_retries": 2 + max(1, int(settings.SEND_RETRY_SECONDS / MAX_WAIT)),
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": MAX_WAIT,
    }


def send_failure(store, channel: str, exc: BaseException) -> StoreUnavailable:
    """The one error a send raises when the store did not take the message (nothing was stored)."""
    where = store.home(channel)  # the Redis host tried (repr masks the password)
    if isinstance(exc, ResponseError) and not isinstance(exc, TRANSIENT):  # not CLUSTERDOWN, TRYAGAIN...
        return StoreRefused(
            f"Could not store the message: {where!r} refused it ({type(exc).__name__}: {exc}). "
            "Nothing was sent. Out of memory (maxmemory), a read-only replica, or a key of the "
            "wrong type: see docs/troubleshooting.md."
        )
    return StoreUnavailable(
        f"Could not store the message: {where!r} did not answer for {settings.SEND_RETRY_SECONDS} s "
        f"({exc}). Nothing was sent. Check that Redis runs at that address (the channel layer "
        f"CHANNEL_LAYERS[{settings.LAYER!r}] CONFIG \"hosts\")."
    )
