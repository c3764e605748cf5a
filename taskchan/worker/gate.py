"""The gate: leased messages of rate-limited, concurrency-limited or paused channels wait here to start.

A channel with none of these costs nothing: its deliveries go straight to the
job threads.  The others wait in the gate, still leased to this worker (the
upkeep renews their leases like any other held message) and never charged an
attempt, until the store admits them:

- a rate limit takes one token per message from the channel's bucket
  (``rate.lua``, shared by every worker); short of tokens, the gate sleeps
  until the bucket says the next one is due;
- a concurrency limit takes one slot per message under its key
  (``slots.lua``); a slot is held for one lease, renewed with the leases and
  given back when the job settles, so a killed worker's slots free themselves
  when its leases would have lapsed.  Short of slots, the gate asks again
  every poll interval, or at once when one of its own jobs ends;
- a paused channel (``taskchan.pause``, read every PAUSE_POLL_SECONDS) is not
  read, and what was already leased waits.

Each step is one round trip for every message waiting on a channel, so a limit
that does not bind costs one round trip per fetched batch (two with both
limits), and the slots given back one per batch of finished jobs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..envelope import MalformedEnvelope, decode
from ..flow.options import concurrency_key_of
from ..message import Message
from ..registry import Consumer
from ..stores.base import Delivery, ProducerStore

logger = logging.getLogger("taskchan.worker")

#: seconds between reads of which channels are paused
PAUSE_POLL_SECONDS = 1.0
#: seconds a step that failed on Redis waits before it is tried again: doubling from the first to the cap
RETRY_FIRST_SECONDS = 0.1
RETRY_CAP_SECONDS = 5.0


class Gate:
    def __init__(
        self,
        consumers: dict[str, Consumer],
        store: ProducerStore,
        consumer_name: str,
        submit: Callable[[Delivery], None],
        *,
        stopping: asyncio.Event,
        poll_interval: float,
    ):
        self._consumers = consumers
        self._store = store  # each channel's flow state is on store.home(channel)
        self._name = consumer_name
        self._submit = submit
        self._stopping = stopping
        self._poll = poll_interval
        self._gated = {ch for ch, c in consumers.items() if c.flow.gated}
        self._waiting: dict[str, collections.deque[Delivery]] = {ch: collections.deque() for ch in consumers}
        self._not_before: dict[str, float] = {}  # channel -> monotonic time its next admission may be tried
        self.paused: set[str] = set()
        # Until the pauses are first read, nothing is read or started: a worker
        # starting while its channel is paused must not run a batch first.
        self._pauses_known = False
        self._holdings: dict[tuple, tuple[str, str, str]] = {}  # Delivery.key -> (channel, key, member)
        self._releases: list[tuple[str, str, str]] = []
        self._wake = asyncio.Event()
        self._failing: str | None = None  # the error last logged, until a step works again
        self._retry = 0.0  # the current backoff, seconds
        vts = [consumers[ch].visibility_timeout for ch in self._gated if consumers[ch].flow.concurrency_limit]
        self._renew_every = min(vts) / 3 if vts else None

    # -- on the worker's loop, from the fetchers, the jobs and the stop --------

    def admit(self, deliveries: list[Delivery]) -> None:
        """Leased: start them now, or keep them waiting for the channel's limits or its resume."""
        for d in deliveries:
            if d.channel in self._gated or d.channel in self.paused or not self._pauses_known:
                self._waiting[d.channel].append(d)
                self._wake.set()
            else:
                self._submit(d)

    def readable(self, channels: list[str]) -> list[str]:
        """Which of ``channels`` a fetch may read: those not paused.

        A limited channel is read on while messages wait for it: they count
        against the worker's bound on held work (``leases.py``), which stops the
        reads, and a full buffer lets the limit be reached when it frees up.
        """
        return [c for c in channels if c not in self.paused] if self._pauses_known else []

    def done(self, delivery: Delivery) -> None:
        """Its job ended (any outcome): give its concurrency slot back."""
        holding = self._holdings.pop(delivery.key, None)
        if holding is not None:
            self._releases.append(holding)
            self._wake.set()

    def unstarted(self) -> list[Delivery]:
        """At a stop: everything still waiting, to hand back."""
        out = [d for waiting in self._waiting.values() for d in waiting]
        for waiting in self._waiting.values():
            waiting.clear()
        return out

    async def close(self, clean: bool) -> None:
        """After a clean stop every job has ended: the slots still held were for messages handed back."""
        if clean:
            self._releases.extend(self._holdings.values())
            self._holdings.clear()
            await self._guarded(self._release)

    # -- the gate's loop -------------------------------------------------------

    async def run(self) -> None:
        next_pause = 0.0
        next_renew = time.monotonic() + (self._renew_every or 0)
        while True:
            self._wake.clear()
            now = time.monotonic()
            if now >= next_pause:
                await self._guarded(self._refresh_pauses)
                next_pause = now + PAUSE_POLL_SECONDS
            if self._releases:
                await self._guarded(self._release)
            if self._renew_every and now >= next_renew:
                await self._guarded(self._renew)
                next_renew = now + self._renew_every
            if not self._stopping.is_set():
                for channel in self._ready(now):
                    await self._guarded(self._let_through, channel)
            wakes = [next_pause]
            if not self._stopping.is_set():
                wakes.extend(self._not_before.get(c, 0) for c in self._ready(float("inf")))
            if self._renew_every:
                wakes.append(next_renew)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(wakes) - time.monotonic()))
            except TimeoutError:
                pass

    def _ready(self, now: float) -> list[str]:
        """Channels with messages waiting, not paused, whose next try is due by ``now``."""
        if not self._pauses_known:
            return []
        return [
            c for c, waiting in self._waiting.items()
            if waiting and c not in self.paused and self._not_before.get(c, 0) <= now
        ]

    async def _guarded(self, step, *args) -> None:
        """Run one step; a Redis error backs off (doubling) and is logged once, not once per try."""
        try:
            await step(*args)
        except (RedisError, OSError) as exc:
            self._retry = min(RETRY_CAP_SECONDS, max(RETRY_FIRST_SECONDS, 2 * self._retry))
            text = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
                # A host that does not answer: its fetcher says so, one line per backoff step.
                logger.debug("flow control: %s failed (%s)", step.__name__, text)
            elif text != self._failing:
                logger.warning("flow control: %s failed (%s); trying again with backoff", step.__name__, text)
            self._failing = text
            for channel in args:
                self._not_before[channel] = time.monotonic() + self._retry
            await asyncio.sleep(self._retry)
        else:
            if self._failing is not None:
                logger.info("flow control works again")
            self._failing, self._retry = None, 0.0

    def _homes(self, channels) -> list[tuple[object, list[str]]]:
        """``channels`` grouped by their home store (one round trip each)."""
        homes: dict[int, tuple[object, list[str]]] = {}
        for channel in channels:
            home = self._store.home(channel)
            homes.setdefault(id(home), (home, []))[1].append(channel)
        return list(homes.values())

    async def _refresh_pauses(self) -> None:
        paused: set[str] = set()
        for home, channels in self._homes(self._consumers):
            paused.update(await home.paused(channels))
        if paused != self.paused:
            logger.info("paused channels: %s", ", ".join(sorted(paused)) or "none")
        self.paused = paused
        self._pauses_known = True

    async def _release(self) -> None:
        releases, self._releases = self._releases, []
        try:
            for home, channels in self._homes({ch for ch, _k, _m in releases}):
                for channel in channels:
                    await home.release_slots(channel, [(k, m) for ch, k, m in releases if ch == channel])
        except BaseException:
            self._releases.extend(releases)  # tried again; releasing twice is harmless
            raise
        for channel in {ch for ch, _k, _m in releases}:
            self._not_before[channel] = 0  # a slot of ours came free: try the waiting ones now

    async def _renew(self) -> None:
        by_channel: dict[str, list[tuple[str, str]]] = {}
        for channel, key, member in self._holdings.values():
            by_channel.setdefault(channel, []).append((key, member))
        for channel, holdings in by_channel.items():
            lease_ms = int(self._consumers[channel].visibility_timeout * 1000)
            await self._store.home(channel).renew_slots(channel, lease_ms, holdings)

    async def _let_through(self, channel: str) -> None:
        """Admit what the channel's limits allow now; the rest waits until ``_not_before``."""
        waiting = self._waiting[channel]
        flow = self._consumers[channel].flow
        batch = list(waiting)
        if not batch:
            return
        if not flow.gated:  # a paused channel that was resumed
            admitted = batch
        else:
            admitted = await self._limit(channel, batch)
        if self._stopping.is_set():
            # The stop began during that round trip: the hand-back takes them
            # all from here (their slots go back in ``close``).
            return
        chosen = {id(d) for d in admitted}
        remaining = [d for d in waiting if id(d) not in chosen]
        waiting.clear()
        waiting.extend(remaining)
        for d in admitted:
            self._submit(d)

    async def _limit(self, channel: str, batch: list[Delivery]) -> list[Delivery]:
        consumer = self._consumers[channel]
        flow = consumer.flow
        home = self._store.home(channel)
        admitted = batch
        if flow.concurrency_limit:
            holdings = {id(d): (self._key(consumer, d), f"{self._name}|{d.shard}|{d.entry_id}") for d in batch}
            lease_ms = int(consumer.visibility_timeout * 1000)
            taken = await home.take_slots(channel, flow.concurrency_limit, lease_ms, [holdings[id(d)] for d in batch])
            admitted = [d for d, ok in zip(batch, taken, strict=True) if ok]
            for d in admitted:
                self._holdings[d.key] = (channel, *holdings[id(d)])
            if len(admitted) < len(batch):
                self._not_before[channel] = time.monotonic() + self._poll
        if flow.rate_limit and admitted:
            rate = flow.rate_limit
            granted, wait = await home.take_tokens(channel, rate.per_second / 1000, rate.capacity, len(admitted))
            if granted < len(admitted):
                # No token for these yet: their slots go back (one more round
                # trip, only while the rate binds).
                back = [self._holdings.pop(d.key) for d in admitted[granted:] if d.key in self._holdings]
                await home.release_slots(channel, [(k, m) for _ch, k, m in back])
                admitted = admitted[:granted]
                self._not_before[channel] = max(self._not_before.get(channel, 0), time.monotonic() + wait)
        return admitted

    def _key(self, consumer: Consumer, delivery: Delivery) -> str:
        """The delivery's concurrency key; one that cannot be read or computed falls back to the channel's."""
        if consumer.flow.concurrency_key is None or delivery.unreadable is not None:
            return ""
        try:
            envelope = decode(delivery.raw, delivery.channel)
            return concurrency_key_of(consumer.flow, Message(envelope, envelope.attempts_before + 1))
        except MalformedEnvelope:
            return ""  # dead-lettered when it runs
        except Exception:  # the project's function: whatever it raises, the message still runs
            logger.exception("concurrency_key of %s failed; limiting it under the channel's own key", consumer.name)
            return ""
