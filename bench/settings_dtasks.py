"""Django settings for the django.tasks rows: the same no-op ``@task`` on each backend.

``BENCH_DTASKS`` names the backend (``bench/systems.py`` sets it per row):
``taskchan`` (taskchan.backend.TaskchanBackend, run by runworker), ``threadmill``
(its Redis backend), ``redis`` (django-tasks-redis) or ``db`` (django-tasks-db on
the PostgreSQL database in ``BENCH_PG_URL``).  The three others are bench-only
packages (the ``bench`` dependency group), not taskchan dependencies.
"""

import os

import dj_database_url

from bench.common import DTASKS_QUEUE
from bench.settings import *  # noqa: F403
from bench.settings import INSTALLED_APPS

_redis = os.environ.get("BENCH_REDIS_URL", "")
_which = os.environ.get("BENCH_DTASKS", "taskchan")

if _which == "taskchan":
    TASKS = {"default": {"BACKEND": "taskchan.backend.TaskchanBackend", "QUEUES": [DTASKS_QUEUE]}}
elif _which == "threadmill":
    INSTALLED_APPS = [*INSTALLED_APPS, "threadmill"]
    TASKS = {"default": {"BACKEND": "threadmill.backends.redis.RedisTaskBackend", "REDIS_URL": _redis,
                         "QUEUES": [DTASKS_QUEUE]}}
elif _which == "redis":
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_redis"]
    TASKS = {"default": {"BACKEND": "django_tasks_redis.RedisTaskBackend", "QUEUES": [DTASKS_QUEUE],
                         "OPTIONS": {"REDIS_URL": _redis, "REDIS_BLOCK_TIMEOUT": 100}}}
elif _which == "db":
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": [DTASKS_QUEUE]}}
    DATABASES = {"default": dj_database_url.parse(os.environ["BENCH_PG_URL"])}
