"""The worker's side of progress: each attempt's slot, its latest value flushed on a short period,
and the outcome pushed to watchers once the status record says so.

- As an attempt starts (``start``, from its job thread or runner task) it gets
  a ``Slot`` (``report.py``), set in the context variable its job reports to.
- Every TASKCHAN_PROGRESS_INTERVAL seconds ``flush`` takes the latest value of
  each slot that changed: it rides the worker's batched ack to the status
  record's ``p`` field (a ``StatusNote`` through ``acker.note``: no round trip
  of its own) and is pushed to the message's group (``push.py``).
- As the attempt settles (``finish``, on the loop, in ``settle.py``) its last
  value is taken whatever the period, merged into the outcome's own status
  note, and pushed with the outcome (its ``progress`` field: one push, not
  two, for a job shorter than the period).
- The outcome is pushed after the status record has it: a success once its
  ack landed (``acked``, called by the acker), a retry once rescheduled, a
  dead letter once acked.  Successes are pushed for messages that reported
  progress (a watcher of any other learns it from its consumer's periodic
  status read): a push per success would cost every job a round trip.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from ..conf import settings
from ..stores.base import StatusNote
from ..text import compact_json
from . import events
from .push import Pusher
from .report import Slot, current_slot

#: seconds to wait at stop for the last events to be pushed
DRAIN_TIMEOUT = 2.0
#: least seconds between two "changed" pushes to the admin overview's watchers
OVERVIEW_EVERY = 1.0




class ProgressHub:
    def __init__(self, note: Callable[[int, StatusNote], None]):
        self._note = note  # acker.note: a status note written with the next acks
        self._slots: dict[str, Slot] = {}  # running attempts by message id
        self._notes: dict[str, StatusNote] = {}  # each slot's last queued ``p`` note, to update at finish
        self._dirty: collections.deque[Slot] = collections.deque()  # appended from job threads
        self._after_ack: dict[int, dict] = {}  # id(delivery) -> its success event
        self._last: dict[str, dict] = {}  # message id -> last progress not pushed yet, for its outcome event
        self._changed = False  # something the admin overview shows changed (an attempt started or ended)
        self._overview_at = 0.0  # monotonic time of the last "changed" push
        self.pusher = Pusher()
        self.pusher.bind()

    # -- attempts -------------------------------------------------------------

    def start(self, message_id: str, attempt: int, shard: int, ttl_ms: int, cancel=None) -> None:
        """From the job's thread or task, as the attempt starts: its slot, where its reports go
        (``cancel``: the attempt's cancel event, so ``report_progress`` can raise Cancelled)."""
        slot = Slot(message_id, attempt, shard, ttl_ms, dirty=self._dirty.append, cancel=cancel)
        self._slots[message_id] = slot
        self._changed = True
        current_slot.set(slot)
        if attempt > 1:  # a retry, or a rerun after its worker died: say so
            event = {"type": "started", "id": message_id, "attempt": attempt, "at": time.time()}
            self.pusher.push_threadsafe(events.group_name(message_id), event)

    def finish(self, message_id: str) -> tuple[dict[str, str], bool]:
        """On the loop, as the attempt settles: (status fields with its last progress, whether it
        reported any).  A last value not pushed yet goes with the outcome's event."""
        slot = self._slots.pop(message_id, None)
        self._changed = True
        if slot is None:
            return {}, False
        if slot.take(close=True) is not None:
            self._last[message_id] = slot.value
        queued = self._notes.pop(message_id, None)
        if slot.value is None:
            return {}, False
        fields = {"p": compact_json(slot.value)}
        if queued is not None:
            # An earlier value may still wait in the acker, held NOTE_DELAY: the outcome's note
            # carries the last value, so the acker drops that one (written after the outcome's, or
            # after the next attempt's, it would put an older value back).  One already on its way
            # gets the last value too, so that whichever lands last, the record keeps it.
            queued.fields.update(fields)
            queued.carried = True
        return fields, True

    # -- the periodic flush ---------------------------------------------------------

    async def run(self) -> None:
        pusher = asyncio.ensure_future(self.pusher.run())
        try:
            while True:
                await asyncio.sleep(settings.PROGRESS_INTERVAL)
                self.flush()
                self._overview_changed()
        finally:
            pusher.cancel()

    def flush(self) -> None:
        while self._dirty:
            slot = self._dirty.popleft()
            if self._slots.get(slot.message_id) is slot:
                self._take(slot)

    def _overview_changed(self) -> None:
        """At most every OVERVIEW_EVERY seconds while jobs start and end: staff watching the admin
        overview fetch it again (one push per busy worker per second, none from an idle one)."""
        now = time.monotonic()
        if self._changed and now - self._overview_at >= OVERVIEW_EVERY:
            self._changed = False
            self._overview_at = now
            self.pusher.push(events.OVERVIEW_GROUP, {"type": "changed", "id": None, "at": time.time()})

    def _take(self, slot: Slot) -> None:
        value = slot.take()
        if value is None:
            return
        if slot.ttl_ms:
            note = StatusNote(slot.message_id, {"p": compact_json(value)}, slot.ttl_ms)
            earlier = self._notes.get(slot.message_id)
            if earlier is not None:
                earlier.carried = True  # this note holds the newer value: the acker drops the older
            self._notes[slot.message_id] = note
            self._note(slot.shard, note)
        self.pusher.push(events.group_name(slot.message_id), events.progress_event(slot.message_id, value))

    async def close(self) -> None:
        """At stop, after the last acks: push what is queued (for up to DRAIN_TIMEOUT)."""
        self.flush()
        await self.pusher.drain(DRAIN_TIMEOUT)  # run()'s pusher task is still going

    # -- outcomes ---------------------------------------------------------------------

    def succeeded(self, delivery, message_id: str, result_json: str | None) -> None:
        """A success of a message that reported progress: pushed once its ack lands."""
        self._after_ack[id(delivery)] = self._with_last(events.succeeded_event(message_id, result_json))

    def acked(self, deliveries) -> None:
        """Called by the acker once ``deliveries``' acks (and status notes) are written."""
        if not self._after_ack:
            return
        for delivery in deliveries:
            event = self._after_ack.pop(id(delivery), None)
            if event is not None:
                self.pusher.push(events.group_name(event["id"]), event)

    def failed(self, message_id: str, attempt: int, exc_type: str, message: str) -> None:
        """A dead letter, once acked."""
        event = self._with_last(events.failed_event(message_id, attempt, exc_type, message))
        self.pusher.push(events.group_name(message_id), event)

    def retrying(self, message_id: str, attempt: int, exc_type: str, message: str, delay: float) -> None:
        """A failed attempt, once rescheduled."""
        event = events.retrying_event(message_id, attempt, exc_type, message, time.time() + delay)
        self.pusher.push(events.group_name(message_id), self._with_last(event))

    def _with_last(self, event: dict) -> dict:
        """The outcome's event, with the attempt's last progress when it was not pushed yet."""
        last = self._last.pop(event["id"], None)
        if last is not None:
            event["progress"] = events.progress_event(event["id"], last)
        return event
