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

from ..exceptions import Cancelled, InvalidOption

#: longest ``note``, in characters (it goes to every watching browser)
MAX_NOTE = 200


def checked(current: Any, total: Any = None, note: Any = None) -> dict:
    """The progress value ``{"current", "total", "note"}``, or InvalidOption saying what is wrong."""
    check(current, total, note)
    return {"current": current, "total": total, "note": note}


_FAST = (int, float)


def check(current: Any, total: Any = None, note: Any = None) -> None:
    """Raise InvalidOption unless ``current`` is a finite number >= 0 (int or float, not bool),
    ``total`` None or a finite number > 0 with ``current <= total``, and ``note`` None or a string
    of at most MAX_NOTE characters.  (Called in tight loops: the common case first.)"""
    if (
        type(current) in _FAST and 0 <= current < math.inf
        and (total is None or (type(total) in _FAST and current <= total < math.inf and total > 0))
        and (note is None or (type(note) is str and len(note) <= MAX_NOTE))
    ):
        return
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


def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)  # an int is finite (isfinite overflows on huge ones)


@dataclass(slots=True, eq=False)
class Slot:
    """One running attempt's latest progress: written by its job (any thread), taken by its hub."""

    message_id: str
    attempt: int
    shard: int
    ttl_ms: int  # the status record's lifetime (0: no record)
    dirty: Any = None  # called once when a value arrives that the hub has not taken yet
    cancel: threading.Event | None = None  # the attempt's cancel (set when its message is cancelled)
    raw: tuple | None = None  # (current, total, note, at): a dict is built only when taken
    pending: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, current, total=None, note=None) -> bool:
        """Keep a checked value as the latest; False when the attempt has already settled."""
        with self.lock:
            if self.closed:
                return False
            self.raw = (current, total, note, time.time())
            first, self.pending = not self.pending, True
        if first and self.dirty is not None:
            self.dirty(self)
        return True

    @property
    def value(self) -> dict | None:
        """The latest value (taken or not), or None when none was reported."""
        raw = self.raw
        if raw is None:
            return None
        return {"current": raw[0], "total": raw[1], "note": raw[2], "attempt": self.attempt, "at": raw[3]}

    def take(self, close: bool = False) -> dict | None:
        """The value not taken yet (None when none); ``close``: later puts are refused."""
        with self.lock:
            pending, self.pending = self.pending, False
            self.closed = self.closed or close
        return self.value if pending else None


#: the attempt running in this thread or task (set by the worker as it starts)
current_slot: ContextVar[Slot | None] = ContextVar("taskchan_progress_slot", default=None)


def report_progress(current, total=None, note=None) -> bool:
    """Report the running job's progress (see ``message.progress``), from code with no ``message``.

    The arguments are checked first (InvalidOption), wherever this runs.
    True when a running attempt took it; False outside one (a function called
    directly, a test), where it is a no-op so the same code runs anywhere.
    Like ``message.progress``, it raises ``taskchan.Cancelled`` once the running
    message was cancelled: a ``@task`` that reports progress stops there.
    """
    slot = current_slot.get()
    if slot is not None and slot.cancel is not None and slot.cancel.is_set():
        raise Cancelled()
    check(current, total, note)
    return slot.put(current, total, note) if slot is not None else False
