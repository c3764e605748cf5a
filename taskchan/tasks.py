"""The one Celery task taskchan defines: ``taskchan.run_handed_off``.

It runs the consumer of any channel declared with ``handoff="celery"`` (and any
dead letter the admin hands to Celery).  The module is named ``tasks.py`` so
that a Celery app laid out as Celery's Django guide says (``project/celery.py``:
``app.autodiscover_tasks()``) registers it with no extra line.  Only Celery
workers import it; producers publish the task by name (``taskchan/handoff/publish.py``).

The task acks late and rejects (requeues) when its worker is lost, whatever the
app's defaults are; the app must accept JSON only (``CELERY_ACCEPT_CONTENT``).
"""

from __future__ import annotations

import json

from celery import shared_task

from .handoff import celery_side
from .handoff.app import TASK_NAME


@shared_task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    serializer="json",
    typing=False,
)
def run_handed_off(self, *args, **kwargs):
    """Arguments: ``channel``, ``raw`` (the envelope JSON) and, for a dead
    letter the database refused earlier, ``dead_letter``."""
    if len(args) == 2 and all(isinstance(a, str) for a in args) and set(kwargs) <= {"dead_letter"}:
        channel, raw = args
        return celery_side.run(self, channel, raw, dead_letter=kwargs.get("dead_letter"))
    # Published around taskchan with other arguments: dead-letter it as malformed.
    channel = args[0] if args and isinstance(args[0], str) else "taskchan.unknown"
    raw = json.dumps({"args": args, "kwargs": kwargs}, default=str)
    return celery_side.run(self, channel[:99], raw)
