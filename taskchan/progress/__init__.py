"""Live progress and outcomes of messages, pushed to browsers over the channel layer (docs/progress.md).

- ``report.py``: ``message.progress()`` / ``taskchan.report_progress()``, checked and coalesced;
- ``hub.py``: the worker's side: periodic flush to the status record and to watchers, outcomes;
- ``push.py``: events through the channel layer, in order;
- ``events.py``: the events and each message's group;
- ``token.py``: ``taskchan.progress_token()``, signed and expiring;
- ``consumer.py``: ``ProgressConsumer``, the websocket consumer a project routes;
- ``overview.py``: the admin overview's "changed" push to staff.

Names are loaded on first use (PEP 562): ``message.py`` imports ``report``,
which must not pull in Channels' consumers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ProgressConsumer": "taskchan.progress.consumer",
    "progress_token": "taskchan.progress.token",
    "read_token": "taskchan.progress.token",
    "BadToken": "taskchan.progress.token",
    "report_progress": "taskchan.progress.report",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
