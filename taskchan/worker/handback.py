"""Handing back, at a stop, what was leased but never started, so another worker takes it at once.

A reclaimed delivery's earlier deliveries died with their workers; its
envelope is handed back with those lost attempts recorded
(``outcome.lost_with_worker``), so a message that kills its workers keeps its
count and is dead-lettered as *worker lost* in the end.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from .. import outcome
from ..envelope import MalformedEnvelope, decode
from ..stores.base import Delivery
from .leases import Leases
from .outage import retry_redis
from .partitions import Partitions

logger = logging.getLogger("taskchan.worker")


async def hand_back(unstarted: list[Delivery], partitions: Partitions, leases: Leases) -> None:
    """Return ``unstarted`` to their channels, one call per Redis host; a host that fails keeps them leased."""
    for d in unstarted:
        if d.reclaimed:
            d.raw = with_lost_attempts(d)
    by_part: dict[int, list[Delivery]] = {}
    for d in unstarted:
        by_part.setdefault(d.shard, []).append(d)
    for index, batch in by_part.items():
        store = partitions[index].store
        try:
            returned = await retry_redis(store.hand_back, batch, attempts=5)
        except (RedisError, OSError) as exc:
            # Still leased to us: they lapse and are reclaimed, as after a crash.
            logger.warning("could not hand %d message(s) back to %r: %s", len(batch), store, exc)
            continue
        logger.info("handed %s unstarted message(s) back", returned)
        for d in batch:
            leases.release(d)


def with_lost_attempts(delivery: Delivery) -> str:
    """The envelope of a reclaimed, unstarted delivery with the attempts lost
    with earlier workers folded in, so a hand-back keeps the crash count."""
    try:
        envelope = decode(delivery.raw, delivery.channel)
    except MalformedEnvelope:
        return delivery.raw  # dead-lettered as malformed wherever it is read next
    attempts = envelope.attempts_before + delivery.deliveries
    return outcome.lost_with_worker(envelope, attempts, delivery.deliveries).encode()
