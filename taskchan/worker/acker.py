"""The worker's acks: successes acknowledged in batches, one pipeline per Redis host.

A job that succeeded stays leased until its ack lands.  The acker collects
successes and sends whatever finished while the previous ack was on its way
(up to ACK_BATCH, after at most ACK_DELAY), one pipelined round trip per Redis
host, side by side.  A host whose acks fail gets them back with a retry time
of its own (a backoff per host); until it answers those jobs may run again (a
duplicate, never a loss), and the other hosts' acks go on.

Status notes (``taskchan/tracking.py``) ride along: a success's own (its
delivery's ``note``), and those of attempts that started (``note``, from any
thread), so status tracking costs no round trip of its own.  A start note waits
NOTE_DELAY before it goes: most jobs end sooner, and a success's note carries
the start (it marks the start note ``carried``), so a short job's record is written once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from ..conf import settings
from ..stores.base import Delivery, Partition
from ..stores.notes import Note

logger = logging.getLogger("taskchan.worker")

#: acks sent at once without waiting; smaller batches wait up to ACK_DELAY seconds
ACK_BATCH = 128
ACK_DELAY = 0.005
#: seconds before a failed host's acks are tried again (doubling up to ACK_BACKOFF_CAP)
ACK_BACKOFF = 0.1
ACK_BACKOFF_CAP = 5.0
#: seconds a status note from ``note`` (an attempt that started, a progress report) is held
#: before the acks take it; sent within about twice that
NOTE_DELAY = 0.05
#: tries of the last acks when stopping (about 10 s of backoff) before giving up on a host that is down
FINAL_ACK_ATTEMPTS = 8


class Acker:
    def __init__(self, parts: dict[int, Partition]):
        #: called with each host's deliveries once their acks (and notes) are written
        self.on_acked: Callable[[list[Delivery]], None] | None = None
        self.pending: list[Delivery] = []  # finished, not yet acked (still leased: heartbeats cover them)
        self._parts = parts  # the worker's partitions, by index (shared, only ever added to)
        self._event = asyncio.Event()
        # Acks for a host that failed wait until then (monotonic), backing off
        # per host, so a host that is down does not hold back the others' acks.
        self._retry_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        # (partition, note, time.monotonic() it came) of attempts that started; appended from job threads
        self._notes: collections.deque[tuple[int, Note, float]] = collections.deque()

    def add(self, delivery: Delivery) -> None:
        self.pending.append(delivery)
        self._event.set()

    def note(self, index: int, note: Note) -> None:
        """From any thread: write ``note`` to partition ``index`` with the acks after NOTE_DELAY,
        unless a later note carries it by then (it marks this one ``carried``).

        No wake-up of the loop: a busy worker's acks carry the notes anyway,
        and an idle one's ack loop looks every NOTE_DELAY.
        """
        self._notes.append((index, note, time.monotonic()))

    def _give_back(self, notes) -> None:
        """Notes taken and not written (their host failed, or stopping): due with the next acks.
        Back in front, where they were: a message's later notes (its progress) stay later."""
        self._notes.extendleft(reversed([(index, note, 0.0) for index, note in notes]))

    def _take_notes(self, *, hold: bool = True) -> dict[int, list[Note]]:
        """The notes to write now, by partition: those held NOTE_DELAY (all of them with
        ``hold=False``), less those a later note carries."""
        by_part: dict[int, list[Note]] = {}
        held_since = time.monotonic() - NOTE_DELAY if hold else float("inf")
        while self._notes:
            index, note, came = self._notes[0]
            if came > held_since and not note.carried:
                break  # in order of coming: the rest are younger still
            self._notes.popleft()
            if not note.carried:
                by_part.setdefault(index, []).append(note)
        return by_part

    async def run(self) -> None:
        """The ack loop: runs until cancelled (a cancelled batch goes back to ``pending``)."""
        while True:
            try:
                await asyncio.wait_for(self._event.wait(), self._until_retry())
            except TimeoutError:
                pass  # a host's acks are due to be tried again, or notes to be looked for
            if not self.pending and not self._notes:
                self._event.clear()
                # Nothing waits for any host (notes given back may have been carried since):
                # a past retry time kept would time the wait above out at once, again and again.
                self._retry_at.clear()
                self._backoff.clear()
                continue
            if len(self.pending) < ACK_BATCH:
                # Let more successes join this round trip; a job's ack waits at
                # most ACK_DELAY, which widens the duplicate window after a
                # crash (window 4) by that much.
                await asyncio.sleep(ACK_DELAY)
            self._event.clear()
            await self.send()

    def _until_retry(self) -> float:
        """Seconds until the next host's acks are due again, or until notes are looked for."""
        if not self._retry_at:
            return NOTE_DELAY
        return min(NOTE_DELAY, max(0.0, min(self._retry_at.values()) - time.monotonic()))

    async def send(self, *, hold: bool = True) -> None:
        """Ack what finished, one pipeline per Redis host, side by side (``hold``: ``_take_notes``)."""
        if not self.pending and not self._notes:
            return
        now = time.monotonic()
        batch, self.pending = self.pending, []
        notes = self._take_notes(hold=hold)
        by_part: dict[int, list[Delivery]] = {i: [] for i in notes}
        for d in batch:
            by_part.setdefault(d.shard, []).append(d)
        waiting = [d for i, b in by_part.items() if self._retry_at.get(i, 0.0) > now for d in b]
        due = {i: b for i, b in by_part.items() if self._retry_at.get(i, 0.0) <= now}
        self._give_back((i, n) for i in by_part if i not in due for n in notes.get(i, ()))
        idempotency_ms = int(settings.IDEMPOTENCY_WINDOW * 1000)
        try:
            results = await asyncio.gather(
                *(self._parts[i].store.ack(b, idempotency_ms=idempotency_ms, notes=notes.get(i, ()))
                  for i, b in due.items()),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            self.pending[:0] = batch  # stopping: the final flush sends them
            self._give_back((i, n) for i in due for n in notes.get(i, ()))
            raise
        for (index, part_batch), result in zip(due.items(), results, strict=True):
            if not isinstance(result, BaseException):
                self._retry_at.pop(index, None)
                self._backoff.pop(index, None)
                if self.on_acked is not None:
                    self.on_acked(part_batch)
                continue
            backoff = self._backoff.get(index, ACK_BACKOFF)
            self._retry_at[index] = time.monotonic() + backoff
            self._backoff[index] = min(backoff * 2, ACK_BACKOFF_CAP)
            logger.log(
                logging.WARNING if isinstance(result, (RedisError, OSError)) else logging.ERROR,
                "ack of %d on %r failed (%s); retrying in %.1f s",
                len(part_batch), self._parts[index].store, result, backoff,
                exc_info=None if isinstance(result, (RedisError, OSError)) else result,
            )
            waiting.extend(part_batch)
            self._give_back((index, n) for n in notes.get(index, ()))
        self.pending[:0] = waiting

    async def flush(self, abandon: Callable[[], bool]) -> None:
        """At shutdown: send the last acks, trying a failing host FINAL_ACK_ATTEMPTS times.

        A host that is down must not keep the process from exiting: those jobs'
        leases lapse and they run again elsewhere (a duplicate, never a loss).
        """
        for _ in range(FINAL_ACK_ATTEMPTS):
            await self.send(hold=False)
            if (not self.pending and not self._notes) or abandon():
                break
            await asyncio.sleep(max(0.01, self._until_retry()))
        if self.pending:
            logger.warning(
                "giving up on %d ack(s) at shutdown: those jobs ran, but will run again "
                "when their leases lapse", len(self.pending),
            )
            self.pending = []
        # Taken (popped), not iterated: a job thread may still append (an unclean stop).
        if dropped := sum(map(len, self._take_notes(hold=False).values())):
            logger.warning(
                "giving up on %d status note(s) at shutdown: those records keep their earlier "
                "state until the messages' next attempt or their lifetime's end", dropped,
            )
