"""Progress from a process with no taskchan worker loop: the Celery hand-off's consumers.

A handed-off message keeps no status record, so its progress only goes to
its watchers: straight through the channel layer from the job's thread, at
most every TASKCHAN_PROGRESS_INTERVAL seconds, and the last value when the
attempt ends (``reporting``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from asgiref.sync import async_to_sync

from ..conf import settings
from . import events
from .push import group_send
from .report import Slot, current_slot

logger = logging.getLogger("taskchan.progress")


class DirectSlot(Slot):
    """A slot that sends its own values (throttled) instead of waiting for a hub."""

    __slots__ = ("sent_at",)

    def __init__(self, message_id: str, attempt: int):
        super().__init__(message_id, attempt, 0, 0)
        self.sent_at = 0.0

    def put(self, current, total=None, note=None) -> bool:
        if not super().put(current, total, note):
            return False
        if time.monotonic() - self.sent_at >= settings.PROGRESS_INTERVAL:
            self.send(self.take())
        return True

    def send(self, value: dict | None) -> None:
        if value is None:
            return
        self.sent_at = time.monotonic()
        try:
            async_to_sync(group_send)(events.group_name(self.message_id), events.progress_event(self.message_id, value))
        except Exception as exc:  # watchers are told nothing rather than failing the job
            logger.warning("could not push progress of %s: %s", self.message_id, exc)


@contextmanager
def reporting(message_id: str, attempt: int) -> Iterator[DirectSlot]:
    """Around one attempt: its reports go to its watchers, the last one as it ends."""
    slot = DirectSlot(message_id, attempt)
    token = current_slot.set(slot)
    try:
        yield slot
    finally:
        current_slot.reset(token)
        slot.send(slot.take(close=True))
