"""The django.tasks rows' task: the same no-op as every other row, declared with ``@task``.

Whichever backend ``TASKS`` names (``bench/settings_dtasks.py``) runs it:
taskchan's, threadmill, django-tasks-redis or django-tasks-db.
"""

from __future__ import annotations

from django.tasks import task

from bench.common import DTASKS_QUEUE, record_done


@task(queue_name=DTASKS_QUEUE)
def noop(content: dict) -> None:
    record_done(content)
