"""Django settings for the taskchan part of the benchmark.

The reference project's settings (which read ``REDIS_URL``; the orchestrator points it
at the bench's own redis-server) plus the benchmark's consumer module.
"""

import os

from project.settings import *  # noqa: F403

TASKCHAN_CONSUMER_MODULES = ["bench.jobs"]

# A throw-away SQLite file in the bench's temp dir (bench/systems.py sets the variable),
# so a run never writes to the project's own database.
if os.environ.get("BENCH_SQLITE_PATH"):
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_SQLITE_PATH"]}
    }

# Status tracking on (the default) or off: ``TASKCHAN_STATUS_TTL=0 python -m bench ...``
# measures what keeping every message's status costs.
if os.environ.get("TASKCHAN_STATUS_TTL"):
    TASKCHAN_STATUS_TTL = float(os.environ["TASKCHAN_STATUS_TTL"])
