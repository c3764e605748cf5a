"""Handing a channel's messages to Celery: ``@consumer(..., handoff="celery")``.

Where the hand-off happens: **at send time**.  ``send()`` (and ``asend()``, the
``send_on_commit`` relay, ``layer.send``) looks the channel's consumer up in the
consumer table (consumers are autodiscovered in every process) and, for a
channel that hands off, publishes the one taskchan Celery task,
``taskchan.run_handed_off``, instead of storing the message in taskchan's
stream.  ``docs/celery.md`` has the measurements behind the choice.

- ``app.py``: the Celery app that publishes, and whether this process hands
  off at all (``celery_configured``, ``active``, send's extra door checks);
- ``publish.py``: publishing a validated message, idempotency keys included;
- ``dead_letter.py``: publishing a dead letter for the admin's "hand to Celery"
  (``taskchan.resend`` locks and marks the row);
- ``celery_side.py``: running the message in a Celery worker, called by the
  task in ``taskchan/tasks.py``, which ``app.autodiscover_tasks()`` finds
  (``celery -A project worker``).

Celery is imported lazily, only by a process that actually hands a message
off: a web process or taskchan worker whose channels do not hand off never
loads it (``tests/celery/test_handoff_send.py`` checks).  It is the ``celery``
extra; without it, sending to such a channel raises ``MissingExtra`` before
anything is stored (``extras.require``).  The Redis keys the hand-off uses are
described with the others in ``stores/keys.py``.
"""

from __future__ import annotations

from .app import TASK_NAME, celery_app, celery_configured, visibility_timeout
from .dead_letter import publish_dead_letter

__all__ = ["TASK_NAME", "celery_app", "celery_configured", "publish_dead_letter", "visibility_timeout"]
