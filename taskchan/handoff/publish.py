"""Publishing a validated message as the ``taskchan.run_handed_off`` Celery task.

``publish`` returns the message id only once the Celery broker has accepted
the task (with the Redis broker the publish is an ``LPUSH`` that returns after
Redis applied it), so nothing is lost at the hand-over, and nothing runs twice
because of it: there is no second copy in taskchan.  A send with an
idempotency key first claims the key in the store (``handoff_claim``), so two
sends with one key publish one task; the key's values are described in
``stores/keys.py``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

from ..conf import settings
from ..exceptions import StoreUnavailable
from ..transient import TRANSIENT, broker_retry_policy, send_failure, send_retrying
from .app import TASK_NAME, broker_url, celery_app

if TYPE_CHECKING:
    from ..registry import Consumer

logger = logging.getLogger("taskchan.handoff")

#: Value prefix of an idempotency key whose message is being published.
PENDING = "~"
#: Seconds a claim on an idempotency key outlives the publish retry window.
CLAIM_MARGIN = 5.0
#: Seconds between two looks at a key another send is still publishing under.
CLAIM_POLL_SECONDS = 0.02


def send_task(channel: str, raw: str, message_id: str, delay_ms: int = 0, consumer_name: str = "") -> None:
    """Publish the task; return only once the broker accepted it."""
    from kombu.exceptions import OperationalError  # Celery's own dependency: loaded only here

    app = celery_app()
    try:
        app.send_task(
            TASK_NAME,
            args=[channel, raw],
            task_id=message_id,
            countdown=delay_ms / 1000 if delay_ms else None,
            serializer="json",
            retry=True,
            retry_policy=broker_retry_policy(),
            shadow=f"{TASK_NAME}[{consumer_name or channel}]",
        )
    except (OperationalError, *TRANSIENT) as exc:
        raise StoreUnavailable(
            f"Could not hand the message to Celery: the broker at {_safe_url(broker_url())} did not "
            f"accept it within about {settings.SEND_RETRY_SECONDS} s ({exc}). Nothing was sent."
        ) from exc


def _safe_url(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def publish(consumer: Consumer, raw: str, message_id: str, *, delay_ms=0, idempotency_key=None, store=None) -> str:
    """Hand one validated envelope to Celery; return the message id (or, for a
    repeated idempotency key, the first message's id, publishing nothing)."""
    channel = consumer.channel
    if idempotency_key is None:
        send_task(channel, raw, message_id, delay_ms, consumer.name)
        return message_id
    claim = PENDING + message_id
    held = _claim(store, channel, idempotency_key, claim)
    if held is not None:
        return held  # a send with this key already published: its id
    try:
        send_task(channel, raw, message_id, delay_ms, consumer.name)
    except BaseException:
        try:
            store.handoff_release(channel, idempotency_key, claim)
        except Exception:  # the claim lapses by itself
            logger.warning("could not release idempotency claim %r on %s", idempotency_key, channel, exc_info=True)
        raise
    ttl_ms = int(delay_ms) + int(settings.IDEMPOTENCY_WINDOW * 1000)
    try:
        send_retrying()(store.handoff_record, channel, idempotency_key, message_id, ttl_ms)
    except TRANSIENT:
        # The task is published (accepted): report success.  The claim lapses,
        # after which a repeated send would publish again (a duplicate, never a loss).
        logger.warning(
            "handed %s to Celery but could not record idempotency key %r on %s", message_id, idempotency_key, channel
        )
    return message_id


def _claim(store, channel: str, idempotency_key: str, claim: str) -> str | None:
    """Claim the key for this send (None), or the id of the message a finished send published under it.

    A claim held by a send that is still publishing is waited for; one whose
    sender died lapses (after the retry window and CLAIM_MARGIN) and is taken over.
    """
    claim_ms = int((settings.SEND_RETRY_SECONDS + CLAIM_MARGIN) * 1000)
    deadline = time.monotonic() + claim_ms / 1000 + 1
    try:
        while (held := send_retrying()(store.handoff_claim, channel, idempotency_key, claim, claim_ms)) is not None:
            if not held.startswith(PENDING):
                return held
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"Another send with idempotency key {idempotency_key!r} is still handing its "
                    "message to Celery. Nothing was sent; try again."
                )
            time.sleep(CLAIM_POLL_SECONDS)
    except TRANSIENT as exc:
        raise send_failure(store, channel, exc) from exc
    return None


async def apublish(consumer: Consumer, raw: str, message_id: str, **options) -> str:
    """``publish`` for async code: the blocking publish runs in a thread."""
    return await sync_to_async(publish, thread_sensitive=False)(consumer, raw, message_id, **options)
