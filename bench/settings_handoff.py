"""Django settings for the hand-off rows: ``bench.settings`` plus the hand-off consumers.

The Celery worker is ``celery -A project worker`` (the project's app, its
``CELERY_*`` settings: Redis broker on ``REDIS_URL``, JSON only, late acks)
consuming the same queue, with the same pool and flags, as the plain Celery row.
"""

from bench.common import CELERY_QUEUE
from bench.settings import *  # noqa: F403

TASKCHAN_CONSUMER_MODULES = ["bench.jobs_handoff"]

CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUE
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
