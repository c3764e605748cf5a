"""The ticker: a scheduled channel's slots fired by every worker that serves it, each slot once.

There is no scheduler process.  Every worker serving a channel with a
``schedule`` runs one ticker for it, which sleeps until the next slot and then
asks the channel's home store to fire it (``fire.lua``: claim the slot and
queue ``{"slot": "<ISO 8601 UTC>"}`` in one step).  The first worker to ask
fires it; the others find it fired.  So a slot fires once however many workers
run, and still fires when some of them die, as long as one serves the channel.

Each ticker fires the slots in order, so no slot is skipped by a worker that
was briefly late; one that fell more than MAX_BEHIND slots behind (its loop
stalled) jumps to the latest.  At start, with ``catch_up`` (the default), it
fires the latest slot already past, once, if an earlier slot was ever fired:
the one catch-up firing for the slots missed while no worker ran.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from ..flow.schedule import slot_iso
from ..outgoing import build_outgoing
from ..registry import Consumer
from ..stores.base import ProducerStore
from .outage import retry_redis
from .waits import sleep_unless

logger = logging.getLogger("taskchan.worker")

#: slots a ticker fires one by one after a stall before it jumps to the latest
MAX_BEHIND = 10
#: tries of one firing while Redis does not answer (with the worker's backoff)
FIRE_ATTEMPTS = 8


class Ticker:
    def __init__(self, consumer: Consumer, store: ProducerStore, *, stopping: asyncio.Event):
        self._consumer = consumer
        self._store = store
        self._stopping = stopping
        self.channel = consumer.channel
        self.fired = 0  # slots this worker fired (the others were fired by another worker)

    async def run(self) -> None:
        schedule = self._consumer.flow.schedule
        if self._consumer.flow.catch_up:
            await self._fire(schedule.at_or_before(time.time()), catch_up=True)
        slot = schedule.after(time.time())
        while not self._stopping.is_set():
            await sleep_unless(self._stopping, slot - time.time())
            now = time.time()
            if self._stopping.is_set() or now < slot:
                continue
            due = []
            while slot <= now and len(due) < MAX_BEHIND:
                due.append(slot)
                slot = schedule.after(slot)
            if slot <= now:  # stalled for many slots: only the latest
                due = [schedule.at_or_before(now)]
                slot = schedule.after(now)
            for s in due:
                await self._fire(s)

    async def _fire(self, slot: float, *, catch_up: bool = False) -> None:
        channel = self._consumer.channel
        home = self._store.home(channel)
        # An id of the store's, as a send's: on a cluster it names the channel's slot, so the
        # worker's status updates of the fired message land in a record status() can find.
        outgoing = build_outgoing(channel, {"slot": slot_iso(slot)}, new_id=home.new_message_id)
        try:
            fired = await retry_redis(
                home.fire_slot, channel, outgoing.raw, outgoing.envelope.id, int(slot * 1000),
                catch_up=catch_up, attempts=FIRE_ATTEMPTS,
            )
        except (RedisError, OSError) as exc:
            # Another worker serving the channel may still fire it.
            logger.error("could not fire the %s slot of %s: %s", slot_iso(slot), channel, exc)
            return
        if fired:
            self.fired += 1
            logger.info("fired the %s slot of %s%s", slot_iso(slot), channel, " (catch-up)" if catch_up else "")
