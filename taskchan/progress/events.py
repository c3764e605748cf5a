"""What watchers are sent: each message's group on the channel layer, and the events.

Every event is a JSON object with ``type`` and ``id`` (the message id):

=============  ==============================================================
``type``       other fields
=============  ==============================================================
``state``      ``state`` (``taskchan.status``'s), ``attempt``, ``progress``,
               and as for the outcomes below when it has ended; sent on
               subscribe and when the consumer's periodic check sees a change
``progress``   ``attempt``, ``current``, ``total``, ``note``, ``at`` (unix s)
``started``    ``attempt``: an attempt after the first started (a retry, or a
               rerun after its worker died)
``succeeded``  ``result`` (None where the consumer keeps none), ``has_result``
``failed``     ``attempt``, ``error`` (``Type: message``, never the traceback)
``retrying``   ``attempt`` (that failed), ``error``, ``next_at`` (unix s)
               (each of these three: ``progress``, the attempt's last
               ``progress`` event, when it had not been pushed yet)
``changed``    ``at``; ``id`` None: to the admin overview's group, at most
               once a second per busy worker (``hub.py``)
=============  ==============================================================

The channel layer carries ``{"type": "taskchan.progress", "event": {...}}``
to the group ``taskchan-progress-<id>``; ``ProgressConsumer`` forwards the
event to the browser as it is.
"""

from __future__ import annotations

import hashlib
import json
import re

from ..tracking import MessageStatus

#: the layer message type: ProgressConsumer's handler is ``taskchan_progress``
LAYER_TYPE = "taskchan.progress"
#: the admin overview's group (staff watchers): "something changed, fetch again"
OVERVIEW_GROUP = "taskchan-overview"

_SAFE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def group_name(message_id: str) -> str:
    """The message's group (Channels allows ``[A-Za-z0-9_.-]``, under 100 characters)."""
    if not _SAFE_ID.fullmatch(message_id):
        message_id = hashlib.sha256(message_id.encode()).hexdigest()[:40]
    return f"taskchan-progress-{message_id}"


def short_error(exc_type: str, message: str) -> str:
    """``Type: message`` for a watcher: the class's last dotted part, the message cut at 300."""
    name = (exc_type or "Error").rsplit(".", 1)[-1]
    message = (message or "").strip()
    if len(message) > 300:
        message = message[:299] + "…"
    return f"{name}: {message}" if message and message != exc_type else name


def progress_event(message_id: str, value: dict) -> dict:
    return {"type": "progress", "id": message_id, **value}


def succeeded_event(message_id: str, result_json: str | None) -> dict:
    result = json.loads(result_json) if result_json is not None else None
    return {"type": "succeeded", "id": message_id, "result": result, "has_result": result_json is not None}


def failed_event(message_id: str, attempt: int, exc_type: str, message: str) -> dict:
    return {"type": "failed", "id": message_id, "attempt": attempt, "error": short_error(exc_type, message)}


def retrying_event(message_id: str, attempt: int, exc_type: str, message: str, next_at: float) -> dict:
    return {
        "type": "retrying", "id": message_id, "attempt": attempt,
        "error": short_error(exc_type, message), "next_at": next_at,
    }


def state_event(status: MessageStatus) -> dict:
    """A status record as one event: where the message is now (on subscribe, on a change)."""
    event = {
        "type": "state", "id": status.id, "state": status.state, "attempt": status.attempts,
        "progress": status.progress,
    }
    if status.has_result:
        event["result"] = status.result
    if status.errors:
        last = status.errors[-1]
        event["error"] = short_error(str(last.get("type", "")), str(last.get("message", "")))
    if status.due_at is not None and status.state in ("scheduled", "queued") and status.errors:
        event["next_at"] = status.due_at.timestamp()
    return event
