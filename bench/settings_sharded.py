"""Django settings for the benchmark's "sharded" row: taskchan channels over two Redis servers.

The orchestrator (bench/systems.py) sets ``BENCH_SHARD_URLS`` to the bench's own redis-server and a second
one it starts for this row.
"""

import os

from bench.common import SHARD_URLS_ENV
from bench.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "taskchan.layers.RedisChannelLayer",
        "CONFIG": {"hosts": os.environ[SHARD_URLS_ENV].split(",")},
    }
}
