"""Reporting progress from inside a job: the arguments checked, the latest value kept per attempt.

``message.progress(current, total=None, note=None)`` and, from code that has
no ``message`` (a ``django.tasks`` task, a helper deep in a call stack),
``taskchan.report_progress(...)`` write the latest value into the running
attempt's ``Slot``, found through a context variable that the worker sets as
each attempt starts.  Writing costs a lock and a dict: nothing goes to Redis
or the channel layer from here.  The worker's ``ProgressHub`` (``hub.py``)
takes the latest value of each slot every TASKCHAN_PROGRESS_INTERVAL seconds,
so a loop that reports 10,000 times costs a round trip per interval, not per
call; the last value is taken when the attempt settles.
"""

from __future__ import annotations

import math
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import InvalidOption

#: longest ``note``, in characters (it goes to every watching browser)
MAX_NOTE = 200


def checked(current: Any, total: Any = None, note: Any = None) -> dict:
    """The progress value ``{"current", "total", "note"}``, or InvalidOption saying what is wrong.

    ``current``: a finite number >= 0 (int or float, not bool); ``total``:
    None or a finite number > 0, with ``current <= total``; ``note``: None or
    a string of at most MAX_NOTE characters.
    """
    if not _number(current) or current < 0:
        raise InvalidOption(f"progress current must be a finite number >= 0, got {current!r}")
    if total is not None:
        if not _number(total) or total <= 0:
            raise InvalidOption(f"progress total must be None or a finite number > 0, got {total!r}")
        if current > total:
            raise InvalidOption(f"progress current ({current!r}) is past its total ({total!r})")
    if note is not None:
        if not isinstance(note, str):
            raise InvalidOption(f"progress note must be a string or None, got {type(note).__name__}")
        if len(note) > MAX_NOTE:
            raise InvalidOption(f"progress note is {len(note)} characters; at most {MAX_NOTE}")
    return {"current": current, "total": total, "note": note}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(slots=True, eq=False)
class Slot:
    """One running attempt's latest progress: written by its job (any thread), taken by its hub."""

    message_id: str
    attempt: int
    shard: int
    ttl_ms: int  # the status record's lifetime (0: no record)
    dirty: Any = None  # called once when a value arrives that the hub has not taken yet
    value: dict | None = None
    pending: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, value: dict) -> bool:
        """Keep ``value`` as the latest; False when the attempt has already settled."""
        with self.lock:
            if self.closed:
                return False
            self.value = {**value, "attempt": self.attempt, "at": time.time()}
            first, self.pending = not self.pending, True
        if first and self.dirty is not None:
            self.dirty(self)
        return True

    def take(self, close: bool = False) -> dict | None:
        """The value not taken yet (None when none); ``close``: later puts are refused."""
        with self.lock:
            value = self.value if self.pending else None
            self.pending = False
            self.closed = self.closed or close
            return value


#: the attempt running in this thread or task (set by the worker as it starts)
current_slot: ContextVar[Slot | None] = ContextVar("taskchan_progress_slot", default=None)


def report_progress(current, total=None, note=None) -> bool:
    """Report the running job's progress (see ``message.progress``), from code with no ``message``.

    The arguments are checked first (InvalidOption), wherever this runs.
    True when a running attempt took it; False outside one (a function called
    directly, a test), where it is a no-op so the same code runs anywhere.
    """
    value = checked(current, total, note)
    slot = current_slot.get()
    return slot.put(value) if slot is not None else False
