"""Cancelling a message: ``taskchan.cancel(message_id)`` / ``acancel``, and ``is_cancelled``.

A cancel leaves a marker in Redis (``P:x``, ``stores/redis_cancels.py``) for
TASKCHAN_CANCEL_TTL seconds.  A message queued or scheduled (a delay, a
retry's backoff) meanwhile never runs: the worker that fetches it learns of
the marker in the same round trip and acks it as cancelled.  A running job
sees ``message.cancelled`` turn true within one lease renewal period, and
``message.check_cancelled()`` raises ``taskchan.Cancelled``, which ends the
attempt as cancelled (neither retried nor dead-lettered).  The guarantees and
limits are in ``docs/time-limits-and-cancel.md``.

``is_cancelled`` is the one reading of the fact, for the message status.
"""

from __future__ import annotations

import re
from typing import Any

import tenacity
from redis.exceptions import ResponseError

from .conf import settings
from .exceptions import InvalidOption, StoreRefused, StoreUnavailable
from .stores.configured import get_store
from .transient import TRANSIENT, send_retrying

#: what a message id looks like: taskchan's are 32 hex digits (uuid4), plus ``-`` and a hash
#: slot's tag on a Redis Cluster (``stores/slot_tags.py``); anything
#: of these characters up to this length is accepted, so ids of other senders can be cancelled too
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def check_message_id(message_id: Any) -> str:
    """Refuse what cannot be a message id with ``InvalidOption``; the id otherwise."""
    if not isinstance(message_id, str) or not MESSAGE_ID.fullmatch(message_id):
        raise InvalidOption(
            "message_id must be a message id as send() returned it (1 to 100 letters, digits, "
            f"'_', '.', ':' or '-'), got {message_id!r}"
        )
    return message_id


def _ttl_ms() -> int:
    return int(settings.CANCEL_TTL * 1000)


def _unavailable(store, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"Could not cancel the message: {store!r} did not answer ({type(exc).__name__}: {exc}). "
        "The message is not cancelled; call cancel() again once Redis answers."
    )


def _refused(store, exc: ResponseError) -> StoreRefused:
    return StoreRefused(
        f"Could not cancel the message: {store!r} refused it ({exc}). The message is not cancelled; "
        "a WRONGTYPE error means the cancel markers' key holds something else (docs/troubleshooting.md)."
    )


def cancel(message_id: str) -> None:
    """Cancel ``message_id``: if queued or scheduled it never runs; if running, ``message.cancelled`` turns true.

    An id that names no message (unknown, or already finished) leaves a marker
    that lapses after TASKCHAN_CANCEL_TTL and does nothing else.
    """
    check_message_id(message_id)
    store = get_store()
    try:
        send_retrying(tenacity.Retrying)(store.cancel, message_id, _ttl_ms())
    except TRANSIENT as exc:
        raise _unavailable(store, exc) from exc
    except ResponseError as exc:
        raise _refused(store, exc) from exc


async def acancel(message_id: str) -> None:
    """``cancel`` from async code."""
    check_message_id(message_id)
    store = get_store()
    try:
        await send_retrying(tenacity.AsyncRetrying)(store.acancel, message_id, _ttl_ms())
    except TRANSIENT as exc:
        raise _unavailable(store, exc) from exc
    except ResponseError as exc:
        raise _refused(store, exc) from exc


def is_cancelled(message_id: str) -> bool:
    """Whether ``message_id`` was cancelled within the last TASKCHAN_CANCEL_TTL seconds."""
    check_message_id(message_id)
    return get_store().is_cancelled(message_id)
