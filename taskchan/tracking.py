"""Every message's status: its record in the store, the notes that update it, and how it reads.

(Named ``tracking``, not ``status``: ``taskchan.status`` is the function, and a
submodule of that name would replace it on the package once imported.)

``taskchan.status(message_id)`` (``astatus`` from async code) returns a
``MessageStatus``.  The record is a hash (``P:st:ID``, ``stores/keys.py``) kept
TASKCHAN_STATUS_TTL seconds after its last write (a consumer's ``result_ttl``
when longer; 0 for both: no record).  Its fields, every value a string:

========  ===============================================  =====================================
field     meaning                                          written by
========  ===============================================  =====================================
``ch``    the channel                                      send.lua
``q``     enqueued at, unix ms (Redis clock)               send.lua
``due``   runs no earlier than, unix ms                    send.lua; a retry (``retry_note``)
``a:N``   start of attempt N: JSON ``[unix ms, worker]``   the worker's batched ack (``start_note``)
``e:N``   attempt N failed: JSON ``{type, message,         a retry (``retry_note``, with the
          traceback, at}`` (at: unix s)                    reschedule); a dead letter's ack
``done``  how it ended: ``succeeded``, ``failed``          the ack of a success or a dead letter
``fin``   finished at, unix ms                             same
``r``     the consumer's return value, JSON                a success, when the consumer keeps it
``p``     the last progress report, JSON ``{current,       the worker's batched ack (a note per
          total, note, attempt, at}`` (at: unix s)         TASKCHAN_PROGRESS_INTERVAL), and the
                                                           outcome's note (taskchan/progress/)
``x``     what the sender keeps (sealed like envelopes)    send.lua (``send_stored(record=)``;
                                                           the django.tasks backend: task, args)
========  ===============================================  =====================================

No field is ever written by a round trip of its own: send.lua starts the
record and the worker's notes (``StatusNote``) ride in the steps it takes
anyway (the batched ack, a retry's reschedule).  Every attempt has fields of
its own, so notes commute: a start that lands after its attempt's retry, or
a start acked together with its success, read the same.  The state is worked
out when read (``read``), never stored:

- ``done`` set: that (``succeeded``, ``failed``);
- the last attempt started and did not fail: ``running``;
- ``due`` still ahead: ``scheduled``; else ``queued``;
- no record (never sent, expired, or status off): ``unknown``.

Adding a state: a state that ends a message (say ``cancelled``) is a value of
``done`` written by the step that ends it, through ``end_note``; add it to
``STATES``.  A state of a live message is worked out in ``_state`` from its
own field (documented in the table above).  Messages handed off to Celery keep
no record: they read ``unknown``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .conf import settings
from .stores.base import ProducerStore
from .stores.configured import get_store
from .stores.notes import StatusNote
from .text import compact_json

QUEUED = "queued"
SCHEDULED = "scheduled"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"  # taskchan.cancel: never run, or ended by Cancelled
UNKNOWN = "unknown"
STATES = (QUEUED, SCHEDULED, RUNNING, SUCCEEDED, FAILED, CANCELLED, UNKNOWN)


@dataclass(slots=True)
class MessageStatus:
    """What became of one message, as its record says (times are aware UTC datetimes)."""

    id: str
    state: str = UNKNOWN
    channel: str | None = None
    attempts: int = 0  # attempts that started (or failed)
    enqueued_at: datetime | None = None
    started_at: datetime | None = None  # the first attempt's start
    finished_at: datetime | None = None
    last_attempted_at: datetime | None = None  # the last attempt's start
    due_at: datetime | None = None  # when it may run (a delay or a retry's backoff)
    errors: list[dict] = field(default_factory=list)  # {type, message, traceback, at, attempt} per failed attempt
    worker_ids: list[str] = field(default_factory=list)  # the worker of each attempt that started, in order
    result: Any = None  # the consumer's JSON return value, where kept (``has_result``)
    has_result: bool = False
    progress: Any = None  # the last message.progress(): {current, total, note, attempt, at} (docs/progress.md)
    kept: str | None = None  # what the sender kept in the record (``x``), as text


# -- how long records live ------------------------------------------------------


def record_ms(result_ttl: float | None = None) -> int:
    """Milliseconds a record lives: TASKCHAN_STATUS_TTL, or ``result_ttl`` when longer (0: no record)."""
    return int(max(settings.STATUS_TTL, result_ttl or 0) * 1000)


# -- notes: the worker's updates ----------------------------------------------------


def now_ms() -> int:
    """Unix ms, the unit of the record's times (an int formats in a third of a float's time, and
    the worker writes two per job)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class StartNote:
    """Attempt ``attempt`` of ``message_id`` started at ``at_ms`` (unix ms) on the worker whose id is
    ``worker_json``: a note (``StatusNote``'s attributes) whose one field, ``a:N``, is built only
    when it is written.  Most never are: the success's note carries the start (``carried``),
    and this runs for every job, on its thread."""

    message_id: str
    attempt: int
    at_ms: int
    worker_json: str  # encoded once per worker
    ttl_ms: int
    carried: bool = False

    @property
    def fields(self) -> dict[str, str]:
        return {f"a:{self.attempt}": f"[{self.at_ms},{self.worker_json}]"}


