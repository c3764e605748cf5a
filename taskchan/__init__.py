"""taskchan: Django Channels' named channels as task queues, delivered at least once.

    import taskchan

    taskchan.send_on_commit("taskchan.thumbnails", {"photo_id": photo.pk})

    @taskchan.consumer("taskchan.thumbnails", max_attempts=5)
    def make_thumbnail(message):
        ...

Names are imported lazily (PEP 562) so that ``import taskchan`` works before
Django's settings are configured (in settings.py, in a Celery app module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    # Sending
    "send": "taskchan.producer",
    "asend": "taskchan.producer",
    "send_on_commit": "taskchan.outbox",
    "send_many": "taskchan.bulk",
    "asend_many": "taskchan.bulk",
    # Status
    "status": "taskchan.tracking",
    "astatus": "taskchan.tracking",
    "MessageStatus": "taskchan.tracking",
    # Progress
    "progress_token": "taskchan.progress.token",
    "report_progress": "taskchan.progress.report",
    # Consuming
    "consumer": "taskchan.registry",
    "Message": "taskchan.message",
    "Retry": "taskchan.exceptions",
    "Reject": "taskchan.exceptions",
    "Cancelled": "taskchan.exceptions",
    "TimeLimitExceeded": "taskchan.exceptions",
    # Flow control
    "cancel": "taskchan.cancels",
    "acancel": "taskchan.cancels",
    "pause": "taskchan.flow.pause",
    "resume": "taskchan.flow.pause",
    # Errors
    "TaskchanError": "taskchan.exceptions",
    "InvalidChannelName": "taskchan.exceptions",
    "ContentNotSerializable": "taskchan.exceptions",
    "MessageTooLarge": "taskchan.exceptions",
    "InvalidOption": "taskchan.exceptions",
    "StoreUnavailable": "taskchan.exceptions",
    "StoreRefused": "taskchan.exceptions",
    "SendNotReplicated": "taskchan.exceptions",
    "NotATaskchanLayer": "taskchan.exceptions",
    "MissingExtra": "taskchan.exceptions",
    "ResultNotSerializable": "taskchan.exceptions",
}

__all__ = [
    # Sending
    "send",
    "asend",
    "send_on_commit",
    "send_many",
    "asend_many",
    # Status
    "status",
    "astatus",
    "MessageStatus",
    # Progress
    "progress_token",
    "report_progress",
    # Consuming
    "consumer",
    "Message",
    "Retry",
    "Reject",
    "Cancelled",
    "TimeLimitExceeded",
    # Flow control
    "cancel",
    "acancel",
    "pause",
    "resume",
    # Errors
    "TaskchanError",
    "InvalidChannelName",
    "ContentNotSerializable",
    "MessageTooLarge",
    "InvalidOption",
    "StoreUnavailable",
    "StoreRefused",
    "SendNotReplicated",
    "NotATaskchanLayer",
    "MissingExtra",
    "ResultNotSerializable",
    "__version__",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskchan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .bulk import asend_many, send_many
    from .cancels import acancel, cancel
    from .exceptions import (
        Cancelled,
        ContentNotSerializable,
        InvalidChannelName,
        InvalidOption,
        MessageTooLarge,
        MissingExtra,
        NotATaskchanLayer,
        Reject,
        ResultNotSerializable,
        Retry,
        SendNotReplicated,
        StoreRefused,
        StoreUnavailable,
        TaskchanError,
        TimeLimitExceeded,
    )
    from .flow.pause import pause, resume
    from .message import Message
    from .outbox import send_on_commit
    from .producer import asend, send
    from .progress.report import report_progress
    from .progress.token import progress_token
    from .registry import consumer
    from .tracking import MessageStatus, astatus, status