def start_note(message_id: str, attempt: int, worker_json: str, ttl_ms: int) -> StartNote:
    """Attempt ``attempt`` starts now on the worker whose id is ``worker_json`` (a JSON string)."""
    return StartNote(message_id, attempt, now_ms(), worker_json, ttl_ms)


def _error(exc_type: str, message: str, traceback: str | None) -> str:
    return compact_json({"type": exc_type, "message": message, "traceback": traceback or "", "at": time.time()})


def retry_note(message_id, attempt, exc_type, message, traceback, delay: float, ttl_ms) -> StatusNote:
    """Attempt ``attempt`` failed; the next runs in ``delay`` seconds."""
    due = int((time.time() + delay) * 1000)
    return StatusNote(message_id, {f"e:{attempt}": _error(exc_type, message, traceback), "due": str(due)}, ttl_ms)


def end_note(message_id: str, state: str, ttl_ms: int, *, attempt: int = 0, error=None, result=None) -> StatusNote:
    """The message ended in ``state`` (``succeeded``, ``failed``, ...).

    ``error``: (type, message, traceback) of attempt ``attempt``, which ended
    it; ``result``: the return value's JSON text, to keep.
    """
    fields = {"done": state, "fin": str(now_ms())}
    if error is not None:
        fields[f"e:{attempt}"] = _error(*error)
    if result is not None:
        fields["r"] = result
    return StatusNote(message_id, fields, ttl_ms)


# -- reading --------------------------------------------------------------------------


def _when(value, scale: float = 1.0) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value) / scale, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _json(text, default=None):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _numbered(record: dict[str, str], prefix: str) -> dict[int, Any]:
    out = {}
    for key, value in record.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            out[int(key[len(prefix) :])] = _json(value)
    return out


def read(message_id: str, record: dict[str, str] | None, now: float | None = None) -> MessageStatus:
    """A record as a MessageStatus (``unknown`` for None)."""
    if not record:
        return MessageStatus(message_id)
    starts = {n: v for n, v in _numbered(record, "a:").items() if isinstance(v, list) and len(v) == 2}
    failures = {n: v for n, v in _numbered(record, "e:").items() if isinstance(v, dict)}
    attempts = max([0, *starts, *failures])
    status = MessageStatus(
        message_id,
        channel=record.get("ch"),
        attempts=attempts,
        enqueued_at=_when(record.get("q"), 1000),
        due_at=_when(record.get("due"), 1000),
        finished_at=_when(record.get("fin"), 1000),
        errors=[{**failures[n], "attempt": n} for n in sorted(failures)],
        worker_ids=[str(starts[n][1]) for n in sorted(starts)],
        has_result="r" in record,
        result=_json(record.get("r")),
        progress=_json(record.get("p")),
        kept=record.get("x"),
    )
    if starts:
        status.started_at = _when(starts[min(starts)][0], 1000)
        status.last_attempted_at = _when(starts[max(starts)][0], 1000)
    status.state = _state(record, attempts, starts, failures, time.time() if now is None else now)
    return status


def _state(record, attempts, starts, failures, now: float) -> str:
    if record.get("done"):
        return record["done"]
    if attempts and attempts in starts and attempts not in failures:
        return RUNNING
    due = _json(record.get("due"), 0)
    return SCHEDULED if isinstance(due, (int, float)) and due > now * 1000 else QUEUED


async def astatus(message_id: str, *, store: ProducerStore | None = None) -> MessageStatus:
    """What became of message ``message_id`` (``unknown`` when no record is kept)."""
    store = store or get_store()
    return read(message_id, await store.status_record(str(message_id)))


def status(message_id: str, *, store: ProducerStore | None = None) -> MessageStatus:
    """``astatus`` from sync code (a view, a shell); use ``astatus`` in async code."""
    store = store or get_store()

    async def once():
        try:
            return await astatus(message_id, store=store)
        finally:
            await store.aclose()  # the clients belong to this call's event loop

    return asyncio.run(once())
